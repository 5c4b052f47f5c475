//! `[cdr]`: where and how the CDR writer writes call detail records.
//!
//! Owns: parsing and validating the `[cdr]` table into a [`CdrConfig`] (with the same message
//! style as the parameter table: key, value, allowed range). Must not: open the file, import other
//! sipshard modules.

use super::{find_line, ConfigError};

/// Keys of `[cdr]`, in the order the docs list them.
pub const CDR_KEYS: &[&str] = &[
    "enabled",
    "path",
    "rotate_bytes",
    "rotate_seconds",
    "queue_capacity",
];

/// Smallest non-zero `rotate_bytes`.
pub const CDR_ROTATE_BYTES_MIN: u64 = 1024;
/// Largest `rotate_bytes` (1 TiB).
pub const CDR_ROTATE_BYTES_MAX: u64 = 1 << 40;
/// Largest `rotate_seconds` (366 days).
pub const CDR_ROTATE_SECONDS_MAX: u64 = 366 * 86_400;
pub const CDR_QUEUE_MIN: u64 = 16;
pub const CDR_QUEUE_MAX: u64 = 16 * 1024 * 1024;

/// `[cdr]`: the CDR writer (one CSV row per call; format in docs/operations.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdrConfig {
    /// Write CDRs. Default On.
    pub enabled: bool,
    /// The file being written; rotated files go next to it. Relative paths are relative to the
    /// server's working directory. Default `cdr/sipshard-cdr.csv`.
    pub path: String,
    /// Rotate when the file reaches this size, bytes: 0 (off) or 1024..=2^40. Default 100 MiB.
    pub rotate_bytes: u64,
    /// Rotate a file with rows when it is this old, seconds: 0 (off) or 1..=31622400.
    /// Default 86400 (a day).
    pub rotate_seconds: u64,
    /// Records queued between the shards and the writer; when full, shards drop (and count)
    /// new records rather than wait. 16..=16777216. Default 65536.
    pub queue_capacity: usize,
}

impl Default for CdrConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "cdr/sipshard-cdr.csv".to_string(),
            rotate_bytes: 100 * 1024 * 1024,
            rotate_seconds: 86_400,
            queue_capacity: 65_536,
        }
    }
}

fn whole(v: &toml::Value) -> Option<i128> {
    match v {
        toml::Value::Integer(i) => Some(*i as i128),
        toml::Value::String(s) => s.trim().parse::<i128>().ok(),
        _ => None,
    }
}

/// Parses the `[cdr]` table; problems go to `errors` (the defaults stay for those keys).
pub(super) fn parse_cdr(
    text: &str,
    value: &toml::Value,
    errors: &mut Vec<ConfigError>,
) -> CdrConfig {
    let mut c = CdrConfig::default();
    let toml::Value::Table(t) = value else {
        errors.push(ConfigError {
            key: "cdr".to_string(),
            line: find_line(text, None, Some("cdr")),
            message: "`cdr` must be a section [cdr], not a value".to_string(),
        });
        return c;
    };
    for (k, v) in t {
        let line = find_line(text, Some("cdr"), Some(k));
        let mut bad = |allowed: String, what: &str| {
            errors.push(ConfigError {
                key: format!("cdr.{k}"),
                line,
                message: format!("cdr.{k} = {v} {what}: allowed {allowed}"),
            })
        };
        // A whole number in `min..=max`, or 0 when `off` is allowed.
        let mut int = |min: u64, max: u64, off: bool, unit: &str| -> Option<u64> {
            let allowed = if off {
                format!("0 (off) or {min}..={max} {unit}")
            } else {
                format!("{min}..={max} {unit}")
            };
            let allowed = allowed.trim_end().to_string();
            match whole(v) {
                None => {
                    bad(allowed, "is not valid: expected a whole number");
                    None
                }
                Some(n) if (off && n == 0) || (min as i128..=max as i128).contains(&n) => {
                    Some(n as u64)
                }
                Some(_) => {
                    bad(allowed, "is out of range");
                    None
                }
            }
        };
        match k.as_str() {
            "enabled" => match v {
                toml::Value::Boolean(b) => c.enabled = *b,
                toml::Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                    "on" | "true" => c.enabled = true,
                    "off" | "false" => c.enabled = false,
                    _ => bad("On/Off (or true/false)".into(), "is not valid"),
                },
                _ => bad("On/Off (or true/false)".into(), "is not valid"),
            },
            "path" => match v.as_str() {
                Some(s) if !s.trim().is_empty() && !s.bytes().any(|b| b.is_ascii_control()) => {
                    c.path = s.to_string()
                }
                _ => bad(
                    "a non-empty file path without control characters".into(),
                    "is not valid",
                ),
            },
            "rotate_bytes" => {
                if let Some(n) = int(CDR_ROTATE_BYTES_MIN, CDR_ROTATE_BYTES_MAX, true, "bytes") {
                    c.rotate_bytes = n;
                }
            }
            "rotate_seconds" => {
                if let Some(n) = int(1, CDR_ROTATE_SECONDS_MAX, true, "seconds") {
                    c.rotate_seconds = n;
                }
            }
            "queue_capacity" => {
                if let Some(n) = int(CDR_QUEUE_MIN, CDR_QUEUE_MAX, false, "records") {
                    c.queue_capacity = n as usize;
                }
            }
            other => errors.push(ConfigError {
                key: format!("cdr.{other}"),
                line,
                message: format!(
                    "unknown key `{other}` in [cdr]; known keys: {}",
                    CDR_KEYS.join(", ")
                ),
            }),
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        match Config::from_toml_str(text) {
            Ok(c) => panic!("expected errors for {text:?}, got {:?}", c.cdr),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn defaults_and_a_full_section() {
        assert_eq!(Config::from_toml_str("").unwrap().cdr, CdrConfig::default());
        let c = Config::from_toml_str(
            "[cdr]\nenabled = \"Off\"\npath = \"/var/log/sipshard/cdr.csv\"\nrotate_bytes = 0\n\
             rotate_seconds = \"3600\"\nqueue_capacity = 16\n",
        )
        .unwrap()
        .cdr;
        assert_eq!(
            c,
            CdrConfig {
                enabled: false,
                path: "/var/log/sipshard/cdr.csv".into(),
                rotate_bytes: 0,
                rotate_seconds: 3600,
                queue_capacity: 16,
            }
        );
    }

    #[test]
    fn range_errors_name_the_key_value_and_range() {
        assert_eq!(
            errs("[cdr]\nrotate_bytes = 1023\n"),
            vec!["line 2: cdr.rotate_bytes = 1023 is out of range: allowed 0 (off) or 1024..=1099511627776 bytes"]
        );
        assert_eq!(
            errs("[cdr]\nqueue_capacity = 0\n"),
            vec!["line 2: cdr.queue_capacity = 0 is out of range: allowed 16..=16777216 records"]
        );
        assert_eq!(
            errs("[cdr]\nrotate_seconds = 31622401\n"),
            vec!["line 2: cdr.rotate_seconds = 31622401 is out of range: allowed 0 (off) or 1..=31622400 seconds"]
        );
        assert_eq!(
            errs("[cdr]\nrotate_seconds = -1\n"),
            vec!["line 2: cdr.rotate_seconds = -1 is out of range: allowed 0 (off) or 1..=31622400 seconds"]
        );
        assert_eq!(
            errs("[cdr]\nrotate_bytes = 1.5\n"),
            vec!["line 2: cdr.rotate_bytes = 1.5 is not valid: expected a whole number: allowed 0 (off) or 1024..=1099511627776 bytes"]
        );
        let e = errs("[cdr]\npath = \"\"\nenabled = \"maybe\"\nrotate = 5\n");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains("cdr.path = \"\" is not valid"), "{e:?}");
        assert!(
            e[1].contains("cdr.enabled = \"maybe\" is not valid"),
            "{e:?}"
        );
        assert!(e[2].contains("unknown key `rotate` in [cdr]"), "{e:?}");
        assert!(errs("cdr = 1\n")[0].contains("must be a section [cdr]"));
    }
}
