//! The CDR file format: one CSV row per call (RFC 4180), documented in docs/operations.md.
//!
//! Owns: the column list ([`HEADER`]), turning a [`CdrRecord`] into one row ([`write_row`]), the
//! encoding of the attempts column, the wall-clock conversion of the shards' monotonic `Millis`
//! ([`WallClock`]) and a small reader for the format ([`parse_csv`], for tests and tools).
//! Must not: read a clock or touch files: the writer thread (`cdr::writer`) passes the wall time of
//! the shards' `Millis` epoch in and does the I/O.

use std::fmt::Write as _;

use super::{AttemptOutcome, CdrAttempt, CdrRecord, EndReason};
use crate::timer::Millis;

/// The first line of every CDR file (without the line end).
pub const HEADER: &str = "call_id,caller,callee,source,caller_identity,start,answer,end,\
duration_ms,final_status,end_reason,attempts";

/// Number of columns of a row.
pub const COLUMNS: usize = 12;

/// The wall-clock time of the shards' `Millis` 0, as milliseconds since the Unix epoch (UTC).
/// `Millis` `m` happened at `epoch_unix_ms + m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    pub epoch_unix_ms: u64,
}

impl WallClock {
    pub fn new(epoch_unix_ms: u64) -> Self {
        Self { epoch_unix_ms }
    }

    /// Milliseconds since the Unix epoch of the shard time `at`.
    pub fn unix_ms(&self, at: Millis) -> u64 {
        self.epoch_unix_ms.saturating_add(at)
    }

    /// `at` as an ISO 8601 UTC time with milliseconds: `2026-11-21T06:59:30.123Z`.
    pub fn format(&self, at: Millis) -> String {
        let mut s = String::with_capacity(24);
        push_utc(&mut s, self.unix_ms(at));
        s
    }
}

/// Appends `unix_ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (proleptic Gregorian, UTC).
pub fn push_utc(out: &mut String, unix_ms: u64) {
    let (y, mo, d, h, mi, s) = civil(unix_ms / 1000);
    let _ = write!(
        out,
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        unix_ms % 1000
    );
}

/// Appends `unix_s` as `YYYYMMDDTHHMMSSZ` (for file names).
pub fn push_utc_compact(out: &mut String, unix_s: u64) {
    let (y, mo, d, h, mi, s) = civil(unix_s);
    let _ = write!(out, "{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z");
}

/// (year, month, day, hour, minute, second) of a Unix time in seconds, UTC.
fn civil(unix_s: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = unix_s / 86_400;
    let rem = unix_s % 86_400;
    // Howard Hinnant's civil_from_days, for days >= 0 (1970-01-01 on).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The end reason as written in the `end_reason` column.
pub fn end_reason_name(r: EndReason) -> &'static str {
    match r {
        EndReason::CallerHangup => "caller_hangup",
        EndReason::CalleeHangup => "callee_hangup",
        EndReason::CallerCancel => "caller_cancel",
        EndReason::NoAnswer => "no_answer",
        EndReason::Rejected => "rejected",
        EndReason::NoRoute => "no_route",
        EndReason::Forbidden => "forbidden",
        EndReason::AllGatewaysFailed => "all_gateways_failed",
        EndReason::NotRegistered => "not_registered",
        EndReason::Shutdown => "shutdown",
        EndReason::MaxDuration => "max_duration",
    }
}

/// An attempt's outcome as written in the attempts column: the status for a rejection (`503`),
/// else a word.
pub fn outcome_text(o: AttemptOutcome) -> std::borrow::Cow<'static, str> {
    match o {
        AttemptOutcome::Answered => "answered".into(),
        AttemptOutcome::Rejected(status) => status.to_string().into(),
        AttemptOutcome::NoResponse => "no_response".into(),
        AttemptOutcome::TryingTimeout => "trying_timeout".into(),
        AttemptOutcome::RingingTimeout => "ringing_timeout".into(),
        AttemptOutcome::CancelledByCaller => "caller_cancel".into(),
        AttemptOutcome::CancelledByFork => "fork_cancel".into(),
        AttemptOutcome::Shutdown => "shutdown".into(),
    }
}

/// Appends `s` as one CSV field: as is when it holds none of `,` `"` CR LF and does not start or
/// end with a space; else in double quotes with every `"` doubled (RFC 4180).
pub fn push_field(out: &mut String, s: &str) {
    let needs = s.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
        || s.starts_with(' ')
        || s.ends_with(' ');
    if !needs {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

/// Appends `s` with `%`, `:`, `|` and control characters percent-encoded (`%25`, `%3A`, `%7C`,
/// `%0D`...), so they cannot be mistaken for the attempts column's separators.
fn push_sub(out: &mut String, s: &str) {
    for c in s.chars() {
        if matches!(c, '%' | ':' | '|') || c.is_ascii_control() {
            let _ = write!(out, "%{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
}

/// The attempts column (before CSV quoting): attempts in order, separated by `|`, each
/// `target:destination:outcome:called:started_ms:ended_ms`, where the times are milliseconds
/// after the call's start. `target` and `called` are percent-encoded (see [`push_sub`]); the
/// destination is `IP:PORT` or `[IPv6]:PORT`, so a reader takes the first field up to the first
/// `:` and the last four from the right.
pub fn attempts_text(start: Millis, attempts: &[CdrAttempt]) -> String {
    let mut out = String::new();
    for (i, a) in attempts.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        push_sub(&mut out, &a.target);
        let _ = write!(out, ":{}:{}:", a.destination, outcome_text(a.outcome));
        push_sub(&mut out, &a.called);
        let _ = write!(
            out,
            ":{}:{}",
            a.started.saturating_sub(start),
            a.ended.saturating_sub(start)
        );
    }
    out
}

/// Appends one row (with its `\n`) for `r`, times converted with `wall`.
pub fn write_row(out: &mut String, r: &CdrRecord, wall: &WallClock) {
    push_field(out, &r.call_id);
    out.push(',');
    push_field(out, &r.caller);
    out.push(',');
    push_field(out, &r.callee);
    out.push(',');
    let _ = write!(out, "{}", r.source);
    out.push(',');
    push_field(out, &r.caller_identity);
    out.push(',');
    push_utc(out, wall.unix_ms(r.start));
    out.push(',');
    if let Some(a) = r.answer {
        push_utc(out, wall.unix_ms(a));
    }
    out.push(',');
    push_utc(out, wall.unix_ms(r.end));
    let _ = write!(
        out,
        ",{},{},{},",
        r.duration_ms(),
        r.final_status,
        end_reason_name(r.end_reason)
    );
    push_field(out, &attempts_text(r.start, &r.attempts));
    out.push('\n');
}

/// Reads CSV text (RFC 4180: quoted fields may hold `,`, `""` and line ends) into rows of fields.
/// A final line end is optional; empty lines are skipped. Lenient: a stray quote inside an
/// unquoted field is kept as text.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut in_quotes = false;
    let mut row_has_content = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => {
                in_quotes = true;
                row_has_content = true;
            }
            ',' => {
                row.push(std::mem::take(&mut field));
                row_has_content = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                if row_has_content || !field.is_empty() {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                row_has_content = false;
            }
            _ => {
                field.push(c);
                row_has_content = true;
            }
        }
    }
    if row_has_content || !field.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::{AttemptOutcome, CdrAttempt};

    fn record() -> CdrRecord {
        CdrRecord {
            call_id: "abc@10.0.0.1".into(),
            caller: "1001".into(),
            callee: "5551234".into(),
            source: "127.0.0.1:5061".parse().unwrap(),
            caller_identity: "peer:loadgen".into(),
            start: 1_000,
            answer: Some(11_200),
            end: 71_200,
            attempts: vec![
                CdrAttempt {
                    target: "gw1".into(),
                    destination: "127.0.0.1:5080".parse().unwrap(),
                    called: "5551234".into(),
                    started: 1_000,
                    ended: 11_000,
                    outcome: AttemptOutcome::NoResponse,
                },
                CdrAttempt {
                    target: "gw2".into(),
                    destination: "[::1]:5090".parse().unwrap(),
                    called: "0015551234".into(),
                    started: 11_000,
                    ended: 11_200,
                    outcome: AttemptOutcome::Answered,
                },
            ],
            final_status: 200,
            end_reason: EndReason::CallerHangup,
        }
    }

    #[test]
    fn utc_formatting_of_known_instants() {
        let f = |ms| {
            let mut s = String::new();
            push_utc(&mut s, ms);
            s
        };
        assert_eq!(f(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (leap day of a century leap year) 12:34:56.789
        assert_eq!(f(951_827_696_789), "2000-02-29T12:34:56.789Z");
        // 2024-12-31 23:59:59.999 and the next millisecond
        assert_eq!(f(1_735_689_599_999), "2024-12-31T23:59:59.999Z");
        assert_eq!(f(1_735_689_600_000), "2025-01-01T00:00:00.000Z");
        // 2100-03-01: 2100 is not a leap year
        assert_eq!(f(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        let mut c = String::new();
        push_utc_compact(&mut c, 1_735_689_599);
        assert_eq!(c, "20241231T235959Z");
    }

    #[test]
    fn wall_clock_adds_the_epoch_to_shard_millis() {
        // Shard Millis 0 happened at 2026-11-21T06:59:30.000Z.
        let w = WallClock::new(1_795_244_370_000);
        assert_eq!(w.unix_ms(0), 1_795_244_370_000);
        assert_eq!(w.unix_ms(1_234), 1_795_244_371_234);
        assert_eq!(w.format(0), "2026-11-21T06:59:30.000Z");
        assert_eq!(w.format(90_061_001), "2026-11-22T08:00:31.001Z");
        assert_eq!(WallClock::new(u64::MAX).unix_ms(5), u64::MAX);
    }

    #[test]
    fn a_full_row() {
        let mut s = String::new();
        write_row(&mut s, &record(), &WallClock::new(1_795_244_370_000));
        assert_eq!(
            s,
            "abc@10.0.0.1,1001,5551234,127.0.0.1:5061,peer:loadgen,\
             2026-11-21T06:59:31.000Z,2026-11-21T06:59:41.200Z,2026-11-21T07:00:41.200Z,\
             60000,200,caller_hangup,\
             gw1:127.0.0.1:5080:no_response:5551234:0:10000|gw2:[::1]:5090:answered:0015551234:10000:10200\n"
        );
        let rows = parse_csv(&s);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].len(), COLUMNS);
        assert_eq!(parse_csv(HEADER)[0].len(), COLUMNS);
    }

    #[test]
    fn unanswered_call_has_an_empty_answer_and_zero_duration() {
        let mut r = record();
        r.answer = None;
        r.final_status = 503;
        r.end_reason = EndReason::AllGatewaysFailed;
        r.attempts.truncate(1);
        r.attempts[0].outcome = AttemptOutcome::Rejected(503);
        let mut s = String::new();
        write_row(&mut s, &r, &WallClock::new(0));
        let row = &parse_csv(&s)[0];
        assert_eq!(row[6], "");
        assert_eq!(row[8], "0");
        assert_eq!(row[9], "503");
        assert_eq!(row[10], "all_gateways_failed");
        assert_eq!(row[11], "gw1:127.0.0.1:5080:503:5551234:0:10000");
        r.attempts.clear();
        s.clear();
        write_row(&mut s, &r, &WallClock::new(0));
        assert_eq!(parse_csv(&s)[0][11], "");
    }

    #[test]
    fn commas_quotes_and_line_ends_are_quoted_and_read_back() {
        let mut r = record();
        r.call_id = "a,b\"c\"".into();
        r.caller = "\"Alice, Esq.\" <sip:a@x>".into();
        r.callee = "line\r\nbreak".into();
        r.caller_identity = " padded ".into();
        let mut s = String::new();
        write_row(&mut s, &r, &WallClock::new(0));
        assert!(
            s.starts_with("\"a,b\"\"c\"\"\",\"\"\"Alice, Esq.\"\" <sip:a@x>\",\"line\r\nbreak\",")
        );
        let rows = parse_csv(&s);
        assert_eq!(rows.len(), 1, "{s:?}");
        assert_eq!(rows[0][0], r.call_id);
        assert_eq!(rows[0][1], r.caller);
        assert_eq!(rows[0][2], r.callee);
        assert_eq!(rows[0][4], r.caller_identity);
        assert_eq!(rows[0].len(), COLUMNS);
    }

    #[test]
    fn attempt_separators_inside_values_are_percent_encoded() {
        let mut r = record();
        r.attempts.truncate(1);
        r.attempts[0].target = "gw:1|x%".into();
        r.attempts[0].called = "55,5|1:2\n".into();
        let text = attempts_text(r.start, &r.attempts);
        assert_eq!(
            text,
            "gw%3A1%7Cx%25:127.0.0.1:5080:no_response:55,5%7C1%3A2%0A:0:10000"
        );
        // The comma makes the CSV field quoted, and it reads back intact.
        let mut s = String::new();
        write_row(&mut s, &r, &WallClock::new(0));
        assert_eq!(parse_csv(&s)[0][11], text);
        // A reader splits on `|`, then takes the target up to the first `:` and four fields
        // from the right: the destination is what is left, also for IPv6.
        let mut v6 = record();
        v6.attempts.remove(0);
        let t = attempts_text(v6.start, &v6.attempts);
        let mut right = t.rsplitn(5, ':');
        let (end, start, called, outcome) = (
            right.next().unwrap(),
            right.next().unwrap(),
            right.next().unwrap(),
            right.next().unwrap(),
        );
        let (target, dest) = right.next().unwrap().split_once(':').unwrap();
        assert_eq!(
            (target, dest, outcome, called, start, end),
            (
                "gw2",
                "[::1]:5090",
                "answered",
                "0015551234",
                "10000",
                "10200"
            )
        );
    }

    #[test]
    fn every_outcome_and_end_reason_has_a_distinct_name() {
        use AttemptOutcome::*;
        let outcomes = [
            Answered,
            Rejected(486),
            NoResponse,
            TryingTimeout,
            RingingTimeout,
            CancelledByCaller,
            CancelledByFork,
            Shutdown,
        ];
        let names: std::collections::HashSet<_> =
            outcomes.iter().map(|&o| outcome_text(o)).collect();
        assert_eq!(names.len(), outcomes.len());
        assert_eq!(outcome_text(Rejected(486)), "486");
        let reasons = [
            EndReason::CallerHangup,
            EndReason::CalleeHangup,
            EndReason::CallerCancel,
            EndReason::NoAnswer,
            EndReason::Rejected,
            EndReason::NoRoute,
            EndReason::Forbidden,
            EndReason::AllGatewaysFailed,
            EndReason::NotRegistered,
            EndReason::Shutdown,
            EndReason::MaxDuration,
        ];
        let names: std::collections::HashSet<_> =
            reasons.iter().map(|&r| end_reason_name(r)).collect();
        assert_eq!(names.len(), reasons.len());
    }

    #[test]
    fn parse_csv_edge_cases() {
        assert!(parse_csv("").is_empty());
        assert!(parse_csv("\n\n").is_empty());
        assert_eq!(
            parse_csv("a,b\r\nc,d"),
            vec![vec!["a", "b"], vec!["c", "d"]]
        );
        assert_eq!(parse_csv(",\n"), vec![vec!["", ""]]);
        assert_eq!(parse_csv("\"\"\n"), vec![vec![""]]);
        assert_eq!(parse_csv("\"x\ny\",z\n"), vec![vec!["x\ny", "z"]]);
    }
}
