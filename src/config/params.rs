//! The parameter table (one row per config key) and the parsing of one value per row.
//!
//! Every key of the config file is a row of [`PARAMS`]: its section, snake_case key, VOS3000 name,
//! kind (which carries the allowed range) and meaning. The parser, the validator, the `params`
//! command and the docs all read this one table.

use std::fmt;
use std::net::SocketAddr;

use super::registrar::{parse_allowed, AllowedSource};

/// A section of the config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Section {
    Server,
    Sip,
    Registrar,
    Log,
    Admin,
}

impl Section {
    pub const ALL: [Section; 5] = [
        Section::Server,
        Section::Sip,
        Section::Registrar,
        Section::Log,
        Section::Admin,
    ];

    /// The table name as written in the file: `server`, `sip`, `log`.
    pub fn name(self) -> &'static str {
        match self {
            Section::Server => "server",
            Section::Sip => "sip",
            Section::Registrar => "registrar",
            Section::Log => "log",
            Section::Admin => "admin",
        }
    }

    pub fn from_name(name: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What values a key takes, and so its allowed range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A whole number in `min..=max` (a TOML integer, or a string holding one).
    Int {
        min: u64,
        max: u64,
        unit: &'static str,
    },
    /// 0 (off), or a whole number in `min..=max` (values between 1 and `min - 1` are refused).
    IntOrOff {
        min: u64,
        max: u64,
        unit: &'static str,
    },
    /// `true`/`false`, or the VOS3000 strings "On"/"Off" (any case).
    Bool,
    /// SS_SIP_RESEND_INTERVAL: 1..=10 values, each 0.05..=60 s, whole milliseconds.
    Intervals,
    /// SS_SIP_USER_AGENT_EXPIRE: "auto" / "Auto Negotiation", or 20..=7200 s.
    UaExpire,
    /// One of these words (any case).
    Choice(&'static [&'static str]),
    /// An IP socket address, `IP:PORT` or `[IPv6]:PORT`.
    SocketAddr,
    /// A `tracing` filter directive such as `info` or `sipshard=debug,warn`.
    LogFilter,
    /// A non-empty string that can be written inside a quoted header parameter (digest realm).
    Token,
    /// Digest algorithms: a TOML array (or a comma-separated string) of `SHA-256`/`MD5`, any
    /// case, at least one, no duplicates.
    Algorithms,
    /// Source networks: a TOML array (or a comma-separated string) of `IP` or `IP/PREFIX`.
    Networks,
    /// `host[:port]` (host name, IPv4, or `[IPv6]`), or "" for none.
    HostPort,
    /// A file path; the empty string means none.
    Path,
    /// A secret (bearer token): printable ASCII without spaces; the empty string means none.
    Secret,
}

/// Resend interval bounds, milliseconds (per value).
pub const INTERVAL_MIN_MS: u64 = 50;
pub const INTERVAL_MAX_MS: u64 = 60_000;
/// Most values in SS_SIP_RESEND_INTERVAL.
pub const INTERVALS_MAX: usize = 10;
/// SS_SIP_USER_AGENT_EXPIRE bounds, seconds.
pub const UA_EXPIRE_MIN_S: u64 = 20;
pub const UA_EXPIRE_MAX_S: u64 = 7200;

/// One config key.
#[derive(Clone, Copy, Debug)]
pub struct ParamInfo {
    pub section: Section,
    /// snake_case key in its section.
    pub key: &'static str,
    /// VOS3000 parameter name, accepted as an alias in the same section.
    pub vos_name: Option<&'static str>,
    pub kind: Kind,
    /// One line: what it does.
    pub meaning: &'static str,
}

impl ParamInfo {
    /// `section.key`, e.g. `sip.timeout_invite`.
    pub fn dotted(&self) -> String {
        format!("{}.{}", self.section, self.key)
    }

    /// `sip.timeout_invite (SS_SIP_TIMEOUT_INVITE)`, or `server.shards`.
    pub fn label(&self) -> String {
        match self.vos_name {
            Some(v) => format!("{}.{} ({})", self.section, self.key, v),
            None => self.dotted(),
        }
    }

    /// Human text of the allowed values, as used in error messages and `sipshard params`.
    pub fn range(&self) -> String {
        match self.kind {
            Kind::Int { min, max, unit } => {
                if unit.is_empty() {
                    format!("{min}..={max}")
                } else {
                    format!("{min}..={max} {unit}")
                }
            }
            Kind::IntOrOff { min, max, unit } => {
                if unit.is_empty() {
                    format!("0 (off) or {min}..={max}")
                } else {
                    format!("0 (off) or {min}..={max} {unit}")
                }
            }
            Kind::Bool => "On/Off (or true/false)".to_string(),
            Kind::Intervals => format!(
                "1 to {INTERVALS_MAX} values, each {}..={} seconds in whole milliseconds",
                fmt_ms(INTERVAL_MIN_MS),
                fmt_ms(INTERVAL_MAX_MS)
            ),
            Kind::UaExpire => {
                format!(
                    "Auto (\"Auto Negotiation\") or {UA_EXPIRE_MIN_S}..={UA_EXPIRE_MAX_S} seconds"
                )
            }
            Kind::Choice(words) => words.join("|"),
            Kind::SocketAddr => "IP:PORT (IPv6 as [ADDR]:PORT)".to_string(),
            Kind::LogFilter => {
                "a tracing filter: error|warn|info|debug|trace, or target=level,...".to_string()
            }
            Kind::Token => {
                "a non-empty string without quotes, backslashes or control characters".to_string()
            }
            Kind::Algorithms => "one or both of SHA-256, MD5 (in order of preference)".to_string(),
            Kind::Networks => "a list of IP or IP/PREFIX (may be empty)".to_string(),
            Kind::HostPort => {
                "HOST[:PORT]: a host name, IPv4 or [IPv6] address, optional port; \"\" = none"
                    .to_string()
            }
            Kind::Path => {
                "a file path, relative to the config file's directory; \"\" = none".to_string()
            }
            Kind::Secret => {
                "printable ASCII without spaces, at least 16 characters; \"\" = none".to_string()
            }
        }
    }
}

const fn int(min: u64, max: u64, unit: &'static str) -> Kind {
    Kind::Int { min, max, unit }
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Every config key, in the order of the default file.
pub static PARAMS: &[ParamInfo] = &[
    // [server]
    ParamInfo {
        section: Section::Server,
        key: "listen",
        vos_name: None,
        kind: Kind::SocketAddr,
        meaning: "UDP address every shard binds (SO_REUSEPORT); port 0 lets the OS pick one",
    },
    ParamInfo {
        section: Section::Server,
        key: "shards",
        vos_name: None,
        kind: int(0, 256, "(0 = one per available core)"),
        meaning: "number of shard threads",
    },
    ParamInfo {
        section: Section::Server,
        key: "pin_shards",
        vos_name: None,
        kind: Kind::Bool,
        meaning: "pin each shard thread to its own core",
    },
    ParamInfo {
        section: Section::Server,
        key: "reuseport_steering",
        vos_name: None,
        kind: Kind::Bool,
        meaning: "deliver each datagram to its owner shard in the kernel (Linux, reuseport BPF)",
    },
    ParamInfo {
        section: Section::Server,
        key: "recv_buffer_bytes",
        vos_name: None,
        kind: int(64 * KIB, GIB, "bytes (64 KiB..=1 GiB)"),
        meaning: "SO_RCVBUF of each shard socket (the kernel may cap it at net.core.rmem_max)",
    },
    ParamInfo {
        section: Section::Server,
        key: "send_buffer_bytes",
        vos_name: None,
        kind: int(64 * KIB, GIB, "bytes (64 KiB..=1 GiB)"),
        meaning: "SO_SNDBUF of each shard socket (the kernel may cap it at net.core.wmem_max)",
    },
    ParamInfo {
        section: Section::Server,
        key: "io_batch",
        vos_name: None,
        kind: int(1, 1024, "datagrams"),
        meaning: "datagrams per recvmmsg/sendmmsg batch",
    },
    ParamInfo {
        section: Section::Server,
        key: "io_backend",
        vos_name: None,
        kind: Kind::Choice(&["auto", "mmsg", "portable"]),
        meaning: "batch I/O backend: auto (mmsg on Linux, else portable), mmsg, portable",
    },
    ParamInfo {
        section: Section::Server,
        key: "mailbox_capacity",
        vos_name: None,
        kind: int(64, 1_048_576, "messages"),
        meaning: "capacity of each inter-shard mailbox",
    },
    ParamInfo {
        section: Section::Server,
        key: "shutdown_timeout_ms",
        vos_name: None,
        kind: int(100, 600_000, "milliseconds"),
        meaning: "upper bound on graceful shutdown (unregistering, draining)",
    },
    ParamInfo {
        section: Section::Server,
        key: "max_datagram_bytes",
        vos_name: None,
        kind: int(1024, 65_535, "bytes"),
        meaning: "largest datagram accepted; larger ones are dropped",
    },
    ParamInfo {
        section: Section::Server,
        key: "advertised_address",
        vos_name: None,
        kind: Kind::HostPort,
        meaning: "address written in the Via and Contact of requests sipshard sends (outbound \
                  REGISTERs, NAT keepalives when an IP); port default: the listen port; \
                  \"\" = the listen address, or when that is 0.0.0.0/[::] the local address \
                  the kernel routes toward each trunk's destination",
    },
    // [sip]
    ParamInfo {
        section: Section::Sip,
        key: "resend_interval",
        vos_name: Some("SS_SIP_RESEND_INTERVAL"),
        kind: Kind::Intervals,
        meaning: "wait before each retransmission of an unanswered request; after the last, give up",
    },
    ParamInfo {
        section: Section::Sip,
        key: "send_retry",
        vos_name: Some("SS_SIP_SEND_RETRY"),
        kind: int(0, 10, "re-sends"),
        meaning: "max retransmissions; default = number of resend_interval values; >= values-1 = whole schedule",
    },
    ParamInfo {
        section: Section::Sip,
        key: "timeout_invite",
        vos_name: Some("SS_SIP_TIMEOUT_INVITE"),
        kind: int(1, 600, "seconds"),
        meaning: "max wait for any response to an INVITE, then the attempt has failed",
    },
    ParamInfo {
        section: Section::Sip,
        key: "timeout_trying",
        vos_name: Some("SS_SIP_TIMEOUT_TRYING"),
        kind: int(1, 600, "seconds"),
        meaning: "after 100 Trying, max wait for 180/183/2xx",
    },
    ParamInfo {
        section: Section::Sip,
        key: "timeout_ringing",
        vos_name: Some("SS_SIP_TIMEOUT_RINGING"),
        kind: int(1, 3600, "seconds"),
        meaning: "after 180/183, max wait for the answer (then CANCEL: no answer)",
    },
    ParamInfo {
        section: Section::Sip,
        key: "user_agent_expire",
        vos_name: Some("SS_SIP_USER_AGENT_EXPIRE"),
        kind: Kind::UaExpire,
        meaning: "expiry requested when registering to another server (auto: take what it grants)",
    },
    ParamInfo {
        section: Section::Sip,
        key: "user_agent_retry_delay",
        vos_name: Some("SS_SIP_USER_AGENT_RETRY_DELAY"),
        kind: int(30, 600, "seconds"),
        meaning: "wait after a failed outbound registration before the next try (fixed)",
    },
    ParamInfo {
        section: Section::Sip,
        key: "user_agent_send_unregister",
        vos_name: Some("SS_SIP_USER_AGENT_SEND_UNREGISTER"),
        kind: Kind::Bool,
        meaning: "send REGISTER with Expires: 0 on removal or shutdown",
    },
    ParamInfo {
        section: Section::Sip,
        key: "user_agent_privacy",
        vos_name: Some("SS_SIP_USER_AGENT_PRIVACY"),
        kind: Kind::Choice(&["ignore", "id", "none"]),
        meaning: "Privacy header of outbound REGISTERs: ignore (none sent), id, none",
    },
    ParamInfo {
        section: Section::Sip,
        key: "endpoint_expire",
        vos_name: Some("SS_ENDPOINT_EXPIRE"),
        kind: int(60, 86_400, "seconds"),
        meaning: "expiry granted to endpoints that register",
    },
    ParamInfo {
        section: Section::Sip,
        key: "endpoint_nat_expire",
        vos_name: Some("SS_ENDPOINT_NAT_EXPIRE"),
        kind: int(20, 3600, "seconds"),
        meaning: "expiry granted to endpoints detected behind NAT",
    },
    ParamInfo {
        section: Section::Sip,
        key: "endpoint_register_retry",
        vos_name: Some("SS_ENDPOINT_REGISTER_RETRY"),
        kind: int(1, 100, "attempts"),
        meaning: "failed registration attempts allowed before suspension",
    },
    ParamInfo {
        section: Section::Sip,
        key: "endpoint_register_suspend",
        vos_name: Some("SS_ENDPOINT_REGISTER_SUSPEND"),
        kind: int(10, 86_400, "seconds"),
        meaning: "how long an endpoint is refused after exceeding the retries",
    },
    ParamInfo {
        section: Section::Sip,
        key: "endpoint_register_replace",
        vos_name: Some("SS_ENDPOINT_REGISTER_REPLACE"),
        kind: Kind::Bool,
        meaning: "On: a new registration replaces the old binding; Off: rejected while one is live",
    },
    ParamInfo {
        section: Section::Sip,
        key: "registrar_max_bindings",
        vos_name: Some("SERVER_REGISTRAR_MAX_BINDINGS"),
        kind: int(1, 1000, "bindings"),
        meaning: "max concurrent contact bindings per address of record",
    },
    // [registrar]
    ParamInfo {
        section: Section::Registrar,
        key: "realm",
        vos_name: None,
        kind: Kind::Token,
        meaning: "digest realm of the challenges (and of the HA1 hashes of every account)",
    },
    ParamInfo {
        section: Section::Registrar,
        key: "min_expires",
        vos_name: None,
        kind: int(10, 3600, "seconds"),
        meaning: "shortest expiry accepted; a shorter non-zero Expires gets 423 with Min-Expires",
    },
    ParamInfo {
        section: Section::Registrar,
        key: "max_expires",
        vos_name: None,
        kind: int(60, 86_400, "seconds (and >= min_expires)"),
        meaning: "longest expiry granted; longer requests are cut down to it",
    },
    ParamInfo {
        section: Section::Registrar,
        key: "expiry_spread_percent",
        vos_name: None,
        kind: int(0, 50, "percent"),
        meaning: "random spread subtracted from granted expiries against refresh storms (0 = off)",
    },
    ParamInfo {
        section: Section::Registrar,
        key: "nonce_lifetime",
        vos_name: None,
        kind: int(10, 3600, "seconds"),
        meaning: "how long a nonce is accepted; older ones get 401 with stale=true",
    },
    ParamInfo {
        section: Section::Registrar,
        key: "digest_algorithms",
        vos_name: None,
        kind: Kind::Algorithms,
        meaning: "digest algorithms offered in challenges, one challenge each, in this order",
    },
    ParamInfo {
        section: Section::Registrar,
        key: "nat_keepalive_interval",
        vos_name: None,
        kind: Kind::IntOrOff {
            min: 5,
            max: 3600,
            unit: "seconds",
        },
        meaning: "OPTIONS keepalive interval for bindings behind NAT (0 = no keepalives)",
    },
    ParamInfo {
        section: Section::Registrar,
        key: "nat_keepalive_max_failures",
        vos_name: None,
        kind: int(1, 100, "keepalives"),
        meaning: "unanswered keepalives in a row before a NAT binding is dropped",
    },
    ParamInfo {
        section: Section::Registrar,
        key: "rate_limit_per_source",
        vos_name: None,
        kind: int(0, 100_000, "requests per second (0 = off)"),
        meaning: "REGISTER requests per second accepted from one source IP",
    },
    ParamInfo {
        section: Section::Registrar,
        key: "rate_limit_burst",
        vos_name: None,
        kind: int(1, 1_000_000, "requests"),
        meaning: "requests a source may send at once above the rate",
    },
    ParamInfo {
        section: Section::Registrar,
        key: "trusted_sources",
        vos_name: None,
        kind: Kind::Networks,
        meaning: "sources never rate-limited or suspended",
    },
    ParamInfo {
        section: Section::Registrar,
        key: "failed_log_capacity",
        vos_name: None,
        kind: int(0, 1_000_000, "entries (0 = no log)"),
        meaning: "entries kept in the failed-registration log, per shard",
    },
    ParamInfo {
        section: Section::Registrar,
        key: "require_auth",
        vos_name: None,
        kind: Kind::Bool,
        meaning: "Off: REGISTER is accepted without authentication (closed networks, lab tests)",
    },
    ParamInfo {
        section: Section::Registrar,
        key: "accounts_file",
        vos_name: None,
        kind: Kind::Path,
        meaning: "CSV of bulk accounts: user,password[,allowed[,auth_mode]]",
    },
    // [log]
    ParamInfo {
        section: Section::Log,
        key: "level",
        vos_name: None,
        kind: Kind::LogFilter,
        meaning: "log filter; the RUST_LOG environment variable overrides it",
    },
    // [admin]
    ParamInfo {
        section: Section::Admin,
        key: "enabled",
        vos_name: None,
        kind: Kind::Bool,
        meaning: "run the management HTTP server (API, /metrics, web page)",
    },
    ParamInfo {
        section: Section::Admin,
        key: "listen",
        vos_name: None,
        kind: Kind::SocketAddr,
        meaning: "TCP address of the management HTTP server (port 0: any free port)",
    },
    ParamInfo {
        section: Section::Admin,
        key: "token",
        vos_name: None,
        kind: Kind::Secret,
        meaning: "bearer token: required for changes, and for everything beyond loopback",
    },
    ParamInfo {
        section: Section::Admin,
        key: "trend_interval",
        vos_name: None,
        kind: int(1, 3600, "seconds"),
        meaning: "how often the registration count is sampled for the trend (kept >= 24 h)",
    },
    ParamInfo {
        section: Section::Admin,
        key: "recent_calls",
        vos_name: None,
        kind: int(0, 100_000, "CDRs"),
        meaning: "most recent CDRs kept in memory for /api/v1/calls (0: none; needs [cdr] on)",
    },
];

/// The row for `section` + `name`, where `name` is the snake_case key (exact) or the VOS3000
/// name (any case).
pub fn lookup(section: Section, name: &str) -> Option<usize> {
    PARAMS.iter().position(|p| {
        p.section == section
            && (p.key == name || p.vos_name.is_some_and(|v| v.eq_ignore_ascii_case(name)))
    })
}

/// The row for `section.key` (dotted) or for a bare VOS3000 name.
pub fn lookup_dotted(name: &str) -> Option<usize> {
    if let Some((sec, key)) = name.split_once('.') {
        return Section::from_name(sec).and_then(|s| lookup(s, key));
    }
    PARAMS
        .iter()
        .position(|p| p.vos_name.is_some_and(|v| v.eq_ignore_ascii_case(name)))
}

/// A parsed, range-checked value.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Int(u64),
    Bool(bool),
    Ms(Vec<u64>),
    Expire(Option<u32>),
    Choice(&'static str),
    Addr(SocketAddr),
    Str(String),
    List(Vec<String>),
    Path(Option<String>),
    HostPort(Option<(String, Option<u16>)>),
}

/// Parse and range-check `v` for `p`. The error is the tail of the message, to follow
/// `label = value`, e.g. `is out of range: allowed 1..=600 seconds`.
pub fn parse_value(p: &ParamInfo, v: &toml::Value) -> Result<Val, String> {
    let range = p.range();
    let not_valid = |what: &str| format!("is not valid: expected {what}; allowed {range}");
    let out_of_range = || format!("is out of range: allowed {range}");
    match p.kind {
        Kind::Int { min, max, .. } => {
            let n: i128 = match v {
                toml::Value::Integer(i) => *i as i128,
                toml::Value::String(s) => match parse_whole(s) {
                    Some(n) => n,
                    None => return Err(not_valid("a whole number")),
                },
                _ => return Err(not_valid("a whole number")),
            };
            if n < min as i128 || n > max as i128 {
                return Err(out_of_range());
            }
            Ok(Val::Int(n as u64))
        }
        Kind::IntOrOff { min, max, .. } => {
            let n: i128 = match v {
                toml::Value::Integer(i) => *i as i128,
                toml::Value::String(s) => match parse_whole(s) {
                    Some(n) => n,
                    None => return Err(not_valid("a whole number")),
                },
                _ => return Err(not_valid("a whole number")),
            };
            if n != 0 && (n < min as i128 || n > max as i128) {
                return Err(out_of_range());
            }
            Ok(Val::Int(n as u64))
        }
        Kind::Bool => match v {
            toml::Value::Boolean(b) => Ok(Val::Bool(*b)),
            toml::Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "on" | "true" => Ok(Val::Bool(true)),
                "off" | "false" => Ok(Val::Bool(false)),
                _ => Err(not_valid("On or Off")),
            },
            _ => Err(not_valid("On or Off")),
        },
        Kind::Intervals => parse_intervals(v)
            .map(Val::Ms)
            .map_err(|why| format!("is not valid: {why}; allowed {range}")),
        Kind::UaExpire => {
            let n: i128 = match v {
                toml::Value::Integer(i) => *i as i128,
                toml::Value::String(s) => {
                    let norm = s.split_whitespace().collect::<Vec<_>>().join(" ");
                    let norm = norm.to_ascii_lowercase();
                    if norm == "auto" || norm == "auto negotiation" {
                        return Ok(Val::Expire(None));
                    }
                    match parse_whole(s) {
                        Some(n) => n,
                        None => return Err(not_valid("\"auto\" or a whole number of seconds")),
                    }
                }
                _ => return Err(not_valid("\"auto\" or a whole number of seconds")),
            };
            if n < UA_EXPIRE_MIN_S as i128 || n > UA_EXPIRE_MAX_S as i128 {
                return Err(out_of_range());
            }
            Ok(Val::Expire(Some(n as u32)))
        }
        Kind::Choice(words) => {
            let not_one = || format!("is not valid: allowed {range} (any case)");
            match v {
                toml::Value::String(s) => {
                    let s = s.trim();
                    words
                        .iter()
                        .find(|w| w.eq_ignore_ascii_case(s))
                        .map(|w| Val::Choice(w))
                        .ok_or_else(not_one)
                }
                _ => Err(not_one()),
            }
        }
        Kind::SocketAddr => match v {
            toml::Value::String(s) => s
                .trim()
                .parse::<SocketAddr>()
                .map(Val::Addr)
                .map_err(|_| not_valid("an IP address and port")),
            _ => Err(not_valid("a string \"IP:PORT\"")),
        },
        Kind::LogFilter => match v {
            toml::Value::String(s) if !s.trim().is_empty() => {
                match tracing_subscriber::EnvFilter::builder().parse(s.trim()) {
                    Ok(_) => Ok(Val::Str(s.trim().to_string())),
                    Err(e) => Err(format!("is not valid: {e}; allowed {range}")),
                }
            }
            _ => Err(not_valid("a non-empty string")),
        },
        Kind::Token => match v {
            toml::Value::String(s)
                if !s.is_empty() && !s.chars().any(|c| c == '"' || c == '\\' || c.is_control()) =>
            {
                Ok(Val::Str(s.clone()))
            }
            _ => Err(not_valid("a non-empty string")),
        },
        Kind::Algorithms => {
            let items = string_list(v).map_err(&not_valid)?;
            let mut out: Vec<String> = Vec::new();
            let mut problems = Vec::new();
            for item in &items {
                match ["SHA-256", "MD5"]
                    .iter()
                    .find(|a| a.eq_ignore_ascii_case(item.trim()))
                {
                    Some(a) if out.iter().any(|o| o == a) => {
                        problems.push(format!("{a} is listed twice"))
                    }
                    Some(a) => out.push(a.to_string()),
                    None => problems.push(format!("`{}` is not an algorithm", item.trim())),
                }
            }
            if items.is_empty() {
                problems.push("it has no values".to_string());
            }
            if problems.is_empty() {
                Ok(Val::List(out))
            } else {
                Err(format!(
                    "is not valid: {}; allowed {range}",
                    problems.join(", ")
                ))
            }
        }
        Kind::Networks => {
            let items = string_list(v).map_err(&not_valid)?;
            let mut out = Vec::new();
            let mut problems = Vec::new();
            for item in &items {
                match parse_allowed(item) {
                    Ok(AllowedSource::IpPort(_)) => {
                        problems.push(format!("`{}` has a port; write the IP only", item.trim()))
                    }
                    Ok(a) => out.push(a.to_string()),
                    Err(e) => problems.push(e),
                }
            }
            if problems.is_empty() {
                Ok(Val::List(out))
            } else {
                Err(format!(
                    "is not valid: {}; allowed {range}",
                    problems.join(", ")
                ))
            }
        }
        Kind::HostPort => match v {
            toml::Value::String(s) if s.trim().is_empty() => Ok(Val::HostPort(None)),
            toml::Value::String(s) => super::trunks::parse_host_opt_port(s)
                .map(|hp| Val::HostPort(Some(hp)))
                .map_err(|why| format!("is not valid: {why}; allowed {range}")),
            _ => Err(not_valid("a string")),
        },
        Kind::Secret => match v {
            toml::Value::String(s) if s.is_empty() => Ok(Val::Str(String::new())),
            toml::Value::String(s) if s.len() >= 16 && s.bytes().all(|b| b.is_ascii_graphic()) => {
                Ok(Val::Str(s.clone()))
            }
            _ => Err(not_valid("a token")),
        },
        Kind::Path => match v {
            toml::Value::String(s) if s.trim().is_empty() => Ok(Val::Path(None)),
            toml::Value::String(s) if !s.chars().any(|c| c.is_control()) => {
                Ok(Val::Path(Some(s.trim().to_string())))
            }
            _ => Err(not_valid("a string")),
        },
    }
}

/// A TOML array of strings, or one string of comma-separated items (as `params` prints lists and
/// as command-line overrides give them). An empty string is an empty list.
fn string_list(v: &toml::Value) -> Result<Vec<String>, &'static str> {
    match v {
        toml::Value::String(s) if s.trim().is_empty() => Ok(Vec::new()),
        toml::Value::String(s) => Ok(s.split(',').map(|p| p.trim().to_string()).collect()),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                toml::Value::String(s) => Ok(s.clone()),
                _ => Err("an array of strings"),
            })
            .collect(),
        _ => Err("an array of strings"),
    }
}

/// A whole number written as a string (spaces around allowed, sign allowed so that `-1` is
/// reported as out of range rather than as not a number).
fn parse_whole(s: &str) -> Option<i128> {
    let t = s.trim();
    let digits = t.strip_prefix(|c| c == '-' || c == '+').unwrap_or(t);
    if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<i128>().ok()
}

/// Why one decimal number of seconds could not become milliseconds.
#[derive(Debug, PartialEq, Eq)]
pub enum DecimalError {
    NotANumber,
    Negative,
    FinerThanMs,
    TooLarge,
}

/// Exact conversion of a decimal number of seconds (`"0.5"`, `"4"`, `".25"`, `"1.500"`) to
/// milliseconds, without floating point.
pub fn seconds_to_ms(s: &str) -> Result<u64, DecimalError> {
    let t = s.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int_part, frac_part) = match t.split_once('.') {
        Some((i, f)) => (i, f),
        None => (t, ""),
    };
    let all_digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !all_digits(int_part)
        || !all_digits(frac_part)
    {
        return Err(DecimalError::NotANumber);
    }
    if t.ends_with('.') {
        // "1." is not a number we accept; write "1" or "1.0".
        return Err(DecimalError::NotANumber);
    }
    let int_digits = int_part.trim_start_matches('0');
    if int_digits.len() > 12 {
        return Err(if neg {
            DecimalError::Negative
        } else {
            DecimalError::TooLarge
        });
    }
    let whole: u64 = if int_digits.is_empty() {
        0
    } else {
        int_digits.parse().unwrap()
    };
    let (ms_digits, rest) = frac_part.split_at(frac_part.len().min(3));
    if rest.bytes().any(|b| b != b'0') {
        return Err(DecimalError::FinerThanMs);
    }
    let mut frac_ms: u64 = 0;
    for (i, b) in ms_digits.bytes().enumerate() {
        frac_ms += u64::from(b - b'0') * [100, 10, 1][i];
    }
    let ms = whole * 1000 + frac_ms;
    if neg && ms != 0 {
        return Err(DecimalError::Negative);
    }
    Ok(ms)
}

fn one_interval(
    index: usize,
    shown: &str,
    parsed: Result<u64, DecimalError>,
) -> Result<u64, String> {
    let n = index + 1;
    match parsed {
        Ok(ms) if (INTERVAL_MIN_MS..=INTERVAL_MAX_MS).contains(&ms) => Ok(ms),
        Ok(_) | Err(DecimalError::Negative) | Err(DecimalError::TooLarge) => {
            Err(format!("value {n} ({shown}) is out of range"))
        }
        Err(DecimalError::FinerThanMs) => Err(format!("value {n} ({shown}) is finer than 1 ms")),
        Err(DecimalError::NotANumber) => {
            if shown.is_empty() {
                Err(format!("value {n} is empty"))
            } else {
                Err(format!("value {n} ({shown}) is not a number"))
            }
        }
    }
}

/// SS_SIP_RESEND_INTERVAL from a TOML array of numbers or a comma-separated string.
fn parse_intervals(v: &toml::Value) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    match v {
        toml::Value::String(s) => {
            if s.trim().is_empty() {
                return Err("it has no values".into());
            }
            for (i, part) in s.split(',').enumerate() {
                let part = part.trim();
                match one_interval(i, part, seconds_to_ms(part)) {
                    Ok(ms) => out.push(ms),
                    Err(e) => problems.push(e),
                }
            }
        }
        toml::Value::Array(items) => {
            if items.is_empty() {
                return Err("it has no values".into());
            }
            for (i, item) in items.iter().enumerate() {
                let shown = item.to_string();
                let parsed = match item {
                    toml::Value::Integer(n) if *n < 0 => Err(DecimalError::Negative),
                    toml::Value::Integer(n) => {
                        (*n as u64).checked_mul(1000).ok_or(DecimalError::TooLarge)
                    }
                    // Display of f64 is the shortest decimal that reads back as the same f64 and
                    // never uses an exponent, so 0.1 → "0.1" → exactly 100 ms.
                    toml::Value::Float(f) if f.is_finite() => seconds_to_ms(&format!("{f}")),
                    _ => Err(DecimalError::NotANumber),
                };
                match one_interval(i, &shown, parsed) {
                    Ok(ms) => out.push(ms),
                    Err(e) => problems.push(e),
                }
            }
        }
        _ => {
            return Err(
                "expected an array of seconds like [0.5, 1, 2] or a string like \"0.5,1,2\"".into(),
            )
        }
    }
    let count = out.len() + problems.len();
    if count > INTERVALS_MAX {
        problems.insert(0, format!("it has {count} values"));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join(", "))
    }
}

/// Milliseconds as seconds, the shortest exact decimal: 500 → "0.5", 4000 → "4", 50 → "0.05".
pub fn fmt_ms(ms: u64) -> String {
    let whole = ms / 1000;
    let frac = ms % 1000;
    if frac == 0 {
        return whole.to_string();
    }
    let f = format!("{frac:03}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// Edit distance, for "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The nearest known name in `section` (key or VOS3000 name), if it is close enough.
pub fn suggest(section: Section, name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let mut best: Option<(usize, &'static str)> = None;
    for p in PARAMS.iter().filter(|p| p.section == section) {
        let mut cands = vec![(edit_distance(&lower, p.key), p.key)];
        if let Some(v) = p.vos_name {
            cands.push((edit_distance(&lower, &v.to_ascii_lowercase()), v));
        }
        for (d, c) in cands {
            if best.map_or(true, |(bd, _)| d < bd) {
                best = Some((d, c));
            }
        }
    }
    let (d, c) = best?;
    let limit = (name.chars().count() / 3).max(2);
    (d <= limit).then_some(c)
}
