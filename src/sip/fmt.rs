//! Small byte formatters for the hot path: decimal and hex numbers, IP literals, header text
//! without CR/LF, and a per-second cache of the `Date` header text. None of them goes through
//! `core::fmt` (hundreds of instructions a call) in the common case.
//!
//! Owns: turning numbers and addresses into bytes, and IP literals back into addresses.
//! Must not: allocate beyond the caller's `Vec`, read a clock, or differ from `std`'s own
//! formatting and parsing (the fast paths fall back to `std` whenever they are not sure).

use std::net::{IpAddr, Ipv4Addr};

/// "00", "01", ... "99".
const DIGITS2: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `v` in decimal (same text as `format!("{v}")`).
#[inline]
pub fn push_dec(out: &mut Vec<u8>, v: u64) {
    if v < 10 {
        out.push(b'0' + v as u8);
        return;
    }
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut n = v;
    while n >= 100 {
        let r = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        tmp[i] = DIGITS2[r];
        tmp[i + 1] = DIGITS2[r + 1];
    }
    if n >= 10 {
        let r = n as usize * 2;
        i -= 2;
        tmp[i] = DIGITS2[r];
        tmp[i + 1] = DIGITS2[r + 1];
    } else {
        i -= 1;
        tmp[i] = b'0' + n as u8;
    }
    out.extend_from_slice(&tmp[i..]);
}

/// A SIP status code (clamped to 100..=699): always three digits.
#[inline]
pub fn push_status(out: &mut Vec<u8>, status: u16) {
    let s = status.clamp(100, 699);
    let r = (s % 100) as usize * 2;
    out.extend_from_slice(&[b'0' + (s / 100) as u8, DIGITS2[r], DIGITS2[r + 1]]);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `v` as 16 lower-case hex digits (same as `format!("{v:016x}")`).
#[inline]
pub fn hex16(v: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    let b = v.to_be_bytes();
    for k in 0..8 {
        out[2 * k] = HEX[(b[k] >> 4) as usize];
        out[2 * k + 1] = HEX[(b[k] & 0xf) as usize];
    }
    out
}

/// True when some byte of `b` may be CR or LF. Exact for "false"; "true" can also mean a byte
/// below 0x0e (TAB, ...), so callers check again byte by byte.
#[inline]
fn may_have_crlf(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Some byte < 14 (CR = 13, LF = 10): the classic "has less than" word trick, exact for n ≤ 128.
    let less = |x: u64| x.wrapping_sub(ONES * 14) & !x & HIGH;
    let mut chunks = b.chunks_exact(8);
    let mut acc = 0u64;
    for c in &mut chunks {
        acc |= less(u64::from_le_bytes([
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
        ]));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Pad with spaces (never < 14).
        let mut w = [b' '; 8];
        w[..rest.len()].copy_from_slice(rest);
        acc |= less(u64::from_le_bytes(w));
    }
    acc != 0
}

/// Copies header text, turning the CR/LF of folded lines into spaces.
#[inline]
pub fn push_clean(out: &mut Vec<u8>, b: &[u8]) {
    let start = out.len();
    out.extend_from_slice(b);
    if may_have_crlf(b) {
        unfold(&mut out[start..]);
    }
}

#[cold]
#[inline(never)]
fn unfold(text: &mut [u8]) {
    for c in text {
        if *c == b'\r' || *c == b'\n' {
            *c = b' ';
        }
    }
}

/// A dotted-quad IPv4 literal in its plain form (1 to 3 digits a part, no leading zero, each at
/// most 255). None for anything else, which may still be an address (the caller asks `std`).
fn plain_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    if b.len() < 7 || b.len() > 15 {
        return None;
    }
    let mut oct = [0u8; 4];
    let mut k = 0;
    let mut val: u32 = 0;
    let mut digits = 0;
    for &c in b {
        if c.is_ascii_digit() {
            if digits == 1 && val == 0 {
                return None; // leading zero: let std decide
            }
            val = val * 10 + u32::from(c - b'0');
            digits += 1;
        } else if c == b'.' && digits > 0 && k < 3 && val <= 255 {
            oct[k] = val as u8;
            k += 1;
            val = 0;
            digits = 0;
        } else {
            return None;
        }
    }
    if k != 3 || digits == 0 || val > 255 {
        return None;
    }
    oct[3] = val as u8;
    Some(Ipv4Addr::from(oct))
}

/// An IP literal host (`1.2.3.4`, `[::1]` or a bare IPv6), exactly as `std`'s parser reads it:
/// a plain dotted quad is decoded here, anything else goes to `str::parse`.
pub fn parse_ip_literal(host: &[u8]) -> Option<IpAddr> {
    if let Some(v4) = plain_ipv4(host) {
        return Some(IpAddr::V4(v4));
    }
    let h = host
        .strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .unwrap_or(host);
    std::str::from_utf8(h).ok()?.parse().ok()
}

/// Every octet as text: three bytes (left-aligned) and the length.
const OCTETS: [([u8; 3], u8); 256] = {
    let mut t = [([0u8; 3], 0u8); 256];
    let mut o = 0;
    while o < 256 {
        let (h, d, u) = ((o / 100) as u8, (o / 10 % 10) as u8, (o % 10) as u8);
        t[o] = if o >= 100 {
            ([b'0' + h, b'0' + d, b'0' + u], 3)
        } else if o >= 10 {
            ([b'0' + d, b'0' + u, 0], 2)
        } else {
            ([b'0' + u, 0, 0], 1)
        };
        o += 1;
    }
    t
};

/// An IPv4 address as `Display` writes it, in a stack buffer: (bytes, zero-padded; length).
#[inline]
fn v4_text(ip: Ipv4Addr) -> ([u8; 16], usize) {
    let mut t = [0u8; 19];
    let o = ip.octets();
    let mut n = 0;
    for k in 0..4 {
        let (text, len) = OCTETS[o[k] as usize];
        t[n..n + 3].copy_from_slice(&text);
        n += len as usize;
        t[n] = b'.';
        n += 1;
    }
    n -= 1;
    t[n] = 0;
    let mut out = [0u8; 16];
    out.copy_from_slice(&t[..16]);
    (out, n)
}

/// The text `Display` gives an IPv4 address, made once to compare several hosts against it.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Text {
    text: [u8; 16],
    len: usize,
}

impl Ipv4Text {
    /// None for an IPv6 address.
    #[inline]
    pub fn of(ip: IpAddr) -> Option<Ipv4Text> {
        match ip {
            IpAddr::V4(v4) => {
                let (text, len) = v4_text(v4);
                Some(Ipv4Text { text, len })
            }
            IpAddr::V6(_) => None,
        }
    }

    /// True when `host` is exactly this text (so it parses to this address). False says
    /// nothing: the host may be the address written another way.
    #[inline]
    pub fn is(&self, host: &[u8]) -> bool {
        if host.len() != self.len {
            return false;
        }
        let mut h = [0u8; 16];
        h[..host.len()].copy_from_slice(host);
        h == self.text
    }
}

/// `parse_ip_literal(host) == Some(ip)`, cheaply when `host` is written the way `Display` writes
/// an IPv4 address (the usual sent-by or Contact host).
#[inline]
pub fn host_is_ip(host: &[u8], ip: IpAddr) -> bool {
    host_is_ip_text(host, ip) || parse_ip_literal(host) == Some(ip)
}

/// True when `host` is exactly the text `Display` gives for `ip`, an IPv4 address (so it parses
/// to `ip`). False says nothing: the host may still be `ip` written another way.
#[inline]
pub fn host_is_ip_text(host: &[u8], ip: IpAddr) -> bool {
    Ipv4Text::of(ip).is_some_and(|t| t.is(host))
}

/// Appends `ip` as `Display` writes it (IPv6 without brackets).
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let (t, n) = v4_text(v4);
            out.extend_from_slice(&t[..n]);
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

/// The `Date` header text of the current second, made once a second (RFC 7231 IMF-fixdate,
/// see [`super::http_date`]). The caller gives the time; the cache never reads a clock.
#[derive(Clone, Copy, Debug)]
pub struct DateCache {
    secs: u64,
    text: [u8; 29],
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache {
            secs: 0,
            text: super::build::http_date(0),
        }
    }
}

impl DateCache {
    /// The text for `unix_secs` (seconds since the Unix epoch).
    #[inline]
    pub fn get(&mut self, unix_secs: u64) -> &[u8; 29] {
        if self.secs != unix_secs {
            self.secs = unix_secs;
            self.text = super::build::http_date(unix_secs);
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_like_display() {
        let cases = [
            0u64,
            7,
            9,
            10,
            42,
            99,
            100,
            101,
            999,
            1000,
            65_535,
            3_600_000,
            u64::from(u32::MAX),
            u64::MAX,
        ];
        for v in cases {
            let mut out = b"x".to_vec();
            push_dec(&mut out, v);
            assert_eq!(out, format!("x{v}").into_bytes(), "{v}");
        }
        for v in (0..100_000u64).step_by(7) {
            let mut out = Vec::new();
            push_dec(&mut out, v);
            assert_eq!(out, v.to_string().into_bytes());
        }
    }

    #[test]
    fn status_three_digits() {
        for (s, t) in [
            (100, "100"),
            (200, "200"),
            (401, "401"),
            (699, "699"),
            (7, "100"),
            (999, "699"),
        ] {
            let mut out = Vec::new();
            push_status(&mut out, s);
            assert_eq!(out, t.as_bytes());
        }
    }

    #[test]
    fn hex_like_display() {
        for v in [0u64, 1, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(hex16(v).to_vec(), format!("{v:016x}").into_bytes());
        }
    }

    #[test]
    fn clean_replaces_only_cr_lf() {
        for text in [
            &b""[..],
            b"abc",
            b"a\r\n b",
            b"exactly8",
            b"tab\tstays",
            b"0123456789abcdef\r\n\tx",
            b"\n",
            b"\x0b\x0c\x0e",
        ] {
            let mut out = b"p".to_vec();
            push_clean(&mut out, text);
            let mut want = b"p".to_vec();
            want.extend(
                text.iter()
                    .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
            );
            assert_eq!(out, want);
        }
        // Every position of a CR or LF in the word and in the tail is found.
        for len in 1..20 {
            for pos in 0..len {
                for bad in [b'\r', b'\n'] {
                    let mut v = vec![b'a'; len];
                    v[pos] = bad;
                    assert!(may_have_crlf(&v), "{len} {pos}");
                    v[pos] = b'a';
                    assert!(!may_have_crlf(&v));
                }
            }
        }
    }

    #[test]
    fn ip_literals_as_std_reads_them() {
        let cases = [
            "1.2.3.4",
            "127.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "10.0.0.1",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "1..3.4",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4 ",
            "1234.1.1.1",
            "a.b.c.d",
            "example.com",
            "::1",
            "[::1]",
            "[2001:db8::1]",
            "::ffff:1.2.3.4",
            "[1.2.3.4]",
            "",
        ];
        for c in cases {
            let h = c.trim_start_matches('[').trim_end_matches(']');
            let want: Option<IpAddr> = if c.starts_with('[') != c.ends_with(']') {
                c.parse().ok()
            } else {
                h.parse().ok()
            };
            assert_eq!(parse_ip_literal(c.as_bytes()), want, "{c}");
        }
    }

    #[test]
    fn host_is_ip_as_parsing_says() {
        let ips: [IpAddr; 4] = [
            "127.0.0.1".parse().unwrap(),
            "10.200.30.4".parse().unwrap(),
            "::1".parse().unwrap(),
            "::ffff:1.2.3.4".parse().unwrap(),
        ];
        let hosts = [
            "127.0.0.1",
            "127.0.0.01",
            "10.200.30.4",
            "10.200.30.40",
            "[::1]",
            "::1",
            "[::ffff:1.2.3.4]",
            "1.2.3.4",
            "example.com",
            "",
        ];
        for ip in ips {
            for h in hosts {
                assert_eq!(
                    host_is_ip(h.as_bytes(), ip),
                    parse_ip_literal(h.as_bytes()) == Some(ip),
                    "{h} {ip}"
                );
            }
        }
        assert!(host_is_ip(b"127.0.0.1", ips[0]));
        assert!(host_is_ip_text(b"10.200.30.4", ips[1]));
        for h in [
            "10.200.30.",
            "10.200.30.44",
            "10.200.3.4",
            "10.200.30.4.",
            "1.200.30.4",
        ] {
            assert!(!host_is_ip_text(h.as_bytes(), ips[1]), "{h}");
        }
        assert!(host_is_ip(b"[::1]", ips[2]));
    }

    #[test]
    fn ip_like_display() {
        for ip in [
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "10.20.30.40",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().into_bytes());
        }
    }

    #[test]
    fn date_cache_follows_the_second() {
        let mut c = DateCache::default();
        assert_eq!(c.get(0), &super::super::build::http_date(0));
        assert_eq!(c.get(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(c.get(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(c.get(784_111_778), b"Sun, 06 Nov 1994 08:49:38 GMT");
        // Going back (a clock step) is followed too.
        assert_eq!(c.get(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
