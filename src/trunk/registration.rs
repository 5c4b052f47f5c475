//! One outbound registration: the state machine, its requests and its status.

use crate::config::{Privacy, TrunkConfig};
use crate::sip::digest::{write_authorization, Algorithm, Credentials};
use crate::sip::{parse_auth, write_request, HeaderKind, Message, Method, RequestSpec};
use crate::timer::Millis;
use crate::transaction::{make_branch, BRANCH_LEN};

/// Expiry requested in Auto Negotiation mode (`expire = "auto"`), seconds; the server's grant
/// in the 200 OK is then used as the effective expiry.
pub const AUTO_REQUEST_S: u32 = 3600;

/// A refresh is sent at half the effective expiry, and never later than this before it lapses.
pub const REFRESH_MARGIN_MS: Millis = 5_000;

/// The first attempts of `count` registrations started together are spread evenly over
/// `min(retry_delay, count × SPREAD_STEP_MS)`: at most one start per 100 ms slot on average,
/// and never a window longer than the retry delay.
pub const SPREAD_STEP_MS: Millis = 100;

/// Largest Min-Expires (423) that is followed, seconds; above it the attempt has failed.
const MAX_MIN_EXPIRES_S: u32 = 86_400;

/// Where the requests of a registration go out and how they are tied to it.
pub trait TrunkSink {
    /// Send `request` (a complete REGISTER) as a new non-INVITE client transaction to
    /// [`OutboundRegistration::destination`]. Any transaction still running for this
    /// registration may be abandoned: its responses are ignored from now on.
    fn send_register(&mut self, request: &[u8]);
    /// Arm this registration's single timer at `at` (replacing any armed one); when it fires,
    /// call [`OutboundRegistration::on_timer`].
    fn set_timer(&mut self, at: Millis);
    /// Disarm the timer (nothing is due).
    fn cancel_timer(&mut self);
}

/// What the caller tells a registration about where it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    /// Our `host:port` as the upstream should see it: the Via sent-by and the Contact host.
    pub sent_by: String,
    /// The shard that owns the registration (written into the Via branches).
    pub shard: usize,
    /// Per-process random value; Call-ID, From-tag, cnonces and branches derive from it and the
    /// trunk name, so it must differ between runs.
    pub seed: u64,
    /// SS_SIP_USER_AGENT_SEND_UNREGISTER.
    pub send_unregister: bool,
    /// `User-Agent` header value.
    pub user_agent: String,
    /// `(index, count)`: this registration is number `index` of `count` started together (e.g.
    /// its position in `[[trunks]]`). Its first attempt then falls in slot `index` of `count`
    /// equal slots of `min(retry delay, count × SPREAD_STEP_MS)` (jittered inside the slot by
    /// the hash), which spreads them evenly. None: a pure hash of seed and name (independent, Poisson-like clumps).
    pub spread_slot: Option<(u32, u32)>,
}

/// Where a registration is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Created; `start` not called yet.
    Idle,
    /// Waiting for the first attempt (its spread offset), or an attempt is in flight with no
    /// registration held.
    Registering,
    /// The server granted the registration; a refresh is scheduled or in flight.
    Registered,
    /// The last attempt failed; the next one is due after the retry delay ("retrying").
    Failed,
    /// `stop` sent REGISTER with Expires: 0 and waits for its final answer.
    Unregistering,
    /// Finished; nothing more is sent.
    Stopped,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Registering => "registering",
            State::Registered => "registered",
            State::Failed => "retrying",
            State::Unregistering => "unregistering",
            State::Stopped => "stopped",
        }
    }
}

/// Status for management.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    /// Expiry granted by the server in the last 200 OK, seconds.
    pub effective_expiry_s: Option<u32>,
    /// When the current registration lapses (caller's clock), while registered.
    pub registered_until: Option<Millis>,
    /// Next refresh or retry (the armed timer), if any.
    pub next_action_at: Option<Millis>,
    /// Status code of the last final response, if any.
    pub last_status: Option<u16>,
    /// Why the last attempt failed (None after a success).
    pub last_error: Option<String>,
    /// REGISTERs sent (every request, challenge answers and unregistration included).
    pub requests: u64,
    /// Attempts started (first try, refreshes, retries, forced).
    pub attempts: u64,
    pub successes: u64,
    pub failures: u64,
}

/// A challenge we answer on each request of the current attempt.
#[derive(Clone, Debug)]
struct Answer {
    /// true: 407 / Proxy-Authenticate → Proxy-Authorization.
    proxy: bool,
    /// The whole challenge header value, re-parsed when writing the answer.
    challenge: Vec<u8>,
    nonce: Vec<u8>,
    /// Last nonce count used with `nonce`.
    nc: u32,
}

/// The state machine of one `[[trunks]]` entry. See the module docs for how to drive it.
pub struct OutboundRegistration {
    cfg: TrunkConfig,
    local: Local,
    state: State,
    /// Material derived from the seed and the name.
    key: u64,
    call_id: String,
    from_tag: String,
    request_uri: String,
    aor: String,
    contact: String,
    route: Option<String>,
    /// CSeq of the last request sent (0: none yet).
    cseq: u32,
    /// A request is in flight (its CSeq is `cseq`).
    in_flight: bool,
    /// Expiry asked for in the next REGISTER (raised by 423).
    request_expires: u32,
    /// Challenges answered on the requests of this attempt (at most one per kind).
    answers: Vec<Answer>,
    /// Last nonce count used per (kind, nonce); survives attempts, so a server that keeps its
    /// nonce across refreshes sees nc go up (one entry per kind: the latest nonce).
    nc_memory: Vec<(bool, Vec<u8>, u32)>,
    /// Nonces answered by the request in flight, with their kind.
    answered_in_flight: Vec<(bool, Vec<u8>)>,
    /// The armed timer.
    timer_at: Option<Millis>,
    /// Counter for cnonces and branches.
    counter: u64,
    status: Status,
    buf: Vec<u8>,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn fnv1a(s: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn host_port(host: &str, port: u16) -> String {
    if port == 5060 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    }
}

fn split_host_port(s: &str) -> (&str, u16) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, tail)) = rest.split_once(']') {
            let port = tail
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(5060);
            return (&s[..h.len() + 2], port);
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().unwrap_or(5060)),
        _ => (s, 5060),
    }
}

impl OutboundRegistration {
    /// Re-derive the Call-ID (before the first request) so that its steering hash
    /// (`sip::steer`) names `local.shard` among `shards`: the kernel's steering program then
    /// delivers the upstream's answers straight to the owner shard. The first two hex digits are
    /// a salt; after 256 misses the last candidate stays (answers are then handed over by branch).
    pub fn steer_call_id(&mut self, shards: usize) {
        if shards <= 1 || self.state != State::Idle {
            return;
        }
        for salt in 0..=255u8 {
            self.call_id.replace_range(..2, &format!("{salt:02x}"));
            if crate::sip::steer::steer_shard(self.call_id.as_bytes(), shards) == self.local.shard {
                break;
            }
        }
    }

    /// A registration for `cfg`, idle until [`start`](Self::start).
    pub fn new(cfg: TrunkConfig, local: Local) -> OutboundRegistration {
        let key = mix(local.seed ^ fnv1a(cfg.name.as_bytes()));
        let call_id = format!("{:016x}{:016x}@sipshard", mix(key ^ 1), mix(key ^ 2));
        let from_tag = format!("{:016x}", mix(key ^ 3));
        let request_uri = format!("sip:{}", host_port(&cfg.registrar, cfg.port));
        let aor = format!("sip:{}@{}", cfg.username, cfg.registrar);
        let contact = format!("sip:{}@{}", cfg.contact_user, local.sent_by);
        let route = cfg
            .outbound_proxy
            .as_ref()
            .map(|(h, p)| format!("<sip:{};lr>", host_port(h, *p)));
        let request_expires = cfg.expire_s.unwrap_or(AUTO_REQUEST_S);
        OutboundRegistration {
            cfg,
            local,
            state: State::Idle,
            key,
            call_id,
            from_tag,
            request_uri,
            aor,
            contact,
            route,
            cseq: 0,
            in_flight: false,
            request_expires,
            answers: Vec::new(),
            nc_memory: Vec::new(),
            answered_in_flight: Vec::new(),
            timer_at: None,
            counter: 0,
            status: Status {
                state: State::Idle,
                effective_expiry_s: None,
                registered_until: None,
                next_action_at: None,
                last_status: None,
                last_error: None,
                requests: 0,
                attempts: 0,
                successes: 0,
                failures: 0,
            },
            buf: Vec::with_capacity(1024),
        }
    }

    pub fn config(&self) -> &TrunkConfig {
        &self.cfg
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The Call-ID used by every REGISTER of this registration.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Our Contact URI, e.g. `sip:4420@198.51.100.7:5060` (inbound requests to it come from this
    /// trunk).
    pub fn contact_uri(&self) -> &str {
        &self.contact
    }

    /// Where requests go: the outbound proxy if configured, else the registrar (host, port).
    /// Host names are the caller's to resolve (A/AAAA); the runtime resolves them at start and
    /// again before each new attempt (see [`next_action_at`](Self::next_action_at)).
    pub fn destination(&self) -> (&str, u16) {
        match &self.cfg.outbound_proxy {
            Some((h, p)) => (h.as_str(), *p),
            None => (self.cfg.registrar.as_str(), self.cfg.port),
        }
    }

    /// The fixed delay of the first attempt after `start`, in `[0, retry_delay)`, from the
    /// seed and the name (and [`Local::spread_slot`]): many registrations started together are
    /// spread over a retry delay, and each keeps its phase afterwards (fixed retry interval).
    pub fn spread_offset_ms(&self) -> Millis {
        let delay = Millis::from(self.cfg.retry_delay_s) * 1000;
        let h = mix(self.key ^ 0x5EED);
        match self.local.spread_slot {
            Some((index, count)) if count > 0 && index < count => {
                let (i, n) = (Millis::from(index), Millis::from(count));
                // A few registrations need not wait for a whole retry delay: the window is
                // at most SPREAD_STEP_MS per registration (one alone starts within 100 ms).
                let window = delay.min(n * SPREAD_STEP_MS);
                let start = i * window / n;
                let width = ((i + 1) * window / n - start).max(1);
                start + h % width
            }
            _ => h % delay,
        }
    }

    /// When the armed timer fires (the next attempt, refresh or retry), if one is armed. The
    /// runtime re-resolves the destination's host name shortly before it.
    pub fn next_action_at(&self) -> Option<Millis> {
        self.timer_at
    }

    /// Our `host:port` as the upstream should see it changed (the runtime found another local
    /// IP toward a new destination): the Via sent-by and Contact of the next REGISTER carry it.
    pub fn set_sent_by(&mut self, sent_by: String) {
        if sent_by != self.local.sent_by {
            self.contact = format!("sip:{}@{}", self.cfg.contact_user, sent_by);
            self.local.sent_by = sent_by;
        }
    }

    /// Our Via sent-by and Contact `host:port`.
    pub fn sent_by(&self) -> &str {
        &self.local.sent_by
    }

    /// A snapshot for management.
    pub fn status(&self) -> Status {
        let mut s = self.status.clone();
        s.state = self.state;
        s.next_action_at = self.timer_at;
        s
    }

    /// Begin: the first attempt is made at `now + spread_offset_ms()`.
    pub fn start(&mut self, now: Millis, sink: &mut impl TrunkSink) {
        if self.state != State::Idle {
            return;
        }
        self.state = State::Registering;
        let at = now + self.spread_offset_ms();
        self.arm(at, sink);
    }

    /// Management action: start a new attempt now (unless stopping or stopped).
    pub fn force_register(&mut self, _now: Millis, sink: &mut impl TrunkSink) {
        match self.state {
            State::Idle | State::Unregistering | State::Stopped => {}
            _ => {
                if self.state == State::Failed {
                    self.state = State::Registering;
                }
                self.begin_attempt(sink)
            }
        }
    }

    /// The timer set through the sink fired. Early or stale calls (before the armed time, or
    /// with none armed) are ignored.
    pub fn on_timer(&mut self, now: Millis, sink: &mut impl TrunkSink) {
        match self.timer_at {
            Some(at) if now >= at => self.timer_at = None,
            _ => return,
        }
        match self.state {
            State::Registering | State::Registered => self.begin_attempt(sink),
            State::Failed => {
                self.state = State::Registering;
                self.begin_attempt(sink)
            }
            State::Idle | State::Unregistering | State::Stopped => {}
        }
    }

    /// The client transaction of the request in flight gave up (no final response after the
    /// resend schedule).
    pub fn on_timeout(&mut self, now: Millis, sink: &mut impl TrunkSink) {
        if !self.in_flight {
            return;
        }
        self.in_flight = false;
        if self.state == State::Unregistering {
            self.finish_stop(Some("unregister timed out".to_string()), sink);
            return;
        }
        self.fail(
            now,
            "timeout: no response after the resend schedule".to_string(),
            sink,
        );
    }

    /// A response from the client transaction. Provisional responses, and responses that are
    /// not for the request in flight (Call-ID or CSeq differ), are ignored; returns whether
    /// the response was used.
    pub fn on_response(&mut self, msg: &Message, now: Millis, sink: &mut impl TrunkSink) -> bool {
        let Some(status) = msg.status() else {
            return false;
        };
        if !self.in_flight
            || msg.call_id() != Some(self.call_id.as_bytes())
            || msg.cseq().map(|c| c.seq) != Some(self.cseq)
        {
            return false;
        }
        if status < 200 {
            return true;
        }
        self.in_flight = false;
        self.status.last_status = Some(status);
        let unregistering = self.state == State::Unregistering;
        match status {
            200..=299 if unregistering => self.finish_stop(None, sink),
            200..=299 => self.registered(msg, now, sink),
            401 | 407 => match self.take_challenge(msg, status == 407) {
                Ok(()) => self.send(sink),
                Err(e) if unregistering => self.finish_stop(Some(e), sink),
                Err(e) => self.fail(now, e, sink),
            },
            423 if !unregistering => match msg.header(HeaderKind::MinExpires).and_then(parse_u32) {
                Some(min) if min > self.request_expires && min <= MAX_MIN_EXPIRES_S => {
                    self.request_expires = min;
                    self.send(sink);
                }
                _ => self.fail(now, "423 without a usable Min-Expires".to_string(), sink),
            },
            _ if unregistering => self.finish_stop(Some(format!("unregister got {status}")), sink),
            _ => {
                let reason = msg
                    .reason()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                self.fail(now, format!("{status} {reason}"), sink)
            }
        }
        true
    }

    /// Shutdown or removal: REGISTER with Expires: 0 when `send_unregister` is on and we may be
    /// registered, then [`State::Stopped`] at its final answer (a challenge is answered once per
    /// nonce) or its transaction's timeout; else stopped at once. Nothing is sent afterwards.
    pub fn stop(&mut self, _now: Millis, sink: &mut impl TrunkSink) {
        match self.state {
            State::Unregistering | State::Stopped => return,
            _ => {}
        }
        let maybe_registered = self.state == State::Registered || self.in_flight;
        self.disarm(sink);
        if self.local.send_unregister && maybe_registered {
            self.state = State::Unregistering;
            self.send(sink);
        } else {
            self.finish_stop(None, sink);
        }
    }

    // ---- internals ---------------------------------------------------------------------

    fn arm(&mut self, at: Millis, sink: &mut impl TrunkSink) {
        self.timer_at = Some(at);
        sink.set_timer(at);
    }

    fn disarm(&mut self, sink: &mut impl TrunkSink) {
        if self.timer_at.take().is_some() {
            sink.cancel_timer();
        }
    }

    fn begin_attempt(&mut self, sink: &mut impl TrunkSink) {
        self.disarm(sink);
        self.status.attempts += 1;
        self.send(sink);
    }

    fn finish_stop(&mut self, error: Option<String>, sink: &mut impl TrunkSink) {
        self.disarm(sink);
        self.in_flight = false;
        self.state = State::Stopped;
        self.status.registered_until = None;
        if error.is_some() {
            self.status.last_error = error;
        }
    }

    fn fail(&mut self, now: Millis, error: String, sink: &mut impl TrunkSink) {
        self.state = State::Failed;
        self.status.failures += 1;
        self.status.last_error = Some(error);
        self.status.registered_until = None;
        self.answers.clear();
        let at = now + Millis::from(self.cfg.retry_delay_s) * 1000;
        self.arm(at, sink);
    }

    /// 2xx to a REGISTER with a non-zero expiry.
    fn registered(&mut self, msg: &Message, now: Millis, sink: &mut impl TrunkSink) {
        let granted = self.granted_expiry(msg);
        if granted == 0 {
            self.fail(
                now,
                "200 OK granted no expiry for our contact".to_string(),
                sink,
            );
            return;
        }
        self.state = State::Registered;
        self.status.successes += 1;
        self.status.last_error = None;
        self.status.effective_expiry_s = Some(granted);
        let lifetime = Millis::from(granted) * 1000;
        self.status.registered_until = Some(now + lifetime);
        let refresh = (lifetime / 2)
            .min(lifetime.saturating_sub(REFRESH_MARGIN_MS))
            .max(1000);
        self.answers.clear();
        self.arm(now + refresh, sink);
    }

    /// The expiry the 200 OK grants us: our Contact's `expires=`, else the Expires header,
    /// else what we asked for.
    fn granted_expiry(&self, msg: &Message) -> u32 {
        let (host, port) = split_host_port(&self.local.sent_by);
        for c in msg.contacts() {
            let uri = c.uri();
            let user_ok = uri.user() == Some(self.cfg.contact_user.as_bytes());
            let host_ok = uri.host().eq_ignore_ascii_case(host.as_bytes());
            let port_ok = uri.port().unwrap_or(5060) == port;
            if user_ok && host_ok && port_ok {
                if let Some(e) = c.expires() {
                    return e;
                }
            }
        }
        msg.expires().unwrap_or(self.request_expires)
    }

    /// Take the challenge of a 401/407 for the next request, or say why it cannot be answered.
    fn take_challenge(&mut self, msg: &Message, proxy: bool) -> Result<(), String> {
        let kind = if proxy {
            HeaderKind::ProxyAuthenticate
        } else {
            HeaderKind::WwwAuthenticate
        };
        // Prefer SHA-256, else the first usable (MD5) challenge.
        let mut chosen: Option<(&[u8], Algorithm)> = None;
        for value in msg.header_values(kind) {
            let Ok(a) = parse_auth(value) else { continue };
            if !a.is_digest() || a.digest.nonce.is_none() {
                continue;
            }
            let Some(alg) = Algorithm::from_param(a.digest.algorithm) else {
                continue;
            };
            if let Some(want) = &self.cfg.realm {
                if a.digest.realm != Some(want.as_bytes()) {
                    continue;
                }
            }
            if chosen.is_none() || (alg == Algorithm::Sha256 && chosen.unwrap().1 != alg) {
                chosen = Some((value, alg));
            }
        }
        let status = if proxy { 407 } else { 401 };
        let Some((value, _)) = chosen else {
            return Err(format!("{status} with no challenge we can answer"));
        };
        let a = parse_auth(value).map_err(|e| e.0.to_string())?;
        let nonce = a.digest.nonce.unwrap_or_default();
        let answered = self
            .answered_in_flight
            .iter()
            .any(|(p, n)| *p == proxy && n.as_slice() == nonce);
        if answered && !a.is_stale() {
            return Err(format!(
                "{status} again for the nonce we answered: wrong credentials"
            ));
        }
        let nc_before = self
            .nc_memory
            .iter()
            .find(|(p, n, _)| *p == proxy && n.as_slice() == nonce)
            .map_or(0, |(_, _, nc)| *nc);
        self.answers.retain(|x| x.proxy != proxy);
        self.answers.push(Answer {
            proxy,
            challenge: value.to_vec(),
            nonce: nonce.to_vec(),
            nc: nc_before,
        });
        Ok(())
    }

    /// Build and send the next REGISTER of the current attempt.
    fn send(&mut self, sink: &mut impl TrunkSink) {
        self.cseq += 1;
        self.counter += 1;
        self.in_flight = true;
        self.status.requests += 1;
        let expires = if self.state == State::Unregistering {
            0
        } else {
            self.request_expires
        };
        let mut branch = [0u8; BRANCH_LEN];
        let unique = mix(self.key ^ 5).wrapping_add(self.counter);
        let branch = make_branch(self.local.shard, unique, &mut branch);

        let mut auth_values: Vec<(bool, Vec<u8>)> = Vec::with_capacity(self.answers.len());
        self.answered_in_flight.clear();
        for ans in &mut self.answers {
            ans.nc += 1;
            let cnonce = format!("{:016x}", mix(self.key ^ 4 ^ (self.counter << 8)));
            let Ok(challenge) = parse_auth(&ans.challenge) else {
                continue;
            };
            let creds = Credentials {
                username: self.cfg.auth_username.as_bytes(),
                password: self.cfg.password.as_bytes(),
                method: b"REGISTER",
                digest_uri: self.request_uri.as_bytes(),
                cnonce: cnonce.as_bytes(),
                nc: ans.nc,
            };
            let mut v = Vec::with_capacity(256);
            if write_authorization(&mut v, &challenge, &creds).is_ok() {
                auth_values.push((ans.proxy, v));
                self.answered_in_flight.push((ans.proxy, ans.nonce.clone()));
                self.nc_memory.retain(|(p, _, _)| *p != ans.proxy);
                self.nc_memory.push((ans.proxy, ans.nonce.clone(), ans.nc));
            }
        }
        let mut headers: Vec<(&str, &[u8])> = Vec::with_capacity(5);
        if let Some(r) = &self.route {
            headers.push(("Route", r.as_bytes()));
        }
        for (proxy, v) in &auth_values {
            let name = if *proxy {
                "Proxy-Authorization"
            } else {
                "Authorization"
            };
            headers.push((name, v));
        }
        match self.cfg.privacy {
            Privacy::Ignore => {}
            Privacy::Id => headers.push(("Privacy", b"id")),
            Privacy::None => headers.push(("Privacy", b"none")),
        }
        if !self.local.user_agent.is_empty() {
            headers.push(("User-Agent", self.local.user_agent.as_bytes()));
        }
        let spec = RequestSpec {
            method: Method::Register,
            uri: self.request_uri.as_bytes(),
            transport: "UDP",
            sent_by: self.local.sent_by.as_bytes(),
            branch,
            rport: true,
            max_forwards: 70,
            from_display: None,
            from_uri: self.aor.as_bytes(),
            from_tag: self.from_tag.as_bytes(),
            to_display: None,
            to_uri: self.aor.as_bytes(),
            to_tag: None,
            call_id: self.call_id.as_bytes(),
            cseq: self.cseq,
            contact: Some(self.contact.as_bytes()),
            expires: Some(expires),
            headers: &headers,
            body: b"",
        };
        write_request(&mut self.buf, &spec);
        sink.send_register(&self.buf);
    }
}

fn parse_u32(v: &[u8]) -> Option<u32> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

impl std::fmt::Debug for OutboundRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OutboundRegistration({}, {})",
            self.cfg.name,
            self.state.name()
        )
    }
}
