//! The per-shard dispatcher: what sipshard does with each datagram.
//!
//! Owns: the shard's parser, transaction layer and response buffer; the ownership rule for
//! requests and responses; the stateless answers (OPTIONS 200, 400/505/501/416/420/483) and the
//! transaction-stateful ones (REGISTER through the registrar, calls through the proxy core
//! `routing::Proxy`, 405 for methods not served, CANCEL 200/481, ACK absorption).
//! Must not: touch sockets, threads, clocks or locks (time comes in, output goes to an `Outbox`).
//!
//! Order of checks for a request (RFC 3261 §8.2 and §16.3):
//! 1. syntax (`sip::Message::validate`): 400, 505, or 501 for an unknown method whose CSeq
//!    disagrees; a request without a usable Via is dropped and counted;
//! 2. ACK never gets a response: it goes to its INVITE server transaction (absorbed), or, for a
//!    2xx, to the proxy, which forwards it statelessly by Route or dialog;
//! 3. a branch that is only the magic cookie `z9hG4bK` (RFC 4475 §3.2.1): 400;
//! 4. Request-URI scheme other than sip/sips/tel: 416;
//! 5. method: unknown → 501; REGISTER → the registrar at the AOR's owner shard; everything else
//!    through a server transaction at the Call-ID's owner shard:
//!    - INVITE without a To tag → the proxy: Max-Forwards 0 → 483, our own Via → 482,
//!      Proxy-Require → 420, who may call (peer, an upstream trunk's source
//!      (`Trunks::match_inbound`), account by source, 407 digest, else 403),
//!      100 Trying, then a registered user's contacts or the gateways of the longest matching
//!      route (none → 404/403);
//!    - any request with a To tag, and BYE/UPDATE/INFO/PRACK → the proxy's in-dialog routing
//!      (Route after ours, else the dialog, else an IP Request-URI; none → 481);
//!    - SUBSCRIBE, NOTIFY, REFER, MESSAGE, PUBLISH outside a dialog → 405 with `Allow`;
//!    - CANCEL → 200 when it matches a live INVITE server transaction (the proxy then CANCELs
//!      the pending branches and the caller gets 487 when they confirm), else 481;
//! 6. OPTIONS: Max-Forwards 0 on a request for a user (R-URI with a user part, so not for this
//!    server itself) → 483; any Require/Proxy-Require → 420 with `Unsupported`; else 200,
//!    answered statelessly by whichever shard received it.
//!
//! Ownership (architecture guide): stateful requests belong to `hash(Call-ID) % shards`; a response
//! belongs to the shard written into the Via branch we generated. A datagram that lands elsewhere
//! is handed over raw; the owner answers from its own socket (same local address). Tokens of
//! client transactions say who started them: bit 63 the trunks, bit 62 the proxy, else the
//! registrar's keepalives.

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::SocketAddr;

use crate::config::Config;
use crate::registrar::bindings::{aor_key, owner_of_aor};
use crate::sip::{
    push_header_line, write_response, write_response_with_lines, HeaderKind, Invalid, Message,
    Method, Parser, ResponseOptions, Rport, Scheme,
};
use crate::timer::Millis;
use crate::transaction::{
    has_magic_cookie, shard_of_branch, LegacyKey, RequestInfo, RequestOutcome, ResponseInfo,
    ResponseOutcome, ServerKey, TransactionLayer, TxEvent, TxSink,
};

use crate::routing::{is_proxy_token, FromTrunk, GatewayStat, Proxy, ProxyMail, ProxyOut};
use crate::trunk::MatchedBy;

use super::query::{AdminQuery, AdminReply, RegistrarQuery, RegistrarReply};
use super::register::{KeepaliveStarter, RegisterPath, Shared};
use super::trunks::{is_trunk_token, TrunkDestination, Trunks};
use super::{Core, Outbox, ShardId};

/// `Server:` header value.
pub const SERVER_NAME: &str = concat!("sipshard/", env!("CARGO_PKG_VERSION"));
/// Methods served at this stage (`Allow:` in 405 and OPTIONS responses).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, UPDATE, INFO, PRACK";

/// What shards send each other.
#[derive(Debug)]
pub enum Mail {
    /// A datagram received by another shard that belongs to this one.
    Datagram { src: SocketAddr, data: Box<[u8]> },
    /// A query of this shard's registrar (from another shard or from outside the shards); the
    /// answer goes to `reply` with `try_send` (never blocks: a full or closed channel drops it).
    /// The query is boxed so that `Mail`, and every mailbox slot of the datagram hand-over path,
    /// stays the size of a `Datagram`.
    Registrar {
        query: Box<RegistrarQuery>,
        reply: crossbeam_channel::Sender<RegistrarReply>,
    },
    /// Between the proxy cores of two shards: gateway health, registered-user lookups.
    Proxy(ProxyMail),
    /// This shard's view of every gateway (health, counters), for the management side; the
    /// answer goes to `reply` with `try_send`. Sum the counters over every shard; the `up` of
    /// the row with `health_owner` is authoritative.
    GatewayStats {
        reply: crossbeam_channel::Sender<Vec<GatewayStat>>,
    },
    /// A management query (outbound registration status, force re-register, live core
    /// counters), from the admin side; answered like `Registrar` (`try_send`, never blocks).
    /// Boxed for the same reason.
    Admin {
        query: Box<AdminQuery>,
        reply: crossbeam_channel::Sender<AdminReply>,
    },
    /// From the runtime's resolver, to every shard: a trunk's host name now resolves to
    /// another address (inbound matching follows it; the owner shard sends the trunk's next
    /// REGISTER there). Boxed: rare, and keeps `Mail` small.
    TrunkDestination(Box<TrunkDestination>),
}

/// The shard that owns the state of a call or transaction with this Call-ID. Every shard computes
/// the same answer, and so does the kernel's reuseport program (`io::steer`, `sip::steer`).
pub fn owner_of_call_id(call_id: &[u8], shards: usize) -> ShardId {
    crate::sip::steer::steer_shard(call_id, shards)
}

fn fixed_hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        0x5157_5348_4152_4431,
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
    )
}

/// Counters of one dispatcher (summed over shards by the runtime).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DispatchCounters {
    pub datagrams: u64,
    pub requests: u64,
    pub responses: u64,
    pub handed_out: u64,
    pub handed_in: u64,
    pub options_answered: u64,
    pub responses_sent: u64,
    pub rejected_400: u64,
    pub rejected_405: u64,
    pub rejected_416: u64,
    pub rejected_420: u64,
    pub rejected_481: u64,
    pub rejected_483: u64,
    pub rejected_501: u64,
    pub rejected_503: u64,
    pub rejected_505: u64,
    pub cancel_200: u64,
    pub acks_absorbed: u64,
    pub drop_keepalive: u64,
    pub drop_not_sip: u64,
    pub drop_invalid_response: u64,
    pub drop_request_without_via: u64,
    pub drop_stray_response: u64,
    pub drop_stray_ack: u64,
    pub drop_oversize: u64,
}

impl DispatchCounters {
    fn count_rejection(&mut self, status: u16) {
        match status {
            400 => self.rejected_400 += 1,
            405 => self.rejected_405 += 1,
            416 => self.rejected_416 += 1,
            420 => self.rejected_420 += 1,
            481 => self.rejected_481 += 1,
            483 => self.rejected_483 += 1,
            501 => self.rejected_501 += 1,
            503 => self.rejected_503 += 1,
            505 => self.rejected_505 += 1,
            _ => {}
        }
    }

    /// Every datagram dropped without an answer, whatever the cause.
    pub fn dropped(&self) -> u64 {
        self.drop_keepalive
            + self.drop_not_sip
            + self.drop_invalid_response
            + self.drop_request_without_via
            + self.drop_stray_response
            + self.drop_stray_ack
            + self.drop_oversize
    }

    pub fn pairs(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("datagrams", self.datagrams),
            ("requests", self.requests),
            ("responses", self.responses),
            ("handed_out", self.handed_out),
            ("handed_in", self.handed_in),
            ("options_answered", self.options_answered),
            ("responses_sent", self.responses_sent),
            ("rejected_400", self.rejected_400),
            ("rejected_405", self.rejected_405),
            ("rejected_416", self.rejected_416),
            ("rejected_420", self.rejected_420),
            ("rejected_481", self.rejected_481),
            ("rejected_483", self.rejected_483),
            ("rejected_501", self.rejected_501),
            ("rejected_503", self.rejected_503),
            ("rejected_505", self.rejected_505),
            ("cancel_200", self.cancel_200),
            ("acks_absorbed", self.acks_absorbed),
            ("dropped", self.dropped()),
            ("drop_keepalive", self.drop_keepalive),
            ("drop_not_sip", self.drop_not_sip),
            ("drop_invalid_response", self.drop_invalid_response),
            ("drop_request_without_via", self.drop_request_without_via),
            ("drop_stray_response", self.drop_stray_response),
            ("drop_stray_ack", self.drop_stray_ack),
            ("drop_oversize", self.drop_oversize),
        ]
    }
}

/// The protocol core of one shard.
pub struct Dispatcher {
    shard: ShardId,
    shards: usize,
    max_datagram: usize,
    parser: Parser,
    tx: TransactionLayer,
    /// Reused response buffer.
    out_buf: Vec<u8>,
    /// Reused scratch for the sent-by key.
    sent_by: Vec<u8>,
    /// The extra header lines of every 200 to OPTIONS (Allow, Accept, Server), made once.
    options_lines: Vec<u8>,
    counters: DispatchCounters,
    /// The registrar of this shard and the REGISTER path around it.
    reg: RegisterPath,
    /// Transaction events collected during one call into the layer, handled right after.
    events: Vec<TxEvent>,
    /// The outbound registrations (`[[trunks]]`) this shard owns.
    trunks: Trunks,
    /// The proxy core: the calls this shard owns.
    proxy: Proxy,
    proxy_stopped: bool,
}

/// Adapts the runtime's `Outbox` to the transaction layer's sink.
struct Sink<'o, O> {
    out: &'o mut O,
    sent: &'o mut u64,
    events: &'o mut Vec<TxEvent>,
}

impl<O: Outbox<Mail>> ProxyOut for Sink<'_, O> {
    fn mail(&mut self, shard: usize, mail: ProxyMail) {
        self.out.mail(shard, Mail::Proxy(mail));
    }
}

impl<O: Outbox<Mail>> TxSink for Sink<'_, O> {
    fn send(&mut self, dst: SocketAddr, data: &[u8]) {
        *self.sent += 1;
        self.out.send_to(dst, data);
    }
    fn event(&mut self, ev: TxEvent) {
        // Handled by the dispatcher once the layer returns (the only client transactions at this
        // stage are the registrar's NAT keepalives).
        self.events.push(ev);
    }
}

/// What to answer a request with, decided before any transaction exists.
enum Verdict {
    /// Stateless answer with this status and reason phrase, and what was wrong (for `Warning`).
    Stateless(u16, &'static str, Option<&'static str>),
    /// 200 OK to OPTIONS (stateless).
    OptionsOk,
    /// Through a server transaction at the owner shard.
    Stateful,
    /// REGISTER: rate limit here, then a server transaction at the AOR's owner shard.
    Register,
}

impl Dispatcher {
    pub fn new(
        shard: ShardId,
        shards: usize,
        config: &Config,
        shared: &Shared,
        now: Millis,
    ) -> Self {
        Self {
            shard,
            shards: shards.max(1),
            max_datagram: config.server.max_datagram_bytes,
            parser: Parser::new(),
            tx: TransactionLayer::new(&config.sip.timers, now),
            out_buf: Vec::with_capacity(2048),
            sent_by: Vec::with_capacity(64),
            options_lines: {
                let mut l = Vec::new();
                push_header_line(&mut l, "Allow", ALLOW.as_bytes());
                push_header_line(&mut l, "Accept", b"application/sdp");
                push_header_line(&mut l, "Server", SERVER_NAME.as_bytes());
                l
            },
            counters: DispatchCounters::default(),
            reg: {
                let mut reg = RegisterPath::new(shard, config, shared, now);
                reg.registrar.set_shard_count(shards.max(1));
                reg
            },
            events: Vec::new(),
            trunks: Trunks::new(shard, shards.max(1), config, shared, now),
            proxy: Proxy::new(
                shard,
                shards.max(1),
                config,
                shared.routing.clone(),
                shared.accounts.clone(),
                shared.nonce_key.clone(),
                shared.cdr.clone(),
                shared.seed,
            ),
            proxy_stopped: false,
        }
    }

    /// The proxy core of this shard (calls, gateway health and counters).
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Every gateway as this shard sees it, with this shard's counters (sum over shards).
    pub fn gateway_stats(&self) -> Vec<GatewayStat> {
        self.proxy.gateway_stats()
    }

    pub fn dispatch_counters(&self) -> DispatchCounters {
        self.counters
    }

    pub fn transactions(&self) -> &TransactionLayer {
        &self.tx
    }

    /// The REGISTER path of this shard (registrar, guards, failed-registration log).
    pub fn register_path(&self) -> &RegisterPath {
        &self.reg
    }

    /// The outbound registrations this shard owns.
    pub fn trunks(&self) -> &Trunks {
        &self.trunks
    }

    /// The answer to a management query (see [`AdminQuery`]).
    fn admin_answer<O: Outbox<Mail>>(
        &mut self,
        query: AdminQuery,
        now: Millis,
        out: &mut O,
    ) -> AdminReply {
        match query {
            AdminQuery::Trunks => AdminReply::Trunks(
                self.trunks
                    .registrations()
                    .map(|r| super::query::trunk_row(self.shard, r))
                    .collect(),
            ),
            AdminQuery::Reregister { name } => {
                let Self {
                    tx,
                    reg,
                    events,
                    trunks,
                    proxy,
                    ..
                } = self;
                let mut requests = 0u64;
                let ok = trunks.force_register(
                    &name,
                    now,
                    tx,
                    &mut Sink {
                        out,
                        sent: &mut requests,
                        events,
                    },
                );
                settle_events(trunks, reg, proxy, tx, out, events, now);
                AdminReply::Reregistered(ok)
            }
            AdminQuery::Counters => AdminReply::Counters(Core::counters(self)),
        }
    }

    fn handle<O: Outbox<Mail>>(
        &mut self,
        now: Millis,
        src: SocketAddr,
        data: &[u8],
        handed_in: bool,
        out: &mut O,
    ) {
        if data.len() > self.max_datagram {
            self.counters.drop_oversize += 1;
            return;
        }
        if data
            .iter()
            .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
        {
            // CRLF keep-alives (and empty datagrams) carry nothing to answer.
            self.counters.drop_keepalive += 1;
            return;
        }
        let Self {
            shard,
            shards,
            parser,
            tx,
            out_buf,
            sent_by,
            options_lines,
            counters,
            reg,
            events,
            trunks,
            proxy,
            ..
        } = self;
        let Ok(msg) = parser.parse(data) else {
            counters.drop_not_sip += 1;
            return;
        };
        if !msg.is_request() {
            counters.responses += 1;
            handle_response(
                *shard, &msg, data, src, handed_in, now, tx, counters, out, events, reg, trunks,
                proxy,
            );
            settle_events(trunks, reg, proxy, tx, out, events, now);
            return;
        }
        counters.requests += 1;
        let verdict = match msg.validate() {
            Ok(()) => classify(&msg),
            Err(Invalid::Drop(_)) => {
                counters.drop_invalid_response += 1;
                return;
            }
            Err(Invalid::Reject(r)) => {
                Verdict::Stateless(r.status, reason_phrase(r.status), Some(r.reason))
            }
        };
        let Some(via) = msg.top_via() else {
            counters.drop_request_without_via += 1;
            return;
        };
        if !msg.can_respond() {
            counters.drop_request_without_via += 1;
            return;
        }
        let reply_to = reply_address(&via, src);
        match verdict {
            Verdict::OptionsOk => {
                let tag = to_tag(*shard, &msg);
                let opts = ResponseOptions {
                    source: Some(src),
                    to_tag: Some(&tag),
                    headers: &[],
                    body: &[],
                };
                write_response_with_lines(out_buf, &msg, 200, "OK", &opts, options_lines);
                counters.options_answered += 1;
                counters.responses_sent += 1;
                out.send_to(reply_to, out_buf);
                return;
            }
            Verdict::Stateless(status, reason, detail) => {
                let answer = Answer {
                    status,
                    reason,
                    detail,
                };
                stateless_reject(*shard, &msg, src, reply_to, answer, out_buf, counters, out);
                return;
            }
            Verdict::Stateful | Verdict::Register => {}
        }
        // Stateful from here on: at the owner shard, through a server transaction.
        let owner = if matches!(verdict, Verdict::Register) {
            if !handed_in && !reg.admit(&msg, src, now) {
                let answer = Answer {
                    status: 503,
                    reason: "Service Unavailable",
                    detail: Some("rate limit for this source"),
                };
                stateless_reject(*shard, &msg, src, reply_to, answer, out_buf, counters, out);
                return;
            }
            reg.aor.clear();
            if let Err(why) = aor_key(&msg, &mut reg.aor) {
                let answer = Answer {
                    status: 400,
                    reason: "Bad Request",
                    detail: Some(why),
                };
                stateless_reject(*shard, &msg, src, reply_to, answer, out_buf, counters, out);
                return;
            }
            if !handed_in && reg.may_challenge_here(&msg) {
                let tag = to_tag(*shard, &msg);
                if reg.challenge_here(&msg, src, &tag, now, out_buf) {
                    counters.responses_sent += 1;
                    out.send_to(reply_to, out_buf);
                    return;
                }
            }
            owner_of_aor(&reg.aor, *shards)
        } else {
            owner_of_call_id(msg.call_id().unwrap_or_default(), *shards)
        };
        if owner != *shard && !handed_in {
            hand_over(owner, src, data, counters, out);
            return;
        }
        stateful(
            *shard, &msg, &via, src, reply_to, now, tx, out_buf, sent_by, counters, out, events,
            reg, trunks, proxy,
        );
        settle_events(trunks, reg, proxy, tx, out, events, now);
    }
}

/// Passes a datagram, raw, to the shard that owns its state; the owner answers from its socket.
fn hand_over<O: Outbox<Mail>>(
    owner: ShardId,
    src: SocketAddr,
    data: &[u8],
    counters: &mut DispatchCounters,
    out: &mut O,
) {
    counters.handed_out += 1;
    out.mail(
        owner,
        Mail::Datagram {
            src,
            data: data.into(),
        },
    );
}

/// The stateless decision for a syntactically valid request (steps 2–6 of the module doc).
fn classify(msg: &Message) -> Verdict {
    let Some(method) = msg.method() else {
        return Verdict::Stateless(400, "Bad Request", None);
    };
    if method == Method::Ack {
        return Verdict::Stateful;
    }
    if msg.top_via().and_then(|v| v.branch()) == Some(b"z9hG4bK".as_slice()) {
        return Verdict::Stateless(400, "Missing Transaction Identifier", None);
    }
    if msg.request_uri_scheme() == Some(Scheme::Other) {
        return Verdict::Stateless(416, "Unsupported URI Scheme", None);
    }
    match method {
        Method::Options => {
            let for_a_user = msg.request_uri().and_then(|u| u.user()).is_some();
            if msg.max_forwards() == Some(0) && for_a_user {
                return Verdict::Stateless(483, "Too Many Hops", None);
            }
            // One pass over the header kinds first: most requests have neither header.
            let extensions = msg
                .headers()
                .any(|h| matches!(h.kind, HeaderKind::Require | HeaderKind::ProxyRequire))
                && (msg.tokens(HeaderKind::Require).next().is_some()
                    || msg.tokens(HeaderKind::ProxyRequire).next().is_some());
            if extensions {
                return Verdict::Stateless(420, "Bad Extension", None);
            }
            Verdict::OptionsOk
        }
        Method::Register => Verdict::Register,
        Method::Extension(_) => Verdict::Stateless(501, "Not Implemented", None),
        _ => Verdict::Stateful,
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        505 => "Version Not Supported",
        501 => "Not Implemented",
        _ => "Bad Request",
    }
}

/// A stateless answer: status, reason phrase, and the detail that goes into `Warning: 399`.
struct Answer {
    status: u16,
    reason: &'static str,
    detail: Option<&'static str>,
}

/// Where responses to this request go (RFC 3261 §18.2.2 for UDP, RFC 3581): the packet's source
/// IP, and its source port when the client asked for rport, else the Via's port (default 5060).
/// `maddr` (multicast) is not supported: the source address is used.
fn reply_address(via: &crate::sip::Via, src: SocketAddr) -> SocketAddr {
    if via.rport() != Rport::Absent {
        return src;
    }
    SocketAddr::new(src.ip(), via.port().unwrap_or(5060))
}

/// A To-tag that is the same for every retransmission of a request (so stateless answers agree)
/// and names the shard that made it: `s<shard>.<16 hex digits>`.
fn to_tag(shard: ShardId, msg: &Message) -> [u8; 20] {
    let mut h = fixed_hasher().build_hasher();
    msg.call_id().unwrap_or_default().hash(&mut h);
    msg.from()
        .and_then(|f| f.tag())
        .unwrap_or_default()
        .hash(&mut h);
    msg.cseq().map(|c| c.seq).unwrap_or(0).hash(&mut h);
    msg.top_via()
        .and_then(|v| v.branch())
        .unwrap_or_default()
        .hash(&mut h);
    let v = h.finish();
    let mut tag = [b'0'; 20];
    tag[0] = b's';
    tag[1] = HEX[(shard >> 4) & 0xf];
    tag[2] = HEX[shard & 0xf];
    tag[3] = b'.';
    tag[4..].copy_from_slice(&crate::sip::hex16(v));
    tag
}

const HEX: [u8; 16] = *b"0123456789abcdef";

#[allow(clippy::too_many_arguments)]
fn stateless_reject<O: Outbox<Mail>>(
    shard: ShardId,
    msg: &Message,
    src: SocketAddr,
    reply_to: SocketAddr,
    answer: Answer,
    out_buf: &mut Vec<u8>,
    counters: &mut DispatchCounters,
    out: &mut O,
) {
    let Answer {
        status,
        reason,
        detail,
    } = answer;
    let tag = to_tag(shard, msg);
    let unsupported = unsupported_list(msg, status);
    // `399 sipshard "<what was wrong>"`: the validator's reasons are fixed ASCII without quotes.
    let mut warning = [0u8; 160];
    let warning_len = detail.map_or(0, |d| {
        let text = [b"399 sipshard \"".as_slice(), d.as_bytes(), b"\""].concat();
        let n = text.len().min(warning.len());
        warning[..n].copy_from_slice(&text[..n]);
        n
    });
    let mut headers: [(&str, &[u8]); 3] =
        [("Server", SERVER_NAME.as_bytes()), ("", b""), ("", b"")];
    let mut n = 1;
    if status == 420 {
        headers[n] = ("Unsupported", &unsupported[..]);
        n += 1;
    }
    if warning_len > 0 {
        headers[n] = ("Warning", &warning[..warning_len]);
        n += 1;
    }
    let opts = ResponseOptions {
        source: Some(src),
        to_tag: Some(&tag),
        headers: &headers[..n],
        body: &[],
    };
    write_response(out_buf, msg, status, reason, &opts);
    counters.count_rejection(status);
    counters.responses_sent += 1;
    out.send_to(reply_to, out_buf);
}

/// `Unsupported:` for a 420: the Require tokens (we act as the UAS for the requests we answer),
/// then the Proxy-Require ones, without duplicates.
fn unsupported_list(msg: &Message, status: u16) -> Vec<u8> {
    let mut list = Vec::new();
    if status != 420 {
        return list;
    }
    for kind in [HeaderKind::Require, HeaderKind::ProxyRequire] {
        for t in msg.tokens(kind) {
            let dup = list
                .split(|&b| b == b',')
                .any(|x: &[u8]| x.trim_ascii() == t);
            if !dup {
                if !list.is_empty() {
                    list.extend_from_slice(b", ");
                }
                list.extend_from_slice(t);
            }
        }
    }
    list
}

#[allow(clippy::too_many_arguments)]
fn stateful<O: Outbox<Mail>>(
    shard: ShardId,
    msg: &Message,
    via: &crate::sip::Via,
    src: SocketAddr,
    reply_to: SocketAddr,
    now: Millis,
    tx: &mut TransactionLayer,
    out_buf: &mut Vec<u8>,
    sent_by: &mut Vec<u8>,
    counters: &mut DispatchCounters,
    out: &mut O,
    events: &mut Vec<TxEvent>,
    reg: &mut RegisterPath,
    trunks: &Trunks,
    proxy: &mut Proxy,
) {
    let method_bytes = msg.method().map(|m| m.as_bytes()).unwrap_or_default();
    let branch = via.branch().unwrap_or_default();
    sent_by.clear();
    sent_by.extend_from_slice(via.host());
    if let Some(p) = via.port() {
        sent_by.push(b':');
        crate::sip::push_dec(sent_by, u64::from(p));
    }
    let key = if has_magic_cookie(branch) {
        ServerKey::Rfc3261 { branch, sent_by }
    } else {
        ServerKey::Rfc2543(LegacyKey {
            request_uri: msg.request_uri_bytes().unwrap_or_default(),
            to_tag: msg.to().and_then(|t| t.tag()).unwrap_or_default(),
            from_tag: msg.from().and_then(|f| f.tag()).unwrap_or_default(),
            call_id: msg.call_id().unwrap_or_default(),
            cseq: msg.cseq().map(|c| c.seq).unwrap_or(0),
            top_via: via.as_bytes(),
        })
    };
    let info = RequestInfo {
        method: method_bytes,
        key,
        reply_to,
    };
    let mut sent = 0u64;
    let outcome = tx.on_request(
        &info,
        now,
        &mut Sink {
            out,
            sent: &mut sent,
            events,
        },
    );
    counters.responses_sent += sent;
    sent = 0;
    // Made only when a response of ours needs it (the registrar's 200 carries its own tag).
    let tag = || to_tag(shard, msg);
    // Writes a response with `Server` (and up to two more headers) into `out_buf`.
    let write = |out_buf: &mut Vec<u8>, status: u16, reason: &str, extra: &[(&str, &[u8])]| {
        let tag = tag();
        let mut headers: [(&str, &[u8]); 3] =
            [("Server", SERVER_NAME.as_bytes()), ("", b""), ("", b"")];
        let n = 1 + extra.len().min(2);
        headers[1..n].copy_from_slice(&extra[..n - 1]);
        let opts = ResponseOptions {
            source: Some(src),
            to_tag: Some(&tag),
            headers: &headers[..n],
            body: &[],
        };
        write_response(out_buf, msg, status, reason, &opts);
    };
    let has_to_tag = msg.to().and_then(|t| t.tag()).is_some();
    let mut cancel_of: Option<u64> = None;
    let (id, status) = match outcome {
        RequestOutcome::New(id) if msg.method() == Some(Method::Register) => {
            (id, reg.answer(msg, src, tag, now, out_buf))
        }
        RequestOutcome::New(id) if msg.method() == Some(Method::Invite) && !has_to_tag => {
            let mut sink = Sink {
                out,
                sent: &mut sent,
                events,
            };
            // From an upstream trunk? (its registrar/proxy IP; see `trunk::InboundTrunks`)
            let trunk = msg
                .request_uri()
                .and_then(|u| trunks.match_inbound(&u, src))
                .map(|m| FromTrunk {
                    index: m.index,
                    number_in_to: m.by == MatchedBy::ContactUser,
                });
            proxy.on_invite(
                id,
                msg,
                src,
                reply_to,
                trunk,
                now,
                tx,
                &reg.registrar,
                &mut sink,
            );
            counters.responses_sent += sent;
            return;
        }
        RequestOutcome::New(id)
            if has_to_tag
                || matches!(
                    msg.method(),
                    Some(Method::Bye | Method::Update | Method::Info | Method::Prack)
                ) =>
        {
            let mut sink = Sink {
                out,
                sent: &mut sent,
                events,
            };
            proxy.on_in_dialog(Some(id), msg, src, now, tx, &mut sink);
            counters.responses_sent += sent;
            return;
        }
        RequestOutcome::New(id) => {
            // Out-of-dialog SUBSCRIBE, NOTIFY, REFER, MESSAGE, PUBLISH: not served.
            counters.count_rejection(405);
            write(
                out_buf,
                405,
                "Method Not Allowed",
                &[("Allow", ALLOW.as_bytes())],
            );
            (id, 405)
        }
        RequestOutcome::NewCancel { id, target } => {
            if let Some(target) = target {
                counters.cancel_200 += 1;
                cancel_of = tx.token(target);
                write(out_buf, 200, "OK", &[]);
                (id, 200)
            } else {
                counters.count_rejection(481);
                write(out_buf, 481, "Call/Transaction Does Not Exist", &[]);
                (id, 481)
            }
        }
        RequestOutcome::AckAbsorbed { .. } => {
            counters.acks_absorbed += 1;
            return;
        }
        RequestOutcome::AckToTu { .. } => {
            // ACK for a 2xx: the proxy routes it by Route or dialog, statelessly.
            let mut sink = Sink {
                out,
                sent: &mut sent,
                events,
            };
            proxy.on_in_dialog(None, msg, src, now, tx, &mut sink);
            return;
        }
        RequestOutcome::Ignored => {
            counters.drop_stray_ack += 1;
            return;
        }
        RequestOutcome::Retransmission { .. } => return,
    };
    let mut sent = 0u64;
    let mut sink = Sink {
        out,
        sent: &mut sent,
        events,
    };
    let _ = tx.respond(id, status, out_buf, now, &mut sink);
    if let Some(token) = cancel_of.filter(|&t| is_proxy_token(t)) {
        // After the 200 to the CANCEL: CANCEL the pending branches (487 when they confirm).
        proxy.on_caller_cancel(token, now, tx, &mut sink);
    }
    counters.responses_sent += sent;
}

/// Hands transaction events to their owners: a trunk token's timeout is queued for the trunks
/// (run by [`settle_events`]); any other client transaction is a NAT keepalive of the
/// registrar, so a timeout means the binding did not answer.
fn deliver_events(
    events: &mut Vec<TxEvent>,
    reg: &mut RegisterPath,
    trunks: &mut Trunks,
    proxy: &mut Proxy,
    now: Millis,
) {
    for ev in events.drain(..) {
        match ev {
            TxEvent::Timeout { token, .. } if is_trunk_token(token) => trunks.on_timeout(token),
            TxEvent::Timeout { token, cause, .. } if is_proxy_token(token) => {
                proxy.queue_timeout(token, cause)
            }
            TxEvent::Timeout { token, .. } => {
                reg.registrar.on_keepalive_result(token, false, now);
            }
        }
    }
}

/// Hands the transaction events collected so far to their owners (registrar, trunks, proxy), then
/// lets the trunks and the proxy act on their timeouts, until nothing is left: what every call
/// into the transaction layer is followed by.
fn settle_events<O: Outbox<Mail>>(
    trunks: &mut Trunks,
    reg: &mut RegisterPath,
    proxy: &mut Proxy,
    tx: &mut TransactionLayer,
    out: &mut O,
    events: &mut Vec<TxEvent>,
    now: Millis,
) {
    if events.is_empty() && !trunks.has_timeouts() && !proxy.has_timeouts() {
        // The usual case after a request: nothing to hand over, nothing to run.
        return;
    }
    deliver_events(events, reg, trunks, proxy, now);
    let mut sent = 0u64;
    loop {
        trunks.run_timeouts(
            now,
            tx,
            &mut Sink {
                out,
                sent: &mut sent,
                events,
            },
        );
        proxy.run_timeouts(
            now,
            tx,
            &mut Sink {
                out,
                sent: &mut sent,
                events,
            },
        );
        if events.is_empty() && !proxy.has_timeouts() {
            break;
        }
        deliver_events(events, reg, trunks, proxy, now);
    }
}

#[allow(clippy::too_many_arguments)]
fn handle_response<O: Outbox<Mail>>(
    shard: ShardId,
    msg: &Message,
    data: &[u8],
    src: SocketAddr,
    handed_in: bool,
    now: Millis,
    tx: &mut TransactionLayer,
    counters: &mut DispatchCounters,
    out: &mut O,
    events: &mut Vec<TxEvent>,
    reg: &mut RegisterPath,
    trunks: &mut Trunks,
    proxy: &mut Proxy,
) {
    if msg.validate().is_err() {
        counters.drop_invalid_response += 1;
        return;
    }
    let Some(via) = msg.top_via() else {
        counters.drop_invalid_response += 1;
        return;
    };
    let branch = via.branch().unwrap_or_default();
    match shard_of_branch(branch) {
        Some(owner) if owner != shard && !handed_in => {
            hand_over(owner, src, data, counters, out);
            return;
        }
        Some(_) => {}
        None => {
            // Not a branch of ours: nothing here sent that request.
            counters.drop_stray_response += 1;
            return;
        }
    }
    let (Some(status), Some(cseq)) = (msg.status(), msg.cseq()) else {
        counters.drop_invalid_response += 1;
        return;
    };
    let info = ResponseInfo {
        branch,
        cseq_method: cseq.method.as_bytes(),
        status,
    };
    let mut sent = 0u64;
    let outcome = tx.on_response(
        &info,
        now,
        &mut Sink {
            out,
            sent: &mut sent,
            events,
        },
        |req, ack| proxy.build_ack(req, msg, ack),
    );
    match outcome {
        ResponseOutcome::NoMatch => counters.drop_stray_response += 1,
        // A trunk's REGISTER: its registration takes provisional and final answers (a challenge
        // or a 423 sends the next REGISTER at once).
        ResponseOutcome::Pass { token, late, .. } if is_proxy_token(token) => {
            proxy.on_response(
                msg,
                token,
                late,
                now,
                tx,
                &mut Sink {
                    out,
                    sent: &mut sent,
                    events,
                },
            );
        }
        ResponseOutcome::Pass { token, .. } if is_trunk_token(token) => {
            let mut requests = 0u64;
            trunks.on_response(
                token,
                msg,
                now,
                tx,
                &mut Sink {
                    out,
                    sent: &mut requests,
                    events,
                },
            );
        }
        // Any final answer to a keepalive OPTIONS (even 404 or 405) shows the binding is
        // reachable.
        ResponseOutcome::Pass { token, .. } if status >= 200 => {
            reg.registrar.on_keepalive_result(token, true, now);
        }
        ResponseOutcome::Absorbed { .. } | ResponseOutcome::Pass { .. } => {}
    }
}

impl Core for Dispatcher {
    type Mail = Mail;

    fn on_datagram<O: Outbox<Mail>>(
        &mut self,
        now: Millis,
        src: SocketAddr,
        data: &[u8],
        out: &mut O,
    ) {
        self.counters.datagrams += 1;
        self.handle(now, src, data, false, out);
    }

    fn on_mail<O: Outbox<Mail>>(&mut self, now: Millis, mail: Mail, out: &mut O) {
        match mail {
            Mail::Datagram { src, data } => {
                self.counters.handed_in += 1;
                self.handle(now, src, &data, true, out);
            }
            Mail::Registrar { query, reply } => {
                super::query::answer(&mut self.reg, *query, now, &reply);
            }
            Mail::Proxy(mail) => {
                let Self {
                    tx,
                    reg,
                    events,
                    trunks,
                    proxy,
                    ..
                } = self;
                let mut sent = 0u64;
                proxy.on_mail(
                    mail,
                    now,
                    tx,
                    &reg.registrar,
                    &mut Sink {
                        out,
                        sent: &mut sent,
                        events,
                    },
                );
                settle_events(trunks, reg, proxy, tx, out, events, now);
            }
            Mail::GatewayStats { reply } => {
                let _ = reply.try_send(self.proxy.gateway_stats());
            }
            Mail::Admin { query, reply } => {
                let r = self.admin_answer(*query, now, out);
                let _ = reply.try_send(r);
            }
            Mail::TrunkDestination(d) => self.trunks.set_destination(&d),
        }
    }

    fn on_timers<O: Outbox<Mail>>(&mut self, now: Millis, out: &mut O) {
        let mut sent = 0u64;
        let Self {
            tx,
            reg,
            events,
            trunks,
            proxy,
            ..
        } = self;
        tx.on_timers(
            now,
            &mut Sink {
                out,
                sent: &mut sent,
                events,
            },
        );
        settle_events(trunks, reg, proxy, tx, out, events, now);
        if reg.registrar.next_deadline().is_some_and(|d| d <= now) {
            let mut sink = Sink {
                out,
                sent: &mut sent,
                events,
            };
            let mut starter = KeepaliveStarter {
                tx,
                sink: &mut sink,
                now,
                started: 0,
            };
            reg.registrar.on_timers(now, &mut starter);
            settle_events(trunks, reg, proxy, tx, out, events, now);
        }
        if trunks.next_deadline().is_some_and(|d| d <= now) {
            let mut requests = 0u64;
            trunks.on_timers(
                now,
                tx,
                &mut Sink {
                    out,
                    sent: &mut requests,
                    events,
                },
            );
            settle_events(trunks, reg, proxy, tx, out, events, now);
        }
        if proxy.next_deadline().is_some_and(|d| d <= now) {
            proxy.on_timers(
                now,
                tx,
                &mut Sink {
                    out,
                    sent: &mut sent,
                    events,
                },
            );
            settle_events(trunks, reg, proxy, tx, out, events, now);
        }
        reg.expire(now);
    }

    fn next_deadline(&self) -> Option<Millis> {
        [
            self.tx.next_deadline(),
            self.reg.registrar.next_deadline(),
            self.trunks.next_deadline(),
            self.proxy.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn set_local_addr(&mut self, local: SocketAddr) {
        self.reg.set_local_addr(local);
        self.trunks.set_local_addr(local);
        self.proxy.set_local_addr(local);
    }

    fn set_wall_clock(&mut self, unix_ms_at_zero: u64) {
        self.reg.registrar.set_wall_clock(unix_ms_at_zero);
    }

    fn on_shutdown<O: Outbox<Mail>>(&mut self, now: Millis, out: &mut O) -> bool {
        // Server transactions only re-send answers we already gave; the trunks unregister
        // (`stop`, once) and are done when every one is stopped.
        let Self {
            tx,
            reg,
            events,
            trunks,
            proxy,
            proxy_stopped,
            ..
        } = self;
        if !*proxy_stopped {
            // Calls still in progress or in dialog get their CDR (end reason Shutdown).
            *proxy_stopped = true;
            proxy.shutdown(now);
        }
        let mut requests = 0u64;
        let done = trunks.shutdown(
            now,
            tx,
            &mut Sink {
                out,
                sent: &mut requests,
                events,
            },
        );
        settle_events(trunks, reg, proxy, tx, out, events, now);
        done && trunks.all_stopped()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut v = self.counters.pairs();
        v.extend(self.tx.counters().pairs());
        let r = self.reg.counters;
        v.extend([
            ("register_requests", r.registers),
            ("register_ok", r.register_ok),
            ("register_challenged", r.challenged),
            ("register_forbidden", r.forbidden),
            ("register_suspended", r.suspended),
            ("register_rate_limited", r.rate_limited),
            ("register_bad_credentials", r.bad_credentials),
            ("register_refused", r.refused_by_core),
        ]);
        let b = self.reg.core_counters();
        v.extend([
            ("bindings_live", b.bindings_live),
            ("bindings_nat", b.nat_bindings),
            ("bindings_added", b.added),
            ("bindings_refreshed", b.refreshed),
            ("bindings_removed", b.removed),
            ("bindings_expired", b.expired),
            ("bindings_replaced", b.replaced),
            ("keepalives_sent", b.keepalives_sent),
            ("keepalives_failed", b.keepalives_failed),
            ("keepalive_removed", b.keepalive_removed),
        ]);
        let (registered, retrying, failures) = self.trunks.gauges();
        v.extend([
            ("trunks_registered", registered),
            ("trunks_retrying", retrying),
            ("trunk_failures", failures),
            ("trunk_registrations", self.trunks.times_registered),
            ("trunk_registers_sent", self.trunks.registers_sent),
        ]);
        v.extend(self.proxy.counters.pairs());
        v.push(("calls_live", self.proxy.live_calls() as u64));
        v
    }
}
