//! A small multiply-fold hasher for the overlay's hot-path maps (VTEP by address and VNI, endpoint
//! by inner IP), and the fixed-layout keys those maps use.
//!
//! The keys are installed by the control plane only, so probe lengths do not depend on what a
//! sender puts in a frame; a keyed, DoS-resistant hash (SipHash) buys nothing here and cost most of
//! the decapsulation time. Deterministic; thread-safe (no state beyond one hasher).

use core::hash::{BuildHasher, Hash, Hasher};
use core::net::IpAddr;

const SEED: u64 = 0x243f_6a88_85a3_08d3;
const K: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// Builds [`FastHasher`]s.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FastState;

impl BuildHasher for FastState {
    type Hasher = FastHasher;

    #[inline]
    fn build_hasher(&self) -> FastHasher {
        FastHasher(SEED)
    }
}

/// Mixes each 64-bit word in with one 64×64→128-bit multiply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = mum(self.0 ^ x, K);
    }

    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }

    #[inline]
    fn write_u128(&mut self, x: u128) {
        self.write_u64(x as u64);
        self.write_u64((x >> 64) as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// An IP address as a map key: the 128 address bits (IPv4 in the low 32) and the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpKey {
    bits: u128,
    v6: bool,
}

impl From<IpAddr> for IpKey {
    #[inline]
    fn from(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(a) => IpKey {
                bits: u128::from(a.to_bits()),
                v6: false,
            },
            IpAddr::V6(a) => IpKey {
                bits: a.to_bits(),
                v6: true,
            },
        }
    }
}

impl Hash for IpKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.bits as u64);
        state.write_u64(((self.bits >> 64) as u64) ^ u64::from(self.v6));
    }
}

/// A tunnel as decapsulation finds it: the outer source address and the VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TunnelKey {
    ip: IpKey,
    vni: u32,
}

impl TunnelKey {
    #[inline]
    pub(crate) fn new(ip: IpAddr, vni: u32) -> TunnelKey {
        TunnelKey {
            ip: IpKey::from(ip),
            vni,
        }
    }
}

impl Hash for TunnelKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.ip.bits as u64 ^ (u64::from(self.vni) << 32));
        state.write_u64(((self.ip.bits >> 64) as u64) ^ u64::from(self.ip.v6));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::hash::BuildHasher;
    use core::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn families_and_vnis_are_distinct_keys() {
        let v4 = IpAddr::V4(Ipv4Addr::new(0, 0, 0, 1));
        let v6 = IpAddr::V6(Ipv6Addr::from_bits(1));
        assert_ne!(IpKey::from(v4), IpKey::from(v6));
        assert_ne!(
            FastState.hash_one(IpKey::from(v4)),
            FastState.hash_one(IpKey::from(v6))
        );
        assert_ne!(TunnelKey::new(v4, 1), TunnelKey::new(v4, 2));
        assert_ne!(
            FastState.hash_one(TunnelKey::new(v4, 1)),
            FastState.hash_one(TunnelKey::new(v4, 2))
        );
        // Byte-slice input folds every byte in.
        assert_ne!(FastState.hash_one([1u8; 9]), FastState.hash_one([1u8; 8]));
    }
}
