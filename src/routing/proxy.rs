//! The transaction-stateful proxy core of one shard (RFC 3261 §16, spec §4).
//!
//! Owns: the calls this shard owns (`hash(Call-ID)`), in a slab of reused slots indexed by a
//! Call-ID hash; their attempts (client INVITE transactions to gateways or registered contacts),
//! failover, CANCEL, the best final response of each call's branches (RFC 3261 §16.7), the
//! dialog state that routes in-dialog requests without Route headers, `max_call_duration` (BYE
//! both ways), the
//! gateway health this shard owns (`shard_by_hash(gateway name)`) and its OPTIONS probes, the
//! per-gateway counters, and the CDR of every call.
//! Must not: touch sockets, threads, clocks or locks. Output goes to a [`ProxyOut`] (datagrams,
//! transaction events, mail to other shards); CDRs to the non-blocking [`CdrSender`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::cdr::{set_text, AttemptOutcome, CdrAttempt, CdrRecord, CdrSender, Emitted, EndReason};
use crate::config::Config;
use crate::registrar::accounts::Accounts;
use crate::registrar::bindings::{aor_key_of_uri, owner_of_aor};
use crate::registrar::core::Registrar;
use crate::sip::digest::NonceKey;
use crate::sip::{
    write_ack, write_request, write_response, HeaderKind, Message, Method, Parser, RequestSpec,
    ResponseOptions,
};
use crate::timer::Millis;
use crate::transaction::{
    make_branch, shard_by_hash, shard_of_branch, ClientRequest, RespondError, TimeoutCause,
    TransactionLayer, TxId, TxSink, BRANCH_LEN,
};

use super::auth::{Admission, CallAuth, Caller};
use super::edit::{forward_request, strip_top_via, uri_address, via_destination, RequestEdit};
use super::table::{GatewayId, RoutingTable};

/// `Server:` / `User-Agent:` of what the proxy writes itself.
const SERVER_NAME: &str = concat!("sipshard/", env!("CARGO_PKG_VERSION"));

/// Every token of the proxy's transactions has this bit set (and never bit 63, the trunks').
pub const PROXY_TOKEN_BIT: u64 = 1 << 62;
const KIND_SHIFT: u32 = 56;
const SUB_SHIFT: u32 = 48;
const GEN_SHIFT: u32 = 24;
const MASK24: u64 = (1 << 24) - 1;

/// True for a token made by the proxy.
pub fn is_proxy_token(token: u64) -> bool {
    token & PROXY_TOKEN_BIT != 0 && token & (1 << 63) == 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The caller's INVITE server transaction.
    Caller = 1,
    /// An INVITE attempt (sub = attempt index).
    Attempt = 2,
    /// A CANCEL we sent.
    Cancel = 3,
    /// An in-dialog request we forward (sub = forward index).
    Forward = 4,
    /// An OPTIONS probe of a down gateway (index = gateway).
    Probe = 5,
    /// A BYE we send ourselves at `max_call_duration` (sub 0: to the callee, 1: to the caller).
    Hangup = 6,
}

fn token(kind: Kind, index: u32, generation: u32, sub: u8) -> u64 {
    PROXY_TOKEN_BIT
        | (kind as u64) << KIND_SHIFT
        | u64::from(sub) << SUB_SHIFT
        | (u64::from(generation) & MASK24) << GEN_SHIFT
        | (u64::from(index) & MASK24)
}

fn untoken(t: u64) -> (Option<Kind>, u32, u32, u8) {
    let kind = match (t >> KIND_SHIFT) & 7 {
        1 => Some(Kind::Caller),
        2 => Some(Kind::Attempt),
        3 => Some(Kind::Cancel),
        4 => Some(Kind::Forward),
        5 => Some(Kind::Probe),
        6 => Some(Kind::Hangup),
        _ => None,
    };
    (
        kind,
        (t & MASK24) as u32,
        ((t >> GEN_SHIFT) & MASK24) as u32,
        (t >> SUB_SHIFT) as u8,
    )
}

/// An INVITE from an upstream trunk (`[[trunks]]`), as the dispatcher recognised it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FromTrunk {
    /// The trunk's index in `[[trunks]]`.
    pub index: usize,
    /// The Request-URI user is the contact user we registered with (so the called number is
    /// the To user); else the Request-URI user is the number.
    pub number_in_to: bool,
}

/// One reachable contact of a registered user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub uri: Box<[u8]>,
    pub send_to: SocketAddr,
    /// q in thousandths (1000 when not given).
    pub q: u16,
}

/// What the proxies of different shards send each other (inside the dispatcher's `Mail`).
#[derive(Debug)]
pub enum ProxyMail {
    /// To a gateway's health owner: how one attempt through it ended.
    GatewayResult { gateway: GatewayId, ok: bool },
    /// From a gateway's health owner to every other shard: it is now up or down.
    GatewayState { gateway: GatewayId, up: bool },
    /// From a gateway's health owner to every other shard: it counts failures in a row, so
    /// report the next success too (successes are not mailed otherwise).
    GatewaySuspect { gateway: GatewayId },
    /// To an AOR's owner shard: send the contacts of `aor` back to `shard` with `token`.
    Locate {
        aor: Box<[u8]>,
        shard: usize,
        token: u64,
    },
    /// The answer to `Locate`.
    Located { token: u64, contacts: Vec<Contact> },
}

/// Where the proxy's output goes: datagrams and transaction events (as a [`TxSink`]) and mail.
pub trait ProxyOut: TxSink {
    fn mail(&mut self, shard: usize, mail: ProxyMail);
}

/// The contacts of an AOR on this shard.
pub trait Locator {
    fn locate(&self, aor: &[u8], now: Millis, out: &mut Vec<Contact>);
}

impl Locator for Registrar {
    fn locate(&self, aor: &[u8], now: Millis, out: &mut Vec<Contact>) {
        for c in self.lookup(aor, now) {
            out.push(Contact {
                uri: c.uri.into(),
                send_to: c.send_to,
                q: c.q.unwrap_or(1000),
            });
        }
    }
}

/// Counters of one gateway on one shard (sum them over shards).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayCounters {
    /// INVITEs sent (first sends, one per attempt).
    pub attempts: u64,
    /// Attempts answered with a 2xx.
    pub answered: u64,
    /// No response within SS_SIP_TIMEOUT_INVITE (or the resend window).
    pub fail_no_response: u64,
    /// 100 Trying, then nothing within SS_SIP_TIMEOUT_TRYING.
    pub fail_trying_timeout: u64,
    /// A final response in `failover_statuses`.
    pub fail_status: u64,
    /// A final response not in `failover_statuses` (486, 404, ...): back to the caller.
    pub rejected: u64,
    /// 180/183 then no answer within SS_SIP_TIMEOUT_RINGING.
    pub ringing_timeout: u64,
    /// Skipped because the gateway was down.
    pub skipped_down: u64,
    /// Skipped because it was at `max_calls`.
    pub skipped_full: u64,
    /// Times this shard (the gateway's health owner) marked it down / up.
    pub marked_down: u64,
    pub marked_up: u64,
    pub probes_sent: u64,
}

/// One gateway as seen by one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayStat {
    pub name: String,
    pub address: SocketAddr,
    /// This shard's view of the gateway's health.
    pub up: bool,
    /// True on the shard that owns the gateway's health (its `up` is authoritative).
    pub health_owner: bool,
    /// Calls in progress through it, all shards (the shared `max_calls` counter).
    pub active_calls: u32,
    pub counters: GatewayCounters,
}

/// Call counters of one shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyCounters {
    pub calls: u64,
    pub calls_answered: u64,
    pub calls_failed: u64,
    pub calls_ended: u64,
    pub challenged: u64,
    pub forbidden: u64,
    pub no_route: u64,
    pub loops: u64,
    pub too_many_hops: u64,
    pub caller_cancels: u64,
    pub in_dialog_forwarded: u64,
    pub acks_forwarded: u64,
    pub no_dialog: u64,
    pub late_2xx: u64,
    pub cdr_emitted: u64,
    pub cdr_refused: u64,
    /// Answered calls ended by `max_call_duration` (BYE sent both ways).
    pub max_duration: u64,
    /// INVITEs from an upstream trunk (`[[trunks]]`), admitted as trusted.
    pub from_trunks: u64,
}

impl ProxyCounters {
    pub fn pairs(&self) -> [(&'static str, u64); 18] {
        [
            ("calls", self.calls),
            ("calls_answered", self.calls_answered),
            ("calls_failed", self.calls_failed),
            ("calls_ended", self.calls_ended),
            ("calls_challenged", self.challenged),
            ("calls_forbidden", self.forbidden),
            ("calls_no_route", self.no_route),
            ("calls_loop", self.loops),
            ("calls_too_many_hops", self.too_many_hops),
            ("calls_caller_cancel", self.caller_cancels),
            ("in_dialog_forwarded", self.in_dialog_forwarded),
            ("acks_forwarded", self.acks_forwarded),
            ("in_dialog_no_dialog", self.no_dialog),
            ("late_2xx_forwarded", self.late_2xx),
            ("cdr_emitted", self.cdr_emitted),
            ("cdr_refused", self.cdr_refused),
            ("calls_max_duration", self.max_duration),
            ("calls_from_trunks", self.from_trunks),
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Gateway(GatewayId),
    Contact,
}

struct Attempt {
    target: Target,
    dst: SocketAddr,
    ruri: Vec<u8>,
    called: Vec<u8>,
    branch: [u8; BRANCH_LEN],
    tx: TxId,
    started: Millis,
    ended: Millis,
    outcome: Option<AttemptOutcome>,
    provisional: bool,
    /// Cancel as soon as a provisional arrives (§9.1: not before).
    cancel_wanted: bool,
    cancel_sent: bool,
    /// Holds one `max_calls` slot of its gateway.
    holds_slot: bool,
    /// To tag of its 2xx.
    to_tag: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallState {
    /// Waiting for the AOR owner's contacts.
    Locating,
    /// Attempts in progress, nothing final sent to the caller.
    Proceeding,
    /// A 2xx went to the caller (dialog early → confirmed on ACK).
    Answered,
    /// Final failure sent (or BYE): waiting for pending transactions before the slot is freed.
    Ended,
}

struct Forward {
    server: TxId,
    live: bool,
    /// The request as received, for the 408 when the next hop does not answer.
    request: Vec<u8>,
    source: SocketAddr,
}

struct Call {
    generation: u32,
    live: bool,
    hash: u64,
    hash_next: u32,
    state: CallState,
    confirmed: bool,
    call_id: Vec<u8>,
    /// The caller's INVITE as received.
    invite: Vec<u8>,
    /// The forwarded INVITE after its start line, our Via and Record-Route.
    fwd_tail: Vec<u8>,
    /// `From/To/Call-ID/CSeq ... CANCEL` lines for CANCELs of our attempts.
    cancel_tail: Vec<u8>,
    caller_tag: Vec<u8>,
    /// The CDR's caller: the From URI user (or the whole URI), kept at the start so the CDR
    /// needs no second parse of the INVITE.
    cdr_caller: Vec<u8>,
    server: Option<TxId>,
    reply_to: SocketAddr,
    source: SocketAddr,
    caller: Option<Caller>,
    /// Called number as received.
    number: Vec<u8>,
    /// Gateways of the route, and the next one to try.
    plan: Vec<GatewayId>,
    next: usize,
    attempts: Vec<Attempt>,
    forwards: Vec<Forward>,
    start: Millis,
    answer: Option<Millis>,
    end: Millis,
    cancelled: bool,
    final_status: u16,
    end_reason: Option<EndReason>,
    cdr_done: bool,
    our_tag: [u8; 20],
    /// The best final response of the response context so far (RFC 3261 §16.7 step 6), our Via
    /// removed; empty with `best_status` set: a timeout (a 408 we write ourselves, §16.8).
    best: Vec<u8>,
    best_status: u16,
    /// Every `WWW-Authenticate` / `Proxy-Authenticate` line of the context's 401/407s.
    auth_lines: Vec<u8>,
    /// A 6xx arrived: no new branches (§16.7 step 5).
    six: bool,
    /// Answered calls in answer order (`max_call_duration`): links, NIL at the ends.
    in_dur: bool,
    dur_prev: u32,
    dur_next: u32,
    /// Of the answering 2xx: its To (with the callee's tag), its Contact URI, and the Route
    /// lines toward the callee (its Record-Route entries before ours, reversed); the address
    /// of the first of those routes.
    callee_to: Vec<u8>,
    callee_target: Vec<u8>,
    callee_route: Vec<u8>,
    callee_next: Option<SocketAddr>,
    /// Highest CSeq seen from each side of the dialog (the caller's starts at its INVITE's).
    caller_cseq: u32,
    callee_cseq: u32,
}

impl Call {
    fn empty() -> Call {
        Call {
            generation: 0,
            live: false,
            hash: 0,
            hash_next: NIL,
            state: CallState::Ended,
            confirmed: false,
            call_id: Vec::new(),
            invite: Vec::new(),
            fwd_tail: Vec::new(),
            cancel_tail: Vec::new(),
            caller_tag: Vec::new(),
            cdr_caller: Vec::new(),
            server: None,
            reply_to: SocketAddr::from(([0, 0, 0, 0], 0)),
            source: SocketAddr::from(([0, 0, 0, 0], 0)),
            caller: None,
            number: Vec::new(),
            plan: Vec::new(),
            next: 0,
            attempts: Vec::new(),
            forwards: Vec::new(),
            start: 0,
            answer: None,
            end: 0,
            cancelled: false,
            final_status: 0,
            end_reason: None,
            cdr_done: false,
            our_tag: [0; 20],
            best: Vec::new(),
            best_status: 0,
            auth_lines: Vec::new(),
            six: false,
            in_dur: false,
            dur_prev: NIL,
            dur_next: NIL,
            callee_to: Vec::new(),
            callee_target: Vec::new(),
            callee_route: Vec::new(),
            callee_next: None,
            caller_cseq: 0,
            callee_cseq: 0,
        }
    }

    fn pending(&self) -> impl Iterator<Item = usize> + '_ {
        self.attempts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.outcome.is_none())
            .map(|(i, _)| i)
    }
}

const NIL: u32 = u32::MAX;

/// How long a call waits for the contacts of a registered user from the AOR's owner shard. The
/// answer normally comes within microseconds; it is lost only when a mailbox between shards was
/// full (overload), and then the caller gets 503 instead of waiting forever.
pub const LOCATE_TIMEOUT_MS: Millis = 2_000;

struct Health {
    /// This shard's view.
    up: bool,
    /// Owner side: failed attempts in a row.
    fails: u32,
    /// Owner side: when the next probe goes (while down and no probe is pending).
    probe_due: Option<Millis>,
    probe_pending: bool,
    probe_sent: Millis,
    owner: bool,
    /// Non-owner side: the owner is counting failures; report the next success.
    suspect: bool,
}

/// The proxy core of one shard. See the module documentation.
pub struct Proxy {
    shard: usize,
    shards: usize,
    table: Arc<RoutingTable>,
    accounts: Arc<Accounts>,
    auth: CallAuth,
    cdr: CdrSender,
    /// `host:port` of our socket (Via sent-by, Record-Route).
    local: Vec<u8>,
    local_addr: Option<SocketAddr>,
    calls: Vec<Call>,
    free: Vec<u32>,
    index: HashMap<u64, u32, ahash::RandomState>,
    hasher: ahash::RandomState,
    /// Re-parses stored INVITEs (the dispatcher's parser holds the current datagram).
    parser: Parser,
    /// Parses the request a non-2xx ACK is built from (see [`Proxy::build_ack`]).
    ack_parser: Parser,
    buf: Vec<u8>,
    buf2: Vec<u8>,
    challenges: Vec<Vec<u8>>,
    contacts: Vec<Contact>,
    unique: u64,
    health: Vec<Health>,
    /// Gateways whose health this shard owns that are down (probed): with none,
    /// [`Proxy::next_deadline`] need not look at each gateway.
    owned_down: usize,
    stats: Vec<GatewayCounters>,
    pub counters: ProxyCounters,
    /// Transaction timeouts waiting to be run (see [`Proxy::queue_timeout`]).
    timeouts: Vec<(u64, TimeoutCause)>,
    /// Byte buffers of freed attempts, reused by new ones (no allocation per attempt in steady
    /// state).
    spare: Vec<Vec<u8>>,
    /// `registrar.require_auth = Off`: users without an account may be registered.
    any_user_registers: bool,
    /// Scratch for the called number and Request-URI of a gateway attempt.
    called: Vec<u8>,
    ruri: Vec<u8>,
    /// `[routing] max_call_duration` in ms, 0 = unlimited.
    max_duration_ms: u64,
    /// Calls that asked another shard for a user's contacts: (deadline, index, generation), in
    /// deadline order (one fixed timeout). Entries of calls that got their answer stay until
    /// their deadline and are skipped then.
    locating: std::collections::VecDeque<(Millis, u32, u32)>,
    /// Oldest and newest answered call (the `max_call_duration` list).
    dur_head: u32,
    dur_tail: u32,
    /// `[[trunks]]` names, by config index (CDR identity `trunk:NAME`).
    trunk_names: Vec<Box<str>>,
}

impl Proxy {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shard: usize,
        shards: usize,
        config: &Config,
        table: Arc<RoutingTable>,
        accounts: Arc<Accounts>,
        nonce_key: NonceKey,
        cdr: CdrSender,
        seed: u64,
    ) -> Proxy {
        let shards = shards.max(1);
        let health = table
            .gateways
            .iter()
            .map(|g| Health {
                up: true,
                fails: 0,
                probe_due: None,
                probe_pending: false,
                probe_sent: 0,
                suspect: false,
                owner: shard_by_hash(g.name.as_bytes(), shards) == shard,
            })
            .collect();
        let stats = vec![GatewayCounters::default(); table.gateways.len()];
        let s = seed ^ (shard as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Proxy {
            shard,
            shards,
            auth: CallAuth::new(config, nonce_key, shard),
            table,
            accounts,
            cdr,
            local: b"127.0.0.1:5060".to_vec(),
            local_addr: None,
            calls: Vec::new(),
            free: Vec::new(),
            index: HashMap::with_hasher(ahash::RandomState::with_seeds(s, s ^ 1, s ^ 2, s ^ 3)),
            hasher: ahash::RandomState::with_seeds(s ^ 4, s ^ 5, s ^ 6, s ^ 7),
            parser: Parser::new(),
            ack_parser: Parser::new(),
            buf: Vec::with_capacity(2048),
            buf2: Vec::with_capacity(2048),
            challenges: Vec::new(),
            contacts: Vec::new(),
            unique: s.rotate_left(29),
            health,
            owned_down: 0,
            stats,
            counters: ProxyCounters::default(),
            timeouts: Vec::new(),
            spare: Vec::new(),
            any_user_registers: !config.registrar.require_auth,
            called: Vec::with_capacity(64),
            ruri: Vec::with_capacity(128),
            max_duration_ms: u64::from(config.routing.max_call_duration_s) * 1000,
            dur_head: NIL,
            dur_tail: NIL,
            locating: std::collections::VecDeque::new(),
            trunk_names: config
                .trunks
                .iter()
                .map(|t| t.name.as_str().into())
                .collect(),
        }
    }

    /// Our socket's address: what goes into our Via and Record-Route.
    pub fn set_local_addr(&mut self, local: SocketAddr) {
        self.local_addr = Some(local);
        self.local = local.to_string().into_bytes();
    }

    /// The routing table (shared by every shard).
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// Calls this shard holds state for (in progress, in dialog, or waiting to be freed).
    pub fn live_calls(&self) -> usize {
        self.calls.len() - self.free.len()
    }

    /// Every gateway as this shard sees it, with this shard's counters.
    pub fn gateway_stats(&self) -> Vec<GatewayStat> {
        self.table
            .gateways
            .iter()
            .enumerate()
            .map(|(i, g)| GatewayStat {
                name: g.name.to_string(),
                address: g.address,
                up: self.health[i].up,
                health_owner: self.health[i].owner,
                active_calls: self.table.active_calls(i as GatewayId),
                counters: self.stats[i],
            })
            .collect()
    }

    /// Writes the ACK for a non-2xx final to one of our INVITEs (`invite`: the bytes we sent):
    /// for the transaction layer's `build_ack`.
    pub fn build_ack(&mut self, invite: &[u8], response: &Message, out: &mut Vec<u8>) {
        if let Ok(inv) = self.ack_parser.parse(invite) {
            let _ = write_ack(out, &inv, response);
        }
    }

    fn next_unique(&mut self) -> u64 {
        self.unique = self.unique.wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.unique
    }

    fn our_via(&mut self, branch: &mut [u8; BRANCH_LEN], out: &mut Vec<u8>) {
        let u = self.next_unique();
        make_branch(self.shard, u, branch);
        out.clear();
        out.extend_from_slice(b"SIP/2.0/UDP ");
        out.extend_from_slice(&self.local);
        out.extend_from_slice(b";branch=");
        out.extend_from_slice(branch);
    }

    // --- the call slab ----------------------------------------------------------------------

    fn alloc(&mut self, call_id: &[u8]) -> u32 {
        let hash = self.hasher.hash_one(call_id);
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.calls.push(Call::empty());
                (self.calls.len() - 1) as u32
            }
        };
        let head = self.index.insert(hash, idx).unwrap_or(NIL);
        let c = &mut self.calls[idx as usize];
        c.live = true;
        c.hash = hash;
        c.hash_next = head;
        c.call_id.clear();
        c.call_id.extend_from_slice(call_id);
        c.state = CallState::Proceeding;
        c.confirmed = false;
        c.invite.clear();
        c.fwd_tail.clear();
        c.cancel_tail.clear();
        c.caller_tag.clear();
        c.cdr_caller.clear();
        c.caller = None;
        c.number.clear();
        c.plan.clear();
        c.next = 0;
        c.attempts.clear();
        // Forwards are all finished when a call is freed; their buffers are kept for reuse.
        c.answer = None;
        c.cancelled = false;
        c.final_status = 0;
        c.end_reason = None;
        c.cdr_done = false;
        c.best.clear();
        c.best_status = 0;
        c.auth_lines.clear();
        c.six = false;
        c.in_dur = false;
        c.dur_prev = NIL;
        c.dur_next = NIL;
        c.callee_to.clear();
        c.callee_target.clear();
        c.callee_route.clear();
        c.callee_next = None;
        c.caller_cseq = 0;
        c.callee_cseq = 0;
        idx
    }

    fn find(&self, call_id: &[u8]) -> Option<u32> {
        let hash = self.hasher.hash_one(call_id);
        let mut i = *self.index.get(&hash)?;
        while i != NIL {
            let c = &self.calls[i as usize];
            if c.live && c.call_id == call_id {
                return Some(i);
            }
            i = c.hash_next;
        }
        None
    }

    fn release(&mut self, idx: u32) {
        if !self.calls[idx as usize].live {
            return;
        }
        self.dur_unlink(idx);
        let c = &mut self.calls[idx as usize];
        for a in c.attempts.iter_mut() {
            if a.holds_slot {
                a.holds_slot = false;
                if let Target::Gateway(g) = a.target {
                    self.table.release(g);
                }
            }
        }
        for a in c.attempts.drain(..) {
            for mut b in [a.ruri, a.called, a.to_tag] {
                if self.spare.len() < 4096 && b.capacity() <= 1024 {
                    b.clear();
                    self.spare.push(b);
                }
            }
        }
        c.live = false;
        c.generation = (c.generation + 1) & MASK24 as u32;
        let (hash, next) = (c.hash, c.hash_next);
        // Unlink from the hash chain.
        if let Some(&head) = self.index.get(&hash) {
            if head == idx {
                if next == NIL {
                    self.index.remove(&hash);
                } else {
                    self.index.insert(hash, next);
                }
            } else {
                let mut i = head;
                while i != NIL {
                    let n = self.calls[i as usize].hash_next;
                    if n == idx {
                        self.calls[i as usize].hash_next = next;
                        break;
                    }
                    i = n;
                }
            }
        }
        self.free.push(idx);
    }

    fn call_of(&self, index: u32, generation: u32) -> Option<u32> {
        let c = self.calls.get(index as usize)?;
        (c.live && c.generation == generation).then_some(index)
    }

    /// Appends an answered call to the `max_call_duration` list (answer times only grow on one
    /// shard's clock, so the list is in deadline order and its head is the next to expire).
    fn dur_link(&mut self, idx: u32) {
        if self.max_duration_ms == 0 || self.calls[idx as usize].in_dur {
            return;
        }
        let tail = self.dur_tail;
        {
            let c = &mut self.calls[idx as usize];
            c.in_dur = true;
            c.dur_prev = tail;
            c.dur_next = NIL;
        }
        if tail == NIL {
            self.dur_head = idx;
        } else {
            self.calls[tail as usize].dur_next = idx;
        }
        self.dur_tail = idx;
    }

    fn dur_unlink(&mut self, idx: u32) {
        let c = &mut self.calls[idx as usize];
        if !c.in_dur {
            return;
        }
        c.in_dur = false;
        let (prev, next) = (c.dur_prev, c.dur_next);
        c.dur_prev = NIL;
        c.dur_next = NIL;
        if prev == NIL {
            self.dur_head = next;
        } else {
            self.calls[prev as usize].dur_next = next;
        }
        if next == NIL {
            self.dur_tail = prev;
        } else {
            self.calls[next as usize].dur_prev = prev;
        }
    }

    /// When the oldest answered call reaches `max_call_duration`.
    fn dur_deadline(&self) -> Option<Millis> {
        if self.max_duration_ms == 0 || self.dur_head == NIL {
            return None;
        }
        let c = &self.calls[self.dur_head as usize];
        Some(c.answer.unwrap_or(c.start) + self.max_duration_ms)
    }

    fn tok(&self, kind: Kind, idx: u32, sub: u8) -> u64 {
        token(kind, idx, self.calls[idx as usize].generation, sub)
    }

    // --- requests ----------------------------------------------------------------------------

    /// A new INVITE server transaction `id` at the owner shard: an initial INVITE (no To tag).
    /// `trunk`: the dispatcher recognised the source as an upstream trunk's
    /// (`Trunks::match_inbound`).
    #[allow(clippy::too_many_arguments)]
    pub fn on_invite<O: ProxyOut, L: Locator>(
        &mut self,
        id: TxId,
        msg: &Message,
        src: SocketAddr,
        reply_to: SocketAddr,
        trunk: Option<FromTrunk>,
        now: Millis,
        tx: &mut TransactionLayer,
        locator: &L,
        out: &mut O,
    ) {
        let mf = msg.max_forwards().unwrap_or(70);
        if mf == 0 {
            self.counters.too_many_hops += 1;
            self.reply_stateful(id, msg, src, 483, "Too Many Hops", &[], now, tx, out);
            return;
        }
        if self.is_loop(msg) {
            self.counters.loops += 1;
            self.reply_stateful(id, msg, src, 482, "Loop Detected", &[], now, tx, out);
            return;
        }
        let kinds = HeaderKinds::of(msg);
        if kinds.proxy_require && self.bad_extension(id, msg, src, now, tx, out) {
            return;
        }
        // An upstream trunk's INVITE is trusted like a peer's (a peer configured for the same
        // source wins: it is the explicit setting).
        let admission = match trunk {
            Some(t) if self.table.peer_by_source(src).is_none() => {
                Admission::Allowed(Caller::Trunk(t.index))
            }
            _ => self.auth.admit(msg, src, now, &self.table, &self.accounts),
        };
        let caller = match admission {
            Admission::Allowed(c) => c,
            Admission::Challenge { stale } => {
                self.counters.challenged += 1;
                let mut ch = std::mem::take(&mut self.challenges);
                ch.clear();
                self.auth.challenges(now, stale, &mut ch);
                let headers: Vec<(&str, &[u8])> = ch
                    .iter()
                    .take(2)
                    .map(|c| ("Proxy-Authenticate", &c[..]))
                    .collect();
                self.reply_stateful(
                    id,
                    msg,
                    src,
                    407,
                    "Proxy Authentication Required",
                    &headers,
                    now,
                    tx,
                    out,
                );
                self.challenges = ch;
                return;
            }
            Admission::Forbidden(why) => {
                self.counters.forbidden += 1;
                let warning = format!("399 sipshard \"{why}\"");
                self.reply_stateful(
                    id,
                    msg,
                    src,
                    403,
                    "Forbidden",
                    &[("Warning", warning.as_bytes())],
                    now,
                    tx,
                    out,
                );
                self.emit_refused(msg, src, now, 403, EndReason::Forbidden);
                return;
            }
        };
        let call_id = msg.call_id().unwrap_or_default();
        if self.find(call_id).is_some() {
            // A second initial INVITE with a live call's Call-ID (not a retransmission: those
            // are absorbed by the transaction layer) is a loop through another proxy.
            self.counters.loops += 1;
            self.reply_stateful(id, msg, src, 482, "Loop Detected", &[], now, tx, out);
            return;
        }
        self.counters.calls += 1;
        if matches!(caller, Caller::Trunk(_)) {
            self.counters.from_trunks += 1;
        }
        // The called number: the Request-URI user, or the To user when a trunk sent the call to
        // the contact we registered (its Request-URI user is our contact user, not a number).
        let number_uri = match trunk {
            Some(t) if t.number_in_to => msg.to().map(|t| t.uri()),
            _ => msg.request_uri(),
        };
        let idx = self.alloc(call_id);
        let u = self.next_unique();
        let pop = kinds.route && self.first_route_is_ours(msg);
        {
            let c = &mut self.calls[idx as usize];
            c.invite
                .extend_from_slice(&msg.buf()[..msg.framed_len().min(msg.buf().len())]);
            c.caller_tag
                .extend_from_slice(msg.from().and_then(|f| f.tag()).unwrap_or_default());
            c.cdr_caller.extend_from_slice(caller_of(msg));
            c.server = Some(id);
            c.reply_to = reply_to;
            c.source = src;
            c.caller = Some(caller);
            c.start = now;
            c.end = now;
            c.caller_cseq = msg.cseq().map_or(1, |s| s.seq);
            c.our_tag = make_tag(self.shard, u);
            let user = number_uri.and_then(|u| u.user()).unwrap_or_default();
            c.number.extend_from_slice(user);
            // The forwarded INVITE after its first lines: every header but Max-Forwards,
            // Proxy-Authorization and our Route, then Max-Forwards - 1, then the body.
            let mut tmp = std::mem::take(&mut self.buf);
            forward_request(
                &mut tmp,
                msg,
                &RequestEdit {
                    ruri: Some(b"x"),
                    via: b"x",
                    record_route: None,
                    pop_route: pop,
                    strip_proxy_auth: true,
                    max_forwards: mf - 1,
                },
            );
            // Drop "INVITE x SIP/2.0\r\nVia: x\r\n".
            let skip = b"INVITE x SIP/2.0\r\nVia: x\r\n".len();
            c.fwd_tail.extend_from_slice(&tmp[skip.min(tmp.len())..]);
            self.buf = tmp;
            for (name, v) in [
                ("From: ", msg.from().map(|f| f.as_bytes())),
                ("To: ", msg.to().map(|t| t.as_bytes())),
                ("Call-ID: ", msg.call_id()),
            ] {
                c.cancel_tail.extend_from_slice(name.as_bytes());
                c.cancel_tail.extend_from_slice(v.unwrap_or_default());
                c.cancel_tail.extend_from_slice(b"\r\n");
            }
            c.cancel_tail.extend_from_slice(b"CSeq: ");
            crate::sip::push_u32(&mut c.cancel_tail, msg.cseq().map_or(1, |s| s.seq));
            c.cancel_tail
                .extend_from_slice(b" CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
        }
        let tok = self.tok(Kind::Caller, idx, 0);
        tx.set_token(id, tok);
        // 100 Trying at once: the caller stops re-sending.
        self.reply_stateful(id, msg, src, 100, "Trying", &[], now, tx, out);

        // A registered user?
        let ruri = msg.request_uri();
        // With `require_auth = Off` anyone may register, so every called number may be a
        // registered user: ask the location service first (a route applies when it has none).
        let is_user = number_uri
            .and_then(|u| u.user())
            .is_some_and(|u| self.any_user_registers || self.accounts.find(u).is_some());
        if let (true, Some(uri), Some(number_uri)) = (is_user, ruri, number_uri) {
            let mut aor = Vec::with_capacity(64);
            let found = match trunk {
                // The To user at the Request-URI's host (the domain the call came to).
                Some(t) if t.number_in_to => {
                    let mut to = Vec::with_capacity(64);
                    let ok = aor_key_of_uri(&uri, &mut aor).is_ok()
                        && aor_key_of_uri(&number_uri, &mut to).is_ok();
                    match (ok, aor.iter().rposition(|&b| b == b'@')) {
                        (true, Some(at)) => {
                            let at_to = to.iter().rposition(|&b| b == b'@').unwrap_or(0);
                            to.truncate(at_to);
                            to.extend_from_slice(&aor[at..]);
                            aor = to;
                            true
                        }
                        _ => false,
                    }
                }
                _ => aor_key_of_uri(&uri, &mut aor).is_ok(),
            };
            if found {
                let owner = owner_of_aor(&aor, self.shards);
                if owner == self.shard {
                    let mut contacts = std::mem::take(&mut self.contacts);
                    contacts.clear();
                    locator.locate(&aor, now, &mut contacts);
                    self.start_contacts(idx, &contacts, now, tx, out);
                    self.contacts = contacts;
                } else {
                    self.calls[idx as usize].state = CallState::Locating;
                    let generation = self.calls[idx as usize].generation;
                    self.locating
                        .push_back((now + LOCATE_TIMEOUT_MS, idx, generation));
                    out.mail(
                        owner,
                        ProxyMail::Locate {
                            aor: aor.into(),
                            shard: self.shard,
                            token: tok,
                        },
                    );
                }
                return;
            }
        }
        self.start_route(idx, now, tx, out);
    }

    /// RFC 3261 §16.3 step 5: a Proxy-Require we do not support (we support none) → 420 with
    /// `Unsupported`. True when answered.
    fn bad_extension<O: ProxyOut>(
        &mut self,
        id: TxId,
        msg: &Message,
        src: SocketAddr,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) -> bool {
        if msg.tokens(HeaderKind::ProxyRequire).next().is_none() {
            return false;
        }
        let mut list = std::mem::take(&mut self.buf2);
        list.clear();
        for t in msg.tokens(HeaderKind::ProxyRequire) {
            if !list.is_empty() {
                list.extend_from_slice(b", ");
            }
            list.extend_from_slice(t);
        }
        self.reply_stateful(
            id,
            msg,
            src,
            420,
            "Bad Extension",
            &[("Unsupported", &list)],
            now,
            tx,
            out,
        );
        self.buf2 = list;
        true
    }

    /// Our own Via (our sent-by and a branch of ours) is already in the request.
    fn is_loop(&self, msg: &Message) -> bool {
        msg.vias()
            .any(|v| v.branch().and_then(shard_of_branch).is_some() && sent_by_is(&v, &self.local))
    }

    fn first_route_is_ours(&self, msg: &Message) -> bool {
        let Some(Ok(r)) = msg.name_addrs(HeaderKind::Route).next() else {
            return false;
        };
        let uri = r.uri();
        match (uri_address(&uri), self.local_addr) {
            (Some(a), Some(l)) => a == l,
            _ => false,
        }
    }

    /// A reply through server transaction `id`, built from `msg`.
    #[allow(clippy::too_many_arguments)]
    fn reply_stateful<O: ProxyOut>(
        &mut self,
        id: TxId,
        msg: &Message,
        src: SocketAddr,
        status: u16,
        reason: &str,
        headers: &[(&str, &[u8])],
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        let tag = make_tag(self.shard, self.hasher.hash_one(msg.call_id()));
        let mut all: [(&str, &[u8]); 4] = [
            ("Server", SERVER_NAME.as_bytes()),
            ("", b""),
            ("", b""),
            ("", b""),
        ];
        let n = 1 + headers.len().min(3);
        all[1..n].copy_from_slice(&headers[..n - 1]);
        let opts = ResponseOptions {
            source: Some(src),
            to_tag: Some(&tag),
            headers: &all[..n],
            body: &[],
        };
        write_response(&mut self.buf, msg, status, reason, &opts);
        let _ = tx.respond(id, status, &self.buf, now, out);
    }

    /// A response of ours to the caller of call `idx` (re-parses the stored INVITE).
    #[allow(clippy::too_many_arguments)]
    fn reply_caller<O: ProxyOut>(
        &mut self,
        idx: u32,
        status: u16,
        reason: &str,
        warning: Option<&str>,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        let c = &self.calls[idx as usize];
        let Ok(msg) = self.parser.parse(&c.invite) else {
            return;
        };
        let w;
        let mut headers: [(&str, &[u8]); 2] = [("Server", SERVER_NAME.as_bytes()), ("", b"")];
        let mut n = 1;
        if let Some(text) = warning {
            w = format!("399 sipshard \"{text}\"");
            headers[1] = ("Warning", w.as_bytes());
            n = 2;
        }
        let opts = ResponseOptions {
            source: Some(c.source),
            to_tag: Some(&c.our_tag),
            headers: &headers[..n],
            body: &[],
        };
        write_response(&mut self.buf, &msg, status, reason, &opts);
        if let Some(server) = c.server {
            let _ = tx.respond(server, status, &self.buf, now, out);
        }
    }

    /// Contacts of a registered callee: fork in parallel to those of the highest q.
    fn start_contacts<O: ProxyOut>(
        &mut self,
        idx: u32,
        contacts: &[Contact],
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        self.calls[idx as usize].state = CallState::Proceeding;
        let Some(best) = contacts.iter().map(|c| c.q).max() else {
            // No live binding: a route may still take the number; an account without one is
            // "not registered", anything else has no route.
            let number = &self.calls[idx as usize].number;
            if self.table.route(number).is_some() || self.accounts.find(number).is_none() {
                self.start_route(idx, now, tx, out);
            } else {
                self.fail(
                    idx,
                    480,
                    "Temporarily Unavailable",
                    Some("the called user is not registered"),
                    EndReason::NotRegistered,
                    now,
                    tx,
                    out,
                );
            }
            return;
        };
        let number = std::mem::take(&mut self.calls[idx as usize].number);
        let mut started = 0;
        for c in contacts.iter().filter(|c| c.q == best).take(16) {
            let n = self.start_attempt(
                idx,
                Target::Contact,
                c.send_to,
                &c.uri,
                &number,
                now,
                tx,
                out,
            );
            started += usize::from(n.is_some());
        }
        self.calls[idx as usize].number = number;
        if started == 0 {
            self.fail(
                idx,
                500,
                "Server Internal Error",
                Some("could not send the INVITE"),
                EndReason::Rejected,
                now,
                tx,
                out,
            );
        }
    }

    fn start_route<O: ProxyOut>(
        &mut self,
        idx: u32,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        let table = self.table.clone();
        let c = &mut self.calls[idx as usize];
        c.state = CallState::Proceeding;
        match table.route(&c.number) {
            Some(gws) => {
                c.plan.extend_from_slice(gws);
                c.next = 0;
                self.next_gateway(idx, now, tx, out);
            }
            None => {
                self.counters.no_route += 1;
                let (status, reason) = if table.no_route_status == 403 {
                    (403, "Forbidden")
                } else {
                    (404, "Not Found")
                };
                self.fail(
                    idx,
                    status,
                    reason,
                    Some("no route for the called number"),
                    EndReason::NoRoute,
                    now,
                    tx,
                    out,
                );
            }
        }
    }

    /// Tries the next usable gateway of the plan; with none left, fails the call.
    fn next_gateway<O: ProxyOut>(
        &mut self,
        idx: u32,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        let table = self.table.clone();
        loop {
            let c = &mut self.calls[idx as usize];
            if c.next >= c.plan.len() {
                break;
            }
            let g = c.plan[c.next];
            c.next += 1;
            if !self.health[g as usize].up {
                self.stats[g as usize].skipped_down += 1;
                continue;
            }
            if !table.try_acquire(g) {
                self.stats[g as usize].skipped_full += 1;
                continue;
            }
            let gw = &table.gateways[g as usize];
            let number = &self.calls[idx as usize].number;
            let mut called = std::mem::take(&mut self.called);
            called.clear();
            called.extend_from_slice(&gw.prepend);
            called.extend_from_slice(
                number
                    .get(gw.strip_digits.min(number.len())..)
                    .unwrap_or_default(),
            );
            let mut ruri = std::mem::take(&mut self.ruri);
            ruri.clear();
            ruri.extend_from_slice(b"sip:");
            ruri.extend_from_slice(&called);
            ruri.push(b'@');
            ruri.extend_from_slice(&gw.address_text);
            let n = self.start_attempt(
                idx,
                Target::Gateway(g),
                gw.address,
                &ruri,
                &called,
                now,
                tx,
                out,
            );
            self.called = called;
            self.ruri = ruri;
            if let Some(n) = n {
                self.calls[idx as usize].attempts[n].holds_slot = true;
                return;
            }
            table.release(g);
        }
        // No gateway left: the best response of the context, else ours.
        if self.calls[idx as usize].best_status != 0 {
            self.send_best(
                idx,
                EndReason::AllGatewaysFailed,
                EndReason::AllGatewaysFailed,
                "no gateway left: every gateway of the route failed",
                now,
                tx,
                out,
            );
            return;
        }
        self.fail(
            idx,
            503,
            "Service Unavailable",
            Some("no gateway available: every gateway of the route is down or full"),
            EndReason::AllGatewaysFailed,
            now,
            tx,
            out,
        );
    }

    /// Keeps a non-2xx final of call `idx` in its response context (RFC 3261 §16.7 step 6):
    /// the best so far, and the challenges of every 401/407.
    fn note_final(&mut self, idx: u32, status: u16, msg: &Message) {
        let c = &mut self.calls[idx as usize];
        if status == 401 || status == 407 {
            for h in msg.headers() {
                if matches!(
                    h.kind,
                    HeaderKind::WwwAuthenticate | HeaderKind::ProxyAuthenticate
                ) {
                    c.auth_lines.extend_from_slice(h.name);
                    c.auth_lines.extend_from_slice(b": ");
                    c.auth_lines.extend_from_slice(h.value);
                    c.auth_lines.extend_from_slice(b"\r\n");
                }
            }
        }
        if c.best_status == 0 || rank(status, true) < rank(c.best_status, !c.best.is_empty()) {
            strip_top_via(&mut c.best, msg);
            c.best_status = status;
        }
    }

    /// An attempt of call `idx` timed out: a 408 in its response context (§16.8), which any
    /// response actually received of the same class beats.
    fn note_timeout(&mut self, idx: u32) {
        let c = &mut self.calls[idx as usize];
        if c.best_status == 0 || rank(408, false) < rank(c.best_status, !c.best.is_empty()) {
            c.best.clear();
            c.best_status = 408;
        }
    }

    /// Every branch of call `idx` failed: the best response of its context goes to the caller
    /// (§16.7 step 6: a 6xx if any, else the lowest class; 401/407 carry every challenge of the
    /// context; a 503 becomes 500, §16.7 step 6), or, when the best is a timeout, our 408 with
    /// `warning`. The CDR's end reason is `received` or `timed_out` accordingly.
    #[allow(clippy::too_many_arguments)]
    fn send_best<O: ProxyOut>(
        &mut self,
        idx: u32,
        received: EndReason,
        timed_out: EndReason,
        warning: &str,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        let c = &mut self.calls[idx as usize];
        let status = c.best_status;
        if c.best.is_empty() {
            // Ours: a 408 for the timeouts, or a 487 for a caller's CANCEL (the branches that
            // answered did so with worse than the timeout).
            let status = match (status, received) {
                (_, EndReason::CallerCancel) => 487,
                (0, _) => 408,
                (s, _) => s,
            };
            self.fail(
                idx,
                status,
                reason_of(status),
                Some(warning),
                timed_out,
                now,
                tx,
                out,
            );
            return;
        }
        let best = std::mem::take(&mut c.best);
        let mut parser = std::mem::take(&mut self.ack_parser);
        let sent = match parser.parse(&best) {
            Ok(msg) => {
                let sent = if status == 503 { 500 } else { status };
                let b = &mut self.buf;
                b.clear();
                if sent != status {
                    b.extend_from_slice(b"SIP/2.0 500 Server Internal Error\r\n");
                } else {
                    let first = best.iter().position(|&x| x == b'\n').map_or(0, |i| i + 1);
                    b.extend_from_slice(&best[..first]);
                }
                // A 401/407: every challenge of the context, where its own first one was.
                let mut merge = (status == 401 || status == 407) && !c.auth_lines.is_empty();
                for h in msg.headers() {
                    let auth = matches!(
                        h.kind,
                        HeaderKind::WwwAuthenticate | HeaderKind::ProxyAuthenticate
                    );
                    if !auth || c.auth_lines.is_empty() {
                        b.extend_from_slice(&best[h.line.0..h.line.1.min(best.len())]);
                    } else if merge {
                        b.extend_from_slice(&c.auth_lines);
                        merge = false;
                    }
                }
                if merge {
                    b.extend_from_slice(&c.auth_lines);
                }
                b.extend_from_slice(b"\r\n");
                b.extend_from_slice(msg.body());
                sent
            }
            Err(_) => {
                self.buf.clear();
                self.buf.extend_from_slice(&best);
                status
            }
        };
        self.ack_parser = parser;
        self.calls[idx as usize].best = best;
        self.forward_final(idx, sent, received, now, tx, out);
    }

    /// Sends one INVITE attempt; returns its index.
    #[allow(clippy::too_many_arguments)]
    fn start_attempt<O: ProxyOut>(
        &mut self,
        idx: u32,
        target: Target,
        dst: SocketAddr,
        ruri: &[u8],
        called: &[u8],
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) -> Option<usize> {
        let n = self.calls[idx as usize].attempts.len();
        if n > u8::MAX as usize {
            return None;
        }
        let mut branch = [0u8; BRANCH_LEN];
        let mut via = std::mem::take(&mut self.buf2);
        self.our_via(&mut branch, &mut via);
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(b"INVITE ");
        b.extend_from_slice(ruri);
        b.extend_from_slice(b" SIP/2.0\r\nVia: ");
        b.extend_from_slice(&via);
        b.extend_from_slice(b"\r\nRecord-Route: <sip:");
        b.extend_from_slice(&self.local);
        b.extend_from_slice(b";lr;s=");
        crate::sip::push_u32(b, self.shard as u32);
        b.extend_from_slice(b">\r\n");
        b.extend_from_slice(&self.calls[idx as usize].fwd_tail);
        self.buf2 = via;
        let tok = self.tok(Kind::Attempt, idx, n as u8);
        let req = ClientRequest {
            method: b"INVITE",
            branch: &branch,
            dst,
            bytes: &self.buf,
            token: tok,
        };
        let id = tx.start_client(req, now, out).ok()?;
        if let Target::Gateway(g) = target {
            self.stats[g as usize].attempts += 1;
        }
        let mut ruri_buf = self.spare.pop().unwrap_or_default();
        ruri_buf.extend_from_slice(ruri);
        let mut called_buf = self.spare.pop().unwrap_or_default();
        called_buf.extend_from_slice(called);
        let to_tag = self.spare.pop().unwrap_or_default();
        self.calls[idx as usize].attempts.push(Attempt {
            target,
            dst,
            ruri: ruri_buf,
            called: called_buf,
            branch,
            tx: id,
            started: now,
            ended: now,
            outcome: None,
            provisional: false,
            cancel_wanted: false,
            cancel_sent: false,
            holds_slot: false,
            to_tag,
        });
        Some(n)
    }

    /// The final failure of a call: `status` to the caller, CDR, slot freed once nothing is
    /// pending.
    #[allow(clippy::too_many_arguments)]
    fn fail<O: ProxyOut>(
        &mut self,
        idx: u32,
        status: u16,
        reason: &str,
        warning: Option<&str>,
        end: EndReason,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        self.reply_caller(idx, status, reason, warning, now, tx, out);
        self.counters.calls_failed += 1;
        let c = &mut self.calls[idx as usize];
        c.final_status = status;
        c.end_reason = Some(end);
        c.end = now;
        c.state = CallState::Ended;
        self.finish(idx, now, tx, out);
    }

    /// Cancels every pending attempt of call `idx` (outcome `why`).
    fn cancel_pending<O: ProxyOut>(
        &mut self,
        idx: u32,
        why: AttemptOutcome,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        for n in 0..self.calls[idx as usize].attempts.len() {
            if !a_is_pending(&self.calls[idx as usize], n) {
                continue;
            }
            self.cancel_attempt(idx, n, now, tx, out);
            let a = &mut self.calls[idx as usize].attempts[n];
            if why != AttemptOutcome::CancelledByCaller {
                a.outcome = Some(why);
                a.ended = now;
            }
        }
    }

    /// Sends the CANCEL of attempt `n` now if it had a provisional, else when one comes.
    fn cancel_attempt<O: ProxyOut>(
        &mut self,
        idx: u32,
        n: usize,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        let a = &mut self.calls[idx as usize].attempts[n];
        if a.cancel_sent {
            return;
        }
        if !a.provisional {
            a.cancel_wanted = true;
            return;
        }
        a.cancel_sent = true;
        let c = &self.calls[idx as usize];
        let a = &c.attempts[n];
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(b"CANCEL ");
        b.extend_from_slice(&a.ruri);
        b.extend_from_slice(b" SIP/2.0\r\nVia: SIP/2.0/UDP ");
        b.extend_from_slice(&self.local);
        b.extend_from_slice(b";branch=");
        b.extend_from_slice(&a.branch);
        b.extend_from_slice(b"\r\n");
        b.extend_from_slice(&c.cancel_tail);
        let tok = token(Kind::Cancel, idx, c.generation, n as u8);
        let _ = tx.start_cancel(a.tx, &self.buf, tok, now, out);
    }

    /// CANCEL from the caller matched the INVITE server transaction with `token` (the 200 to
    /// the CANCEL is the dispatcher's).
    pub fn on_caller_cancel<O: ProxyOut>(
        &mut self,
        server_token: u64,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) -> bool {
        let (kind, index, generation, _) = untoken(server_token);
        if !is_proxy_token(server_token) || kind != Some(Kind::Caller) {
            return false;
        }
        let Some(idx) = self.call_of(index, generation) else {
            return false;
        };
        let c = &mut self.calls[idx as usize];
        if c.cancelled || matches!(c.state, CallState::Answered | CallState::Ended) {
            return true;
        }
        c.cancelled = true;
        self.counters.caller_cancels += 1;
        if c.state == CallState::Locating || c.pending().next().is_none() {
            self.fail(
                idx,
                487,
                "Request Terminated",
                None,
                EndReason::CallerCancel,
                now,
                tx,
                out,
            );
            return true;
        }
        self.cancel_pending(idx, AttemptOutcome::CancelledByCaller, now, tx, out);
        true
    }

    /// ACK, BYE, re-INVITE, UPDATE, INFO, PRACK... with a To tag, or any non-INVITE request at
    /// the owner shard. `id` is its server transaction (None for ACK).
    #[allow(clippy::too_many_arguments)]
    pub fn on_in_dialog<O: ProxyOut>(
        &mut self,
        id: Option<TxId>,
        msg: &Message,
        src: SocketAddr,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        let mf = msg.max_forwards().unwrap_or(70);
        if mf == 0 {
            if let Some(id) = id {
                self.counters.too_many_hops += 1;
                self.reply_stateful(id, msg, src, 483, "Too Many Hops", &[], now, tx, out);
            }
            return;
        }
        if self.is_loop(msg) {
            if let Some(id) = id {
                self.counters.loops += 1;
                self.reply_stateful(id, msg, src, 482, "Loop Detected", &[], now, tx, out);
            }
            return;
        }
        let kinds = HeaderKinds::of(msg);
        if let (Some(id), true) = (id, kinds.proxy_require) {
            if self.bad_extension(id, msg, src, now, tx, out) {
                return;
            }
        }
        let pop = kinds.route && self.first_route_is_ours(msg);
        let call = self.find(msg.call_id().unwrap_or_default());
        // Next hop: a Route after ours, else the dialog, else a Request-URI with an IP.
        let by_route = if kinds.route {
            msg.name_addrs(HeaderKind::Route)
                .nth(usize::from(pop))
                .and_then(|r| r.ok())
                .and_then(|r| uri_address(&r.uri()))
        } else {
            None
        };
        let from_tag = msg.from().and_then(|f| f.tag()).unwrap_or_default();
        let to_tag = msg.to().and_then(|t| t.tag()).unwrap_or_default();
        let mut from_caller = true;
        let by_dialog = call.and_then(|idx| {
            let c = &self.calls[idx as usize];
            if from_tag == &c.caller_tag[..] {
                // Caller → callee: the leg whose tag is the To tag, else the answered one, else
                // the first pending attempt (early dialog).
                c.attempts
                    .iter()
                    .find(|a| !a.to_tag.is_empty() && a.to_tag == to_tag)
                    .or_else(|| {
                        c.attempts
                            .iter()
                            .find(|a| a.outcome == Some(AttemptOutcome::Answered))
                    })
                    .or_else(|| c.attempts.iter().find(|a| a.outcome.is_none()))
                    .map(|a| a.dst)
            } else {
                from_caller = false;
                Some(c.source)
            }
        });
        if let (Some(idx), Some(cseq)) = (call, msg.cseq()) {
            if msg.method() != Some(Method::Ack) {
                let c = &mut self.calls[idx as usize];
                let seen = if from_caller {
                    &mut c.caller_cseq
                } else {
                    &mut c.callee_cseq
                };
                *seen = (*seen).max(cseq.seq);
            }
        }
        // The Request-URI only when neither gives the next hop.
        let by_ruri = || {
            msg.request_uri()
                .and_then(|u| uri_address(&u))
                .filter(|a| Some(*a) != self.local_addr)
        };
        let Some(dst) = by_route.or(by_dialog).or_else(by_ruri) else {
            self.counters.no_dialog += 1;
            if let Some(id) = id {
                self.reply_stateful(
                    id,
                    msg,
                    src,
                    481,
                    "Call/Transaction Does Not Exist",
                    &[],
                    now,
                    tx,
                    out,
                );
            }
            return;
        };
        let mut branch = [0u8; BRANCH_LEN];
        let mut via = std::mem::take(&mut self.buf2);
        self.our_via(&mut branch, &mut via);
        forward_request(
            &mut self.buf,
            msg,
            &RequestEdit {
                ruri: None,
                via: &via,
                record_route: None,
                pop_route: pop,
                strip_proxy_auth: false,
                max_forwards: mf - 1,
            },
        );
        self.buf2 = via;
        let Some(id) = id else {
            // ACK for a 2xx: statelessly.
            self.counters.acks_forwarded += 1;
            if let Some(idx) = call {
                self.calls[idx as usize].confirmed = true;
            }
            out.send(dst, &self.buf);
            return;
        };
        self.counters.in_dialog_forwarded += 1;
        let is_bye = msg.method() == Some(Method::Bye);
        let method = msg.method().map(|m| m.as_bytes()).unwrap_or_default();
        let tok = match call {
            Some(idx) => {
                let c = &mut self.calls[idx as usize];
                let n = c
                    .forwards
                    .iter()
                    .position(|f| !f.live)
                    .unwrap_or(c.forwards.len());
                if n > u8::MAX as usize {
                    0
                } else {
                    if n == c.forwards.len() {
                        c.forwards.push(Forward {
                            server: id,
                            live: true,
                            request: Vec::new(),
                            source: src,
                        });
                    }
                    let f = &mut c.forwards[n];
                    f.server = id;
                    f.live = true;
                    f.source = src;
                    f.request.clear();
                    f.request
                        .extend_from_slice(&msg.buf()[..msg.framed_len().min(msg.buf().len())]);
                    token(Kind::Forward, idx, c.generation, n as u8)
                }
            }
            None => 0,
        };
        if tok == 0 {
            // Not a dialog of ours: answer 481 rather than forward without a way back.
            self.counters.no_dialog += 1;
            self.reply_stateful(
                id,
                msg,
                src,
                481,
                "Call/Transaction Does Not Exist",
                &[],
                now,
                tx,
                out,
            );
            return;
        }
        let req = ClientRequest {
            method,
            branch: &branch,
            dst,
            bytes: &self.buf,
            token: tok,
        };
        if tx.start_client(req, now, out).is_err() {
            self.reply_stateful(
                id,
                msg,
                src,
                500,
                "Server Internal Error",
                &[],
                now,
                tx,
                out,
            );
            return;
        }
        if is_bye {
            if let Some(idx) = call {
                let c = &mut self.calls[idx as usize];
                if matches!(c.state, CallState::Proceeding | CallState::Locating) {
                    // BYE in an early dialog from the caller: the call is given up, as with a
                    // CANCEL (the caller's INVITE gets 487 when the branches confirm).
                    if from_caller {
                        let t = token(Kind::Caller, idx, c.generation, 0);
                        self.on_caller_cancel(t, now, tx, out);
                    }
                } else if c.end_reason.is_none() || c.state == CallState::Answered {
                    self.dur_unlink(idx);
                    let c = &mut self.calls[idx as usize];
                    c.end = now;
                    c.state = CallState::Ended;
                    c.end_reason = Some(if from_caller {
                        EndReason::CallerHangup
                    } else {
                        EndReason::CalleeHangup
                    });
                    self.counters.calls_ended += 1;
                    self.emit_cdr(idx);
                }
            }
        }
    }

    // --- responses and timeouts -------------------------------------------------------------

    /// A response matched a client transaction with a proxy token (`late`: after its timeout).
    pub fn on_response<O: ProxyOut>(
        &mut self,
        msg: &Message,
        tok: u64,
        late: bool,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        let status = msg.status().unwrap_or(0);
        let (kind, index, generation, sub) = untoken(tok);
        match kind {
            Some(Kind::Probe) => {
                if status >= 200 {
                    self.on_probe_result(index as GatewayId, true, now, out);
                }
                return;
            }
            Some(Kind::Cancel) | Some(Kind::Caller) | Some(Kind::Hangup) | None => return,
            _ => {}
        }
        let Some(idx) = self.call_of(index, generation) else {
            // The call is gone: a 2xx still goes upstream, statelessly by the Via (§16.7).
            if kind == Some(Kind::Attempt) && (200..300).contains(&status) {
                if let Some(dst) = via_destination(msg, 1) {
                    self.counters.late_2xx += 1;
                    strip_top_via(&mut self.buf, msg);
                    out.send(dst, &self.buf);
                }
            }
            return;
        };
        if kind == Some(Kind::Forward) {
            self.on_forward_response(idx, sub as usize, msg, status, now, tx, out);
            return;
        }
        let n = sub as usize;
        if n >= self.calls[idx as usize].attempts.len() {
            return;
        }
        if status < 200 {
            let a = &mut self.calls[idx as usize].attempts[n];
            a.provisional = true;
            if a.to_tag.is_empty() {
                // The early dialog's tag: in-dialog requests before the answer (PRACK, UPDATE)
                // find their branch by it.
                a.to_tag
                    .extend_from_slice(msg.to().and_then(|t| t.tag()).unwrap_or_default());
            }
            // A branch given up (cancelled, or timed out before this provisional came: `late`)
            // is CANCELed now that it may be (§9.1).
            if (a.cancel_wanted || late) && !a.cancel_sent {
                self.cancel_attempt(idx, n, now, tx, out);
                return;
            }
            let c = &self.calls[idx as usize];
            if status > 100
                && c.state == CallState::Proceeding
                && !c.cancelled
                && a_is_pending(c, n)
            {
                strip_top_via(&mut self.buf, msg);
                if let Some(server) = c.server {
                    let _ = tx.respond(server, status, &self.buf, now, out);
                }
            }
            return;
        }
        if status < 300 {
            self.on_answer(idx, n, msg, status, late, now, tx, out);
            return;
        }
        // A non-2xx final (the layer has ACKed it).
        let c = &mut self.calls[idx as usize];
        let a = &mut c.attempts[n];
        if a.outcome.is_some() || late {
            return;
        }
        a.ended = now;
        a.outcome = Some(if c.cancelled {
            AttemptOutcome::CancelledByCaller
        } else {
            AttemptOutcome::Rejected(status)
        });
        let target = a.target;
        if a.holds_slot {
            a.holds_slot = false;
            if let Target::Gateway(g) = target {
                self.table.release(g);
            }
        }
        let failover = self.table.is_failover(status);
        if let Target::Gateway(g) = target {
            if failover {
                self.stats[g as usize].fail_status += 1;
            } else {
                self.stats[g as usize].rejected += 1;
            }
            self.gateway_result(g, !failover, now, out);
        }
        if self.calls[idx as usize].state != CallState::Proceeding {
            self.maybe_free(idx);
            return;
        }
        self.note_final(idx, status, msg);
        if status >= 600 && !self.calls[idx as usize].six {
            // §16.7 step 5: a 6xx cancels the other branches and no new one starts.
            self.calls[idx as usize].six = true;
            self.cancel_pending(idx, AttemptOutcome::CancelledByFork, now, tx, out);
        }
        let c = &self.calls[idx as usize];
        let others_pending = c.pending().next().is_some();
        if c.cancelled {
            if !others_pending {
                self.send_best(
                    idx,
                    EndReason::CallerCancel,
                    EndReason::CallerCancel,
                    "cancelled",
                    now,
                    tx,
                    out,
                );
            }
            return;
        }
        if others_pending {
            return; // parallel fork: wait for the other contacts
        }
        let gateway = matches!(target, Target::Gateway(_));
        if failover && gateway && !c.six && c.next < c.plan.len() {
            self.next_gateway(idx, now, tx, out);
            return;
        }
        let why = if failover && gateway && !c.six {
            EndReason::AllGatewaysFailed
        } else {
            EndReason::Rejected
        };
        self.send_best(
            idx,
            why,
            EndReason::AllGatewaysFailed,
            "no gateway left: every gateway of the route failed",
            now,
            tx,
            out,
        );
    }

    /// Sends the final in `self.buf` (a response already stripped of our Via) to the caller and
    /// ends the call.
    fn forward_final<O: ProxyOut>(
        &mut self,
        idx: u32,
        status: u16,
        why: EndReason,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        let c = &mut self.calls[idx as usize];
        if let Some(server) = c.server {
            let _ = tx.respond(server, status, &self.buf, now, out);
        }
        c.final_status = status;
        c.end_reason = Some(why);
        c.end = now;
        c.state = CallState::Ended;
        self.counters.calls_failed += 1;
        self.finish(idx, now, tx, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_answer<O: ProxyOut>(
        &mut self,
        idx: u32,
        n: usize,
        msg: &Message,
        status: u16,
        late: bool,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        strip_top_via(&mut self.buf, msg);
        let c = &mut self.calls[idx as usize];
        // Every 2xx goes upstream (§16.7), retransmissions and late ones too.
        let sent = match c.server {
            Some(server) => tx.respond(server, status, &self.buf, now, out),
            None => Err(RespondError::NoSuchTransaction),
        };
        match sent {
            Ok(()) => {}
            Err(RespondError::FinalAlreadySent) | Err(RespondError::NoSuchTransaction) => {
                self.counters.late_2xx += 1;
                out.send(c.reply_to, &self.buf);
            }
            Err(_) => {}
        }
        let a = &mut c.attempts[n];
        if a.outcome == Some(AttemptOutcome::Answered) {
            return; // a retransmitted 2xx
        }
        if late {
            self.counters.late_2xx += 1;
        }
        let first_answer = a.outcome.is_none() || late;
        a.outcome = Some(AttemptOutcome::Answered);
        a.ended = now;
        a.to_tag.clear();
        a.to_tag
            .extend_from_slice(msg.to().and_then(|t| t.tag()).unwrap_or_default());
        let target = a.target;
        let take = first_answer && matches!(c.state, CallState::Proceeding | CallState::Locating);
        if let Target::Gateway(g) = target {
            self.stats[g as usize].answered += 1;
            self.gateway_result(g, true, now, out);
        }
        if take {
            let local = self.local_addr;
            let c = &mut self.calls[idx as usize];
            c.state = CallState::Answered;
            c.answer = Some(now);
            c.final_status = status;
            // What a BYE of ours needs (max_call_duration): the callee's To, target, routes.
            c.callee_to.clear();
            c.callee_to
                .extend_from_slice(msg.to().map(|t| t.as_bytes()).unwrap_or_default());
            c.callee_target.clear();
            if let Some(contact) = msg.contacts().next() {
                c.callee_target.extend_from_slice(contact.uri().as_bytes());
            }
            c.callee_route.clear();
            c.callee_next = None;
            let ours = msg
                .name_addrs(HeaderKind::RecordRoute)
                .flatten()
                .position(|r| local.is_some() && uri_address(&r.uri()) == local);
            // Entries before ours: proxies on the callee's side (usually none: no allocation).
            if let Some(ours @ 1..) = ours {
                let rr: Vec<_> = msg
                    .name_addrs(HeaderKind::RecordRoute)
                    .flatten()
                    .take(ours)
                    .collect();
                for r in rr.iter().rev() {
                    if c.callee_next.is_none() {
                        c.callee_next = uri_address(&r.uri());
                    }
                    c.callee_route.extend_from_slice(b"Route: ");
                    c.callee_route.extend_from_slice(r.as_bytes());
                    c.callee_route.extend_from_slice(b"\r\n");
                }
            }
            self.dur_link(idx);
            self.counters.calls_answered += 1;
            self.cancel_pending(idx, AttemptOutcome::CancelledByFork, now, tx, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_forward_response<O: ProxyOut>(
        &mut self,
        idx: u32,
        n: usize,
        msg: &Message,
        status: u16,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        let Some(f) = self.calls[idx as usize].forwards.get(n) else {
            return;
        };
        if !f.live {
            return;
        }
        let server = f.server;
        strip_top_via(&mut self.buf, msg);
        let _ = tx.respond(server, status, &self.buf, now, out);
        if status >= 200 {
            self.calls[idx as usize].forwards[n].live = false;
            self.maybe_free(idx);
        }
    }

    /// Queues a transaction timeout with a proxy token, run by [`Proxy::run_timeouts`].
    pub fn queue_timeout(&mut self, token: u64, cause: TimeoutCause) {
        self.timeouts.push((token, cause));
    }

    /// True when timeouts are queued.
    pub fn has_timeouts(&self) -> bool {
        !self.timeouts.is_empty()
    }

    /// Runs the queued timeouts (their failovers start transactions whose events the caller
    /// delivers in turn).
    pub fn run_timeouts<O: ProxyOut>(
        &mut self,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        let mut queued = std::mem::take(&mut self.timeouts);
        for (tok, cause) in queued.drain(..) {
            self.on_timeout(tok, cause, now, tx, out);
        }
        if self.timeouts.is_empty() {
            self.timeouts = queued;
        }
    }

    fn on_timeout<O: ProxyOut>(
        &mut self,
        tok: u64,
        cause: TimeoutCause,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        let (kind, index, generation, sub) = untoken(tok);
        if kind == Some(Kind::Probe) {
            self.on_probe_result(index as GatewayId, false, now, out);
            return;
        }
        let Some(idx) = self.call_of(index, generation) else {
            return;
        };
        match kind {
            Some(Kind::Forward) => {
                let Some(f) = self.calls[idx as usize].forwards.get(sub as usize) else {
                    return;
                };
                if !f.live {
                    return;
                }
                let (server, source) = (f.server, f.source);
                let c = &mut self.calls[idx as usize];
                c.forwards[sub as usize].live = false;
                let request = std::mem::take(&mut c.forwards[sub as usize].request);
                let mut parser = std::mem::take(&mut self.parser);
                if let Ok(msg) = parser.parse(&request) {
                    self.reply_stateful(
                        server,
                        &msg,
                        source,
                        408,
                        "Request Timeout",
                        &[],
                        now,
                        tx,
                        out,
                    );
                } else {
                    tx.terminate(server);
                }
                self.parser = parser;
                self.calls[idx as usize].forwards[sub as usize].request = request;
                self.maybe_free(idx);
            }
            Some(Kind::Attempt) => self.on_attempt_timeout(idx, sub as usize, cause, now, tx, out),
            _ => {}
        }
    }

    fn on_attempt_timeout<O: ProxyOut>(
        &mut self,
        idx: u32,
        n: usize,
        cause: TimeoutCause,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        let Some(a) = self.calls[idx as usize].attempts.get(n) else {
            return;
        };
        let cancelled_before = a.outcome.is_some();
        let target = a.target;
        let outcome = match cause {
            TimeoutCause::TryingTimeout => AttemptOutcome::TryingTimeout,
            TimeoutCause::RingingTimeout => AttemptOutcome::RingingTimeout,
            TimeoutCause::NoFinalAfterCancel => AttemptOutcome::CancelledByCaller,
            _ => AttemptOutcome::NoResponse,
        };
        if matches!(
            cause,
            TimeoutCause::TryingTimeout | TimeoutCause::RingingTimeout
        ) {
            self.cancel_attempt(idx, n, now, tx, out);
        }
        let c = &mut self.calls[idx as usize];
        let a = &mut c.attempts[n];
        if !cancelled_before {
            a.outcome = Some(if c.cancelled {
                AttemptOutcome::CancelledByCaller
            } else {
                outcome
            });
            a.ended = now;
        }
        if a.holds_slot {
            a.holds_slot = false;
            if let Target::Gateway(g) = target {
                self.table.release(g);
            }
        }
        if cancelled_before {
            self.maybe_free(idx);
            return;
        }
        if let Target::Gateway(g) = target {
            let s = &mut self.stats[g as usize];
            match outcome {
                AttemptOutcome::TryingTimeout => s.fail_trying_timeout += 1,
                AttemptOutcome::RingingTimeout => s.ringing_timeout += 1,
                AttemptOutcome::NoResponse => s.fail_no_response += 1,
                _ => {}
            }
            let ok = outcome == AttemptOutcome::RingingTimeout;
            if !matches!(outcome, AttemptOutcome::CancelledByCaller) {
                self.gateway_result(g, ok, now, out);
            }
        }
        let c = &self.calls[idx as usize];
        if c.state != CallState::Proceeding {
            self.maybe_free(idx);
            return;
        }
        if c.cancelled {
            if c.pending().next().is_none() {
                self.fail(
                    idx,
                    487,
                    "Request Terminated",
                    None,
                    EndReason::CallerCancel,
                    now,
                    tx,
                    out,
                );
            }
            return;
        }
        if outcome == AttemptOutcome::RingingTimeout {
            // Nobody answered: no failover.
            self.cancel_pending(idx, AttemptOutcome::RingingTimeout, now, tx, out);
            self.fail(
                idx,
                480,
                "Temporarily Unavailable",
                Some("no answer"),
                EndReason::NoAnswer,
                now,
                tx,
                out,
            );
            return;
        }
        self.note_timeout(idx);
        let c = &self.calls[idx as usize];
        if c.pending().next().is_some() {
            return;
        }
        if matches!(target, Target::Gateway(_)) && !c.six {
            self.next_gateway(idx, now, tx, out);
        } else {
            self.send_best(
                idx,
                EndReason::Rejected,
                EndReason::NoAnswer,
                "no response from the called user",
                now,
                tx,
                out,
            );
        }
    }

    /// Mail from another shard.
    pub fn on_mail<O: ProxyOut, L: Locator>(
        &mut self,
        mail: ProxyMail,
        now: Millis,
        tx: &mut TransactionLayer,
        locator: &L,
        out: &mut O,
    ) {
        match mail {
            ProxyMail::GatewayResult { gateway, ok } => {
                self.on_gateway_result(gateway, ok, now, out)
            }
            ProxyMail::GatewayState { gateway, up } => {
                if let Some(h) = self.health.get_mut(gateway as usize) {
                    h.up = up;
                    h.suspect = !up;
                }
                self.count_owned_down();
            }
            ProxyMail::GatewaySuspect { gateway } => {
                if let Some(h) = self.health.get_mut(gateway as usize) {
                    h.suspect = true;
                }
            }
            ProxyMail::Locate { aor, shard, token } => {
                let mut contacts = Vec::new();
                locator.locate(&aor, now, &mut contacts);
                out.mail(shard, ProxyMail::Located { token, contacts });
            }
            ProxyMail::Located {
                token: tok,
                contacts,
            } => {
                let (kind, index, generation, _) = untoken(tok);
                if kind != Some(Kind::Caller) {
                    return;
                }
                let Some(idx) = self.call_of(index, generation) else {
                    return;
                };
                if self.calls[idx as usize].state != CallState::Locating {
                    return;
                }
                self.start_contacts(idx, &contacts, now, tx, out);
            }
        }
    }

    // --- gateway health ---------------------------------------------------------------------

    /// Reports one attempt's outcome to the gateway's health owner. Failures always go; a
    /// success goes only while the owner counts failures (it said so with `GatewaySuspect`), so a
    /// healthy gateway costs no mail between shards.
    fn gateway_result<O: ProxyOut>(&mut self, g: GatewayId, ok: bool, now: Millis, out: &mut O) {
        let owner = shard_by_hash(self.table.gateways[g as usize].name.as_bytes(), self.shards);
        if owner == self.shard {
            self.on_gateway_result(g, ok, now, out);
            return;
        }
        let h = &mut self.health[g as usize];
        if !ok || h.suspect {
            if ok {
                h.suspect = false;
            }
            out.mail(owner, ProxyMail::GatewayResult { gateway: g, ok });
        }
    }

    fn on_gateway_result<O: ProxyOut>(&mut self, g: GatewayId, ok: bool, now: Millis, out: &mut O) {
        let down_after = self.table.down_after;
        let interval = self.table.probe_interval_ms;
        let Some(h) = self.health.get_mut(g as usize) else {
            return;
        };
        if ok {
            h.fails = 0;
            if !h.up {
                self.set_health(g, true, out);
            }
            return;
        }
        h.fails = h.fails.saturating_add(1);
        if h.fails == 1 {
            // The other shards now report their successes too, until one resets the count.
            for s in 0..self.shards {
                if s != self.shard {
                    out.mail(s, ProxyMail::GatewaySuspect { gateway: g });
                }
            }
        }
        let h = &mut self.health[g as usize];
        if h.up && h.fails >= down_after {
            h.probe_due = Some(now + interval);
            self.set_health(g, false, out);
        }
    }

    fn set_health<O: ProxyOut>(&mut self, g: GatewayId, up: bool, out: &mut O) {
        let h = &mut self.health[g as usize];
        h.up = up;
        self.count_owned_down();
        let h = &mut self.health[g as usize];
        if up {
            h.probe_due = None;
            self.stats[g as usize].marked_up += 1;
        } else {
            self.stats[g as usize].marked_down += 1;
        }
        for s in 0..self.shards {
            if s != self.shard {
                out.mail(s, ProxyMail::GatewayState { gateway: g, up });
            }
        }
    }

    /// Recounts [`Proxy::owned_down`] (after a gateway went up or down: rare).
    fn count_owned_down(&mut self) {
        self.owned_down = self.health.iter().filter(|h| h.owner && !h.up).count();
    }

    fn on_probe_result<O: ProxyOut>(
        &mut self,
        g: GatewayId,
        answered: bool,
        now: Millis,
        out: &mut O,
    ) {
        let interval = self.table.probe_interval_ms;
        let Some(h) = self.health.get_mut(g as usize) else {
            return;
        };
        h.probe_pending = false;
        if answered {
            h.fails = 0;
            if !h.up {
                self.set_health(g, true, out);
            }
        } else if !h.up {
            h.probe_due = Some((h.probe_sent + interval).max(now));
        }
    }

    /// Earliest time [`Proxy::on_timers`] has work (probes of down gateways this shard owns,
    /// the next call to reach `max_call_duration`).
    pub fn next_deadline(&self) -> Option<Millis> {
        let probes = if self.owned_down == 0 {
            None
        } else {
            self.health
                .iter()
                .filter(|h| h.owner && !h.up && !h.probe_pending)
                .filter_map(|h| h.probe_due)
                .min()
        };
        let locate = self.locating.front().map(|&(at, _, _)| at);
        [probes, self.dur_deadline(), locate]
            .into_iter()
            .flatten()
            .min()
    }

    /// Ends the calls that reached `max_call_duration` (at most 256 a call: more stay due and
    /// come at once on the next one) and sends the probes that are due.
    pub fn on_timers<O: ProxyOut>(&mut self, now: Millis, tx: &mut TransactionLayer, out: &mut O) {
        while let Some(&(at, index, generation)) = self.locating.front() {
            if at > now {
                break;
            }
            self.locating.pop_front();
            let Some(idx) = self.call_of(index, generation) else {
                continue;
            };
            if self.calls[idx as usize].state == CallState::Locating {
                self.fail(
                    idx,
                    503,
                    "Service Unavailable",
                    Some("the registrar did not answer the location lookup"),
                    EndReason::LookupTimeout,
                    now,
                    tx,
                    out,
                );
            }
        }
        for _ in 0..256 {
            match self.dur_deadline() {
                Some(due) if due <= now => {
                    let idx = self.dur_head;
                    self.dur_unlink(idx);
                    self.hang_up(idx, now, tx, out);
                }
                _ => break,
            }
        }
        // Probes go only to down gateways this shard owns.
        let gateways = if self.owned_down == 0 {
            0
        } else {
            self.health.len()
        };
        for g in 0..gateways {
            let h = &self.health[g];
            let due = h.owner && !h.up && !h.probe_pending && h.probe_due.is_some_and(|d| d <= now);
            if !due {
                continue;
            }
            let mut branch = [0u8; BRANCH_LEN];
            let u = self.next_unique();
            make_branch(self.shard, u, &mut branch);
            let gw = &self.table.gateways[g];
            let uri = format!("sip:{}", gw.address);
            let tag = format!("{u:016x}");
            let call_id = format!("probe-{u:016x}@sipshard");
            let from = format!("sip:sipshard@{}", String::from_utf8_lossy(&self.local));
            let spec = RequestSpec {
                method: Method::Options,
                uri: uri.as_bytes(),
                transport: "UDP",
                sent_by: &self.local,
                branch: &branch,
                rport: true,
                max_forwards: 70,
                from_display: None,
                from_uri: from.as_bytes(),
                from_tag: tag.as_bytes(),
                to_display: None,
                to_uri: uri.as_bytes(),
                to_tag: None,
                call_id: call_id.as_bytes(),
                cseq: 1,
                contact: None,
                expires: None,
                headers: &[("User-Agent", SERVER_NAME.as_bytes())],
                body: &[],
            };
            write_request(&mut self.buf, &spec);
            let req = ClientRequest {
                method: b"OPTIONS",
                branch: &branch,
                dst: gw.address,
                bytes: &self.buf,
                token: token(Kind::Probe, g as u32, 0, 0),
            };
            let h = &mut self.health[g];
            h.probe_sent = now;
            h.probe_due = None;
            if tx.start_client(req, now, out).is_ok() {
                h.probe_pending = true;
                self.stats[g].probes_sent += 1;
            } else {
                h.probe_due = Some(now + self.table.probe_interval_ms);
            }
        }
    }

    // --- the end of a call ------------------------------------------------------------------

    /// `max_call_duration` ran out for answered call `idx`: a BYE to each side within the
    /// dialog (the callee's Contact and route set with the caller's next CSeq; the caller's
    /// Contact and the INVITE's Record-Route with the callee's next CSeq), CDR `max_duration`,
    /// state freed (the BYEs' answers and timeouts are not waited for).
    fn hang_up<O: ProxyOut>(
        &mut self,
        idx: u32,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        if self.calls[idx as usize].state != CallState::Answered {
            return;
        }
        let mut parser = std::mem::take(&mut self.parser);
        let mut bye = std::mem::take(&mut self.buf);
        let mut via = std::mem::take(&mut self.buf2);
        let mut route = std::mem::take(&mut self.ruri);
        let mut target = std::mem::take(&mut self.called);
        let invite = std::mem::take(&mut self.calls[idx as usize].invite);
        if let Ok(inv) = parser.parse(&invite) {
            let gen = self.calls[idx as usize].generation;
            // To the callee.
            let mut branch = [0u8; BRANCH_LEN];
            self.our_via(&mut branch, &mut via);
            let c = &self.calls[idx as usize];
            let answered = c
                .attempts
                .iter()
                .find(|a| a.outcome == Some(AttemptOutcome::Answered));
            let dst = c.callee_next.or(answered.map(|a| a.dst));
            target.clear();
            match answered {
                _ if !c.callee_target.is_empty() => target.extend_from_slice(&c.callee_target),
                Some(a) => target.extend_from_slice(&a.ruri),
                None => {}
            }
            if let Some(dst) = dst.filter(|_| !target.is_empty()) {
                write_bye(
                    &mut bye,
                    &target,
                    &via,
                    &c.callee_route,
                    inv.from().map(|f| f.as_bytes()).unwrap_or_default(),
                    &c.callee_to,
                    &c.call_id,
                    c.caller_cseq.wrapping_add(1),
                );
                let req = ClientRequest {
                    method: b"BYE",
                    branch: &branch,
                    dst,
                    bytes: &bye,
                    token: token(Kind::Hangup, idx, gen, 0),
                };
                let _ = tx.start_client(req, now, out);
            }
            // To the caller: its Contact, the INVITE's Record-Route in order.
            let mut branch = [0u8; BRANCH_LEN];
            self.our_via(&mut branch, &mut via);
            let c = &self.calls[idx as usize];
            route.clear();
            let mut first_hop = None;
            for r in inv.name_addrs(HeaderKind::RecordRoute).flatten() {
                if first_hop.is_none() {
                    first_hop = Some(uri_address(&r.uri()));
                }
                route.extend_from_slice(b"Route: ");
                route.extend_from_slice(r.as_bytes());
                route.extend_from_slice(b"\r\n");
            }
            let dst = match first_hop {
                Some(Some(a)) => a,
                _ => c.source,
            };
            target.clear();
            match inv.contacts().next() {
                Some(contact) => target.extend_from_slice(contact.uri().as_bytes()),
                None => {
                    target.extend_from_slice(b"sip:");
                    target.extend_from_slice(c.source.to_string().as_bytes());
                }
            }
            write_bye(
                &mut bye,
                &target,
                &via,
                &route,
                &c.callee_to,
                inv.from().map(|f| f.as_bytes()).unwrap_or_default(),
                &c.call_id,
                c.callee_cseq.wrapping_add(1),
            );
            let req = ClientRequest {
                method: b"BYE",
                branch: &branch,
                dst,
                bytes: &bye,
                token: token(Kind::Hangup, idx, gen, 1),
            };
            let _ = tx.start_client(req, now, out);
        }
        self.parser = parser;
        self.calls[idx as usize].invite = invite;
        self.buf = bye;
        self.buf2 = via;
        self.ruri = route;
        self.called = target;
        self.dur_unlink(idx);
        let c = &mut self.calls[idx as usize];
        c.state = CallState::Ended;
        c.end = now;
        c.end_reason = Some(EndReason::MaxDuration);
        self.counters.max_duration += 1;
        self.counters.calls_ended += 1;
        self.emit_cdr(idx);
        self.maybe_free(idx);
    }

    /// After the final: emit the CDR, CANCEL what is still pending, free the slot when nothing
    /// refers to it any more.
    fn finish<O: ProxyOut>(
        &mut self,
        idx: u32,
        now: Millis,
        tx: &mut TransactionLayer,
        out: &mut O,
    ) {
        self.emit_cdr(idx);
        for n in 0..self.calls[idx as usize].attempts.len() {
            if a_is_pending(&self.calls[idx as usize], n) {
                self.cancel_attempt(idx, n, now, tx, out);
            }
        }
        self.maybe_free(idx);
    }

    /// Frees an ended call once no attempt or forward is waiting (dialogs stay until their BYE
    /// completes).
    fn maybe_free(&mut self, idx: u32) {
        let c = &self.calls[idx as usize];
        if c.live && c.state == CallState::Ended && c.cdr_done && c.forwards.iter().all(|f| !f.live)
        {
            self.release(idx);
        }
    }

    fn emit_cdr(&mut self, idx: u32) {
        let c = &mut self.calls[idx as usize];
        if c.cdr_done {
            return;
        }
        c.cdr_done = true;
        if !self.cdr.is_enabled() {
            // No writer: the record would only be refused.
            self.counters.cdr_refused += 1;
            return;
        }
        let c = &self.calls[idx as usize];
        // A record the writer is done with, overwritten field by field (its buffers reused).
        let mut r = self.cdr.used().unwrap_or_else(CdrRecord::blank);
        set_text(&mut r.call_id, &c.call_id);
        set_text(&mut r.caller, &c.cdr_caller);
        set_text(&mut r.callee, &c.number);
        r.source = c.source;
        let (kind, name): (&str, &str) = match c.caller {
            Some(Caller::Peer(p)) => ("peer:", &self.table.peers[p].name),
            Some(Caller::Account(a)) => ("account:", &self.accounts.get(a).user),
            Some(Caller::Trunk(t)) => ("trunk:", self.trunk_names.get(t).map_or("", |n| &**n)),
            None => ("", ""),
        };
        r.caller_identity.clear();
        r.caller_identity.reserve(kind.len() + name.len());
        r.caller_identity.push_str(kind);
        r.caller_identity.push_str(name);
        r.start = c.start;
        r.answer = c.answer;
        r.end = c.end;
        r.attempts.truncate(c.attempts.len());
        for (i, a) in c.attempts.iter().enumerate() {
            if i == r.attempts.len() {
                r.attempts.push(CdrAttempt::blank());
            }
            let ra = &mut r.attempts[i];
            ra.target.clear();
            ra.target.push_str(match a.target {
                Target::Gateway(g) => &self.table.gateways[g as usize].name,
                Target::Contact => "user",
            });
            ra.destination = a.dst;
            set_text(&mut ra.called, &a.called);
            ra.started = a.started;
            ra.ended = if a.outcome.is_some() { a.ended } else { c.end };
            ra.outcome = a.outcome.unwrap_or(AttemptOutcome::CancelledByFork);
        }
        r.final_status = c.final_status;
        r.end_reason = c.end_reason.unwrap_or(EndReason::Shutdown);
        match self.cdr.emit(r) {
            Emitted::Queued => self.counters.cdr_emitted += 1,
            _ => self.counters.cdr_refused += 1,
        }
    }

    /// CDR of a call refused before any state (403).
    fn emit_refused(
        &mut self,
        msg: &Message,
        src: SocketAddr,
        now: Millis,
        status: u16,
        why: EndReason,
    ) {
        if !self.cdr.is_enabled() {
            self.counters.cdr_refused += 1;
            return;
        }
        let mut r = self.cdr.used().unwrap_or_else(CdrRecord::blank);
        set_text(&mut r.call_id, msg.call_id().unwrap_or_default());
        set_text(&mut r.caller, caller_of(msg));
        set_text(
            &mut r.callee,
            msg.request_uri().and_then(|u| u.user()).unwrap_or_default(),
        );
        r.source = src;
        r.caller_identity.clear();
        r.start = now;
        r.answer = None;
        r.end = now;
        r.attempts.clear();
        r.final_status = status;
        r.end_reason = why;
        match self.cdr.emit(r) {
            Emitted::Queued => self.counters.cdr_emitted += 1,
            _ => self.counters.cdr_refused += 1,
        }
    }

    /// On shutdown: every call still in progress or in dialog gets its CDR (end reason Shutdown).
    pub fn shutdown(&mut self, now: Millis) {
        for i in 0..self.calls.len() {
            let c = &mut self.calls[i];
            if c.live && !c.cdr_done {
                c.end = now;
                if c.end_reason.is_none() {
                    c.end_reason = Some(EndReason::Shutdown);
                }
                for a in c.attempts.iter_mut().filter(|a| a.outcome.is_none()) {
                    a.outcome = Some(AttemptOutcome::Shutdown);
                    a.ended = now;
                }
                self.emit_cdr(i as u32);
            }
        }
    }
}

/// Which of the headers the proxy looks for a request has, found in one pass over its headers
/// (most requests have neither, and then nothing else looks).
struct HeaderKinds {
    route: bool,
    proxy_require: bool,
}

impl HeaderKinds {
    fn of(msg: &Message) -> HeaderKinds {
        let mut k = HeaderKinds {
            route: false,
            proxy_require: false,
        };
        for h in msg.headers() {
            match h.kind {
                HeaderKind::Route => k.route = true,
                HeaderKind::ProxyRequire => k.proxy_require = true,
                _ => {}
            }
        }
        k
    }
}

/// A BYE of ours within a dialog (`routes`: whole `Route: ...\r\n` lines).
#[allow(clippy::too_many_arguments)]
fn write_bye(
    out: &mut Vec<u8>,
    target: &[u8],
    via: &[u8],
    routes: &[u8],
    from: &[u8],
    to: &[u8],
    call_id: &[u8],
    cseq: u32,
) {
    out.clear();
    out.extend_from_slice(b"BYE ");
    out.extend_from_slice(target);
    out.extend_from_slice(b" SIP/2.0\r\nVia: ");
    out.extend_from_slice(via);
    out.extend_from_slice(b"\r\nMax-Forwards: 70\r\n");
    out.extend_from_slice(routes);
    out.extend_from_slice(b"From: ");
    out.extend_from_slice(from);
    out.extend_from_slice(b"\r\nTo: ");
    out.extend_from_slice(to);
    out.extend_from_slice(b"\r\nCall-ID: ");
    out.extend_from_slice(call_id);
    out.extend_from_slice(b"\r\nCSeq: ");
    crate::sip::push_u32(out, cseq);
    out.extend_from_slice(
        b" BYE\r\nReason: Q.850;cause=102;text=\"maximum call duration\"\r\nUser-Agent: ",
    );
    out.extend_from_slice(SERVER_NAME.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
}

fn a_is_pending(c: &Call, n: usize) -> bool {
    c.attempts.get(n).is_some_and(|a| a.outcome.is_none())
}

/// The CDR's caller: the From URI user, or the whole URI when it has none.
fn caller_of<'a>(msg: &Message<'a>) -> &'a [u8] {
    let Some(from) = msg.from() else {
        return b"";
    };
    let uri = from.uri();
    uri.user().unwrap_or(uri.as_bytes())
}

fn sent_by_is(via: &crate::sip::Via, local: &[u8]) -> bool {
    let host = via.host();
    let port = via.port().unwrap_or(5060);
    let mut s = Vec::with_capacity(host.len() + 6);
    s.extend_from_slice(host);
    s.push(b':');
    crate::sip::push_u32(&mut s, u32::from(port));
    s.eq_ignore_ascii_case(local)
}

/// A To tag naming the shard: `p<shard hex>.<16 hex>`.
fn make_tag(shard: usize, v: u64) -> [u8; 20] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [b'0'; 20];
    t[0] = b'p';
    t[1] = HEX[(shard >> 4) & 0xf];
    t[2] = HEX[shard & 0xf];
    t[3] = b'.';
    for i in 0..16 {
        t[4 + i] = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    t
}

/// Order of final responses in a response context, lower is better (RFC 3261 §16.7 step 6):
/// any 6xx, then the lowest class; within a class 401/407 first (the caller can answer them),
/// then responses received, then a timeout (`received` false: our own 408), then 503 (sent as
/// 500). Equal ranks keep the first.
fn rank(status: u16, received: bool) -> (u16, u8) {
    let class = if status >= 600 { 0 } else { status / 100 };
    let within = match status {
        401 | 407 => 0,
        503 => 3,
        _ if !received => 2,
        _ => 1,
    };
    (class, within)
}

fn reason_of(status: u16) -> &'static str {
    match status {
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        500 => "Server Internal Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        603 => "Decline",
        _ => "Call Failed",
    }
}
