//! Digest work per request allocates nothing: making and checking nonces, computing and comparing
//! responses, and writing challenge/Authorization values into a reused buffer. Counted (on this
//! test's thread only) by a wrapping global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sipshard::sip::digest::{
    ha1, response, response_matches, write_authorization, write_challenge, Algorithm, Credentials,
    NonceCheck, NonceKey, NONCE_LEN,
};
use sipshard::sip::parse_auth;

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

#[test]
fn digest_per_request_work_does_not_allocate() {
    let key = NonceKey::new([3; 32]);
    let stored = [
        ha1(Algorithm::Md5, b"1001", b"example.com", b"pw"),
        ha1(Algorithm::Sha256, b"1001", b"example.com", b"pw"),
    ];
    let mut challenge = Vec::with_capacity(256);
    let mut auth = Vec::with_capacity(512);
    let work = |challenge: &mut Vec<u8>, auth: &mut Vec<u8>, t: u64| {
        let mut ok = 0;
        for (i, alg) in [Algorithm::Md5, Algorithm::Sha256].into_iter().enumerate() {
            let mut nonce = [0u8; NONCE_LEN];
            key.make(t, i as u64, &mut nonce);
            challenge.clear();
            write_challenge(challenge, alg, b"example.com", &nonce, false);
            let c = parse_auth(challenge).unwrap();
            let creds = Credentials {
                username: b"1001",
                password: b"pw",
                method: b"REGISTER",
                digest_uri: b"sip:example.com",
                cnonce: b"abcdef",
                nc: 1,
            };
            auth.clear();
            write_authorization(auth, &c, &creds).unwrap();
            let a = parse_auth(auth).unwrap();
            let d = a.digest;
            let n = d.nonce.unwrap();
            assert_eq!(key.check(n, t + 1, 60_000), NonceCheck::Fresh);
            let expected = response(
                alg,
                &stored[i],
                b"REGISTER",
                d.uri.unwrap(),
                n,
                Some((d.nc.unwrap(), d.cnonce.unwrap())),
            );
            ok += usize::from(response_matches(&expected, d.response.unwrap()));
        }
        ok
    };
    // Warm up: buffers reach their steady size.
    assert_eq!(work(&mut challenge, &mut auth, 1_000), 2);
    ON.with(|o| o.set(true));
    let again = work(&mut challenge, &mut auth, 2_000);
    ON.with(|o| o.set(false));
    assert_eq!(again, 2);
    assert_eq!(COUNT.with(Cell::get), 0, "allocations per request");
}
