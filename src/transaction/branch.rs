//! Via branches that sipshard generates, with the owner shard written into them.
//!
//! Format (ASCII, [`BRANCH_LEN`] bytes, every byte a SIP `token` character):
//! `z9hG4bK` (RFC 3261 magic cookie) + `sS` (sipshard marker) + 4 lower-case hex digits of the shard
//! index + 16 hex digits of the caller's unique value + 2 hex digits of a check byte over both.
//! The check byte makes a foreign branch that happens to start with `z9hG4bKsS` unlikely (1 in 256,
//! on top of the exact length and all-hex requirements) to be taken for ours.

/// Length of a branch written by [`make_branch`].
pub const BRANCH_LEN: usize = 31;
/// Largest shard index a branch can carry.
pub const MAX_SHARD: usize = 0xFFFF;

const PREFIX: &[u8; 9] = b"z9hG4bKsS";
const HEX: &[u8; 16] = b"0123456789abcdef";

fn check_byte(shard: u64, unique: u64) -> u8 {
    let x =
        (shard.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ unique).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    (x >> 56) as u8
}

fn put_hex(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xF) as usize];
        v >>= 4;
    }
}

fn get_hex(s: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

/// Write a branch for a request sent by `shard` into `out` and return it as a slice.
///
/// `unique` must not repeat within this process and should not repeat across restarts
/// (RFC 3261 §8.1.1.7): e.g. a per-shard counter added to a random per-process seed.
///
/// # Panics
/// If `shard > MAX_SHARD` (a configuration error, caught at start-up in practice).
pub fn make_branch(shard: usize, unique: u64, out: &mut [u8; BRANCH_LEN]) -> &[u8] {
    assert!(
        shard <= MAX_SHARD,
        "shard index {shard} does not fit a branch"
    );
    out[..9].copy_from_slice(PREFIX);
    put_hex(&mut out[9..13], shard as u64);
    put_hex(&mut out[13..29], unique);
    put_hex(
        &mut out[29..31],
        u64::from(check_byte(shard as u64, unique)),
    );
    &out[..]
}

/// The shard that owns state keyed by `key` (a Call-ID, an AOR): a hash with fixed seeds, so every
/// shard (and every run) computes the same owner.
pub fn shard_by_hash(key: &[u8], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let hasher = ahash::RandomState::with_seeds(
        0x5157_5348_4152_4431,
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
    );
    (hasher.hash_one(key) % shards as u64) as usize
}

/// The shard that generated `branch`, if it is one of ours (see [`make_branch`]); `None` for any
/// other input. Never panics, allocates nothing, reads at most [`BRANCH_LEN`] bytes.
pub fn shard_of_branch(branch: &[u8]) -> Option<usize> {
    if branch.len() != BRANCH_LEN || !branch.starts_with(PREFIX) {
        return None;
    }
    let shard = get_hex(&branch[9..13])?;
    let unique = get_hex(&branch[13..29])?;
    let check = get_hex(&branch[29..31])?;
    if check != u64::from(check_byte(shard, unique)) {
        return None;
    }
    Some(shard as usize)
}

/// True if `branch` starts with the RFC 3261 magic cookie `z9hG4bK`, so requests carrying it are
/// matched by branch and sent-by (§17.2.3); otherwise the RFC 2543 key applies.
pub fn has_magic_cookie(branch: &[u8]) -> bool {
    branch.starts_with(b"z9hG4bK")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_every_shard_edge() {
        let mut buf = [0u8; BRANCH_LEN];
        for shard in [0usize, 1, 7, 255, 256, 4095, MAX_SHARD] {
            for unique in [0u64, 1, 42, u64::MAX, 0x0123_4567_89ab_cdef] {
                let b = make_branch(shard, unique, &mut buf).to_vec();
                assert_eq!(shard_of_branch(&b), Some(shard));
                assert!(has_magic_cookie(&b));
                assert!(b.iter().all(|c| c.is_ascii_alphanumeric()));
            }
        }
    }

    #[test]
    fn rejects_foreign_and_damaged() {
        let mut buf = [0u8; BRANCH_LEN];
        let good = make_branch(3, 99, &mut buf).to_vec();
        assert_eq!(shard_of_branch(b""), None);
        assert_eq!(shard_of_branch(b"z9hG4bK776asdhds"), None);
        assert_eq!(shard_of_branch(&good[..BRANCH_LEN - 1]), None);
        let mut longer = good.clone();
        longer.push(b'0');
        assert_eq!(shard_of_branch(&longer), None);
        // Any single-byte change is rejected (hex case, digit, or the check byte).
        for i in 0..BRANCH_LEN {
            let mut bad = good.clone();
            bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
            assert_eq!(shard_of_branch(&bad), None, "byte {i}");
        }
        let upper: Vec<u8> = good.iter().map(|c| c.to_ascii_uppercase()).collect();
        assert_eq!(shard_of_branch(&upper), None);
    }
}
