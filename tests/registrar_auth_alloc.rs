//! The authenticator allocates nothing per REGISTER in steady state (accepted MD5 and SHA-256,
//! a bare REGISTER that gets a challenge, a suspended endpoint, an unknown user) and neither does
//! the rate limiter for known sources; counted by a wrapping global allocator on this thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};

use sipshard::config::{AccountConfig, AuthMode, Config};
use sipshard::registrar::accounts::Accounts;
use sipshard::registrar::auth::{AuthDecision, Authenticator};
use sipshard::registrar::guard::SourceLimiter;
use sipshard::sip::digest::{self, Algorithm, NonceKey, NONCE_LEN};
use sipshard::sip::Parser;

struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn counted<R>(f: impl FnOnce() -> R) -> (R, usize) {
    COUNT.with(|c| c.set(0));
    ON.with(|o| o.set(true));
    let r = f();
    ON.with(|o| o.set(false));
    (r, COUNT.with(Cell::get))
}

const NOW: u64 = 50_000;

fn register(key: &NonceKey, alg: Algorithm, user: &str, password: &str) -> Vec<u8> {
    register_salted(key, alg, user, password, 3)
}

/// As `register`, answering the nonce made with `salt` (each accepted nonce is accepted once).
fn register_salted(
    key: &NonceKey,
    alg: Algorithm,
    user: &str,
    password: &str,
    salt: u64,
) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    key.make(NOW, salt, &mut nonce);
    let ha1 = digest::ha1(alg, user.as_bytes(), b"sipshard", password.as_bytes());
    let r = digest::response(alg, &ha1, b"REGISTER", b"sip:sipshard", &nonce, None);
    format!(
        "REGISTER sip:sipshard SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
         Max-Forwards: 70\r\nTo: <sip:{user}@sipshard>\r\nFrom: <sip:{user}@sipshard>;tag=1\r\n\
         Call-ID: a\r\nCSeq: 1 REGISTER\r\n\
         Authorization: Digest username=\"{user}\", realm=\"sipshard\", nonce=\"{}\", \
         uri=\"sip:sipshard\", response=\"{}\", algorithm={}\r\nContent-Length: 0\r\n\r\n",
        std::str::from_utf8(&nonce).unwrap(),
        std::str::from_utf8(r.as_bytes()).unwrap(),
        alg.name()
    )
    .into_bytes()
}

#[test]
fn authenticate_and_limit_without_allocating() {
    let mut cfg = Config::default();
    cfg.registrar.trusted_sources = vec!["10.0.0.0/8".into()];
    cfg.registrar.accounts = vec![AccountConfig {
        user: "1001".into(),
        password: "pw".into(),
        auth_mode: AuthMode::Digest,
        allowed: Vec::new(),
    }];
    let accounts = Accounts::build(&cfg.registrar).unwrap();
    let key = NonceKey::new([5; 32]);
    let mut auth = Authenticator::new(&cfg, key.clone());
    let id = accounts.find(b"1001").unwrap();
    let phone: SocketAddr = "192.0.2.1:5060".parse().unwrap();
    let trusted: SocketAddr = "10.0.0.1:5060".parse().unwrap();

    let bare = b"REGISTER sip:sipshard SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK2\r\n\
Max-Forwards: 70\r\nTo: <sip:1001@sipshard>\r\nFrom: <sip:1001@sipshard>;tag=1\r\n\
Call-ID: b\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
    // Accepted: 100 distinct nonces per algorithm (a nonce is accepted once: replay table),
    // parsed before counting; the replay table's first entries are pre-reserved.
    for (alg, base) in [(Algorithm::Md5, 1000), (Algorithm::Sha256, 2000)] {
        let texts: Vec<Vec<u8>> = (0..100)
            .map(|i| register_salted(&key, alg, "1001", "pw", base + i))
            .collect();
        let mut parsers: Vec<Parser> = (0..100).map(|_| Parser::new()).collect();
        let msgs: Vec<_> = parsers
            .iter_mut()
            .zip(&texts)
            .map(|(p, t)| p.parse(t).unwrap())
            .collect();
        let (_, n) = counted(|| {
            for m in &msgs {
                assert_eq!(
                    auth.authenticate(m, phone, NOW, &accounts),
                    AuthDecision::Accepted(id)
                );
            }
        });
        assert_eq!(n, 0, "accepted {alg:?}");
        // Replays of them: a stale challenge, without allocating either.
        let (_, n) = counted(|| {
            for m in &msgs {
                assert_eq!(
                    auth.authenticate(m, phone, NOW, &accounts),
                    AuthDecision::Challenge { stale: true }
                );
            }
        });
        assert_eq!(n, 0, "replayed {alg:?}");
    }
    let cases = [
        (
            bare.to_vec(),
            phone,
            AuthDecision::Challenge { stale: false },
        ),
        (
            register(&key, Algorithm::Sha256, "nobody", "x"),
            trusted,
            AuthDecision::Challenge { stale: false },
        ),
    ];
    for (text, src, want) in &cases {
        let mut p = Parser::new();
        let msg = p.parse(text).unwrap();
        let (_, n) = counted(|| {
            for _ in 0..100 {
                assert_eq!(auth.authenticate(&msg, *src, NOW, &accounts), *want);
            }
        });
        assert_eq!(n, 0, "{want:?}");
    }

    // A suspended endpoint: suspend it first, then count.
    let text = register(&key, Algorithm::Md5, "1001", "wrong");
    let mut p = Parser::new();
    let msg = p.parse(&text).unwrap();
    let mut last = AuthDecision::Challenge { stale: false };
    for _ in 0..cfg.sip.endpoint_register_retry {
        last = auth.authenticate(&msg, phone, NOW, &accounts);
    }
    assert!(matches!(last, AuthDecision::Suspended { .. }));
    let (_, n) = counted(|| {
        for _ in 0..100 {
            assert_eq!(auth.authenticate(&msg, phone, NOW, &accounts), last);
        }
    });
    assert_eq!(n, 0, "suspended");

    let mut limiter = SourceLimiter::new(&cfg.registrar);
    for i in 0..100u8 {
        limiter.allow(IpAddr::from([192, 0, 2, i]), 0);
    }
    let (_, n) = counted(|| {
        for t in 0..10_000u64 {
            limiter.allow(IpAddr::from([192, 0, 2, (t % 100) as u8]), t);
        }
    });
    assert_eq!(n, 0, "limiter");
}
