//! `[routing]`, `[[gateways]]`, `[[routes]]`, `[[peers]]`: call routing (spec §4, issue 4).
//!
//! Owns: parsing and validating those tables into [`RoutingConfig`], [`GatewayConfig`],
//! [`RouteConfig`] and [`PeerConfig`], and the cross-checks between them (routes name known
//! gateways, names are unique). Must not: resolve host names (gateway addresses are IP:port
//! literals at this stage), import other sipshard modules.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::{find_array_line, find_line, ConfigError};

/// Keys of `[routing]`.
pub const ROUTING_KEYS: &[&str] = &[
    "no_route_status",
    "failover_statuses",
    "gateway_down_after",
    "gateway_probe_interval",
    "invite_auth",
    "max_call_duration",
];
/// Keys of one `[[gateways]]` table.
pub const GATEWAY_KEYS: &[&str] = &["name", "address", "strip_digits", "prepend", "max_calls"];
/// Keys of one `[[routes]]` table.
pub const ROUTE_KEYS: &[&str] = &["prefix", "gateways"];
/// Keys of one `[[peers]]` table.
pub const PEER_KEYS: &[&str] = &["name", "address", "username", "password"];

/// `[routing]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Status for a call with no route (and not to a registered user): 404 or 403. Default 404.
    pub no_route_status: u16,
    /// Final responses from a gateway that move the call to the next gateway of its route.
    /// Default 408, 500, 502, 503, 504. Each 300..=699.
    pub failover_statuses: Vec<u16>,
    /// Consecutive failed attempts before a gateway is marked down, 1..=1000. Default 5.
    pub gateway_down_after: u32,
    /// Seconds between OPTIONS probes of a down gateway, 1..=3600. Default 30.
    pub gateway_probe_interval_s: u32,
    /// INVITEs from registrar accounts must carry digest credentials (407). Default true.
    pub invite_auth: bool,
    /// Longest an answered call may last, in seconds, 0 = unlimited, 0..=MAX_CALL_DURATION.
    /// Default 7200. When it runs out the proxy sends BYE both ways and ends the call (a call
    /// whose BYE never comes must not hold state forever).
    pub max_call_duration_s: u32,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            no_route_status: 404,
            failover_statuses: vec![408, 500, 502, 503, 504],
            gateway_down_after: 5,
            gateway_probe_interval_s: 30,
            invite_auth: true,
            max_call_duration_s: 7200,
        }
    }
}

/// One `[[gateways]]` entry (VOS3000 "routing gateway").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    pub name: String,
    /// IP:port (host names not supported yet).
    pub address: SocketAddr,
    /// Digits stripped from the front of the called number, 0..=32.
    pub strip_digits: u32,
    /// Digits prepended after stripping.
    pub prepend: String,
    /// Concurrent calls limit, 0 = unlimited.
    pub max_calls: u32,
}

/// One `[[routes]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// Prefix of the called number; "" is the default route.
    pub prefix: String,
    /// Gateway names, tried in order.
    pub gateways: Vec<String>,
}

/// How a `[[peers]]` entry is recognised by its source address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAddress {
    Ip(IpAddr),
    IpPort(SocketAddr),
}

/// One `[[peers]]` entry (VOS3000 "mapping gateway"): a trusted caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    pub name: String,
    pub address: Option<PeerAddress>,
    /// Digest credentials (both or neither).
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Largest `max_call_duration` (seconds): 7 days.
pub const MAX_CALL_DURATION: u32 = 7 * 24 * 3600;
/// Largest `strip_digits`.
pub const MAX_STRIP: u32 = 32;
/// Largest `max_calls`.
pub const MAX_CALLS: u32 = 1_000_000;

fn dialable(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'*' | b'#' | b'+' | b'-' | b'.'))
}

fn err(key: &str, line: Option<usize>, message: String) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        line,
        message,
    }
}

/// `[routing]`.
pub(super) fn parse_routing(
    text: &str,
    value: &toml::Value,
    errors: &mut Vec<ConfigError>,
) -> RoutingConfig {
    let mut r = RoutingConfig::default();
    let toml::Value::Table(t) = value else {
        errors.push(err(
            "routing",
            find_line(text, None, Some("routing")),
            "`routing` must be a section [routing], not a value".into(),
        ));
        return r;
    };
    for (k, v) in t {
        let key = format!("routing.{k}");
        let line = find_line(text, Some("routing"), Some(k));
        let int = v.as_integer();
        match k.as_str() {
            "no_route_status" => match int {
                Some(s @ (403 | 404)) => r.no_route_status = s as u16,
                _ => errors.push(err(
                    &key,
                    line,
                    format!("{key} = {v} is not valid: allowed 404 or 403"),
                )),
            },
            "failover_statuses" => {
                let list = v.as_array().map(|a| {
                    a.iter()
                        .map(|x| x.as_integer().filter(|s| (300..=699).contains(s)))
                        .collect::<Option<Vec<_>>>()
                });
                match list {
                    Some(Some(l)) => {
                        r.failover_statuses = l.into_iter().map(|s| s as u16).collect()
                    }
                    _ => errors.push(err(
                        &key,
                        line,
                        format!(
                            "{key} = {v} is not valid: expected a list of status codes, \
                             each 300..=699"
                        ),
                    )),
                }
            }
            "gateway_down_after" => match int {
                Some(n) if (1..=1000).contains(&n) => r.gateway_down_after = n as u32,
                _ => errors.push(err(
                    &key,
                    line,
                    format!("{key} = {v} is out of range: allowed 1..=1000 attempts"),
                )),
            },
            "gateway_probe_interval" => match int {
                Some(n) if (1..=3600).contains(&n) => r.gateway_probe_interval_s = n as u32,
                _ => errors.push(err(
                    &key,
                    line,
                    format!("{key} = {v} is out of range: allowed 1..=3600 seconds"),
                )),
            },
            "max_call_duration" => match int {
                Some(n) if (0..=i64::from(MAX_CALL_DURATION)).contains(&n) => {
                    r.max_call_duration_s = n as u32
                }
                _ => errors.push(err(
                    &key,
                    line,
                    format!(
                        "{key} = {v} is out of range: allowed 0..={MAX_CALL_DURATION} seconds \
                         (0 = unlimited)"
                    ),
                )),
            },
            "invite_auth" => {
                let b = match v {
                    toml::Value::Boolean(b) => Some(*b),
                    toml::Value::String(s) if s.eq_ignore_ascii_case("on") => Some(true),
                    toml::Value::String(s) if s.eq_ignore_ascii_case("off") => Some(false),
                    _ => None,
                };
                match b {
                    Some(b) => r.invite_auth = b,
                    None => errors.push(err(
                        &key,
                        line,
                        format!("{key} = {v} is not valid: allowed true/false or On/Off"),
                    )),
                }
            }
            _ => errors.push(err(
                &key,
                line,
                format!(
                    "unknown key `{k}` in [routing]; known: {}",
                    ROUTING_KEYS.join(", ")
                ),
            )),
        }
    }
    r
}

/// Walks a `[[name]]` array: calls `one(index, table, problems)` for each table; reports the
/// problems with the entry's label and line.
fn each_entry(
    text: &str,
    array: &str,
    value: &toml::Value,
    errors: &mut Vec<ConfigError>,
    mut one: impl FnMut(&toml::Table, &mut Vec<(Option<String>, String)>) -> Option<String>,
) {
    let toml::Value::Array(entries) = value else {
        errors.push(err(
            array,
            find_line(text, None, Some(array)),
            format!("{array} must be written as [[{array}]] tables"),
        ));
        return;
    };
    for (i, entry) in entries.iter().enumerate() {
        let n = i + 1;
        let toml::Value::Table(t) = entry else {
            errors.push(err(
                array,
                find_array_line(text, array, i, None),
                format!("{array} #{n}: must be a table"),
            ));
            continue;
        };
        let mut problems = Vec::new();
        let label = one(t, &mut problems);
        let label = match label {
            Some(l) => format!("{array} #{n} (`{}`)", l.escape_default()),
            None => format!("{array} #{n}"),
        };
        for (field, message) in problems {
            errors.push(err(
                array,
                find_array_line(text, array, i, field.as_deref()),
                format!("{label}: {message}"),
            ));
        }
    }
}

fn name_problem(s: &str) -> Option<&'static str> {
    if s.trim().is_empty() {
        Some("is empty")
    } else if s.bytes().any(|b| b.is_ascii_control()) {
        Some("contains a control character")
    } else {
        None
    }
}

/// `[[gateways]]`.
pub(super) fn parse_gateways(
    text: &str,
    value: &toml::Value,
    errors: &mut Vec<ConfigError>,
) -> Vec<GatewayConfig> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut n = 0;
    each_entry(text, "gateways", value, errors, |t, problems| {
        n += 1;
        let mut g = GatewayConfig {
            name: String::new(),
            address: SocketAddr::from(([0, 0, 0, 0], 0)),
            strip_digits: 0,
            prepend: String::new(),
            max_calls: 0,
        };
        let before = problems.len();
        for (k, v) in t {
            let mut bad = |m: String| problems.push((Some(k.clone()), format!("{k} = {v} {m}")));
            match k.as_str() {
                "name" => match v.as_str() {
                    Some(s) => match name_problem(s) {
                        None => g.name = s.to_string(),
                        Some(p) => bad(format!("is not valid: {p}")),
                    },
                    None => bad("is not valid: expected a string".into()),
                },
                "address" => match v.as_str().map(str::parse::<SocketAddr>) {
                    Some(Ok(a)) if a.port() != 0 => g.address = a,
                    _ => bad("is not valid: expected IP:port (e.g. \"192.0.2.1:5060\", \
                         \"[2001:db8::1]:5060\"); host names are not supported yet"
                        .into()),
                },
                "strip_digits" => match v.as_integer() {
                    Some(d) if (0..=i64::from(MAX_STRIP)).contains(&d) => g.strip_digits = d as u32,
                    _ => bad(format!("is out of range: allowed 0..={MAX_STRIP} digits")),
                },
                "prepend" => match v.as_str() {
                    Some(s) if s.len() <= 32 && dialable(s) => g.prepend = s.to_string(),
                    _ => bad(
                        "is not valid: expected up to 32 digits (0-9, letters, * # + - .)".into(),
                    ),
                },
                "max_calls" => match v.as_integer() {
                    Some(m) if (0..=i64::from(MAX_CALLS)).contains(&m) => g.max_calls = m as u32,
                    _ => bad(format!(
                        "is out of range: allowed 0..={MAX_CALLS} (0 = unlimited)"
                    )),
                },
                _ => problems.push((
                    Some(k.clone()),
                    format!("unknown key `{k}`; known: {}", GATEWAY_KEYS.join(", ")),
                )),
            }
        }
        for required in ["name", "address"] {
            if !t.contains_key(required) {
                problems.push((None, format!("`{required}` is missing")));
            }
        }
        if !g.name.is_empty() {
            if let Some(first) = seen.get(&g.name) {
                problems.push((
                    Some("name".into()),
                    format!("duplicate name `{}` (first in #{first})", g.name),
                ));
            } else {
                seen.insert(g.name.clone(), n);
            }
        }
        let label = (!g.name.is_empty()).then(|| g.name.clone());
        if problems.len() == before {
            out.push(g);
        }
        label
    });
    out
}

/// `[[routes]]`; `gateways` are the valid gateways (names checked against them).
pub(super) fn parse_routes(
    text: &str,
    value: &toml::Value,
    gateways: &[GatewayConfig],
    errors: &mut Vec<ConfigError>,
) -> Vec<RouteConfig> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut n = 0;
    each_entry(text, "routes", value, errors, |t, problems| {
        n += 1;
        let mut r = RouteConfig {
            prefix: String::new(),
            gateways: Vec::new(),
        };
        let before = problems.len();
        for (k, v) in t {
            let mut bad = |m: String| problems.push((Some(k.clone()), format!("{k} = {v} {m}")));
            match k.as_str() {
                "prefix" => match v.as_str() {
                    Some(s) if s.len() <= 64 && dialable(s) => r.prefix = s.to_string(),
                    _ => bad(
                        "is not valid: expected up to 64 digits (0-9, letters, * # + - .); \
                         \"\" is the default route"
                            .into(),
                    ),
                },
                "gateways" => {
                    let names = v.as_array().and_then(|a| {
                        a.iter()
                            .map(|x| x.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                    });
                    match names {
                        Some(l) if !l.is_empty() => {
                            for name in &l {
                                if !gateways.iter().any(|g| &g.name == name) {
                                    bad(format!(
                                        "names an unknown gateway `{}`: every name must be a \
                                         [[gateways]] name",
                                        name.escape_default()
                                    ));
                                }
                            }
                            r.gateways = l;
                        }
                        _ => bad("is not valid: expected a non-empty list of gateway names".into()),
                    }
                }
                _ => problems.push((
                    Some(k.clone()),
                    format!("unknown key `{k}`; known: {}", ROUTE_KEYS.join(", ")),
                )),
            }
        }
        if !t.contains_key("gateways") {
            problems.push((None, "`gateways` is missing".into()));
        }
        if let Some(first) = seen.get(&r.prefix) {
            problems.push((
                Some("prefix".into()),
                format!("duplicate prefix \"{}\" (first in #{first})", r.prefix),
            ));
        } else {
            seen.insert(r.prefix.clone(), n);
        }
        let label = Some(format!("prefix \"{}\"", r.prefix));
        if problems.len() == before {
            out.push(r);
        }
        label
    });
    out
}

/// `IP` or `IP:port` (IPv6 as `[v6]:port` or bare).
pub fn parse_peer_address(s: &str) -> Option<PeerAddress> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(PeerAddress::Ip(ip));
    }
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 => Some(PeerAddress::IpPort(a)),
        _ => None,
    }
}

/// `[[peers]]`.
pub(super) fn parse_peers(
    text: &str,
    value: &toml::Value,
    errors: &mut Vec<ConfigError>,
) -> Vec<PeerConfig> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut n = 0;
    each_entry(text, "peers", value, errors, |t, problems| {
        n += 1;
        let mut p = PeerConfig {
            name: String::new(),
            address: None,
            username: None,
            password: None,
        };
        let before = problems.len();
        for (k, v) in t {
            let mut bad = |m: String| problems.push((Some(k.clone()), format!("{k} = {v} {m}")));
            let Some(s) = v.as_str() else {
                if PEER_KEYS.contains(&k.as_str()) {
                    bad("is not valid: expected a string".into());
                } else {
                    problems.push((
                        Some(k.clone()),
                        format!("unknown key `{k}`; known: {}", PEER_KEYS.join(", ")),
                    ));
                }
                continue;
            };
            match k.as_str() {
                "name" => match name_problem(s) {
                    None => p.name = s.to_string(),
                    Some(e) => bad(format!("is not valid: {e}")),
                },
                "address" => match parse_peer_address(s) {
                    Some(a) => p.address = Some(a),
                    None => bad("is not valid: expected IP or IP:port".into()),
                },
                "username" | "password" => {
                    let problem = if s.is_empty() {
                        Some("is empty")
                    } else if s.bytes().any(|b| b.is_ascii_control() || b == b'"') {
                        Some("contains a control character or a quote")
                    } else {
                        None
                    };
                    match (problem, k.as_str()) {
                        (Some(e), _) => bad(format!("is not valid: {e}")),
                        (None, "username") => p.username = Some(s.to_string()),
                        (None, _) => p.password = Some(s.to_string()),
                    }
                }
                _ => problems.push((
                    Some(k.clone()),
                    format!("unknown key `{k}`; known: {}", PEER_KEYS.join(", ")),
                )),
            }
        }
        if !t.contains_key("name") {
            problems.push((None, "`name` is missing".into()));
        }
        if t.contains_key("username") != t.contains_key("password") {
            problems.push((
                None,
                "give both `username` and `password`, or neither".into(),
            ));
        }
        if !t.contains_key("address") && !t.contains_key("username") {
            problems.push((
                None,
                "give `address` (IP or IP:port) or `username` and `password`".into(),
            ));
        }
        if !p.name.is_empty() {
            if let Some(first) = seen.get(&p.name) {
                problems.push((
                    Some("name".into()),
                    format!("duplicate name `{}` (first in #{first})", p.name),
                ));
            } else {
                seen.insert(p.name.clone(), n);
            }
        }
        let label = (!p.name.is_empty()).then(|| p.name.clone());
        if problems.len() == before {
            out.push(p);
        }
        label
    });
    out
}
