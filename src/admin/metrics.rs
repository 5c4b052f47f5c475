//! Prometheus text exposition (format 0.0.4) of the shards' counters, written by hand: the
//! format is a few lines of text per metric, and a crate would add a registry and locks we do
//! not need (the shards already keep their own counters; a scrape sums them).
//!
//! Owns: metric names, types and help texts; the sums over shards.
//! Must not: read shard state except from the snapshot it is given.

use std::fmt::Write;

use crate::dispatch::TrunkRow;
use crate::registrar::core::RegistrarCounters;
use crate::registrar::guard::FailReason;
use crate::shard::{BusySnapshot, ShardStats, BUSY_BOUNDS_US};

/// Everything one scrape shows.
pub struct Snapshot<'a> {
    /// Runtime counters per shard (published by the shards with relaxed atomics).
    pub shards: &'a [ShardStats],
    /// The cores' counters summed over shards (asked by mail).
    pub core: &'a [(&'static str, u64)],
    pub registrar: Option<&'a RegistrarCounters>,
    pub trunks: &'a [TrunkRow],
    /// Mail waiting per shard.
    pub mailbox_depths: &'a [usize],
    /// Loop busy-time histogram summed over shards.
    pub busy: BusySnapshot,
}

/// Core counters that are levels, not running totals.
const CORE_GAUGES: &[&str] = &[
    "tx_live_client",
    "tx_live_server",
    "bindings_live",
    "bindings_nat",
    "trunks_registered",
    "trunks_retrying",
];

/// Every state a trunk can be in (each gets a sample, 0 included, so series never vanish).
const TRUNK_STATES: &[&str] = &[
    "idle",
    "registering",
    "registered",
    "retrying",
    "unregistering",
    "stopped",
];

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn one(&mut self, name: &str, kind: &str, help: &str, v: u64) {
        self.head(name, kind, help);
        let _ = writeln!(self.0, "{name} {v}");
    }
    fn labeled(&mut self, name: &str, label: &str, value: &str, v: u64) {
        let value = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = writeln!(self.0, "{name}{{{label}=\"{value}\"}} {v}");
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The exposition text.
pub fn render(s: &Snapshot) -> String {
    let mut o = Out(String::with_capacity(8192));
    let mut t = ShardStats::default();
    for x in s.shards {
        t += *x;
    }
    o.one(
        "sipshard_shards",
        "gauge",
        "Shard threads running.",
        s.shards.len() as u64,
    );
    for (name, help, v) in [
        (
            "sipshard_datagrams_in_total",
            "UDP datagrams received.",
            t.datagrams_in,
        ),
        ("sipshard_bytes_in_total", "Bytes received.", t.bytes_in),
        (
            "sipshard_datagrams_out_total",
            "UDP datagrams sent.",
            t.datagrams_out,
        ),
        ("sipshard_bytes_out_total", "Bytes sent.", t.bytes_out),
        (
            "sipshard_recv_errors_total",
            "Receive errors.",
            t.recv_errors,
        ),
        ("sipshard_send_errors_total", "Send errors.", t.send_errors),
        (
            "sipshard_mail_in_total",
            "Inter-shard mail handled.",
            t.mail_in,
        ),
        (
            "sipshard_mail_out_total",
            "Mail sent to other shards.",
            t.mail_out,
        ),
        (
            "sipshard_loop_iterations_total",
            "Shard event-loop iterations.",
            t.loop_iterations,
        ),
        (
            "sipshard_core_panics_total",
            "Inputs dropped because the protocol core panicked (bugs).",
            t.core_panics,
        ),
    ] {
        o.one(name, "counter", help, v);
    }
    o.head(
        "sipshard_datagrams_dropped_total",
        "counter",
        "Datagrams or mail dropped, by cause.",
    );
    for (cause, v) in [
        ("truncated", t.truncated),
        ("kernel_rx_queue", t.kernel_drops),
        ("send_queue", t.send_queue_drops),
        ("mailbox_full", t.mailbox_full_drops),
    ] {
        o.labeled("sipshard_datagrams_dropped_total", "cause", cause, v);
    }
    let h = "sipshard_loop_busy_seconds";
    o.head(
        h,
        "histogram",
        "Processing time of shard loop iterations (receive, mail, timers, sends), per iteration.",
    );
    let mut cumulative = 0;
    for (i, bound) in BUSY_BOUNDS_US.iter().enumerate() {
        cumulative += s.busy.buckets[i];
        let le = format!("{}", *bound as f64 / 1e6);
        o.labeled(&format!("{h}_bucket"), "le", &le, cumulative);
    }
    cumulative += s.busy.buckets[BUSY_BOUNDS_US.len()];
    o.labeled(&format!("{h}_bucket"), "le", "+Inf", cumulative);
    let _ = writeln!(o.0, "{h}_sum {}", s.busy.sum_ns as f64 / 1e9);
    let _ = writeln!(o.0, "{h}_count {}", s.busy.count);
    if !s.mailbox_depths.is_empty() {
        o.head(
            "sipshard_mailbox_depth",
            "gauge",
            "Mail waiting in a shard's mailbox.",
        );
        for (i, d) in s.mailbox_depths.iter().enumerate() {
            o.labeled("sipshard_mailbox_depth", "shard", &i.to_string(), *d as u64);
        }
    }
    let core = |name: &str| {
        s.core
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |&(_, v)| v)
    };
    if let Some(r) = s.registrar {
        o.one(
            "sipshard_bindings_active",
            "gauge",
            "Live registrar bindings.",
            r.bindings_live,
        );
        o.one(
            "sipshard_bindings_nat",
            "gauge",
            "Live bindings detected behind NAT.",
            r.nat_bindings,
        );
        o.head(
            "sipshard_registrations_refused_total",
            "counter",
            "REGISTERs refused by the bindings core, by reason.",
        );
        for reason in FailReason::ALL {
            o.labeled(
                "sipshard_registrations_refused_total",
                "reason",
                reason.as_str(),
                r.refused(reason),
            );
        }
    }
    if !s.core.is_empty() {
        o.one(
            "sipshard_registrations_total",
            "counter",
            "REGISTERs answered 2xx.",
            core("register_ok"),
        );
        o.one(
            "sipshard_auth_failures_total",
            "counter",
            "REGISTERs refused for authentication (403: wrong password or unknown user; suspended).",
            core("register_forbidden") + core("register_suspended"),
        );
        o.one(
            "sipshard_transactions_total",
            "counter",
            "Transactions created (client and server).",
            core("tx_created_client") + core("tx_created_server"),
        );
        o.one(
            "sipshard_retransmissions_total",
            "counter",
            "Retransmissions sent by our transactions.",
            core("tx_retransmissions_sent"),
        );
        o.one(
            "sipshard_transactions_live",
            "gauge",
            "Transactions alive now.",
            core("tx_live_client") + core("tx_live_server"),
        );
        for &(k, v) in s.core {
            let gauge = CORE_GAUGES.contains(&k);
            let name = if gauge {
                format!("sipshard_core_{}", sanitize(k))
            } else {
                format!("sipshard_core_{}_total", sanitize(k))
            };
            o.one(
                &name,
                if gauge { "gauge" } else { "counter" },
                &format!("Core counter `{k}`, summed over shards."),
                v,
            );
        }
    }
    if s.registrar.is_some() || !s.trunks.is_empty() {
        o.head(
            "sipshard_trunk_registrations",
            "gauge",
            "Outbound registrations by state.",
        );
        for st in TRUNK_STATES {
            let n = s.trunks.iter().filter(|t| t.state == *st).count() as u64;
            o.labeled("sipshard_trunk_registrations", "state", st, n);
        }
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_shards_and_types_core_counters() {
        let a = ShardStats {
            datagrams_in: 3,
            kernel_drops: 1,
            ..Default::default()
        };
        let b = ShardStats {
            datagrams_in: 4,
            ..Default::default()
        };
        let core = [
            ("register_ok", 5),
            ("tx_live_client", 2),
            ("tx_created_client", 7),
        ];
        let reg = RegistrarCounters {
            bindings_live: 9,
            ..Default::default()
        };
        let text = render(&Snapshot {
            shards: &[a, b],
            core: &core,
            registrar: Some(&reg),
            trunks: &[],
            mailbox_depths: &[0, 2],
            busy: BusySnapshot {
                buckets: {
                    let mut b = [0; BUSY_BOUNDS_US.len() + 1];
                    b[0] = 2;
                    b[3] = 1;
                    b[BUSY_BOUNDS_US.len()] = 1;
                    b
                },
                sum_ns: 1_500_000_000,
                count: 4,
            },
        });
        assert!(
            text.contains("sipshard_loop_busy_seconds_bucket{le=\"0.000005\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("sipshard_loop_busy_seconds_bucket{le=\"0.00005\"} 3\n"));
        assert!(text.contains("sipshard_loop_busy_seconds_bucket{le=\"0.1\"} 3\n"));
        assert!(text.contains("sipshard_loop_busy_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("\nsipshard_loop_busy_seconds_sum 1.5\n"));
        assert!(text.contains("\nsipshard_loop_busy_seconds_count 4\n"));
        assert!(text.contains("\nsipshard_datagrams_in_total 7\n"), "{text}");
        assert!(text.contains("sipshard_datagrams_dropped_total{cause=\"kernel_rx_queue\"} 1\n"));
        assert!(text.contains("sipshard_mailbox_depth{shard=\"1\"} 2\n"));
        assert!(text.contains("\nsipshard_bindings_active 9\n"));
        assert!(text.contains("\nsipshard_registrations_total 5\n"));
        assert!(text.contains("# TYPE sipshard_core_tx_live_client gauge\n"));
        assert!(text.contains("\nsipshard_transactions_total 7\n"));
        assert!(text.contains("\nsipshard_transactions_live 2\n"));
        assert!(text.contains("\nsipshard_core_tx_created_client_total 7\n"));
        assert!(text.contains("sipshard_trunk_registrations{state=\"registered\"} 0\n"));
    }
}
