//! IPAM per namespace: a [`Subnet`] and the [`Pool`] of addresses handed out from it.
//!
//! Invariants: an address is in `allocated` at most once, with its owner; allocation never returns
//! the network address, the gateway (the first host, which the switch answers for) or the last
//! address (IPv4 broadcast; for IPv6 the all-ones address is kept out too, as RFC 2526 reserves the
//! top of a subnet for anycast); allocation is next-fit from a cursor, so a released address is
//! not handed out again until the rest of the range was used (a late packet to an old pod does not
//! reach a new one). The pool is plain data, persisted with the desired state; `Send + Sync`.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An address range `network/prefix` with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    network: IpAddr,
    prefix: u8,
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Subnet {
    /// Parses `10.1.0.0/24` or `fd00:1::/64`. IPv4 prefixes up to /30 and IPv6 up to /126 only:
    /// smaller ones leave no allocatable host.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected address/prefix"))?;
        let network: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?}: {a:?} is not an IP address"))?;
        let prefix: u8 = p
            .parse()
            .map_err(|_| format!("{s:?}: {p:?} is not a prefix length"))?;
        let max = if network.is_ipv4() { 30 } else { 126 };
        if prefix > max {
            return Err(format!(
                "{s:?}: prefix longer than /{max} leaves no address to allocate"
            ));
        }
        let sub = Self { network, prefix };
        if to_u128(network) & !sub.mask() != 0 {
            return Err(format!("{s:?}: host bits set"));
        }
        Ok(sub)
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn bits(&self) -> u32 {
        if self.network.is_ipv4() { 32 } else { 128 }
    }

    /// Mask over the family's width (in the low bits of a u128).
    fn mask(&self) -> u128 {
        let host_bits = self.bits() - u32::from(self.prefix);
        let all = if self.bits() == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        if host_bits >= 128 {
            0
        } else {
            all & !((1u128 << host_bits) - 1)
        }
    }

    fn addr_of(&self, v: u128) -> IpAddr {
        if self.network.is_ipv4() {
            IpAddr::V4(Ipv4Addr::from(v as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(v))
        }
    }

    /// Whether `addr` is inside the subnet.
    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.network.is_ipv4()
            && to_u128(addr) & self.mask() == to_u128(self.network)
    }

    /// Whether two subnets share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The last address (broadcast for IPv4).
    fn last(&self) -> u128 {
        to_u128(self.network) | (!self.mask() & self.width_mask())
    }

    fn width_mask(&self) -> u128 {
        if self.bits() == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        }
    }

    /// The gateway: the first host address.
    pub fn gateway(&self) -> IpAddr {
        self.addr_of(to_u128(self.network) + 1)
    }

    /// First and last allocatable addresses (inclusive).
    fn host_range(&self) -> (u128, u128) {
        (to_u128(self.network) + 2, self.last() - 1)
    }

    /// Whether `addr` may be given to an endpoint: inside, and not network, gateway or last.
    pub fn is_host(&self, addr: IpAddr) -> bool {
        let (lo, hi) = self.host_range();
        self.contains(addr) && (lo..=hi).contains(&to_u128(addr))
    }
}

impl core::fmt::Display for Subnet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Subnet::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Addresses handed out from one subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub subnet: Subnet,
    /// Address → owner (`ns/name`).
    pub allocated: BTreeMap<IpAddr, String>,
    /// The last address reserved with `advance` ([`Pool::reserve`]); [`Pool::next_free`] starts
    /// after it (next-fit).
    pub cursor: Option<IpAddr>,
}

impl Pool {
    /// An empty pool.
    pub fn new(subnet: Subnet) -> Self {
        Self {
            subnet,
            allocated: BTreeMap::new(),
            cursor: None,
        }
    }

    /// Picks the next free host address after the cursor, skipping addresses in `allocated` and
    /// those `taken` says are used elsewhere. Does not record it (see [`Pool::reserve`]): callers
    /// validate a whole request before changing anything. `None` when the subnet is exhausted.
    pub fn next_free(&self, taken: impl Fn(IpAddr) -> bool) -> Option<IpAddr> {
        let (lo, hi) = self.subnet.host_range();
        let size = hi - lo + 1;
        let start = match self.cursor.map(to_u128) {
            Some(c) if (lo..hi).contains(&c) => c + 1,
            _ => lo,
        };
        // Every step either finds a free address or passes a used one, and used addresses of the
        // range number at most `allocated.len()` + the externally taken ones, which `taken` only
        // reports for addresses we visit: bound the walk by the range size and by a generous
        // budget so a huge IPv6 range cannot loop long.
        let budget = (self.allocated.len() as u128)
            .saturating_mul(2)
            .saturating_add(1024);
        let mut c = start;
        let mut steps: u128 = 0;
        while steps < size.min(budget) {
            let a = self.subnet.addr_of(c);
            if !self.allocated.contains_key(&a) && !taken(a) {
                return Some(a);
            }
            c = if c == hi { lo } else { c + 1 };
            steps += 1;
        }
        None
    }

    /// Records `addr` as owned by `owner` and moves the cursor to it when `advance`.
    pub fn reserve(&mut self, addr: IpAddr, owner: &str, advance: bool) {
        self.allocated.insert(addr, owner.to_owned());
        if advance {
            self.cursor = Some(addr);
        }
    }

    /// Releases `addr`; returns whether it was allocated.
    pub fn release(&mut self, addr: IpAddr) -> bool {
        self.allocated.remove(&addr).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_reject() {
        let s = Subnet::parse("10.1.0.0/24").unwrap();
        assert_eq!(s.to_string(), "10.1.0.0/24");
        assert_eq!(s.gateway(), ip("10.1.0.1"));
        assert!(s.contains(ip("10.1.0.255")));
        assert!(!s.contains(ip("10.1.1.0")));
        assert!(!s.contains(ip("fd00::1")));
        assert!(
            Subnet::parse("10.1.0.1/24")
                .unwrap_err()
                .contains("host bits")
        );
        assert!(Subnet::parse("10.1.0.0/31").is_err());
        assert!(Subnet::parse("10.1.0.0").is_err());
        assert!(Subnet::parse("10.1.0.0/x").is_err());
        assert!(Subnet::parse("nope/8").is_err());
        let v6 = Subnet::parse("fd00:1::/64").unwrap();
        assert_eq!(v6.gateway(), ip("fd00:1::1"));
        assert!(v6.contains(ip("fd00:1::ffff")));
        assert!(Subnet::parse("fd00:1::/127").is_err());
        assert!(Subnet::parse("0.0.0.0/0").is_ok());
        assert!(Subnet::parse("::/0").unwrap().contains(ip("2001:db8::1")));
    }

    #[test]
    fn overlap() {
        let a = Subnet::parse("10.0.0.0/16").unwrap();
        let b = Subnet::parse("10.0.5.0/24").unwrap();
        let c = Subnet::parse("10.1.0.0/24").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
    }

    #[test]
    fn allocation_skips_reserved_and_exhausts() {
        // /29: network .0, gateway .1, hosts .2-.6, broadcast .7.
        let mut p = Pool::new(Subnet::parse("10.9.0.0/29").unwrap());
        let mut got = Vec::new();
        while let Some(a) = p.next_free(|_| false) {
            p.reserve(a, "ns/x", true);
            got.push(a);
        }
        let want: Vec<IpAddr> = (2..=6).map(|i| ip(&format!("10.9.0.{i}"))).collect();
        assert_eq!(got, want);
        assert_eq!(p.next_free(|_| false), None);
        // Release one: it is the only one free, so it comes back.
        assert!(p.release(ip("10.9.0.4")));
        assert!(!p.release(ip("10.9.0.4")));
        assert_eq!(p.next_free(|_| false), Some(ip("10.9.0.4")));
    }

    #[test]
    fn next_fit_does_not_reuse_released_at_once() {
        let mut p = Pool::new(Subnet::parse("10.9.0.0/24").unwrap());
        let a = p.next_free(|_| false).unwrap();
        p.reserve(a, "ns/a", true);
        p.release(a);
        let b = p.next_free(|_| false).unwrap();
        assert_ne!(a, b);
        assert_eq!(b, ip("10.9.0.3"));
    }

    #[test]
    fn taken_elsewhere_is_skipped() {
        let p = Pool::new(Subnet::parse("10.9.0.0/24").unwrap());
        let a = p.next_free(|a| a == ip("10.9.0.2")).unwrap();
        assert_eq!(a, ip("10.9.0.3"));
    }

    #[test]
    fn ipv6_allocation() {
        let mut p = Pool::new(Subnet::parse("fd00:7::/126").unwrap());
        // ::0 network, ::1 gateway, ::2 host, ::3 last.
        let a = p.next_free(|_| false).unwrap();
        assert_eq!(a, ip("fd00:7::2"));
        p.reserve(a, "ns/a", true);
        assert_eq!(p.next_free(|_| false), None);
        assert!(Subnet::parse("fd00:7::/126").unwrap().is_host(a));
        assert!(
            !Subnet::parse("fd00:7::/126")
                .unwrap()
                .is_host(ip("fd00:7::1"))
        );
    }

    proptest::proptest! {
        /// Random allocate/release sequences against a set model: an address is never handed
        /// out while held, never a reserved one, and allocation fails only when every host
        /// address is held.
        #[test]
        fn allocation_matches_a_set_model(
            v6 in proptest::bool::ANY,
            prefix_extra in 0u8..4,
            ops in proptest::collection::vec((proptest::bool::ANY, 0usize..64), 1..200),
        ) {
            let subnet = if v6 {
                Subnet::parse(&format!("fd00:9::/{}", 123 + prefix_extra)).unwrap()
            } else {
                Subnet::parse(&format!("10.9.0.0/{}", 27 + prefix_extra)).unwrap()
            };
            // 5 host bits at the shortest prefix (/27, /123): network, gateway and last are reserved.
            let hosts = (1u32 << (5 - prefix_extra)) - 3;
            let mut p = Pool::new(subnet);
            let mut held: Vec<IpAddr> = Vec::new();
            for (alloc, pick) in ops {
                if alloc || held.is_empty() {
                    if let Some(a) = p.next_free(|_| false) {
                        proptest::prop_assert!(subnet.is_host(a));
                        proptest::prop_assert!(!held.contains(&a));
                        p.reserve(a, "ns/x", true);
                        held.push(a);
                    } else {
                        proptest::prop_assert_eq!(held.len() as u32, hosts);
                    }
                } else {
                    let a = held.swap_remove(pick % held.len());
                    proptest::prop_assert!(p.release(a));
                }
                proptest::prop_assert_eq!(p.allocated.len(), held.len());
            }
        }
    }
}
