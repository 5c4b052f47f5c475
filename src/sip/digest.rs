//! HTTP Digest for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760): response computation,
//! stateless nonces, challenge and credential header values. Both sides: the registrar verifies,
//! outbound registration answers challenges.
//!
//! Owns: the digest arithmetic and the nonce format. Must not: read clocks or randomness (the
//! caller passes time and cnonce/secret bytes), look up accounts, or allocate per request.
//!
//! SKELETON: the API below is the contract; the digest helper implements it.

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

/// Length of the nonces made by [`NonceKey::make`].
pub const NONCE_LEN: usize = 40;

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
#[derive(Clone)]
pub struct NonceKey {
    secret: [u8; 32],
}

impl NonceKey {
    pub fn new(secret: [u8; 32]) -> Self {
        Self { secret }
    }
    /// A nonce for time `now_ms` (ms on the caller's clock) and `salt` (e.g. a per-request
    /// counter, so two challenges in the same ms differ). Writes `NONCE_LEN` bytes of token chars.
    pub fn make(&self, now_ms: u64, salt: u64, out: &mut [u8; NONCE_LEN]) {
        let _ = (now_ms, salt, out, &self.secret);
        todo!()
    }
    /// Check a nonce at `now_ms` against a lifetime.
    pub fn check(&self, nonce: &[u8], now_ms: u64, lifetime_ms: u64) -> NonceCheck {
        let _ = (nonce, now_ms, lifetime_ms);
        todo!()
    }
}

/// Writes a challenge header value (for WWW-Authenticate / Proxy-Authenticate) into `out`
/// (appends): `Digest realm="…", nonce="…", algorithm=…, qop="auth"[, stale=true]`.
pub fn write_challenge(out: &mut Vec<u8>, alg: Algorithm, realm: &[u8], nonce: &[u8], stale: bool) {
    let _ = (out, alg, realm, nonce, stale);
    todo!()
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

/// Client side: answer a parsed challenge (`sip::parse_auth` of a WWW-/Proxy-Authenticate value)
/// by appending the Authorization header value to `out`. Err when the challenge cannot be answered
/// (not Digest, unsupported algorithm or qop, missing realm/nonce).
pub fn write_authorization(
    out: &mut Vec<u8>,
    challenge: &super::AuthValue,
    creds: &Credentials,
) -> Result<(), &'static str> {
    let _ = (out, challenge, creds);
    todo!()
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
}
