//! HTTP Digest for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760): response computation,
//! stateless nonces, challenge and credential header values. Both sides: the registrar verifies,
//! outbound registration answers challenges.
//!
//! Owns: the digest arithmetic and the nonce format. Must not: read clocks or randomness (the
//! caller passes time and cnonce/secret bytes), look up accounts, or allocate per request.
//!
//! The API is a contract other modules code against (registrar, outbound registration).

/// Digest algorithm. `-sess` variants are not supported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// From the `algorithm=` parameter (case-insensitive); absent means MD5 (RFC 2617).
    pub fn from_param(value: Option<&[u8]>) -> Option<Algorithm> {
        match value {
            None => Some(Algorithm::Md5),
            Some(v) if v.eq_ignore_ascii_case(b"MD5") => Some(Algorithm::Md5),
            Some(v) if v.eq_ignore_ascii_case(b"SHA-256") => Some(Algorithm::Sha256),
            Some(_) => None,
        }
    }
    /// As written in headers: `MD5`, `SHA-256`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }
}

/// A lowercase hex digest (32 chars for MD5, 64 for SHA-256), stored inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex {
    buf: [u8; 64],
    len: u8,
}

impl Default for Hex {
    fn default() -> Self {
        Hex {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl Hex {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    fn from_digest(bytes: &[u8]) -> Hex {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut h = Hex {
            buf: [0; 64],
            len: 0,
        };
        for (i, b) in bytes.iter().take(32).enumerate() {
            h.buf[2 * i] = HEX[(b >> 4) as usize];
            h.buf[2 * i + 1] = HEX[(b & 0xf) as usize];
        }
        h.len = (bytes.len().min(32) * 2) as u8;
        h
    }
}

/// Hash the concatenation of `parts` with `alg` and return it as lowercase hex.
fn hash_parts(alg: Algorithm, parts: &[&[u8]]) -> Hex {
    use md5::Digest as _;
    match alg {
        Algorithm::Md5 => {
            let mut h = md5::Md5::new();
            for p in parts {
                h.update(p);
            }
            Hex::from_digest(&h.finalize())
        }
        Algorithm::Sha256 => {
            let mut h = sha2::Sha256::new();
            for p in parts {
                h.update(p);
            }
            Hex::from_digest(&h.finalize())
        }
    }
}

impl std::fmt::Debug for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(self.as_bytes()).unwrap_or("?"))
    }
}

/// HA1 = H(username ":" realm ":" password). Precompute per account and algorithm.
pub fn ha1(alg: Algorithm, username: &[u8], realm: &[u8], password: &[u8]) -> Hex {
    hash_parts(alg, &[username, b":", realm, b":", password])
}

/// The expected `response=`: with `qop=auth`, H(HA1:nonce:nc:cnonce:auth:HA2), else
/// H(HA1:nonce:HA2); HA2 = H(method:digest-uri).
pub fn response(
    alg: Algorithm,
    ha1: &Hex,
    method: &[u8],
    digest_uri: &[u8],
    nonce: &[u8],
    qop_auth: Option<(&[u8], &[u8])>, // (nc, cnonce) when qop=auth
) -> Hex {
    let ha2 = hash_parts(alg, &[method, b":", digest_uri]);
    match qop_auth {
        Some((nc, cnonce)) => hash_parts(
            alg,
            &[
                ha1.as_bytes(),
                b":",
                nonce,
                b":",
                nc,
                b":",
                cnonce,
                b":auth:",
                ha2.as_bytes(),
            ],
        ),
        None => hash_parts(alg, &[ha1.as_bytes(), b":", nonce, b":", ha2.as_bytes()]),
    }
}

/// Constant-time comparison of a received `response=` with the expected one (case-insensitive hex).
pub fn response_matches(expected: &Hex, received: &[u8]) -> bool {
    let exp = expected.as_bytes();
    if exp.len() != received.len() {
        return false;
    }
    let mut diff = 0u8;
    for (a, b) in exp.iter().zip(received) {
        diff |= a ^ b.to_ascii_lowercase();
    }
    diff == 0
}

/// Length of the nonces made by [`NonceKey::make`]: 30 bytes in base64url (format on [`NonceKey`]).
pub const NONCE_LEN: usize = 40;

/// Nonce layout before encoding: 8 bytes big-endian ms timestamp, 4 bytes salt (the low 32 bits
/// of the caller's salt), then the first 18 bytes (144 bits) of
/// HMAC-SHA256(secret, timestamp ‖ salt).
const NONCE_RAW: usize = 30;
const NONCE_MACED: usize = 12;
const NONCE_TAG: usize = NONCE_RAW - NONCE_MACED;
const _: () = assert!(NONCE_RAW % 3 == 0 && NONCE_RAW / 3 * 4 == NONCE_LEN);

/// How far in the future (ms, on the checker's clock) a nonce's timestamp may be and still be
/// accepted: clocks of shards/hosts sharing a secret are not exactly in step.
pub const NONCE_MAX_SKEW_MS: u64 = 5_000;

/// What a received nonce is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceCheck {
    /// Made by us, within its lifetime.
    Fresh,
    /// Made by us, but older than the lifetime: answer 401 with `stale=true`.
    Stale,
    /// Not made by us (bad MAC, bad format, from the future).
    Invalid,
}

/// Secret for stateless nonces: a keyed MAC over a timestamp, so any shard (and any restart
/// that keeps the secret) can verify a nonce without state.
///
/// Nonce format ([`NONCE_LEN`] = 40 chars of base64url, RFC 4648 §5, no padding; all are SIP
/// token characters, so the nonce is safe quoted or not): the base64url of 30 bytes =
/// `timestamp_ms: u64 BE (8) ‖ salt: u32 BE (4) ‖ HMAC-SHA256(secret, timestamp ‖ salt)[..18]`.
/// Decoding is strict (30 is a multiple of 3, so there are no spare bits: one string per nonce).
///
/// [`NonceKey::check`] at `now_ms`, with `ts` the nonce's timestamp:
/// - `Invalid`: wrong length, a byte outside the base64url alphabet, a MAC mismatch (compared
///   in constant time), or `ts > now_ms + NONCE_MAX_SKEW_MS`;
/// - `Fresh`: `now_ms - ts <= lifetime_ms` (age exactly equal to the lifetime is still fresh;
///   a timestamp up to the skew in the future counts as age 0);
/// - `Stale`: older than that.
#[derive(Clone)]
pub struct NonceKey {
    /// HMAC-SHA256 keyed with the secret, inner/outer pads already absorbed: each nonce costs
    /// two SHA-256 compressions instead of four.
    mac: hmac::Hmac<sha2::Sha256>,
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The 6-bit value of a base64url character, or 0xff.
#[inline]
fn b64url_value(c: u8) -> u8 {
    match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => 0xff,
    }
}

impl NonceKey {
    pub fn new(secret: [u8; 32]) -> Self {
        use hmac::digest::KeyInit;
        // HMAC zero-pads a short key to the block size (RFC 2104 §2), so keying with the secret
        // followed by zeros up to 64 bytes is exactly HMAC keyed with the 32-byte secret, and
        // the fixed-size constructor cannot fail.
        let mut key = [0u8; 64];
        key[..32].copy_from_slice(&secret);
        let mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new(&key.into());
        Self { mac }
    }

    /// A nonce for time `now_ms` (ms on the caller's clock) and `salt` (e.g. a per-request
    /// counter, so two challenges in the same ms differ). Writes `NONCE_LEN` bytes of token chars.
    /// Only the low 32 bits of `salt` are used.
    pub fn make(&self, now_ms: u64, salt: u64, out: &mut [u8; NONCE_LEN]) {
        use hmac::Mac as _;
        let mut raw = [0u8; NONCE_RAW];
        raw[..8].copy_from_slice(&now_ms.to_be_bytes());
        raw[8..NONCE_MACED].copy_from_slice(&(salt as u32).to_be_bytes());
        let mut mac = self.mac.clone();
        mac.update(&raw[..NONCE_MACED]);
        let tag = mac.finalize().into_bytes();
        raw[NONCE_MACED..].copy_from_slice(&tag[..NONCE_TAG]);
        for (chunk, enc) in raw.chunks_exact(3).zip(out.chunks_exact_mut(4)) {
            let n = u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]);
            enc[0] = B64URL[(n >> 18) as usize & 63];
            enc[1] = B64URL[(n >> 12) as usize & 63];
            enc[2] = B64URL[(n >> 6) as usize & 63];
            enc[3] = B64URL[n as usize & 63];
        }
    }

    /// Check a nonce at `now_ms` against a lifetime. See the type docs for the exact rules.
    pub fn check(&self, nonce: &[u8], now_ms: u64, lifetime_ms: u64) -> NonceCheck {
        use hmac::Mac as _;
        if nonce.len() != NONCE_LEN {
            return NonceCheck::Invalid;
        }
        let mut raw = [0u8; NONCE_RAW];
        let mut bad = 0u8;
        for (enc, chunk) in nonce.chunks_exact(4).zip(raw.chunks_exact_mut(3)) {
            let mut n = 0u32;
            for &c in enc {
                let v = b64url_value(c);
                bad |= v & 0xc0;
                n = n << 6 | u32::from(v & 63);
            }
            chunk[0] = (n >> 16) as u8;
            chunk[1] = (n >> 8) as u8;
            chunk[2] = n as u8;
        }
        if bad != 0 {
            return NonceCheck::Invalid;
        }
        let mut mac = self.mac.clone();
        mac.update(&raw[..NONCE_MACED]);
        // Constant time (subtle) over the truncated tag.
        if mac.verify_truncated_left(&raw[NONCE_MACED..]).is_err() {
            return NonceCheck::Invalid;
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&raw[..8]);
        let ts = u64::from_be_bytes(ts);
        if ts > now_ms.saturating_add(NONCE_MAX_SKEW_MS) {
            return NonceCheck::Invalid;
        }
        if now_ms.saturating_sub(ts) <= lifetime_ms {
            NonceCheck::Fresh
        } else {
            NonceCheck::Stale
        }
    }
}

/// Appends `value` as a quoted-string: `"` and `\` escaped, CR and LF dropped (a header value
/// cannot hold them, and dropping them keeps a bad value from splitting the header; such a value
/// then simply fails to authenticate). With `escaped`, `value` is quoted-string content as
/// [`super::parse_auth`] returns it (quoted-pairs kept): each `\x` is read as `x` first, so the
/// output is escaped exactly once.
fn push_quoted(out: &mut Vec<u8>, value: &[u8], escaped: bool) {
    out.push(b'"');
    if !value
        .iter()
        .any(|&c| matches!(c, b'"' | b'\\' | b'\r' | b'\n'))
    {
        out.extend_from_slice(value);
    } else {
        let mut i = 0;
        while i < value.len() {
            let mut c = value[i];
            if escaped && c == b'\\' && i + 1 < value.len() {
                i += 1;
                c = value[i];
            }
            i += 1;
            match c {
                b'\r' | b'\n' => {}
                b'"' | b'\\' => out.extend_from_slice(&[b'\\', c]),
                _ => out.push(c),
            }
        }
    }
    out.push(b'"');
}

/// Appends quoted-string content from the parser with its quoted-pairs resolved (`\x` → `x`):
/// the value that goes into the hashes.
fn push_unescaped(out: &mut Vec<u8>, raw: &[u8]) {
    let mut i = 0;
    while i < raw.len() {
        let mut c = raw[i];
        if c == b'\\' && i + 1 < raw.len() {
            i += 1;
            c = raw[i];
        }
        i += 1;
        out.push(c);
    }
}

/// Writes a challenge header value (for WWW-Authenticate / Proxy-Authenticate) into `out`
/// (appends): `Digest realm="…", nonce="…", algorithm=…, qop="auth"[, stale=true]`.
/// `algorithm` is always written (RFC 8760 §2.1: SIP peers need it to pick SHA-256). `realm` and
/// `nonce` are plain values: `"` and `\` are escaped, CR/LF dropped.
pub fn write_challenge(out: &mut Vec<u8>, alg: Algorithm, realm: &[u8], nonce: &[u8], stale: bool) {
    out.extend_from_slice(b"Digest realm=");
    push_quoted(out, realm, false);
    out.extend_from_slice(b", nonce=");
    push_quoted(out, nonce, false);
    out.extend_from_slice(b", algorithm=");
    out.extend_from_slice(alg.name().as_bytes());
    out.extend_from_slice(b", qop=\"auth\"");
    if stale {
        out.extend_from_slice(b", stale=true");
    }
}

/// Client side: the parameters of an Authorization / Proxy-Authorization we send.
pub struct Credentials<'a> {
    pub username: &'a [u8],
    pub password: &'a [u8],
    pub method: &'a [u8],
    pub digest_uri: &'a [u8],
    /// Our cnonce (caller supplies randomness) and the nonce count for this nonce.
    pub cnonce: &'a [u8],
    pub nc: u32,
}

/// What the challenge's `qop` list lets us answer with.
fn offered_qop(qop: Option<&[u8]>) -> Result<bool, &'static str> {
    let Some(list) = qop else {
        return Ok(false);
    };
    let mut any = false;
    for item in list.split(|&c| c == b',') {
        let item = item.trim_ascii();
        if item.eq_ignore_ascii_case(b"auth") {
            return Ok(true);
        }
        any |= !item.is_empty();
    }
    if any {
        Err("challenge offers no supported qop (only auth is)")
    } else {
        // `qop=""`: nothing offered, as if absent.
        Ok(false)
    }
}

/// Client side: answer a parsed challenge (`sip::parse_auth` of a WWW-/Proxy-Authenticate value)
/// by appending the Authorization header value to `out`. Err when the challenge cannot be answered
/// (not Digest, unsupported algorithm or qop, missing realm/nonce); `out` is then unchanged.
///
/// Writes `Digest username="…", realm="…", nonce="…", uri="…", response="…", algorithm=…`
/// then, when the challenge offers `auth` in its qop list, `, cnonce="…", nc=XXXXXXXX, qop=auth`
/// (`nc` is `creds.nc` as 8 lowercase hex digits), else nothing (RFC 2069 form), then
/// `, opaque="…"` when the challenge has one. Realm, nonce and opaque are echoed with their
/// quoted-pairs resolved and re-escaped; the hashes use the resolved realm and nonce.
pub fn write_authorization(
    out: &mut Vec<u8>,
    challenge: &super::AuthValue,
    creds: &Credentials,
) -> Result<(), &'static str> {
    if !challenge.is_digest() {
        return Err("not a Digest challenge");
    }
    let d = &challenge.digest;
    let realm = d.realm.ok_or("challenge without realm")?;
    let nonce = d.nonce.ok_or("challenge without nonce")?;
    let alg = Algorithm::from_param(d.algorithm).ok_or("unsupported digest algorithm")?;
    let qop = offered_qop(d.qop)?;

    let mut nc = [0u8; 8];
    for (i, c) in nc.iter_mut().enumerate() {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        *c = HEX[(creds.nc >> (28 - 4 * i) & 0xf) as usize];
    }

    // Resolve realm and nonce into scratch space at the end of `out`, hash, then drop it.
    let base = out.len();
    push_unescaped(out, realm);
    let realm_end = out.len();
    push_unescaped(out, nonce);
    let h1 = ha1(alg, creds.username, &out[base..realm_end], creds.password);
    let qop_auth = if qop {
        Some((&nc[..], creds.cnonce))
    } else {
        None
    };
    let resp = response(
        alg,
        &h1,
        creds.method,
        creds.digest_uri,
        &out[realm_end..],
        qop_auth,
    );
    out.truncate(base);

    out.extend_from_slice(b"Digest username=");
    push_quoted(out, creds.username, false);
    out.extend_from_slice(b", realm=");
    push_quoted(out, realm, true);
    out.extend_from_slice(b", nonce=");
    push_quoted(out, nonce, true);
    out.extend_from_slice(b", uri=");
    push_quoted(out, creds.digest_uri, false);
    out.extend_from_slice(b", response=\"");
    out.extend_from_slice(resp.as_bytes());
    out.extend_from_slice(b"\", algorithm=");
    out.extend_from_slice(alg.name().as_bytes());
    if qop {
        out.extend_from_slice(b", cnonce=");
        push_quoted(out, creds.cnonce, false);
        out.extend_from_slice(b", nc=");
        out.extend_from_slice(&nc);
        out.extend_from_slice(b", qop=auth");
    }
    if let Some(opaque) = d.opaque {
        out.extend_from_slice(b", opaque=");
        push_quoted(out, opaque, true);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example_response() {
        // RFC 2617 §3.5: Mufasa / "Circle Of Life", qop=auth.
        let h = ha1(
            Algorithm::Md5,
            b"Mufasa",
            b"testrealm@host.com",
            b"Circle Of Life",
        );
        let r = response(
            Algorithm::Md5,
            &h,
            b"GET",
            b"/dir/index.html",
            b"dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some((b"00000001", b"0a4f113b")),
        );
        assert_eq!(r.as_bytes(), b"6629fae49393a05397450978507c4ef1");
        assert!(response_matches(&r, b"6629FAE49393A05397450978507C4EF1"));
        assert!(!response_matches(&r, b"6629fae49393a05397450978507c4ef0"));
    }

    #[test]
    fn rfc7616_sha256_example_response() {
        // RFC 7616 §3.9.1: Mufasa / "Circle of Life", SHA-256, qop=auth.
        let h = ha1(
            Algorithm::Sha256,
            b"Mufasa",
            b"http-auth@example.org",
            b"Circle of Life",
        );
        let r = response(
            Algorithm::Sha256,
            &h,
            b"GET",
            b"/dir/index.html",
            b"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            Some((b"00000001", b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
        );
        assert_eq!(
            r.as_bytes(),
            b"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    const SECRET: [u8; 32] = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
        25, 26, 27, 28, 29, 30, 31,
    ];

    fn nonce(key: &NonceKey, now: u64, salt: u64) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        key.make(now, salt, &mut n);
        n
    }

    #[test]
    fn nonce_format_vector() {
        // Independent: python3 -c "import hmac,hashlib,base64,struct; m=struct.pack('>QI',
        // 1700000000123, 0xdeadbeef); t=hmac.new(bytes(range(32)), m, hashlib.sha256).digest()
        // [:18]; print(base64.urlsafe_b64encode(m+t).decode())"
        let key = NonceKey::new(SECRET);
        // Only the low 32 bits of the salt are used.
        let n = nonce(&key, 1_700_000_000_123, 0x1234_5678_dead_beef);
        assert_eq!(&n, b"AAABi8_laHverb7vuYsFM9bUHaBACpUkJms4xgzA");
        assert!(n
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn nonce_lifetime_boundaries() {
        let key = NonceKey::new(SECRET);
        let t = 1_000_000;
        let life = 30_000;
        let n = nonce(&key, t, 7);
        assert_eq!(key.check(&n, t, life), NonceCheck::Fresh);
        // Age == lifetime is fresh (inclusive); one ms more is stale.
        assert_eq!(key.check(&n, t + life, life), NonceCheck::Fresh);
        assert_eq!(key.check(&n, t + life + 1, life), NonceCheck::Stale);
        assert_eq!(key.check(&n, u64::MAX, life), NonceCheck::Stale);
        assert_eq!(key.check(&n, t, 0), NonceCheck::Fresh);
        assert_eq!(key.check(&n, t + 1, 0), NonceCheck::Stale);
        // From the future: up to the skew is accepted (as age 0), beyond it is not ours.
        assert_eq!(
            key.check(&n, t - NONCE_MAX_SKEW_MS, life),
            NonceCheck::Fresh
        );
        assert_eq!(
            key.check(&n, t - NONCE_MAX_SKEW_MS - 1, life),
            NonceCheck::Invalid
        );
        assert_eq!(key.check(&n, 0, u64::MAX), NonceCheck::Invalid);
        // Extremes of the clock do not overflow.
        let n = nonce(&key, u64::MAX, u64::MAX);
        assert_eq!(key.check(&n, u64::MAX, 0), NonceCheck::Fresh);
        assert_eq!(
            key.check(&n, u64::MAX - NONCE_MAX_SKEW_MS, 0),
            NonceCheck::Fresh
        );
        let n = nonce(&key, 0, 0);
        assert_eq!(key.check(&n, 0, 0), NonceCheck::Fresh);
        assert_eq!(key.check(&n, u64::MAX, u64::MAX), NonceCheck::Fresh);
    }

    #[test]
    fn nonce_salt_distinguishes() {
        let key = NonceKey::new(SECRET);
        assert_ne!(nonce(&key, 5, 1), nonce(&key, 5, 2));
        assert_ne!(nonce(&key, 5, 1), nonce(&key, 6, 1));
        assert_eq!(nonce(&key, 5, 1), nonce(&key, 5, 1));
    }

    #[test]
    fn nonce_tampered_byte_is_invalid() {
        let key = NonceKey::new(SECRET);
        let t = 1_700_000_000_000;
        let n = nonce(&key, t, 42);
        for i in 0..NONCE_LEN {
            // Every other base64url character at this position (decodes to different bits:
            // strict decoding has no spare bits), and a few non-alphabet bytes.
            for &c in B64URL.iter().chain(b"=+/ \"\0\xff") {
                if c == n[i] {
                    continue;
                }
                let mut m = n;
                m[i] = c;
                assert_eq!(
                    key.check(&m, t, 60_000),
                    NonceCheck::Invalid,
                    "pos {i} -> {c}"
                );
            }
            // Flipping any single bit.
            for bit in 0..8 {
                let mut m = n;
                m[i] ^= 1 << bit;
                assert_eq!(key.check(&m, t, 60_000), NonceCheck::Invalid);
            }
        }
    }

    #[test]
    fn nonce_other_key_or_shape_is_invalid() {
        let key = NonceKey::new(SECRET);
        let mut other = SECRET;
        other[31] ^= 1;
        let other = NonceKey::new(other);
        let t = 1_700_000_000_000;
        let n = nonce(&key, t, 1);
        assert_eq!(other.check(&n, t, 60_000), NonceCheck::Invalid);
        assert_eq!(
            key.check(&n[..NONCE_LEN - 1], t, 60_000),
            NonceCheck::Invalid
        );
        let mut longer = [b'A'; NONCE_LEN + 1];
        longer[..NONCE_LEN].copy_from_slice(&n);
        assert_eq!(key.check(&longer, t, 60_000), NonceCheck::Invalid);
        assert_eq!(key.check(b"", t, 60_000), NonceCheck::Invalid);
        assert_eq!(
            key.check(&[b'A'; NONCE_LEN], t, 60_000),
            NonceCheck::Invalid
        );
        // The same content in padded/standard base64 is not accepted.
        let mut std64 = n;
        for c in std64.iter_mut() {
            *c = match *c {
                b'-' => b'+',
                b'_' => b'/',
                x => x,
            };
        }
        if std64 != n {
            assert_eq!(key.check(&std64, t, 60_000), NonceCheck::Invalid);
        }
    }

    #[test]
    fn challenge_text() {
        let mut out = b"WWW-Authenticate: ".to_vec();
        write_challenge(&mut out, Algorithm::Md5, b"example.com", b"abc", false);
        assert_eq!(
            out,
            br#"WWW-Authenticate: Digest realm="example.com", nonce="abc", algorithm=MD5, qop="auth""#
        );
        out.clear();
        write_challenge(&mut out, Algorithm::Sha256, b"a\"b\\c\r\nd", b"n", true);
        assert_eq!(
            out,
            br#"Digest realm="a\"b\\cd", nonce="n", algorithm=SHA-256, qop="auth", stale=true"#
        );
    }

    fn answer(challenge: &[u8]) -> Result<Vec<u8>, &'static str> {
        let c = crate::sip::parse_auth(challenge).map_err(|e| e.0)?;
        let creds = Credentials {
            username: b"bob",
            password: b"pw",
            method: b"INVITE",
            digest_uri: b"sip:carol@example.com",
            cnonce: b"cn",
            nc: 0x1a,
        };
        let mut out = b"x".to_vec();
        let r = write_authorization(&mut out, &c, &creds);
        if r.is_err() {
            assert_eq!(out, b"x", "out untouched on Err");
        }
        r.map(|()| out[1..].to_vec())
    }

    #[test]
    fn authorization_refusals() {
        assert!(answer(br#"Basic realm="r""#).is_err());
        assert!(answer(br#"Digest nonce="n""#).is_err());
        assert!(answer(br#"Digest realm="r""#).is_err());
        assert!(answer(br#"Digest realm="r", nonce="n", algorithm=MD5-sess"#).is_err());
        assert!(answer(br#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#).is_err());
        assert!(answer(br#"Digest realm="r", nonce="n", qop="auth-int""#).is_err());
        assert!(answer(br#"Digest realm="r", nonce="n", qop="auth-conf, auth-int""#).is_err());
    }

    #[test]
    fn authorization_qop_choices() {
        // qop lists: auth anywhere, any case, with white space.
        for qop in [
            r#""auth,auth-int""#,
            r#""auth-int, AUTH""#,
            "auth",
            r#"" auth ""#,
        ] {
            let ch = format!(r#"digest realm="r", nonce="n", qop={qop}, algorithm=sha-256"#);
            let a = answer(ch.as_bytes()).unwrap();
            let text = String::from_utf8(a).unwrap();
            assert!(
                text.ends_with(r#", cnonce="cn", nc=0000001a, qop=auth"#),
                "{text}"
            );
            assert!(text.contains("algorithm=SHA-256"), "{text}");
        }
        // No qop (or an empty list): RFC 2069 form; opaque echoed; algorithm absent = MD5.
        for ch in [
            &br#"Digest realm="r", nonce="n", opaque="o\"p""#[..],
            br#"Digest realm="r", nonce="n", qop="", opaque="o\"p""#,
        ] {
            let a = answer(ch).unwrap();
            let h = ha1(Algorithm::Md5, b"bob", b"r", b"pw");
            let r = response(
                Algorithm::Md5,
                &h,
                b"INVITE",
                b"sip:carol@example.com",
                b"n",
                None,
            );
            let want = format!(
                r#"Digest username="bob", realm="r", nonce="n", uri="sip:carol@example.com", response="{}", algorithm=MD5, opaque="o\"p""#,
                std::str::from_utf8(r.as_bytes()).unwrap()
            );
            assert_eq!(String::from_utf8(a).unwrap(), want);
        }
    }

    #[test]
    fn nc_is_eight_lowercase_hex_digits() {
        let c = crate::sip::parse_auth(br#"Digest realm="r", nonce="n", qop="auth""#).unwrap();
        for (nc, want) in [
            (1, "00000001"),
            (0xdead_beef, "deadbeef"),
            (u32::MAX, "ffffffff"),
        ] {
            let creds = Credentials {
                username: b"u",
                password: b"p",
                method: b"REGISTER",
                digest_uri: b"sip:r",
                cnonce: b"c",
                nc,
            };
            let mut out = Vec::new();
            write_authorization(&mut out, &c, &creds).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains(&format!(", nc={want}, ")), "{text}");
        }
    }
}
