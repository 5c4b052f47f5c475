//! The message parser: start line, header lines (folding, compact forms), eager decoding of the
//! headers the protocol core needs on every message, body framing by Content-Length.

use super::kinds::{HeaderKind, Method};
use super::text::{
    at, fast_paths, find_byte, find_from, has, is_ws, next_param, parse_num, scan_quoted,
    skip_token, skip_while, skip_ws, trim, CommaIter, Num, RawParam, Span, TOKEN, WS,
};
use super::uri::{parse_hostport, parse_uri, parse_uri_in_angles, Scheme, Uri, UriData};

/// Why a datagram is not a SIP message at all (nothing to answer; drop it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Only CR/LF (a keep-alive) or nothing.
    Empty,
    /// Larger than 4 GiB (cannot be addressed by spans).
    TooLarge,
    /// The first line is neither `token SP ...` nor `SIP/...`.
    BadStartLine,
}

/// A problem found while parsing; [`Message::validate`] turns it into a 400 or a drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Defect {
    pub reason: &'static str,
}

/// `rport` in a Via.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rport {
    /// No rport parameter.
    #[default]
    Absent,
    /// `;rport` without a value (the client asks for it, RFC 3581).
    Requested,
    /// `;rport=N`.
    Value(u16),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ViaData {
    pub all: Span,
    pub protocol: Span,
    pub version: Span,
    pub transport: Span,
    pub host: Span,
    pub port: Option<u16>,
    /// From the first `;` (after sent-by) to the end of the value.
    pub params: Span,
    pub branch: Option<Span>,
    pub received: Option<Span>,
    pub maddr: Option<Span>,
    pub ttl: Option<u8>,
    pub rport: Rport,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NameAddrData {
    pub all: Span,
    pub display: Option<Span>,
    pub uri: UriData,
    pub angle: bool,
    pub params: Span,
    pub tag: Option<Span>,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HeaderData {
    pub kind: Option<HeaderKind>,
    pub name: Span,
    pub value: Span,
    /// Whole line(s) including the final CRLF: `name.start..line_end`.
    pub line_end: u32,
}

#[derive(Clone, Copy, Debug, Default)]
enum Start {
    #[default]
    None,
    Request {
        method: Span,
        uri: Span,
        uri_ok: bool,
    },
    Response {
        status: u16,
        reason: Span,
    },
}

/// Everything a parse produces; lives in the [`Parser`] so its vectors keep their capacity.
#[derive(Debug, Default)]
struct State {
    start: Start,
    ruri: UriData,
    version: Span,
    version_ok: bool,
    /// `SIP/x.y` with another version: 505.
    version_unsupported: bool,
    headers: Vec<HeaderData>,
    vias: Vec<ViaData>,
    contacts: Vec<NameAddrData>,
    contact_star: bool,
    from: Option<NameAddrData>,
    to: Option<NameAddrData>,
    call_id: Option<Span>,
    cseq: Option<(u32, Span)>,
    max_forwards: Option<u8>,
    max_forwards_seen: bool,
    content_length: Option<u32>,
    expires: Option<u32>,
    content_type: Option<Span>,
    body: Span,
    defect: Option<Defect>,
}

impl State {
    fn reset(&mut self) {
        self.start = Start::None;
        self.ruri = UriData::default();
        self.version = Span::default();
        self.version_ok = false;
        self.version_unsupported = false;
        self.headers.clear();
        self.vias.clear();
        self.contacts.clear();
        self.contact_star = false;
        self.from = None;
        self.to = None;
        self.call_id = None;
        self.cseq = None;
        self.max_forwards = None;
        self.max_forwards_seen = false;
        self.content_length = None;
        self.expires = None;
        self.content_type = None;
        self.body = Span::default();
        self.defect = None;
    }
    #[inline]
    fn defect(&mut self, reason: &'static str) {
        if self.defect.is_none() {
            self.defect = Some(Defect { reason });
        }
    }
}

/// A reusable parser. Keep one per thread: the vectors inside keep their capacity, so parsing
/// a typical message allocates nothing once they have grown.
#[derive(Debug, Default)]
pub struct Parser {
    st: State,
}

impl Parser {
    /// A parser with room for typical messages.
    pub fn new() -> Parser {
        let mut p = Parser::default();
        p.st.headers.reserve(32);
        p.st.vias.reserve(4);
        p.st.contacts.reserve(2);
        p
    }

    /// Parses one datagram. Succeeds for anything that looks like a SIP request or response,
    /// even when malformed: call [`Message::validate`] for the verdict.
    pub fn parse<'a>(&'a mut self, buf: &'a [u8]) -> Result<Message<'a>, ParseError> {
        let st = &mut self.st;
        st.reset();
        if buf.len() > u32::MAX as usize - 1 {
            return Err(ParseError::TooLarge);
        }
        // RFC 3261 §7.5: ignore CRLFs before the start line.
        let mut pos = 0;
        while pos < buf.len() && matches!(buf[pos], b'\r' | b'\n') {
            pos += 1;
        }
        if pos >= buf.len() {
            return Err(ParseError::Empty);
        }
        let nl = find_from(buf, b'\n', pos);
        let mut le = nl;
        if le > pos && buf[le - 1] == b'\r' {
            le -= 1;
        }
        parse_start_line(st, buf, pos, le)?;
        parse_headers(st, buf, nl + 1);
        Ok(Message { buf, st })
    }
}

fn parse_start_line(st: &mut State, buf: &[u8], s: usize, e: usize) -> Result<(), ParseError> {
    let line = &buf[s..e];
    // SIP-Version is case-insensitive (RFC 3261 §7.1).
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        let sp = memchr::memchr(b' ', line).map_or(e, |k| s + k);
        st.version = Span::new(s, sp);
        check_version(st, buf);
        let cs = (sp + 1).min(e);
        let ce = memchr::memchr(b' ', &buf[cs..e]).map_or(e, |k| cs + k);
        let code = &buf[cs..ce];
        let status = match parse_num(code) {
            Num::Ok(v) if code.len() == 3 && (100..=699).contains(&v) => v as u16,
            _ => {
                st.defect("bad status code");
                0
            }
        };
        let rs = (ce + 1).min(e);
        st.start = Start::Response {
            status,
            reason: Span::new(rs, e),
        };
        return Ok(());
    }
    let me = skip_token(buf, s, e);
    if me == s || me >= e || buf[me] != b' ' {
        return Err(ParseError::BadStartLine);
    }
    let method = Span::new(s, me);
    let mut end = e;
    while end > me && matches!(buf[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    if end != e {
        st.defect("white space at the end of the request line");
    }
    let rest = (me + 1).min(end);
    let (mut us, mut ue);
    match memchr::memrchr(b' ', &buf[rest..end]) {
        Some(k) => {
            us = rest;
            ue = rest + k;
            st.version = Span::new(ue + 1, end);
            check_version(st, buf);
        }
        None => {
            st.defect("request line without SIP version");
            us = rest;
            ue = end;
        }
    }
    if us < ue && (buf[us] == b' ' || buf[ue - 1] == b' ') {
        st.defect("extra SP in request line");
    }
    while us < ue && buf[us] == b' ' {
        us += 1;
    }
    while ue > us && buf[ue - 1] == b' ' {
        ue -= 1;
    }
    let uri = Span::new(us, ue);
    let uri_ok = match parse_uri(buf, uri) {
        Ok(u) => {
            st.ruri = u;
            if u.headers.is_some() {
                st.defect("escaped headers in the Request-URI");
            }
            true
        }
        Err(r) => {
            st.defect(r);
            st.ruri.all = uri;
            false
        }
    };
    st.start = Start::Request {
        method,
        uri,
        uri_ok,
    };
    Ok(())
}

fn check_version(st: &mut State, buf: &[u8]) {
    let v = st.version.of(buf);
    if (fast_paths() && v == b"SIP/2.0") || v.eq_ignore_ascii_case(b"SIP/2.0") {
        st.version_ok = true;
        return;
    }
    // `SIP/x.y` with digits: a version we do not support (505); anything else is malformed.
    let ok_shape = v.len() > 4
        && v[..4].eq_ignore_ascii_case(b"SIP/")
        && v[4..].iter().all(|&c| c.is_ascii_digit() || c == b'.')
        && v[4..].contains(&b'.');
    if ok_shape {
        st.version_unsupported = true;
    } else {
        st.defect("bad SIP version");
    }
}

fn parse_headers(st: &mut State, buf: &[u8], mut pos: usize) {
    let len = buf.len();
    loop {
        if pos >= len {
            st.defect("header section not terminated by an empty line");
            st.body = Span::new(len, len);
            break;
        }
        // The colon and the name's kind first (a few words from `pos`): the line end is then
        // searched from the colon on.
        let hint = HeaderKind::colon_and_kind(buf, pos);
        let mut nl = find_from(buf, b'\n', hint.map_or(pos, |(c, _)| c + 1));
        let first_end = if nl > pos && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        if first_end == pos {
            // Empty line: end of headers.
            frame_body(st, buf, (nl + 1).min(len));
            return;
        }
        let mut vend = first_end;
        // Folded continuation lines start with SP or HT.
        while nl + 1 < len && matches!(buf[nl + 1], b' ' | b'\t') {
            let s2 = nl + 1;
            nl = find_from(buf, b'\n', s2);
            vend = if nl > s2 && buf[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
        }
        header_line(st, buf, pos, vend, (nl + 1).min(len), hint);
        pos = nl + 1;
    }
}

fn frame_body(st: &mut State, buf: &[u8], bs: usize) {
    let len = buf.len();
    match st.content_length {
        Some(n) => {
            let n = n as usize;
            if n > len - bs {
                st.defect("body shorter than Content-Length");
                st.body = Span::new(bs, len);
            } else {
                // Bytes after the body are ignored (RFC 3261 §18.3).
                st.body = Span::new(bs, bs + n);
            }
        }
        None => st.body = Span::new(bs, len),
    }
}

/// One header line `buf[s..e]` (folded lines included), `hint` from
/// [`HeaderKind::colon_and_kind`] at `s`.
fn header_line(
    st: &mut State,
    buf: &[u8],
    s: usize,
    e: usize,
    line_end: usize,
    hint: Option<(usize, HeaderKind)>,
) {
    // name = token, then optional SP/HT, then the colon. Fast path: find the colon and look
    // the name before it up; a known name is made of token characters, so that is the answer
    // (what the token scan below would find).
    let (kind, ne, colon) = 'name: {
        let c = match hint {
            Some((c, kind)) if c < e => {
                if kind != HeaderKind::Other {
                    break 'name (kind, c, c);
                }
                c
            }
            _ => find_from(&buf[..e], b':', s),
        };
        if fast_paths() && c < e {
            let mut ne = c;
            while ne > s && matches!(buf[ne - 1], b' ' | b'\t') {
                ne -= 1;
            }
            let kind = HeaderKind::from_name_in(buf, s, ne);
            if kind != HeaderKind::Other {
                break 'name (kind, ne, c);
            }
        }
        let ne = skip_token(buf, s, e);
        let mut colon = ne;
        while colon < e && matches!(buf[colon], b' ' | b'\t') {
            colon += 1;
        }
        if ne == s || colon >= e || buf[colon] != b':' {
            st.defect(if c >= e {
                "header line without a colon"
            } else {
                "bad header name"
            });
            return;
        }
        (HeaderKind::from_name_in(buf, s, ne), ne, colon)
    };
    // Usually one SP after the colon and nothing at the end (the CRLF is not in `e`).
    let value = if fast_paths()
        && colon + 2 < e
        && buf[colon + 1] == b' '
        && !is_ws(buf[colon + 2])
        && !is_ws(buf[e - 1])
    {
        Span::new(colon + 2, e)
    } else {
        trim(buf, Span::new(colon + 1, e))
    };
    st.headers.push(HeaderData {
        kind: Some(kind),
        name: Span::new(s, ne),
        value,
        line_end: line_end as u32,
    });
    let v = value.of(buf);
    match kind {
        HeaderKind::Via => {
            for_each_item(buf, value, |item| {
                st.vias.push(ViaData::default());
                let last = st.vias.len() - 1;
                if let Err(r) = parse_via_into(buf, item, &mut st.vias[last]) {
                    st.defect(r);
                    // Keep a usable sent-by so a 400 can still be answered.
                    if parse_via_head_into(buf, item, &mut st.vias[last]).is_err() {
                        st.vias.pop();
                    }
                }
            });
            if value.is_empty() {
                st.defect("empty Via");
            }
        }
        HeaderKind::From | HeaderKind::To => {
            let slot_full = if kind == HeaderKind::From {
                st.from.is_some()
            } else {
                st.to.is_some()
            };
            if slot_full {
                st.defect("duplicate From or To");
                return;
            }
            let slot = if kind == HeaderKind::From {
                &mut st.from
            } else {
                &mut st.to
            };
            let r = parse_name_addr_into(buf, value, slot.insert(NameAddrData::default()));
            if let Err(r) = r {
                *slot = None;
                st.defect(r);
            }
        }
        HeaderKind::CallId => {
            if st.call_id.is_some() {
                st.defect("duplicate Call-ID");
            } else if v.is_empty() || skip_while(v, 0, |c| !is_ws(c)) < v.len() {
                st.defect("bad Call-ID");
            } else {
                st.call_id = Some(value);
            }
        }
        HeaderKind::CSeq => {
            if st.cseq.is_some() {
                st.defect("duplicate CSeq");
                return;
            }
            let ds = value.s();
            let mut i = ds;
            while i < value.e() && at(buf, i).is_ascii_digit() {
                i += 1;
            }
            let ms = skip_ws(buf, i, value.e());
            let me = skip_token(buf, ms, value.e());
            if i == ds || ms == i || me == ms || me != value.e() {
                st.defect("bad CSeq");
                return;
            }
            match parse_num(&buf[ds..i]) {
                Num::Ok(n) => st.cseq = Some((n, Span::new(ms, me))),
                _ => st.defect("CSeq number too large"),
            }
        }
        HeaderKind::MaxForwards => {
            if st.max_forwards_seen {
                st.defect("duplicate Max-Forwards");
                return;
            }
            st.max_forwards_seen = true;
            match parse_num(v) {
                Num::Ok(n) if n <= 255 => st.max_forwards = Some(n as u8),
                // Above 255: treated as absent (RFC 4475 §3.1.2.4).
                Num::Ok(_) | Num::Overflow => {}
                Num::Bad => st.defect("bad Max-Forwards"),
            }
        }
        HeaderKind::ContentLength => {
            if st.content_length.is_some() {
                st.defect("duplicate Content-Length");
                return;
            }
            match parse_num(v) {
                Num::Ok(n) => st.content_length = Some(n),
                _ => st.defect("bad Content-Length"),
            }
        }
        HeaderKind::Contact => parse_contacts(st, buf, value),
        HeaderKind::Expires if st.expires.is_none() => {
            st.expires = match parse_num(v) {
                Num::Ok(n) => Some(n),
                Num::Overflow => Some(u32::MAX),
                Num::Bad => None,
            };
        }
        HeaderKind::ContentType if st.content_type.is_none() => st.content_type = Some(value),
        HeaderKind::RetryAfter => {
            let d = skip_digits(v);
            if matches!(parse_num(&v[..d]), Num::Overflow | Num::Bad) {
                st.defect("bad Retry-After");
            }
        }
        HeaderKind::Warning => {
            for item in CommaIter::new(buf, value) {
                let w = item.of(buf);
                let d = skip_digits(w);
                if d != 3 || !matches!(at(w, 3), b' ' | b'\t') {
                    st.defect("bad Warning code");
                }
            }
        }
        _ => {}
    }
}

/// Calls `f` with every comma-separated item of `value` ([`CommaIter`]), skipping the item
/// search when the value holds no comma at all (one item: the value itself, already trimmed).
#[inline]
fn for_each_item(buf: &[u8], value: Span, mut f: impl FnMut(Span)) {
    if value.is_empty() {
        return;
    }
    let b = &buf[..value.e()];
    if fast_paths() && find_from(b, b',', value.s()) == b.len() {
        f(value);
    } else {
        CommaIter::new(buf, value).for_each(f);
    }
}

fn skip_digits(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

fn parse_contacts(st: &mut State, buf: &[u8], value: Span) {
    if value.is_empty() {
        st.defect("empty Contact");
        return;
    }
    for_each_item(buf, value, |item| {
        if item.of(buf) == b"*" {
            if st.contact_star || !st.contacts.is_empty() {
                st.defect("Contact * with other contacts");
            }
            st.contact_star = true;
            return;
        }
        if st.contact_star {
            st.defect("Contact * with other contacts");
        }
        st.contacts.push(NameAddrData::default());
        let last = st.contacts.len() - 1;
        if let Err(r) = parse_name_addr_into(buf, item, &mut st.contacts[last]) {
            st.contacts.pop();
            st.defect(r);
            return;
        }
        let params = st.contacts[last].params;
        let mut i = params.s();
        while let Some(Ok(p)) = next_param(buf, &mut i, params.e()) {
            let n = p.name.of(buf);
            if n.eq_ignore_ascii_case(b"expires") {
                let ok = p.value.is_some_and(|v| parse_num(v.of(buf)) != Num::Bad);
                if !ok {
                    st.defect("bad Contact expires");
                }
            }
        }
    });
}

/// `protocol / version / transport LWS host [: port]`, then params.
/// Writes to `d` (the parser's table: no copy), which is left partly written on an error.
fn parse_via_head_into(buf: &[u8], sp: Span, d: &mut ViaData) -> Result<(), &'static str> {
    if !parse_via_head_fast(buf, sp, d) {
        *d = parse_via_head_general(buf, sp)?;
    }
    Ok(())
}

/// The common case: `SIP/2.0/` + transport, one SP, host, `:port` without white space. None
/// for anything else (valid or not): the general algorithm decides those, so the result is
/// always the same as its.
#[inline]
fn parse_via_head_fast(buf: &[u8], sp: Span, d: &mut ViaData) -> bool {
    fast_paths() && parse_via_head_fast_opt(buf, sp, d).is_some()
}

#[inline(always)]
fn parse_via_head_fast_opt(buf: &[u8], sp: Span, d: &mut ViaData) -> Option<()> {
    let (s, e) = (sp.s(), sp.e());
    let b = buf.get(..e)?;
    if b.get(s..s + 8)? != b"SIP/2.0/" {
        return None;
    }
    let ts = s + 8;
    let te = skip_while(b, ts, |c| has(c, TOKEN));
    if te == ts || te + 1 >= e || b[te] != b' ' || is_ws(b[te + 1]) {
        return None;
    }
    let (host, port, j) = parse_hostport(b, te + 1, e).ok()?;
    // Without a port, white space could come before a `:port` (the general algorithm's case).
    port?;
    *d = ViaData {
        all: sp,
        protocol: Span::new(s, s + 3),
        version: Span::new(s + 4, s + 7),
        transport: Span::new(ts, te),
        host,
        port,
        params: Span::new(j, e),
        ..ViaData::default()
    };
    Some(())
}

fn parse_via_head_general(buf: &[u8], sp: Span) -> Result<ViaData, &'static str> {
    let e = sp.e();
    let mut i = sp.s();
    let mut parts = [Span::default(); 3];
    for (n, part) in parts.iter_mut().enumerate() {
        if n > 0 {
            i = skip_ws(buf, i, e);
            if at(buf, i) != b'/' || i >= e {
                return Err("bad Via protocol");
            }
            i += 1;
        }
        i = skip_ws(buf, i, e);
        let ts = i;
        i = skip_token(buf, i, e);
        if i == ts {
            return Err("bad Via protocol");
        }
        *part = Span::new(ts, i);
    }
    let hs = skip_ws(buf, i, e);
    if hs == i {
        return Err("bad Via sent-by");
    }
    let (host, mut port, mut j) = parse_hostport(buf, hs, e).map_err(|_| "bad Via sent-by")?;
    // LWS is allowed around the port colon.
    let k = skip_ws(buf, j, e);
    if port.is_none() && k < e && at(buf, k) == b':' {
        let ps = skip_ws(buf, k + 1, e);
        let pe = ps + skip_digits(buf.get(ps..e).unwrap_or(&[]));
        match parse_num(&buf[ps..pe]) {
            Num::Ok(p) if p <= 65535 => port = Some(p as u16),
            _ => return Err("bad Via port"),
        }
        j = pe;
    }
    Ok(ViaData {
        all: sp,
        protocol: parts[0],
        version: parts[1],
        transport: parts[2],
        host,
        port,
        params: Span::new(j, e),
        ..ViaData::default()
    })
}

/// One Via value into `d` (left partly written on an error).
fn parse_via_into(buf: &[u8], sp: Span, d: &mut ViaData) -> Result<(), &'static str> {
    if sp.is_empty() {
        return Err("empty Via value");
    }
    parse_via_head_into(buf, sp, d)?;
    let mut i = d.params.s();
    let e = d.params.e();
    while let Some(p) = next_param(buf, &mut i, e) {
        let RawParam { name, value } = p.map_err(|_| "bad Via parameter")?;
        let n = name.of(buf);
        let val = value.map(|v| v.of(buf));
        if n.eq_ignore_ascii_case(b"branch") {
            d.branch = Some(value.ok_or("Via branch without value")?);
        } else if n.eq_ignore_ascii_case(b"received") {
            d.received = Some(value.ok_or("Via received without value")?);
        } else if n.eq_ignore_ascii_case(b"maddr") {
            d.maddr = Some(value.ok_or("Via maddr without value")?);
        } else if n.eq_ignore_ascii_case(b"ttl") {
            match val.map(parse_num) {
                Some(Num::Ok(t)) if t <= 255 => d.ttl = Some(t as u8),
                _ => return Err("bad Via ttl"),
            }
        } else if n.eq_ignore_ascii_case(b"rport") {
            d.rport = match val.map(parse_num) {
                None => Rport::Requested,
                Some(Num::Ok(p)) if p <= 65535 => Rport::Value(p as u16),
                _ => return Err("bad Via rport"),
            };
        }
    }
    Ok(())
}

/// `[display-name] <uri> *(;param)` or `addr-spec *(;param)`.
pub(crate) fn parse_name_addr(buf: &[u8], sp: Span) -> Result<NameAddrData, &'static str> {
    let mut d = NameAddrData::default();
    parse_name_addr_into(buf, sp, &mut d).map(|()| d)
}

/// [`parse_name_addr`] writing into `d` (the parser's own table: no copy of the result).
fn parse_name_addr_into(buf: &[u8], sp: Span, d: &mut NameAddrData) -> Result<(), &'static str> {
    let sp = trim(buf, sp);
    let (s, e) = (sp.s(), sp.e());
    if s >= e {
        return Err("empty name-addr");
    }
    *d = NameAddrData {
        all: sp,
        ..NameAddrData::default()
    };
    let b = &buf[..e];
    let mut i = s;
    if b[i] == b'"' {
        let q = scan_quoted(b, i, e).ok_or("unterminated quoted string")?;
        d.display = Some(Span::new(i, q));
        i = q;
        while i < e && is_ws(b[i]) {
            i += 1;
        }
        if i >= e || b[i] != b'<' {
            return Err("quoted display name without <URI>");
        }
    } else if !fast_paths() || b[i] != b'<' {
        // (A `<` first: no display name, which the scan below would find too.)
        let mut k = i;
        while k < e && has(b[k], TOKEN | WS) {
            k += 1;
        }
        if k < e && b[k] == b'<' {
            let dn = trim(buf, Span::new(i, k));
            if !dn.is_empty() {
                d.display = Some(dn);
            }
            i = k;
        }
    }
    let params_start;
    if i < e && b[i] == b'<' {
        let gt = parse_uri_in_angles(buf, i + 1, e, &mut d.uri)?;
        d.angle = true;
        params_start = gt + 1;
    } else {
        if d.display.is_some() {
            return Err("display name without <URI>");
        }
        if find_byte(b'<', &b[i..]).is_some() {
            return Err("display name is neither a token list nor a quoted string");
        }
        let mut k = i;
        while k < e && !matches!(b[k], b';' | b',') && !is_ws(b[k]) {
            k += 1;
        }
        d.uri = parse_uri(buf, Span::new(i, k))?;
        if d.uri.headers.is_some() {
            return Err("URI with headers must be enclosed in <>");
        }
        params_start = k;
    }
    d.params = Span::new(params_start, e);
    let mut j = params_start;
    while let Some(p) = next_param(buf, &mut j, e) {
        let p = p.map_err(|_| "bad header parameter")?;
        if d.tag.is_none() && p.name.of(buf).eq_ignore_ascii_case(b"tag") {
            d.tag = Some(p.value.ok_or("tag without value")?);
        }
    }
    Ok(())
}

/// Outcome of [`Message::validate`] when the message is not acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// A request to answer with this status (when [`Message::can_respond`]; else drop it).
    Reject(Rejection),
    /// Drop silently (an invalid response).
    Drop(&'static str),
}

/// A status and a short reason for an invalid request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// 400, 501 or 505.
    pub status: u16,
    /// What was wrong (suitable for a Warning header or a log line, not for a reason phrase).
    pub reason: &'static str,
}

/// A parsed message: borrowed views into the datagram and the parser's tables.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    buf: &'a [u8],
    st: &'a State,
}

/// One header line.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    /// Kind (compact forms normalised).
    pub kind: HeaderKind,
    /// Name as received.
    pub name: &'a [u8],
    /// Value, trimmed; folded lines keep their CRLF + WSP inside.
    pub value: &'a [u8],
    /// Byte range of the whole header line(s) in the datagram, final CRLF included: for a
    /// proxy that removes or replaces a header while copying the rest.
    pub line: (usize, usize),
}

/// CSeq value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// Sequence number.
    pub seq: u32,
    /// Method.
    pub method: Method<'a>,
}

/// One Via value.
#[derive(Clone, Copy, Debug)]
pub struct Via<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) d: ViaData,
}

impl<'a> Via<'a> {
    /// The whole value (folding CRLFs inside, if any).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.d.all.of(self.buf)
    }
    /// `SIP` normally.
    pub fn protocol(&self) -> &'a [u8] {
        self.d.protocol.of(self.buf)
    }
    /// `2.0` normally.
    pub fn version(&self) -> &'a [u8] {
        self.d.version.of(self.buf)
    }
    /// `UDP`, `TCP`, `TLS`, ... as received.
    pub fn transport(&self) -> &'a [u8] {
        self.d.transport.of(self.buf)
    }
    /// sent-by host (IPv6 with brackets).
    pub fn host(&self) -> &'a [u8] {
        self.d.host.of(self.buf)
    }
    /// sent-by port.
    pub fn port(&self) -> Option<u16> {
        self.d.port
    }
    /// `branch=` value.
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.d.branch.map(|s| s.of(self.buf))
    }
    /// `received=` value.
    pub fn received(&self) -> Option<&'a [u8]> {
        self.d.received.map(|s| s.of(self.buf))
    }
    /// `maddr=` value.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.d.maddr.map(|s| s.of(self.buf))
    }
    /// `ttl=` value.
    pub fn ttl(&self) -> Option<u8> {
        self.d.ttl
    }
    /// `rport`.
    pub fn rport(&self) -> Rport {
        self.d.rport
    }
    /// Raw parameter section (starting at the first `;`, possibly with white space before).
    pub fn params_raw(&self) -> &'a [u8] {
        self.d.params.of(self.buf)
    }
    /// Parameters as (name, raw value).
    pub fn params(&self) -> ParamIter<'a> {
        ParamIter::new(self.buf, self.d.params)
    }
}

/// A From/To/Contact/Route value: display name, URI, header parameters.
#[derive(Clone, Copy, Debug)]
pub struct NameAddr<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) d: NameAddrData,
}

impl<'a> NameAddr<'a> {
    /// Parses a stand-alone name-addr or addr-spec (e.g. a configured From).
    pub fn parse(text: &'a [u8]) -> Result<NameAddr<'a>, &'static str> {
        if text.len() > u32::MAX as usize {
            return Err("too long");
        }
        let d = parse_name_addr(text, Span::new(0, text.len()))?;
        Ok(NameAddr { buf: text, d })
    }
    /// The whole value as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.d.all.of(self.buf)
    }
    /// Display name as received (a quoted string keeps its quotes).
    pub fn display_name(&self) -> Option<&'a [u8]> {
        self.d.display.map(|s| s.of(self.buf))
    }
    /// The URI.
    pub fn uri(&self) -> Uri<'a> {
        Uri {
            buf: self.buf,
            d: self.d.uri,
        }
    }
    /// True when the URI was in `<>`.
    pub fn has_angle_brackets(&self) -> bool {
        self.d.angle
    }
    /// `tag=` value.
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.d.tag.map(|s| s.of(self.buf))
    }
    /// Header parameters (after the URI; never the URI's own parameters).
    pub fn params(&self) -> ParamIter<'a> {
        ParamIter::new(self.buf, self.d.params)
    }
    /// A header parameter by name (case-insensitive); quotes stripped. `Some(None)`: no value.
    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.params()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.map(super::text::unquote))
    }
    /// Contact `expires=` (saturating at u32::MAX).
    pub fn expires(&self) -> Option<u32> {
        match self.param("expires").flatten().map(parse_num) {
            Some(Num::Ok(v)) => Some(v),
            Some(Num::Overflow) => Some(u32::MAX),
            _ => None,
        }
    }
    /// Contact `q=` in thousandths (`q=0.5` → 500).
    pub fn q(&self) -> Option<u16> {
        let v = self.param("q").flatten()?;
        let (int, frac) = match find_byte(b'.', v) {
            Some(k) => (&v[..k], &v[k + 1..]),
            None => (v, &[][..]),
        };
        if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut q: u16 = match int {
            b"0" => 0,
            b"1" => 1000,
            _ => return None,
        };
        for (k, &c) in frac.iter().enumerate() {
            q += u16::from(c - b'0') * [100, 10, 1][k];
        }
        (q <= 1000).then_some(q)
    }
}

/// Iterator over `;name=value` header parameters: (name, raw value with quotes).
#[derive(Clone, Debug)]
pub struct ParamIter<'a> {
    buf: &'a [u8],
    i: usize,
    end: usize,
}

impl<'a> ParamIter<'a> {
    fn new(buf: &'a [u8], sp: Span) -> Self {
        ParamIter {
            buf,
            i: sp.s(),
            end: sp.e(),
        }
    }
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);
    fn next(&mut self) -> Option<Self::Item> {
        match next_param(self.buf, &mut self.i, self.end)? {
            Ok(p) => Some((p.name.of(self.buf), p.value.map(|v| v.of(self.buf)))),
            Err(()) => None,
        }
    }
}

impl<'a> Message<'a> {
    /// The datagram this message was parsed from.
    pub fn buf(&self) -> &'a [u8] {
        self.buf
    }
    /// True for a request.
    pub fn is_request(&self) -> bool {
        matches!(self.st.start, Start::Request { .. })
    }
    /// Request method (None for a response).
    pub fn method(&self) -> Option<Method<'a>> {
        match self.st.start {
            Start::Request { method, .. } => Some(Method::from_bytes(method.of(self.buf))),
            _ => None,
        }
    }
    /// Request-URI, when it parsed.
    pub fn request_uri(&self) -> Option<Uri<'a>> {
        match self.st.start {
            Start::Request { uri_ok: true, .. } => Some(Uri {
                buf: self.buf,
                d: self.st.ruri,
            }),
            _ => None,
        }
    }
    /// Request-URI text as received (even when it did not parse).
    pub fn request_uri_bytes(&self) -> Option<&'a [u8]> {
        match self.st.start {
            Start::Request { uri, .. } => Some(uri.of(self.buf)),
            _ => None,
        }
    }
    /// Request-URI scheme (for the caller's 416 check).
    pub fn request_uri_scheme(&self) -> Option<Scheme> {
        self.request_uri().map(|u| u.scheme())
    }
    /// Response status code (None for a request; 0 if invalid).
    pub fn status(&self) -> Option<u16> {
        match self.st.start {
            Start::Response { status, .. } => Some(status),
            _ => None,
        }
    }
    /// Response reason phrase (may be empty).
    pub fn reason(&self) -> Option<&'a [u8]> {
        match self.st.start {
            Start::Response { reason, .. } => Some(reason.of(self.buf)),
            _ => None,
        }
    }
    /// SIP version text of the start line.
    pub fn version(&self) -> &'a [u8] {
        self.st.version.of(self.buf)
    }
    /// All header lines in order.
    pub fn headers(&self) -> impl Iterator<Item = Header<'a>> + 'a {
        let buf = self.buf;
        self.st.headers.iter().map(move |h| Header {
            kind: h.kind.unwrap_or(HeaderKind::Other),
            name: h.name.of(buf),
            value: h.value.of(buf),
            line: (h.name.s(), h.line_end as usize),
        })
    }
    /// Values of every header line of `kind`, in order.
    pub fn header_values(&self, kind: HeaderKind) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers()
            .filter(move |h| h.kind == kind)
            .map(|h| h.value)
    }
    /// First value of `kind`.
    pub fn header(&self, kind: HeaderKind) -> Option<&'a [u8]> {
        self.header_values(kind).next()
    }
    /// First value of a header by name (case-insensitive; for `Other` kinds).
    pub fn header_by_name(&self, name: &str) -> Option<&'a [u8]> {
        self.headers()
            .find(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value)
    }
    /// Via values, top first.
    pub fn vias(&self) -> impl ExactSizeIterator<Item = Via<'a>> + 'a {
        let buf = self.buf;
        self.st.vias.iter().map(move |d| Via { buf, d: *d })
    }
    /// Top Via.
    pub fn top_via(&self) -> Option<Via<'a>> {
        self.st.vias.first().map(|d| Via {
            buf: self.buf,
            d: *d,
        })
    }
    /// From.
    pub fn from(&self) -> Option<NameAddr<'a>> {
        self.st.from.map(|d| NameAddr { buf: self.buf, d })
    }
    /// To.
    pub fn to(&self) -> Option<NameAddr<'a>> {
        self.st.to.map(|d| NameAddr { buf: self.buf, d })
    }
    /// Call-ID.
    pub fn call_id(&self) -> Option<&'a [u8]> {
        self.st.call_id.map(|s| s.of(self.buf))
    }
    /// CSeq.
    pub fn cseq(&self) -> Option<CSeq<'a>> {
        self.st.cseq.map(|(seq, m)| CSeq {
            seq,
            method: Method::from_bytes(m.of(self.buf)),
        })
    }
    /// Max-Forwards (None when absent or above 255).
    pub fn max_forwards(&self) -> Option<u8> {
        self.st.max_forwards
    }
    /// Expires header (saturating; None when absent or not a number).
    pub fn expires(&self) -> Option<u32> {
        self.st.expires
    }
    /// Content-Length header.
    pub fn content_length(&self) -> Option<u32> {
        self.st.content_length
    }
    /// Content-Type value (first).
    pub fn content_type(&self) -> Option<&'a [u8]> {
        self.st.content_type.map(|s| s.of(self.buf))
    }
    /// Contact values (not `*`), in order.
    pub fn contacts(&self) -> impl ExactSizeIterator<Item = NameAddr<'a>> + 'a {
        let buf = self.buf;
        self.st
            .contacts
            .iter()
            .map(move |d| NameAddr { buf, d: *d })
    }
    /// True when a `Contact: *` was present.
    pub fn contact_star(&self) -> bool {
        self.st.contact_star
    }
    /// Route (or Record-Route, Path...) values parsed on demand; a bad value yields Err.
    pub fn name_addrs(
        &self,
        kind: HeaderKind,
    ) -> impl Iterator<Item = Result<NameAddr<'a>, &'static str>> + 'a {
        let buf = self.buf;
        self.st
            .headers
            .iter()
            .filter(move |h| h.kind == Some(kind))
            .flat_map(move |h| CommaIter::new(buf, h.value))
            .map(move |sp| parse_name_addr(buf, sp).map(|d| NameAddr { buf, d }))
    }
    /// Comma-separated tokens of every header of `kind` (Require, Proxy-Require, Supported,
    /// Unsupported, Allow, Accept...), trimmed, empty items skipped.
    pub fn tokens(&self, kind: HeaderKind) -> impl Iterator<Item = &'a [u8]> + 'a {
        let buf = self.buf;
        self.st
            .headers
            .iter()
            .filter(move |h| h.kind == Some(kind))
            .flat_map(move |h| CommaIter::new(buf, h.value))
            .filter(|s| !s.is_empty())
            .map(move |s| s.of(buf))
    }
    /// Message body (exactly Content-Length bytes, or the rest of the datagram without one).
    pub fn body(&self) -> &'a [u8] {
        self.st.body.of(self.buf)
    }
    /// Byte offset where the body starts (= end of the header section's empty line).
    pub fn body_offset(&self) -> usize {
        self.st.body.s()
    }
    /// Length of the message as framed (headers + body); later bytes of the datagram are ignored.
    pub fn framed_len(&self) -> usize {
        self.st.body.e()
    }

    /// True for a request with a usable top Via (enough to send a response back).
    pub fn can_respond(&self) -> bool {
        self.is_request() && !self.st.vias.is_empty()
    }

    /// Role-independent checks. `Ok` for a well-formed message. For requests: 505 for an
    /// unsupported SIP version, 400 for anything malformed or missing, 501 for an unknown method
    /// whose CSeq method differs. Invalid responses are to be dropped.
    pub fn validate(&self) -> Result<(), Invalid> {
        let st = self.st;
        match st.start {
            Start::Response { status, .. } => {
                let r = if let Some(d) = st.defect {
                    d.reason
                } else if !st.version_ok {
                    "unsupported SIP version"
                } else if !(100..=699).contains(&status) {
                    "bad status code"
                } else if st.vias.is_empty()
                    || st.from.is_none()
                    || st.to.is_none()
                    || st.call_id.is_none()
                    || st.cseq.is_none()
                {
                    "missing mandatory header"
                } else {
                    return Ok(());
                };
                Err(Invalid::Drop(r))
            }
            Start::Request { method, .. } => {
                let rej = |status, reason| Err(Invalid::Reject(Rejection { status, reason }));
                if st.version_unsupported {
                    return rej(505, "SIP version not supported");
                }
                if let Some(d) = st.defect {
                    return rej(400, d.reason);
                }
                if st.vias.is_empty() {
                    return rej(400, "missing Via");
                }
                if st.call_id.is_none() {
                    return rej(400, "missing Call-ID");
                }
                if st.from.is_none() {
                    return rej(400, "missing From");
                }
                if st.to.is_none() {
                    return rej(400, "missing To");
                }
                let Some((_, cm)) = st.cseq else {
                    return rej(400, "missing CSeq");
                };
                let m = method.of(self.buf);
                if cm.of(self.buf) != m {
                    if Method::from_bytes(m).is_extension() {
                        return rej(501, "unknown method (CSeq method differs)");
                    }
                    return rej(400, "CSeq method differs from the request method");
                }
                Ok(())
            }
            Start::None => Err(Invalid::Drop("not parsed")),
        }
    }
}
