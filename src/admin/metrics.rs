//! Prometheus text exposition (format 0.0.4) of the shards' counters, written by hand: the
//! format is a few lines of text per metric, and a crate would add a registry and locks we do
//! not need (the shards already keep their own counters; a scrape sums them).
//!
//! Owns: metric names, types and help texts; the sums over shards.
//! Must not: read shard state except from the snapshot it is given.

use std::fmt::Write;

use crate::cdr::writer::WriterReport;
use crate::dispatch::{GatewayStat, TrunkRow};
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
    /// Every gateway, counters summed over shards, `up` from its health owner.
    pub gateways: &'a [GatewayStat],
    /// The CDR writer's counts so far (None: CDRs are off).
    pub cdr: Option<WriterReport>,
    /// CDRs held in the recent-calls ring.
    pub recent_calls: Option<usize>,
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
        self.labels(name, &[(label, value)], v);
    }
    fn labels(&mut self, name: &str, labels: &[(&str, &str)], v: u64) {
        let mut set = String::new();
        for (i, (label, value)) in labels.iter().enumerate() {
            let value = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            if i > 0 {
                set.push(',');
            }
            let _ = write!(set, "{label}=\"{value}\"");
        }
        let _ = writeln!(self.0, "{name}{{{set}}} {v}");
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
    if !s.core.is_empty() && s.core.iter().any(|(k, _)| *k == "calls") {
        for (name, help, key) in [
            (
                "sipshard_calls_total",
                "Initial INVITEs taken on as calls (authorised and routed or refused).",
                "calls",
            ),
            (
                "sipshard_calls_answered_total",
                "Calls answered (a 2xx went to the caller).",
                "calls_answered",
            ),
            (
                "sipshard_calls_failed_total",
                "Calls that ended without an answer (final failure to the caller).",
                "calls_failed",
            ),
            (
                "sipshard_calls_ended_total",
                "Calls whose state was released (answered and hung up, or failed).",
                "calls_ended",
            ),
        ] {
            o.one(name, "counter", help, core(key));
        }
    }
    calls_by_gateway(&mut o, s.gateways);
    if let Some(c) = s.cdr {
        for (name, help, v) in [
            (
                "sipshard_cdr_written_total",
                "CDR rows written to the file.",
                c.written,
            ),
            (
                "sipshard_cdr_refused_total",
                "CDRs the shards could not queue for the writer (queue full or writer stopped).",
                c.refused,
            ),
            (
                "sipshard_cdr_lost_total",
                "CDRs taken off the queue but not written (file errors).",
                c.lost,
            ),
        ] {
            o.one(name, "counter", help, v);
        }
    }
    if let Some(n) = s.recent_calls {
        o.one(
            "sipshard_recent_calls",
            "gauge",
            "CDRs held in memory for /api/v1/calls.",
            n as u64,
        );
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

/// Failovers by cause, ringing timeouts, and each gateway's health and counters.
fn calls_by_gateway(o: &mut Out, gws: &[GatewayStat]) {
    if gws.is_empty() {
        return;
    }
    let sum = |f: fn(&GatewayStat) -> u64| gws.iter().map(f).sum::<u64>();
    o.head(
        "sipshard_failovers_total",
        "counter",
        "Gateway attempts that failed over (the call moves on to the route's next gateway, if \
         any) by cause, and gateways skipped (down, at max_calls).",
    );
    for (cause, v) in [
        ("no_response", sum(|g| g.counters.fail_no_response)),
        ("trying_timeout", sum(|g| g.counters.fail_trying_timeout)),
        ("failover_status", sum(|g| g.counters.fail_status)),
        ("gateway_down", sum(|g| g.counters.skipped_down)),
        ("gateway_full", sum(|g| g.counters.skipped_full)),
    ] {
        o.labeled("sipshard_failovers_total", "cause", cause, v);
    }
    o.one(
        "sipshard_ringing_timeouts_total",
        "counter",
        "Gateway attempts CANCELed after 180/183 and no answer within SS_SIP_TIMEOUT_RINGING.",
        sum(|g| g.counters.ringing_timeout),
    );
    type Col = fn(&GatewayStat) -> u64;
    let per_gateway: [(&str, &str, &str, Col); 9] = [
        (
            "sipshard_gateway_up",
            "gauge",
            "1 while the gateway is up (its health owner's view), 0 while down.",
            |g| u64::from(g.up),
        ),
        (
            "sipshard_gateway_active_calls",
            "gauge",
            "Calls in progress through the gateway.",
            |g| u64::from(g.active_calls),
        ),
        (
            "sipshard_gateway_attempts_total",
            "counter",
            "INVITEs sent to the gateway (one per attempt).",
            |g| g.counters.attempts,
        ),
        (
            "sipshard_gateway_answered_total",
            "counter",
            "Attempts the gateway answered with a 2xx.",
            |g| g.counters.answered,
        ),
        (
            "sipshard_gateway_rejected_total",
            "counter",
            "Final statuses from the gateway that are not failed over (sent back to the caller).",
            |g| g.counters.rejected,
        ),
        (
            "sipshard_gateway_ringing_timeouts_total",
            "counter",
            "Attempts CANCELed after ringing without an answer.",
            |g| g.counters.ringing_timeout,
        ),
        (
            "sipshard_gateway_marked_down_total",
            "counter",
            "Times the gateway was marked down (gateway_down_after failures in a row).",
            |g| g.counters.marked_down,
        ),
        (
            "sipshard_gateway_marked_up_total",
            "counter",
            "Times the gateway was marked up again (a probe was answered).",
            |g| g.counters.marked_up,
        ),
        (
            "sipshard_gateway_probes_total",
            "counter",
            "OPTIONS probes sent to the gateway while it was down.",
            |g| g.counters.probes_sent,
        ),
    ];
    for (name, kind, help, col) in per_gateway {
        o.head(name, kind, help);
        for g in gws {
            o.labeled(name, "gateway", &g.name, col(g));
        }
    }
    let name = "sipshard_gateway_failures_total";
    o.head(
        name,
        "counter",
        "Failed attempts through the gateway, by cause (each counts against its health).",
    );
    for g in gws {
        for (cause, v) in [
            ("no_response", g.counters.fail_no_response),
            ("trying_timeout", g.counters.fail_trying_timeout),
            ("failover_status", g.counters.fail_status),
        ] {
            o.labels(name, &[("gateway", &g.name), ("cause", cause)], v);
        }
    }
    let name = "sipshard_gateway_skipped_total";
    o.head(
        name,
        "counter",
        "Calls that skipped the gateway, by reason (down, full: at max_calls).",
    );
    for g in gws {
        for (reason, v) in [
            ("down", g.counters.skipped_down),
            ("full", g.counters.skipped_full),
        ] {
            o.labels(name, &[("gateway", &g.name), ("reason", reason)], v);
        }
    }
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
            gateways: &[],
            cdr: None,
            recent_calls: None,
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

    #[test]
    fn gateways_calls_and_cdr_counts() {
        use crate::dispatch::GatewayCounters;
        let gw = |name: &str, up: bool, c: GatewayCounters| GatewayStat {
            name: name.into(),
            address: "127.0.0.1:5070".parse().unwrap(),
            up,
            health_owner: true,
            active_calls: 2,
            counters: c,
        };
        let gws = [
            gw(
                "a",
                true,
                GatewayCounters {
                    attempts: 5,
                    answered: 4,
                    fail_status: 1,
                    ..Default::default()
                },
            ),
            gw(
                "b\"x",
                false,
                GatewayCounters {
                    attempts: 3,
                    fail_no_response: 3,
                    skipped_down: 7,
                    marked_down: 1,
                    ..Default::default()
                },
            ),
        ];
        let core = [("calls", 12), ("calls_answered", 4), ("calls_failed", 8)];
        let text = render(&Snapshot {
            shards: &[],
            core: &core,
            registrar: None,
            trunks: &[],
            mailbox_depths: &[],
            busy: BusySnapshot::default(),
            gateways: &gws,
            cdr: Some(WriterReport {
                written: 11,
                refused: 1,
                lost: 0,
                rotations: 0,
            }),
            recent_calls: Some(11),
        });
        for line in [
            "sipshard_calls_total 12",
            "sipshard_calls_answered_total 4",
            "sipshard_calls_failed_total 8",
            "sipshard_failovers_total{cause=\"no_response\"} 3",
            "sipshard_failovers_total{cause=\"failover_status\"} 1",
            "sipshard_failovers_total{cause=\"gateway_down\"} 7",
            "sipshard_ringing_timeouts_total 0",
            "sipshard_gateway_up{gateway=\"a\"} 1",
            "sipshard_gateway_up{gateway=\"b\\\"x\"} 0",
            "sipshard_gateway_attempts_total{gateway=\"a\"} 5",
            "sipshard_gateway_answered_total{gateway=\"a\"} 4",
            "sipshard_gateway_active_calls{gateway=\"a\"} 2",
            "sipshard_gateway_failures_total{gateway=\"b\\\"x\",cause=\"no_response\"} 3",
            "sipshard_gateway_skipped_total{gateway=\"b\\\"x\",reason=\"down\"} 7",
            "sipshard_gateway_marked_down_total{gateway=\"b\\\"x\"} 1",
            "sipshard_cdr_written_total 11",
            "sipshard_cdr_refused_total 1",
            "sipshard_cdr_lost_total 0",
            "sipshard_recent_calls 11",
        ] {
            assert!(text.contains(&format!("\n{line}\n")), "{line} in\n{text}");
        }
    }
}
