//! `[[trunks]]`: outbound registrations (sipshard registering to upstream carriers, spec §3).
//!
//! Owns: parsing and validating the `[[trunks]]` tables into [`TrunkConfig`]s, with the
//! `SS_SIP_USER_AGENT_*` values of `[sip]` as defaults. Must not: resolve host names, import
//! other sipshard modules.

use std::collections::HashMap;
use std::net::IpAddr;

use super::params::{self, Section, Val, PARAMS};
use super::{find_array_line, ConfigError, Privacy, SipParams};

/// Keys of one `[[trunks]]` table, in the order the docs list them.
pub const TRUNK_KEYS: &[&str] = &[
    "name",
    "registrar",
    "port",
    "outbound_proxy",
    "username",
    "auth_username",
    "password",
    "realm",
    "expire",
    "retry_delay",
    "privacy",
    "contact_user",
];

/// One outbound registration, from a `[[trunks]]` table. Every value has been checked; the
/// optional ones are already filled from their defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkConfig {
    /// Unique name (management, logs, shard choice).
    pub name: String,
    /// Registrar host name or IP address (the Request-URI host and, without an outbound proxy,
    /// where REGISTERs go). Names are resolved by the caller, A/AAAA only (no SRV/NAPTR).
    pub registrar: String,
    /// Registrar signalling port. Default 5060.
    pub port: u16,
    /// Where to send REGISTERs instead of the registrar: `host[:port]` (port default 5060).
    pub outbound_proxy: Option<(String, u16)>,
    /// User part of the AOR (From/To `sip:username@registrar`).
    pub username: String,
    /// Digest username. Default: `username`.
    pub auth_username: String,
    pub password: String,
    /// Only answer challenges for this realm when set (None: any realm).
    pub realm: Option<String>,
    /// Requested expiry: None = Auto Negotiation (request 3600, use what is granted), else
    /// 20..=7200 s. Default: `sip.user_agent_expire`.
    pub expire_s: Option<u32>,
    /// Wait after a failure, 30..=600 s. Default: `sip.user_agent_retry_delay`.
    pub retry_delay_s: u32,
    /// Default: `sip.user_agent_privacy`.
    pub privacy: Privacy,
    /// User part of our Contact. Default: `username`.
    pub contact_user: String,
}

impl TrunkConfig {
    /// A trunk with the given name, registrar and username and every other value at its default
    /// taken from `sip` (for tests and programmatic use).
    pub fn new(name: &str, registrar: &str, username: &str, sip: &SipParams) -> TrunkConfig {
        TrunkConfig {
            name: name.to_string(),
            registrar: registrar.to_string(),
            port: 5060,
            outbound_proxy: None,
            username: username.to_string(),
            auth_username: username.to_string(),
            password: String::new(),
            realm: None,
            expire_s: sip.user_agent_expire_s,
            retry_delay_s: sip.user_agent_retry_delay_s,
            privacy: sip.user_agent_privacy,
            contact_user: username.to_string(),
        }
    }
}

/// Why `host` is not a host name or IP address, if it is not.
pub fn host_problem(host: &str) -> Option<&'static str> {
    if host.is_empty() {
        return Some("is empty");
    }
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if inner.parse::<IpAddr>().is_ok() {
        return None;
    }
    if host.len() > 253 {
        return Some("is too long (at most 253 characters)");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
    };
    if host.trim_end_matches('.').split('.').all(label_ok) {
        None
    } else {
        Some("is not a host name or IP address")
    }
}

/// `host[:port]` or `[v6]:port`.
fn parse_host_port(s: &str) -> Result<(String, u16), &'static str> {
    parse_host_opt_port(s).map(|(h, p)| (h, p.unwrap_or(5060)))
}

/// `host`, `host:port`, `v6`, `[v6]` or `[v6]:port`; a bare IPv6 address comes back bracketed
/// (as it is written in a Via sent-by or a URI host).
pub(super) fn parse_host_opt_port(s: &str) -> Result<(String, Option<u16>), &'static str> {
    let s = s.trim();
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => return Ok((format!("[{s}]"), None)),
        Ok(IpAddr::V4(_)) => return Ok((s.to_string(), None)),
        Err(_) => {}
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').ok_or("unclosed [")?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p),
            None if tail.is_empty() => None,
            None => return Err("is not host[:port]"),
        };
        (format!("[{h}]"), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    if let Some(p) = host_problem(&host) {
        return Err(p);
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err("has a port outside 1..=65535"),
        },
    };
    Ok((host, port))
}

/// Why a user/name value cannot be used in a SIP header, if it cannot.
fn token_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        Some("is empty")
    } else if s.bytes().any(|c| {
        c.is_ascii_control()
            || c == b' '
            || c == b'"'
            || c == b'<'
            || c == b'>'
            || c == b'@'
            || c == b':'
            || c == b';'
    }) {
        Some("contains a space, control character or one of \" < > @ : ;")
    } else {
        None
    }
}

fn sip_param(key: &str) -> &'static params::ParamInfo {
    &PARAMS[params::lookup(Section::Sip, key).expect("a [sip] key")]
}

/// Parse the top-level `trunks` value. `sip` gives the defaults. Problems go to `errors`; the
/// trunks with none are returned.
pub(super) fn parse_trunks(
    text: &str,
    value: &toml::Value,
    sip: &SipParams,
    errors: &mut Vec<ConfigError>,
) -> Vec<TrunkConfig> {
    let key = "trunks".to_string();
    let toml::Value::Array(entries) = value else {
        errors.push(ConfigError {
            key,
            line: find_array_line(text, "trunks", 0, None),
            message: "trunks must be written as [[trunks]] tables".to_string(),
        });
        return Vec::new();
    };
    let mut out = Vec::with_capacity(entries.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let n = i + 1;
        let mut problems: Vec<(Option<String>, String)> = Vec::new();
        let toml::Value::Table(t) = entry else {
            errors.push(ConfigError {
                key: key.clone(),
                line: find_array_line(text, "trunks", i, None),
                message: format!("trunks #{n}: must be a table"),
            });
            continue;
        };
        let mut c = TrunkConfig::new("", "", "", sip);
        let mut auth_username: Option<String> = None;
        let mut contact_user: Option<String> = None;
        for (k, v) in t {
            let mut bad =
                |msg: String| problems.push((Some(k.clone()), format!("{k} = {v} {msg}")));
            let string = |v: &toml::Value| v.as_str().map(str::to_string);
            match k.as_str() {
                "name" | "registrar" | "username" | "auth_username" | "password" | "realm"
                | "contact_user" | "outbound_proxy" => {
                    let Some(s) = string(v) else {
                        bad("is not valid: expected a string".to_string());
                        continue;
                    };
                    let problem = match k.as_str() {
                        "name" => s
                            .bytes()
                            .any(|b| b.is_ascii_control())
                            .then_some("contains a control character")
                            .or_else(|| s.trim().is_empty().then_some("is empty")),
                        "registrar" => host_problem(&s),
                        "username" | "auth_username" | "contact_user" => token_problem(&s),
                        "password" | "realm" => s
                            .bytes()
                            .any(|b| b.is_ascii_control())
                            .then_some("contains a control character"),
                        _ => match parse_host_port(&s) {
                            Ok(hp) => {
                                c.outbound_proxy = Some(hp);
                                None
                            }
                            Err(e) => Some(e),
                        },
                    };
                    if let Some(p) = problem {
                        bad(format!("is not valid: {p}"));
                        continue;
                    }
                    match k.as_str() {
                        "name" => c.name = s,
                        "registrar" => c.registrar = s,
                        "username" => c.username = s,
                        "auth_username" => auth_username = Some(s),
                        "password" => c.password = s,
                        "realm" => c.realm = Some(s),
                        "contact_user" => contact_user = Some(s),
                        _ => {}
                    }
                }
                "port" => match v.as_integer() {
                    Some(p) if (1..=65535).contains(&p) => c.port = p as u16,
                    Some(_) => bad("is out of range: allowed 1..=65535".to_string()),
                    None => bad("is not valid: expected a whole number; allowed 1..=65535".into()),
                },
                "expire" => match params::parse_value(sip_param("user_agent_expire"), v) {
                    Ok(Val::Expire(e)) => c.expire_s = e,
                    Ok(_) => unreachable!(),
                    Err(tail) => bad(tail),
                },
                "retry_delay" => {
                    match params::parse_value(sip_param("user_agent_retry_delay"), v) {
                        Ok(Val::Int(d)) => c.retry_delay_s = d as u32,
                        Ok(_) => unreachable!(),
                        Err(tail) => bad(tail),
                    }
                }
                "privacy" => match params::parse_value(sip_param("user_agent_privacy"), v) {
                    Ok(Val::Choice(p)) => {
                        c.privacy = match p {
                            "id" => Privacy::Id,
                            "none" => Privacy::None,
                            _ => Privacy::Ignore,
                        }
                    }
                    Ok(_) => unreachable!(),
                    Err(tail) => bad(tail),
                },
                _ => problems.push((
                    Some(k.clone()),
                    format!("unknown key `{k}`; known: {}", TRUNK_KEYS.join(", ")),
                )),
            }
        }
        for required in ["name", "registrar", "username"] {
            if !t.contains_key(required) {
                problems.push((None, format!("`{required}` is missing")));
            }
        }
        if t.contains_key("name") && !c.name.is_empty() {
            if let Some(first) = seen.get(&c.name) {
                problems.push((
                    Some("name".to_string()),
                    format!("duplicate name `{}` (first in #{first})", c.name),
                ));
            } else {
                seen.insert(c.name.clone(), n);
            }
        }
        c.auth_username = auth_username.unwrap_or_else(|| c.username.clone());
        c.contact_user = contact_user.unwrap_or_else(|| c.username.clone());
        if problems.is_empty() {
            out.push(c);
            continue;
        }
        let label = if c.name.is_empty() {
            format!("trunks #{n}")
        } else {
            format!("trunks #{n} (`{}`)", c.name.escape_default())
        };
        for (field, message) in problems {
            errors.push(ConfigError {
                key: key.clone(),
                line: find_array_line(text, "trunks", i, field.as_deref()),
                message: format!("{label}: {message}"),
            });
        }
    }
    out
}
