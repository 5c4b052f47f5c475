//! The registrar core of one shard: REGISTER decisions (RFC 3261 §10.3 plus the VOS3000 endpoint
//! policies), expiry, NAT keepalives, and the queries of the management side. Sans-IO.
//!
//! Owns: the shard's bindings ([`super::bindings`]), their expiry and keepalive schedule, the
//! 200/400/403/423/500 answers to already-authenticated REGISTERs, counters.
//! Must not: authenticate (that is `registrar::auth`, done before), touch sockets, threads,
//! clocks or locks, or run transactions (keepalive OPTIONS are handed to a [`RegistrarSink`];
//! the dispatcher runs them as client transactions and reports back by token).
//!
//! # Decisions
//! - **AOR**: [`aor_key`]: `user@host`, user unescaped, host lower-case.
//! - **Stale CSeq** (same Call-ID, CSeq not higher than the stored one, RFC 3261 §10.3 step 7):
//!   **500** "Out of Order CSeq" and nothing changes, by analogy with RFC 3261 §12.2.2 (a
//!   request whose CSeq is lower than the remote sequence number gets 500). Counted as
//!   `FailReason::StaleCseq`.
//! - **Binding limit** (`registrar_max_bindings` per AOR): replace On → the oldest bindings
//!   (by registration time) not touched by this REGISTER are removed (`Replaced`); replace Off →
//!   **403** "Binding Exists" (`FailReason::BindingExists`, limit 1) or "Too Many Bindings"
//!   (`TooManyBindings`, limit > 1), nothing changes. A single REGISTER that alone brings more
//!   new contacts than the limit gets that 403 whatever the policy, and so does one with more
//!   than [`MAX_CONTACTS_PER_REGISTER`] Contact values. A request is all-or-nothing.
//! - **Expiry**: per contact `expires=`, else `Expires`, else the granted default. 0 removes;
//!   0 < e < `min_expires_s` → **423** with `Min-Expires`. Granted = min(e, endpoint_expire or
//!   endpoint_nat_expire, max_expires) seconds, minus a random 0..=`expiry_spread_percent` %
//!   (in ms, deterministic PRNG seeded at construction), never below `min_expires_s`. The 200
//!   lists every binding of the AOR with `;expires=` = remaining time rounded up to seconds.
//! - **Contacts** must be `sip:`/`sips:` URIs (else 400). The URI is stored exactly as received
//!   (URI parameters and escaped `?headers` kept); contact parameters are not stored except
//!   `q` (and `expires`, which is consumed).
//! - **NAT**: a contact is NAT when the top Via sent-by (IP literal and port, default 5060/5061)
//!   differs from the packet source, or the Contact host:port does, or the Contact host is a
//!   private address and the source is not. NAT bindings are reached at the packet source, get
//!   `endpoint_nat_expire_s`, and get OPTIONS keepalives every `nat_keepalive_interval_s`.
//! - **Keepalive phase**: a NAT binding's keepalives fall at a fixed offset within the interval
//!   (absolute time modulo the interval), offset = the n-th point of the golden-ratio sequence
//!   (n counts NAT bindings created on the shard, plus the seed): consecutive bindings are spread
//!   evenly, never bunched. First keepalive within one interval of registration. While one is
//!   outstanding the next is skipped (no pile-up against dead endpoints); each unanswered one
//!   counts a failure, `nat_keepalive_max_failures` in a row remove the binding; an answer
//!   (or a successful refresh REGISTER) resets the count.
//! - **Status**: Registered; Expiring when the remaining time is at most max(10 % of the
//!   granted time, 60 s); Unregistered for the last [`TOMBSTONES`] removed bindings of the
//!   shard (a bounded ring, oldest forgotten first, whatever the reason of removal).
//!
//! # Timers and bounded work
//! Expiries and keepalives are kept in a coarse schedule (64 ms blocks in a `BTreeMap`, entries
//! of 4 bytes, stale ones skipped lazily) and moved into the shard's [`TimerWheel`] only when
//! their block is reached, so the wheel only ever holds the current block (all on its level 0:
//! no cascades, whose cost is all-at-once in the wheel). Each [`Registrar::on_timers`] call
//! moves at most [`FEED_PER_CALL`] entries and handles at most [`EVENTS_PER_CALL`] due events;
//! when work is left, [`Registrar::next_deadline`] returns the time of that call so the runtime
//! comes back at once. Lookups exclude expired bindings even before their timer is handled.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::config::Config;
use crate::sip::{
    write_request, write_response, write_response_with_lines, Message, Method, RequestSpec,
    ResponseOptions, Scheme, Uri, Via,
};
use crate::timer::{Millis, TimerWheel};
use crate::transaction::{make_branch, BRANCH_LEN};

use super::accounts::AccountId;
use super::bindings::{
    aor_key, contact_eq, host_ip, in_net, is_private, Addr, Binding, BindingId, RemovalReason,
    Store, Tombstone, Tombstones, UserAgents, F_KA_OUT, F_NAT, MAX_CALL_ID_LEN, MAX_CONTACT_LEN,
    NIL, NO_Q,
};
use super::guard::FailReason;

/// Due timer events handled per `on_timers` call at most.
pub const EVENTS_PER_CALL: usize = 4096;
/// Schedule entries moved into the wheel per `on_timers` call at most.
pub const FEED_PER_CALL: usize = 16384;
/// Removed bindings remembered per shard for the Unregistered status.
pub const TOMBSTONES: usize = 4096;
/// Contact values accepted in one REGISTER (matching is quadratic in it); more → 403.
pub const MAX_CONTACTS_PER_REGISTER: usize = 64;
/// Width of a schedule block: 2^6 = 64 ms (one level-0 span of the wheel).
const BLOCK_SHIFT: u32 = 6;

const KIND_EXPIRY: u32 = 0;
const KIND_KEEPALIVE: u32 = 1;

/// Where the registrar's keepalive requests go.
pub trait RegistrarSink {
    /// Start a client transaction for this OPTIONS `request` (copy it: the buffer is reused) to
    /// `dst`, with Via `branch`; report its end with [`Registrar::on_keepalive_result`]`(token…)`.
    fn start_keepalive(&mut self, dst: SocketAddr, request: &[u8], branch: &[u8], token: u64);
}

/// What a REGISTER did, for counters and logs. The response is in the `out` buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegisterOutcome {
    pub status: u16,
    /// New bindings.
    pub added: u32,
    /// Existing bindings updated.
    pub refreshed: u32,
    /// Bindings removed at the endpoint's request (expires 0, `Contact: *`).
    pub removed: u32,
    /// Bindings removed to make room (replace On).
    pub replaced: u32,
    /// Why it was refused (status >= 300).
    pub refused: Option<FailReason>,
    /// A short explanation for logs (empty on success).
    pub detail: &'static str,
}

/// A reachable contact of an AOR (see [`Registrar::lookup`]).
#[derive(Clone, Copy, Debug)]
pub struct ContactView<'a> {
    pub id: BindingId,
    /// Contact URI exactly as registered.
    pub uri: &'a [u8],
    /// Where the REGISTER came from.
    pub source: SocketAddr,
    /// Where to send requests for this contact: the source for NAT bindings, else the Contact
    /// host:port when it is an IP literal, else the source.
    pub send_to: SocketAddr,
    /// q in thousandths, if given.
    pub q: Option<u16>,
    pub expires_at: Millis,
    pub nat: bool,
}

/// Status of a row of the management table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Registered,
    /// Remaining time at most max(10 % of the granted time, 60 s).
    Expiring,
    /// Recently removed (tombstone ring).
    Unregistered,
}

/// IP filter of [`ListFilter`]: matches the source IP or the Contact host IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpFilter {
    Addr(IpAddr),
    Net(IpAddr, u8),
}

/// Filters of [`Registrar::list`]; `None` fields match everything. `status: None` lists live
/// bindings and tombstones.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListFilter<'a> {
    /// Prefix of the AOR user part (the "number").
    pub number: Option<&'a [u8]>,
    pub ip: Option<IpFilter>,
    pub account: Option<AccountId>,
    pub status: Option<Status>,
}

/// Rows `offset..offset + limit` of the matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
}

/// One row of the management table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingRow<'a> {
    /// None for a tombstone.
    pub id: Option<BindingId>,
    pub aor: &'a [u8],
    pub contact: &'a [u8],
    pub call_id: &'a [u8],
    pub source: SocketAddr,
    pub account: AccountId,
    pub user_agent: &'a [u8],
    pub registered_at: Millis,
    /// Expiry time (live) or removal time (tombstone).
    pub expires_at: Millis,
    pub status: Status,
    pub nat: bool,
    pub removal: Option<RemovalReason>,
}

/// A page of rows and the number of matching rows in all.
#[derive(Clone, Debug)]
pub struct ListPage<'a> {
    pub rows: Vec<BindingRow<'a>>,
    pub total: usize,
}

/// What [`Registrar::force_unregister`] removes.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    Aor(&'a [u8]),
    Binding(BindingId),
}

/// Counters of one shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegistrarCounters {
    pub bindings_live: u64,
    pub nat_bindings: u64,
    pub added: u64,
    pub refreshed: u64,
    pub removed: u64,
    pub expired: u64,
    pub replaced: u64,
    pub forced: u64,
    pub keepalive_removed: u64,
    pub keepalives_sent: u64,
    pub keepalives_failed: u64,
    pub keepalives_skipped: u64,
    /// Refusals by [`FailReason`] (index: [`reason_index`]).
    pub refused: [u64; 11],
}

impl RegistrarCounters {
    pub fn refused(&self, r: FailReason) -> u64 {
        self.refused[reason_index(r)]
    }
}

/// Index of a [`FailReason`] in [`RegistrarCounters::refused`].
pub fn reason_index(r: FailReason) -> usize {
    match r {
        FailReason::WrongPassword => 0,
        FailReason::UnknownUser => 1,
        FailReason::SourceNotAllowed => 2,
        FailReason::Suspended => 3,
        FailReason::RateLimited => 4,
        FailReason::BadRequest => 5,
        FailReason::IntervalTooBrief => 6,
        FailReason::TooManyBindings => 7,
        FailReason::BindingExists => 8,
        FailReason::StaleCseq => 9,
        FailReason::NonceReplay => 10,
    }
}

/// One contact of the REGISTER being processed.
#[derive(Clone, Copy)]
struct Plan {
    /// Index in `msg.contacts()`.
    contact: usize,
    /// Matching existing binding, or NIL.
    matched: u32,
    /// Requested expiry, seconds (0 = remove).
    expires: u32,
    nat: bool,
    /// Superseded by a later equal contact of the same request.
    skip: bool,
}

/// Settings copied from the config.
#[derive(Clone, Copy, Debug)]
struct Settings {
    expire_s: u32,
    nat_expire_s: u32,
    replace: bool,
    max_bindings: usize,
    min_expires_s: u32,
    max_expires_s: u32,
    spread_percent: u32,
    ka_interval_ms: u64,
    ka_max_failures: u32,
}

/// The registrar of one shard.
pub struct Registrar {
    shard: usize,
    set: Settings,
    store: Store,
    uas: UserAgents,
    tombs: Tombstones,
    /// Coarse schedule: block (ms >> 6) → entries `index << 1 | kind`.
    blocks: BTreeMap<u64, Vec<u32>>,
    spare_blocks: Vec<Vec<u32>>,
    /// Near timers: value = generation << 32 | index << 1 | kind.
    wheel: TimerWheel<u64>,
    /// Work was left by the last `on_timers` call.
    backlog: bool,
    last_now: Millis,
    rng: u64,
    nat_seq: u64,
    unique: u64,
    local: SocketAddr,
    /// Unix time in ms at `Millis` 0 of the caller's clock, when known: the 200 OK then
    /// carries a `Date` header (RFC 3261 §10.3 step 8). The core never reads a clock.
    wall_at_zero_ms: Option<u64>,
    /// The `Date` text of the last second a 200 was written in.
    date: crate::sip::DateCache,
    /// Shards of the process (1 until told): keepalive Call-IDs are chosen so that the kernel's
    /// steering program delivers their answers to this shard (`sip::steer`).
    shards: usize,
    counters: RegistrarCounters,
    // Scratch buffers, reused.
    key: Vec<u8>,
    plan: Vec<Plan>,
    evict: Vec<u32>,
    contact_hdr: Vec<u8>,
    req: Vec<u8>,
    uri_buf: Vec<u8>,
    call_id_buf: Vec<u8>,
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn push_num(out: &mut Vec<u8>, v: u64) {
    crate::sip::push_dec(out, v);
}

fn push_hex(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&crate::sip::hex16(v));
}

fn push_q(out: &mut Vec<u8>, q: u16) {
    if q >= 1000 {
        out.extend_from_slice(b"1");
    } else {
        out.extend_from_slice(b"0.");
        let s = [
            b'0' + (q / 100) as u8,
            b'0' + (q / 10 % 10) as u8,
            b'0' + (q % 10) as u8,
        ];
        let n = if s[2] != b'0' {
            3
        } else if s[1] != b'0' {
            2
        } else {
            1
        };
        out.extend_from_slice(&s[..n]);
    }
}

/// Default port of a Via transport / URI scheme.
fn via_default_port(via: &Via) -> u16 {
    if via.transport().eq_ignore_ascii_case(b"TLS") {
        5061
    } else {
        5060
    }
}

fn is_nat(via: Option<Via>, contact: &Uri, src: SocketAddr) -> bool {
    let src_ip = src.ip().to_canonical();
    // The usual hosts are the source IP written plainly: compared as text, not parsed.
    let text = crate::sip::Ipv4Text::of(src_ip);
    let ip_of = |host: &[u8]| {
        if text.is_some_and(|t| t.is(host)) {
            Some(src_ip)
        } else {
            host_ip(host)
        }
    };
    let via_differs = via.is_some_and(|v| {
        ip_of(v.host()) != Some(src_ip) || v.port().unwrap_or(via_default_port(&v)) != src.port()
    });
    let c_ip = ip_of(contact.host());
    let c_port = contact
        .port()
        .unwrap_or(if contact.scheme() == Scheme::Sips {
            5061
        } else {
            5060
        });
    let contact_differs = c_ip != Some(src_ip) || c_port != src.port();
    let private_behind_public = c_ip.is_some_and(is_private) && !is_private(src_ip);
    via_differs || contact_differs || private_behind_public
}

/// Characters allowed unescaped in a SIP URI user part (RFC 3261 `user`).
fn user_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&c)
}

impl Registrar {
    /// A registrar for shard `shard`. `seed` seeds the expiry spread, keepalive phases and the
    /// AOR table hasher (give each shard and each run a different one). Keepalives are sent
    /// from `cfg.server.listen` (see [`Registrar::set_local_addr`] when it is a wildcard).
    pub fn new(shard: usize, cfg: &Config, seed: u64, now: Millis) -> Registrar {
        let r = &cfg.registrar;
        let s = &cfg.sip;
        Registrar {
            shard,
            set: Settings {
                expire_s: s.endpoint_expire_s,
                nat_expire_s: s.endpoint_nat_expire_s,
                replace: s.endpoint_register_replace,
                max_bindings: s.registrar_max_bindings.max(1) as usize,
                min_expires_s: r.min_expires_s,
                max_expires_s: r.max_expires_s.max(1),
                spread_percent: r.expiry_spread_percent.min(100),
                ka_interval_ms: u64::from(r.nat_keepalive_interval_s) * 1000,
                ka_max_failures: r.nat_keepalive_max_failures.max(1),
            },
            store: Store::new(seed),
            uas: UserAgents::new(),
            tombs: Tombstones::new(TOMBSTONES),
            blocks: BTreeMap::new(),
            spare_blocks: Vec::new(),
            wheel: TimerWheel::new(now),
            backlog: false,
            last_now: now,
            rng: seed ^ 0x5EED_5EED_5EED_5EED,
            nat_seq: seed,
            unique: seed.rotate_left(32),
            local: cfg.server.listen,
            wall_at_zero_ms: None,
            date: crate::sip::DateCache::default(),
            shards: 1,
            counters: RegistrarCounters::default(),
            key: Vec::with_capacity(128),
            plan: Vec::with_capacity(8),
            evict: Vec::with_capacity(8),
            contact_hdr: Vec::with_capacity(512),
            req: Vec::with_capacity(512),
            uri_buf: Vec::with_capacity(128),
            call_id_buf: Vec::with_capacity(64),
        }
    }

    /// The address written in keepalive Via/Call-ID (e.g. the public address when listening on
    /// 0.0.0.0).
    pub fn set_local_addr(&mut self, addr: SocketAddr) {
        self.local = addr;
    }

    /// Tell the registrar the wall-clock time (Unix ms) at `Millis` 0 of the clock that drives
    /// it, so 200 OKs carry `Date: <now as IMF-fixdate>` (the time is `unix_ms_at_zero + now`,
    /// so it follows the monotonic clock and does not see later steps of the wall clock).
    /// Without it no Date header is written.
    /// How many shards the process runs (for steering keepalive answers back to this shard).
    pub fn set_shard_count(&mut self, shards: usize) {
        self.shards = shards.max(1);
    }

    pub fn set_wall_clock(&mut self, unix_ms_at_zero: u64) {
        self.wall_at_zero_ms = Some(unix_ms_at_zero);
    }

    /// Make room for `n` more bindings without growing the slab or the AOR table.
    pub fn reserve(&mut self, n: usize) {
        self.store.reserve(n);
    }

    /// Live bindings (expired ones not yet removed included).
    pub fn len(&self) -> usize {
        self.store.live
    }
    pub fn is_empty(&self) -> bool {
        self.store.live == 0
    }

    // ---------------------------------------------------------------------------------------
    // REGISTER

    /// Handles an authenticated REGISTER from `src` for `account`; writes the whole response
    /// into `out` and says what changed. `user_agent` is the User-Agent value (empty if none).
    #[allow(clippy::too_many_arguments)]
    pub fn on_register(
        &mut self,
        msg: &Message,
        src: SocketAddr,
        account: AccountId,
        user_agent: &[u8],
        now: Millis,
        out: &mut Vec<u8>,
    ) -> RegisterOutcome {
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        let r = match aor_key(msg, &mut key) {
            Ok(()) => self.register(msg, src, account, user_agent, now, out, &key),
            Err(e) => self.refuse_bad_aor(msg, src, e, out),
        };
        self.key = key;
        self.count_outcome(&r);
        r
    }

    /// [`Registrar::on_register`] for a caller that already made the request's canonical AOR
    /// (`bindings::aor_key` succeeded on this very `msg` and wrote `aor`): saves making it again.
    #[allow(clippy::too_many_arguments)]
    pub fn on_register_with_aor(
        &mut self,
        msg: &Message,
        aor: &[u8],
        src: SocketAddr,
        account: AccountId,
        user_agent: &[u8],
        now: Millis,
        out: &mut Vec<u8>,
    ) -> RegisterOutcome {
        let r = self.register(msg, src, account, user_agent, now, out, aor);
        self.count_outcome(&r);
        r
    }

    /// 400 for a REGISTER whose AOR cannot be made.
    fn refuse_bad_aor(
        &mut self,
        msg: &Message,
        src: SocketAddr,
        why: &'static str,
        out: &mut Vec<u8>,
    ) -> RegisterOutcome {
        let tag = to_tag(msg);
        let opts = ResponseOptions {
            source: Some(src),
            to_tag: Some(&tag),
            ..Default::default()
        };
        write_response(out, msg, 400, "Bad Request", &opts);
        RegisterOutcome {
            status: 400,
            refused: Some(FailReason::BadRequest),
            detail: why,
            ..Default::default()
        }
    }

    fn count_outcome(&mut self, r: &RegisterOutcome) {
        if let Some(reason) = r.refused {
            self.counters.refused[reason_index(reason)] += 1;
        }
        self.counters.added += u64::from(r.added);
        self.counters.refreshed += u64::from(r.refreshed);
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        &mut self,
        msg: &Message,
        src: SocketAddr,
        account: AccountId,
        user_agent: &[u8],
        now: Millis,
        out: &mut Vec<u8>,
        key: &[u8],
    ) -> RegisterOutcome {
        let tag = to_tag(msg);
        let refuse = |out: &mut Vec<u8>, status, reason: &str, why, detail| {
            let opts = ResponseOptions {
                source: Some(src),
                to_tag: Some(&tag),
                ..Default::default()
            };
            write_response(out, msg, status, reason, &opts);
            RegisterOutcome {
                status,
                refused: Some(why),
                detail,
                ..Default::default()
            }
        };
        let (Some(call_id), Some(cseq)) = (msg.call_id(), msg.cseq()) else {
            return refuse(
                out,
                400,
                "Bad Request",
                FailReason::BadRequest,
                "missing Call-ID or CSeq",
            );
        };
        if call_id.len() > MAX_CALL_ID_LEN {
            return refuse(
                out,
                400,
                "Bad Request",
                FailReason::BadRequest,
                "Call-ID too long",
            );
        }
        let hash = self.store.hash(key);
        // Bindings already past their expiry are gone for every purpose: drop them first.
        self.purge_expired(key, hash, now);

        let mut outcome = RegisterOutcome {
            status: 200,
            ..Default::default()
        };

        if msg.contact_star() {
            if msg.contacts().len() > 0 || msg.expires() != Some(0) {
                return refuse(
                    out,
                    400,
                    "Bad Request",
                    FailReason::BadRequest,
                    "Contact: * needs Expires: 0 and no other Contact",
                );
            }
            for i in self.store.chain(key, hash) {
                let b = self.store.b(i);
                if b.call_id() == call_id && cseq.seq <= b.cseq {
                    return refuse(
                        out,
                        500,
                        "Out of Order CSeq",
                        FailReason::StaleCseq,
                        "CSeq not higher than the binding's",
                    );
                }
            }
            while let Some(p) = self.store.find(key, hash) {
                let i = self.store.head(p);
                self.remove(i, RemovalReason::Unregistered, now);
                outcome.removed += 1;
            }
        } else if msg.contacts().len() > 0 {
            if let Err(r) = self.plan(msg, src, key, hash, call_id, cseq.seq, now, out, &tag) {
                return r;
            }
            self.apply(
                msg,
                src,
                account,
                user_agent,
                key,
                hash,
                call_id,
                cseq.seq,
                now,
                &mut outcome,
            );
        }
        // 200 with every binding of the AOR (a query when there was no Contact). The Contact and
        // Date lines are written here, in one buffer, as the builder would write them.
        self.contact_hdr.clear();
        for i in self.store.chain(key, hash) {
            let b = self.store.b(i);
            if self.contact_hdr.is_empty() {
                self.contact_hdr.extend_from_slice(b"Contact: ");
            } else {
                self.contact_hdr.extend_from_slice(b", ");
            }
            self.contact_hdr.push(b'<');
            crate::sip::push_clean(&mut self.contact_hdr, b.contact());
            self.contact_hdr.extend_from_slice(b">;expires=");
            push_num(
                &mut self.contact_hdr,
                b.expires_at.saturating_sub(now).div_ceil(1000),
            );
            if b.q != NO_Q {
                self.contact_hdr.extend_from_slice(b";q=");
                push_q(&mut self.contact_hdr, b.q);
            }
        }
        if !self.contact_hdr.is_empty() {
            self.contact_hdr.extend_from_slice(b"\r\n");
        }
        if let Some(z) = self.wall_at_zero_ms {
            let date = self.date.get(z.saturating_add(now) / 1000);
            self.contact_hdr.extend_from_slice(b"Date: ");
            self.contact_hdr.extend_from_slice(date);
            self.contact_hdr.extend_from_slice(b"\r\n");
        }
        let opts = ResponseOptions {
            source: Some(src),
            to_tag: Some(&tag),
            headers: &[],
            body: b"",
        };
        write_response_with_lines(out, msg, 200, "OK", &opts, &self.contact_hdr);
        outcome
    }

    /// Validation pass: fills `self.plan`; on refusal writes the response and returns Err.
    #[allow(clippy::too_many_arguments)]
    fn plan(
        &mut self,
        msg: &Message,
        src: SocketAddr,
        key: &[u8],
        hash: u32,
        call_id: &[u8],
        cseq: u32,
        _now: Millis,
        out: &mut Vec<u8>,
        tag: &[u8],
    ) -> Result<(), RegisterOutcome> {
        let refuse =
            |out: &mut Vec<u8>, status, reason: &str, why, detail, extra: &[(&str, &[u8])]| {
                let opts = ResponseOptions {
                    source: Some(src),
                    to_tag: Some(tag),
                    headers: extra,
                    body: b"",
                };
                write_response(out, msg, status, reason, &opts);
                Err(RegisterOutcome {
                    status,
                    refused: Some(why),
                    detail,
                    ..Default::default()
                })
            };
        self.plan.clear();
        if msg.contacts().len() > MAX_CONTACTS_PER_REGISTER {
            return refuse(
                out,
                403,
                "Too Many Contacts",
                FailReason::TooManyBindings,
                "too many Contact values in one REGISTER",
                &[],
            );
        }
        let via = msg.top_via();
        for (ci, c) in msg.contacts().enumerate() {
            let uri = c.uri();
            if !matches!(uri.scheme(), Scheme::Sip | Scheme::Sips) {
                return refuse(
                    out,
                    400,
                    "Bad Request",
                    FailReason::BadRequest,
                    "Contact is not a SIP or SIPS URI",
                    &[],
                );
            }
            if uri.as_bytes().len() > MAX_CONTACT_LEN {
                return refuse(
                    out,
                    400,
                    "Bad Request",
                    FailReason::BadRequest,
                    "Contact too long",
                    &[],
                );
            }
            let nat = is_nat(via, &uri, src);
            let expires = c.expires().or(msg.expires()).unwrap_or(if nat {
                self.set.nat_expire_s
            } else {
                self.set.expire_s
            });
            if expires > 0 && expires < self.set.min_expires_s {
                let mut num = [0u8; 10];
                let n = fmt_u32(self.set.min_expires_s, &mut num);
                return refuse(
                    out,
                    423,
                    "Interval Too Brief",
                    FailReason::IntervalTooBrief,
                    "expiry below Min-Expires",
                    &[("Min-Expires", &num[..n])],
                );
            }
            let mut matched = NIL;
            for i in self.store.chain(key, hash) {
                let b = self.store.b(i);
                if let Ok(u) = Uri::parse(b.contact()) {
                    if contact_eq(&u, &uri) {
                        matched = i;
                        break;
                    }
                }
            }
            if matched != NIL {
                let b = self.store.b(matched);
                if b.call_id() == call_id && cseq <= b.cseq {
                    return refuse(
                        out,
                        500,
                        "Out of Order CSeq",
                        FailReason::StaleCseq,
                        "CSeq not higher than the binding's",
                        &[],
                    );
                }
            }
            // A later equal contact in the same request wins.
            for k in 0..self.plan.len() {
                let p = self.plan[k];
                if !p.skip {
                    let other = msg.contacts().nth(p.contact).map(|c| c.uri());
                    if other.is_some_and(|o| contact_eq(&o, &uri)) {
                        self.plan[k].skip = true;
                    }
                }
            }
            self.plan.push(Plan {
                contact: ci,
                matched,
                expires,
                nat,
                skip: false,
            });
        }
        // Binding limit.
        let existing = self.store.chain(key, hash).count();
        let mut staying = existing;
        let mut new = 0usize;
        for p in self.plan.iter().filter(|p| !p.skip) {
            match (p.matched != NIL, p.expires > 0) {
                (true, false) => staying -= 1,
                (false, true) => new += 1,
                _ => {}
            }
        }
        self.evict.clear();
        let max = self.set.max_bindings;
        if staying + new > max {
            let why = if max == 1 {
                FailReason::BindingExists
            } else {
                FailReason::TooManyBindings
            };
            let reason = if max == 1 {
                "Binding Exists"
            } else {
                "Too Many Bindings"
            };
            if new > max || !self.set.replace {
                return refuse(out, 403, reason, why, "binding limit reached", &[]);
            }
            // Replace On: the oldest bindings this request does not touch make room.
            let mut need = staying + new - max;
            while need > 0 {
                let mut oldest = NIL;
                for i in self.store.chain(key, hash) {
                    let touched = self.plan.iter().any(|p| !p.skip && p.matched == i)
                        || self.evict.contains(&i);
                    if touched {
                        continue;
                    }
                    if oldest == NIL
                        || self.store.b(i).registered_at < self.store.b(oldest).registered_at
                    {
                        oldest = i;
                    }
                }
                if oldest == NIL {
                    return refuse(out, 403, reason, why, "binding limit reached", &[]);
                }
                self.evict.push(oldest);
                need -= 1;
            }
        }
        Ok(())
    }

    /// Apply pass (cannot fail).
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        msg: &Message,
        src: SocketAddr,
        account: AccountId,
        user_agent: &[u8],
        key: &[u8],
        hash: u32,
        call_id: &[u8],
        cseq: u32,
        now: Millis,
        outcome: &mut RegisterOutcome,
    ) {
        for k in 0..self.evict.len() {
            let i = self.evict[k];
            self.remove(i, RemovalReason::Replaced, now);
            outcome.replaced += 1;
        }
        let ua = self.uas.intern(user_agent);
        let source = Addr::new(src);
        for k in 0..self.plan.len() {
            let p = self.plan[k];
            if p.skip {
                continue;
            }
            let Some(c) = msg.contacts().nth(p.contact) else {
                continue;
            };
            let uri = c.uri().as_bytes();
            let q = c.q().unwrap_or(NO_Q);
            if p.expires == 0 {
                if p.matched != NIL {
                    self.remove(p.matched, RemovalReason::Unregistered, now);
                    outcome.removed += 1;
                }
                continue;
            }
            let granted = self.grant_ms(p.expires, p.nat);
            let expires_at = now + u64::from(granted);
            if p.matched != NIL {
                let i = p.matched;
                let was_nat = self.store.b(i).nat();
                let old_ua = self.store.b(i).ua;
                {
                    let b = self.store.b_mut(i);
                    if b.contact() != uri || b.call_id() != call_id {
                        let aor_len = b.aor_len as usize;
                        let t = Binding::make_text(&b.text[..aor_len], uri, call_id);
                        b.text = t;
                        b.contact_len = uri.len() as u16;
                    }
                    b.cseq = cseq;
                    b.expires_at = expires_at;
                    b.granted_ms = granted;
                    b.source = source;
                    b.account = account;
                    b.q = q;
                    b.ua = ua;
                    // A REGISTER that got through shows the path works.
                    b.ka_failures = 0;
                    if p.nat {
                        b.flags |= F_NAT;
                    } else {
                        b.flags &= !F_NAT;
                    }
                }
                self.uas.live[old_ua as usize] -= 1;
                self.uas.live[ua as usize] += 1;
                match (was_nat, p.nat) {
                    (false, true) => self.counters.nat_bindings += 1,
                    (true, false) => self.counters.nat_bindings -= 1,
                    _ => {}
                }
                self.schedule(i, KIND_EXPIRY, expires_at);
                if p.nat && !was_nat {
                    self.start_keepalives(i, now);
                }
                outcome.refreshed += 1;
            } else {
                let b = Binding {
                    text: Binding::make_text(key, uri, call_id),
                    aor_len: key.len() as u16,
                    contact_len: uri.len() as u16,
                    source,
                    q,
                    ua,
                    flags: if p.nat { F_NAT } else { 0 },
                    ka_failures: 0,
                    account,
                    cseq,
                    aor_hash: hash,
                    next_in_aor: NIL,
                    granted_ms: granted,
                    expires_at,
                    registered_at: now,
                    next_ka: 0,
                };
                let i = self.store.insert(b);
                self.uas.live[ua as usize] += 1;
                self.counters.bindings_live += 1;
                if p.nat {
                    self.counters.nat_bindings += 1;
                }
                self.schedule(i, KIND_EXPIRY, expires_at);
                if p.nat {
                    self.start_keepalives(i, now);
                }
                outcome.added += 1;
            }
        }
    }

    /// Granted duration in ms (see the module docs).
    fn grant_ms(&mut self, requested: u32, nat: bool) -> u32 {
        let base = if nat {
            self.set.nat_expire_s
        } else {
            self.set.expire_s
        };
        let g = requested.min(base).min(self.set.max_expires_s);
        let g_ms = u64::from(g) * 1000;
        let spread = g_ms * u64::from(self.set.spread_percent) / 100;
        let cut = if spread == 0 {
            0
        } else {
            splitmix(&mut self.rng) % (spread + 1)
        };
        let floor = (u64::from(self.set.min_expires_s) * 1000).min(g_ms);
        (g_ms - cut).max(floor).min(u64::from(u32::MAX)) as u32
    }

    fn purge_expired(&mut self, key: &[u8], hash: u32, now: Millis) {
        loop {
            let dead = self
                .store
                .chain(key, hash)
                .find(|&i| self.store.b(i).expires_at <= now);
            match dead {
                Some(i) => self.remove(i, RemovalReason::Expired, now),
                None => break,
            }
        }
    }

    /// Removes a binding, keeps a tombstone, updates counters.
    fn remove(&mut self, idx: u32, reason: RemovalReason, now: Millis) {
        let b = self.store.remove(idx);
        self.counters.bindings_live -= 1;
        if b.nat() {
            self.counters.nat_bindings -= 1;
        }
        self.uas.live[b.ua as usize] -= 1;
        match reason {
            RemovalReason::Unregistered => self.counters.removed += 1,
            RemovalReason::Expired => self.counters.expired += 1,
            RemovalReason::Replaced => self.counters.replaced += 1,
            RemovalReason::Forced => self.counters.forced += 1,
            RemovalReason::KeepaliveFailed => self.counters.keepalive_removed += 1,
        }
        let nat = b.nat();
        self.tombs.push(Tombstone {
            text: b.text,
            aor_len: b.aor_len,
            contact_len: b.contact_len,
            source: b.source,
            ua: b.ua,
            nat,
            account: b.account,
            registered_at: b.registered_at,
            removed_at: now,
            reason,
        });
    }

    // ---------------------------------------------------------------------------------------
    // Timers

    fn schedule(&mut self, idx: u32, kind: u32, at: Millis) {
        let block = at >> BLOCK_SHIFT;
        let entry = idx << 1 | kind;
        // One descent of the tree, found or not.
        let spare = &mut self.spare_blocks;
        self.blocks
            .entry(block)
            .or_insert_with(|| spare.pop().unwrap_or_default())
            .push(entry);
    }

    fn start_keepalives(&mut self, idx: u32, now: Millis) {
        let iv = self.set.ka_interval_ms;
        if iv == 0 {
            return;
        }
        // Golden-ratio sequence: the n-th NAT binding's phase within the interval.
        self.nat_seq = self.nat_seq.wrapping_add(1);
        let frac = self.nat_seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let phase = (frac * iv) >> 32;
        let base = now - now % iv;
        let mut at = base + phase;
        if at <= now {
            at += iv;
        }
        let b = self.store.b_mut(idx);
        b.next_ka = at;
        b.ka_failures = 0;
        b.flags &= !F_KA_OUT;
        self.schedule(idx, KIND_KEEPALIVE, at);
    }

    /// When to call [`Registrar::on_timers`] next: now again if the last call left work.
    pub fn next_deadline(&self) -> Option<Millis> {
        if self.backlog {
            return Some(self.last_now);
        }
        let w = self.wheel.next_deadline();
        let b = self.blocks.first_key_value().map(|(k, _)| k << BLOCK_SHIFT);
        match (w, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }
    }

    /// Handles due expiries and keepalives, bounded per call (see the module docs). Returns the
    /// number of events handled (removals and keepalives).
    pub fn on_timers<S: RegistrarSink>(&mut self, now: Millis, sink: &mut S) -> usize {
        let now = now.max(self.last_now);
        self.last_now = now;
        self.backlog = false;
        let mut events = 0usize;
        let mut feed = FEED_PER_CALL;
        loop {
            while events < EVENTS_PER_CALL {
                let Some((_, v)) = self.wheel.poll(now) else {
                    break;
                };
                if self.fire(v, now, sink) {
                    events += 1;
                }
            }
            if events >= EVENTS_PER_CALL {
                self.backlog =
                    self.wheel.next_deadline().is_some_and(|d| d <= now) || self.block_due(now);
                break;
            }
            // The wheel has nothing due: its position is `now`, so anything fed now from the
            // current block (or earlier ones) lands on level 0.
            if !self.block_due(now) {
                break;
            }
            if feed == 0 {
                self.backlog = true;
                break;
            }
            self.feed(now, &mut feed);
        }
        events
    }

    fn block_due(&self, now: Millis) -> bool {
        self.blocks
            .first_key_value()
            .is_some_and(|(&k, _)| k <= now >> BLOCK_SHIFT)
    }

    /// Moves schedule entries of due blocks into the wheel, at most `budget`.
    fn feed(&mut self, now: Millis, budget: &mut usize) {
        while *budget > 0 {
            let Some(mut first) = self.blocks.first_entry() else {
                return;
            };
            let block = *first.key();
            if block > now >> BLOCK_SHIFT {
                return;
            }
            let v = first.get_mut();
            let Some(entry) = v.pop() else {
                let mut v = first.remove();
                if self.spare_blocks.len() < 1024 {
                    v.clear();
                    self.spare_blocks.push(v);
                }
                continue;
            };
            *budget -= 1;
            let idx = entry >> 1;
            let kind = entry & 1;
            let Some(b) = self.store.get(idx) else {
                continue;
            };
            let at = if kind == KIND_EXPIRY {
                b.expires_at
            } else if b.nat() && self.set.ka_interval_ms > 0 {
                b.next_ka
            } else {
                continue;
            };
            if at >> BLOCK_SHIFT != block {
                continue; // stale: the binding was refreshed or replaced since
            }
            let gen = u64::from(self.store.generation(idx));
            self.wheel.insert(at, gen << 32 | u64::from(entry));
        }
    }

    /// Handles one wheel event; true when it did something.
    fn fire<S: RegistrarSink>(&mut self, v: u64, now: Millis, sink: &mut S) -> bool {
        let gen = (v >> 32) as u32;
        let entry = v as u32;
        let idx = entry >> 1;
        let kind = entry & 1;
        let Some(b) = self.store.get(idx) else {
            return false;
        };
        if self.store.generation(idx) != gen {
            return false;
        }
        if kind == KIND_EXPIRY {
            if b.expires_at > now {
                return false;
            }
            self.remove(idx, RemovalReason::Expired, now);
            return true;
        }
        if !b.nat() || b.next_ka > now || self.set.ka_interval_ms == 0 {
            return false;
        }
        let iv = self.set.ka_interval_ms;
        let mut next = b.next_ka + iv;
        if next <= now {
            next += (now - next) / iv * iv + iv;
        }
        let outstanding = b.flags & F_KA_OUT != 0;
        self.store.b_mut(idx).next_ka = next;
        self.schedule(idx, KIND_KEEPALIVE, next);
        if outstanding {
            self.counters.keepalives_skipped += 1;
            return true;
        }
        self.send_keepalive(idx, sink);
        true
    }

    fn send_keepalive<S: RegistrarSink>(&mut self, idx: u32, sink: &mut S) {
        self.unique = self.unique.wrapping_add(1);
        let unique = self.unique;
        let token = self.store.id(idx).to_u64();
        let local = self.local;
        let b = self.store.b(idx);
        let dst = b.source.socket();
        // R-URI: the contact without its `?headers`.
        let contact = b.contact();
        let ruri = match Uri::parse(contact).ok().and_then(|u| u.headers()) {
            Some(h) => &contact[..contact.len() - h.len() - 1],
            None => contact,
        };
        // From/To: the AOR as a SIP URI (user re-escaped).
        self.uri_buf.clear();
        self.uri_buf.extend_from_slice(b"sip:");
        let aor = b.aor();
        let at = aor.iter().rposition(|&c| c == b'@').unwrap_or(0);
        if at > 0 {
            for &c in &aor[..at] {
                if user_char(c) {
                    self.uri_buf.push(c);
                } else {
                    self.uri_buf.extend_from_slice(b"%");
                    self.uri_buf
                        .extend_from_slice(format_args_hex(c).as_slice());
                }
            }
            self.uri_buf.push(b'@');
        }
        self.uri_buf.extend_from_slice(&aor[at + 1..]);
        // `<salt>ka<unique>`: the salt (2 hex digits) picks a Call-ID whose steering hash is this
        // shard, so the kernel delivers the answer here rather than to a shard that would hand it
        // over (at worst, after 256 misses, the last one is used and the answer is handed over).
        for salt in 0..=255u8 {
            self.call_id_buf.clear();
            let _ = std::io::Write::write_fmt(&mut self.call_id_buf, format_args!("{salt:02x}ka"));
            push_hex(&mut self.call_id_buf, unique);
            if crate::sip::steer::steer_shard(&self.call_id_buf, self.shards) == self.shard {
                break;
            }
        }
        let mut sent_by = [0u8; 64];
        let sent_by = {
            use std::io::Write;
            let mut cur = std::io::Cursor::new(&mut sent_by[..]);
            let _ = write!(cur, "{local}");
            let n = cur.position() as usize;
            &sent_by[..n]
        };
        let mut branch_buf = [0u8; BRANCH_LEN];
        let branch = make_branch(self.shard, unique, &mut branch_buf);
        let mut from_tag = [0u8; 16];
        hex16(token ^ unique, &mut from_tag);
        let spec = RequestSpec {
            method: Method::Options,
            uri: ruri,
            transport: "UDP",
            sent_by,
            branch,
            rport: true,
            max_forwards: 70,
            from_display: None,
            from_uri: &self.uri_buf,
            from_tag: &from_tag,
            to_display: None,
            to_uri: &self.uri_buf,
            to_tag: None,
            call_id: &self.call_id_buf,
            cseq: 1,
            contact: None,
            expires: None,
            headers: &[],
            body: b"",
        };
        write_request(&mut self.req, &spec);
        sink.start_keepalive(dst, &self.req, branch, token);
        self.store.b_mut(idx).flags |= F_KA_OUT;
        self.counters.keepalives_sent += 1;
    }

    /// The result of a keepalive started with `token`: `answered` when any response came.
    /// Returns true when the binding was removed (too many failures). Stale tokens are ignored.
    pub fn on_keepalive_result(&mut self, token: u64, answered: bool, now: Millis) -> bool {
        let id = BindingId::from_u64(token);
        if self.store.get_id(id).is_none() {
            return false;
        }
        let max = self.set.ka_max_failures;
        let b = self.store.b_mut(id.index);
        b.flags &= !F_KA_OUT;
        if answered {
            b.ka_failures = 0;
            return false;
        }
        b.ka_failures = b.ka_failures.saturating_add(1);
        self.counters.keepalives_failed += 1;
        if u32::from(b.ka_failures) >= max {
            self.remove(id.index, RemovalReason::KeepaliveFailed, now);
            return true;
        }
        false
    }

    // ---------------------------------------------------------------------------------------
    // Queries

    fn view(&self, idx: u32) -> ContactView<'_> {
        let b = self.store.b(idx);
        let source = b.source.socket();
        let send_to = if b.nat() {
            source
        } else {
            Uri::parse(b.contact())
                .ok()
                .and_then(|u| {
                    let ip = host_ip(u.host())?;
                    let port = u.port().unwrap_or(if u.scheme() == Scheme::Sips {
                        5061
                    } else {
                        5060
                    });
                    Some(SocketAddr::new(ip, port))
                })
                .unwrap_or(source)
        };
        ContactView {
            id: self.store.id(idx),
            uri: b.contact(),
            source,
            send_to,
            q: (b.q != NO_Q).then_some(b.q),
            expires_at: b.expires_at,
            nat: b.nat(),
        }
    }

    /// The live (unexpired at `now`) contacts of an AOR key (from [`aor_key`]).
    pub fn lookup<'a>(
        &'a self,
        aor_key: &'a [u8],
        now: Millis,
    ) -> impl Iterator<Item = ContactView<'a>> + 'a {
        let hash = self.store.hash(aor_key);
        self.store
            .chain(aor_key, hash)
            .filter(move |&i| self.store.b(i).expires_at > now)
            .map(move |i| self.view(i))
    }

    fn status_of(b: &Binding, now: Millis) -> Status {
        let left = b.expires_at.saturating_sub(now);
        let window = (u64::from(b.granted_ms) / 10).max(60_000);
        if left <= window {
            Status::Expiring
        } else {
            Status::Registered
        }
    }

    fn row(&self, idx: u32, now: Millis) -> BindingRow<'_> {
        let b = self.store.b(idx);
        BindingRow {
            id: Some(self.store.id(idx)),
            aor: b.aor(),
            contact: b.contact(),
            call_id: b.call_id(),
            source: b.source.socket(),
            account: b.account,
            user_agent: self.uas.name(b.ua),
            registered_at: b.registered_at,
            expires_at: b.expires_at,
            status: Self::status_of(b, now),
            nat: b.nat(),
            removal: None,
        }
    }

    /// One binding by id (None when gone or expired at `now`).
    pub fn binding(&self, id: BindingId, now: Millis) -> Option<BindingRow<'_>> {
        let b = self.store.get_id(id)?;
        (b.expires_at > now).then(|| self.row(id.index, now))
    }

    /// The management table: live bindings (slab order) then tombstones (newest first),
    /// filtered, one page of it. O(bindings) per call: for the admin side, not the hot path.
    pub fn list<'s>(&'s self, filter: &ListFilter, page: Page, now: Millis) -> ListPage<'s> {
        let mut rows: Vec<BindingRow<'s>> = Vec::new();
        let mut total = 0usize;
        self.visit(filter, now, |row| {
            if total >= page.offset && rows.len() < page.limit {
                rows.push(row);
            }
            total += 1;
        });
        ListPage { rows, total }
    }

    /// Calls `f` with every row of the management table that matches `filter`, in
    /// [`list`](Self::list) order, without collecting them (callers keep what they need, e.g.
    /// the first rows in another order).
    pub fn visit<'s>(
        &'s self,
        filter: &ListFilter,
        now: Millis,
        mut f: impl FnMut(BindingRow<'s>),
    ) {
        let ip_ok = |src: IpAddr, contact: &[u8]| match filter.ip {
            None => true,
            Some(flt) => {
                let cip = Uri::parse(contact).ok().and_then(|u| host_ip(u.host()));
                let m = |ip: IpAddr| match flt {
                    IpFilter::Addr(a) => ip == a.to_canonical(),
                    IpFilter::Net(n, p) => in_net(ip, n, p),
                };
                m(src) || cip.is_some_and(m)
            }
        };
        let number_ok = |aor: &[u8]| match filter.number {
            None => true,
            Some(n) => aor.starts_with(n),
        };
        if filter.status != Some(Status::Unregistered) {
            for (i, b) in self.store.iter_live() {
                if b.expires_at <= now {
                    continue;
                }
                if filter.account.is_some_and(|a| a != b.account)
                    || !number_ok(b.aor())
                    || !ip_ok(b.source.ip(), b.contact())
                {
                    continue;
                }
                let st = Self::status_of(b, now);
                if filter.status.is_some_and(|s| s != st) {
                    continue;
                }
                f(self.row(i, now));
            }
        }
        if matches!(filter.status, None | Some(Status::Unregistered)) {
            for t in self.tombs.ring.iter().rev() {
                if filter.account.is_some_and(|a| a != t.account)
                    || !number_ok(t.aor())
                    || !ip_ok(t.source.ip(), t.contact())
                {
                    continue;
                }
                f(BindingRow {
                    id: None,
                    aor: t.aor(),
                    contact: t.contact(),
                    call_id: t.call_id(),
                    source: t.source.socket(),
                    account: t.account,
                    user_agent: self.uas.name(t.ua),
                    registered_at: t.registered_at,
                    expires_at: t.removed_at,
                    status: Status::Unregistered,
                    nat: t.nat,
                    removal: Some(t.reason),
                });
            }
        }
    }

    /// Live bindings in slab order from slot `from`: at most `max_rows` rows, looking at most
    /// at `max_slots` slots, so one call does bounded work whatever the table size (the admin
    /// side's streamed export and network breakdown walk the table a slice per mail). Returns
    /// the rows and the slot to continue from (None: the end was reached). A binding that
    /// stays live for the whole walk is seen exactly once (slots of live bindings never move);
    /// one added or removed meanwhile may or may not be.
    pub fn scan(
        &self,
        from: u32,
        max_rows: usize,
        max_slots: usize,
        now: Millis,
    ) -> (Vec<BindingRow<'_>>, Option<u32>) {
        let slots = &self.store.slots;
        let mut rows = Vec::with_capacity(max_rows.min(4096));
        let start = (from as usize).min(slots.len());
        let end = start.saturating_add(max_slots.max(1)).min(slots.len());
        let mut i = start;
        while i < end && rows.len() < max_rows {
            if let Some(b) = &slots[i].binding {
                if b.expires_at > now {
                    rows.push(self.row(i as u32, now));
                }
            }
            i += 1;
        }
        let next = (i < slots.len()).then_some(i as u32);
        (rows, next)
    }

    /// Removes one binding or every binding of an AOR at once (the endpoint learns on its next
    /// refresh). Returns how many were removed.
    pub fn force_unregister(&mut self, target: Target, now: Millis) -> usize {
        match target {
            Target::Binding(id) => {
                if self.store.get_id(id).is_some() {
                    self.remove(id.index, RemovalReason::Forced, now);
                    1
                } else {
                    0
                }
            }
            Target::Aor(key) => {
                let hash = self.store.hash(key);
                let mut n = 0;
                while let Some(p) = self.store.find(key, hash) {
                    let i = self.store.head(p);
                    self.remove(i, RemovalReason::Forced, now);
                    n += 1;
                }
                n
            }
        }
    }

    /// Counters (live counts include expired bindings whose removal is still pending).
    pub fn counts(&self) -> RegistrarCounters {
        self.counters
    }

    /// Live bindings per User-Agent (only those with at least one).
    pub fn user_agent_counts(&self) -> impl Iterator<Item = (&[u8], u32)> + '_ {
        self.uas.counts()
    }

    /// Pending entries of the coarse schedule and the wheel (for tests and metrics).
    pub fn pending_timers(&self) -> (usize, usize) {
        (self.blocks.values().map(Vec::len).sum(), self.wheel.len())
    }
}

fn hex16(v: u64, out: &mut [u8; 16]) {
    *out = crate::sip::hex16(v);
}

fn format_args_hex(c: u8) -> [u8; 2] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    [HEX[(c >> 4) as usize], HEX[(c & 0xF) as usize]]
}

fn fmt_u32(v: u32, buf: &mut [u8; 10]) -> usize {
    let mut tmp = [0u8; 10];
    let mut n = 0;
    let mut x = v;
    loop {
        tmp[n] = b'0' + (x % 10) as u8;
        n += 1;
        x /= 10;
        if x == 0 {
            break;
        }
    }
    for k in 0..n {
        buf[k] = tmp[n - 1 - k];
    }
    n
}

/// A To-tag stable across retransmissions of one REGISTER: `r` + 16 hex digits of a hash of
/// Call-ID, CSeq and From-tag.
fn to_tag(msg: &Message) -> [u8; 17] {
    let st = ahash::RandomState::with_seeds(7, 11, 13, 17);
    let h = st.hash_one((
        msg.call_id().unwrap_or_default(),
        msg.cseq().map(|c| c.seq).unwrap_or(0),
        msg.from().and_then(|f| f.tag()).unwrap_or_default(),
    ));
    let mut t = [0u8; 17];
    t[0] = b'r';
    let mut x = [0u8; 16];
    hex16(h, &mut x);
    t[1..].copy_from_slice(&x);
    t
}
