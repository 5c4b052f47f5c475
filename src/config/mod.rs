//! Configuration: the TOML file, defaults and ranges, VOS3000 parameter names as aliases.
//!
//! Owns: parsing and validating the config file (`[server]`, `[sip]`, `[registrar]` with its
//! `[[registrar.accounts]]`, `[log]`, `[[trunks]]`, `[cdr]`, `[routing]`, `[[gateways]]`, `[[routes]]`,
//! `[[peers]]`), the embedded default file, the parameter table
//! ([`PARAMS`]), the syntax of allowed sources and the error messages for bad values.
//! Must not: import any other sipshard module, open sockets, start threads or read the clock.
//!
//! The field names of [`Config`], [`ServerConfig`], [`SipParams`] and [`TransactionTimers`] are
//! the contract used by the rest of the crate. Build a `Config` with [`Config::from_toml_str`],
//! [`Config::load`] or [`Config::embedded_default`]; every value in it has been range-checked.

mod admin;
mod cdr;
mod params;
mod registrar;
mod routing;
#[cfg(test)]
mod tests;
mod trunks;

pub use admin::AdminConfig;
pub use cdr::{CdrConfig, CDR_KEYS};
pub use params::{
    fmt_ms, lookup, lookup_dotted, seconds_to_ms, DecimalError, Kind, ParamInfo, Section,
    INTERVALS_MAX, INTERVAL_MAX_MS, INTERVAL_MIN_MS, PARAMS, UA_EXPIRE_MAX_S, UA_EXPIRE_MIN_S,
};
pub use registrar::{
    account_problem, auth_mode_name, mask_ip, mode_problem, parse_allowed, parse_auth_mode,
    password_problem, user_problem, AllowedSource,
};
pub use routing::{
    parse_peer_address, GatewayConfig, PeerAddress, PeerConfig, RouteConfig, RoutingConfig,
    GATEWAY_KEYS, PEER_KEYS, ROUTE_KEYS, ROUTING_KEYS,
};
pub use trunks::{host_problem, TrunkConfig, TRUNK_KEYS};

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

/// Timers of the transaction layer, in milliseconds, derived from the `SS_SIP_*` parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionTimers {
    /// SS_SIP_RESEND_INTERVAL: wait before each retransmission; after the last, give up. 1..=10 values.
    pub resend_intervals_ms: Vec<u64>,
    /// SS_SIP_SEND_RETRY: max retransmissions (re-sends, not counting the first send).
    pub send_retry: u32,
    /// SS_SIP_TIMEOUT_INVITE: max wait for any response to an INVITE.
    pub timeout_invite_ms: u64,
    /// SS_SIP_TIMEOUT_TRYING: after 100 Trying, max wait for 180/183/2xx.
    pub timeout_trying_ms: u64,
    /// SS_SIP_TIMEOUT_RINGING: after 180/183, max wait for the answer.
    pub timeout_ringing_ms: u64,
}

impl Default for TransactionTimers {
    fn default() -> Self {
        Self {
            resend_intervals_ms: vec![500, 1000, 2000, 4000, 4000, 4000, 4000, 4000, 4000, 4000],
            send_retry: 10,
            timeout_invite_ms: 10_000,
            timeout_trying_ms: 20_000,
            timeout_ringing_ms: 120_000,
        }
    }
}

/// Which batch I/O backend the shards use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoBackendKind {
    /// recvmmsg/sendmmsg where available (Linux), else portable.
    Auto,
    /// recvmmsg/sendmmsg (Linux only).
    Mmsg,
    /// One recv_from/send_to per datagram.
    Portable,
}

/// Runtime settings (not VOS3000 parameters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// UDP address all shards bind (SO_REUSEPORT). Default 127.0.0.1:5060.
    pub listen: SocketAddr,
    /// Number of shard threads; 0 = one per available core.
    pub shards: usize,
    /// Pin each shard thread to a core.
    pub pin_shards: bool,
    /// Attach the kernel steering program to the SO_REUSEPORT group (Linux; `io::steer`).
    pub reuseport_steering: bool,
    /// SO_RCVBUF / SO_SNDBUF per shard socket, bytes.
    pub recv_buffer_bytes: usize,
    pub send_buffer_bytes: usize,
    /// Datagrams per recvmmsg/sendmmsg batch.
    pub io_batch: usize,
    pub io_backend: IoBackendKind,
    /// Capacity of each inter-shard mailbox (messages).
    pub mailbox_capacity: usize,
    /// Upper bound on graceful shutdown, ms.
    pub shutdown_timeout_ms: u64,
    /// Largest datagram accepted, bytes.
    pub max_datagram_bytes: usize,
    /// `advertised_address`: (host, port) for the Via sent-by and Contact of the requests we
    /// send; host is a name, an IPv4 or a bracketed IPv6 literal; port None = the listen port.
    /// None: the listen address (or, when it is unspecified, the kernel's local address toward
    /// each trunk's destination, found by the runtime).
    pub advertised_address: Option<(String, Option<u16>)>,
}

/// The VOS3000 signaling parameters (spec section 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipParams {
    pub timers: TransactionTimers,
    /// SS_SIP_USER_AGENT_EXPIRE: None = Auto Negotiation, else 20..=7200 s.
    pub user_agent_expire_s: Option<u32>,
    pub user_agent_retry_delay_s: u32,
    pub user_agent_send_unregister: bool,
    pub user_agent_privacy: Privacy,
    pub endpoint_expire_s: u32,
    pub endpoint_nat_expire_s: u32,
    pub endpoint_register_retry: u32,
    pub endpoint_register_suspend_s: u32,
    pub endpoint_register_replace: bool,
    pub registrar_max_bindings: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privacy {
    Ignore,
    Id,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub server: ServerConfig,
    pub sip: SipParams,
    /// `[registrar]` and `[[registrar.accounts]]`: who may register and how.
    pub registrar: RegistrarConfig,
    /// `[[trunks]]`: outbound registrations to upstream carriers (none by default).
    pub trunks: Vec<TrunkConfig>,
    /// `[cdr]`: the CDR writer's file, rotation and queue.
    pub cdr: CdrConfig,
    /// `[routing]`: how calls are routed and failed over.
    pub routing: RoutingConfig,
    /// `[[gateways]]`: where calls go (VOS3000 routing gateways), none by default.
    pub gateways: Vec<GatewayConfig>,
    /// `[[routes]]`: called-number prefix to an ordered list of gateways, none by default.
    pub routes: Vec<RouteConfig>,
    /// `[[peers]]`: trusted callers (VOS3000 mapping gateways), none by default.
    pub peers: Vec<PeerConfig>,
    /// Log filter, e.g. "info" or "sipshard=debug".
    pub log_level: String,
    /// `[admin]`: the management HTTP server.
    pub admin: AdminConfig,
}

impl TransactionTimers {
    /// Re-sends actually made when nothing answers: `min(send_retry, intervals - 1)`.
    ///
    /// The first send is not counted. Each re-send happens when an interval runs out, and the
    /// attempt fails when the interval after the last re-send runs out, so a `send_retry` at or
    /// above `intervals - 1` means "the whole schedule" and larger values change nothing.
    pub fn effective_resends(&self) -> usize {
        (self.send_retry as usize).min(self.resend_intervals_ms.len().saturating_sub(1))
    }

    /// Time from the first send to giving up, with no response at all (ignoring
    /// `timeout_invite`): the sum of the first `effective_resends() + 1` intervals.
    /// Default: 31 500 ms.
    pub fn give_up_after_ms(&self) -> u64 {
        self.resend_intervals_ms
            .iter()
            .take(self.effective_resends() + 1)
            .sum()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            shards: 0,
            pin_shards: false,
            reuseport_steering: true,
            recv_buffer_bytes: 8 * 1024 * 1024,
            send_buffer_bytes: 4 * 1024 * 1024,
            io_batch: 64,
            io_backend: IoBackendKind::Auto,
            mailbox_capacity: 16_384,
            shutdown_timeout_ms: 5_000,
            max_datagram_bytes: 65_535,
            advertised_address: None,
        }
    }
}

impl Default for SipParams {
    fn default() -> Self {
        Self {
            timers: TransactionTimers::default(),
            user_agent_expire_s: None,
            user_agent_retry_delay_s: 60,
            user_agent_send_unregister: true,
            user_agent_privacy: Privacy::Ignore,
            endpoint_expire_s: 3600,
            endpoint_nat_expire_s: 300,
            endpoint_register_retry: 6,
            endpoint_register_suspend_s: 180,
            endpoint_register_replace: true,
            registrar_max_bindings: 10,
        }
    }
}

/// How an account proves who it is (VOS3000 mapping-gateway modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// Digest password (MD5 or SHA-256).
    Digest,
    /// The packet's source IP must be one of the account's allowed addresses; no password.
    Ip,
    /// The packet's source IP and port must match one of the account's allowed addresses.
    IpPort,
}

/// One account, from `[[registrar.accounts]]` or a row of the accounts CSV file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountConfig {
    /// SIP user (the user part of the AOR, and the digest username).
    pub user: String,
    /// Digest password; may be empty for the IP modes.
    pub password: String,
    pub auth_mode: AuthMode,
    /// Allowed sources: `IP`, `IP:PORT`, or `IP/PREFIX` (CIDR). Empty: any source (digest mode).
    pub allowed: Vec<String>,
}

/// Registrar settings (issue 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Digest realm. Default: "sipshard".
    pub realm: String,
    /// Shortest expiry accepted (shorter → 423 with Min-Expires), seconds. Default 60.
    pub min_expires_s: u32,
    /// Longest expiry granted (longer is cut down to this), seconds. Default 7200.
    pub max_expires_s: u32,
    /// Random spread subtracted from granted expiries, percent (0 = off). Default 5.
    pub expiry_spread_percent: u32,
    /// How long a nonce is accepted; older gets 401 with stale=true, seconds. Default 300.
    pub nonce_lifetime_s: u32,
    /// Digest algorithms offered in challenges, in order. Default MD5 then SHA-256: many deployed
    /// UAs answer only the first challenge and know only MD5 (sipsak 0.9 fails on SHA-256 first);
    /// UAs that read every challenge can still pick SHA-256 (RFC 8760).
    pub digest_algorithms: Vec<String>,
    /// OPTIONS keepalive interval for NAT bindings, seconds (0 = off). Default 30.
    pub nat_keepalive_interval_s: u32,
    /// Unanswered keepalives in a row before a NAT binding is dropped. Default 3.
    pub nat_keepalive_max_failures: u32,
    /// Per-source REGISTER rate limit, requests per second (0 = off). Default 20.
    pub rate_limit_per_source: u32,
    /// Burst allowed above the rate, requests. Default 40.
    pub rate_limit_burst: u32,
    /// Sources never rate-limited or suspended: `IP` or `IP/PREFIX`.
    pub trusted_sources: Vec<String>,
    /// Entries kept in the failed-registration log (per shard). Default 10000.
    pub failed_log_capacity: u32,
    /// Off: REGISTER is accepted without authentication (closed networks, lab and load tests,
    /// like a Kamailio `save("location")` with no auth). Default On.
    pub require_auth: bool,
    /// Bulk accounts: CSV `user,password[,allowed_ips[,auth_mode]]` (allowed IPs separated by `;`).
    /// [`Config::load`] makes a relative path relative to the config file's directory;
    /// [`Config::from_toml_str`] leaves it as written (relative to the working directory).
    pub accounts_file: Option<String>,
    /// Accounts written in the config file.
    pub accounts: Vec<AccountConfig>,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            realm: "sipshard".to_string(),
            min_expires_s: 60,
            max_expires_s: 7200,
            expiry_spread_percent: 5,
            nonce_lifetime_s: 300,
            digest_algorithms: vec!["MD5".to_string(), "SHA-256".to_string()],
            nat_keepalive_interval_s: 30,
            nat_keepalive_max_failures: 3,
            rate_limit_per_source: 20,
            rate_limit_burst: 40,
            trusted_sources: Vec::new(),
            failed_log_capacity: 10_000,
            require_auth: true,
            accounts_file: None,
            accounts: Vec::new(),
        }
    }
}

impl Default for Config {
    /// The built-in defaults; equal to [`Config::embedded_default`] (a test checks it).
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            sip: SipParams::default(),
            registrar: RegistrarConfig::default(),
            trunks: Vec::new(),
            cdr: CdrConfig::default(),
            routing: RoutingConfig::default(),
            gateways: Vec::new(),
            routes: Vec::new(),
            peers: Vec::new(),
            log_level: "info".to_string(),
            admin: AdminConfig::default(),
        }
    }
}

/// The embedded default config file: every key at its default, commented.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// One problem found in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// `section.key` of the parameter concerned, the section name, or empty (syntax, I/O).
    pub key: String,
    /// 1-based line in the file where the key (or section) is written, when it could be found.
    pub line: Option<usize>,
    /// The full message, e.g. `sip.timeout_invite (SS_SIP_TIMEOUT_INVITE) = 0 is out of range:
    /// allowed 1..=600 seconds`.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem found in a config file (never empty when returned as an error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A value set outside the file (command line), validated like the file's values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    /// `section.key` or a VOS3000 name, e.g. `server.listen`.
    pub key: String,
    /// The value as text, parsed as a TOML string value would be (`"8"`, `"On"`, `"0.5,1,2"`).
    pub value: String,
    /// Where it came from, for messages, e.g. `--listen`.
    pub origin: String,
}

impl Config {
    /// The embedded default file, parsed. Listens on 127.0.0.1:5060.
    pub fn embedded_default() -> Config {
        Config::from_toml_str(DEFAULT_TOML).expect("the embedded default config is valid")
    }

    /// Parse and validate a whole config file. Missing keys and sections take their defaults.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        Config::from_toml_str_with_overrides(text, &[])
    }

    /// As [`Config::from_toml_str`], then `overrides` replace the file's values (checked alike).
    pub fn from_toml_str_with_overrides(
        text: &str,
        overrides: &[Override],
    ) -> Result<Config, ConfigErrors> {
        build(text, overrides)
    }

    /// Read and parse the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
        Config::load_with_overrides(Some(path.as_ref()), &[])
    }

    /// Read `path` (or the embedded default when `None`) and apply `overrides`.
    pub fn load_with_overrides(
        path: Option<&Path>,
        overrides: &[Override],
    ) -> Result<Config, ConfigErrors> {
        match path {
            None => Config::from_toml_str_with_overrides(DEFAULT_TOML, overrides),
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => {
                    let mut cfg = Config::from_toml_str_with_overrides(&text, overrides)?;
                    if let Some(file) = &cfg.registrar.accounts_file {
                        let dir = path.parent().unwrap_or(Path::new(""));
                        let resolved = dir.join(file);
                        cfg.registrar.accounts_file = Some(resolved.to_string_lossy().into_owned());
                    }
                    Ok(cfg)
                }
                Err(e) => Err(ConfigErrors(vec![ConfigError {
                    key: String::new(),
                    line: None,
                    message: format!("cannot read {}: {e}", path.display()),
                }])),
            },
        }
    }

    /// The transaction-layer timers (ms), from the `[sip]` values.
    pub fn transaction_timers(&self) -> &TransactionTimers {
        &self.sip.timers
    }

    /// The value in force of parameter `p`, written as the file would accept it.
    pub fn value_text(&self, p: &ParamInfo) -> String {
        let s = &self.server;
        let q = &self.sip;
        let t = &q.timers;
        let on_off = |b: bool| if b { "On" } else { "Off" }.to_string();
        match (p.section, p.key) {
            (Section::Server, "listen") => s.listen.to_string(),
            (Section::Server, "shards") => s.shards.to_string(),
            (Section::Server, "pin_shards") => s.pin_shards.to_string(),
            (Section::Server, "reuseport_steering") => s.reuseport_steering.to_string(),
            (Section::Server, "recv_buffer_bytes") => s.recv_buffer_bytes.to_string(),
            (Section::Server, "send_buffer_bytes") => s.send_buffer_bytes.to_string(),
            (Section::Server, "io_batch") => s.io_batch.to_string(),
            (Section::Server, "io_backend") => match s.io_backend {
                IoBackendKind::Auto => "auto",
                IoBackendKind::Mmsg => "mmsg",
                IoBackendKind::Portable => "portable",
            }
            .to_string(),
            (Section::Server, "mailbox_capacity") => s.mailbox_capacity.to_string(),
            (Section::Server, "shutdown_timeout_ms") => s.shutdown_timeout_ms.to_string(),
            (Section::Server, "max_datagram_bytes") => s.max_datagram_bytes.to_string(),
            (Section::Server, "advertised_address") => match &s.advertised_address {
                None => String::new(),
                Some((h, None)) => h.clone(),
                Some((h, Some(p))) => format!("{h}:{p}"),
            },
            (Section::Sip, "resend_interval") => t
                .resend_intervals_ms
                .iter()
                .map(|&ms| fmt_ms(ms))
                .collect::<Vec<_>>()
                .join(","),
            (Section::Sip, "send_retry") => t.send_retry.to_string(),
            (Section::Sip, "timeout_invite") => (t.timeout_invite_ms / 1000).to_string(),
            (Section::Sip, "timeout_trying") => (t.timeout_trying_ms / 1000).to_string(),
            (Section::Sip, "timeout_ringing") => (t.timeout_ringing_ms / 1000).to_string(),
            (Section::Sip, "user_agent_expire") => match q.user_agent_expire_s {
                None => "auto".to_string(),
                Some(n) => n.to_string(),
            },
            (Section::Sip, "user_agent_retry_delay") => q.user_agent_retry_delay_s.to_string(),
            (Section::Sip, "user_agent_send_unregister") => on_off(q.user_agent_send_unregister),
            (Section::Sip, "user_agent_privacy") => match q.user_agent_privacy {
                Privacy::Ignore => "ignore",
                Privacy::Id => "id",
                Privacy::None => "none",
            }
            .to_string(),
            (Section::Sip, "endpoint_expire") => q.endpoint_expire_s.to_string(),
            (Section::Sip, "endpoint_nat_expire") => q.endpoint_nat_expire_s.to_string(),
            (Section::Sip, "endpoint_register_retry") => q.endpoint_register_retry.to_string(),
            (Section::Sip, "endpoint_register_suspend") => {
                q.endpoint_register_suspend_s.to_string()
            }
            (Section::Sip, "endpoint_register_replace") => on_off(q.endpoint_register_replace),
            (Section::Sip, "registrar_max_bindings") => q.registrar_max_bindings.to_string(),
            (Section::Registrar, key) => self.registrar_value_text(key),
            (Section::Log, "level") => self.log_level.clone(),
            (Section::Admin, key) => self.admin.value_text(key),
            _ => unreachable!("parameter {} has no value_text", p.dotted()),
        }
    }

    fn apply(&mut self, p: &ParamInfo, v: params::Val) {
        use params::Val;
        let s = &mut self.server;
        let q = &mut self.sip;
        // Ranges were checked by parse_value, so the narrowing casts below cannot truncate.
        match (p.section, p.key, v) {
            (Section::Server, "listen", Val::Addr(a)) => s.listen = a,
            (Section::Server, "shards", Val::Int(n)) => s.shards = n as usize,
            (Section::Server, "pin_shards", Val::Bool(b)) => s.pin_shards = b,
            (Section::Server, "reuseport_steering", Val::Bool(b)) => s.reuseport_steering = b,
            (Section::Server, "recv_buffer_bytes", Val::Int(n)) => s.recv_buffer_bytes = n as usize,
            (Section::Server, "send_buffer_bytes", Val::Int(n)) => s.send_buffer_bytes = n as usize,
            (Section::Server, "io_batch", Val::Int(n)) => s.io_batch = n as usize,
            (Section::Server, "io_backend", Val::Choice(c)) => {
                s.io_backend = match c {
                    "mmsg" => IoBackendKind::Mmsg,
                    "portable" => IoBackendKind::Portable,
                    _ => IoBackendKind::Auto,
                }
            }
            (Section::Server, "mailbox_capacity", Val::Int(n)) => s.mailbox_capacity = n as usize,
            (Section::Server, "shutdown_timeout_ms", Val::Int(n)) => s.shutdown_timeout_ms = n,
            (Section::Server, "advertised_address", Val::HostPort(hp)) => s.advertised_address = hp,
            (Section::Server, "max_datagram_bytes", Val::Int(n)) => {
                s.max_datagram_bytes = n as usize
            }
            (Section::Sip, "resend_interval", Val::Ms(v)) => q.timers.resend_intervals_ms = v,
            (Section::Sip, "send_retry", Val::Int(n)) => q.timers.send_retry = n as u32,
            (Section::Sip, "timeout_invite", Val::Int(n)) => q.timers.timeout_invite_ms = n * 1000,
            (Section::Sip, "timeout_trying", Val::Int(n)) => q.timers.timeout_trying_ms = n * 1000,
            (Section::Sip, "timeout_ringing", Val::Int(n)) => {
                q.timers.timeout_ringing_ms = n * 1000
            }
            (Section::Sip, "user_agent_expire", Val::Expire(e)) => q.user_agent_expire_s = e,
            (Section::Sip, "user_agent_retry_delay", Val::Int(n)) => {
                q.user_agent_retry_delay_s = n as u32
            }
            (Section::Sip, "user_agent_send_unregister", Val::Bool(b)) => {
                q.user_agent_send_unregister = b
            }
            (Section::Sip, "user_agent_privacy", Val::Choice(c)) => {
                q.user_agent_privacy = match c {
                    "id" => Privacy::Id,
                    "none" => Privacy::None,
                    _ => Privacy::Ignore,
                }
            }
            (Section::Sip, "endpoint_expire", Val::Int(n)) => q.endpoint_expire_s = n as u32,
            (Section::Sip, "endpoint_nat_expire", Val::Int(n)) => {
                q.endpoint_nat_expire_s = n as u32
            }
            (Section::Sip, "endpoint_register_retry", Val::Int(n)) => {
                q.endpoint_register_retry = n as u32
            }
            (Section::Sip, "endpoint_register_suspend", Val::Int(n)) => {
                q.endpoint_register_suspend_s = n as u32
            }
            (Section::Sip, "endpoint_register_replace", Val::Bool(b)) => {
                q.endpoint_register_replace = b
            }
            (Section::Sip, "registrar_max_bindings", Val::Int(n)) => {
                q.registrar_max_bindings = n as u32
            }
            (Section::Registrar, key, v) => self.registrar_apply(p, key, v),
            (Section::Log, "level", Val::Str(l)) => self.log_level = l,
            (Section::Admin, key, v) => self.admin.apply(key, v),
            (_, _, v) => unreachable!("parameter {} cannot take {v:?}", p.dotted()),
        }
    }
}

impl Config {
    fn registrar_value_text(&self, key: &str) -> String {
        let r = &self.registrar;
        match key {
            "realm" => r.realm.clone(),
            "min_expires" => r.min_expires_s.to_string(),
            "max_expires" => r.max_expires_s.to_string(),
            "expiry_spread_percent" => r.expiry_spread_percent.to_string(),
            "nonce_lifetime" => r.nonce_lifetime_s.to_string(),
            "digest_algorithms" => r.digest_algorithms.join(","),
            "nat_keepalive_interval" => r.nat_keepalive_interval_s.to_string(),
            "nat_keepalive_max_failures" => r.nat_keepalive_max_failures.to_string(),
            "rate_limit_per_source" => r.rate_limit_per_source.to_string(),
            "rate_limit_burst" => r.rate_limit_burst.to_string(),
            "trusted_sources" => r.trusted_sources.join(","),
            "failed_log_capacity" => r.failed_log_capacity.to_string(),
            "require_auth" => if r.require_auth { "On" } else { "Off" }.to_string(),
            "accounts_file" => r.accounts_file.clone().unwrap_or_default(),
            _ => unreachable!("parameter registrar.{key} has no value_text"),
        }
    }

    fn registrar_apply(&mut self, p: &ParamInfo, key: &str, v: params::Val) {
        use params::Val;
        let r = &mut self.registrar;
        // Ranges were checked by parse_value (all fit in u32).
        match (key, v) {
            ("realm", Val::Str(s)) => r.realm = s,
            ("min_expires", Val::Int(n)) => r.min_expires_s = n as u32,
            ("max_expires", Val::Int(n)) => r.max_expires_s = n as u32,
            ("expiry_spread_percent", Val::Int(n)) => r.expiry_spread_percent = n as u32,
            ("nonce_lifetime", Val::Int(n)) => r.nonce_lifetime_s = n as u32,
            ("digest_algorithms", Val::List(l)) => r.digest_algorithms = l,
            ("nat_keepalive_interval", Val::Int(n)) => r.nat_keepalive_interval_s = n as u32,
            ("nat_keepalive_max_failures", Val::Int(n)) => r.nat_keepalive_max_failures = n as u32,
            ("rate_limit_per_source", Val::Int(n)) => r.rate_limit_per_source = n as u32,
            ("rate_limit_burst", Val::Int(n)) => r.rate_limit_burst = n as u32,
            ("trusted_sources", Val::List(l)) => r.trusted_sources = l,
            ("failed_log_capacity", Val::Int(n)) => r.failed_log_capacity = n as u32,
            ("require_auth", Val::Bool(b)) => r.require_auth = b,
            ("accounts_file", Val::Path(f)) => r.accounts_file = f,
            (_, v) => unreachable!("parameter {} cannot take {v:?}", p.dotted()),
        }
    }
}

/// Line (1-based) of the `index`-th (0-based) `[[registrar.accounts]]` header, or of `field`
/// inside that entry (the header's when the field is not written). None when the accounts are
/// not written as `[[...]]` tables.
fn find_account_line(text: &str, index: usize, field: Option<&str>) -> Option<usize> {
    find_array_line(text, "registrar.accounts", index, field)
}

/// As [`find_account_line`], for any array of tables `[[array]]`.
fn find_array_line(text: &str, array: &str, index: usize, field: Option<&str>) -> Option<usize> {
    let mut seen = 0usize;
    // The entry's header line, once found, while looking for `field` in it.
    let mut inside: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            if inside.is_some() {
                return inside;
            }
            let name: String = line
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            if line.starts_with("[[") && name == array {
                if seen == index {
                    match field {
                        None => return Some(i + 1),
                        Some(_) => inside = Some(i + 1),
                    }
                }
                seen += 1;
            }
            continue;
        }
        if let (Some(_), Some(field)) = (inside, field) {
            let lhs = line
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"');
            if line.contains('=') && lhs == field {
                return Some(i + 1);
            }
        }
    }
    inside
}

/// Line (1-based) where `key` is written in `[section]` (or at top level when `section` is
/// `None`), or where `[section]` itself starts when `key` is `None`. A text scan, good enough
/// for messages: plain `key = ...` lines and `[section]` headers.
fn find_line(text: &str, section: Option<&str>, key: Option<&str>) -> Option<usize> {
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            let name = line
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            if key.is_none() && section == Some(name.as_str()) {
                return Some(i + 1);
            }
            current = Some(name);
            continue;
        }
        if let Some(key) = key {
            if current.as_deref() == section {
                let lhs = line
                    .split('=')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_matches('"');
                if line.contains('=') && lhs == key {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

/// Where a key was given.
struct Given {
    /// The name as written (key, VOS3000 name, or the override's origin).
    name: String,
    value: toml::Value,
    line: Option<usize>,
    origin: Option<String>,
}

fn build(text: &str, overrides: &[Override]) -> Result<Config, ConfigErrors> {
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            let msg = e.to_string();
            let msg = msg.trim_end().replace('\n', "\n  ");
            return Err(ConfigErrors(vec![ConfigError {
                key: String::new(),
                line: None,
                message: format!("TOML syntax error: {msg}"),
            }]));
        }
    };
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut given: Vec<Option<Given>> = PARAMS.iter().map(|_| None).collect();
    let mut accounts_value: Option<&toml::Value> = None;
    let mut trunks_value: Option<&toml::Value> = None;
    let mut cdr_value: Option<&toml::Value> = None;
    let mut routing_values: [Option<&toml::Value>; 4] = [None; 4];

    for (sec_name, sec_val) in &table {
        if sec_name == "trunks" {
            trunks_value = Some(sec_val);
            continue;
        }
        if sec_name == "cdr" {
            cdr_value = Some(sec_val);
            continue;
        }
        if let Some(i) = ["routing", "gateways", "routes", "peers"]
            .iter()
            .position(|n| n == sec_name)
        {
            routing_values[i] = Some(sec_val);
            continue;
        }
        let Some(section) = Section::from_name(sec_name) else {
            errors.push(unknown_outside_sections(text, sec_name, sec_val));
            continue;
        };
        let toml::Value::Table(entries) = sec_val else {
            errors.push(ConfigError {
                key: sec_name.clone(),
                line: find_line(text, None, Some(sec_name)),
                message: format!("`{sec_name}` must be a section [{sec_name}], not a value"),
            });
            continue;
        };
        for (name, value) in entries {
            if section == Section::Registrar && name == "accounts" {
                accounts_value = Some(value);
                continue;
            }
            let line = find_line(text, Some(sec_name), Some(name));
            let Some(idx) = params::lookup(section, name) else {
                errors.push(unknown_key(section, name, line));
                continue;
            };
            let p = &PARAMS[idx];
            if let Some(first) = &given[idx] {
                errors.push(ConfigError {
                    key: p.dotted(),
                    line,
                    message: format!(
                        "{} is given twice, as `{}` and as `{}`: keep one",
                        p.label(),
                        first.name,
                        name
                    ),
                });
                continue;
            }
            given[idx] = Some(Given {
                name: name.clone(),
                value: value.clone(),
                line,
                origin: None,
            });
        }
    }

    for o in overrides {
        match params::lookup_dotted(&o.key) {
            Some(idx) => {
                given[idx] = Some(Given {
                    name: o.origin.clone(),
                    value: toml::Value::String(o.value.clone()),
                    line: None,
                    origin: Some(o.origin.clone()),
                })
            }
            None => errors.push(ConfigError {
                key: o.key.clone(),
                line: None,
                message: format!("{}: unknown parameter `{}`", o.origin, o.key),
            }),
        }
    }

    let mut cfg = Config::default();
    let mut send_retry_given = false;
    for (p, g) in PARAMS.iter().zip(&given) {
        let Some(g) = g else { continue };
        match params::parse_value(p, &g.value) {
            Ok(v) => {
                if p.section == Section::Sip && p.key == "send_retry" {
                    send_retry_given = true;
                }
                cfg.apply(p, v);
            }
            Err(tail) => {
                let mut message = format!("{} = {} {}", p.label(), g.value, tail);
                if let Some(origin) = &g.origin {
                    message = format!("{origin}: {message}");
                }
                errors.push(ConfigError {
                    key: p.dotted(),
                    line: g.line,
                    message,
                });
            }
        }
    }
    if !send_retry_given {
        cfg.sip.timers.send_retry = cfg.sip.timers.resend_intervals_ms.len() as u32;
    }
    if let Some(v) = accounts_value {
        cfg.registrar.accounts = registrar::parse_accounts(text, v, &mut errors);
    }
    if let Some(v) = trunks_value {
        cfg.trunks = trunks::parse_trunks(text, v, &cfg.sip, &mut errors);
    }
    if let Some(v) = cdr_value {
        cfg.cdr = cdr::parse_cdr(text, v, &mut errors);
    }
    if let Some(v) = routing_values[0] {
        cfg.routing = routing::parse_routing(text, v, &mut errors);
    }
    if let Some(v) = routing_values[1] {
        cfg.gateways = routing::parse_gateways(text, v, &mut errors);
    }
    if let Some(v) = routing_values[2] {
        cfg.routes = routing::parse_routes(text, v, &cfg.gateways, &mut errors);
    }
    if let Some(v) = routing_values[3] {
        cfg.peers = routing::parse_peers(text, v, &mut errors);
    }
    if errors.is_empty() {
        cross_checks(&cfg, text, &given, &mut errors);
    }

    if errors.is_empty() {
        Ok(cfg)
    } else {
        // Stable: file order first (by line), then the rest in table order.
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        Err(ConfigErrors(errors))
    }
}

/// Checks between keys, made once every value is valid: `registrar.max_expires >=
/// registrar.min_expires`, and the expiries the registrar grants (`sip.endpoint_expire`,
/// `sip.endpoint_nat_expire`) within `[min_expires, max_expires]`.
fn cross_checks(cfg: &Config, text: &str, given: &[Option<Given>], errors: &mut Vec<ConfigError>) {
    let r = &cfg.registrar;
    let line_of = |section: Section, key: &str| {
        params::lookup(section, key)
            .and_then(|i| given[i].as_ref())
            .and_then(|g| g.line)
            .or_else(|| find_line(text, Some(section.name()), Some(key)))
    };
    if let Some(message) = cfg.admin.problem() {
        errors.push(ConfigError {
            key: "admin.token".to_string(),
            line: line_of(Section::Admin, "listen").or_else(|| line_of(Section::Admin, "token")),
            message,
        });
    }
    if r.max_expires_s < r.min_expires_s {
        errors.push(ConfigError {
            key: "registrar.max_expires".to_string(),
            line: line_of(Section::Registrar, "max_expires")
                .or_else(|| line_of(Section::Registrar, "min_expires")),
            message: format!(
                "registrar.max_expires = {} is below registrar.min_expires = {}: \
                 max_expires must be >= min_expires",
                r.max_expires_s, r.min_expires_s
            ),
        });
        return;
    }
    for (key, value) in [
        ("endpoint_expire", cfg.sip.endpoint_expire_s),
        ("endpoint_nat_expire", cfg.sip.endpoint_nat_expire_s),
    ] {
        if (r.min_expires_s..=r.max_expires_s).contains(&value) {
            continue;
        }
        let p = &PARAMS[params::lookup(Section::Sip, key).expect("a [sip] key")];
        errors.push(ConfigError {
            key: p.dotted(),
            line: line_of(Section::Sip, key)
                .or_else(|| line_of(Section::Registrar, "min_expires"))
                .or_else(|| line_of(Section::Registrar, "max_expires")),
            message: format!(
                "{} = {value} is outside the registrar's expiry bounds: allowed \
                 registrar.min_expires..=registrar.max_expires ({}..={} seconds)",
                p.label(),
                r.min_expires_s,
                r.max_expires_s
            ),
        });
    }
}

fn unknown_key(section: Section, name: &str, line: Option<usize>) -> ConfigError {
    let mut message = format!("unknown key `{name}` in [{section}]");
    if let Some(other) = Section::ALL
        .into_iter()
        .find(|&s| s != section && params::lookup(s, name).is_some())
    {
        message.push_str(&format!("; `{name}` belongs in [{other}]"));
    } else if let Some(s) = params::suggest(section, name) {
        message.push_str(&format!("; did you mean `{s}`?"));
    }
    ConfigError {
        key: format!("{section}.{name}"),
        line,
        message,
    }
}

fn unknown_outside_sections(text: &str, name: &str, value: &toml::Value) -> ConfigError {
    let known = "known sections: [server], [sip], [registrar], [routing], [log], [cdr], [admin], \
                 [[trunks]], [[gateways]], [[routes]], [[peers]]";
    if let toml::Value::Table(_) = value {
        let mut message = format!("unknown section [{name}]; {known}");
        if let Some(s) = Section::ALL
            .into_iter()
            .find(|s| params::edit_distance(&name.to_ascii_lowercase(), s.name()) <= 2)
        {
            message = format!("unknown section [{name}]; did you mean [{s}]?");
        }
        return ConfigError {
            key: name.to_string(),
            line: find_line(text, Some(name), None),
            message,
        };
    }
    if params::edit_distance(&name.to_ascii_lowercase(), "trunks") <= 2 {
        return ConfigError {
            key: name.to_string(),
            line: find_line(text, None, Some(name))
                .or_else(|| find_array_line(text, name, 0, None)),
            message: format!("unknown `{name}` at top level; did you mean [[trunks]]?"),
        };
    }
    let mut message = format!("unknown key `{name}` at top level (outside any section)");
    if let Some(s) = Section::ALL
        .into_iter()
        .find(|&s| params::lookup(s, name).is_some())
    {
        message.push_str(&format!("; `{name}` belongs in [{s}]"));
    } else {
        message.push_str(&format!("; {known}"));
    }
    ConfigError {
        key: name.to_string(),
        line: find_line(text, None, Some(name)),
        message,
    }
}
