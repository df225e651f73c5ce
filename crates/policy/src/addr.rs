//! The verdict path's address map: address → endpoint id plus, inline in the same 64-byte slot, the
//! endpoint's verdict data (groups, selecting policies, named ports; see `hot`), so one probe per
//! address yields everything a verdict reads about that endpoint — one cache line instead of a hash
//! probe followed by two dependent pointer chases.
//!
//! Layout: one open-addressing table per family (IPv4 slots hold a 4-byte key and 14 data words,
//! IPv6 slots a 16-byte key and 11), linear probing, power-of-two capacity kept at least twice the
//! entry count so probes stay short; removal shifts the following run back (no tombstones). The
//! hash is a multiply-xorshift (Fibonacci hashing): keys are installed by the control plane, not
//! chosen per packet, so SipHash's flood resistance buys nothing here and costs ~100 instructions
//! per lookup; an address absent from the table (an external peer) only walks the probe run it
//! lands in, which the load bound keeps short. An endpoint whose data does not fit inline gets an
//! overflow header and is read from the snapshot's per-endpoint arrays instead.
//!
//! Slots live in fixed chunks shared (`Arc`) between the engine and its snapshots: a commit copies
//! only the chunks it writes plus one pointer per chunk, not the whole table. Immutable once
//! published; `Send + Sync`. Every read is checked, so a corrupt slot reads as "no data", never a
//! panic.

use core::net::IpAddr;
use std::sync::Arc;

use crate::engine::EndpointId;
use crate::hot::HotEndpoint;

/// Slots per chunk (16 KiB): the unit copied on write.
const CHUNK: usize = 256;
/// Slot id of an empty slot.
const EMPTY: u32 = u32::MAX;
/// Header of a slot whose endpoint data did not fit inline.
const OVERFLOW: u32 = u32::MAX;

/// A key of one family's table.
trait Key: Copy + Eq + Default {
    fn hash(self) -> u64;
}

/// 2^64 / golden ratio: Fibonacci hashing's multiplier.
const PHI: u64 = 0x9e37_79b9_7f4a_7c15;

impl Key for u32 {
    /// Only the high bits are used (see [`Table::home`]): they depend on every key bit.
    #[inline]
    fn hash(self) -> u64 {
        u64::from(self).wrapping_mul(PHI)
    }
}

impl Key for u128 {
    #[inline]
    fn hash(self) -> u64 {
        // Fold first: pod addresses often differ only in the low 64 bits, prefixes in the high.
        let folded = (self as u64) ^ ((self >> 64) as u64).wrapping_mul(PHI).rotate_left(32);
        folded.wrapping_mul(PHI)
    }
}

/// One cache line: the key, the endpoint id ([`EMPTY`] when free) and the packed verdict data
/// `[n_groups | n_ingress << 8 | n_egress << 16 | n_named << 24, groups.., ingress.., egress..,
/// (name, proto << 16 | port)..]`, or [`OVERFLOW`] in word 0.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Slot<K, const N: usize> {
    key: K,
    id: u32,
    data: [u32; N],
}

impl<K: Key, const N: usize> Slot<K, N> {
    #[inline(always)]
    fn hot(&self) -> Option<HotEndpoint<'_>> {
        let w = *self.data.first()?;
        if w == OVERFLOW {
            return None;
        }
        // Inline counts are bytes, so the ends cannot overflow.
        let g = w & 0xff;
        let i = g + (w >> 8 & 0xff);
        let e = i + (w >> 16 & 0xff);
        let n = e + 2 * (w >> 24);
        Some(HotEndpoint::from_ends(
            self.data.get(1..).unwrap_or_default(),
            [g, i, e, n],
        ))
    }

    /// Packs `h` inline, or marks the slot as overflowing.
    fn set_hot(&mut self, h: Option<HotEndpoint<'_>>) {
        self.data = [0; N];
        self.data[0] = OVERFLOW;
        let Some(h) = h else { return };
        let (g, i, e, n) = (
            h.groups().len(),
            h.ingress().len(),
            h.egress().len(),
            h.named().len(),
        );
        if g > 0xff || i > 0xff || e > 0xff || n / 2 > 0xff || 1 + g + i + e + n > N {
            return;
        }
        self.data[0] = (g | i << 8 | e << 16 | (n / 2) << 24) as u32;
        let mut at = 1;
        for part in [h.groups(), h.ingress(), h.egress(), h.named()] {
            self.data[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
    }
}

impl<K: Key, const N: usize> Slot<K, N> {
    fn free() -> Self {
        Self {
            key: K::default(),
            id: EMPTY,
            data: [0; N],
        }
    }
}

/// One family's table; see the module docs.
#[derive(Debug, Clone)]
struct Table<K, const N: usize> {
    chunks: Vec<Arc<[Slot<K, N>; CHUNK]>>,
    /// Capacity - 1 (capacity a power of two, a multiple of [`CHUNK`]); 0 when unallocated.
    mask: usize,
    /// 64 - log2(capacity): a key's home slot is the top bits of its hash.
    shift: u32,
    len: usize,
}

impl<K: Key, const N: usize> Default for Table<K, N> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            mask: 0,
            shift: 63,
            len: 0,
        }
    }
}

impl<K: Key, const N: usize> Table<K, N> {
    #[inline(always)]
    fn slot(&self, i: usize) -> Option<&Slot<K, N>> {
        self.chunks.get(i / CHUNK).map(|c| &c[i % CHUNK])
    }

    fn slot_mut(&mut self, i: usize) -> Option<&mut Slot<K, N>> {
        self.chunks
            .get_mut(i / CHUNK)
            .map(|c| &mut Arc::make_mut(c)[i % CHUNK])
    }

    #[inline(always)]
    fn home(&self, k: K) -> usize {
        // Fibonacci hashing: the top bits of the product mix every key bit (the low bits of a
        // product depend only on the low bits of the key, which many pod addresses share).
        (k.hash() >> self.shift) as usize & self.mask
    }

    /// The slot holding `k`, if any.
    #[inline(always)]
    fn find(&self, k: K) -> Option<usize> {
        if self.chunks.is_empty() {
            return None;
        }
        let mut i = self.home(k);
        // The load bound guarantees a free slot, so the walk ends; the step cap is a backstop.
        for _ in 0..=self.mask {
            let s = self.slot(i)?;
            if s.id == EMPTY {
                return None;
            }
            if s.key == k {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    #[inline(always)]
    fn get(&self, k: K) -> Option<&Slot<K, N>> {
        self.find(k).and_then(|i| self.slot(i))
    }

    fn insert(&mut self, k: K, id: EndpointId, hot: Option<HotEndpoint<'_>>) {
        if self.find(k).is_none() && (self.len + 1) * 2 > self.mask + 1 {
            self.grow();
        }
        let mut i = self.home(k);
        loop {
            let Some(s) = self.slot(i) else { return };
            if s.id == EMPTY || s.key == k {
                let fresh = s.id == EMPTY;
                if let Some(s) = self.slot_mut(i) {
                    s.key = k;
                    s.id = id.0;
                    s.set_hot(hot);
                }
                if fresh {
                    self.len += 1;
                }
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    fn remove(&mut self, k: K) {
        let Some(mut i) = self.find(k) else { return };
        // Backward-shift deletion: move later members of the run into the hole unless their
        // home lies cyclically in (hole, them], which would put them before their home.
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let Some(s) = self.slot(j).copied() else {
                return;
            };
            if s.id == EMPTY {
                break;
            }
            let h = self.home(s.key);
            let stays = if i <= j {
                i < h && h <= j
            } else {
                i < h || h <= j
            };
            if !stays {
                if let Some(dst) = self.slot_mut(i) {
                    *dst = s;
                }
                i = j;
            }
        }
        if let Some(s) = self.slot_mut(i) {
            *s = Slot::free();
        }
        self.len -= 1;
    }

    fn grow(&mut self) {
        let cap = ((self.mask + 1) * 2).max(CHUNK);
        let old = core::mem::take(&mut self.chunks);
        self.chunks = (0..cap / CHUNK)
            .map(|_| Arc::new([Slot::free(); CHUNK]))
            .collect();
        self.mask = cap - 1;
        self.shift = 64 - cap.trailing_zeros();
        self.len = 0;
        for c in &old {
            for s in c.iter().filter(|s| s.id != EMPTY) {
                let mut i = self.home(s.key);
                while let Some(t) = self.slot(i) {
                    if t.id == EMPTY {
                        break;
                    }
                    i = (i + 1) & self.mask;
                }
                if let Some(t) = self.slot_mut(i) {
                    *t = *s;
                }
                self.len += 1;
            }
        }
    }
}

/// Address → (endpoint, inline verdict data); see the module docs.
#[derive(Debug, Clone, Default)]
pub(crate) struct AddrTable {
    v4: Table<u32, 14>,
    v6: Table<u128, 11>,
}

impl AddrTable {
    /// The endpoint owning `addr` and its verdict data when stored inline (`None`: overflow, read
    /// the endpoint's own encoding).
    #[inline(always)]
    pub(crate) fn get(&self, addr: IpAddr) -> Option<(EndpointId, Option<HotEndpoint<'_>>)> {
        match addr {
            IpAddr::V4(a) => self
                .v4
                .get(u32::from(a))
                .map(|s| (EndpointId(s.id), s.hot())),
            IpAddr::V6(a) => self
                .v6
                .get(u128::from(a))
                .map(|s| (EndpointId(s.id), s.hot())),
        }
    }

    /// Maps `addr` to `id` with its verdict data (replacing any previous mapping).
    pub(crate) fn insert(&mut self, addr: IpAddr, id: EndpointId, hot: Option<HotEndpoint<'_>>) {
        match addr {
            IpAddr::V4(a) => self.v4.insert(u32::from(a), id, hot),
            IpAddr::V6(a) => self.v6.insert(u128::from(a), id, hot),
        }
    }

    pub(crate) fn remove(&mut self, addr: IpAddr) {
        match addr {
            IpAddr::V4(a) => self.v4.remove(u32::from(a)),
            IpAddr::V6(a) => self.v6.remove(u128::from(a)),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.v4.len + self.v6.len
    }
}

#[cfg(test)]
mod tests {
    use core::net::{Ipv4Addr, Ipv6Addr};
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// `[n_groups, n_ingress, n_egress, n_named, ..]` as `hot::encode_endpoint` writes it.
    fn encoded(groups: &[u32], ingress: &[u32], egress: &[u32], named: &[u32]) -> Vec<u32> {
        let mut v = vec![
            groups.len() as u32,
            ingress.len() as u32,
            egress.len() as u32,
            (named.len() / 2) as u32,
        ];
        for part in [groups, ingress, egress, named] {
            v.extend_from_slice(part);
        }
        v
    }

    fn parts(h: HotEndpoint<'_>) -> [Vec<u32>; 4] {
        [
            h.groups().to_vec(),
            h.ingress().to_vec(),
            h.egress().to_vec(),
            h.named().to_vec(),
        ]
    }

    #[test]
    fn small_data_is_inline_and_large_overflows() {
        let mut t = AddrTable::default();
        let small = encoded(&[3, 9], &[1], &[1, 2], &[7, 6 << 16 | 0x1f90]);
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
        t.insert(v4, EndpointId(5), Some(HotEndpoint::decode(&small)));
        t.insert(v6, EndpointId(6), Some(HotEndpoint::decode(&small)));
        for (a, id) in [(v4, 5), (v6, 6)] {
            let (got, hot) = t.get(a).expect("present");
            assert_eq!(got, EndpointId(id));
            let hot = hot.expect("fits inline");
            assert_eq!(
                parts(hot),
                [vec![3, 9], vec![1], vec![1, 2], vec![7, 6 << 16 | 0x1f90]]
            );
        }
        // 12 groups fit an IPv4 slot (1 + 12 <= 14) but not an IPv6 one (11 words).
        let groups: Vec<u32> = (0..12).collect();
        let big = encoded(&groups, &[], &[], &[]);
        t.insert(v4, EndpointId(5), Some(HotEndpoint::decode(&big)));
        t.insert(v6, EndpointId(6), Some(HotEndpoint::decode(&big)));
        let (_, h4) = t.get(v4).expect("present");
        assert_eq!(h4.map(|h| h.groups().to_vec()), Some(groups));
        let (id6, h6) = t.get(v6).expect("present");
        assert_eq!(id6, EndpointId(6));
        assert!(h6.is_none(), "overflowing data must be read elsewhere");
        assert_eq!(t.len(), 2);
        assert!(t.get(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))).is_none());
    }

    #[test]
    fn clones_share_chunks_until_written() {
        let mut t = AddrTable::default();
        for i in 0..1000u32 {
            t.insert(IpAddr::V4(Ipv4Addr::from(i)), EndpointId(i), None);
        }
        let before = t.clone();
        t.insert(IpAddr::V4(Ipv4Addr::from(7)), EndpointId(9999), None);
        t.remove(IpAddr::V4(Ipv4Addr::from(8)));
        assert_eq!(
            before.get(IpAddr::V4(Ipv4Addr::from(7))).map(|x| x.0),
            Some(EndpointId(7))
        );
        assert!(before.get(IpAddr::V4(Ipv4Addr::from(8))).is_some());
        assert_eq!(
            t.get(IpAddr::V4(Ipv4Addr::from(7))).map(|x| x.0),
            Some(EndpointId(9999))
        );
        assert!(t.get(IpAddr::V4(Ipv4Addr::from(8))).is_none());
        // Only the written chunks were copied.
        let shared =
            t.v4.chunks
                .iter()
                .zip(&before.v4.chunks)
                .filter(|(a, b)| Arc::ptr_eq(a, b))
                .count();
        assert!(shared + 2 >= t.v4.chunks.len(), "{shared} shared");
    }

    fn engine_pod(name: &str, labels: &[(&str, &str)], addr: &str) -> crate::Endpoint {
        let l = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        crate::Endpoint::pod("ns", name, l, vec![addr.parse().expect("address")])
    }

    /// Through the engine: an address change is visible only from the new snapshot, and an
    /// endpoint whose data overflows its slot gets the same verdicts as one read by id.
    #[test]
    fn engine_publishes_address_changes_and_overflowing_endpoints() {
        let mut e = crate::PolicyEngine::new();
        let client = e
            .upsert_endpoint(&engine_pod("client", &[("role", "client")], "10.0.0.1"))
            .expect("add");
        // 15 labels, each selected by its own policy: 15 groups + 15 ingress policies overflow
        // an IPv4 slot (14 words) and an IPv6 one.
        let labels: Vec<(String, String)> =
            (0..15).map(|i| (format!("l{i}"), "1".into())).collect();
        let refs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let server = e
            .upsert_endpoint(&engine_pod("server", &refs, "fd00::5"))
            .expect("add");
        let mut yaml = String::new();
        for i in 0..15 {
            core::fmt::Write::write_fmt(
                &mut yaml,
                format_args!(
                    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
                 metadata: {{name: p{i}, namespace: ns}}\n\
                 spec:\n  podSelector: {{matchLabels: {{l{i}: '1'}}}}\n  ingress:\n  \
                 - from: [{{podSelector: {{matchLabels: {{role: client}}}}}}]\n    \
                 ports: [{{port: {port}}}]\n---\n",
                    port = 80 + i
                ),
            )
            .expect("writing to a String");
        }
        let objs = crate::parse_objects(&yaml).expect("parse");
        crate::apply(&mut e, &objs).expect("apply");
        let s1 = e.commit();
        let (c, srv) = (
            "10.0.0.1".parse().expect("ip"),
            "fd00::5".parse().expect("ip"),
        );
        assert!(
            s1.addrs.get(srv).is_some_and(|(_, h)| h.is_none()),
            "overflows"
        );
        for port in [80u16, 94, 95] {
            let by_addr = s1.verdict(c, srv, crate::Protocol::Tcp, port);
            let by_id = s1.verdict_between(client, server, crate::Protocol::Tcp, port);
            assert_eq!(by_addr, by_id);
            assert_eq!(by_addr.is_allowed(), port < 95, "port {port}");
        }
        // Move the client: the old snapshot keeps the old address, the new one only the new.
        e.upsert_endpoint(&engine_pod("client", &[("role", "client")], "10.0.0.9"))
            .expect("move");
        let s2 = e.commit();
        let moved = "10.0.0.9".parse().expect("ip");
        assert_eq!(s1.endpoint_by_addr(c), Some(client));
        assert_eq!(s1.endpoint_by_addr(moved), None);
        assert_eq!(s2.endpoint_by_addr(c), None);
        assert_eq!(s2.endpoint_by_addr(moved), Some(client));
        assert!(
            s2.verdict(moved, srv, crate::Protocol::Tcp, 80)
                .is_allowed()
        );
        // From the old address the client is external now: no rule matches it.
        assert!(!s2.verdict(c, srv, crate::Protocol::Tcp, 80).is_allowed());
        assert_eq!(s2.stats().addresses, 2);
        assert!(e.remove_endpoint("ns", "client"));
        let s3 = e.commit();
        assert_eq!(s3.endpoint_by_addr(moved), None);
        assert_eq!(s3.stats().addresses, 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(bool, u16, u32),
        Remove(bool, u16),
    }

    fn addr(v6: bool, k: u16) -> IpAddr {
        // A narrow key space, so inserts, overwrites and removals collide in probe runs.
        if v6 {
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, k >> 8, k & 0xff))
        } else {
            IpAddr::V4(Ipv4Addr::new(10, (k >> 8) as u8, 0, k as u8))
        }
    }

    proptest! {
        /// Differential against a HashMap: every key maps as the map says after any sequence of
        /// inserts, overwrites and removals (backward-shift deletion keeps runs reachable).
        #[test]
        fn matches_a_hashmap(ops in proptest::collection::vec(
            prop_oneof![
                3 => (any::<bool>(), 0u16..1200, 0u32..1000).prop_map(|(f, k, v)| Op::Insert(f, k, v)),
                2 => (any::<bool>(), 0u16..1200).prop_map(|(f, k)| Op::Remove(f, k)),
            ],
            0..1500,
        )) {
            let mut t = AddrTable::default();
            let mut m: HashMap<IpAddr, u32> = HashMap::new();
            for op in &ops {
                match *op {
                    Op::Insert(f, k, v) => {
                        let data = encoded(&[v], &[], &[v + 1], &[]);
                        t.insert(addr(f, k), EndpointId(v), Some(HotEndpoint::decode(&data)));
                        m.insert(addr(f, k), v);
                    }
                    Op::Remove(f, k) => {
                        t.remove(addr(f, k));
                        m.remove(&addr(f, k));
                    }
                }
            }
            prop_assert_eq!(t.len(), m.len());
            for f in [false, true] {
                for k in 0..1200 {
                    let a = addr(f, k);
                    let got = t.get(a).map(|(id, h)| (id.0, h.map(parts)));
                    let want = m.get(&a).map(|&v| {
                        (v, Some([vec![v], vec![], vec![v + 1], vec![]]))
                    });
                    prop_assert_eq!(got, want, "{}", a);
                }
            }
        }
    }
}
