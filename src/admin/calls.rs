//! Recent calls (`GET /api/v1/calls`): the filters over the CDR ring and the JSON of one call.
//!
//! Owns: [`CallFilter`] (built from the query parameters, matched against a [`CdrRecord`]), the
//! `since` time syntax, and [`call_json`] (every CDR field, attempts included).
//! Must not: hold the ring's lock while filtering or rendering: it works on a
//! [`crate::cdr::recent::Snapshot`] (a copy of the ring's pointers).

use serde_json::{json, Value};

use crate::cdr::csv::{end_reason_name, outcome_text, WallClock};
use crate::cdr::{AttemptOutcome, CdrRecord};

/// Which final statuses a call may have to be listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    /// Exactly this status (`200`).
    Exact(u16),
    /// A class: `4xx` → 400..=499.
    Class(u16),
}

/// The filters of `/api/v1/calls`; every one given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallFilter {
    /// Part of the caller (From user), any case.
    pub caller: Option<String>,
    /// Part of the called number (Request-URI user as received), any case.
    pub callee: Option<String>,
    pub status: Option<StatusFilter>,
    /// End reason as in the CDR file (`caller_hangup`, `all_gateways_failed`, ...), any case.
    pub reason: Option<String>,
    /// One of the call's attempts went to this gateway (its name; `user` for registered users).
    pub gateway: Option<String>,
    /// The call started at or after this Unix time, ms.
    pub since_unix_ms: Option<u64>,
}

impl CallFilter {
    /// The filter from query parameters (`param(name)`); an error names the bad parameter.
    pub fn from_params<'a>(param: impl Fn(&str) -> Option<&'a str>) -> Result<CallFilter, String> {
        let text = |name: &str| {
            param(name)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let status = match text("status") {
            None => None,
            Some(s) => Some(parse_status(&s).ok_or_else(|| {
                format!("status must be a SIP status (200) or a class (4xx), got `{s}`")
            })?),
        };
        let since_unix_ms = match text("since") {
            None => None,
            Some(s) => Some(parse_since(&s).ok_or_else(|| {
                format!(
                    "since must be Unix milliseconds or a UTC time like 2026-11-21T07:00:00Z, \
                     got `{s}`"
                )
            })?),
        };
        Ok(CallFilter {
            caller: text("caller").map(|s| s.to_ascii_lowercase()),
            callee: text("callee").map(|s| s.to_ascii_lowercase()),
            status,
            reason: text("reason").map(|s| s.to_ascii_lowercase()),
            gateway: text("gateway"),
            since_unix_ms,
        })
    }

    pub fn matches(&self, r: &CdrRecord, wall: WallClock) -> bool {
        let contains = |hay: &str, needle: &Option<String>| {
            needle
                .as_ref()
                .map_or(true, |n| hay.to_ascii_lowercase().contains(n.as_str()))
        };
        contains(&r.caller, &self.caller)
            && contains(&r.callee, &self.callee)
            && self.status.map_or(true, |s| match s {
                StatusFilter::Exact(x) => r.final_status == x,
                StatusFilter::Class(c) => r.final_status / 100 == c,
            })
            && self
                .reason
                .as_ref()
                .map_or(true, |x| end_reason_name(r.end_reason) == x)
            && self
                .gateway
                .as_ref()
                .map_or(true, |g| r.attempts.iter().any(|a| &a.target == g))
            && self
                .since_unix_ms
                .map_or(true, |t| wall.unix_ms(r.start) >= t)
    }
}

/// `200` → Exact(200); `4xx` / `4XX` → Class(4).
fn parse_status(s: &str) -> Option<StatusFilter> {
    let b = s.as_bytes();
    if b.len() != 3 || !(b'1'..=b'6').contains(&b[0]) {
        return None;
    }
    if b[1..].eq_ignore_ascii_case(b"xx") {
        return Some(StatusFilter::Class(u16::from(b[0] - b'0')));
    }
    s.parse().ok().map(StatusFilter::Exact)
}

/// Unix milliseconds (`1795222923000`), or a UTC time `YYYY-MM-DDTHH:MM:SS[.mmm]Z` (the form the
/// API writes).
pub fn parse_since(s: &str) -> Option<u64> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix('z'))?;
    let (date, time) = s.split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let mo: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&day) || y < 1970 {
        return None;
    }
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (time, None),
    };
    let mut t = hms.split(':');
    let h: u64 = t.next()?.parse().ok()?;
    let mi: u64 = t.next()?.parse().ok()?;
    let sec: u64 = t.next().unwrap_or("0").parse().ok()?;
    if t.next().is_some() || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let ms: u64 = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 3 && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<u64>().ok()? * 10u64.pow(3 - f.len() as u32)
        }
        Some(_) => return None,
    };
    // Howard Hinnant's days_from_civil.
    let (y, m) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + ms)
}

fn outcome_json(o: AttemptOutcome) -> (String, Option<u16>) {
    let status = match o {
        AttemptOutcome::Rejected(s) => Some(s),
        AttemptOutcome::Answered => Some(200),
        _ => None,
    };
    let text = match o {
        AttemptOutcome::Rejected(_) => "rejected".to_string(),
        other => outcome_text(other).into_owned(),
    };
    (text, status)
}

/// One call as JSON: every CDR column (times as UTC text and as Unix ms) and its attempts.
pub fn call_json(r: &CdrRecord, wall: WallClock) -> Value {
    let attempts: Vec<Value> = r
        .attempts
        .iter()
        .map(|a| {
            let (outcome, status) = outcome_json(a.outcome);
            json!({
                "target": a.target,
                "destination": a.destination.to_string(),
                "called": a.called,
                "started": wall.format(a.started),
                "ended": wall.format(a.ended),
                "duration_ms": a.ended.saturating_sub(a.started),
                "outcome": outcome,
                "status": status,
            })
        })
        .collect();
    json!({
        "call_id": r.call_id,
        "caller": r.caller,
        "callee": r.callee,
        "source": r.source.to_string(),
        "caller_identity": r.caller_identity,
        "start": wall.format(r.start),
        "start_unix_ms": wall.unix_ms(r.start),
        "answer": r.answer.map(|a| wall.format(a)),
        "end": wall.format(r.end),
        "duration_ms": r.duration_ms(),
        "final_status": r.final_status,
        "end_reason": end_reason_name(r.end_reason),
        "gateway": r.attempts.last().map(|a| a.target.as_str()),
        "attempts": attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::{CdrAttempt, EndReason};

    fn rec(caller: &str, callee: &str, status: u16, reason: EndReason, gw: &str) -> CdrRecord {
        CdrRecord {
            call_id: "c1@x".into(),
            caller: caller.into(),
            callee: callee.into(),
            source: "127.0.0.1:5060".parse().unwrap(),
            caller_identity: "peer:uac".into(),
            start: 1_000,
            answer: (status == 200).then_some(1_500),
            end: 4_000,
            attempts: vec![CdrAttempt {
                target: gw.into(),
                destination: "127.0.0.1:5070".parse().unwrap(),
                called: callee.into(),
                started: 1_001,
                ended: 1_500,
                outcome: if status == 200 {
                    AttemptOutcome::Answered
                } else {
                    AttemptOutcome::Rejected(status)
                },
            }],
            final_status: status,
            end_reason: reason,
        }
    }

    fn filter(q: &[(&str, &str)]) -> Result<CallFilter, String> {
        let q: Vec<(String, String)> = q
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        CallFilter::from_params(|n| q.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str()))
    }

    #[test]
    fn filters_match_each_field() {
        let wall = WallClock::new(1_000_000);
        let ok = rec("Alice", "15551234", 200, EndReason::CallerHangup, "gw1");
        let busy = rec("bob", "4420", 486, EndReason::Rejected, "gw2");
        let m = |q: &[(&str, &str)]| {
            let f = filter(q).unwrap();
            (f.matches(&ok, wall), f.matches(&busy, wall))
        };
        assert_eq!(m(&[]), (true, true));
        assert_eq!(m(&[("caller", "ali")]), (true, false));
        assert_eq!(m(&[("callee", "442")]), (false, true));
        assert_eq!(m(&[("status", "200")]), (true, false));
        assert_eq!(m(&[("status", "4xx")]), (false, true));
        assert_eq!(m(&[("reason", "Caller_Hangup")]), (true, false));
        assert_eq!(m(&[("gateway", "gw2")]), (false, true));
        assert_eq!(m(&[("since", "1001000")]), (true, true));
        assert_eq!(m(&[("since", "1001001")]), (false, false));
        assert_eq!(m(&[("status", "200"), ("caller", "bob")]), (false, false));
        for bad in [("status", "2x"), ("status", "abc"), ("since", "yesterday")] {
            assert!(filter(&[bad]).unwrap_err().contains(bad.0), "{bad:?}");
        }
    }

    #[test]
    fn since_takes_unix_ms_and_utc_text() {
        assert_eq!(parse_since("1795222923000"), Some(1_795_222_923_000));
        assert_eq!(parse_since("2026-11-21T01:02:03Z"), Some(1_795_222_923_000));
        assert_eq!(
            parse_since("2026-11-21T01:02:03.45Z"),
            Some(1_795_222_923_450)
        );
        assert_eq!(parse_since("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(parse_since("1970-01-01T00:00:00.000Z"), Some(0));
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-11-21T25:00:00Z",
            "2026-11-21T01:02:03",
            "2026-11-21",
            "x",
        ] {
            assert_eq!(parse_since(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_call_as_json() {
        let wall = WallClock::new(1_795_222_923_000);
        let v = call_json(&rec("alice", "1555", 486, EndReason::Rejected, "gw1"), wall);
        assert_eq!(v["start"], "2026-11-21T01:02:04.000Z");
        assert_eq!(v["start_unix_ms"], 1_795_222_924_000u64);
        assert_eq!(v["answer"], Value::Null);
        assert_eq!(v["final_status"], 486);
        assert_eq!(v["end_reason"], "rejected");
        assert_eq!(v["gateway"], "gw1");
        assert_eq!(v["attempts"][0]["outcome"], "rejected");
        assert_eq!(v["attempts"][0]["status"], 486);
        assert_eq!(v["attempts"][0]["destination"], "127.0.0.1:5070");
        assert_eq!(v["duration_ms"], 0);
    }
}
