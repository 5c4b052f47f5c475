//! Authentication of a REGISTER (digest MD5/SHA-256 with stateless nonces, IP, IP+port) and the
//! lockout after repeated failures (SS_ENDPOINT_REGISTER_RETRY / SS_ENDPOINT_REGISTER_SUSPEND).
//!
//! Owns: the decision "who is this and may it register", the challenge header values, the
//! per-(account, source) failure counters and suspensions. Unknown users are challenged exactly
//! like known ones (no user enumeration).
//! Must not: read clocks or randomness (time comes in as [`Millis`], the nonce secret as a
//! [`NonceKey`] made by the server), touch sockets, or keep unbounded state.
//!
//! # The decision, in order
//! 1. **IP modes.** If the To user is an account in IP or IP+port mode and that account accepts
//!    the packet's source, the REGISTER is [`AuthDecision::Accepted`] without looking at any
//!    credentials. The To user must be the account's user: an IP account does not vouch for
//!    other AORs registered from its address (several IP accounts may share one address; each
//!    registers its own AOR).
//! 2. **Credentials** are the first `Authorization` value with the Digest scheme and our realm.
//!    Other values (other realms, unknown schemes such as RFC 4475 `regaut01`, malformed ones)
//!    are ignored. None → `Challenge { stale: false }`, for known and unknown users alike.
//! 3. **Suspension.** The endpoint is (digest username, source IP); without credentials it is
//!    (To user, source IP). While suspended every REGISTER from it gets
//!    [`AuthDecision::Suspended`] (403), even with the right password, until
//!    `SS_ENDPOINT_REGISTER_SUSPEND` seconds after the failure that triggered it (at exactly that
//!    instant it works again). Unknown usernames are suspended the same way, so the lockout does
//!    not reveal which users exist.
//! 4. **Nonce.** Not ours (bad MAC, bad format) → `Challenge { stale: false }`, not a failure.
//! 5. **Form.** Algorithm not among those we offer, no `uri`/`response`/`username`, `qop`
//!    other than `auth`, or `qop=auth` without `nc`/`cnonce` (or an `nc` that is not 1 to 8 hex
//!    digits) → `Challenge { stale: false }`, not a failure (the client cannot be guessing a
//!    password with a request we cannot check).
//!    **Digest `uri` ≠ Request-URI** (compared ASCII case-insensitively, as received) →
//!    [`AuthDecision::BadRequest`] (400), as RFC 2617 §3.2.2.5 / RFC 7616 §3.4.6 say; not
//!    counted towards the lockout (it is a malformed request or a credential replayed against
//!    another URI, not a password guess), logged as `BadRequest`.
//! 6. **Response** against the account's precomputed HA1 for the algorithm. Unknown usernames
//!    (and accounts that are not in digest mode) are checked against a dummy HA1 so the work is
//!    the same, and always fail.
//!    - Stale nonce (ours but older than `nonce_lifetime_s`) with a *valid* response →
//!      `Challenge { stale: true }`, not a failure (RFC 2617 §3.2.1: stale only when the digest
//!      was valid). With a wrong response it is a failure like any other: answering
//!      `stale=true` only for right passwords would otherwise be a free password oracle.
//!    - **Wrong password** (or unknown user): the failure is counted and the answer is a fresh
//!      `Challenge { stale: false }` (401, as RFC 3261 UAs expect, so a mistyped password can be
//!      retried); the `SS_ENDPOINT_REGISTER_RETRY`-th failure in a row suspends the endpoint and
//!      is itself answered `Suspended` (403). `endpoint_register_retry = 0` or
//!      `endpoint_register_suspend = 0` disables the lockout.
//!      Failures are forgotten `SS_ENDPOINT_REGISTER_SUSPEND` seconds after the last one, and a
//!      success resets them.
//! 7. **Replay.** A valid, fresh response whose (username, nonce, nc) is not above the
//!    highest nc already accepted for that username and nonce is a replay →
//!    `Challenge { stale: true }` (the client, if it is the real one, retries at once with a
//!    fresh nonce; an attacker learns nothing it did not know), logged as `NonceReplay`, not
//!    counted towards the lockout. Without `qop` (RFC 2069 style, no nc) a nonce is accepted
//!    once per username: its use counts as nc = 1, so reusing it gets the same stale challenge.
//!    See *Replay table* below.
//! 8. **After a valid response**: the username must equal the To URI user (else
//!    `Forbidden("To user does not match the credentials")`), and a digest account with a
//!    non-empty allowed-source list must accept the source (else `Forbidden("source not
//!    allowed")`). Neither counts as a failure (the password was right).
//!
//! Sources in `trusted_sources` are never counted nor suspended.
//!
//! # Bounded state
//! The failure table holds at most `max_failure_entries` endpoints ([`DEFAULT_MAX_FAILURES`]).
//! Each entry lives until `SS_ENDPOINT_REGISTER_SUSPEND` seconds after its last failure (which
//! is also when a suspension ends); [`Authenticator::expire`] drops them in order of last failure,
//! without scanning the table. When the table is full, the endpoint whose last failure is the
//! oldest is dropped (a suspension can thus end early under a flood of distinct failing
//! endpoints; the per-source rate limit makes that slow: 65 536 entries at 20 REGISTER/s from one
//! source take 55 minutes to cycle). Usernames are stored as a 64-bit hash keyed by a secret
//! derived from the nonce key, so nothing is allocated per failing endpoint beyond the table slot.
//!
//! # Replay table
//! Nonces are stateless (any shard verifies any nonce), but the (nonce, nc) pairs accepted are
//! remembered where the credentials are checked: at the owner shard of the AOR, which sees every
//! credentialed REGISTER for it. Per (keyed 64-bit hash of username and nonce): the highest nc
//! accepted. An entry is forgotten `nonce_lifetime_s` after it was first accepted, when its
//! nonce can no longer be fresh (a stale nonce is never accepted). The table holds at most
//! `DEFAULT_MAX_NONCE_USES` entries per shard (about 40 bytes each); when full, the oldest is
//! forgotten first, so under a flood of *successful* authentications above
//! `DEFAULT_MAX_NONCE_USES / nonce_lifetime_s` per second per shard the oldest nonces lose
//! their protection early (they stay bounded by the nonce lifetime). Failed authentications
//! never enter it, so wrong guesses cannot flush it.
//! Limit: the table is per shard, keyed by username; a replay whose To URI names another host
//! (another AOR, so maybe another owner shard) is caught only if it lands on the same shard.
//!
//! # Not checked
//! `opaque` is not used.
//!
//! [`Authenticator::last_failure`] tells the registrar why the last decision was a refusal (for
//! the failed-registration log) without changing what the client sees.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use crate::config::{AuthMode, Config};
use crate::sip::digest::{self, Algorithm, Hex, NonceCheck, NonceKey, NONCE_LEN};
use crate::sip::{parse_auth, Digest, HeaderKind, Message};
use crate::timer::Millis;

use super::accounts::{AccountId, Accounts};
use super::guard::{canonical_ip, FailReason, TrustedSources};

/// Default bound on the failure table of one [`Authenticator`].
pub const DEFAULT_MAX_FAILURES: usize = 65_536;

/// Default bound on the replay table (accepted (username, nonce) → highest nc) of one
/// [`Authenticator`].
pub const DEFAULT_MAX_NONCE_USES: usize = 262_144;

/// Replay-table entries reserved at construction (about 100 KiB per shard).
const NONCE_USES_RESERVED: usize = 4096;

/// Accepted (username, nonce) pairs and the highest nc accepted for each; bounded, forgotten
/// in insertion order (which is also expiry order: every entry lives the same time).
struct NonceUses {
    hasher: ahash::RandomState,
    highest: HashMap<u64, u32, ahash::RandomState>,
    /// (key, forget at) in insertion order; exactly one record per key in `highest`.
    order: VecDeque<(u64, Millis)>,
    max: usize,
    lifetime_ms: u64,
}

impl NonceUses {
    /// Record an accepted `nc` for (`user`, `nonce`); false when it is not above the highest
    /// already accepted (a replay), and then nothing changes.
    fn accept(&mut self, user: &[u8], nonce: &[u8], nc: u32, now: Millis) -> bool {
        self.expire(now);
        let key = self.hasher.hash_one((user, nonce));
        if let Some(h) = self.highest.get_mut(&key) {
            if nc <= *h {
                return false;
            }
            *h = nc;
            return true;
        }
        if self.highest.len() >= self.max {
            if let Some((old, _)) = self.order.pop_front() {
                self.highest.remove(&old);
            }
        }
        self.highest.insert(key, nc);
        self.order
            .push_back((key, now.saturating_add(self.lifetime_ms)));
        true
    }

    fn expire(&mut self, now: Millis) {
        while let Some(&(key, at)) = self.order.front() {
            if at > now {
                break;
            }
            self.order.pop_front();
            self.highest.remove(&key);
        }
    }
}

/// What to do with a REGISTER after authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthDecision {
    /// Authenticated as this account.
    Accepted(AccountId),
    /// Answer 401 with fresh challenges (`stale`: only the nonce had expired).
    Challenge { stale: bool },
    /// Answer 403 (IP not allowed; the To user is not the authenticated account).
    Forbidden(&'static str),
    /// Answer 403 (suspended after too many failures), until `until`.
    Suspended { until: Millis },
    /// Answer 400 (the credentials are malformed for this request, e.g. their `uri` is not the
    /// Request-URI).
    BadRequest(&'static str),
}

/// An endpoint: (keyed hash of the username, source IP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct EndpointKey {
    user: u64,
    ip: IpAddr,
}

#[derive(Clone, Copy, Debug)]
struct FailEntry {
    /// Failures in a row.
    count: u32,
    /// Time of the last failure (the suspension, if any, started then).
    last: Millis,
    /// 0 = not suspended.
    suspended_until: Millis,
    /// Sequence number of this entry's newest record in the age queue.
    seq: u64,
}

/// One shard's authenticator.
pub struct Authenticator {
    key: NonceKey,
    realm: Box<str>,
    /// Offered algorithms, in challenge order.
    algorithms: Vec<Algorithm>,
    nonce_lifetime_ms: u64,
    retry: u32,
    suspend_ms: u64,
    trusted: TrustedSources,
    /// Next nonce salt.
    salt: u64,
    dummy_md5: Hex,
    dummy_sha256: Hex,
    /// Hashes usernames for the failure table (seeds derived from the nonce key).
    user_hasher: ahash::RandomState,
    failures: HashMap<EndpointKey, FailEntry, ahash::RandomState>,
    /// (endpoint, seq) in order of failure; entries whose seq is not the table's are dead.
    ages: VecDeque<(EndpointKey, u64)>,
    next_seq: u64,
    max_failures: usize,
    /// Reused buffer for an escaped To user.
    scratch: Vec<u8>,
    last_failure: Option<FailReason>,
    /// The replay table.
    nonce_uses: NonceUses,
}

impl Authenticator {
    pub fn new(cfg: &Config, key: NonceKey) -> Self {
        Self::with_limits(cfg, key, DEFAULT_MAX_FAILURES)
    }

    /// With a bound on the failure table (at least 1).
    pub fn with_limits(cfg: &Config, key: NonceKey, max_failure_entries: usize) -> Self {
        let r = &cfg.registrar;
        let mut algorithms = Vec::new();
        for name in &r.digest_algorithms {
            if let Some(a) = Algorithm::from_param(Some(name.trim().as_bytes())) {
                if !algorithms.contains(&a) {
                    algorithms.push(a);
                }
            }
        }
        if algorithms.is_empty() {
            algorithms = vec![Algorithm::Sha256, Algorithm::Md5];
        }
        // Secret-derived material without reading randomness: a nonce is a MAC under the key.
        let mut derived = [0u8; NONCE_LEN];
        key.make(u64::MAX, u64::MAX, &mut derived);
        let seed = ahash::RandomState::with_seeds(1, 2, 3, 4);
        let s = |i: u64| seed.hash_one((i, &derived[..]));
        let user_hasher = ahash::RandomState::with_seeds(s(0), s(1), s(2), s(3));
        let map_hasher = ahash::RandomState::with_seeds(s(4), s(5), s(6), s(7));
        let nonce_hasher = ahash::RandomState::with_seeds(s(8), s(9), s(10), s(11));
        let nonce_map_hasher = ahash::RandomState::with_seeds(s(12), s(13), s(14), s(15));
        let dummy_user = b"\x00sipshard-dummy";
        Authenticator {
            realm: r.realm.as_str().into(),
            dummy_md5: digest::ha1(Algorithm::Md5, dummy_user, r.realm.as_bytes(), &derived),
            dummy_sha256: digest::ha1(Algorithm::Sha256, dummy_user, r.realm.as_bytes(), &derived),
            key,
            algorithms,
            nonce_lifetime_ms: u64::from(r.nonce_lifetime_s) * 1000,
            retry: cfg.sip.endpoint_register_retry,
            suspend_ms: u64::from(cfg.sip.endpoint_register_suspend_s) * 1000,
            trusted: TrustedSources::parse_lenient(&r.trusted_sources),
            salt: 0,
            user_hasher,
            failures: HashMap::with_capacity_and_hasher(
                max_failure_entries.clamp(1, 1024),
                map_hasher,
            ),
            ages: VecDeque::new(),
            next_seq: 0,
            max_failures: max_failure_entries.max(1),
            scratch: Vec::new(),
            last_failure: None,
            nonce_uses: NonceUses {
                hasher: nonce_hasher,
                // Room for the first entries, so a shard's first thousands of accepted
                // REGISTERs do not grow the table (later growth is amortised, up to the bound).
                highest: HashMap::with_capacity_and_hasher(
                    DEFAULT_MAX_NONCE_USES.min(NONCE_USES_RESERVED),
                    nonce_map_hasher,
                ),
                order: VecDeque::with_capacity(DEFAULT_MAX_NONCE_USES.min(NONCE_USES_RESERVED)),
                max: DEFAULT_MAX_NONCE_USES,
                lifetime_ms: u64::from(r.nonce_lifetime_s) * 1000,
            },
        }
    }

    /// With another bound on the replay table (at least 1).
    pub fn with_nonce_limit(mut self, max_entries: usize) -> Self {
        self.nonce_uses.max = max_entries.max(1);
        self
    }

    /// Entries in the replay table.
    pub fn nonce_entries(&self) -> usize {
        self.nonce_uses.highest.len()
    }

    /// Start the nonce salt counter at `base` (e.g. `shard << 48`) so shards never make the same
    /// nonce in the same millisecond.
    pub fn with_salt_base(mut self, base: u64) -> Self {
        self.salt = base;
        self
    }

    /// Decide for a REGISTER from `src` at `now`. Counts failures and suspends as configured.
    pub fn authenticate(
        &mut self,
        msg: &Message,
        src: SocketAddr,
        now: Millis,
        accounts: &Accounts,
    ) -> AuthDecision {
        self.last_failure = None;
        let mut scratch = std::mem::take(&mut self.scratch);
        let to_user = to_user(msg, &mut scratch);
        let decision = self.decide(msg, src, now, accounts, to_user);
        self.scratch = scratch;
        decision
    }

    fn decide(
        &mut self,
        msg: &Message,
        src: SocketAddr,
        now: Millis,
        accounts: &Accounts,
        to_user: Option<&[u8]>,
    ) -> AuthDecision {
        let ip = canonical_ip(src.ip());
        // 1. IP / IP+port accounts: the To user's account vouched for by the source.
        if let Some(id) = to_user.and_then(|u| accounts.find(u)) {
            let acc = accounts.get(id);
            if acc.auth_mode != AuthMode::Digest && acc.source_allowed(src) {
                return AuthDecision::Accepted(id);
            }
        }

        // 2. Credentials for our realm.
        let realm = self.realm.as_bytes();
        let creds = msg
            .header_values(HeaderKind::Authorization)
            .filter_map(|v| parse_auth(v).ok())
            .find(|a| a.is_digest() && a.digest.realm == Some(realm))
            .map(|a| a.digest);
        let Some(d) = creds else {
            // 3. A suspended endpoint is refused before the challenge too.
            if let Some(u) = to_user {
                let k = self.endpoint(u, ip);
                if let Some(until) = self.suspended(&k, now) {
                    self.last_failure = Some(FailReason::Suspended);
                    return AuthDecision::Suspended { until };
                }
            }
            return AuthDecision::Challenge { stale: false };
        };
        self.check_credentials(msg, &d, ip, src, now, accounts, to_user)
    }

    #[allow(clippy::too_many_arguments)]
    fn check_credentials(
        &mut self,
        msg: &Message,
        d: &Digest,
        ip: IpAddr,
        src: SocketAddr,
        now: Millis,
        accounts: &Accounts,
        to_user: Option<&[u8]>,
    ) -> AuthDecision {
        let Some(username) = d.username else {
            return AuthDecision::Challenge { stale: false };
        };
        // 3. Suspension.
        let key = self.endpoint(username, ip);
        if let Some(until) = self.suspended(&key, now) {
            self.last_failure = Some(FailReason::Suspended);
            return AuthDecision::Suspended { until };
        }
        // 4. Nonce.
        let Some(nonce) = d.nonce else {
            return AuthDecision::Challenge { stale: false };
        };
        let fresh = match self.key.check(nonce, now, self.nonce_lifetime_ms) {
            NonceCheck::Fresh => true,
            NonceCheck::Stale => false,
            NonceCheck::Invalid => return AuthDecision::Challenge { stale: false },
        };
        // 5. Form.
        let alg = match Algorithm::from_param(d.algorithm) {
            Some(a) if self.algorithms.contains(&a) => a,
            _ => return AuthDecision::Challenge { stale: false },
        };
        let (Some(uri), Some(received)) = (d.uri, d.response) else {
            return AuthDecision::Challenge { stale: false };
        };
        let qop = match d.qop {
            None => None,
            Some(q) if q.eq_ignore_ascii_case(b"auth") => match (d.nc, d.cnonce) {
                (Some(nc), Some(cnonce)) => Some((nc, cnonce)),
                _ => return AuthDecision::Challenge { stale: false },
            },
            Some(_) => return AuthDecision::Challenge { stale: false },
        };
        // Without qop there is no nc: the nonce's one use counts as nc = 1.
        let nc = match qop {
            None => 1,
            Some((nc, _)) => match parse_nc(nc) {
                Some(n) => n,
                None => return AuthDecision::Challenge { stale: false },
            },
        };
        let Some(method) = msg.method() else {
            return AuthDecision::Challenge { stale: false };
        };
        if !msg
            .request_uri_bytes()
            .is_some_and(|r| r.eq_ignore_ascii_case(uri))
        {
            self.last_failure = Some(FailReason::BadRequest);
            return AuthDecision::BadRequest("digest uri does not match the Request-URI");
        }
        // 6. Response, with the same work for unknown users.
        // Only digest accounts with a password (an empty HA1 would make the response guessable).
        let account = accounts.find(username).filter(|&id| {
            let a = accounts.get(id);
            a.auth_mode == AuthMode::Digest && !a.ha1_md5.as_bytes().is_empty()
        });
        let ha1 = match (account, alg) {
            (Some(id), Algorithm::Md5) => &accounts.get(id).ha1_md5,
            (Some(id), Algorithm::Sha256) => &accounts.get(id).ha1_sha256,
            (None, Algorithm::Md5) => &self.dummy_md5,
            (None, Algorithm::Sha256) => &self.dummy_sha256,
        };
        let expected = digest::response(alg, ha1, method.as_bytes(), uri, nonce, qop);
        let matches = digest::response_matches(&expected, received);
        let Some(id) = account.filter(|_| matches) else {
            self.last_failure = Some(if account.is_some() {
                FailReason::WrongPassword
            } else {
                FailReason::UnknownUser
            });
            return match self.fail(key, ip, now) {
                Some(until) => AuthDecision::Suspended { until },
                None => AuthDecision::Challenge { stale: false },
            };
        };
        if !fresh {
            return AuthDecision::Challenge { stale: true };
        }
        // Right password: forget earlier failures.
        self.failures.remove(&key);
        // 7. Replay.
        if !self.nonce_uses.accept(username, nonce, nc, now) {
            self.last_failure = Some(FailReason::NonceReplay);
            return AuthDecision::Challenge { stale: true };
        }
        // 8. Binding rules.
        if to_user != Some(username) {
            return AuthDecision::Forbidden("To user does not match the credentials");
        }
        let acc = accounts.get(id);
        if !acc.allowed.is_empty() && !acc.source_allowed(src) {
            self.last_failure = Some(FailReason::SourceNotAllowed);
            return AuthDecision::Forbidden("source not allowed");
        }
        AuthDecision::Accepted(id)
    }

    /// Append one `WWW-Authenticate` header value per configured algorithm, each with a fresh
    /// nonce, to `values` (the caller writes them as headers), e.g. SHA-256 first then MD5.
    pub fn challenges(&mut self, now: Millis, stale: bool, values: &mut Vec<Vec<u8>>) {
        for &alg in &self.algorithms {
            let mut nonce = [0u8; NONCE_LEN];
            self.key.make(now, self.salt, &mut nonce);
            self.salt = self.salt.wrapping_add(1);
            let mut v = Vec::with_capacity(96 + self.realm.len() + NONCE_LEN);
            digest::write_challenge(&mut v, alg, self.realm.as_bytes(), &nonce, stale);
            values.push(v);
        }
    }

    /// Like [`Authenticator::challenges`], but `values` ends up holding exactly this request's
    /// challenges, written into the buffers it already has: no allocation once they are grown.
    pub fn challenges_reusing(&mut self, now: Millis, stale: bool, values: &mut Vec<Vec<u8>>) {
        let n = self.algorithms.len();
        values.truncate(n);
        while values.len() < n {
            values.push(Vec::with_capacity(96 + self.realm.len() + NONCE_LEN));
        }
        for (k, v) in values.iter_mut().enumerate() {
            let mut nonce = [0u8; NONCE_LEN];
            self.key.make(now, self.salt, &mut nonce);
            self.salt = self.salt.wrapping_add(1);
            v.clear();
            digest::write_challenge(v, self.algorithms[k], self.realm.as_bytes(), &nonce, stale);
        }
    }

    /// Forget failure state older than its suspension (called from the registrar's timers).
    /// Work is proportional to the entries dropped (plus dead queue records).
    pub fn expire(&mut self, now: Millis) {
        self.nonce_uses.expire(now);
        while let Some(&(k, seq)) = self.ages.front() {
            match self.failures.get(&k) {
                Some(e) if e.seq == seq => {
                    if e.last.saturating_add(self.suspend_ms) > now {
                        break;
                    }
                    self.failures.remove(&k);
                }
                _ => {}
            }
            self.ages.pop_front();
        }
        self.compact_ages();
    }

    /// Why the last [`Authenticator::authenticate`] refused (wrong password, unknown user,
    /// suspended, source not allowed), for the failed-registration log; None after an
    /// acceptance or a plain challenge.
    pub fn last_failure(&self) -> Option<FailReason> {
        self.last_failure
    }

    /// Endpoints with failure state (counting or suspended).
    pub fn failure_entries(&self) -> usize {
        self.failures.len()
    }

    /// The algorithms offered, in challenge order.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    fn endpoint(&self, user: &[u8], ip: IpAddr) -> EndpointKey {
        EndpointKey {
            user: self.user_hasher.hash_one(user),
            ip,
        }
    }

    /// `Some(until)` while `k` is suspended at `now`.
    fn suspended(&self, k: &EndpointKey, now: Millis) -> Option<Millis> {
        self.failures
            .get(k)
            .filter(|e| e.suspended_until > now)
            .map(|e| e.suspended_until)
    }

    /// Count a failure; `Some(until)` when it suspends the endpoint.
    fn fail(&mut self, k: EndpointKey, ip: IpAddr, now: Millis) -> Option<Millis> {
        if self.retry == 0 || self.suspend_ms == 0 || self.trusted.contains(ip) {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let window = self.suspend_ms;
        let entry = match self.failures.get_mut(&k) {
            Some(e) => {
                // A lapsed suspension or old failures start over.
                if e.suspended_until != 0 || e.last.saturating_add(window) <= now {
                    e.count = 0;
                    e.suspended_until = 0;
                }
                e
            }
            None => {
                if self.failures.len() >= self.max_failures {
                    self.evict_oldest();
                }
                self.failures.entry(k).or_insert(FailEntry {
                    count: 0,
                    last: now,
                    suspended_until: 0,
                    seq,
                })
            }
        };
        entry.count += 1;
        entry.last = now;
        entry.seq = seq;
        let until = if entry.count >= self.retry {
            // Never 0, which means "not suspended".
            entry.suspended_until = now.saturating_add(window).max(1);
            Some(entry.suspended_until)
        } else {
            None
        };
        self.ages.push_back((k, seq));
        self.compact_ages();
        until
    }

    /// Drop the endpoint whose last failure is the oldest.
    fn evict_oldest(&mut self) {
        while let Some((k, seq)) = self.ages.pop_front() {
            if self.failures.get(&k).is_some_and(|e| e.seq == seq) {
                self.failures.remove(&k);
                return;
            }
        }
    }

    /// Keep the age queue within a constant factor of the table (dead records accumulate when
    /// an endpoint fails again or succeeds).
    fn compact_ages(&mut self) {
        if self.ages.len() > 2 * self.failures.len() + 64 {
            let failures = &self.failures;
            self.ages
                .retain(|(k, seq)| failures.get(k).is_some_and(|e| e.seq == *seq));
        }
    }
}

/// A digest `nc`: 1 to 8 hex digits (RFC 7616 §3.4 writes exactly 8).
fn parse_nc(nc: &[u8]) -> Option<u32> {
    if nc.is_empty() || nc.len() > 8 || !nc.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(nc).ok()?, 16).ok()
}

/// The To URI user, unescaped into `scratch` when it has `%` escapes.
fn to_user<'s>(msg: &Message<'s>, scratch: &'s mut Vec<u8>) -> Option<&'s [u8]> {
    let uri = msg.to()?.uri();
    let user = uri.user()?;
    if !user.contains(&b'%') {
        return Some(user);
    }
    scratch.clear();
    uri.user_unescaped(scratch).ok()?;
    Some(scratch.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(max: usize) -> Authenticator {
        let mut cfg = Config::default();
        cfg.sip.endpoint_register_retry = 3;
        cfg.sip.endpoint_register_suspend_s = 10;
        cfg.registrar.trusted_sources = vec!["10.0.0.0/8".into()];
        Authenticator::with_limits(&cfg, NonceKey::new([1; 32]), max)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn suspends_on_the_retry_th_failure_in_a_row() {
        let mut a = auth(16);
        let k = a.endpoint(b"u", ip(1));
        assert_eq!(a.fail(k, ip(1), 0), None);
        assert_eq!(a.fail(k, ip(1), 1), None);
        assert_eq!(a.fail(k, ip(1), 2), Some(10_002));
        assert_eq!(a.suspended(&k, 10_001), Some(10_002));
        assert_eq!(a.suspended(&k, 10_002), None);
        // After the suspension the count starts over.
        assert_eq!(a.fail(k, ip(1), 10_002), None);
        // Failures more than the window apart never add up.
        let k2 = a.endpoint(b"v", ip(1));
        for i in 0..10 {
            assert_eq!(a.fail(k2, ip(1), i * 10_000), None);
        }
    }

    #[test]
    fn trusted_and_disabled_never_count() {
        let mut a = auth(16);
        let t = IpAddr::from([10, 0, 0, 1]);
        let k = a.endpoint(b"u", t);
        for i in 0..10 {
            assert_eq!(a.fail(k, t, i), None);
        }
        assert_eq!(a.failure_entries(), 0);
        let mut cfg = Config::default();
        cfg.sip.endpoint_register_retry = 0;
        let mut off = Authenticator::new(&cfg, NonceKey::new([1; 32]));
        let k = off.endpoint(b"u", ip(1));
        for i in 0..10 {
            assert_eq!(off.fail(k, ip(1), i), None);
        }
    }

    #[test]
    fn table_is_bounded_and_drops_the_least_recently_failed() {
        let mut a = auth(4);
        let keys: Vec<_> = (0..6u8).map(|i| a.endpoint(b"u", ip(i))).collect();
        for (i, k) in keys.iter().take(4).enumerate() {
            a.fail(*k, k.ip, i as u64);
        }
        // keys[0] fails again: now keys[1] is the least recently failed.
        a.fail(keys[0], keys[0].ip, 10);
        a.fail(keys[4], keys[4].ip, 11);
        assert_eq!(a.failure_entries(), 4);
        assert!(a.failures.contains_key(&keys[0]));
        assert!(!a.failures.contains_key(&keys[1]));
        a.fail(keys[5], keys[5].ip, 12);
        assert!(!a.failures.contains_key(&keys[2]));
        assert_eq!(a.failure_entries(), 4);
        // Many failures of the same endpoints keep the age queue bounded.
        for t in 0..10_000u64 {
            let k = keys[(t % 6) as usize];
            a.fail(k, k.ip, 100 + t);
            assert!(a.failures.len() <= 4);
            assert!(a.ages.len() <= 2 * 4 + 64 + 1);
        }
    }

    #[test]
    fn expire_drops_in_order_of_last_failure() {
        let mut a = auth(16);
        let k1 = a.endpoint(b"a", ip(1));
        let k2 = a.endpoint(b"b", ip(1));
        a.fail(k1, ip(1), 0);
        a.fail(k2, ip(1), 5);
        a.fail(k1, ip(1), 6);
        a.expire(10_004);
        assert_eq!(a.failure_entries(), 2);
        a.expire(10_005);
        assert_eq!(a.failure_entries(), 1);
        assert!(a.failures.contains_key(&k1));
        a.expire(10_006);
        assert_eq!(a.failure_entries(), 0);
        assert!(a.ages.is_empty());
    }

    #[test]
    fn usernames_are_keyed_by_the_secret() {
        let a = auth(4);
        let b = Authenticator::new(&Config::default(), NonceKey::new([2; 32]));
        assert_ne!(a.endpoint(b"u", ip(1)), b.endpoint(b"u", ip(1)));
        assert_eq!(a.endpoint(b"u", ip(1)), a.endpoint(b"u", ip(1)));
        assert_ne!(a.endpoint(b"u", ip(1)), a.endpoint(b"v", ip(1)));
    }
}
