//! Digest authentication end to end through the public API: the server side (nonce, challenge,
//! verification) and the client side (answering a parsed challenge) against each other and
//! against values computed independently with python3 `hashlib`.

use proptest::prelude::*;
use sipshard::sip::digest::{
    ha1, response, response_matches, write_authorization, write_challenge, Algorithm, Credentials,
    NonceCheck, NonceKey, NONCE_LEN, NONCE_MAX_SKEW_MS,
};
use sipshard::sip::{parse_auth, HeaderKind, Parser};

const SECRET: [u8; 32] = *b"sipshard-test-secret-32-bytes!!!";
const LIFETIME: u64 = 300_000;

fn creds<'a>(cnonce: &'a [u8], nc: u32) -> Credentials<'a> {
    Credentials {
        username: b"1001",
        password: b"s3cr3t!",
        method: b"REGISTER",
        digest_uri: b"sip:registrar.example.com",
        cnonce,
        nc,
    }
}

/// What the registrar does with a received Authorization value: parse it, check the nonce,
/// recompute the response from the stored HA1 and compare.
fn server_verifies(
    key: &NonceKey,
    now: u64,
    stored_ha1: &sipshard::sip::digest::Hex,
    method: &[u8],
    auth_value: &[u8],
) -> Result<NonceCheck, &'static str> {
    let a = parse_auth(auth_value).map_err(|e| e.0)?;
    assert!(a.is_digest());
    let d = a.digest;
    let alg = Algorithm::from_param(d.algorithm).ok_or("alg")?;
    let nonce = d.nonce.ok_or("nonce")?;
    let check = key.check(nonce, now, LIFETIME);
    if check == NonceCheck::Invalid {
        return Ok(check);
    }
    let qop = match d.qop {
        Some(q) if q == b"auth" => Some((d.nc.ok_or("nc")?, d.cnonce.ok_or("cnonce")?)),
        Some(_) => return Err("qop"),
        None => None,
    };
    let expected = response(alg, stored_ha1, method, d.uri.ok_or("uri")?, nonce, qop);
    if response_matches(&expected, d.response.ok_or("response")?) {
        Ok(check)
    } else {
        Err("response mismatch")
    }
}

/// A REGISTER example whose numbers were computed independently, once, with python3:
/// ```text
/// import hashlib
/// H = lambda alg, s: hashlib.new(alg, s.encode()).hexdigest()
/// h1 = H(alg, "1001:registrar.example.com:s3cr3t!"); h2 = H(alg, "REGISTER:sip:registrar.example.com")
/// n = "AAABi8_laHverb7vuYsFM9bUHaBACpUkJms4xgzA"
/// qop:    H(alg, f"{h1}:{n}:00000001:0a4f113b:auth:{h2}")
/// no qop: H(alg, f"{h1}:{n}:{h2}")
/// ```
/// for alg in md5, sha256. The nonce itself is the vector of the unit test `nonce_format_vector`.
#[test]
fn register_example_independent_values() {
    let n: &[u8] = b"AAABi8_laHverb7vuYsFM9bUHaBACpUkJms4xgzA";
    let cases: [(Algorithm, &str, &str, &str); 2] = [
        (
            Algorithm::Md5,
            "baf1955a550d1d87ab30acdd1d5c1b60",
            "01f87e98e3abdcc6b87dc394f3a97c6f",
            "f167953c9bffa88e687c208d069cc80f",
        ),
        (
            Algorithm::Sha256,
            "42ebb6ea8dac9c3f0b5d526f944e63f3226cab7f928cd4ffbdaed46bd9939a34",
            "a17dbdcc1579bd37f9999440bb713d2bd88b1461b3ca2a0ebbfb5741481a3a36",
            "bb4f5f0579535dbadca4b386ca26eab362fb4e3f2b2797fae9438e1d2f2e89f2",
        ),
    ];
    for (alg, want_ha1, want_qop, want_plain) in cases {
        let h = ha1(alg, b"1001", b"registrar.example.com", b"s3cr3t!");
        assert_eq!(h.as_bytes(), want_ha1.as_bytes());
        let uri = b"sip:registrar.example.com";
        let r = response(
            alg,
            &h,
            b"REGISTER",
            uri,
            n,
            Some((b"00000001", b"0a4f113b")),
        );
        assert_eq!(r.as_bytes(), want_qop.as_bytes());
        let r = response(alg, &h, b"REGISTER", uri, n, None);
        assert_eq!(r.as_bytes(), want_plain.as_bytes());

        // The client side produces exactly these values on the wire.
        let mut ch = Vec::new();
        write_challenge(&mut ch, alg, b"registrar.example.com", n, false);
        let c = parse_auth(&ch).unwrap();
        let mut out = Vec::new();
        write_authorization(&mut out, &c, &creds(b"0a4f113b", 1)).unwrap();
        let want = format!(
            "Digest username=\"1001\", realm=\"registrar.example.com\", \
             nonce=\"AAABi8_laHverb7vuYsFM9bUHaBACpUkJms4xgzA\", \
             uri=\"sip:registrar.example.com\", response=\"{want_qop}\", algorithm={}, \
             cnonce=\"0a4f113b\", nc=00000001, qop=auth",
            alg.name()
        );
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
}

/// Server ↔ client round trip for both algorithms, with and without qop, through real header
/// text (our challenge parsed by `parse_auth`, our Authorization parsed back and verified).
#[test]
fn round_trip_server_client() {
    let key = NonceKey::new(SECRET);
    let t0 = 1_763_700_000_000;
    for alg in [Algorithm::Md5, Algorithm::Sha256] {
        for with_qop in [true, false] {
            let mut nonce = [0u8; NONCE_LEN];
            key.make(t0, 99, &mut nonce);
            let mut ch = Vec::new();
            write_challenge(&mut ch, alg, b"registrar.example.com", &nonce, false);
            if !with_qop {
                // An RFC 2069 style challenge: drop the qop parameter.
                let s = String::from_utf8(ch).unwrap().replace(", qop=\"auth\"", "");
                ch = s.into_bytes();
            }
            let challenge = parse_auth(&ch).unwrap();
            let mut auth = Vec::new();
            write_authorization(&mut auth, &challenge, &creds(b"c0ffee42", 7)).unwrap();
            let text = std::str::from_utf8(&auth).unwrap();
            assert_eq!(text.contains("qop=auth"), with_qop, "{text}");
            assert_eq!(text.contains("nc=00000007"), with_qop, "{text}");
            assert_eq!(text.contains("cnonce="), with_qop, "{text}");
            assert!(
                text.contains(&format!("algorithm={}", alg.name())),
                "{text}"
            );

            let stored = ha1(alg, b"1001", b"registrar.example.com", b"s3cr3t!");
            assert_eq!(
                server_verifies(&key, t0 + 10, &stored, b"REGISTER", &auth),
                Ok(NonceCheck::Fresh)
            );
            assert_eq!(
                server_verifies(&key, t0 + LIFETIME + 1, &stored, b"REGISTER", &auth),
                Ok(NonceCheck::Stale)
            );
            // Wrong password, other method: the response does not match.
            let wrong = ha1(alg, b"1001", b"registrar.example.com", b"s3cr3t?");
            assert!(server_verifies(&key, t0, &wrong, b"REGISTER", &auth).is_err());
            assert!(server_verifies(&key, t0, &stored, b"INVITE", &auth).is_err());
            // Another server secret: the nonce is not ours.
            let other = NonceKey::new([7; 32]);
            assert_eq!(
                server_verifies(&other, t0, &stored, b"REGISTER", &auth),
                Ok(NonceCheck::Invalid)
            );
        }
    }
}

/// The challenge as a full 401 header value, and the answer inside a real REGISTER parsed by
/// the message parser.
#[test]
fn round_trip_inside_a_register() {
    let key = NonceKey::new(SECRET);
    let now = 5_000_000;
    let mut nonce = [0u8; NONCE_LEN];
    key.make(now, 1, &mut nonce);
    let mut ch = Vec::new();
    write_challenge(
        &mut ch,
        Algorithm::Sha256,
        b"registrar.example.com",
        &nonce,
        true,
    );
    let c = parse_auth(&ch).unwrap();
    assert!(c.is_stale());
    assert_eq!(c.digest.qop, Some(&b"auth"[..]));
    let mut auth = Vec::new();
    write_authorization(&mut auth, &c, &creds(b"x", 1)).unwrap();

    let mut msg = b"REGISTER sip:registrar.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.44:5062;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:1001@registrar.example.com>\r\n\
From: <sip:1001@registrar.example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1828 REGISTER\r\n\
Contact: <sip:1001@192.0.2.44:5062>\r\n\
Authorization: "
        .to_vec();
    msg.extend_from_slice(&auth);
    msg.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    let mut p = Parser::new();
    let m = p.parse(&msg).unwrap();
    assert_eq!(m.validate(), Ok(()));
    let value = m.header(HeaderKind::Authorization).unwrap();
    let stored = ha1(
        Algorithm::Sha256,
        b"1001",
        b"registrar.example.com",
        b"s3cr3t!",
    );
    assert_eq!(
        server_verifies(&key, now, &stored, b"REGISTER", value),
        Ok(NonceCheck::Fresh)
    );
}

/// A realm with `"` and `\`: escaped once in the challenge, echoed escaped in the answer, and
/// hashed unescaped on both sides.
#[test]
fn realm_with_quote_and_backslash() {
    let realm: &[u8] = br#"odd "realm" \ here"#;
    let mut ch = Vec::new();
    write_challenge(&mut ch, Algorithm::Md5, realm, b"n1", false);
    assert_eq!(
        ch,
        br#"Digest realm="odd \"realm\" \\ here", nonce="n1", algorithm=MD5, qop="auth""#
    );
    let c = parse_auth(&ch).unwrap();
    let mut auth = Vec::new();
    write_authorization(&mut auth, &c, &creds(b"cn", 1)).unwrap();
    let text = std::str::from_utf8(&auth).unwrap();
    assert!(text.contains(r#"realm="odd \"realm\" \\ here""#), "{text}");
    let h = ha1(Algorithm::Md5, b"1001", realm, b"s3cr3t!");
    let want = response(
        Algorithm::Md5,
        &h,
        b"REGISTER",
        b"sip:registrar.example.com",
        b"n1",
        Some((b"00000001", b"cn")),
    );
    let a = parse_auth(&auth).unwrap();
    assert!(response_matches(&want, a.digest.response.unwrap()));
}

#[test]
fn response_matches_is_case_insensitive_and_exact() {
    let h = ha1(Algorithm::Sha256, b"a", b"b", b"c");
    let r = response(Algorithm::Sha256, &h, b"REGISTER", b"sip:b", b"n", None);
    let good = r.as_bytes().to_vec();
    assert!(response_matches(&r, &good));
    assert!(response_matches(&r, &good.to_ascii_uppercase()));
    // A difference at any single position, a missing or extra byte, empty: no match.
    // (Timing: the comparison ORs over every byte with no early exit once the lengths, which
    // are public, agree; nothing here measures time.)
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
        assert!(!response_matches(&r, &bad), "pos {i}");
    }
    assert!(!response_matches(&r, &good[1..]));
    let mut longer = good.clone();
    longer.push(b'0');
    assert!(!response_matches(&r, &longer));
    assert!(!response_matches(&r, b""));
    // Another algorithm's expected value (other length) never matches.
    let md5 = response(Algorithm::Md5, &h, b"REGISTER", b"sip:b", b"n", None);
    assert!(!response_matches(&md5, &good));
}

#[test]
fn nonce_stale_and_future_boundaries_via_public_api() {
    let key = NonceKey::new(SECRET);
    let mut n = [0u8; NONCE_LEN];
    let t = 10_000_000;
    key.make(t, 3, &mut n);
    assert_eq!(key.check(&n, t + LIFETIME, LIFETIME), NonceCheck::Fresh);
    assert_eq!(key.check(&n, t + LIFETIME + 1, LIFETIME), NonceCheck::Stale);
    assert_eq!(
        key.check(&n, t - NONCE_MAX_SKEW_MS, LIFETIME),
        NonceCheck::Fresh
    );
    assert_eq!(
        key.check(&n, t - NONCE_MAX_SKEW_MS - 1, LIFETIME),
        NonceCheck::Invalid
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any bytes: `check` never panics, and only our own nonces are accepted.
    #[test]
    fn check_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64),
                          now in any::<u64>(), life in any::<u64>()) {
        let key = NonceKey::new(SECRET);
        prop_assert_eq!(key.check(&bytes, now, life), NonceCheck::Invalid);
    }

    /// Random strings of the nonce's own alphabet and length: still Invalid (bad MAC).
    #[test]
    fn check_random_token_nonces(s in "[A-Za-z0-9_-]{40}", now in any::<u64>()) {
        let key = NonceKey::new(SECRET);
        prop_assert_eq!(key.check(s.as_bytes(), now, u64::MAX), NonceCheck::Invalid);
    }

    /// make → check at any time and lifetime agrees with the documented rule.
    #[test]
    fn make_check_agree(made in any::<u64>(), now in any::<u64>(), salt in any::<u64>(),
                        life in any::<u64>()) {
        let key = NonceKey::new(SECRET);
        let mut n = [0u8; NONCE_LEN];
        key.make(made, salt, &mut n);
        let want = if made > now.saturating_add(NONCE_MAX_SKEW_MS) {
            NonceCheck::Invalid
        } else if now.saturating_sub(made) <= life {
            NonceCheck::Fresh
        } else {
            NonceCheck::Stale
        };
        prop_assert_eq!(key.check(&n, now, life), want);
    }

    /// Any challenge text: `write_authorization` never panics, leaves `out` alone on Err, and
    /// on Ok writes something `parse_auth` reads back with our username.
    #[test]
    fn authorization_from_any_challenge(text in proptest::collection::vec(any::<u8>(), 0..200),
                                        tail in "[ -~]{0,80}") {
        let mut bytes = b"Digest realm=\"r\", nonce=\"n\", ".to_vec();
        bytes.extend_from_slice(tail.as_bytes());
        for input in [&text[..], &bytes[..]] {
            let Ok(c) = parse_auth(input) else { continue };
            let mut out = b"prefix".to_vec();
            match write_authorization(&mut out, &c, &creds(b"abc", 1)) {
                Err(_) => prop_assert_eq!(&out[..], b"prefix"),
                Ok(()) => {
                    let a = parse_auth(&out[6..]).unwrap();
                    prop_assert_eq!(a.digest.username, Some(&b"1001"[..]));
                    prop_assert!(a.digest.response.is_some());
                }
            }
        }
    }
}
