//! Branches carry their owner shard; `shard_of_branch` survives any input.

use proptest::prelude::*;
use sipshard::transaction::{
    has_magic_cookie, make_branch, shard_of_branch, BRANCH_LEN, MAX_SHARD,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = shard_of_branch(&bytes);
    }

    #[test]
    fn our_prefix_with_garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..40)) {
        let mut b = b"z9hG4bKsS".to_vec();
        b.extend_from_slice(&tail);
        if let Some(shard) = shard_of_branch(&b) {
            prop_assert!(shard <= MAX_SHARD);
            prop_assert_eq!(b.len(), BRANCH_LEN);
        }
    }

    #[test]
    fn roundtrip(shard in 0..=MAX_SHARD, unique in any::<u64>()) {
        let mut buf = [0u8; BRANCH_LEN];
        let b = make_branch(shard, unique, &mut buf);
        prop_assert!(has_magic_cookie(b));
        prop_assert_eq!(shard_of_branch(b), Some(shard));
    }

    #[test]
    fn mutated_branches_mostly_rejected(shard in 0..=MAX_SHARD, unique in any::<u64>(),
                                        pos in 0..BRANCH_LEN, byte in any::<u8>()) {
        let mut buf = [0u8; BRANCH_LEN];
        make_branch(shard, unique, &mut buf);
        let orig = buf[pos];
        buf[pos] = byte;
        // Never a panic; a change outside the hex fields, or to a non-hex byte, is always refused.
        let got = shard_of_branch(&buf);
        if byte != orig && (pos < 9 || !(byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))) {
            prop_assert_eq!(got, None);
        }
    }
}

#[test]
fn random_bytes_loop_foreign_branches() {
    // Deterministic xorshift: a million foreign strings, typical foreign branches included.
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut buf = Vec::with_capacity(64);
    let mut accepted = 0;
    for i in 0..1_000_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.clear();
        if i % 2 == 0 {
            buf.extend_from_slice(b"z9hG4bKsS");
        }
        let len = (x % 40) as usize;
        let mut y = x;
        for _ in 0..len {
            y = y.rotate_left(5).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            // Mostly hex characters, to get past the cheap checks.
            buf.push(b"0123456789abcdef-Z"[(y >> 59) as usize % 18]);
        }
        if shard_of_branch(&buf).is_some() {
            accepted += 1;
        }
    }
    // Only strings of exactly the right shape with a matching check byte (~1/256) get through.
    assert!(accepted < 2_000, "{accepted}");
    for foreign in [
        &b"z9hG4bK776asdhds"[..],
        b"z9hG4bK.abcdef0123456789abcdef0",
        b"1234",
        b"",
        b"z9hG4bKsS",
        b"\xff\xfe\x00",
    ] {
        assert_eq!(shard_of_branch(foreign), None);
    }
}
