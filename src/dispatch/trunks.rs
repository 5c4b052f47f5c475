//! The outbound registrations (`[[trunks]]`) owned by one shard, driven as client transactions.
//!
//! Owns: the shard's [`OutboundRegistration`]s (a trunk belongs to shard
//! `shard_by_hash(name) % shards`), one wheel timer per registration, the token of each one's
//! REGISTER in flight, and their counters.
//! Must not: touch sockets, threads, clocks or locks, or resolve names: destinations come
//! resolved from the runtime ([`super::Shared::trunk_destinations`] at start, then
//! [`Mail::TrunkDestination`](super::Mail::TrunkDestination) when a host name re-resolves to
//! another address). Whenever a registration arms the timer of its next attempt (first try,
//! refresh, retry), or a forced attempt starts, a [`ResolveNote`] goes to the runtime through
//! [`ResolveSender`] (`try_send`, never blocks) so that it re-resolves the name before then.
//!
//! Tokens: every trunk token has [`TRUNK_TOKEN_BIT`] set; the registrar's keepalive tokens
//! (`BindingId::to_u64`) never do (binding generations wrap below 2^31). Below the top bit a
//! token holds a per-shard sequence number and the trunk's index here, so an event of an older
//! request (e.g. the timeout of a REGISTER that `stop` superseded) is recognised and ignored.

use std::net::{IpAddr, SocketAddr};

use crossbeam_channel::Sender;

use crate::config::{Config, TrunkConfig};
use crate::sip::{Message, Parser, Uri};
use crate::timer::{Millis, TimerHandle, TimerWheel};
use crate::transaction::{ClientRequest, Token, TransactionLayer, TxSink};
use crate::trunk::{InboundMatch, InboundTrunks, Local, OutboundRegistration, State, TrunkSink};

use super::dispatcher::SERVER_NAME;
use super::{ShardId, Shared};

/// Set in every token of a trunk's client transaction, never in a registrar token.
pub const TRUNK_TOKEN_BIT: u64 = 1 << 63;
const INDEX_BITS: u32 = 24;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// Whether `token` belongs to a trunk's REGISTER (else to the registrar).
pub fn is_trunk_token(token: Token) -> bool {
    token & TRUNK_TOKEN_BIT != 0
}

/// The IP literal of `host` (bare or bracketed), for destinations the runtime did not resolve.
fn literal(host: &str, port: u16) -> Option<SocketAddr> {
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    inner
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, port))
}

/// "Trunk `index` starts an attempt at `attempt_at`": the runtime re-resolves its host name
/// shortly before then (at once when that is already past).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolveNote {
    /// Index in `[[trunks]]`.
    pub index: usize,
    /// The owner shard's `Millis`.
    pub attempt_at: Millis,
}

/// A shard's end of the runtime's re-resolution queue. Never blocks: when the queue is full (or
/// there is no resolver: every host is an IP literal, or a test) the note is dropped, and that
/// attempt uses the last known address.
#[derive(Clone, Debug, Default)]
pub struct ResolveSender {
    tx: Option<Sender<ResolveNote>>,
}

impl ResolveSender {
    pub fn new(tx: Sender<ResolveNote>) -> Self {
        Self { tx: Some(tx) }
    }

    /// No resolver behind it.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Queue `note` if there is room; true when queued.
    pub fn note(&self, note: ResolveNote) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.try_send(note).is_ok())
    }
}

/// A trunk's destination re-resolved by the runtime (boxed in [`Mail::TrunkDestination`]).
/// Every shard takes it for inbound matching; the owner sends the trunk's next REGISTER there.
///
/// [`Mail::TrunkDestination`]: super::Mail::TrunkDestination
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrunkDestination {
    /// Index in `[[trunks]]`.
    pub index: usize,
    /// The new destination (outbound proxy, else registrar).
    pub addr: SocketAddr,
    /// The local IP toward `addr`, when the runtime computes it (listener 0.0.0.0 / [::] and no
    /// `advertised_address`): the Via sent-by and Contact of the next REGISTER carry it.
    pub local_ip: Option<IpAddr>,
}

struct Entry {
    /// Index in `[[trunks]]`.
    index: usize,
    reg: OutboundRegistration,
    dst: SocketAddr,
    timer: Option<TimerHandle>,
    /// Token of the REGISTER in flight (0: none yet).
    token: Token,
}

/// A trunk of this shard not built yet (the local address is not known).
struct PendingTrunk {
    slot: (u32, u32),
    cfg: TrunkConfig,
    dst: SocketAddr,
    /// The runtime's local IP toward `dst` (for an unspecified listener).
    local_ip: Option<IpAddr>,
}

/// The trunks of one shard.
pub struct Trunks {
    shard: ShardId,
    shards: usize,
    seed: u64,
    send_unregister: bool,
    /// `[server] advertised_address`.
    advertised: Option<(String, Option<u16>)>,
    /// The bound address, once known.
    local: Option<SocketAddr>,
    /// Where the notes for the runtime's resolver go.
    resolve: ResolveSender,
    pending: Vec<PendingTrunk>,
    entries: Vec<Entry>,
    /// Every trunk of the config (not only this shard's), for [`Trunks::match_inbound`].
    inbound: InboundTrunks,
    timers: TimerWheel<usize>,
    /// `start` is due on the next `on_timers`.
    start_due: bool,
    stopping: bool,
    /// Timeouts (and failed starts) of trunk transactions, handled by `run_timeouts`.
    timeouts: Vec<Token>,
    seq: u64,
    parser: Parser,
    /// REGISTER requests handed to the transaction layer.
    pub registers_sent: u64,
    /// Transitions into `Registered`.
    pub times_registered: u64,
}

/// Runs one registration's output through the transaction layer and the wheel.
struct Driver<'a, S> {
    tx: &'a mut TransactionLayer,
    sink: &'a mut S,
    timers: &'a mut TimerWheel<usize>,
    timer: &'a mut Option<TimerHandle>,
    token: &'a mut Token,
    seq: &'a mut u64,
    timeouts: &'a mut Vec<Token>,
    parser: &'a mut Parser,
    sent: &'a mut u64,
    index: usize,
    dst: SocketAddr,
    now: Millis,
}

impl<S: TxSink> TrunkSink for Driver<'_, S> {
    fn send_register(&mut self, request: &[u8]) {
        *self.seq += 1;
        let token =
            TRUNK_TOKEN_BIT | ((*self.seq << INDEX_BITS) & !TRUNK_TOKEN_BIT) | self.index as u64;
        *self.token = token;
        let branch = match self.parser.parse(request) {
            Ok(msg) => msg
                .top_via()
                .and_then(|v| v.branch().map(<[u8]>::to_vec))
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let req = ClientRequest {
            method: b"REGISTER",
            branch: &branch,
            dst: self.dst,
            bytes: request,
            token,
        };
        match self.tx.start_client(req, self.now, self.sink) {
            Ok(_) => *self.sent += 1,
            // Never left waiting: a request that could not start counts as timed out.
            Err(_) => self.timeouts.push(token),
        }
    }

    fn set_timer(&mut self, at: Millis) {
        if let Some(h) = self.timer.take() {
            self.timers.cancel(h);
        }
        *self.timer = Some(self.timers.insert(at, self.index));
    }

    fn cancel_timer(&mut self) {
        if let Some(h) = self.timer.take() {
            self.timers.cancel(h);
        }
    }
}

impl Trunks {
    /// The trunks of `config.trunks` this shard owns; `shared.trunk_destinations` are the
    /// runtime's resolved addresses by `[[trunks]]` index (an IP literal works without one; a
    /// trunk with neither is skipped).
    pub fn new(
        shard: ShardId,
        shards: usize,
        config: &Config,
        shared: &Shared,
        now: Millis,
    ) -> Trunks {
        let trunks = &config.trunks;
        let destinations = &shared.trunk_destinations;
        let count = trunks.len() as u32;
        let mut pending = Vec::new();
        for (i, cfg) in trunks.iter().enumerate() {
            if crate::transaction::shard_by_hash(cfg.name.as_bytes(), shards) != shard {
                continue;
            }
            let (host, port) = match &cfg.outbound_proxy {
                Some((h, p)) => (h.as_str(), *p),
                None => (cfg.registrar.as_str(), cfg.port),
            };
            let dst = destinations
                .get(i)
                .copied()
                .flatten()
                .or_else(|| literal(host, port));
            match dst {
                Some(dst) if (pending.len() as u64) < INDEX_MASK => pending.push(PendingTrunk {
                    slot: (i as u32, count),
                    cfg: cfg.clone(),
                    dst,
                    local_ip: shared.trunk_local_ips.get(i).copied().flatten(),
                }),
                _ => {
                    tracing::warn!(trunk = %cfg.name, host, "trunk destination not resolved; skipped")
                }
            }
        }
        Trunks {
            shard,
            shards: shards.max(1),
            seed: shared.seed,
            send_unregister: config.sip.user_agent_send_unregister,
            advertised: config.server.advertised_address.clone(),
            local: None,
            resolve: shared.trunk_resolve.clone(),
            inbound: InboundTrunks::new(trunks, destinations),
            pending,
            entries: Vec::new(),
            timers: TimerWheel::new(now),
            start_due: false,
            stopping: false,
            timeouts: Vec::new(),
            seq: 0,
            parser: Parser::new(),
            registers_sent: 0,
            times_registered: 0,
        }
    }

    /// The local address is known: build the registrations; they start on the next `on_timers`.
    /// Their Via sent-by and Contact host:port: `advertised_address` when set (its port, else
    /// the bound one); else, when `local` is unspecified (0.0.0.0 / [::]), the runtime's local
    /// IP toward the trunk's destination with the bound port; else `local`.
    pub fn set_local_addr(&mut self, local: SocketAddr) {
        self.local = Some(local);
        for p in std::mem::take(&mut self.pending) {
            let sent_by = self.sent_by(local, p.local_ip);
            let l = Local {
                sent_by,
                shard: self.shard,
                seed: self.seed,
                send_unregister: self.send_unregister,
                user_agent: SERVER_NAME.to_string(),
                spread_slot: Some(p.slot),
            };
            let mut reg = OutboundRegistration::new(p.cfg, l);
            reg.steer_call_id(self.shards);
            self.entries.push(Entry {
                index: p.slot.0 as usize,
                reg,
                dst: p.dst,
                timer: None,
                token: 0,
            });
        }
        self.start_due = !self.entries.is_empty() && !self.stopping;
    }

    /// Our Via sent-by / Contact `host:port` (see [`Trunks::set_local_addr`]).
    fn sent_by(&self, local: SocketAddr, local_ip: Option<IpAddr>) -> String {
        match (&self.advertised, local_ip) {
            (Some((host, port)), _) => format!("{host}:{}", port.unwrap_or(local.port())),
            (None, Some(ip)) if local.ip().is_unspecified() => {
                SocketAddr::new(ip, local.port()).to_string()
            }
            _ => local.to_string(),
        }
    }

    /// The runtime re-resolved trunk `d.index` (any shard's trunk): inbound requests from the
    /// new IP are matched to it; when this shard owns it, its next REGISTER goes to `d.addr`
    /// (a transaction in flight keeps its destination) with the Via/Contact host from
    /// `d.local_ip` when the listener is unspecified (as at start).
    pub fn set_destination(&mut self, d: &TrunkDestination) {
        self.inbound.set_destination(d.index, d.addr);
        if let Some(p) = self
            .pending
            .iter_mut()
            .find(|p| p.slot.0 as usize == d.index)
        {
            p.dst = d.addr;
            p.local_ip = d.local_ip.or(p.local_ip);
        }
        let Some(i) = self.entries.iter().position(|e| e.index == d.index) else {
            return;
        };
        let sent_by = match (self.local, d.local_ip) {
            (Some(local), Some(ip)) => Some(self.sent_by(local, Some(ip))),
            _ => None,
        };
        let e = &mut self.entries[i];
        if e.dst != d.addr {
            tracing::info!(trunk = e.reg.name(), from = %e.dst, to = %d.addr, "trunk destination changed");
            e.dst = d.addr;
        }
        if let Some(sent_by) = sent_by {
            e.reg.set_sent_by(sent_by);
        }
    }

    /// Where trunk `name`'s next REGISTER goes, if this shard owns it.
    pub fn destination_of(&self, name: &str) -> Option<SocketAddr> {
        self.entries
            .iter()
            .find(|e| e.reg.name() == name)
            .map(|e| e.dst)
    }

    /// Which `[[trunks]]` entry (of all, whichever shard owns it) a request from `src` to
    /// `request_uri` comes from: source IP = the trunk's registrar/proxy address, preferring the
    /// trunk whose contact user is the Request-URI user (see `trunk::InboundTrunks`). For call
    /// routing: an INVITE matched here came from that upstream.
    pub fn match_inbound(&self, request_uri: &Uri, src: SocketAddr) -> Option<InboundMatch<'_>> {
        self.inbound.match_request(request_uri, src)
    }

    pub fn registrations(&self) -> impl Iterator<Item = &OutboundRegistration> {
        self.entries.iter().map(|e| &e.reg)
    }

    /// Earliest time `on_timers` has trunk work: at once while starts are pending.
    pub fn next_deadline(&self) -> Option<Millis> {
        if self.start_due {
            return Some(0);
        }
        self.timers.next_deadline()
    }

    fn with<S: TxSink>(
        &mut self,
        index: usize,
        tx: &mut TransactionLayer,
        sink: &mut S,
        now: Millis,
        f: impl FnOnce(&mut OutboundRegistration, &mut Driver<'_, S>),
    ) {
        let Self {
            entries,
            timers,
            timeouts,
            seq,
            parser,
            registers_sent,
            times_registered,
            resolve,
            ..
        } = self;
        let e = &mut entries[index];
        let before = e.reg.state();
        let armed_before = e.reg.next_action_at();
        let mut d = Driver {
            tx,
            sink,
            timers,
            timer: &mut e.timer,
            token: &mut e.token,
            seq,
            timeouts,
            parser,
            sent: registers_sent,
            index,
            dst: e.dst,
            now,
        };
        f(&mut e.reg, &mut d);
        let after = e.reg.state();
        let armed = e.reg.next_action_at();
        if let Some(at) = armed.filter(|_| armed != armed_before) {
            if matches!(
                after,
                State::Registering | State::Registered | State::Failed
            ) {
                // The next attempt is scheduled: have the runtime re-resolve the name first.
                resolve.note(ResolveNote {
                    index: e.index,
                    attempt_at: at,
                });
            }
        }
        if before != after {
            match after {
                State::Registered => {
                    *times_registered += 1;
                    let s = e.reg.status();
                    tracing::info!(
                        trunk = e.reg.name(),
                        expires_s = s.effective_expiry_s,
                        "trunk registered"
                    );
                }
                State::Failed => {
                    let s = e.reg.status();
                    tracing::warn!(
                        trunk = e.reg.name(),
                        error = s.last_error.as_deref().unwrap_or(""),
                        "trunk registration failed; retrying"
                    );
                }
                State::Stopped => tracing::info!(trunk = e.reg.name(), "trunk stopped"),
                _ => {}
            }
        }
    }

    /// Start pending registrations, fire due timers, handle queued timeouts.
    pub fn on_timers<S: TxSink>(&mut self, now: Millis, tx: &mut TransactionLayer, sink: &mut S) {
        if self.start_due {
            self.start_due = false;
            for i in 0..self.entries.len() {
                self.with(i, tx, sink, now, |r, d| r.start(now, d));
            }
        }
        while let Some((_, i)) = self.timers.poll(now) {
            self.entries[i].timer = None;
            self.with(i, tx, sink, now, |r, d| r.on_timer(now, d));
        }
        self.run_timeouts(now, tx, sink);
    }

    /// A client transaction with a trunk token timed out (handled by `run_timeouts`).
    pub fn on_timeout(&mut self, token: Token) {
        self.timeouts.push(token);
    }

    /// Timeouts are queued for [`Trunks::run_timeouts`].
    pub fn has_timeouts(&self) -> bool {
        !self.timeouts.is_empty()
    }

    /// Hand queued timeouts to their registrations (stale tokens are ignored).
    pub fn run_timeouts<S: TxSink>(
        &mut self,
        now: Millis,
        tx: &mut TransactionLayer,
        sink: &mut S,
    ) {
        while let Some(token) = self.timeouts.pop() {
            if let Some(i) = self.current(token) {
                self.with(i, tx, sink, now, |r, d| r.on_timeout(now, d));
            }
        }
    }

    fn current(&self, token: Token) -> Option<usize> {
        let i = (token & INDEX_MASK) as usize;
        (is_trunk_token(token) && self.entries.get(i)?.token == token).then_some(i)
    }

    /// A response passed up by the transaction with a trunk token.
    pub fn on_response<S: TxSink>(
        &mut self,
        token: Token,
        msg: &Message,
        now: Millis,
        tx: &mut TransactionLayer,
        sink: &mut S,
    ) {
        if let Some(i) = self.current(token) {
            self.with(i, tx, sink, now, |r, d| {
                r.on_response(msg, now, d);
            });
        }
        self.run_timeouts(now, tx, sink);
    }

    /// Shutdown: `stop` every registration once; true when all are stopped.
    pub fn shutdown<S: TxSink>(
        &mut self,
        now: Millis,
        tx: &mut TransactionLayer,
        sink: &mut S,
    ) -> bool {
        if !self.stopping {
            self.stopping = true;
            self.start_due = false;
            for i in 0..self.entries.len() {
                self.with(i, tx, sink, now, |r, d| r.stop(now, d));
            }
            self.run_timeouts(now, tx, sink);
        }
        self.all_stopped()
    }

    /// Management: start a new attempt of the trunk called `name` now (see
    /// [`OutboundRegistration::force_register`]). False when this shard has no such trunk, or
    /// it is stopping.
    pub fn force_register<S: TxSink>(
        &mut self,
        name: &str,
        now: Millis,
        tx: &mut TransactionLayer,
        sink: &mut S,
    ) -> bool {
        if self.stopping {
            return false;
        }
        let Some(i) = self.entries.iter().position(|e| e.reg.name() == name) else {
            return false;
        };
        // This attempt goes to the last known address; a changed one serves the next request.
        self.resolve.note(ResolveNote {
            index: self.entries[i].index,
            attempt_at: now,
        });
        self.with(i, tx, sink, now, |r, d| r.force_register(now, d));
        self.run_timeouts(now, tx, sink);
        true
    }

    /// True when every registration is stopped.
    pub fn all_stopped(&self) -> bool {
        self.entries.iter().all(|e| e.reg.state() == State::Stopped)
    }

    /// (registered, retrying, failures): registrations held now, in `Failed` now (waiting for
    /// the retry delay), and failed attempts so far.
    pub fn gauges(&self) -> (u64, u64, u64) {
        let mut g = (0, 0, 0);
        for e in &self.entries {
            match e.reg.state() {
                State::Registered => g.0 += 1,
                State::Failed => g.1 += 1,
                _ => {}
            }
            g.2 += e.reg.status().failures;
        }
        g
    }
}
