//! `[admin]`: the management HTTP server's settings (address, bearer token, trend sampling,
//! recent calls kept).
//!
//! Owns: [`AdminConfig`], its defaults, how each key is shown and applied, and the rule that a
//! listener beyond loopback needs a token.
//! Must not: import any other sipshard module, open sockets, start threads or read the clock.

use std::net::SocketAddr;

use super::params::Val;

/// The management HTTP server (API, `/metrics`, web page).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    /// Run it. Default true.
    pub enabled: bool,
    /// TCP address. Default 127.0.0.1:8080 (port 0: any free port, printed at start).
    pub listen: SocketAddr,
    /// Bearer token (empty: none). Required by every mutating call; required by every call when
    /// `listen` is not a loopback address (the config is refused without one).
    pub token: String,
    /// Seconds between two samples of the registration count (the trend keeps >= 24 h).
    pub trend_interval_s: u32,
    /// Most recent CDRs kept in memory for `/api/v1/calls` (0: none). Default 10000.
    pub recent_calls: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: String::new(),
            trend_interval_s: 60,
            recent_calls: 10_000,
        }
    }
}

impl AdminConfig {
    /// Whether every request (not only mutating ones) must carry the token.
    pub fn token_required_for_all(&self) -> bool {
        !self.listen.ip().is_loopback()
    }

    /// The cross-key rule: listening beyond loopback without a token is refused.
    pub fn problem(&self) -> Option<String> {
        (self.enabled && self.token_required_for_all() && self.token.is_empty()).then(|| {
            format!(
                "admin.listen = {} is not a loopback address but admin.token is empty: \
                 set admin.token (a bearer token of at least 16 characters) or listen on \
                 127.0.0.1",
                self.listen
            )
        })
    }

    pub(super) fn value_text(&self, key: &str) -> String {
        match key {
            "enabled" => self.enabled.to_string(),
            "listen" => self.listen.to_string(),
            // Never print the secret itself.
            "token" if self.token.is_empty() => String::new(),
            "token" => "(set)".to_string(),
            "trend_interval" => self.trend_interval_s.to_string(),
            "recent_calls" => self.recent_calls.to_string(),
            _ => unreachable!("parameter admin.{key} has no value_text"),
        }
    }

    pub(super) fn apply(&mut self, key: &str, v: Val) {
        match (key, v) {
            ("enabled", Val::Bool(b)) => self.enabled = b,
            ("listen", Val::Addr(a)) => self.listen = a,
            ("token", Val::Str(s)) => self.token = s,
            // Range checked by parse_value (1..=3600).
            ("trend_interval", Val::Int(n)) => self.trend_interval_s = n as u32,
            // Range checked by parse_value (0..=100000).
            ("recent_calls", Val::Int(n)) => self.recent_calls = n as usize,
            (k, v) => unreachable!("parameter admin.{k} cannot take {v:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{lookup, Config, Section, PARAMS};

    #[test]
    fn defaults_and_values() {
        let c = Config::from_toml_str(
            "[admin]\nenabled = false\nlisten = \"127.0.0.1:0\"\ntoken = \"0123456789abcdef\"\ntrend_interval = 5\nrecent_calls = 0\n",
        )
        .unwrap();
        assert_eq!(c.admin.recent_calls, 0);
        assert_eq!(Config::default().admin.recent_calls, 10_000);
        assert!(!c.admin.enabled);
        assert_eq!(c.admin.listen.port(), 0);
        assert_eq!(c.admin.token, "0123456789abcdef");
        assert_eq!(c.admin.trend_interval_s, 5);
        assert_eq!(Config::default().admin.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn beyond_loopback_needs_a_token() {
        let e = Config::from_toml_str("[admin]\nlisten = \"0.0.0.0:8080\"\n").unwrap_err();
        let m = e.to_string();
        assert!(m.contains("admin.listen = 0.0.0.0:8080"), "{m}");
        assert!(m.contains("admin.token is empty"), "{m}");
        assert_eq!(e.0[0].line, Some(2));
        // With a token, or disabled, it is fine.
        Config::from_toml_str("[admin]\nlisten = \"0.0.0.0:8080\"\ntoken = \"0123456789abcdef\"\n")
            .unwrap();
        Config::from_toml_str("[admin]\nenabled = \"Off\"\nlisten = \"0.0.0.0:8080\"\n").unwrap();
    }

    #[test]
    fn short_or_spaced_tokens_are_refused() {
        for bad in ["short", "has a space in it ok", "tab\tinside-the-token"] {
            let e = Config::from_toml_str(&format!("[admin]\ntoken = \"{bad}\"\n")).unwrap_err();
            assert!(e.to_string().contains("admin.token"), "{e}");
        }
    }

    #[test]
    fn the_token_is_never_printed() {
        let c = Config::from_toml_str("[admin]\ntoken = \"0123456789abcdef\"\n").unwrap();
        let p = &PARAMS[lookup(Section::Admin, "token").unwrap()];
        assert_eq!(c.value_text(p), "(set)");
    }
}
