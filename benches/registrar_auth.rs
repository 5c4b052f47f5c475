//! Registrar authentication: one REGISTER with digest credentials verified end to end (realm
//! pick, nonce MAC, HA1 lookup, response hash, lockout bookkeeping), MD5 and SHA-256, against a
//! table of 10 000 accounts. Parsing is done once outside the measured loop. Also: the 401
//! challenge values, an unknown user (dummy HA1, counted on a trusted source so it never
//! suspends), and the per-source rate limiter.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};

use criterion::{criterion_group, criterion_main, Criterion};
use sipshard::config::{AccountConfig, AuthMode, Config};
use sipshard::registrar::accounts::Accounts;
use sipshard::registrar::auth::{AuthDecision, Authenticator};
use sipshard::registrar::guard::SourceLimiter;
use sipshard::sip::digest::{self, Algorithm, NonceKey, NONCE_LEN};
use sipshard::sip::Parser;

const REALM: &str = "sipshard";
const NOW: u64 = 1_000_000;

fn config() -> Config {
    let mut c = Config::default();
    c.registrar.realm = REALM.into();
    c.registrar.trusted_sources = vec!["10.0.0.0/8".into()];
    c.registrar.accounts = (0..10_000)
        .map(|i| AccountConfig {
            user: format!("{}", 100_000 + i),
            password: format!("pw-{i}"),
            auth_mode: AuthMode::Digest,
            allowed: Vec::new(),
        })
        .collect();
    c
}

fn register(key: &NonceKey, alg: Algorithm, user: &str, password: &str) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    key.make(NOW, 1, &mut nonce);
    let uri = format!("sip:{REALM}");
    let ha1 = digest::ha1(alg, user.as_bytes(), REALM.as_bytes(), password.as_bytes());
    let r = digest::response(
        alg,
        &ha1,
        b"REGISTER",
        uri.as_bytes(),
        &nonce,
        Some((b"00000001", b"0a4f113b")),
    );
    format!(
        "REGISTER {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.44:5062;branch=z9hG4bK776asdhds;rport\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:{user}@{REALM}>\r\n\
         From: <sip:{user}@{REALM}>;tag=456248\r\n\
         Call-ID: 843817637684230@998sdasdh09\r\n\
         CSeq: 1827 REGISTER\r\n\
         Contact: <sip:{user}@192.0.2.44:5062;transport=udp>;expires=3600\r\n\
         Authorization: Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{}\", \
         uri=\"{uri}\", response=\"{}\", algorithm={}, cnonce=\"0a4f113b\", qop=auth, \
         nc=00000001\r\n\
         User-Agent: ExamplePhone/1.0\r\n\
         Content-Length: 0\r\n\r\n",
        std::str::from_utf8(&nonce).unwrap(),
        std::str::from_utf8(r.as_bytes()).unwrap(),
        alg.name(),
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let cfg = config();
    let key = NonceKey::new([42; 32]);
    let accounts = Accounts::build(&cfg.registrar).unwrap();
    let mut auth = Authenticator::new(&cfg, key.clone());
    let src: SocketAddr = "192.0.2.44:5062".parse().unwrap();
    let id = accounts.find(b"104321").unwrap();

    // A (user, nonce, nc) is accepted once (replay table): the first call accepts; the measured
    // repeats then take the replay branch, which does the same work (every check, the digest,
    // one table probe) and answers a stale challenge instead of inserting.
    for (name, alg) in [("md5", Algorithm::Md5), ("sha256", Algorithm::Sha256)] {
        let text = register(&key, alg, "104321", "pw-4321");
        let mut parser = Parser::new();
        let msg = parser.parse(&text).unwrap();
        let mut auth = Authenticator::new(&cfg, key.clone());
        assert_eq!(
            auth.authenticate(&msg, src, NOW, &accounts),
            AuthDecision::Accepted(id)
        );
        assert_eq!(
            auth.authenticate(&msg, src, NOW, &accounts),
            AuthDecision::Challenge { stale: true }
        );
        c.bench_function(&format!("registrar_auth/accept_{name}"), |b| {
            b.iter(|| auth.authenticate(black_box(&msg), src, NOW, &accounts))
        });
    }

    let text = register(&key, Algorithm::Sha256, "999999", "guess");
    let mut parser = Parser::new();
    let msg = parser.parse(&text).unwrap();
    let trusted: SocketAddr = "10.0.0.1:5060".parse().unwrap();
    c.bench_function("registrar_auth/unknown_user_sha256", |b| {
        b.iter(|| auth.authenticate(black_box(&msg), trusted, NOW, &accounts))
    });

    let mut values = Vec::with_capacity(2);
    c.bench_function("registrar_auth/challenges_sha256_md5", |b| {
        b.iter(|| {
            values.clear();
            auth.challenges(NOW, false, &mut values);
            black_box(values.len())
        })
    });

    let mut limiter = SourceLimiter::new(&cfg.registrar);
    let mut t = 0u64;
    c.bench_function("registrar_auth/limiter_allow_250_sources", |b| {
        b.iter(|| {
            t += 1;
            let ip = IpAddr::from([192, 0, 2, (t % 250) as u8]);
            limiter.allow(black_box(ip), t)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
