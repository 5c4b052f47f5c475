//! The shard-steering hash: which shard owns a Call-ID or an address-of-record user.
//!
//! Owns: [`steer_hash`], a small hash that a classic BPF program attached to the SO_REUSEPORT
//! group (`io::steer`) computes identically in the kernel, so that a datagram is delivered
//! straight to the socket of the shard that owns its state, with no hand-over between shards.
//! Must not: change without the kernel program changing with it (a test in
//! `tests/reuseport_steering.rs` sends real datagrams through the kernel and checks that both agree).
//!
//! The hash reads at most [`STEER_HASH_BYTES`] bytes and stops at the first byte that ends a
//! Call-ID's local part or a URI user: a control byte or space, `@`, `;`, `>`, `:`. Letters are folded with
//! `| 0x20`. A Call-ID `a84b4c76e66710@pc33.atlanta.com` is hashed as `a84b4c76e66710`; the AOR
//! key `alice@atlanta.com` as `alice`. Correctness never depends on the kernel agreeing: a
//! datagram the kernel delivers elsewhere is handed over by the receiving shard as before.

/// Bytes of the key that take part in the hash.
pub const STEER_HASH_BYTES: usize = 16;

/// True for the bytes that end the hashed part of a key: controls, space, `@ ; > :`.
pub fn ends_steer_key(b: u8) -> bool {
    b <= b' ' || matches!(b, b'@' | b';' | b'>' | b':')
}

/// The steering hash of `key` (see the module doc). Both the software owners
/// (`owner_of_call_id`, `owner_of_aor`) and the kernel program use `steer_hash(key) % shards`.
pub fn steer_hash(key: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &b in key.iter().take(STEER_HASH_BYTES) {
        if ends_steer_key(b) {
            break;
        }
        h = h.wrapping_mul(31).wrapping_add(u32::from(b | 0x20));
    }
    mix(h)
}

/// The final avalanche step (the same three operations the BPF program runs).
pub fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x045d_9f3b);
    h ^= h >> 16;
    h
}

/// `steer_hash(key) % shards` (0 when there is at most one shard).
pub fn steer_shard(key: &[u8], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    (steer_hash(key) % shards as u32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_key_end_and_folds_case() {
        assert_eq!(steer_hash(b"alice@example.com"), steer_hash(b"alice"));
        assert_eq!(steer_hash(b"ALICE"), steer_hash(b"alice"));
        assert_eq!(steer_hash(b"abc;x"), steer_hash(b"abc"));
        assert_ne!(steer_hash(b"alice"), steer_hash(b"alicf"));
        // Only the first STEER_HASH_BYTES bytes count.
        assert_eq!(
            steer_hash(b"0123456789abcdefXYZ"),
            steer_hash(b"0123456789abcdef")
        );
        assert_eq!(steer_hash(b""), mix(0));
    }

    #[test]
    fn spreads_sequential_users_and_call_ids_evenly() {
        for shards in [2usize, 3, 4, 8] {
            let mut count = vec![0usize; shards];
            for i in 0..10_000 {
                count[steer_shard(format!("{}", 10_000 + i).as_bytes(), shards)] += 1;
                count[steer_shard(format!("{i}-4242@127.0.0.1").as_bytes(), shards)] += 1;
            }
            let expect = 20_000 / shards;
            for c in count {
                assert!(
                    c.abs_diff(expect) < expect / 10,
                    "{shards} shards: {c} vs {expect}"
                );
            }
        }
    }
}
