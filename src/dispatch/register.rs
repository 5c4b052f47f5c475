//! The REGISTER path of a shard: rate limit where the request lands, hand it to the AOR's owner,
//! authenticate there, then let the bindings core answer (RFC 3261 §10.3).
//!
//! Owns: the glue between `registrar::{guard, auth, core}` and the dispatcher, and the
//! keepalive client transactions the registrar asks for.
//! Must not: touch sockets, threads, clocks or locks.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::cdr::CdrSender;
use crate::config::{AuthMode, Config};
use crate::registrar::accounts::{Accounts, NO_ACCOUNT};
use crate::registrar::auth::{AuthDecision, Authenticator};
use crate::registrar::core::{Registrar, RegistrarCounters, RegistrarSink};
use crate::registrar::guard::{FailReason, FailedLog, FailedRegistration, SourceLimiter};
use crate::routing::RoutingTable;
use crate::sip::digest::NonceKey;
use crate::sip::{write_response, HeaderKind, Message, ResponseOptions};
use crate::timer::Millis;
use crate::transaction::{ClientRequest, TransactionLayer, TxSink};

use super::dispatcher::SERVER_NAME;

/// State shared read-only by every shard's dispatcher, made once at start.
#[derive(Clone)]
pub struct Shared {
    pub accounts: Arc<Accounts>,
    /// One secret for all shards, so a nonce made on one shard verifies on any other.
    pub nonce_key: NonceKey,
    /// Seed for per-shard randomness (expiry spread, hash-flood-resistant tables, the Call-IDs,
    /// tags and branches of the trunks' REGISTERs).
    pub seed: u64,
    /// The destination of each `[[trunks]]` entry (outbound proxy, else registrar), by index,
    /// resolved by the runtime at start (A/AAAA, SRV not supported). `None` or missing: the
    /// core uses the host if it is an IP literal, else skips the trunk. Later changes come as
    /// `Mail::TrunkDestination`.
    pub trunk_destinations: Vec<Option<SocketAddr>>,
    /// The local IP the kernel would use toward each trunk's destination, by `[[trunks]]`
    /// index, found by the runtime when the listener is unspecified (0.0.0.0 / [::]) and no
    /// `advertised_address` is set; the trunk's Via/Contact then carry it with the listen port.
    pub trunk_local_ips: Vec<Option<std::net::IpAddr>>,
    /// Where the trunks' notes "re-resolve trunk i before its next attempt" go (the runtime's
    /// resolver thread, when some trunk host is a name); disabled by default.
    pub trunk_resolve: super::trunks::ResolveSender,
    /// Where finished calls' CDRs go (the runtime's CDR writer); disabled by default.
    pub cdr: CdrSender,
    /// Gateways, routes and peers (`[[gateways]]`, `[[routes]]`, `[[peers]]`), and the
    /// per-gateway `max_calls` counters shared by every shard.
    pub routing: Arc<RoutingTable>,
}

impl Shared {
    /// Builds the account table from the config (and its CSV file). `secret` and `seed` come
    /// from the runtime's random source.
    pub fn new(config: &Config, secret: [u8; 32], seed: u64) -> Result<Shared, String> {
        let accounts = Accounts::build(&config.registrar)?;
        Ok(Shared {
            accounts: Arc::new(accounts),
            nonce_key: NonceKey::new(secret),
            seed,
            trunk_destinations: Vec::new(),
            trunk_local_ips: Vec::new(),
            trunk_resolve: Default::default(),
            cdr: CdrSender::disabled(),
            routing: Arc::new(RoutingTable::new(config)),
        })
    }
}

/// Counters of the REGISTER path (the bindings core keeps its own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegisterCounters {
    pub registers: u64,
    pub register_ok: u64,
    pub challenged: u64,
    pub forbidden: u64,
    pub suspended: u64,
    pub rate_limited: u64,
    /// 400: credentials malformed for the request (digest `uri` ≠ Request-URI).
    pub bad_credentials: u64,
    pub refused_by_core: u64,
}

/// The registrar parts of one shard.
pub struct RegisterPath {
    pub registrar: Registrar,
    auth: Authenticator,
    limiter: SourceLimiter,
    failed: FailedLog,
    accounts: Arc<Accounts>,
    challenges: Vec<Vec<u8>>,
    /// `[registrar] require_auth`.
    require_auth: bool,
    /// `[server] advertised_address`, when it is an IP literal: (IP, port or the bound one).
    advertised_ip: Option<(std::net::IpAddr, Option<u16>)>,
    /// Reused buffer for the canonical AOR.
    pub aor: Vec<u8>,
    pub counters: RegisterCounters,
}

impl RegisterPath {
    pub fn new(shard: usize, config: &Config, shared: &Shared, now: Millis) -> Self {
        let seed = shared.seed ^ (shard as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Self {
            registrar: Registrar::new(shard, config, seed, now),
            auth: Authenticator::new(config, shared.nonce_key.clone())
                .with_salt_base((shard as u64) << 48),
            limiter: SourceLimiter::with_seed(
                &config.registrar,
                seed.rotate_left(17),
                crate::registrar::guard::DEFAULT_MAX_SOURCES,
            ),
            failed: FailedLog::new(config.registrar.failed_log_capacity as usize),
            accounts: shared.accounts.clone(),
            challenges: Vec::with_capacity(2),
            require_auth: config.registrar.require_auth,
            advertised_ip: config
                .server
                .advertised_address
                .as_ref()
                .and_then(|(h, p)| {
                    let bare = h.trim_start_matches('[').trim_end_matches(']');
                    bare.parse().ok().map(|ip| (ip, *p))
                }),
            aor: Vec::with_capacity(64),
            counters: RegisterCounters::default(),
        }
    }

    /// The shard socket's address is known: the registrar's keepalives carry it in their Via,
    /// or `advertised_address` when that is an IP literal (a host name cannot be written there).
    pub fn set_local_addr(&mut self, local: SocketAddr) {
        let addr = match self.advertised_ip {
            Some((ip, port)) => SocketAddr::new(ip, port.unwrap_or(local.port())),
            None => local,
        };
        self.registrar.set_local_addr(addr);
    }

    /// At the receiving shard, before any handover: false when the source is over its rate.
    pub fn admit(&mut self, msg: &Message, src: SocketAddr, now: Millis) -> bool {
        if self.limiter.allow(src.ip(), now) {
            return true;
        }
        self.counters.rate_limited += 1;
        self.log_failure(msg, src, now, FailReason::RateLimited);
        false
    }

    /// At the receiving shard, before any handover: a REGISTER without credentials from a
    /// digest account (or an unknown user) needs no binding state, so the challenge is answered
    /// here, statelessly (a nonce made by any shard verifies on every shard). Saves the handover
    /// and the server transaction of the first of the two round trips. IP and IP+port accounts,
    /// and `require_auth = Off`, go on to the owner. True when the 401 is in `out`.
    pub fn challenge_here(
        &mut self,
        msg: &Message,
        src: SocketAddr,
        to_tag: &[u8],
        now: Millis,
        out: &mut Vec<u8>,
    ) -> bool {
        if !self.require_auth || msg.header(HeaderKind::Authorization).is_some() {
            return false;
        }
        let user = msg.to().and_then(|t| t.uri().user()).unwrap_or_default();
        if let Some(id) = self.accounts.find(user) {
            if self.accounts.get(id).auth_mode != AuthMode::Digest {
                return false;
            }
        }
        self.counters.registers += 1;
        self.counters.challenged += 1;
        self.write_challenge(msg, src, to_tag, now, false, out);
        true
    }

    fn write_challenge(
        &mut self,
        msg: &Message,
        src: SocketAddr,
        to_tag: &[u8],
        now: Millis,
        stale: bool,
        out: &mut Vec<u8>,
    ) {
        self.auth
            .challenges_reusing(now, stale, &mut self.challenges);
        let mut headers: [(&str, &[u8]); 3] =
            [("Server", SERVER_NAME.as_bytes()), ("", b""), ("", b"")];
        let mut n = 1;
        for c in self.challenges.iter().take(2) {
            headers[n] = ("WWW-Authenticate", c);
            n += 1;
        }
        let opts = ResponseOptions {
            source: Some(src),
            to_tag: Some(to_tag),
            headers: &headers[..n],
            body: &[],
        };
        write_response(out, msg, 401, "Unauthorized", &opts);
    }

    /// At the receiving shard: whether [`RegisterPath::challenge_here`] might answer this
    /// request (so the caller makes a To-tag only then).
    pub fn may_challenge_here(&self, msg: &Message) -> bool {
        self.require_auth && msg.header(HeaderKind::Authorization).is_none()
    }

    /// At the owner shard, for a new server transaction: decide and write the whole response into
    /// `out`. Returns its status. `to_tag` makes the To-tag of our own refusals and challenges
    /// (the registrar's 200 has its own). `self.aor` holds the request's canonical AOR (made by the
    /// dispatcher with `bindings::aor_key`), or is empty (then it is made here).
    pub fn answer<T: AsRef<[u8]>>(
        &mut self,
        msg: &Message,
        src: SocketAddr,
        to_tag: impl FnOnce() -> T,
        now: Millis,
        out: &mut Vec<u8>,
    ) -> u16 {
        self.counters.registers += 1;
        let decision = if self.require_auth {
            self.auth.authenticate(msg, src, now, &self.accounts)
        } else {
            let user = msg.to().and_then(|t| t.uri().user()).unwrap_or_default();
            AuthDecision::Accepted(self.accounts.find(user).unwrap_or(NO_ACCOUNT))
        };
        match decision {
            AuthDecision::Accepted(account) => {
                let ua = msg.header(HeaderKind::UserAgent).unwrap_or_default();
                // The dispatcher made the AOR (`self.aor`) for this request already.
                let outcome = if self.aor.is_empty() {
                    self.registrar.on_register(msg, src, account, ua, now, out)
                } else {
                    self.registrar
                        .on_register_with_aor(msg, &self.aor, src, account, ua, now, out)
                };
                if let Some(reason) = outcome.refused {
                    self.counters.refused_by_core += 1;
                    self.log_failure(msg, src, now, reason);
                } else {
                    self.counters.register_ok += 1;
                }
                outcome.status
            }
            AuthDecision::Challenge { stale } => {
                self.counters.challenged += 1;
                if let Some(reason) = self.auth.last_failure() {
                    self.log_failure(msg, src, now, reason);
                }
                self.write_challenge(msg, src, to_tag().as_ref(), now, stale, out);
                401
            }
            AuthDecision::Forbidden(why) => {
                self.counters.forbidden += 1;
                let reason = self
                    .auth
                    .last_failure()
                    .unwrap_or(FailReason::SourceNotAllowed);
                self.log_failure(msg, src, now, reason);
                forbidden(msg, src, to_tag().as_ref(), why, out);
                403
            }
            AuthDecision::BadRequest(why) => {
                self.counters.bad_credentials += 1;
                self.log_failure(msg, src, now, FailReason::BadRequest);
                refuse(msg, src, to_tag().as_ref(), 400, "Bad Request", why, out);
                400
            }
            AuthDecision::Suspended { .. } => {
                self.counters.suspended += 1;
                self.log_failure(msg, src, now, FailReason::Suspended);
                forbidden(
                    msg,
                    src,
                    to_tag().as_ref(),
                    "suspended after repeated failures",
                    out,
                );
                403
            }
        }
    }

    fn log_failure(&mut self, msg: &Message, src: SocketAddr, now: Millis, reason: FailReason) {
        let user = msg.to().and_then(|t| t.uri().user()).unwrap_or_default();
        self.failed.record(FailedRegistration {
            at: now,
            source: src,
            account: String::from_utf8_lossy(user).into(),
            reason,
        });
    }

    /// The account table (read-only, shared by every shard).
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    pub fn failed_log(&self) -> &FailedLog {
        &self.failed
    }

    pub fn core_counters(&self) -> RegistrarCounters {
        self.registrar.counts()
    }

    /// Housekeeping of the guards (bounded tables).
    pub fn expire(&mut self, now: Millis) {
        self.auth.expire(now);
        self.limiter.expire(now);
    }
}

fn forbidden(msg: &Message, src: SocketAddr, to_tag: &[u8], why: &str, out: &mut Vec<u8>) {
    refuse(msg, src, to_tag, 403, "Forbidden", why, out)
}

fn refuse(
    msg: &Message,
    src: SocketAddr,
    to_tag: &[u8],
    status: u16,
    reason: &str,
    why: &str,
    out: &mut Vec<u8>,
) {
    let warning = format!("399 sipshard \"{why}\"");
    let headers: [(&str, &[u8]); 2] = [
        ("Server", SERVER_NAME.as_bytes()),
        ("Warning", warning.as_bytes()),
    ];
    let opts = ResponseOptions {
        source: Some(src),
        to_tag: Some(to_tag),
        headers: &headers,
        body: &[],
    };
    write_response(out, msg, status, reason, &opts);
}

/// Runs the registrar's keepalive OPTIONS as client transactions.
pub struct KeepaliveStarter<'a, S> {
    pub tx: &'a mut TransactionLayer,
    pub sink: &'a mut S,
    pub now: Millis,
    pub started: u64,
}

impl<S: TxSink> RegistrarSink for KeepaliveStarter<'_, S> {
    fn start_keepalive(&mut self, dst: SocketAddr, request: &[u8], branch: &[u8], token: u64) {
        let req = ClientRequest {
            method: b"OPTIONS",
            branch,
            dst,
            bytes: request,
            token,
        };
        if self.tx.start_client(req, self.now, self.sink).is_ok() {
            self.started += 1;
        }
    }
}
