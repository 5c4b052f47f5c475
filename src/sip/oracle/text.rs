//! Byte-level helpers shared by the parsers: spans, character classes, numbers, quoted strings,
//! comma splitting and generic `;name=value` parameters. Every function is bounds-checked.

/// A half-open byte range `[start, end)` into the buffer a message was parsed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    #[inline]
    pub(crate) fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    /// The bytes of this span in `buf` (empty if the span does not fit `buf`).
    #[inline]
    pub fn of(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }
    /// True when the span holds no byte.
    #[inline]
    pub fn is_empty(self) -> bool {
        self.end <= self.start
    }
    #[inline]
    pub(crate) fn s(self) -> usize {
        self.start as usize
    }
    #[inline]
    pub(crate) fn e(self) -> usize {
        self.end as usize
    }
}

pub(crate) const TOKEN: u8 = 1;
pub(crate) const WS: u8 = 2;
pub(crate) const HOST: u8 = 4;
/// Never inside a URI: controls, SP, `<`, `>`, `"`, DEL.
pub(crate) const URI_BAD: u8 = 8;

const fn class_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let mut v = 0;
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            v |= TOKEN;
        }
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            v |= WS;
        }
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
            v |= HOST;
        }
        if b <= b' ' || matches!(b, b'<' | b'>' | b'"' | 0x7f) {
            v |= URI_BAD;
        }
        t[c] = v;
        c += 1;
    }
    t
}

/// Character classes, one lookup per byte.
pub(crate) static CLASS: [u8; 256] = class_table();

#[inline(always)]
pub(crate) fn has(b: u8, class: u8) -> bool {
    CLASS[b as usize] & class != 0
}

/// Linear white space inside a header value: SP, HT, and the CR/LF of a folded line.
#[inline(always)]
pub(crate) fn is_ws(b: u8) -> bool {
    has(b, WS)
}

/// RFC 3261 `token` characters.
#[inline(always)]
pub(crate) fn is_token(b: u8) -> bool {
    has(b, TOKEN)
}

/// Position of `needle` in `hay`: a plain loop for short slices (the common case inside one
/// header value, where memchr's dispatch costs more than it saves), memchr for longer ones.
#[inline]
pub(crate) fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    if hay.len() < 32 {
        hay.iter().position(|&c| c == needle)
    } else {
        memchr::memchr(needle, hay)
    }
}

#[inline]
pub(crate) fn at(buf: &[u8], i: usize) -> u8 {
    buf.get(i).copied().unwrap_or(0)
}

#[inline]
pub(crate) fn skip_ws(buf: &[u8], mut i: usize, end: usize) -> usize {
    while i < end && is_ws(at(buf, i)) {
        i += 1;
    }
    i
}

#[inline]
pub(crate) fn skip_token(buf: &[u8], mut i: usize, end: usize) -> usize {
    while i < end && is_token(at(buf, i)) {
        i += 1;
    }
    i
}

/// `sp` without white space at either end.
#[inline]
pub(crate) fn trim(buf: &[u8], sp: Span) -> Span {
    let mut s = sp.s();
    let mut e = sp.e().min(buf.len());
    while s < e && is_ws(at(buf, s)) {
        s += 1;
    }
    while e > s && is_ws(at(buf, e - 1)) {
        e -= 1;
    }
    Span::new(s, e)
}

/// Outcome of reading an unsigned decimal number.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Num {
    /// Fits in a u32.
    Ok(u32),
    /// Only digits, but above u32::MAX.
    Overflow,
    /// Empty or not only digits.
    Bad,
}

pub(crate) fn parse_num(b: &[u8]) -> Num {
    if b.is_empty() {
        return Num::Bad;
    }
    let mut v: u64 = 0;
    let mut over = false;
    for &c in b {
        if !c.is_ascii_digit() {
            return Num::Bad;
        }
        if !over {
            v = v * 10 + u64::from(c - b'0');
            if v > u64::from(u32::MAX) {
                over = true;
            }
        }
    }
    if over {
        Num::Overflow
    } else {
        Num::Ok(v as u32)
    }
}

/// `i` is at a `"`: the index just past the closing quote, or None when unterminated.
pub(crate) fn scan_quoted(buf: &[u8], mut i: usize, end: usize) -> Option<usize> {
    i += 1;
    while i < end {
        match at(buf, i) {
            b'"' => return Some(i + 1),
            b'\\' => {
                // quoted-pair: never escapes CR or LF.
                if matches!(at(buf, i + 1), b'\r' | b'\n') {
                    return None;
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    None
}

/// Index of the next comma at top level (not inside quotes or `<>`) in `[i, end)`, or `end`.
pub(crate) fn next_comma(buf: &[u8], mut i: usize, end: usize) -> usize {
    let end = end.min(buf.len());
    while i < end {
        let Some(k) = memchr::memchr3(b',', b'"', b'<', &buf[i..end]) else {
            return end;
        };
        i += k;
        match buf[i] {
            b',' => return i,
            b'"' => match scan_quoted(buf, i, end) {
                Some(j) => i = j,
                None => return end,
            },
            // `<`: skip to the matching `>` (a URI holds no `>`).
            _ => match find_byte(b'>', &buf[i..end]) {
                Some(k) => i += k + 1,
                None => return end,
            },
        }
    }
    end
}

/// Iterator over the comma-separated values of a header value (trimmed; may yield empty spans).
pub(crate) struct CommaIter<'a> {
    buf: &'a [u8],
    i: usize,
    end: usize,
    done: bool,
}

impl<'a> CommaIter<'a> {
    pub(crate) fn new(buf: &'a [u8], sp: Span) -> Self {
        CommaIter {
            buf,
            i: sp.s(),
            end: sp.e().min(buf.len()),
            done: sp.is_empty(),
        }
    }
}

impl Iterator for CommaIter<'_> {
    type Item = Span;
    fn next(&mut self) -> Option<Span> {
        if self.done {
            return None;
        }
        let c = next_comma(self.buf, self.i, self.end);
        let item = trim(self.buf, Span::new(self.i, c));
        if c >= self.end {
            self.done = true;
        } else {
            self.i = c + 1;
        }
        Some(item)
    }
}

/// One generic parameter: `name` or `name=value` (value raw, quotes included if quoted).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RawParam {
    pub name: Span,
    pub value: Option<Span>,
}

/// Reads the next `; name [= value]` of a header-parameter list in `[*i, end)`.
/// None at the end; Some(Err) on bad syntax (empty name, stray characters, open quote).
pub(crate) fn next_param(buf: &[u8], i: &mut usize, end: usize) -> Option<Result<RawParam, ()>> {
    let mut j = skip_ws(buf, *i, end);
    if j >= end {
        *i = end;
        return None;
    }
    if at(buf, j) != b';' {
        *i = end;
        return Some(Err(()));
    }
    j = skip_ws(buf, j + 1, end);
    let ns = j;
    j = skip_token(buf, j, end);
    if j == ns {
        *i = end;
        return Some(Err(()));
    }
    let name = Span::new(ns, j);
    let k = skip_ws(buf, j, end);
    let mut value = None;
    if k < end && at(buf, k) == b'=' {
        let vs = skip_ws(buf, k + 1, end);
        let ve = if at(buf, vs) == b'"' && vs < end {
            match scan_quoted(buf, vs, end) {
                Some(e) => e,
                None => {
                    *i = end;
                    return Some(Err(()));
                }
            }
        } else {
            let mut e = vs;
            while e < end && !matches!(at(buf, e), b';' | b',' | b'"') && !is_ws(at(buf, e)) {
                e += 1;
            }
            e
        };
        if ve == vs {
            *i = end;
            return Some(Err(()));
        }
        value = Some(Span::new(vs, ve));
        j = ve;
    }
    *i = j;
    Some(Ok(RawParam { name, value }))
}

/// Strips the quotes of a quoted-string value; other values are returned as they are.
pub(crate) fn unquote(v: &[u8]) -> &[u8] {
    if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

/// Appends `n` in decimal (no allocation).
pub fn push_u32(out: &mut Vec<u8>, n: u32) {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    let mut n = n;
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}
