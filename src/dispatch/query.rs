//! Registrar queries as shard mail: what other parts of the system (call routing, the admin
//! side) ask one shard's registrar, and the owned answers it sends back.
//!
//! Owns: the query/reply types ([`RegistrarQuery`], [`RegistrarReply`]) and the answer of one
//! shard ([`answer`]). Everything crossing threads is owned (no borrows).
//! Must not: touch sockets, threads, clocks or locks. The reply goes out through a bounded
//! crossbeam channel with `try_send` only: a full channel or a dropped receiver loses the answer
//! (the asker times out), never blocks or panics the shard.

use std::net::SocketAddr;

use crossbeam_channel::Sender;

use crate::registrar::accounts::NO_ACCOUNT;
use std::collections::BinaryHeap;

use crate::registrar::core::{BindingRow, IpFilter, ListFilter, RegistrarCounters, Status, Target};
use crate::registrar::guard::FailedRegistration;
use crate::registrar::RemovalReason;
use crate::timer::Millis;

use super::register::RegisterPath;

/// [`ListFilter`] with owned data. `None` fields match everything; `status: None` lists live
/// bindings and recently removed ones (tombstones).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedListFilter {
    /// Prefix of the AOR key (`user@host`), i.e. of the user part (the "number").
    pub number: Option<Box<[u8]>>,
    /// Source IP or Contact host IP, exact or in a network.
    pub ip: Option<IpFilter>,
    /// Account name; an unknown name matches nothing.
    pub account: Option<Box<str>>,
    pub status: Option<Status>,
}

/// What one shard is asked.
#[derive(Clone, Debug)]
pub enum RegistrarQuery {
    /// The live contacts of an AOR key (from `registrar::aor_key`); ask the owner shard.
    Lookup { aor: Box<[u8]> },
    /// The first `offset + limit` matching rows of this shard, sorted by (AOR, contact), and the
    /// number of matches on this shard.
    List {
        filter: OwnedListFilter,
        offset: usize,
        limit: usize,
    },
    /// Remove every binding of an AOR key; ask the owner shard.
    ForceUnregister { aor: Box<[u8]> },
    /// The registrar counters of this shard.
    Counts,
    /// Live bindings per User-Agent on this shard.
    UserAgents,
    /// The `limit` most recent failed registrations of this shard, most recent first.
    FailedLog { limit: usize },
    /// Live bindings in slab order from slot `from`, at most `limit` rows (bounded work per
    /// mail: at most `SCAN_SLOTS_PER_ROW * limit` slots are looked at); the reply says where to
    /// continue. For walking the whole table a slice at a time (CSV export, analysis).
    Scan { from: u32, limit: usize },
    /// Every live binding of an AOR key, as management rows (ask the owner shard). Answered
    /// with `Rows`.
    Details { aor: Box<[u8]> },
}

/// Slots a [`RegistrarQuery::Scan`] may look at per row asked for (bounds the work of one mail
/// on a sparse table).
pub const SCAN_SLOTS_PER_ROW: usize = 4;

/// A reachable contact (answer to [`RegistrarQuery::Lookup`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactRow {
    pub uri: Box<[u8]>,
    /// Where the REGISTER came from.
    pub source: SocketAddr,
    /// Where to send requests for this contact.
    pub send_to: SocketAddr,
    /// Seconds left (rounded down).
    pub expires_in_s: u64,
    /// q in thousandths, if given.
    pub q: Option<u16>,
    pub nat: bool,
}

/// One row of the management table (answer to [`RegistrarQuery::List`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedBindingRow {
    pub aor: Box<[u8]>,
    pub contact: Box<[u8]>,
    pub call_id: Box<[u8]>,
    pub source: SocketAddr,
    /// Account name; None when registered without an account (`require_auth = Off`).
    pub account: Option<Box<str>>,
    pub user_agent: Box<[u8]>,
    /// Server clock (ms since start) when the binding was made.
    pub registered_at: Millis,
    /// Seconds left (live rows); 0 for an unregistered row.
    pub expires_in_s: u64,
    pub status: Status,
    pub nat: bool,
    /// Why it was removed (unregistered rows only).
    pub removal: Option<RemovalReason>,
}

/// What one shard answers.
#[derive(Clone, Debug)]
pub enum RegistrarReply {
    Contacts(Vec<ContactRow>),
    Rows {
        rows: Vec<OwnedBindingRow>,
        total: usize,
    },
    Removed(usize),
    Counts(RegistrarCounters),
    UserAgents(Vec<(Box<[u8]>, u64)>),
    Failed(Vec<FailedRegistration>),
    /// Answer to [`RegistrarQuery::Scan`]: rows, and the slot to continue from (None: done).
    Scanned {
        rows: Vec<OwnedBindingRow>,
        next: Option<u32>,
    },
}

/// What the management side asks one shard besides its registrar (`Mail::Admin`).
#[derive(Clone, Debug)]
pub enum AdminQuery {
    /// The status of the outbound registrations this shard owns.
    Trunks,
    /// Start a new attempt of this trunk now (ask its owner, `shard_by_hash(name)`).
    Reregister { name: Box<str> },
    /// The core's counters (the same pairs as at exit), live.
    Counters,
}

/// One outbound registration's status (answer to [`AdminQuery::Trunks`]). Times are on the
/// server clock (ms since start), like [`OwnedBindingRow::registered_at`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkRow {
    pub name: String,
    /// registering / registered / retrying / unregistering / stopped / idle.
    pub state: &'static str,
    pub shard: usize,
    /// `host:port` of the registrar, and of the outbound proxy if any.
    pub registrar: String,
    pub outbound_proxy: Option<String>,
    pub username: String,
    /// None: Auto Negotiation.
    pub requested_expiry_s: Option<u32>,
    pub effective_expiry_s: Option<u32>,
    pub registered_until: Option<Millis>,
    pub next_action_at: Option<Millis>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub requests: u64,
    pub attempts: u64,
    pub successes: u64,
    pub failures: u64,
}

/// What one shard answers to an [`AdminQuery`].
#[derive(Clone, Debug)]
pub enum AdminReply {
    Trunks(Vec<TrunkRow>),
    /// Whether the trunk was found here and a new attempt started.
    Reregistered(bool),
    Counters(Vec<(&'static str, u64)>),
}

/// The status row of one outbound registration.
pub fn trunk_row(shard: usize, r: &crate::trunk::OutboundRegistration) -> TrunkRow {
    let s = r.status();
    let c = r.config();
    TrunkRow {
        name: c.name.clone(),
        state: s.state.name(),
        shard,
        registrar: format!("{}:{}", c.registrar, c.port),
        outbound_proxy: c.outbound_proxy.as_ref().map(|(h, p)| format!("{h}:{p}")),
        username: c.username.clone(),
        requested_expiry_s: c.expire_s,
        effective_expiry_s: s.effective_expiry_s,
        registered_until: s.registered_until,
        next_action_at: s.next_action_at,
        last_status: s.last_status,
        last_error: s.last_error,
        requests: s.requests,
        attempts: s.attempts,
        successes: s.successes,
        failures: s.failures,
    }
}

/// Answers `query` from this shard's REGISTER path and sends the reply with `try_send` (a full
/// or closed channel drops it). Returns false when the reply could not be sent.
pub fn answer(
    reg: &mut RegisterPath,
    query: RegistrarQuery,
    now: Millis,
    reply: &Sender<RegistrarReply>,
) -> bool {
    let r = build(reg, query, now);
    reply.try_send(r).is_ok()
}

fn secs_left(at: Millis, now: Millis) -> u64 {
    at.saturating_sub(now) / 1000
}

/// The answer of one shard to `query`.
pub fn build(reg: &mut RegisterPath, query: RegistrarQuery, now: Millis) -> RegistrarReply {
    match query {
        RegistrarQuery::Lookup { aor } => RegistrarReply::Contacts(
            reg.registrar
                .lookup(&aor, now)
                .map(|c| ContactRow {
                    uri: c.uri.into(),
                    source: c.source,
                    send_to: c.send_to,
                    expires_in_s: secs_left(c.expires_at, now),
                    q: c.q,
                    nat: c.nat,
                })
                .collect(),
        ),
        RegistrarQuery::List {
            filter,
            offset,
            limit,
        } => {
            let account = match &filter.account {
                None => None,
                Some(name) => match reg.accounts().find(name.as_bytes()) {
                    Some(id) => Some(id),
                    None => {
                        return RegistrarReply::Rows {
                            rows: Vec::new(),
                            total: 0,
                        }
                    }
                },
            };
            let f = ListFilter {
                number: filter.number.as_deref(),
                ip: filter.ip,
                account,
                status: filter.status,
            };
            // Keep only the first `offset + limit` rows in (AOR, contact) order: a bounded
            // max-heap, so a page costs one pass over the table and O(k) memory, not a sort of
            // every row.
            let keep = offset.saturating_add(limit);
            let mut heap: BinaryHeap<Ordered<'_>> = BinaryHeap::with_capacity(keep.min(4096));
            let mut total = 0usize;
            reg.registrar.visit(&f, now, |row| {
                total += 1;
                if keep == 0 {
                    return;
                }
                let row = Ordered(row);
                if heap.len() < keep {
                    heap.push(row);
                } else if heap.peek().is_some_and(|top| row < *top) {
                    heap.pop();
                    heap.push(row);
                }
            });
            let rows: Vec<_> = heap.into_sorted_vec().into_iter().map(|o| o.0).collect();
            let accounts = reg.accounts();
            let rows = rows
                .into_iter()
                .map(|r| owned_row(accounts, r, now))
                .collect();
            RegistrarReply::Rows { rows, total }
        }
        RegistrarQuery::ForceUnregister { aor } => {
            RegistrarReply::Removed(reg.registrar.force_unregister(Target::Aor(&aor), now))
        }
        RegistrarQuery::Counts => RegistrarReply::Counts(reg.registrar.counts()),
        RegistrarQuery::UserAgents => RegistrarReply::UserAgents(
            reg.registrar
                .user_agent_counts()
                .map(|(ua, n)| (ua.into(), u64::from(n)))
                .collect(),
        ),
        RegistrarQuery::FailedLog { limit } => {
            RegistrarReply::Failed(reg.failed_log().recent().take(limit).cloned().collect())
        }
        RegistrarQuery::Details { aor } => {
            let ids: Vec<_> = reg.registrar.lookup(&aor, now).map(|c| c.id).collect();
            let accounts = reg.accounts();
            let rows: Vec<OwnedBindingRow> = ids
                .into_iter()
                .filter_map(|id| reg.registrar.binding(id, now))
                .map(|r| owned_row(accounts, r, now))
                .collect();
            let total = rows.len();
            RegistrarReply::Rows { rows, total }
        }
        RegistrarQuery::Scan { from, limit } => {
            let limit = limit.max(1);
            let (rows, next) =
                reg.registrar
                    .scan(from, limit, limit.saturating_mul(SCAN_SLOTS_PER_ROW), now);
            let accounts = reg.accounts();
            RegistrarReply::Scanned {
                rows: rows
                    .into_iter()
                    .map(|r| owned_row(accounts, r, now))
                    .collect(),
                next,
            }
        }
    }
}

/// A management row ordered as pages are: by (AOR, contact, status, registration time).
struct Ordered<'a>(BindingRow<'a>);

impl Ordered<'_> {
    fn key(&self) -> (&[u8], &[u8], u8, Millis) {
        let r = &self.0;
        (r.aor, r.contact, r.status as u8, r.registered_at)
    }
}

impl PartialEq for Ordered<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.key() == o.key()
    }
}
impl Eq for Ordered<'_> {}
impl PartialOrd for Ordered<'_> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ordered<'_> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.key().cmp(&o.key())
    }
}

fn owned_row(
    accounts: &crate::registrar::accounts::Accounts,
    r: crate::registrar::core::BindingRow<'_>,
    now: Millis,
) -> OwnedBindingRow {
    OwnedBindingRow {
        aor: r.aor.into(),
        contact: r.contact.into(),
        call_id: r.call_id.into(),
        source: r.source,
        account: (r.account != NO_ACCOUNT && (r.account as usize) < accounts.len())
            .then(|| accounts.get(r.account).user.clone()),
        user_agent: r.user_agent.into(),
        registered_at: r.registered_at,
        expires_in_s: if r.status == Status::Unregistered {
            0
        } else {
            secs_left(r.expires_at, now)
        },
        status: r.status,
        nat: r.nat,
        removal: r.removal,
    }
}

/// Adds `b` into `a`, field by field (counts summed over shards).
pub fn add_counters(a: &mut RegistrarCounters, b: &RegistrarCounters) {
    a.bindings_live += b.bindings_live;
    a.nat_bindings += b.nat_bindings;
    a.added += b.added;
    a.refreshed += b.refreshed;
    a.removed += b.removed;
    a.expired += b.expired;
    a.replaced += b.replaced;
    a.forced += b.forced;
    a.keepalive_removed += b.keepalive_removed;
    a.keepalives_sent += b.keepalives_sent;
    a.keepalives_failed += b.keepalives_failed;
    a.keepalives_skipped += b.keepalives_skipped;
    for (x, y) in a.refused.iter_mut().zip(b.refused.iter()) {
        *x += *y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::dispatch::{Mail, Shared};

    fn path() -> RegisterPath {
        let cfg = Config::embedded_default();
        let shared = Shared::new(&cfg, [1; 32], 5).unwrap();
        RegisterPath::new(0, &cfg, &shared, 0)
    }

    #[test]
    fn queries_do_not_grow_the_mail_of_the_hot_path() {
        // Datagram: SocketAddr + Box<[u8]>; the query is boxed so Registrar is no bigger.
        assert!(
            std::mem::size_of::<Mail>() <= 56,
            "{}",
            std::mem::size_of::<Mail>()
        );
    }

    #[test]
    fn a_full_or_closed_reply_channel_neither_blocks_nor_panics() {
        let mut reg = path();
        let (tx, rx) = crossbeam_channel::bounded(1);
        assert!(answer(&mut reg, RegistrarQuery::Counts, 0, &tx));
        assert!(!answer(&mut reg, RegistrarQuery::Counts, 0, &tx), "full");
        assert!(matches!(rx.try_recv(), Ok(RegistrarReply::Counts(_))));
        drop(rx);
        let q = RegistrarQuery::Lookup {
            aor: b"1000@example.com"[..].into(),
        };
        assert!(!answer(&mut reg, q, 0, &tx), "receiver gone");
    }
}
