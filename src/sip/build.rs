//! Message builders writing into a caller-owned, reused `Vec<u8>` (cleared first).

use std::net::SocketAddr;

use super::fmt::{host_is_ip, push_clean, push_dec, push_ip, push_status};
use super::kinds::{HeaderKind, Method};
use super::parse::{Message, Rport, Via};
use super::text::is_token;

/// A message could not be built from what was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildError(pub &'static str);

/// Extra header lines: (name, value), written as `name: value`.
pub type ExtraHeaders<'x> = &'x [(&'x str, &'x [u8])];

/// How to answer a request.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponseOptions<'x> {
    /// Where the request came from: fills `received=` / `rport=` in the top Via.
    pub source: Option<SocketAddr>,
    /// To-tag to add when the request's To has none (only for status > 100).
    pub to_tag: Option<&'x [u8]>,
    /// Extra headers (Allow, Unsupported, Accept, Server, WWW-Authenticate, Contact...).
    pub headers: ExtraHeaders<'x>,
    /// Body (write its Content-Type among `headers`).
    pub body: &'x [u8],
}

#[inline(always)]
fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    push_clean(out, value);
    out.extend_from_slice(b"\r\n");
}

fn extras_and_body(out: &mut Vec<u8>, headers: ExtraHeaders, lines: &[u8], body: &[u8]) {
    for (n, v) in headers {
        header(out, n, v);
    }
    out.extend_from_slice(lines);
    out.extend_from_slice(b"Content-Length: ");
    push_dec(out, body.len().min(u32::MAX as usize) as u64);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// Bytes an unquoted parameter value runs over (the parameter reader stops at `;`, `,`, `"` and
/// white space).
const VALUE_CHAR: [bool; 256] = {
    let mut t = [true; 256];
    let stops = [b';', b',', b'"', b' ', b'\t', b'\r', b'\n'];
    let mut k = 0;
    while k < stops.len() {
        t[stops[k] as usize] = false;
        k += 1;
    }
    t
};

/// The parameters of `via` (its raw parameter section) when writing them one by one as
/// `;name[=value]` (what the parameter reader yields) would give the very same bytes: every
/// parameter is `;token` or `;token=value` with nothing the reader skips or stops at (white
/// space, quotes, commas, empty parts), and no `received`/`rport` to drop.
fn verbatim_params<'a>(via: &Via<'a>) -> Option<&'a [u8]> {
    if via.received().is_some() || via.rport() != Rport::Absent {
        return None;
    }
    let raw = via.params_raw();
    let n = raw.len();
    let mut i = 0;
    while i < n {
        if raw[i] != b';' {
            return None;
        }
        i += 1;
        let ns = i;
        while i < n && is_token(raw[i]) {
            i += 1;
        }
        let name = &raw[ns..i];
        if name.is_empty()
            || name.eq_ignore_ascii_case(b"received")
            || name.eq_ignore_ascii_case(b"rport")
        {
            return None;
        }
        if i < n && raw[i] == b'=' {
            i += 1;
            let vs = i;
            while i < n && VALUE_CHAR[raw[i] as usize] {
                i += 1;
            }
            if i == vs {
                return None;
            }
        }
    }
    Some(raw)
}

/// The top Via with `received=` (source IP differs from sent-by, or rport was asked for) and
/// `rport=<source port>` (RFC 3261 §18.2.1, RFC 3581). Other parameters are kept in order.
fn push_top_via(out: &mut Vec<u8>, via: &Via, source: Option<SocketAddr>) {
    let Some(src) = source else {
        push_clean(out, via.as_bytes());
        return;
    };
    let all = via.d.all;
    let head = via.d.params.start.saturating_sub(all.start) as usize;
    let text = via.as_bytes();
    push_clean(out, text.get(..head).unwrap_or(text).trim_ascii_end());
    if let Some(raw) = verbatim_params(via) {
        out.extend_from_slice(raw);
    } else {
        for (n, v) in via.params() {
            if n.eq_ignore_ascii_case(b"received") || n.eq_ignore_ascii_case(b"rport") {
                continue;
            }
            out.push(b';');
            out.extend_from_slice(n);
            if let Some(v) = v {
                out.push(b'=');
                push_clean(out, v);
            }
        }
    }
    let rport = via.rport() != Rport::Absent;
    if rport || !host_is_ip(via.host(), src.ip()) {
        out.extend_from_slice(b";received=");
        push_ip(out, src.ip());
    }
    if rport {
        out.extend_from_slice(b";rport=");
        push_dec(out, u64::from(src.port()));
    }
}

/// Writes a response to `req`: status line, every Via in order (top one with received/rport),
/// From, To (plus `;tag=` when asked), Call-ID, CSeq, extra headers, Content-Length, body.
/// Headers missing from the request are left out (e.g. a 400 to a request without From).
pub fn write_response(
    out: &mut Vec<u8>,
    req: &Message,
    status: u16,
    reason: &str,
    opts: &ResponseOptions,
) {
    write_response_with_lines(out, req, status, reason, opts, &[]);
}

/// Appends `Name: value\r\n` to `lines`, for [`write_response_with_lines`]: exactly what the
/// builder writes for an entry of [`ResponseOptions::headers`] (CR/LF in the value become spaces).
pub fn push_header_line(lines: &mut Vec<u8>, name: &str, value: &[u8]) {
    header(lines, name, value);
}

/// [`write_response`] with header lines written out in advance (see [`push_header_line`]; each
/// ends in CRLF), copied as they are after `opts.headers` and before `Content-Length`. For answers
/// whose extra headers are the same every time (OPTIONS) or made in one go (the registrar's 200):
/// one copy instead of one per header.
pub fn write_response_with_lines(
    out: &mut Vec<u8>,
    req: &Message,
    status: u16,
    reason: &str,
    opts: &ResponseOptions,
    lines: &[u8],
) {
    out.clear();
    // One reservation: the copied headers are shorter than the request.
    let extras: usize = opts
        .headers
        .iter()
        .map(|(n, v)| n.len() + v.len() + 4)
        .sum();
    out.reserve(req.buf().len() + reason.len() + extras + lines.len() + opts.body.len() + 128);
    out.extend_from_slice(b"SIP/2.0 ");
    push_status(out, status);
    out.push(b' ');
    push_clean(out, reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (k, via) in req.vias().enumerate() {
        out.extend_from_slice(b"Via: ");
        if k == 0 {
            push_top_via(out, &via, opts.source);
        } else {
            push_clean(out, via.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    if let Some(f) = req.from() {
        header(out, "From", f.as_bytes());
    }
    if let Some(t) = req.to() {
        out.extend_from_slice(b"To: ");
        push_clean(out, t.as_bytes());
        if let (None, Some(tag), true) = (t.tag(), opts.to_tag, status > 100) {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(tag);
        }
        out.extend_from_slice(b"\r\n");
    }
    if let Some(c) = req.call_id() {
        header(out, "Call-ID", c);
    }
    if let Some(c) = req.cseq() {
        out.extend_from_slice(b"CSeq: ");
        push_dec(out, u64::from(c.seq));
        out.push(b' ');
        out.extend_from_slice(c.method.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    extras_and_body(out, opts.headers, lines, opts.body);
}

/// A new request (UAC side).
#[derive(Clone, Copy, Debug)]
pub struct RequestSpec<'x> {
    pub method: Method<'x>,
    /// Request-URI.
    pub uri: &'x [u8],
    /// Via transport, e.g. `UDP`.
    pub transport: &'x str,
    /// Via sent-by, `host[:port]`.
    pub sent_by: &'x [u8],
    /// Via branch (include the `z9hG4bK` magic cookie).
    pub branch: &'x [u8],
    /// Add `;rport` to the Via.
    pub rport: bool,
    pub max_forwards: u8,
    /// From display name, written as a quoted string.
    pub from_display: Option<&'x [u8]>,
    pub from_uri: &'x [u8],
    pub from_tag: &'x [u8],
    pub to_display: Option<&'x [u8]>,
    pub to_uri: &'x [u8],
    pub to_tag: Option<&'x [u8]>,
    pub call_id: &'x [u8],
    pub cseq: u32,
    /// Contact URI, written as `<uri>`.
    pub contact: Option<&'x [u8]>,
    /// Expires header.
    pub expires: Option<u32>,
    pub headers: ExtraHeaders<'x>,
    pub body: &'x [u8],
}

fn name_addr(
    out: &mut Vec<u8>,
    name: &str,
    display: Option<&[u8]>,
    uri: &[u8],
    tag: Option<&[u8]>,
) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    if let Some(d) = display {
        out.push(b'"');
        for &c in d {
            if c == b'"' || c == b'\\' {
                out.push(b'\\');
            }
            if c != b'\r' && c != b'\n' {
                out.push(c);
            }
        }
        out.extend_from_slice(b"\" ");
    }
    out.push(b'<');
    out.extend_from_slice(uri);
    out.push(b'>');
    if let Some(t) = tag {
        out.extend_from_slice(b";tag=");
        out.extend_from_slice(t);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a request from `spec`.
pub fn write_request(out: &mut Vec<u8>, spec: &RequestSpec) {
    out.clear();
    let m = spec.method.as_bytes();
    out.extend_from_slice(m);
    out.push(b' ');
    out.extend_from_slice(spec.uri);
    out.extend_from_slice(b" SIP/2.0\r\nVia: SIP/2.0/");
    out.extend_from_slice(spec.transport.as_bytes());
    out.push(b' ');
    out.extend_from_slice(spec.sent_by);
    out.extend_from_slice(b";branch=");
    out.extend_from_slice(spec.branch);
    if spec.rport {
        out.extend_from_slice(b";rport");
    }
    out.extend_from_slice(b"\r\nMax-Forwards: ");
    push_dec(out, u64::from(spec.max_forwards));
    out.extend_from_slice(b"\r\n");
    name_addr(
        out,
        "From",
        spec.from_display,
        spec.from_uri,
        Some(spec.from_tag),
    );
    name_addr(out, "To", spec.to_display, spec.to_uri, spec.to_tag);
    header(out, "Call-ID", spec.call_id);
    out.extend_from_slice(b"CSeq: ");
    push_dec(out, u64::from(spec.cseq));
    out.push(b' ');
    out.extend_from_slice(m);
    out.extend_from_slice(b"\r\n");
    if let Some(c) = spec.contact {
        name_addr(out, "Contact", None, c, None);
    }
    if let Some(e) = spec.expires {
        out.extend_from_slice(b"Expires: ");
        push_dec(out, u64::from(e));
        out.extend_from_slice(b"\r\n");
    }
    extras_and_body(out, spec.headers, &[], spec.body);
}

/// Shared part of ACK and CANCEL: R-URI, top Via, Route set, From, Call-ID of our INVITE.
fn in_dialog_of_invite(
    out: &mut Vec<u8>,
    method: &[u8],
    invite: &Message,
    to: &[u8],
) -> Result<(), BuildError> {
    if invite.method() != Some(Method::Invite) {
        return Err(BuildError("not an INVITE"));
    }
    let ruri = invite
        .request_uri_bytes()
        .ok_or(BuildError("no Request-URI"))?;
    let via = invite.top_via().ok_or(BuildError("INVITE without Via"))?;
    let from = invite.from().ok_or(BuildError("INVITE without From"))?;
    let call_id = invite
        .call_id()
        .ok_or(BuildError("INVITE without Call-ID"))?;
    let cseq = invite.cseq().ok_or(BuildError("INVITE without CSeq"))?;
    out.clear();
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(ruri);
    out.extend_from_slice(b" SIP/2.0\r\n");
    header(out, "Via", via.as_bytes());
    for r in invite.header_values(HeaderKind::Route) {
        header(out, "Route", r);
    }
    out.extend_from_slice(b"Max-Forwards: 70\r\n");
    header(out, "From", from.as_bytes());
    header(out, "To", to);
    header(out, "Call-ID", call_id);
    out.extend_from_slice(b"CSeq: ");
    push_dec(out, u64::from(cseq.seq));
    out.push(b' ');
    out.extend_from_slice(method);
    out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    Ok(())
}

/// ACK for a non-2xx final response to an INVITE we sent (RFC 3261 §17.1.1.3): the INVITE's
/// R-URI, top Via (same branch), Route headers, From, Call-ID and CSeq number; To from the response.
pub fn write_ack(
    out: &mut Vec<u8>,
    invite: &Message,
    response: &Message,
) -> Result<(), BuildError> {
    let to = response.to().ok_or(BuildError("response without To"))?;
    match response.status() {
        Some(s) if s >= 300 => {}
        _ => return Err(BuildError("not a non-2xx final response")),
    }
    in_dialog_of_invite(out, b"ACK", invite, to.as_bytes())
}

/// CANCEL for an INVITE we sent (RFC 3261 §9.1): same R-URI, top Via, Route set, From, To,
/// Call-ID and CSeq number.
pub fn write_cancel(out: &mut Vec<u8>, invite: &Message) -> Result<(), BuildError> {
    let to = invite.to().ok_or(BuildError("INVITE without To"))?;
    in_dialog_of_invite(out, b"CANCEL", invite, to.as_bytes())
}

/// An RFC 1123 / RFC 7231 IMF-fixdate for a `Date` header (RFC 3261 §20.17), e.g.
/// `Sun, 06 Nov 1994 08:49:37 GMT`, from seconds since the Unix epoch. Always 29 bytes; no
/// allocation, no clock (the caller gives the time).
pub fn http_date(unix_secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's days_from_civil, inverted).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as usize;
    let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(0, 9999) as u64;
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    let two = |v: u64| [b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8];
    out[5..7].copy_from_slice(&two(day));
    out[8..11].copy_from_slice(MONTHS[month - 1]);
    out[12..14].copy_from_slice(&two(year / 100));
    out[14..16].copy_from_slice(&two(year % 100));
    out[17..19].copy_from_slice(&two(secs / 3600));
    out[20..22].copy_from_slice(&two(secs / 60 % 60));
    out[23..25].copy_from_slice(&two(secs % 60));
    out
}

#[cfg(test)]
mod date_tests {
    use super::http_date;

    fn d(s: u64) -> String {
        String::from_utf8(http_date(s).to_vec()).unwrap()
    }

    #[test]
    fn imf_fixdate() {
        assert_eq!(d(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(d(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT"); // RFC 7231's example
        assert_eq!(d(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT"); // leap day, 400-year rule
        assert_eq!(d(4_107_542_399), "Sun, 28 Feb 2100 23:59:59 GMT");
        assert_eq!(d(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT"); // 2100 is no leap year
        assert_eq!(d(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
    }
}

#[cfg(test)]
mod via_tests {
    use super::*;
    use crate::sip::Parser;

    /// The top Via as the builder wrote it before the verbatim fast path: parameter by
    /// parameter. The fast path must give the very same bytes.
    fn reference_top_via(out: &mut Vec<u8>, via: &Via, src: SocketAddr) {
        fn clean(out: &mut Vec<u8>, b: &[u8]) {
            out.extend(
                b.iter()
                    .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
            );
        }
        let head = via.d.params.start.saturating_sub(via.d.all.start) as usize;
        let text = via.as_bytes();
        clean(out, text.get(..head).unwrap_or(text).trim_ascii_end());
        for (n, v) in via.params() {
            if n.eq_ignore_ascii_case(b"received") || n.eq_ignore_ascii_case(b"rport") {
                continue;
            }
            out.push(b';');
            out.extend_from_slice(n);
            if let Some(v) = v {
                out.push(b'=');
                clean(out, v);
            }
        }
        let rport = via.rport() != Rport::Absent;
        let h = via.host();
        let h = h
            .strip_prefix(b"[")
            .and_then(|h| h.strip_suffix(b"]"))
            .unwrap_or(h);
        let ip: Option<std::net::IpAddr> = std::str::from_utf8(h).ok().and_then(|h| h.parse().ok());
        if rport || ip != Some(src.ip()) {
            out.extend_from_slice(format!(";received={}", src.ip()).as_bytes());
        }
        if rport {
            out.extend_from_slice(format!(";rport={}", src.port()).as_bytes());
        }
    }

    #[test]
    fn value_chars_are_what_the_parameter_reader_runs_over() {
        for b in 0..=255u8 {
            let stops = matches!(b, b';' | b',' | b'"') || crate::sip::text::is_ws(b);
            assert_eq!(VALUE_CHAR[b as usize], !stops, "{b}");
        }
    }

    #[test]
    fn prebuilt_lines_give_the_same_response_as_extra_headers() {
        let data = b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;rport\r\n\
From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let mut parser = Parser::new();
        let msg = parser.parse(data).unwrap();
        let headers: [(&str, &[u8]); 3] = [
            ("Allow", b"INVITE, ACK"),
            ("Server", b"folded\r\n value"),
            ("Date", b"Sun, 06 Nov 1994 08:49:37 GMT"),
        ];
        let src: SocketAddr = "192.0.2.1:5062".parse().unwrap();
        let opts = ResponseOptions {
            source: Some(src),
            to_tag: Some(b"t"),
            headers: &headers,
            body: b"",
        };
        let mut want = Vec::new();
        write_response(&mut want, &msg, 200, "OK", &opts);
        let mut lines = Vec::new();
        for (n, v) in &headers[1..] {
            push_header_line(&mut lines, n, v);
        }
        let opts = ResponseOptions {
            headers: &headers[..1],
            ..opts
        };
        let mut got = Vec::new();
        write_response_with_lines(&mut got, &msg, 200, "OK", &opts, &lines);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
        assert!(want.windows(16).any(|w| w == b"Server: folded  "));
    }

    #[test]
    fn top_via_matches_the_parameter_by_parameter_writer() {
        let vias = [
            "SIP/2.0/UDP 127.0.0.1:22000;branch=z9hG4bK-1-0",
            "SIP/2.0/UDP 127.0.0.1:22000;branch=z9hG4bK-1-0;rport",
            "SIP/2.0/UDP 127.0.0.1;rport;branch=z9hG4bK1",
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;received=1.2.3.4",
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=5;x",
            "SIP/2.0/UDP host.example.com;branch=z9hG4bK1",
            "SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1",
            "SIP/2.0/UDP 127.0.0.1 ; branch=z9hG4bK1",
            "SIP/2.0/UDP 127.0.0.1;branch = z9hG4bK1",
            "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1 ;lr",
            "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1;x=\"a;b\"",
            "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1;;x",
            "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1;",
            "SIP/2.0/UDP 127.0.0.1;branch=;x",
            "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1;ttl=16;maddr=224.2.0.1;lr",
            "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n ;lr",
            "SIP/2.0/UDP 127.0.0.1",
            "SIP/2.0/UDP 127.0.0.01;branch=z9hG4bK1",
            "SIP/2.0/UDP 127.0.0.1;branch=z9:hG4bK1@x",
            "SIP/2.0/UDP 127.0.0.1;br:anch=z9hG4bK1",
            "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1,x",
            "SIP/2.0/UDP 127.0.0.1;RPORT;branch=z9hG4bK1",
            "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1;Received=10.0.0.1",
            "SIP/2.0/UDP 127.0.0.1;branch=a=b;c",
        ];
        let sources: [SocketAddr; 3] = [
            "127.0.0.1:22000".parse().unwrap(),
            "192.0.2.7:5070".parse().unwrap(),
            "[::1]:5060".parse().unwrap(),
        ];
        let mut parser = Parser::new();
        let mut compared = 0;
        for v in vias {
            let data = format!(
                "OPTIONS sip:a@example.com SIP/2.0\r\nVia: {v}\r\nFrom: <sip:b@example.com>;tag=1\r\n\
                 To: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            let Ok(msg) = parser.parse(data.as_bytes()) else {
                continue;
            };
            let Some(via) = msg.top_via() else { continue };
            for src in sources {
                let mut got = Vec::new();
                push_top_via(&mut got, &via, Some(src));
                let mut want = Vec::new();
                reference_top_via(&mut want, &via, src);
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want),
                    "{v:?} from {src}"
                );
                compared += 1;
            }
        }
        assert!(compared >= 3 * 20, "only {compared} compared");
    }
}
