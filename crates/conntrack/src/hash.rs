//! Seeded hashing of keys: a *symmetric* hash choosing the shard (both directions of a connection
//! meet in one shard) and a *directional* hash for the shard's index.
//!
//! The symmetric hash adds the hashes of the two endpoints (addition commutes), so swapping source
//! and destination yields the same shard. For ICMP echo both endpoints are hashed with the
//! identifier, because the two directions carry different types. The seed comes from the caller
//! (the table reads no randomness itself) so that an attacker who knows the code cannot aim tuples
//! at one shard. Pure functions, thread-safe.

use crate::tuple::Key;

/// SplitMix64's finaliser: a cheap bijective mixer with full avalanche.
#[inline(always)]
pub(crate) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[inline(always)]
fn endpoint(seed: u64, addr: u128, port: u16, v6: bool) -> u64 {
    let lo = addr as u64;
    if v6 {
        let hi = (addr >> 64) as u64;
        mix(seed ^ lo ^ mix(hi ^ u64::from(port)))
    } else {
        // An IPv4 address and a port fit in one word: one mix.
        mix(seed ^ (lo << 16) ^ u64::from(port))
    }
}

/// `(shard_hash, index_hash)` of a key.
#[inline(always)]
pub(crate) fn hashes(seed: u64, k: &Key) -> (u64, u64) {
    let (ps, pd) = if k.is_icmp() {
        (k.sport, k.sport)
    } else {
        (k.sport, k.dport)
    };
    let a = endpoint(seed, k.src, ps, k.v6);
    let b = endpoint(seed, k.dst, pd, k.v6);
    let s = mix(a.wrapping_add(b)
        ^ (u64::from(k.zone) << 8 | u64::from(k.proto))
        ^ u64::from(k.v6) << 40);
    (
        s,
        s ^ a ^ u64::from(k.dport).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_hash_is_symmetric_index_hash_is_not() {
        for v6 in [false, true] {
            let k = Key {
                src: 0x0a00_0001,
                dst: 0x0a00_0002,
                sport: 1234,
                dport: 80,
                zone: 7,
                proto: 6,
                v6,
            };
            let r = k.invert().unwrap();
            let (s1, i1) = hashes(42, &k);
            let (s2, i2) = hashes(42, &r);
            assert_eq!(s1, s2);
            assert_ne!(i1, i2);
            assert_ne!(hashes(43, &k).0, s1, "the seed changes the hash");
        }
        let echo = Key {
            src: 1,
            dst: 2,
            sport: 9,
            dport: 8,
            zone: 0,
            proto: 1,
            v6: false,
        };
        assert_eq!(hashes(1, &echo).0, hashes(1, &echo.invert().unwrap()).0);
    }
}
