//! URIs: `sip:`/`sips:` (userinfo, host incl. IPv6 references, port, parameters, headers),
//! `tel:`, and any other scheme kept opaque. Spans point into the caller's buffer.

use super::text::{at, find_byte, has, Span, HOST, URI_BAD};

/// URI scheme.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scheme {
    /// `sip:`
    #[default]
    Sip,
    /// `sips:`
    Sips,
    /// `tel:`
    Tel,
    /// Anything else (kept opaque): the caller answers 416 for an R-URI with it.
    Other,
}

/// Parsed URI, as spans into the buffer it was parsed from.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UriData {
    pub all: Span,
    pub scheme: Scheme,
    pub scheme_span: Span,
    pub user: Option<Span>,
    pub password: Option<Span>,
    pub host: Span,
    pub port: Option<u16>,
    /// After the first `;` of the host part, up to `?` (no leading `;`).
    pub params: Span,
    /// After `?`.
    pub headers: Option<Span>,
}

#[inline(always)]
fn bad_uri_char(c: u8) -> bool {
    has(c, URI_BAD)
}

#[inline(always)]
fn host_char(c: u8) -> bool {
    has(c, HOST)
}

pub(crate) fn scheme_of(b: &[u8]) -> Scheme {
    if b.eq_ignore_ascii_case(b"sip") {
        Scheme::Sip
    } else if b.eq_ignore_ascii_case(b"sips") {
        Scheme::Sips
    } else if b.eq_ignore_ascii_case(b"tel") {
        Scheme::Tel
    } else {
        Scheme::Other
    }
}

/// Parses the host and optional port in `[i, end)` of `buf`; returns (host, port, next index).
/// The host is an IPv6 reference `[...]` or a run of hostname/IPv4 characters.
pub(crate) fn parse_hostport(
    buf: &[u8],
    i: usize,
    end: usize,
) -> Result<(Span, Option<u16>, usize), &'static str> {
    let mut j = i;
    if at(buf, i) == b'[' && i < end {
        while j < end && at(buf, j) != b']' {
            let c = at(buf, j);
            if j > i && !(c.is_ascii_hexdigit() || c == b':' || c == b'.') {
                return Err("bad IPv6 reference");
            }
            j += 1;
        }
        if j >= end || j == i + 1 {
            return Err("bad IPv6 reference");
        }
        j += 1;
    } else {
        while j < end && host_char(at(buf, j)) {
            j += 1;
        }
        if j == i {
            return Err("missing host");
        }
    }
    let host = Span::new(i, j);
    let mut port = None;
    if j < end && at(buf, j) == b':' {
        let ps = j + 1;
        let mut k = ps;
        let mut v: u32 = 0;
        while k < end && at(buf, k).is_ascii_digit() {
            v = v * 10 + u32::from(at(buf, k) - b'0');
            if v > 65535 {
                return Err("bad port");
            }
            k += 1;
        }
        if k == ps {
            return Err("bad port");
        }
        port = Some(v as u16);
        j = k;
    }
    Ok((host, port, j))
}

/// Parses the URI occupying exactly `sp` of `buf`.
pub(crate) fn parse_uri(buf: &[u8], sp: Span) -> Result<UriData, &'static str> {
    let (s, e) = (sp.s(), sp.e().min(buf.len()));
    let text = buf.get(s..e).unwrap_or(&[]);
    if text.is_empty() {
        return Err("empty URI");
    }
    if text.iter().any(|&c| bad_uri_char(c)) {
        return Err("bad character in URI");
    }
    let colon = match find_byte(b':', text) {
        Some(c) if c > 0 => s + c,
        _ => return Err("URI without scheme"),
    };
    let sch = Span::new(s, colon);
    let sb = sch.of(buf);
    if !sb[0].is_ascii_alphabetic()
        || !sb
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    {
        return Err("bad URI scheme");
    }
    let mut u = UriData {
        all: Span::new(s, e),
        scheme: scheme_of(sb),
        scheme_span: sch,
        params: Span::new(e, e),
        ..UriData::default()
    };
    let rest = colon + 1;
    if rest >= e {
        return Err("empty URI body");
    }
    match u.scheme {
        Scheme::Other => Ok(u),
        Scheme::Tel => {
            let semi = find_byte(b';', &buf[rest..e]).map_or(e, |k| rest + k);
            u.user = Some(Span::new(rest, semi));
            if semi < e {
                u.params = Span::new(semi + 1, e);
            }
            Ok(u)
        }
        Scheme::Sip | Scheme::Sips => {
            let mut h = rest;
            if let Some(a) = find_byte(b'@', &buf[rest..e]) {
                let ui_end = rest + a;
                if a == 0 {
                    return Err("empty user part");
                }
                match find_byte(b':', &buf[rest..ui_end]) {
                    Some(c) => {
                        u.user = Some(Span::new(rest, rest + c));
                        u.password = Some(Span::new(rest + c + 1, ui_end));
                    }
                    None => u.user = Some(Span::new(rest, ui_end)),
                }
                h = ui_end + 1;
            }
            let (host, port, mut j) = parse_hostport(buf, h, e)?;
            u.host = host;
            u.port = port;
            if j < e && at(buf, j) == b';' {
                let ps = j + 1;
                j = find_byte(b'?', &buf[ps..e]).map_or(e, |k| ps + k);
                u.params = Span::new(ps, j);
            }
            if j < e && at(buf, j) == b'?' {
                u.headers = Some(Span::new(j + 1, e));
                j = e;
            }
            if j != e {
                return Err("bad character after host");
            }
            Ok(u)
        }
    }
}

/// A parsed URI borrowed from a message buffer (or from the bytes given to [`Uri::parse`]).
#[derive(Clone, Copy, Debug)]
pub struct Uri<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) d: UriData,
}

impl<'a> Uri<'a> {
    /// Parses a stand-alone URI (e.g. a stored contact). No allocation.
    pub fn parse(text: &'a [u8]) -> Result<Uri<'a>, &'static str> {
        if text.len() > u32::MAX as usize {
            return Err("URI too long");
        }
        let d = parse_uri(text, Span::new(0, text.len()))?;
        Ok(Uri { buf: text, d })
    }
    /// The whole URI text as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.d.all.of(self.buf)
    }
    /// Scheme kind.
    pub fn scheme(&self) -> Scheme {
        self.d.scheme
    }
    /// Scheme text as received (e.g. `soap.beep`).
    pub fn scheme_bytes(&self) -> &'a [u8] {
        self.d.scheme_span.of(self.buf)
    }
    /// User part, still %-escaped (for `tel:` the number).
    pub fn user(&self) -> Option<&'a [u8]> {
        self.d.user.map(|s| s.of(self.buf))
    }
    /// Password, still %-escaped.
    pub fn password(&self) -> Option<&'a [u8]> {
        self.d.password.map(|s| s.of(self.buf))
    }
    /// Host (IPv6 references keep their brackets); empty for tel and opaque URIs.
    pub fn host(&self) -> &'a [u8] {
        self.d.host.of(self.buf)
    }
    /// Explicit port.
    pub fn port(&self) -> Option<u16> {
        self.d.port
    }
    /// Raw URI parameters (`a=b;lr`, no leading `;`).
    pub fn params(&self) -> &'a [u8] {
        self.d.params.of(self.buf)
    }
    /// Raw URI headers after `?`.
    pub fn headers(&self) -> Option<&'a [u8]> {
        self.d.headers.map(|s| s.of(self.buf))
    }
    /// URI parameters as (name, value) pairs, still escaped.
    pub fn param_iter(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> {
        self.params().split(|&c| c == b';').filter_map(|p| {
            if p.is_empty() {
                return None;
            }
            Some(match find_byte(b'=', p) {
                Some(k) => (&p[..k], Some(&p[k + 1..])),
                None => (p, None),
            })
        })
    }
    /// A URI parameter by name (case-insensitive, %-escapes in the name decoded):
    /// `Some(None)` for a flag such as `lr`. The value is returned still escaped.
    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.param_iter()
            .find(|(n, _)| escaped_eq_ignore_case(n, name.as_bytes()))
            .map(|(_, v)| v)
    }
    /// Appends the unescaped user part to `out` (cleared first). `%00` stays a 0x00 byte.
    pub fn user_unescaped(&self, out: &mut Vec<u8>) -> Result<(), EscapeError> {
        out.clear();
        unescape_into(self.user().unwrap_or(&[]), out)
    }
}

/// A `%` not followed by two hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EscapeError;

/// Appends `src` with `%XX` escapes decoded to `out`. Does not stop at `%00`.
pub fn unescape_into(src: &[u8], out: &mut Vec<u8>) -> Result<(), EscapeError> {
    let mut i = 0;
    while i < src.len() {
        let c = src[i];
        if c == b'%' {
            let h = hexval(at(src, i + 1)).ok_or(EscapeError)?;
            let l = hexval(at(src, i + 2)).ok_or(EscapeError)?;
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Ok(())
}

/// True when `raw`, once %-unescaped, equals `plain` ignoring ASCII case. No allocation.
pub(crate) fn escaped_eq_ignore_case(raw: &[u8], plain: &[u8]) -> bool {
    let (mut i, mut k) = (0, 0);
    while i < raw.len() {
        let c = if raw[i] == b'%' {
            match (hexval(at(raw, i + 1)), hexval(at(raw, i + 2))) {
                (Some(h), Some(l)) => {
                    i += 3;
                    h << 4 | l
                }
                _ => return false,
            }
        } else {
            i += 1;
            raw[i - 1]
        };
        match plain.get(k) {
            Some(p) if p.eq_ignore_ascii_case(&c) => k += 1,
            _ => return false,
        }
    }
    k == plain.len()
}

/// Bytes of `s` with `%XX` decoded, lazily and without allocating; a `%` that is not an escape is
/// kept as is (for comparisons, where [`unescape_into`]'s strictness is not wanted).
pub fn unescaped(s: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = *s.get(i)?;
        if c == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hexval),
                s.get(i + 2).copied().and_then(hexval),
            ) {
                i += 3;
                return Some(h << 4 | l);
            }
        }
        i += 1;
        Some(c)
    })
}

fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
