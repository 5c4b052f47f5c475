//! The rules of `[registrar]` that are more than a range: allowed-source syntax, auth modes,
//! account checks and the `[[registrar.accounts]]` entries.
//!
//! Owns: the syntax of `IP`, `IP:PORT`, `IP/PREFIX`, the account rules shared by the config file
//! and the accounts CSV (the registrar's loader calls these functions, so both agree).
//! Must not: import any other sipshard module, read files, open sockets, start threads or read
//! the clock.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{find_account_line, AccountConfig, AuthMode, ConfigError};

/// One parsed allowed source of an account (or one trusted source).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AllowedSource {
    /// Any port of this address.
    Ip(IpAddr),
    /// This address and port.
    IpPort(SocketAddr),
    /// A network: address with the host bits cleared, and the prefix length.
    Net(IpAddr, u8),
}

impl fmt::Display for AllowedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowedSource::Ip(ip) => write!(f, "{ip}"),
            AllowedSource::IpPort(sa) => write!(f, "{sa}"),
            AllowedSource::Net(ip, len) => write!(f, "{ip}/{len}"),
        }
    }
}

/// `ip` with every bit after the first `prefix` cleared (`prefix` is at most 32 or 128).
pub fn mask_ip(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// Parse `IP`, `IP:PORT` (IPv6 as `[ADDR]:PORT`) or `IP/PREFIX`. IPv4-mapped IPv6 addresses
/// (`::ffff:1.2.3.4`) become IPv4; host bits of a network are cleared (`10.1.2.3/8` is
/// `10.0.0.0/8`). The error is a whole sentence naming the text.
pub fn parse_allowed(text: &str) -> Result<AllowedSource, String> {
    let t = text.trim();
    let bad = || format!("`{t}` is not an IP, IP:PORT ([IPv6]:PORT) or IP/PREFIX");
    if let Some((ip, len)) = t.split_once('/') {
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len: u8 = match len.parse::<u8>() {
            Ok(n) if n <= max && !len.starts_with('+') => n,
            _ => return Err(format!("`{t}`: the prefix length must be 0..={max}")),
        };
        return Ok(AllowedSource::Net(mask_ip(ip, len), len));
    }
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok(AllowedSource::Ip(ip.to_canonical()));
    }
    match t.parse::<SocketAddr>() {
        Ok(sa) if sa.port() == 0 => Err(format!("`{t}`: port 0 is not a source port")),
        Ok(sa) => Ok(AllowedSource::IpPort(SocketAddr::new(
            sa.ip().to_canonical(),
            sa.port(),
        ))),
        Err(_) => Err(bad()),
    }
}

/// `digest`, `ip` or `ip_port`, any case (also `ip-port` and `ipport`).
pub fn parse_auth_mode(text: &str) -> Option<AuthMode> {
    match text.trim().to_ascii_lowercase().as_str() {
        "digest" => Some(AuthMode::Digest),
        "ip" => Some(AuthMode::Ip),
        "ip_port" | "ip-port" | "ipport" => Some(AuthMode::IpPort),
        _ => None,
    }
}

/// The mode as written in files: `digest`, `ip`, `ip_port`.
pub fn auth_mode_name(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::Digest => "digest",
        AuthMode::Ip => "ip",
        AuthMode::IpPort => "ip_port",
    }
}

/// Why `user` cannot be a SIP user name: empty, whitespace or control characters, or one of
/// `@ : " ,` (which would break the AOR, the digest header or the CSV).
pub fn user_problem(user: &str) -> Option<String> {
    if user.is_empty() {
        return Some("the user is empty".to_string());
    }
    if let Some(c) = user
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || matches!(c, '@' | ':' | '"' | ','))
    {
        return Some(format!("user `{}` contains {c:?}", user.escape_default()));
    }
    None
}

/// Why `password` cannot be used: control characters (a stray CR or tab is a mistake).
pub fn password_problem(password: &str) -> Option<String> {
    password
        .chars()
        .any(|c| c.is_control())
        .then(|| "the password contains a control character".to_string())
}

/// The mode rules: digest needs a password; ip needs at least one `IP` or `IP/PREFIX` (no
/// ports); ip_port needs at least one entry and every entry `IP:PORT`. The error names the field
/// (`password` or `allowed`) and says why.
pub fn mode_problem(
    mode: AuthMode,
    password: &str,
    allowed: &[AllowedSource],
) -> Option<(&'static str, String)> {
    match mode {
        AuthMode::Digest if password.is_empty() => Some((
            "password",
            "auth_mode digest needs a non-empty password".to_string(),
        )),
        AuthMode::Digest => None,
        AuthMode::Ip => {
            if allowed.is_empty() {
                return Some((
                    "allowed",
                    "auth_mode ip needs at least one allowed IP or IP/PREFIX".to_string(),
                ));
            }
            allowed.iter().find_map(|a| match a {
                AllowedSource::IpPort(_) => Some((
                    "allowed",
                    format!(
                        "`{a}` has a port, but auth_mode ip matches the source IP only: \
                         drop the port or use auth_mode ip_port"
                    ),
                )),
                _ => None,
            })
        }
        AuthMode::IpPort => {
            if allowed.is_empty() {
                return Some((
                    "allowed",
                    "auth_mode ip_port needs at least one allowed IP:PORT".to_string(),
                ));
            }
            allowed.iter().find_map(|a| match a {
                AllowedSource::IpPort(_) => None,
                _ => Some((
                    "allowed",
                    format!("`{a}` has no port; auth_mode ip_port needs IP:PORT entries"),
                )),
            })
        }
    }
}

/// Check one account from code or the config file: user, password, every allowed entry and the
/// mode rules. Returns the field and the message of the first problem.
pub fn account_problem(a: &AccountConfig) -> Option<(&'static str, String)> {
    if let Some(p) = user_problem(&a.user) {
        return Some(("user", p));
    }
    if let Some(p) = password_problem(&a.password) {
        return Some(("password", p));
    }
    let mut parsed = Vec::with_capacity(a.allowed.len());
    for s in &a.allowed {
        match parse_allowed(s) {
            Ok(p) => parsed.push(p),
            Err(e) => return Some(("allowed", e)),
        }
    }
    mode_problem(a.auth_mode, &a.password, &parsed)
}

/// Parse the value of `registrar.accounts` (an array of tables). Errors are pushed to `errors`.
pub(super) fn parse_accounts(
    text: &str,
    value: &toml::Value,
    errors: &mut Vec<ConfigError>,
) -> Vec<AccountConfig> {
    let key = "registrar.accounts".to_string();
    let toml::Value::Array(entries) = value else {
        errors.push(ConfigError {
            key,
            line: find_account_line(text, 0, None),
            message: "registrar.accounts must be written as [[registrar.accounts]] tables"
                .to_string(),
        });
        return Vec::new();
    };
    let mut out: Vec<AccountConfig> = Vec::with_capacity(entries.len());
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    for (i, entry) in entries.iter().enumerate() {
        let n = i + 1;
        let mut err = |field: Option<&str>, message: String| {
            errors.push(ConfigError {
                key: key.clone(),
                line: find_account_line(text, i, field),
                message: format!("registrar.accounts #{n}: {message}"),
            })
        };
        let toml::Value::Table(t) = entry else {
            err(None, "must be a table".to_string());
            continue;
        };
        let mut a = AccountConfig {
            user: String::new(),
            password: String::new(),
            auth_mode: AuthMode::Digest,
            allowed: Vec::new(),
        };
        let mut ok = true;
        for (k, v) in t {
            match (k.as_str(), v) {
                ("user", toml::Value::String(s)) => a.user = s.clone(),
                ("password", toml::Value::String(s)) => a.password = s.clone(),
                ("auth_mode", toml::Value::String(s)) => match parse_auth_mode(s) {
                    Some(m) => a.auth_mode = m,
                    None => {
                        ok = false;
                        err(
                            Some(k),
                            format!("auth_mode = {v} is not valid: allowed digest|ip|ip_port"),
                        )
                    }
                },
                ("allowed", toml::Value::Array(items)) => {
                    for item in items {
                        match item {
                            toml::Value::String(s) => a.allowed.push(s.trim().to_string()),
                            _ => {
                                ok = false;
                                err(
                                    Some(k),
                                    format!(
                                        "allowed = {v} is not valid: expected an array of strings"
                                    ),
                                )
                            }
                        }
                    }
                }
                ("user" | "password" | "auth_mode", _) => {
                    ok = false;
                    err(
                        Some(k),
                        format!("{k} = {v} is not valid: expected a string"),
                    );
                }
                ("allowed", _) => {
                    ok = false;
                    err(
                        Some(k),
                        format!("allowed = {v} is not valid: expected an array of strings like [\"10.0.0.0/8\", \"192.0.2.7:5060\"]"),
                    );
                }
                _ => {
                    ok = false;
                    err(
                        Some(k),
                        format!("unknown key `{k}`; known: user, password, auth_mode, allowed"),
                    );
                }
            }
        }
        if !t.contains_key("user") {
            err(None, "`user` is missing".to_string());
            continue;
        }
        if let Some(first) = seen.get(&a.user) {
            err(
                Some("user"),
                format!("duplicate user `{}` (first in #{first})", a.user),
            );
            continue;
        }
        seen.insert(a.user.clone(), n);
        if !ok {
            continue;
        }
        if let Some((field, message)) = account_problem(&a) {
            err(
                Some(field),
                format!("(user `{}`) {field}: {message}", a.user.escape_default()),
            );
            continue;
        }
        out.push(a);
    }
    out
}
