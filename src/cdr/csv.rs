//! The CDR file format: one CSV row per call (RFC 4180), documented in docs/operations.md.
//!
//! Owns: the column list ([`HEADER`]), turning a [`CdrRecord`] into one row ([`RowFormatter`],
//! by hand into a reused byte buffer, with the date of the last second cached; [`write_row`] is
//! the one-off convenience), the encoding of the attempts column, the wall-clock conversion of
//! the shards' monotonic `Millis` ([`WallClock`]) and a small reader for the format
//! ([`parse_csv`], for tests and tools).
//! Must not: read a clock or touch files: the writer thread (`cdr::writer`) passes the wall time of
//! the shards' `Millis` epoch in and does the I/O.

use std::fmt::Write as _;
use std::net::SocketAddr;

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
        EndReason::LookupTimeout => "lookup_timeout",
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

/// The attempts column (before CSV quoting): attempts in order, separated by `|`, each
/// `target:destination:outcome:called:started_ms:ended_ms`, where the times are milliseconds
/// after the call's start. `target` and `called` are percent-encoded (see [`push_sub`]); the
/// destination is `IP:PORT` or `[IPv6]:PORT`, so a reader takes the first field up to the first
/// `:` and the last four from the right.
pub fn attempts_text(start: Millis, attempts: &[CdrAttempt]) -> String {
    let mut out = Vec::new();
    push_attempts(&mut out, start, attempts);
    String::from_utf8(out).expect("built from UTF-8 text and ASCII")
}

/// Appends the attempts column (before CSV quoting) to `out`: see [`attempts_text`].
fn push_attempts(out: &mut Vec<u8>, start: Millis, attempts: &[CdrAttempt]) {
    for (i, a) in attempts.iter().enumerate() {
        if i > 0 {
            out.push(b'|');
        }
        push_sub(out, a.target.as_bytes());
        out.push(b':');
        push_addr(out, a.destination);
        out.push(b':');
        match a.outcome {
            AttemptOutcome::Rejected(status) => crate::sip::push_dec(out, u64::from(status)),
            o => out.extend_from_slice(outcome_text(o).as_bytes()),
        }
        out.push(b':');
        push_sub(out, a.called.as_bytes());
        out.push(b':');
        crate::sip::push_dec(out, a.started.saturating_sub(start));
        out.push(b':');
        crate::sip::push_dec(out, a.ended.saturating_sub(start));
    }
}

/// Appends `s` with `%`, `:`, `|` and control characters percent-encoded (`%25`, `%3A`, `%7C`,
/// `%0D`...), so they cannot be mistaken for the attempts column's separators. Those are all
/// ASCII, so encoding the bytes of UTF-8 text one by one is encoding its characters.
fn push_sub(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut from = 0;
    for (i, &b) in s.iter().enumerate() {
        if CLASS[usize::from(b)] & SUB != 0 {
            out.extend_from_slice(&s[from..i]);
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
            from = i + 1;
        }
    }
    out.extend_from_slice(&s[from..]);
}

/// [`CLASS`] bits: a byte that makes a CSV field quoted (`,` `"` CR LF), a byte the attempts
/// column percent-encodes (`%` `:` `|` and ASCII controls).
const QUOTE: u8 = 1;
const SUB: u8 = 2;
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if matches!(c, b',' | b'"' | b'\r' | b'\n') {
            t[b] |= QUOTE;
        }
        if matches!(c, b'%' | b':' | b'|') || c.is_ascii_control() {
            t[b] |= SUB;
        }
        b += 1;
    }
    t
};

/// As [`push_field`], on bytes (the bytes it looks for are ASCII).
fn push_field_bytes(out: &mut Vec<u8>, s: &[u8]) {
    let needs = s.iter().any(|&b| CLASS[usize::from(b)] & QUOTE != 0)
        || s.first() == Some(&b' ')
        || s.last() == Some(&b' ');
    if !needs {
        out.extend_from_slice(s);
        return;
    }
    out.push(b'"');
    let mut from = 0;
    for (i, &b) in s.iter().enumerate() {
        if b == b'"' {
            out.extend_from_slice(&s[from..=i]);
            out.push(b'"');
            from = i + 1;
        }
    }
    out.extend_from_slice(&s[from..]);
    out.push(b'"');
}

/// Appends `addr` as `Display` writes it (`IP:PORT`, `[IPv6]:PORT`); IPv4 by hand.
fn push_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            crate::sip::push_ip(out, std::net::IpAddr::V4(*a.ip()));
            out.push(b':');
            crate::sip::push_dec(out, u64::from(a.port()));
        }
        SocketAddr::V6(_) => {
            use std::io::Write as _;
            let _ = write!(out, "{addr}");
        }
    }
}

/// Formats CDR rows by hand (no `core::fmt` on the way of an IPv4 row) into a caller-owned byte
/// buffer. Keeps the `YYYY-MM-DDTHH:MM:SS.` text of the last second it wrote, so the rows of
/// one second compute their date once; and a scratch buffer for the attempts column.
/// The bytes are exactly those of [`write_row`]'s documented format (docs/operations.md).
#[derive(Clone, Debug)]
pub struct RowFormatter {
    wall: WallClock,
    /// The Unix second of `date` (`u64::MAX`: none yet).
    second: u64,
    date: [u8; 20],
    attempts: Vec<u8>,
}

impl RowFormatter {
    /// A formatter converting the shards' `Millis` with `wall`.
    pub fn new(wall: WallClock) -> Self {
        RowFormatter {
            wall,
            second: u64::MAX,
            date: [0; 20],
            attempts: Vec::with_capacity(128),
        }
    }

    /// Appends one row (with its `\n`) for `r`.
    pub fn write_row(&mut self, out: &mut Vec<u8>, r: &CdrRecord) {
        push_field_bytes(out, r.call_id.as_bytes());
        out.push(b',');
        push_field_bytes(out, r.caller.as_bytes());
        out.push(b',');
        push_field_bytes(out, r.callee.as_bytes());
        out.push(b',');
        push_addr(out, r.source);
        out.push(b',');
        push_field_bytes(out, r.caller_identity.as_bytes());
        out.push(b',');
        self.push_time(out, r.start);
        out.push(b',');
        if let Some(a) = r.answer {
            self.push_time(out, a);
        }
        out.push(b',');
        self.push_time(out, r.end);
        out.push(b',');
        crate::sip::push_dec(out, r.duration_ms());
        out.push(b',');
        crate::sip::push_dec(out, u64::from(r.final_status));
        out.push(b',');
        out.extend_from_slice(end_reason_name(r.end_reason).as_bytes());
        out.push(b',');
        let mut attempts = std::mem::take(&mut self.attempts);
        attempts.clear();
        push_attempts(&mut attempts, r.start, &r.attempts);
        push_field_bytes(out, &attempts);
        self.attempts = attempts;
        out.push(b'\n');
    }

    /// Appends the shard time `at` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (as [`push_utc`]).
    fn push_time(&mut self, out: &mut Vec<u8>, at: Millis) {
        let ms = self.wall.unix_ms(at);
        let second = ms / 1000;
        if second != self.second {
            let (y, mo, d, h, mi, s) = civil(second);
            if y > 9999 {
                // Wider than four digits: rare enough for core::fmt.
                let mut text = String::with_capacity(32);
                push_utc(&mut text, ms);
                out.extend_from_slice(text.as_bytes());
                return;
            }
            let two = |v: u64| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
            let t = &mut self.date;
            t[..2].copy_from_slice(&two(y / 100));
            t[2..4].copy_from_slice(&two(y % 100));
            t[4] = b'-';
            t[5..7].copy_from_slice(&two(mo));
            t[7] = b'-';
            t[8..10].copy_from_slice(&two(d));
            t[10] = b'T';
            t[11..13].copy_from_slice(&two(h));
            t[13] = b':';
            t[14..16].copy_from_slice(&two(mi));
            t[16] = b':';
            t[17..19].copy_from_slice(&two(s));
            t[19] = b'.';
            self.second = second;
        }
        let m = ms % 1000;
        out.extend_from_slice(&self.date);
        out.extend_from_slice(&[
            b'0' + (m / 100) as u8,
            b'0' + (m / 10 % 10) as u8,
            b'0' + (m % 10) as u8,
            b'Z',
        ]);
    }
}

/// Appends one row (with its `\n`) for `r`, times converted with `wall` (a one-off
/// [`RowFormatter`]; the writer keeps one).
pub fn write_row(out: &mut String, r: &CdrRecord, wall: &WallClock) {
    let mut row = Vec::with_capacity(256);
    RowFormatter::new(*wall).write_row(&mut row, r);
    out.push_str(std::str::from_utf8(&row).expect("built from UTF-8 text and ASCII"));
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

    /// The formatter as it was before [`RowFormatter`] (core::fmt), kept to check that the
    /// hand-written one writes the same bytes.
    mod reference {
        use super::super::*;

        fn push_field(out: &mut String, s: &str) {
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

        fn push_sub(out: &mut String, s: &str) {
            for c in s.chars() {
                if matches!(c, '%' | ':' | '|') || c.is_ascii_control() {
                    let _ = write!(out, "%{:02X}", c as u32);
                } else {
                    out.push(c);
                }
            }
        }

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
    }

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
            EndReason::LookupTimeout,
        ];
        let names: std::collections::HashSet<_> =
            reasons.iter().map(|&r| end_reason_name(r)).collect();
        assert_eq!(names.len(), reasons.len());
    }

    /// Many records, every field varied (escapes, IPv6 with scope, every outcome and end reason,
    /// missing answer, times that go back, cross seconds, days and years, beyond year 9999):
    /// one reused `RowFormatter` writes exactly what the core::fmt formatter wrote.
    #[test]
    fn hand_formatter_writes_the_same_bytes_as_the_fmt_formatter() {
        use AttemptOutcome::*;
        let texts = [
            "",
            "1001",
            "abc@10.0.0.1",
            "a,b",
            "say \"hi\"",
            " lead",
            "trail ",
            "line\r\nbreak",
            "gw:1|x%",
            "tab\there\u{7f}",
            "Müller→☎",
            "\"",
            ",",
            "peer:loadgen",
        ];
        let addrs: [SocketAddr; 6] = [
            "127.0.0.1:5061".parse().unwrap(),
            "0.0.0.0:0".parse().unwrap(),
            "255.255.255.255:65535".parse().unwrap(),
            "10.20.30.40:5060".parse().unwrap(),
            "[::1]:5090".parse().unwrap(),
            "[fe80::1%7]:5060".parse().unwrap(),
        ];
        let outcomes = [
            Answered,
            Rejected(486),
            Rejected(0),
            Rejected(65535),
            NoResponse,
            TryingTimeout,
            RingingTimeout,
            CancelledByCaller,
            CancelledByFork,
            Shutdown,
        ];
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
            EndReason::LookupTimeout,
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let epochs = [0, 1_795_244_370_000, 951_868_799_500, 253_402_300_799_000];
        for &epoch in &epochs {
            let wall = WallClock::new(epoch);
            let mut fast = RowFormatter::new(wall);
            let mut start: Millis = 0;
            for _ in 0..600 {
                // Mostly forward in small steps (the cache is hit), sometimes far, sometimes back.
                start = match next(10) {
                    0 => start.saturating_sub(next(5_000) as u64),
                    1 => start + 86_400_000 * next(400) as u64,
                    _ => start + next(1_500) as u64,
                };
                let attempts = (0..next(4))
                    .map(|_| CdrAttempt {
                        target: texts[next(texts.len())].into(),
                        destination: addrs[next(addrs.len())],
                        called: texts[next(texts.len())].into(),
                        started: start + next(3) as u64 * 1000,
                        ended: (start + next(100_000) as u64).saturating_sub(500),
                        outcome: outcomes[next(outcomes.len())],
                    })
                    .collect();
                let r = CdrRecord {
                    call_id: texts[next(texts.len())].into(),
                    caller: texts[next(texts.len())].into(),
                    callee: texts[next(texts.len())].into(),
                    source: addrs[next(addrs.len())],
                    caller_identity: texts[next(texts.len())].into(),
                    start,
                    answer: (next(3) > 0).then(|| start + next(20_000) as u64),
                    end: start + next(3_600_000) as u64,
                    attempts,
                    final_status: [0, 200, 487, 503, 699][next(5)],
                    end_reason: reasons[next(reasons.len())],
                };
                let mut old = String::new();
                reference::write_row(&mut old, &r, &wall);
                let mut new = Vec::new();
                fast.write_row(&mut new, &r);
                assert_eq!(std::str::from_utf8(&new).unwrap(), old, "{r:?}");
                assert_eq!(
                    attempts_text(r.start, &r.attempts),
                    reference::attempts_text(r.start, &r.attempts)
                );
            }
        }
        // The far end of the clock: years wider than four digits, and the saturated maximum.
        for epoch in [253_402_300_799_999, u64::MAX - 10] {
            let wall = WallClock::new(epoch);
            let mut fast = RowFormatter::new(wall);
            let mut r = record();
            r.start = 0;
            for end in [0, 1, 2, 1_000, 1_001, 100_000] {
                r.end = end;
                let mut old = String::new();
                reference::write_row(&mut old, &r, &wall);
                let mut new = Vec::new();
                fast.write_row(&mut new, &r);
                assert_eq!(std::str::from_utf8(&new).unwrap(), old);
            }
        }
    }

    #[test]
    fn reused_formatter_follows_the_second_and_appends() {
        let wall = WallClock::new(1_795_244_370_000);
        let mut f = RowFormatter::new(wall);
        let mut r = record();
        r.attempts.clear();
        r.answer = None;
        let mut out = Vec::new();
        for (start, end) in [(999, 999), (1_000, 1_999), (2_000, 2_000), (0, 86_400_000)] {
            r.start = start;
            r.end = end;
            f.write_row(&mut out, &r);
        }
        let text = String::from_utf8(out).unwrap();
        let rows = parse_csv(&text);
        let times: Vec<(&str, &str)> = rows.iter().map(|r| (&r[5][..], &r[7][..])).collect();
        assert_eq!(
            times,
            [
                ("2026-11-21T06:59:30.999Z", "2026-11-21T06:59:30.999Z"),
                ("2026-11-21T06:59:31.000Z", "2026-11-21T06:59:31.999Z"),
                ("2026-11-21T06:59:32.000Z", "2026-11-21T06:59:32.000Z"),
                ("2026-11-21T06:59:30.000Z", "2026-11-22T06:59:30.000Z"),
            ]
        );
        assert!(text.ends_with(",0,200,caller_hangup,\n"), "{text}");
        assert_eq!(text.lines().count(), 4);
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
