//! Authorization / Proxy-Authorization / WWW-Authenticate / Proxy-Authenticate values:
//! `scheme param=value, param="quoted", ...`. Digest parameters are picked out; other schemes
//! keep their raw parameters. Quoted values are returned without their quotes (backslash
//! escapes left as they are). Nothing is allocated.

use super::text::{at, is_token, is_ws, scan_quoted, skip_token, skip_ws, unquote};

/// A malformed credentials or challenge value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthError(pub &'static str);

/// Digest parameters (RFC 2617 / RFC 7616 / RFC 8760). All optional; quotes stripped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digest<'a> {
    pub username: Option<&'a [u8]>,
    pub realm: Option<&'a [u8]>,
    pub nonce: Option<&'a [u8]>,
    pub uri: Option<&'a [u8]>,
    pub response: Option<&'a [u8]>,
    pub algorithm: Option<&'a [u8]>,
    pub cnonce: Option<&'a [u8]>,
    pub qop: Option<&'a [u8]>,
    pub nc: Option<&'a [u8]>,
    pub opaque: Option<&'a [u8]>,
    pub stale: Option<&'a [u8]>,
    pub domain: Option<&'a [u8]>,
}

/// A parsed auth header value.
#[derive(Clone, Copy, Debug)]
pub struct AuthValue<'a> {
    /// Scheme as received (`Digest`, or an unknown one).
    pub scheme: &'a [u8],
    /// Everything after the scheme, raw.
    pub params_raw: &'a [u8],
    /// Digest parameters (filled for any scheme that uses name=value pairs).
    pub digest: Digest<'a>,
}

impl<'a> AuthValue<'a> {
    /// True for the Digest scheme (case-insensitive).
    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case(b"Digest")
    }
    /// `stale=true`.
    pub fn is_stale(&self) -> bool {
        self.digest
            .stale
            .is_some_and(|s| s.eq_ignore_ascii_case(b"true"))
    }
    /// Any parameter by name (case-insensitive), quotes stripped.
    pub fn param(&self, name: &str) -> Option<&'a [u8]> {
        let mut it = AuthParams {
            b: self.params_raw,
            i: 0,
        };
        while let Some(Ok((n, v))) = it.next_param() {
            if n.eq_ignore_ascii_case(name.as_bytes()) {
                return Some(v);
            }
        }
        None
    }
}

struct AuthParams<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> AuthParams<'a> {
    /// Next `name = value` (value quotes stripped); None at the end.
    fn next_param(&mut self) -> Option<Result<(&'a [u8], &'a [u8]), AuthError>> {
        let b = self.b;
        let end = b.len();
        let mut i = skip_ws(b, self.i, end);
        // Tolerate empty list elements (`a=b, , c=d`).
        while i < end && b[i] == b',' {
            i = skip_ws(b, i + 1, end);
        }
        if i >= end {
            self.i = end;
            return None;
        }
        self.i = end;
        let ns = i;
        i = skip_token(b, i, end);
        if i == ns {
            return Some(Err(AuthError("bad auth parameter name")));
        }
        let name = &b[ns..i];
        i = skip_ws(b, i, end);
        if at(b, i) != b'=' || i >= end {
            return Some(Err(AuthError("auth parameter without =")));
        }
        i = skip_ws(b, i + 1, end);
        let vs = i;
        if at(b, i) == b'"' && i < end {
            match scan_quoted(b, i, end) {
                Some(e) => i = e,
                None => return Some(Err(AuthError("unterminated quoted string"))),
            }
        } else {
            while i < end && (is_token(b[i]) || matches!(b[i], b'/' | b':' | b'=' | b'@')) {
                i += 1;
            }
        }
        let value = unquote(&b[vs..i]);
        i = skip_ws(b, i, end);
        if i < end {
            if b[i] != b',' {
                return Some(Err(AuthError("garbage after auth parameter")));
            }
            i += 1;
        }
        self.i = i;
        Some(Ok((name, value)))
    }
}

/// Parses an auth header value. Digest values must be well formed; for other schemes a
/// parameter list that does not parse (e.g. a token68 blob) is kept raw without error.
pub fn parse_auth(value: &[u8]) -> Result<AuthValue<'_>, AuthError> {
    let end = value.len();
    let s = skip_ws(value, 0, end);
    let se = skip_token(value, s, end);
    if se == s {
        return Err(AuthError("missing auth scheme"));
    }
    if se < end && !is_ws(value[se]) {
        return Err(AuthError("bad auth scheme"));
    }
    let ps = skip_ws(value, se, end);
    let mut out = AuthValue {
        scheme: &value[s..se],
        params_raw: &value[ps..end],
        digest: Digest::default(),
    };
    let mut it = AuthParams {
        b: out.params_raw,
        i: 0,
    };
    let d = &mut out.digest;
    // Bounded: every iteration consumes at least one byte or ends.
    while let Some(p) = it.next_param() {
        let (n, v) = match p {
            Ok(nv) => nv,
            Err(e) if out.scheme.eq_ignore_ascii_case(b"Digest") => return Err(e),
            Err(_) => {
                *d = Digest::default();
                break;
            }
        };
        let mut low = [0u8; 9];
        if n.len() > low.len() {
            continue;
        }
        for (l, c) in low.iter_mut().zip(n) {
            *l = c.to_ascii_lowercase();
        }
        let slot = match &low[..n.len()] {
            b"username" => &mut d.username,
            b"realm" => &mut d.realm,
            b"nonce" => &mut d.nonce,
            b"uri" => &mut d.uri,
            b"response" => &mut d.response,
            b"algorithm" => &mut d.algorithm,
            b"cnonce" => &mut d.cnonce,
            b"qop" => &mut d.qop,
            b"nc" => &mut d.nc,
            b"opaque" => &mut d.opaque,
            b"stale" => &mut d.stale,
            b"domain" => &mut d.domain,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_credentials() {
        let v = br#"Digest username="bob", realm="example.com", nonce="abc", uri="sip:example.com", response="0123", algorithm=MD5, cnonce="xyz", qop=auth, nc=00000001, opaque="op""#;
        let a = parse_auth(v).unwrap();
        assert!(a.is_digest());
        assert_eq!(a.digest.username, Some(&b"bob"[..]));
        assert_eq!(a.digest.realm, Some(&b"example.com"[..]));
        assert_eq!(a.digest.uri, Some(&b"sip:example.com"[..]));
        assert_eq!(a.digest.qop, Some(&b"auth"[..]));
        assert_eq!(a.digest.nc, Some(&b"00000001"[..]));
        assert_eq!(a.digest.algorithm, Some(&b"MD5"[..]));
        assert_eq!(a.param("OPAQUE"), Some(&b"op"[..]));
    }

    #[test]
    fn challenge_and_unknown_schemes() {
        let c = parse_auth(
            br#"Digest realm="r", nonce="n", qop="auth,auth-int", stale=TRUE, algorithm=SHA-256"#,
        )
        .unwrap();
        assert!(c.is_stale());
        assert_eq!(c.digest.qop, Some(&b"auth,auth-int"[..]));
        assert_eq!(c.digest.algorithm, Some(&b"SHA-256"[..]));
        let u = parse_auth(b"NoOneKnowsThisScheme opaque-data=here").unwrap();
        assert!(!u.is_digest());
        assert_eq!(u.param("opaque-data"), Some(&b"here"[..]));
        let b = parse_auth(b"Basic dXNlcjpwYXNz==").unwrap();
        assert_eq!(b.params_raw, b"dXNlcjpwYXNz==");
        assert!(parse_auth(br#"Digest realm="open"#).is_err());
        assert!(parse_auth(b"Digest realm").is_err());
        assert!(parse_auth(b"").is_err());
    }
}
