//! URIs: `sip:`/`sips:` (userinfo, host incl. IPv6 references, port, parameters, headers),
//! `tel:`, and any other scheme kept opaque. Spans point into the caller's buffer.

use super::text::{at, fast_paths, find_byte, has, skip_while, Span, HOST, URI_BAD};

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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    let b = &buf[..end.min(buf.len())];
    let end = b.len();
    let mut j = i;
    if i < end && b[i] == b'[' {
        while j < end && b[j] != b']' {
            let c = b[j];
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
        j = skip_while(b, i, host_char);
        if j <= i {
            return Err("missing host");
        }
    }
    let host = Span::new(i, j);
    let mut port = None;
    if j < end && b[j] == b':' {
        let ps = j + 1;
        let mut k = ps;
        let mut v: u32 = 0;
        while k < end && b[k].is_ascii_digit() {
            v = v * 10 + u32::from(b[k] - b'0');
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

/// Classes for the fast URI scan.
const C_HOST: u8 = 0;
const C_STOP: u8 = 1;
const C_AT: u8 = 2;
const C_QUERY: u8 = 3;
const C_COLON: u8 = 4;
const C_OTHER: u8 = 5;

/// For the fast URI scan: host characters (the common case) 0; never in a URI (controls, SP,
/// `<`, `>`, `"`, DEL) 1; `@` 2; `?` 3; `:` 4; anything else 5.
static URI_SCAN: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b <= b' ' || matches!(b, b'<' | b'>' | b'"' | 0x7f) {
            C_STOP
        } else if b == b'@' {
            C_AT
        } else if b == b'?' {
            C_QUERY
        } else if b == b':' {
            C_COLON
        } else if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
            C_HOST
        } else {
            C_OTHER
        };
        c += 1;
    }
    t
};

/// Parses the URI occupying exactly `sp` of `buf`.
pub(crate) fn parse_uri(buf: &[u8], sp: Span) -> Result<UriData, &'static str> {
    let mut u = UriData::default();
    match buf
        .get(..sp.e())
        .and_then(|b| parse_sip_uri_fast(b, sp.s(), &mut u))
    {
        Some(end) if end == sp.e() => Ok(u),
        _ => parse_uri_general(buf, sp),
    }
}

/// The URI of a name-addr starting at `s` (just after `<`) and ending at the first `>` before
/// `e`, written to `u`; returns that `>`'s index. One scan for both; the same as finding the
/// `>` and calling [`parse_uri`] on what is before it.
pub(crate) fn parse_uri_in_angles(
    buf: &[u8],
    s: usize,
    e: usize,
    u: &mut UriData,
) -> Result<usize, &'static str> {
    let b = &buf[..e.min(buf.len())];
    if let Some(end) = parse_sip_uri_fast(b, s, u) {
        if end < b.len() && b[end] == b'>' {
            return Ok(end);
        }
    }
    let gt = super::text::find_byte(b'>', b.get(s..).unwrap_or(&[])).ok_or("missing >")? + s;
    *u = parse_uri_general(buf, Span::new(s, gt))?;
    Ok(gt)
}

/// The common case in one scan: a lower-case `sip:`/`sips:` URI with a host name or IPv4
/// address, starting at `s` and ending at the first byte that is never part of a URI (or the
/// end of `buf`), returned with the URI. None for anything else, valid or not (IPv6, other
/// schemes, upper-case schemes, errors): [`parse_uri_general`] decides those, so the result is
/// always the same as its result for `s..end`.
/// The URI goes to `u` (left partly written when the answer is None).
#[inline]
fn parse_sip_uri_fast(buf: &[u8], s: usize, u: &mut UriData) -> Option<usize> {
    const NONE: usize = usize::MAX;
    if !fast_paths() {
        return None;
    }
    let rest = buf.get(s..)?;
    let (scheme, r) = if rest.starts_with(b"sip:") {
        (Scheme::Sip, 4)
    } else if rest.starts_with(b"sips:") {
        (Scheme::Sips, 5)
    } else {
        return None;
    };
    // One scan: the first `@`, `?` and `:`, and where the host (the run of host characters
    // after the first `@`, or after the scheme without one) ends.
    let (mut at, mut q, mut colon, mut hend) = (NONE, NONE, NONE, NONE);
    let mut h = r;
    let mut n = rest.len();
    let mut k = r;
    loop {
        k = skip_while(rest, k, |c| URI_SCAN[c as usize] == C_HOST);
        let Some(&c) = rest.get(k) else { break };
        match URI_SCAN[c as usize] {
            C_STOP => {
                n = k;
                break;
            }
            C_AT if at == NONE => {
                at = k;
                h = k + 1;
                hend = NONE;
                k += 1;
                continue;
            }
            C_QUERY => q = q.min(k),
            C_COLON => colon = colon.min(k),
            _ => {}
        }
        hend = hend.min(k);
        k += 1;
    }
    if r >= n {
        return None;
    }
    let text = &rest[..n];
    let e = s + n;
    *u = UriData {
        all: Span::new(s, e),
        scheme,
        scheme_span: Span::new(s, s + r - 1),
        params: Span::new(e, e),
        ..UriData::default()
    };
    if at != NONE {
        if at == r {
            return None;
        }
        if colon < at {
            u.user = Some(Span::new(s + r, s + colon));
            u.password = Some(Span::new(s + colon + 1, s + at));
        } else {
            u.user = Some(Span::new(s + r, s + at));
        }
    }
    let mut j = hend.min(n);
    if j <= h {
        return None;
    }
    u.host = Span::new(s + h, s + j);
    if j < n && text[j] == b':' {
        let ps = j + 1;
        let mut k = ps;
        let mut v: u32 = 0;
        while k < n && text[k].is_ascii_digit() {
            v = v * 10 + u32::from(text[k] - b'0');
            if v > 65535 {
                return None;
            }
            k += 1;
        }
        if k == ps {
            return None;
        }
        u.port = Some(v as u16);
        j = k;
    }
    if j < n && text[j] == b';' {
        let ps = j + 1;
        // The first `?` after the `;`; one before it (in the user part) needs a search.
        let qe = match q {
            NONE => n,
            q if q >= ps => q,
            _ => return None,
        };
        u.params = Span::new(s + ps, s + qe);
        j = qe;
    }
    if j < n && text[j] == b'?' {
        u.headers = Some(Span::new(s + j + 1, e));
        j = n;
    }
    (j == n).then_some(e)
}

/// Parses any URI occupying exactly `sp` of `buf` (the general algorithm, step by step).
fn parse_uri_general(buf: &[u8], sp: Span) -> Result<UriData, &'static str> {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn sip_uri_parts() {
        let u = Uri::parse(b"sips:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?Subject=x").unwrap();
        assert_eq!(u.scheme(), Scheme::Sips);
        assert_eq!(u.user(), Some(&b"alice"[..]));
        assert_eq!(u.password(), Some(&b"pw"[..]));
        assert_eq!(u.host(), b"[2001:db8::1]");
        assert_eq!(u.port(), Some(5061));
        assert_eq!(u.param("TRANSPORT"), Some(Some(&b"tcp"[..])));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.headers(), Some(&b"Subject=x"[..]));
    }

    #[test]
    fn bad_uris() {
        for b in [
            &b"sip:"[..],
            b"sip:host:99999",
            b"sip:a b@c",
            b"<sip:a@b>",
            b"nocolon",
            b"sip:[::1",
            b"sip:@host",
            b"1ab:x",
        ] {
            assert!(Uri::parse(b).is_err(), "{:?}", String::from_utf8_lossy(b));
        }
        assert_eq!(
            Uri::parse(b"tel:+1-555;x=1").unwrap().user(),
            Some(&b"+1-555"[..])
        );
        assert_eq!(
            Uri::parse(b"isbn:2983792873").unwrap().scheme(),
            Scheme::Other
        );
    }

    #[test]
    fn unescape_keeps_nul() {
        let mut out = Vec::new();
        unescape_into(b"a%00b%41", &mut out).unwrap();
        assert_eq!(out, b"a\0bA");
        assert!(unescape_into(b"%4", &mut out).is_err());
        assert!(unescape_into(b"%zz", &mut out).is_err());
    }

    /// A deterministic xorshift generator for the differential tests.
    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        /// `seed` with 1–3 bytes replaced, inserted or deleted, from `alphabet` or at random.
        pub(crate) fn mutate(&mut self, seed: &[u8], alphabet: &[u8]) -> Vec<u8> {
            let mut v = seed.to_vec();
            for _ in 0..1 + self.below(3) {
                let c = if self.below(4) == 0 {
                    self.next() as u8
                } else {
                    alphabet[self.below(alphabet.len())]
                };
                let k = self.below(v.len() + 1);
                match self.below(3) {
                    0 if k < v.len() => v[k] = c,
                    1 if k < v.len() => {
                        v.remove(k);
                    }
                    _ => v.insert(k, c),
                }
            }
            v
        }
    }

    /// The one-scan path gives exactly what the general algorithm gives whenever it answers,
    /// and answers for the URIs of the load tests.
    #[test]
    fn fast_path_agrees_with_general() {
        let seeds: &[&[u8]] = &[
            b"sip:127.0.0.1:5060",
            b"sip:u000123@127.0.0.1",
            b"sip:u000123@127.0.0.1:16000",
            b"sip:+15551234567@gw1.example.net:5060;user=phone",
            b"sips:alice:pw@example.com:5061;transport=tcp;lr?Subject=x&a=b",
            b"sip:127.0.0.1:5193;transport=UDP",
            b"sip:a?b@host;x=1?y",
            b"sip:user;par=1@host",
            b"sip:[2001:db8::1]:5060",
            b"SIP:a@b",
            b"sip:%61lice@atlanta.com;maddr=239.255.255.1;ttl=15",
            b"sip:host:65535",
            b"tel:+1-555;x=1",
        ];
        let alphabet = b"@:;?[]<>%\" aA0.-_=,9\t";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut answered = 0;
        let check = |t: &[u8]| -> bool {
            let general = parse_uri_general(t, Span::new(0, t.len()));
            assert_eq!(parse_uri(t, Span::new(0, t.len())), general);
            let mut angled = b"<".to_vec();
            angled.extend_from_slice(t);
            angled.extend_from_slice(b">;tag=1");
            let mut u = UriData::default();
            let in_angles = parse_uri_in_angles(&angled, 1, angled.len(), &mut u).map(|gt| (u, gt));
            let gt = angled[1..].iter().position(|&c| c == b'>').map(|k| k + 1);
            match gt {
                Some(gt) => assert_eq!(
                    in_angles,
                    parse_uri_general(&angled, Span::new(1, gt)).map(|u| (u, gt))
                ),
                None => assert_eq!(in_angles, Err("missing >")),
            }
            let mut f = UriData::default();
            match parse_sip_uri_fast(t, 0, &mut f) {
                Some(end) => {
                    let sp = Span::new(0, end);
                    assert_eq!(
                        Ok(f),
                        parse_uri_general(t, sp),
                        "{:?}",
                        String::from_utf8_lossy(t)
                    );
                    end == t.len()
                }
                None => false,
            }
        };
        for seed in seeds {
            check(seed);
            for _ in 0..3000 {
                let t = rng.mutate(seed, alphabet);
                answered += usize::from(check(&t));
            }
        }
        assert!(answered > 5000, "fast path too rarely taken: {answered}");
        for t in [
            &b"sip:u000123@127.0.0.1"[..],
            b"sip:127.0.0.1:5060",
            b"sip:sipp@127.0.0.1:23000",
        ] {
            assert!(check(t));
        }
        // Within a larger buffer, at an offset, as the parser calls it.
        let buf = b"To: <sip:bob@biloxi.com;lr>;tag=1";
        let sp = Span::new(5, 26);
        assert_eq!(parse_uri(buf, sp), parse_uri_general(buf, sp));
        let mut u = UriData::default();
        assert_eq!(parse_uri_in_angles(buf, 5, buf.len(), &mut u), Ok(26));
        assert_eq!(Ok(u), parse_uri_general(buf, sp));
    }
}
