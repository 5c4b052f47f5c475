//! RFC 3261 §17 transactions (client and server, INVITE and non-INVITE) over UDP, sans-IO.
//!
//! **Owns:** the transaction state machines of one shard, the VOS3000 resend schedule
//! ([`TransactionTimers`]), the matching tables (§17.1.3, §17.2.3 and the RFC 2543 fallback),
//! the bytes each transaction must keep for retransmission, its own [`TimerWheel`], and counters.
//! Branch generation with the owner shard written in is in [`make_branch`] / [`shard_of_branch`].
//!
//! **Must not:** touch sockets, threads, clocks or locks; parse or build SIP text. Callers pass the
//! fields they already extracted (branch, sent-by, method, CSeq method, status) and ready-made
//! datagram bytes; time comes in as [`Millis`]. Imports only `config` and `timer`.
//!
//! # API in one screen
//! One [`TransactionLayer`] per shard. Output goes to a [`TxSink`] the caller implements
//! (`send(dst, bytes)` — copy the bytes, the layer reuses its buffers — and `event(TxEvent)`).
//! Nothing is allocated per message in steady state: transaction slots, their key and datagram
//! buffers, and the scratch buffers are reused.
//!
//! Client side (we send a request):
//! - [`TransactionLayer::start_client`]`(ClientRequest { method, branch, dst, bytes, token }, now, sink)`
//!   sends the request at once and runs the resend schedule. `method == "INVITE"` makes an INVITE
//!   transaction; anything else but ACK a non-INVITE one (ACK is never a transaction).
//! - [`TransactionLayer::on_response`]`(&ResponseInfo { branch, cseq_method, status }, now, sink, build_ack)`
//!   matches by (branch, CSeq method). Returns [`ResponseOutcome::Pass`] (hand it to the owner),
//!   `Absorbed` (a retransmitted final: the layer re-sent the ACK itself) or `NoMatch` (stray).
//!   `build_ack(original_request, out)` is called only for the first non-2xx final to an INVITE:
//!   write the ACK (§17.1.1.3) into `out`; the layer sends it, stores it and re-sends it for every
//!   retransmitted final until Timer D (32 s).
//! - [`TransactionLayer::start_cancel`]`(invite_id, bytes, token, now, sink)`: CANCEL as its own
//!   non-INVITE client transaction on the INVITE's branch and destination. Allowed once the INVITE
//!   got a provisional and no final (§9.1); the INVITE then waits 64·T1 for its final (the trying
//!   and ringing limits no longer apply) before `NoFinalAfterCancel`.
//! - Endings with no (adequate) response arrive as [`TxEvent::Timeout`] with a [`TimeoutCause`]
//!   and the owner's token. An INVITE client transaction that timed out lingers 64·T1 silently so
//!   the owner can still CANCEL it, a late non-2xx is ACKed, and a late 2xx is passed up
//!   (`late: true`) instead of being lost; so is the first late provisional when the INVITE had
//!   none before (the owner can then CANCEL the branch; further ones are absorbed).
//!
//! Server side (we received a request):
//! - [`TransactionLayer::on_request`]`(&RequestInfo { method, key, reply_to }, now, sink)` returns a
//!   [`RequestOutcome`]: `New(id)` (created; the owner must `respond` or `terminate`), `NewCancel`
//!   (the CANCEL's own transaction plus the INVITE server transaction it targets, if any),
//!   `Retransmission` (absorbed; the last response re-sent if there is one), `AckAbsorbed` (ACK of
//!   our non-2xx final), `AckToTu` (ACK for a 2xx: the dialog layer's business) or `Ignored`.
//!   [`ServerKey::Rfc3261`] is (branch, sent-by); requests whose branch lacks the magic cookie
//!   ([`has_magic_cookie`]) use [`ServerKey::Rfc2543`].
//! - [`TransactionLayer::respond`]`(id, status, bytes, now, sink)` stores and sends a response.
//!
//! Driving: call [`TransactionLayer::on_timers`]`(now, sink)` when [`TransactionLayer::next_deadline`]
//! is reached. [`TransactionLayer::counters`] gives live counts, retransmissions and timeouts.
//!
//! # Timing (UDP; T1 = 500 ms, T4 = 5 s, 64·T1 = 32 s)
//! With waits `I[0..n)` (`resend_intervals_ms`) and `m = min(send_retry, n - 1)` re-sends, a request
//! (or an INVITE server's non-2xx final) is sent at 0 and re-sent at `I0`, `I0+I1`, …, `I0+…+I(m-1)`;
//! the attempt fails when `I0+…+Im` runs out (default: 10 sends up to 27.5 s, failure at 31.5 s).
//! - Non-INVITE client: any response stops re-sends; no final by the end of the window → `NoResponse`.
//!   Final → Completed for T4 (Timer K) absorbing retransmitted finals.
//! - INVITE client: also fails at `timeout_invite_ms` with no response (`InviteTimeout`, whichever
//!   of the two comes first). The first 1xx stops re-sends and both of those timers; after a 100 (or
//!   another non-18x 1xx) it fails `timeout_trying_ms` later (`TryingTimeout`) unless an 18x or final
//!   comes; after the first 18x, `timeout_ringing_ms` later (`RingingTimeout`) unless a final comes.
//!   Non-2xx final: ACK, Completed, Timer D = 32 s. 2xx: Accepted (RFC 6026) for 64·T1, every 2xx
//!   passed up so the owner can (re-)ACK.
//! - INVITE server: 1xx stored and re-sent on a retransmitted INVITE; non-2xx final re-sent on the
//!   schedule above until the ACK (then Confirmed for T4, Timer I, absorbing ACKs), or `AckTimeout`
//!   at the end of the window. 2xx: Accepted for 64·T1 (Timer L), retransmitted INVITEs absorbed.
//! - Non-INVITE server: last response re-sent for each retransmitted request; after the final,
//!   Completed for 64·T1 (Timer J).
//!
//! Server transactions wait for the owner without a time limit until it responds: the owner must
//! eventually `respond` with a final or `terminate` them (the proxy core's client timers bound this).
//!
//! # Design notes
//! - Storage: a slab (`Vec` + free list) of slots addressed by [`TxId`] (index + generation).
//!   Freed slots keep their buffers (up to 8 KiB), so steady state allocates nothing; keys up to
//!   96 bytes live inside the slot, so a match costs one table probe and one slot visit.
//! - Matching: keys are length-prefixed byte strings (`C` method branch; `S` method-class branch
//!   sent-by; `L` the RFC 2543 fields), hashed once with a per-layer random ahash (no hash
//!   flooding). The table maps hash → first slot; slots with equal hashes form an intrusive chain,
//!   and the full key is always compared.
//! - Timers: at most two per transaction in the shard's [`TimerWheel`]: the re-send timer and the
//!   lifetime timer (failure or cleanup). Timer J of a completed non-INVITE server transaction
//!   (the most common one: every REGISTER) is always `now + 64·T1`, so it goes into a FIFO
//!   instead, due in arming order (no wheel insert, cancel or cascade); a FIFO entry whose slot
//!   was removed or reused meanwhile is recognised by the slot's generation and skipped. Each fired entry is checked against the slot's
//!   generation and current handle, so stale entries are harmless. Re-sends are scheduled from
//!   the previous deadline, not from the poll time, so a late poll does not shift the grid, and a
//!   re-send that would coincide with or follow the failure deadline is never armed.
//! - Deliberate differences from RFC 3261's UDP timers: VOS3000's schedule replaces Timers A/B/E/F
//!   (client) and G/H (INVITE server). A failed INVITE client transaction lingers 64·T1 instead of
//!   vanishing (CANCEL, late finals). The RFC 2543 ACK's To tag is not compared (see
//!   [`LegacyKey`]). The layer sends no automatic 100 Trying: the owner does.

mod branch;

use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;

use ahash::RandomState;

use crate::config::TransactionTimers;
use crate::timer::{Millis, TimerHandle, TimerWheel};

pub use branch::{
    has_magic_cookie, make_branch, shard_by_hash, shard_of_branch, BRANCH_LEN, MAX_SHARD,
};

/// RFC 3261 T1 (RTT estimate), ms.
pub const T1_MS: Millis = 500;
/// RFC 3261 T4 (max time a message stays in the network), ms: Timers I and K over UDP.
pub const T4_MS: Millis = 5_000;
/// 64·T1: Timers D (UDP), J, L, M and the CANCEL guard of §9.1, ms.
pub const T1X64_MS: Millis = 64 * T1_MS;

/// The owner's value, handed back with every response passed up and every timeout.
pub type Token = u64;

/// A transaction: slot index plus generation, so a stale id never reaches a reused slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxId {
    index: u32,
    generation: u32,
}

/// Why a transaction ended without an adequate response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeoutCause {
    /// Client: the resend schedule ran out with no response (non-INVITE: no final).
    NoResponse,
    /// INVITE client: no response at all within `timeout_invite_ms`.
    InviteTimeout,
    /// INVITE client: 100 Trying but no 18x/final within `timeout_trying_ms`.
    TryingTimeout,
    /// INVITE client: 18x but no final within `timeout_ringing_ms`.
    RingingTimeout,
    /// INVITE client: CANCEL sent, still no final after 64·T1 (§9.1).
    NoFinalAfterCancel,
    /// INVITE server: non-2xx final re-sent for the whole schedule, no ACK.
    AckTimeout,
}

/// What the layer tells its owner outside of a call's return value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxEvent {
    /// The transaction failed. Non-INVITE and server transactions are gone; an INVITE client
    /// transaction lingers 64·T1 (CANCEL possible, late finals ACKed / passed up with `late`).
    Timeout {
        id: TxId,
        token: Token,
        cause: TimeoutCause,
    },
}

/// Where the layer's output goes; implemented by the caller (and by test harnesses).
pub trait TxSink {
    /// Send a datagram. Copy `data`: the layer reuses the buffer.
    fn send(&mut self, dst: SocketAddr, data: &[u8]);
    /// Report an event to the owner.
    fn event(&mut self, ev: TxEvent);
}

/// State of a transaction (RFC 3261 §17 names, plus RFC 6026 Accepted and our TimedOut).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxState {
    /// INVITE client, no response yet.
    Calling,
    /// Non-INVITE client or server, no response yet.
    Trying,
    /// Provisional received (client) or the INVITE server / non-INVITE server after a 1xx.
    Proceeding,
    /// Non-2xx final (INVITE) or any final (non-INVITE) sent or received.
    Completed,
    /// INVITE server: ACK received for our non-2xx final.
    Confirmed,
    /// INVITE, 2xx sent or received (RFC 6026).
    Accepted,
    /// INVITE client after a [`TxEvent::Timeout`], lingering.
    TimedOut,
}

/// Why a transaction could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// A live transaction already has this key.
    Duplicate,
    /// ACK never starts a client transaction.
    AckIsNotATransaction,
    /// `start_cancel`: the id is stale or not an INVITE client transaction.
    NoSuchInvite,
    /// `start_cancel`: no provisional yet, or a final already arrived (§9.1).
    NotCancellable,
}

/// Why `respond` refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RespondError {
    /// Stale id or not a server transaction.
    NoSuchTransaction,
    /// The transaction already sent its final (only 2xx may follow a 2xx to an INVITE).
    FinalAlreadySent,
    /// Status outside 100..=699.
    BadStatus,
}

/// A request to send as a client transaction.
#[derive(Clone, Copy, Debug)]
pub struct ClientRequest<'a> {
    /// Request method as on the wire (case-sensitive), e.g. `b"INVITE"`.
    pub method: &'a [u8],
    /// Branch of our top Via (normally from [`make_branch`]).
    pub branch: &'a [u8],
    /// Next hop.
    pub dst: SocketAddr,
    /// The whole datagram; kept for retransmission.
    pub bytes: &'a [u8],
    pub token: Token,
}

/// The fields of a received response that matching needs (§17.1.3).
#[derive(Clone, Copy, Debug)]
pub struct ResponseInfo<'a> {
    /// Branch of the top Via.
    pub branch: &'a [u8],
    /// Method of the CSeq header.
    pub cseq_method: &'a [u8],
    pub status: u16,
}

/// What to do with a received response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseOutcome {
    /// Hand the response to the owner. `late`: the transaction had already reported a timeout.
    Pass { id: TxId, token: Token, late: bool },
    /// Absorbed by the transaction (retransmitted final; the ACK was re-sent if it is an INVITE's).
    Absorbed { id: TxId },
    /// No transaction: a stray response (a proxy forwards a stray 2xx statelessly, §16.7).
    NoMatch,
}

/// The RFC 2543 matching fields (§17.2.3, for a branch without the magic cookie).
#[derive(Clone, Copy, Debug)]
pub struct LegacyKey<'a> {
    pub request_uri: &'a [u8],
    /// To tag (empty if none). Compared for every request except ACK, whose To tag is that of our
    /// response, which the layer does not parse.
    pub to_tag: &'a [u8],
    pub from_tag: &'a [u8],
    pub call_id: &'a [u8],
    /// CSeq number (not the method).
    pub cseq: u32,
    /// The whole top Via header value.
    pub top_via: &'a [u8],
}

/// How a received request is matched to a server transaction.
#[derive(Clone, Copy, Debug)]
pub enum ServerKey<'a> {
    /// Branch with the magic cookie, and the sent-by (`host[:port]`) of the top Via.
    Rfc3261 {
        branch: &'a [u8],
        sent_by: &'a [u8],
    },
    Rfc2543(LegacyKey<'a>),
}

/// The fields of a received request the layer needs.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo<'a> {
    /// Request method as on the wire.
    pub method: &'a [u8],
    pub key: ServerKey<'a>,
    /// Where responses go (§18.2.2: received/rport/sent-by, as the caller works it out).
    pub reply_to: SocketAddr,
}

/// What a received request is to the transaction layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A new server transaction (token 0; see [`TransactionLayer::set_token`]). Pass the request
    /// to the owner, which must `respond` (or `terminate`).
    New(TxId),
    /// A new CANCEL: `id` is the CANCEL's own server transaction (answer it with 200, or 481 when
    /// `target` is None); `target` is the INVITE server transaction it cancels, if live.
    NewCancel { id: TxId, target: Option<TxId> },
    /// A retransmission, absorbed; `resent`: the last response was sent again.
    Retransmission { id: TxId, resent: bool },
    /// ACK for our non-2xx final, absorbed.
    AckAbsorbed { id: TxId },
    /// ACK that belongs to the owner (ACK for a 2xx; `tx` is set if it matched an Accepted one).
    AckToTu { tx: Option<TxId> },
    /// Nothing to do (e.g. ACK before any final).
    Ignored,
}

/// Counters of one layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxCounters {
    pub live_client: u64,
    pub live_server: u64,
    pub created_client: u64,
    pub created_server: u64,
    /// Re-sends of requests, ACKs and responses (not first sends).
    pub retransmissions_sent: u64,
    /// Retransmitted requests and responses absorbed (not passed to the owner).
    pub retransmissions_absorbed: u64,
    pub timeout_no_response: u64,
    pub timeout_invite: u64,
    pub timeout_trying: u64,
    pub timeout_ringing: u64,
    pub timeout_after_cancel: u64,
    pub timeout_ack: u64,
}

impl TxCounters {
    /// As (name, value) pairs for logs and metrics.
    pub fn pairs(&self) -> [(&'static str, u64); 12] {
        [
            ("tx_live_client", self.live_client),
            ("tx_live_server", self.live_server),
            ("tx_created_client", self.created_client),
            ("tx_created_server", self.created_server),
            ("tx_retransmissions_sent", self.retransmissions_sent),
            ("tx_retransmissions_absorbed", self.retransmissions_absorbed),
            ("tx_timeout_no_response", self.timeout_no_response),
            ("tx_timeout_invite", self.timeout_invite),
            ("tx_timeout_trying", self.timeout_trying),
            ("tx_timeout_ringing", self.timeout_ringing),
            ("tx_timeout_after_cancel", self.timeout_after_cancel),
            ("tx_timeout_ack", self.timeout_ack),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------

const NIL: u32 = u32::MAX;
/// Buffers larger than this are released when their slot is freed, so one jumbo message does not
/// pin memory for ever.
const KEEP_CAPACITY: usize = 8 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    InviteClient,
    NonInviteClient,
    InviteServer,
    NonInviteServer,
}

impl Kind {
    fn is_client(self) -> bool {
        matches!(self, Kind::InviteClient | Kind::NonInviteClient)
    }
}

/// What the lifetime timer does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Fail(TimeoutCause),
    Cleanup,
}

#[derive(Clone, Copy, Debug)]
enum Which {
    Retx,
    Life,
}

/// Timer payload: which slot, which generation, which of its two timers.
#[derive(Clone, Copy, Debug)]
struct TimerRef {
    index: u32,
    generation: u32,
    which: Which,
}

struct Tx {
    kind: Kind,
    state: TxState,
    hash: u64,
    hash_next: u32,
    /// Matching key; the hashed part, then an RFC 2543 To tag.
    key: KeyStore,
    /// The datagram to (re-)send: request, ACK, or last response.
    buf: Vec<u8>,
    peer: SocketAddr,
    token: Token,
    /// Re-sends done in the current schedule.
    step: usize,
    retx: Option<TimerHandle>,
    retx_due: Millis,
    life: Option<TimerHandle>,
    life_due: Millis,
    life_kind: Life,
    got_trying: bool,
    got_ringing: bool,
    cancelled: bool,
    failed: bool,
    has_provisional: bool,
    /// Timer J runs in the layer's `linger` FIFO (not in the wheel).
    lingering: bool,
}

/// Bytes of keys up to this size live inside the slot, so matching does not chase a pointer.
const INLINE_KEY: usize = 96;

/// A transaction's key: the hashed part then unhashed extra bytes, inline when small.
struct KeyStore {
    hashed_len: u32,
    len: u32,
    inline: [u8; INLINE_KEY],
    heap: Vec<u8>,
}

impl Default for KeyStore {
    fn default() -> Self {
        Self {
            hashed_len: 0,
            len: 0,
            inline: [0; INLINE_KEY],
            heap: Vec::new(),
        }
    }
}

impl KeyStore {
    fn set(&mut self, hashed: &[u8], extra: &[u8]) {
        let len = hashed.len() + extra.len();
        self.hashed_len = hashed.len() as u32;
        self.len = len as u32;
        if len <= INLINE_KEY {
            self.inline[..hashed.len()].copy_from_slice(hashed);
            self.inline[hashed.len()..len].copy_from_slice(extra);
        } else {
            self.heap.clear();
            self.heap.extend_from_slice(hashed);
            self.heap.extend_from_slice(extra);
        }
    }

    fn bytes(&self) -> &[u8] {
        let len = self.len as usize;
        if len <= INLINE_KEY {
            &self.inline[..len]
        } else {
            &self.heap
        }
    }

    fn hashed(&self) -> &[u8] {
        &self.bytes()[..self.hashed_len as usize]
    }

    fn extra(&self) -> &[u8] {
        &self.bytes()[self.hashed_len as usize..]
    }

    fn clear(&mut self) {
        self.len = 0;
        self.hashed_len = 0;
        if self.heap.capacity() > KEEP_CAPACITY {
            self.heap = Vec::new();
        }
    }
}

struct Slot {
    generation: u32,
    live: bool,
    next_free: u32,
    tx: Tx,
}

/// Identity hasher for keys that are already ahash values.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type HeadMap = std::collections::HashMap<u64, u32, BuildHasherDefault<PreHashed>>;

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_le_bytes());
    out.extend_from_slice(field);
}

/// Client key: 'C', method, branch.
fn client_key(out: &mut Vec<u8>, method: &[u8], branch: &[u8]) {
    out.clear();
    out.push(b'C');
    push_field(out, method);
    push_field(out, branch);
}

/// Branch stored in a client key.
fn branch_of_client_key(key: &[u8]) -> &[u8] {
    let mlen = u32::from_le_bytes([key[1], key[2], key[3], key[4]]) as usize;
    &key[5 + mlen + 4..]
}

/// Server key: method class ('INVITE' for ACK), then the 3261 or 2543 fields. Returns the To tag
/// that must also match (RFC 2543 keys, non-ACK requests), which is stored but not hashed.
fn server_key<'a>(out: &mut Vec<u8>, method: &[u8], key: &ServerKey<'a>) -> Option<&'a [u8]> {
    let class: &[u8] = if method == b"ACK" { b"INVITE" } else { method };
    out.clear();
    match key {
        ServerKey::Rfc3261 { branch, sent_by } => {
            out.push(b'S');
            push_field(out, class);
            push_field(out, branch);
            push_field(out, sent_by);
            None
        }
        ServerKey::Rfc2543(k) => {
            out.push(b'L');
            push_field(out, class);
            push_field(out, k.request_uri);
            push_field(out, k.from_tag);
            push_field(out, k.call_id);
            out.extend_from_slice(&k.cseq.to_le_bytes());
            push_field(out, k.top_via);
            if method == b"ACK" {
                None
            } else {
                Some(k.to_tag)
            }
        }
    }
}

/// The transaction layer of one shard. See the module documentation.
pub struct TransactionLayer {
    slots: Vec<Slot>,
    free_head: u32,
    heads: HeadMap,
    hasher: RandomState,
    wheel: TimerWheel<TimerRef>,
    /// Waits of the resend schedule.
    intervals: Vec<Millis>,
    /// Re-sends allowed: min(send_retry, intervals - 1).
    max_resends: usize,
    /// End of the window: sum of the first `max_resends + 1` waits.
    window: Millis,
    timeout_invite: Millis,
    timeout_trying: Millis,
    timeout_ringing: Millis,
    counters: TxCounters,
    key_scratch: Vec<u8>,
    aux_scratch: Vec<u8>,
    /// Timer J of completed non-INVITE server transactions (most of all transactions): every
    /// one is `now + 64·T1`, so they are due in the order they were armed and a FIFO replaces
    /// the wheel (no insert, cancel or cascade). Entries: (due, slot index, generation); an
    /// entry whose slot was removed or reused meanwhile is skipped.
    linger: std::collections::VecDeque<(Millis, u32, u32)>,
    /// Live transactions waiting in `linger` (stale entries not counted).
    lingering: usize,
}

impl TransactionLayer {
    /// A layer with the given timers whose wheel starts at `now`. An empty interval list (which
    /// config validation refuses) is replaced by the default schedule.
    pub fn new(timers: &TransactionTimers, now: Millis) -> Self {
        let mut intervals = timers.resend_intervals_ms.clone();
        if intervals.is_empty() {
            intervals = TransactionTimers::default().resend_intervals_ms;
        }
        let max_resends = (timers.send_retry as usize).min(intervals.len() - 1);
        let window = intervals[..=max_resends].iter().sum();
        Self {
            slots: Vec::new(),
            free_head: NIL,
            heads: HeadMap::default(),
            hasher: RandomState::new(),
            wheel: TimerWheel::new(now),
            intervals,
            max_resends,
            window,
            timeout_invite: timers.timeout_invite_ms,
            timeout_trying: timers.timeout_trying_ms,
            timeout_ringing: timers.timeout_ringing_ms,
            counters: TxCounters::default(),
            key_scratch: Vec::with_capacity(256),
            aux_scratch: Vec::with_capacity(1024),
            linger: std::collections::VecDeque::new(),
            lingering: 0,
        }
    }

    /// Reserve room for `n` more transactions (slots and the matching table).
    pub fn reserve(&mut self, n: usize) {
        self.slots.reserve(n);
        self.heads.reserve(n);
    }

    /// Live transactions (client + server).
    pub fn len(&self) -> usize {
        (self.counters.live_client + self.counters.live_server) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots ever allocated (live + free); stays flat when transactions are recycled.
    pub fn slot_capacity(&self) -> usize {
        self.slots.len()
    }

    /// Pending timers: the wheel's, plus the transactions waiting out Timer J in the FIFO.
    pub fn pending_timers(&self) -> usize {
        self.wheel.len() + self.lingering
    }

    pub fn counters(&self) -> TxCounters {
        self.counters
    }

    /// Earliest time [`Self::on_timers`] has work (may be early, never late).
    pub fn next_deadline(&self) -> Option<Millis> {
        let linger = self.linger.front().map(|e| e.0);
        match (self.wheel.next_deadline(), linger) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn tx(&self, id: TxId) -> Option<&Tx> {
        let s = self.slots.get(id.index as usize)?;
        (s.live && s.generation == id.generation).then_some(&s.tx)
    }

    fn tx_mut(&mut self, id: TxId) -> Option<&mut Tx> {
        let s = self.slots.get_mut(id.index as usize)?;
        (s.live && s.generation == id.generation).then_some(&mut s.tx)
    }

    fn id_of(&self, index: u32) -> TxId {
        TxId {
            index,
            generation: self.slots[index as usize].generation,
        }
    }

    /// State of a live transaction.
    pub fn state(&self, id: TxId) -> Option<TxState> {
        self.tx(id).map(|t| t.state)
    }

    /// The owner's token of a live transaction.
    pub fn token(&self, id: TxId) -> Option<Token> {
        self.tx(id).map(|t| t.token)
    }

    /// Set the owner's token (server transactions start with 0). False if the id is stale.
    pub fn set_token(&mut self, id: TxId, token: Token) -> bool {
        match self.tx_mut(id) {
            Some(t) => {
                t.token = token;
                true
            }
            None => false,
        }
    }

    /// Remove a transaction now, silently (no event, nothing sent). False if the id is stale.
    pub fn terminate(&mut self, id: TxId) -> bool {
        if self.tx(id).is_none() {
            return false;
        }
        self.remove(id.index);
        true
    }

    // --- slab and matching table -------------------------------------------------------------

    fn hash_key(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn find(&self, hash: u64, key: &[u8], to_tag: Option<&[u8]>) -> Option<u32> {
        let mut i = *self.heads.get(&hash)?;
        while i != NIL {
            let t = &self.slots[i as usize].tx;
            if t.hash == hash
                && t.key.hashed() == key
                && to_tag.map_or(true, |tag| t.key.extra() == tag)
            {
                return Some(i);
            }
            i = t.hash_next;
        }
        None
    }

    /// RFC 2543 ACK: the To tag is not compared, so several INVITEs (differing only in To tag)
    /// may match; prefer one that sent a final.
    fn find_legacy_ack(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let mut first = None;
        let mut i = *self.heads.get(&hash)?;
        while i != NIL {
            let t = &self.slots[i as usize].tx;
            if t.hash == hash && t.key.hashed() == key {
                if matches!(
                    t.state,
                    TxState::Completed | TxState::Confirmed | TxState::Accepted
                ) {
                    return Some(i);
                }
                first = first.or(Some(i));
            }
            i = t.hash_next;
        }
        first
    }

    /// Take a slot for a transaction whose key is in `key_scratch` (+ `extra` unhashed bytes).
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        kind: Kind,
        state: TxState,
        hash: u64,
        extra: &[u8],
        peer: SocketAddr,
        token: Token,
    ) -> u32 {
        let index = if self.free_head != NIL {
            let i = self.free_head;
            self.free_head = self.slots[i as usize].next_free;
            i
        } else {
            let i = u32::try_from(self.slots.len()).expect("transaction slab full");
            assert!(i != NIL, "transaction slab full");
            self.slots.push(Slot {
                generation: 0,
                live: false,
                next_free: NIL,
                tx: Tx {
                    kind,
                    state,
                    hash: 0,
                    hash_next: NIL,
                    key: KeyStore::default(),
                    buf: Vec::new(),
                    peer,
                    token,
                    step: 0,
                    retx: None,
                    retx_due: 0,
                    life: None,
                    life_due: 0,
                    life_kind: Life::Cleanup,
                    got_trying: false,
                    got_ringing: false,
                    cancelled: false,
                    failed: false,
                    has_provisional: false,
                    lingering: false,
                },
            });
            i
        };
        let head = self.heads.insert(hash, index).unwrap_or(NIL);
        let slot = &mut self.slots[index as usize];
        slot.live = true;
        slot.next_free = NIL;
        let t = &mut slot.tx;
        t.kind = kind;
        t.state = state;
        t.hash = hash;
        t.hash_next = head;
        t.key.set(&self.key_scratch, extra);
        t.buf.clear();
        t.peer = peer;
        t.token = token;
        t.step = 0;
        t.retx = None;
        t.life = None;
        t.life_kind = Life::Cleanup;
        t.got_trying = false;
        t.got_ringing = false;
        t.cancelled = false;
        t.failed = false;
        t.has_provisional = false;
        t.lingering = false;
        if kind.is_client() {
            self.counters.live_client += 1;
            self.counters.created_client += 1;
        } else {
            self.counters.live_server += 1;
            self.counters.created_server += 1;
        }
        index
    }

    fn remove(&mut self, index: u32) {
        let (hash, next, retx, life, kind) = {
            let t = &mut self.slots[index as usize].tx;
            if t.lingering {
                t.lingering = false;
                self.lingering -= 1;
            }
            (t.hash, t.hash_next, t.retx.take(), t.life.take(), t.kind)
        };
        for h in [retx, life].into_iter().flatten() {
            self.wheel.cancel(h);
        }
        // Unlink from the hash chain.
        if let Some(head) = self.heads.get_mut(&hash) {
            if *head == index {
                if next == NIL {
                    self.heads.remove(&hash);
                } else {
                    *head = next;
                }
            } else {
                let mut i = *head;
                while i != NIL {
                    let n = self.slots[i as usize].tx.hash_next;
                    if n == index {
                        self.slots[i as usize].tx.hash_next = next;
                        break;
                    }
                    i = n;
                }
            }
        }
        let slot = &mut self.slots[index as usize];
        slot.live = false;
        slot.generation = slot.generation.wrapping_add(1);
        slot.next_free = self.free_head;
        slot.tx.hash_next = NIL;
        slot.tx.key.clear();
        slot.tx.buf.clear();
        if slot.tx.buf.capacity() > KEEP_CAPACITY {
            slot.tx.buf = Vec::new();
        }
        self.free_head = index;
        if kind.is_client() {
            self.counters.live_client -= 1;
        } else {
            self.counters.live_server -= 1;
        }
    }

    // --- timers ----------------------------------------------------------------------------------

    fn set_life(&mut self, index: u32, due: Millis, kind: Life) {
        let generation = self.slots[index as usize].generation;
        let t = &mut self.slots[index as usize].tx;
        if let Some(h) = t.life.take() {
            self.wheel.cancel(h);
        }
        t.life_due = due;
        t.life_kind = kind;
        t.life = Some(self.wheel.insert(
            due,
            TimerRef {
                index,
                generation,
                which: Which::Life,
            },
        ));
    }

    fn stop_retx(&mut self, index: u32) {
        if let Some(h) = self.slots[index as usize].tx.retx.take() {
            self.wheel.cancel(h);
        }
    }

    fn stop_all(&mut self, index: u32) {
        self.stop_retx(index);
        if let Some(h) = self.slots[index as usize].tx.life.take() {
            self.wheel.cancel(h);
        }
    }

    /// Arm the next re-send, if the schedule has one that comes before the lifetime deadline.
    fn arm_retx(&mut self, index: u32) {
        let generation = self.slots[index as usize].generation;
        let t = &mut self.slots[index as usize].tx;
        if t.step >= self.max_resends {
            return;
        }
        let due = t.retx_due + self.intervals[t.step];
        if t.life.is_some() && due >= t.life_due {
            return;
        }
        t.retx_due = due;
        t.retx = Some(self.wheel.insert(
            due,
            TimerRef {
                index,
                generation,
                which: Which::Retx,
            },
        ));
    }

    /// Start the resend schedule at `now` (the first send just happened), with failure `cause` at
    /// the end of the window, or earlier at `now + cap` with `cap_cause`.
    fn start_schedule(
        &mut self,
        index: u32,
        now: Millis,
        fail: TimeoutCause,
        cap: Option<(Millis, TimeoutCause)>,
    ) {
        let (mut due, mut cause) = (now + self.window, fail);
        if let Some((c, c_cause)) = cap {
            if now + c <= due {
                due = now + c;
                cause = c_cause;
            }
        }
        self.set_life(index, due, Life::Fail(cause));
        let t = &mut self.slots[index as usize].tx;
        t.step = 0;
        t.retx_due = now;
        self.arm_retx(index);
    }

    /// Fire every timer due at `now`; returns how many fired.
    pub fn on_timers<S: TxSink>(&mut self, now: Millis, sink: &mut S) -> usize {
        let mut fired = 0;
        while let Some(&(due, index, generation)) = self.linger.front() {
            if due > now {
                break;
            }
            self.linger.pop_front();
            let Some(slot) = self.slots.get(index as usize) else {
                continue;
            };
            if slot.live && slot.generation == generation && slot.tx.lingering {
                fired += 1;
                self.remove(index);
            }
        }
        while let Some((handle, r)) = self.wheel.poll(now) {
            fired += 1;
            let Some(slot) = self.slots.get(r.index as usize) else {
                continue;
            };
            if !slot.live || slot.generation != r.generation {
                continue;
            }
            match r.which {
                Which::Retx if slot.tx.retx == Some(handle) => self.fire_retx(r.index, sink),
                Which::Life if slot.tx.life == Some(handle) => self.fire_life(r.index, sink),
                _ => {}
            }
        }
        fired
    }

    fn fire_retx<S: TxSink>(&mut self, index: u32, sink: &mut S) {
        let t = &mut self.slots[index as usize].tx;
        t.retx = None;
        let resending = matches!(
            (t.kind, t.state),
            (Kind::InviteClient, TxState::Calling)
                | (Kind::NonInviteClient, TxState::Trying)
                | (Kind::InviteServer, TxState::Completed)
        );
        if !resending {
            return;
        }
        sink.send(t.peer, &t.buf);
        t.step += 1;
        self.counters.retransmissions_sent += 1;
        self.arm_retx(index);
    }

    fn fire_life<S: TxSink>(&mut self, index: u32, sink: &mut S) {
        let id = self.id_of(index);
        let t = &mut self.slots[index as usize].tx;
        t.life = None;
        let cause = match t.life_kind {
            Life::Cleanup => {
                self.remove(index);
                return;
            }
            Life::Fail(c) => c,
        };
        let (kind, token, due) = (t.kind, t.token, t.life_due);
        let c = &mut self.counters;
        match cause {
            TimeoutCause::NoResponse => c.timeout_no_response += 1,
            TimeoutCause::InviteTimeout => c.timeout_invite += 1,
            TimeoutCause::TryingTimeout => c.timeout_trying += 1,
            TimeoutCause::RingingTimeout => c.timeout_ringing += 1,
            TimeoutCause::NoFinalAfterCancel => c.timeout_after_cancel += 1,
            TimeoutCause::AckTimeout => c.timeout_ack += 1,
        }
        sink.event(TxEvent::Timeout { id, token, cause });
        if kind == Kind::InviteClient && cause != TimeoutCause::NoFinalAfterCancel {
            self.stop_retx(index);
            let t = &mut self.slots[index as usize].tx;
            t.state = TxState::TimedOut;
            t.failed = true;
            self.set_life(index, due + T1X64_MS, Life::Cleanup);
        } else {
            self.remove(index);
        }
    }

    // --- client side -----------------------------------------------------------------------------

    /// Start a client transaction: send `req.bytes` to `req.dst` now and run the resend schedule.
    pub fn start_client<S: TxSink>(
        &mut self,
        req: ClientRequest<'_>,
        now: Millis,
        sink: &mut S,
    ) -> Result<TxId, StartError> {
        if req.method == b"ACK" {
            return Err(StartError::AckIsNotATransaction);
        }
        let mut key = std::mem::take(&mut self.key_scratch);
        client_key(&mut key, req.method, req.branch);
        self.key_scratch = key;
        self.start_client_keyed(
            req.method == b"INVITE",
            req.dst,
            req.bytes,
            req.token,
            now,
            sink,
        )
    }

    /// Start a client transaction whose key is in `key_scratch`.
    fn start_client_keyed<S: TxSink>(
        &mut self,
        invite: bool,
        dst: SocketAddr,
        bytes: &[u8],
        token: Token,
        now: Millis,
        sink: &mut S,
    ) -> Result<TxId, StartError> {
        let hash = self.hash_key(&self.key_scratch);
        if self.find(hash, &self.key_scratch, None).is_some() {
            return Err(StartError::Duplicate);
        }
        let (kind, state) = if invite {
            (Kind::InviteClient, TxState::Calling)
        } else {
            (Kind::NonInviteClient, TxState::Trying)
        };
        let index = self.insert(kind, state, hash, &[], dst, token);
        let t = &mut self.slots[index as usize].tx;
        t.buf.extend_from_slice(bytes);
        sink.send(dst, &t.buf);
        if invite {
            let cap = Some((self.timeout_invite, TimeoutCause::InviteTimeout));
            self.start_schedule(index, now, TimeoutCause::NoResponse, cap);
        } else {
            self.start_schedule(index, now, TimeoutCause::NoResponse, None);
        }
        Ok(self.id_of(index))
    }

    /// Send a CANCEL for a proceeding INVITE client transaction as its own client transaction
    /// (same branch and destination, method CANCEL). A proceeding INVITE then fails 64·T1 from now
    /// ([`TimeoutCause::NoFinalAfterCancel`]) unless a final arrives; one that already timed out
    /// keeps its linger period.
    pub fn start_cancel<S: TxSink>(
        &mut self,
        invite: TxId,
        bytes: &[u8],
        token: Token,
        now: Millis,
        sink: &mut S,
    ) -> Result<TxId, StartError> {
        let mut key = std::mem::take(&mut self.key_scratch);
        let checked = match self.tx(invite) {
            Some(t) if t.kind == Kind::InviteClient => {
                let cancellable = t.has_provisional
                    && matches!(t.state, TxState::Proceeding | TxState::TimedOut)
                    && !t.cancelled;
                if cancellable {
                    client_key(&mut key, b"CANCEL", branch_of_client_key(t.key.hashed()));
                    Ok(t.peer)
                } else {
                    Err(StartError::NotCancellable)
                }
            }
            _ => Err(StartError::NoSuchInvite),
        };
        self.key_scratch = key;
        let dst = checked?;
        let id = self.start_client_keyed(false, dst, bytes, token, now, sink)?;
        let t = self.tx_mut(invite).expect("checked above");
        t.cancelled = true;
        if t.state == TxState::Proceeding {
            // The owner gave up on the call: trying/ringing limits no longer apply (§9.1).
            self.set_life(
                invite.index,
                now + T1X64_MS,
                Life::Fail(TimeoutCause::NoFinalAfterCancel),
            );
        }
        Ok(id)
    }

    /// Match a received response (§17.1.3) and run its client transaction. `build_ack(request,
    /// out)` is called only for the first non-2xx final to an INVITE: write the ACK into `out`
    /// (leave it empty to send none).
    pub fn on_response<S, F>(
        &mut self,
        resp: &ResponseInfo<'_>,
        now: Millis,
        sink: &mut S,
        build_ack: F,
    ) -> ResponseOutcome
    where
        S: TxSink,
        F: FnOnce(&[u8], &mut Vec<u8>),
    {
        let mut key = std::mem::take(&mut self.key_scratch);
        client_key(&mut key, resp.cseq_method, resp.branch);
        let hash = self.hash_key(&key);
        let found = self.find(hash, &key, None);
        self.key_scratch = key;
        let Some(index) = found else {
            return ResponseOutcome::NoMatch;
        };
        let id = self.id_of(index);
        let status = resp.status;
        let t = &mut self.slots[index as usize].tx;
        let (token, late) = (t.token, t.failed);
        let pass = ResponseOutcome::Pass { id, token, late };
        let absorbed = ResponseOutcome::Absorbed { id };
        if !(100..=699).contains(&status) {
            return absorbed;
        }
        let provisional = status < 200;
        match (t.kind, t.state) {
            (Kind::NonInviteClient, TxState::Trying | TxState::Proceeding) => {
                if provisional {
                    t.state = TxState::Proceeding;
                    self.stop_retx(index);
                } else {
                    t.state = TxState::Completed;
                    self.stop_all(index);
                    self.set_life(index, now + T4_MS, Life::Cleanup);
                }
                pass
            }
            (Kind::NonInviteClient, _) => {
                if !provisional {
                    self.counters.retransmissions_absorbed += 1;
                }
                absorbed
            }
            (Kind::InviteClient, TxState::Calling | TxState::Proceeding | TxState::TimedOut) => {
                if provisional {
                    if t.state == TxState::TimedOut {
                        // The first provisional after the timeout goes up (`late`) so that the
                        // owner can CANCEL that branch (it now may, §9.1); later ones, or any
                        // once the owner cancelled or had a provisional before, are absorbed.
                        if t.has_provisional || t.cancelled {
                            return absorbed;
                        }
                        t.has_provisional = true;
                        return pass;
                    }
                    t.state = TxState::Proceeding;
                    t.has_provisional = true;
                    self.stop_retx(index);
                    let t = &mut self.slots[index as usize].tx;
                    if !t.cancelled {
                        if (180..=189).contains(&status) {
                            if !t.got_ringing {
                                t.got_ringing = true;
                                let due = now + self.timeout_ringing;
                                self.set_life(index, due, Life::Fail(TimeoutCause::RingingTimeout));
                            }
                        } else if !t.got_ringing && !t.got_trying {
                            t.got_trying = true;
                            let due = now + self.timeout_trying;
                            self.set_life(index, due, Life::Fail(TimeoutCause::TryingTimeout));
                        }
                    }
                    return pass;
                }
                self.stop_all(index);
                let t = &mut self.slots[index as usize].tx;
                if status < 300 {
                    t.state = TxState::Accepted;
                } else {
                    t.state = TxState::Completed;
                    self.aux_scratch.clear();
                    build_ack(&t.buf, &mut self.aux_scratch);
                    std::mem::swap(&mut t.buf, &mut self.aux_scratch);
                    if !t.buf.is_empty() {
                        sink.send(t.peer, &t.buf);
                    }
                }
                self.set_life(index, now + T1X64_MS, Life::Cleanup);
                pass
            }
            (Kind::InviteClient, TxState::Completed) => {
                if (200..300).contains(&status) {
                    return pass;
                }
                if !provisional {
                    self.counters.retransmissions_absorbed += 1;
                    if !t.buf.is_empty() {
                        sink.send(t.peer, &t.buf);
                        self.counters.retransmissions_sent += 1;
                    }
                }
                absorbed
            }
            (Kind::InviteClient, _) => {
                // Accepted: every 2xx goes up so the owner can (re-)ACK it.
                if (200..300).contains(&status) {
                    pass
                } else {
                    absorbed
                }
            }
            (Kind::InviteServer | Kind::NonInviteServer, _) => ResponseOutcome::NoMatch,
        }
    }

    // --- server side -----------------------------------------------------------------------------

    /// Match a received request (§17.2.3, or the RFC 2543 rule) and run its server transaction.
    pub fn on_request<S: TxSink>(
        &mut self,
        req: &RequestInfo<'_>,
        now: Millis,
        sink: &mut S,
    ) -> RequestOutcome {
        let mut key = std::mem::take(&mut self.key_scratch);
        let to_tag = server_key(&mut key, req.method, &req.key);
        let hash = self.hash_key(&key);
        let is_ack = req.method == b"ACK";
        let found = if is_ack && matches!(req.key, ServerKey::Rfc2543(_)) {
            self.find_legacy_ack(hash, &key)
        } else {
            self.find(hash, &key, to_tag)
        };
        self.key_scratch = key;

        if let Some(index) = found {
            let id = self.id_of(index);
            let t = &mut self.slots[index as usize].tx;
            if is_ack {
                return match t.state {
                    TxState::Completed => {
                        t.state = TxState::Confirmed;
                        self.stop_all(index);
                        self.set_life(index, now + T4_MS, Life::Cleanup);
                        RequestOutcome::AckAbsorbed { id }
                    }
                    TxState::Confirmed => {
                        self.counters.retransmissions_absorbed += 1;
                        RequestOutcome::AckAbsorbed { id }
                    }
                    TxState::Accepted => RequestOutcome::AckToTu { tx: Some(id) },
                    _ => RequestOutcome::Ignored,
                };
            }
            self.counters.retransmissions_absorbed += 1;
            let resend = match t.state {
                TxState::Proceeding | TxState::Completed => !t.buf.is_empty(),
                _ => false,
            };
            if resend {
                sink.send(t.peer, &t.buf);
                self.counters.retransmissions_sent += 1;
            }
            return RequestOutcome::Retransmission { id, resent: resend };
        }

        if is_ack {
            return RequestOutcome::AckToTu { tx: None };
        }
        let (kind, state) = if req.method == b"INVITE" {
            (Kind::InviteServer, TxState::Proceeding)
        } else {
            (Kind::NonInviteServer, TxState::Trying)
        };
        let index = self.insert(kind, state, hash, to_tag.unwrap_or(&[]), req.reply_to, 0);
        let id = self.id_of(index);
        if req.method != b"CANCEL" {
            return RequestOutcome::New(id);
        }
        // The INVITE this CANCEL targets: same key with the INVITE method class.
        let mut key = std::mem::take(&mut self.key_scratch);
        let to_tag = server_key(&mut key, b"INVITE", &req.key);
        let hash = self.hash_key(&key);
        let target = self.find(hash, &key, to_tag).map(|i| self.id_of(i));
        self.key_scratch = key;
        RequestOutcome::NewCancel { id, target }
    }

    /// Send a response on a server transaction and store it for retransmission.
    pub fn respond<S: TxSink>(
        &mut self,
        id: TxId,
        status: u16,
        bytes: &[u8],
        now: Millis,
        sink: &mut S,
    ) -> Result<(), RespondError> {
        if !(100..=699).contains(&status) {
            return Err(RespondError::BadStatus);
        }
        let Some(t) = self.tx_mut(id) else {
            return Err(RespondError::NoSuchTransaction);
        };
        let index = id.index;
        match (t.kind, t.state) {
            (Kind::InviteServer, TxState::Proceeding)
            | (Kind::NonInviteServer, TxState::Trying | TxState::Proceeding) => {}
            (Kind::InviteServer, TxState::Accepted) if (200..300).contains(&status) => {
                // RFC 6026: the owner's 2xx retransmissions pass straight through.
                sink.send(t.peer, bytes);
                return Ok(());
            }
            (Kind::InviteServer | Kind::NonInviteServer, _) => {
                return Err(RespondError::FinalAlreadySent)
            }
            _ => return Err(RespondError::NoSuchTransaction),
        }
        t.buf.clear();
        t.buf.extend_from_slice(bytes);
        sink.send(t.peer, &t.buf);
        if status < 200 {
            t.state = TxState::Proceeding;
            return Ok(());
        }
        match t.kind {
            Kind::InviteServer if status < 300 => {
                t.state = TxState::Accepted;
                t.buf.clear();
                self.set_life(index, now + T1X64_MS, Life::Cleanup);
            }
            Kind::InviteServer => {
                t.state = TxState::Completed;
                self.start_schedule(index, now, TimeoutCause::AckTimeout, None);
            }
            _ => {
                // Timer J (64·T1): in the FIFO, see `linger`.
                t.state = TxState::Completed;
                let due = now + T1X64_MS;
                t.life_due = due;
                t.life_kind = Life::Cleanup;
                let old = t.life.take();
                let newly = !t.lingering;
                t.lingering = true;
                if let Some(h) = old {
                    self.wheel.cancel(h);
                }
                if newly {
                    self.lingering += 1;
                }
                let generation = self.slots[index as usize].generation;
                self.linger.push_back((due, index, generation));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_parameters() {
        let l = TransactionLayer::new(&TransactionTimers::default(), 0);
        assert_eq!((l.max_resends, l.window), (9, 31_500));
        let t = TransactionTimers {
            send_retry: 3,
            ..Default::default()
        };
        let l = TransactionLayer::new(&t, 0);
        assert_eq!((l.max_resends, l.window), (3, 7_500));
        let t = TransactionTimers {
            send_retry: 0,
            ..Default::default()
        };
        let l = TransactionLayer::new(&t, 0);
        assert_eq!((l.max_resends, l.window), (0, 500));
    }

    #[test]
    fn keys_are_unambiguous() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        client_key(&mut a, b"INV", b"ITEx");
        client_key(&mut b, b"INVITE", b"x");
        assert_ne!(a, b);
        assert_eq!(branch_of_client_key(&b), b"x");
        let k1 = ServerKey::Rfc3261 {
            branch: b"z9hG4bKa",
            sent_by: b"h:1",
        };
        server_key(&mut a, b"ACK", &k1);
        server_key(&mut b, b"INVITE", &k1);
        assert_eq!(a, b, "ACK matches the INVITE transaction");
        server_key(&mut b, b"CANCEL", &k1);
        assert_ne!(a, b, "CANCEL has its own");
    }

    /// Forced hash collisions: chains must keep every entry reachable and unlink correctly.
    #[test]
    fn hash_chains() {
        struct Nop;
        impl TxSink for Nop {
            fn send(&mut self, _: SocketAddr, _: &[u8]) {}
            fn event(&mut self, _: TxEvent) {}
        }
        let mut l = TransactionLayer::new(&TransactionTimers::default(), 0);
        let dst: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let mut ids = Vec::new();
        for i in 0..5u8 {
            client_key(&mut l.key_scratch, b"OPTIONS", &[i]);
            let idx = l.insert(Kind::NonInviteClient, TxState::Trying, 7, &[], dst, 0);
            ids.push(l.id_of(idx));
        }
        for (i, id) in ids.iter().enumerate() {
            let mut k = Vec::new();
            client_key(&mut k, b"OPTIONS", &[i as u8]);
            assert_eq!(l.find(7, &k, None), Some(id.index));
        }
        assert!(l.terminate(ids[2]));
        assert!(l.terminate(ids[4]));
        assert!(l.terminate(ids[0]));
        let mut k = Vec::new();
        client_key(&mut k, b"OPTIONS", &[3]);
        assert_eq!(l.find(7, &k, None), Some(ids[3].index));
        client_key(&mut k, b"OPTIONS", &[2]);
        assert_eq!(l.find(7, &k, None), None);
        assert!(l.terminate(ids[1]));
        assert!(l.terminate(ids[3]));
        assert!(l.heads.is_empty());
        assert!(l.is_empty());
        let _ = Nop;
    }
}
