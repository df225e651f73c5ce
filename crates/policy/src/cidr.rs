//! CIDR blocks and the longest-prefix table that answers "is this address in any of a rule's
//! ipBlocks (each minus its `except` list)?". Parsing follows the API server's IPBlock validation
//! (pkg/apis/networking/validation: `cidr` parses as a CIDR, host bits are masked as
//! `ParseCIDRSloppy` does; each `except` must be a strict subset of `cidr`).
//!
//! Invariant of [`CidrTable`]: every prefix `p` that appears in some block or except list is an entry
//! whose value is the membership of the addresses whose longest matching prefix is `p`. That value is
//! constant over that region, because any other prefix either contains `p` (and so contains the
//! whole region) or lies inside `p` (and is cut out of the region) or is disjoint. So the value is
//! `OR over blocks (cidr ⊇ p AND no except ⊇ p)`, computed once at build time; a lookup is one hash
//! probe per distinct prefix length, no allocation. Immutable after build, `Send + Sync`.

use core::net::IpAddr;

use hashbrown::HashMap;

use crate::error::Invalid;

/// An address block; `bits` has its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// The network address as a 128-bit integer (IPv4 in the low 32 bits).
    bits: u128,
    len: u8,
    v6: bool,
}

impl Cidr {
    /// Parses `addr/len` (IPv4 or IPv6), masking host bits.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let bad = || Invalid::BadCidr(s.to_owned());
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        // Only plain decimal digits: "+8" or " 8" are not CIDR syntax.
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let len: u8 = len.parse().map_err(|_| bad())?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let (bits, max, v6) = match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32, false),
            IpAddr::V6(a) => (u128::from(a), 128, true),
        };
        if len > max {
            return Err(bad());
        }
        Ok(Self {
            bits: bits & mask(len, max),
            len,
            v6,
        })
    }

    /// Prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// True for IPv6 blocks.
    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// True when `addr` lies in this block.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (addr, self.v6) {
            (IpAddr::V4(a), false) => u128::from(u32::from(a)) & mask(self.len, 32) == self.bits,
            (IpAddr::V6(a), true) => u128::from(a) & mask(self.len, 128) == self.bits,
            _ => false,
        }
    }

    /// True when `other` lies entirely inside `self` (same family, not shorter).
    pub fn covers(&self, other: &Cidr) -> bool {
        let max = if self.v6 { 128 } else { 32 };
        self.v6 == other.v6
            && self.len <= other.len
            && other.bits & mask(self.len, max) == self.bits
    }
}

impl core::fmt::Display for Cidr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.v6 {
            write!(f, "{}/{}", core::net::Ipv6Addr::from(self.bits), self.len)
        } else {
            write!(
                f,
                "{}/{}",
                core::net::Ipv4Addr::from(self.bits as u32),
                self.len
            )
        }
    }
}

/// Mask of the top `len` bits of a `max`-bit address, held in the low bits of a u128.
fn mask(len: u8, max: u8) -> u128 {
    if len == 0 {
        return 0;
    }
    let all: u128 = if max == 128 {
        u128::MAX
    } else {
        (1u128 << max) - 1
    };
    let host = max - len;
    if host == 0 {
        all
    } else {
        all & !((1u128 << host) - 1)
    }
}

/// An ipBlock: a block minus its exceptions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IpBlock {
    pub cidr: Cidr,
    pub except: Box<[Cidr]>,
}

impl IpBlock {
    /// Validates `except ⊂ cidr` strictly. Errors carry the index of the bad except entry.
    pub fn new(cidr: Cidr, except: Vec<Cidr>) -> Result<Self, (usize, Invalid)> {
        for (i, e) in except.iter().enumerate() {
            if !cidr.covers(e) || e.len == cidr.len {
                return Err((i, Invalid::ExceptOutsideCidr(e.to_string())));
            }
        }
        Ok(Self {
            cidr,
            except: except.into_boxed_slice(),
        })
    }

    /// Direct (slow) membership test: the definition the table must agree with.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.cidr.contains(addr) && !self.except.iter().any(|e| e.contains(addr))
    }
}

#[derive(Debug, Clone, Default)]
struct Level {
    len: u8,
    mask: u128,
    entries: HashMap<u128, bool>,
}

/// One prefix of a small table; `mask` is precomputed so a probe is an AND and a compare.
#[derive(Debug, Clone, Copy)]
struct Entry {
    bits: u128,
    mask: u128,
    value: bool,
}

/// Up to this many prefixes per family, a linear scan (longest first) beats hashing: the usual
/// ipBlock rule holds one block and a few exceptions.
const SMALL: usize = 16;

#[derive(Debug, Clone)]
enum Family {
    /// Entries sorted by prefix length, longest first: the first hit is the longest match.
    Small(Box<[Entry]>),
    /// One hash level per distinct prefix length, longest first.
    Levels(Box<[Level]>),
}

impl Default for Family {
    fn default() -> Self {
        Self::Small(Box::new([]))
    }
}

impl Family {
    fn build(mut prefixes: Vec<(Cidr, bool)>, max: u8) -> Self {
        prefixes.sort_by_key(|(c, _)| core::cmp::Reverse(c.len));
        if prefixes.len() <= SMALL {
            return Self::Small(
                prefixes
                    .iter()
                    .map(|(c, v)| Entry {
                        bits: c.bits,
                        mask: mask(c.len, max),
                        value: *v,
                    })
                    .collect(),
            );
        }
        let mut levels: Vec<Level> = Vec::new();
        for (c, v) in prefixes {
            if levels.last().is_none_or(|l| l.len != c.len) {
                levels.push(Level {
                    len: c.len,
                    mask: mask(c.len, max),
                    entries: HashMap::new(),
                });
            }
            if let Some(l) = levels.last_mut() {
                l.entries.insert(c.bits, v);
            }
        }
        Self::Levels(levels.into_boxed_slice())
    }

    #[inline]
    fn lookup(&self, bits: u128) -> bool {
        match self {
            Self::Small(entries) => {
                for e in entries {
                    if bits & e.mask == e.bits {
                        return e.value;
                    }
                }
                false
            }
            Self::Levels(levels) => {
                for level in levels {
                    if let Some(v) = level.entries.get(&(bits & level.mask)) {
                        return *v;
                    }
                }
                false
            }
        }
    }
}

/// Prefixes of one family with their membership value.
type Prefixes = Vec<(Cidr, bool)>;

/// Longest-prefix-match table over the union of several ipBlocks (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct CidrTable {
    v4: Family,
    v6: Family,
    entries: usize,
}

impl CidrTable {
    /// Builds the table for the union of `blocks`.
    pub fn build(blocks: &[IpBlock]) -> Self {
        let mut prefixes: Vec<Cidr> = blocks
            .iter()
            .flat_map(|b| core::iter::once(b.cidr).chain(b.except.iter().copied()))
            .collect();
        prefixes.sort();
        prefixes.dedup();
        let entries = prefixes.len();
        let (v6, v4): (Prefixes, Prefixes) = prefixes
            .into_iter()
            .map(|p| {
                let value = blocks
                    .iter()
                    .any(|b| b.cidr.covers(&p) && !b.except.iter().any(|e| e.covers(&p)));
                (p, value)
            })
            .partition(|(p, _)| p.v6);
        Self {
            v4: Family::build(v4, 32),
            v6: Family::build(v6, 128),
            entries,
        }
    }

    /// True when `addr` is in the union of the blocks.
    #[inline]
    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.v4.lookup(u128::from(u32::from(a))),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }

    /// The table as (family is v6, prefix length, network bits, member) entries, each family
    /// longest first, when both families use the small linear form; `None` for hash levels.
    pub(crate) fn small_entries(&self) -> Option<Vec<(bool, u8, u128, bool)>> {
        let mut out = Vec::new();
        for (fam, v6) in [(&self.v4, false), (&self.v6, true)] {
            let Family::Small(entries) = fam else {
                return None;
            };
            out.extend(
                entries
                    .iter()
                    .map(|e| (v6, e.mask.count_ones() as u8, e.bits, e.value)),
            );
        }
        Some(out)
    }

    /// Number of prefixes stored.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// True when no block is stored.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_mask() {
        assert_eq!(c("10.1.2.3/8"), c("10.0.0.0/8"));
        assert_eq!(c("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(c("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert_eq!(c("0.0.0.0/0").prefix_len(), 0);
        assert!(c("0.0.0.0/0").contains(ip("255.1.2.3")));
        assert!(!c("0.0.0.0/0").contains(ip("::1")));
        assert!(c("::/0").contains(ip("::1")));
        assert!(c("1.2.3.4/32").contains(ip("1.2.3.4")));
        assert!(!c("1.2.3.4/32").contains(ip("1.2.3.5")));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "::/129",
            "x/8",
            "10.0.0.0/+8",
            "10.0.0/8",
            "/8",
            "10.0.0.0/",
        ] {
            assert_eq!(Cidr::parse(bad), Err(Invalid::BadCidr(bad.into())), "{bad}");
        }
    }

    #[test]
    fn except_must_be_strict_subset() {
        assert!(IpBlock::new(c("172.17.0.0/16"), vec![c("172.17.1.0/24")]).is_ok());
        assert!(IpBlock::new(c("172.17.0.0/16"), vec![c("172.17.0.0/16")]).is_err());
        assert_eq!(
            IpBlock::new(
                c("172.17.0.0/16"),
                vec![c("172.17.1.0/24"), c("10.0.0.0/24")]
            )
            .unwrap_err()
            .0,
            1
        );
        assert!(IpBlock::new(c("172.17.0.0/16"), vec![c("::/64")]).is_err());
    }

    // The docs' NetworkPolicy example: 172.17.0.0/16 except 172.17.1.0/24.
    #[test]
    fn table_with_except_and_overlapping_blocks() {
        let a = IpBlock::new(c("10.0.0.0/16"), vec![c("10.0.1.0/24")]).unwrap();
        let b = IpBlock::new(c("10.0.0.0/8"), vec![]).unwrap();
        let t = CidrTable::build(std::slice::from_ref(&a));
        assert!(t.contains(ip("10.0.2.1")));
        assert!(!t.contains(ip("10.0.1.1")));
        assert!(!t.contains(ip("11.0.0.1")));
        // Another block re-admits the excepted range: the union wins.
        let t = CidrTable::build(&[a, b]);
        assert!(t.contains(ip("10.0.1.1")));
        assert!(t.contains(ip("10.9.1.1")));
        let v6 = IpBlock::new(c("2001:db8::/32"), vec![c("2001:db8:1::/48")]).unwrap();
        let t = CidrTable::build(&[v6]);
        assert!(t.contains(ip("2001:db8:2::1")));
        assert!(!t.contains(ip("2001:db8:1::1")));
        assert!(!t.contains(ip("10.0.0.1")));
    }

    #[test]
    fn large_table_uses_hash_levels_and_agrees() {
        // 40 /24 blocks with one /28 except each: more than SMALL prefixes.
        let blocks: Vec<IpBlock> = (0..40u8)
            .map(|i| {
                IpBlock::new(
                    c(&format!("10.{i}.0.0/24")),
                    vec![c(&format!("10.{i}.0.16/28"))],
                )
                .unwrap()
            })
            .collect();
        let t = CidrTable::build(&blocks);
        assert!(matches!(t.v4, Family::Levels(_)));
        assert_eq!(t.entries(), 80);
        for i in 0..42u8 {
            for host in [1u8, 16, 20, 31, 32, 255] {
                let a = ip(&format!("10.{i}.0.{host}"));
                assert_eq!(t.contains(a), blocks.iter().any(|b| b.contains(a)), "{a}");
            }
        }
    }

    fn arb_block() -> impl Strategy<Value = IpBlock> {
        (
            any::<u32>(),
            0u8..=28,
            proptest::collection::vec((any::<u32>(), 1u8..=4), 0..3),
        )
            .prop_map(|(base, len, ex)| {
                let cidr =
                    Cidr::parse(&format!("{}/{len}", core::net::Ipv4Addr::from(base))).unwrap();
                let except = ex
                    .into_iter()
                    .map(|(off, extra)| {
                        // Build an except inside the block: keep the block's bits, randomise the rest.
                        let host = if len == 0 {
                            off
                        } else {
                            off & (u32::MAX >> len)
                        };
                        let a = (cidr.bits as u32) | host;
                        Cidr::parse(&format!("{}/{}", core::net::Ipv4Addr::from(a), len + extra))
                            .unwrap()
                    })
                    .collect();
                IpBlock::new(cidr, except).unwrap()
            })
    }

    proptest! {
        // Differential: the LPM table agrees with the definition (OR of cidr-minus-excepts).
        #[test]
        fn table_matches_definition(blocks in proptest::collection::vec(arb_block(), 1..4), probes in proptest::collection::vec(any::<u32>(), 16)) {
            let t = CidrTable::build(&blocks);
            let mut addrs: Vec<u32> = probes;
            for b in &blocks {
                addrs.push(b.cidr.bits as u32);
                for e in &b.except { addrs.push(e.bits as u32); addrs.push((e.bits as u32).wrapping_sub(1)); }
            }
            for a in addrs {
                let a = IpAddr::V4(core::net::Ipv4Addr::from(a));
                prop_assert_eq!(t.contains(a), blocks.iter().any(|b| b.contains(a)), "{}", a);
            }
        }
    }
}
