//! [`Cache`]: the per-worker exact-match flow cache (Open vSwitch's EMC, `lib/dpif-netdev.c`).
//!
//! The cache owns a fixed number of slots, allocated once at creation and grouped into buckets of
//! [`WAYS`] slots. A bucket's signature words and one word of bucket metadata fill one cache line,
//! so a lookup reads that line and compares at most a few full keys. A key lives in its *primary*
//! bucket (chosen by its precomputed [`FlowKey::hash`]) or, when that bucket was full of current
//! entries at insertion, in its *alternate* bucket (two-choice hashing): with one bucket per key,
//! an unlucky bucket holding more live flows than ways thrashes — under a cyclic replay of a
//! million flows at half load, 4 % of lookups missed. The primary bucket counts the keys it
//! spilled, so a lookup reads the alternate only when that count is non-zero (a few per cent of
//! buckets at half load): a hit still costs one signature line. Insertion is O(1): it overwrites
//! the same key, else takes a free or stale slot of the primary bucket, then of the alternate,
//! else evicts round-robin within the primary. Each entry remembers the generation of the state
//! that produced it; a lookup under another generation is a miss and frees the slot (lazy
//! invalidation: a policy change bumps the generation instead of walking the cache). The
//! generation is kept in the signature word's upper 32 bits only, so that a slot is a key and a
//! value and nothing more (with the datapath's 32-byte value, two cache lines, not three): the
//! cache remembers the upper 32 bits of the generations it holds (its *epoch*) and empties
//! itself when a lookup or insert comes with another, so the truncated compare is exact.
//!
//! Invariants: `len() <= capacity()`; a key occupies at most one slot, in its primary or its
//! alternate bucket; a slot's signature is 0 iff it is empty; a bucket's spill count equals the
//! number of its keys living in their alternate bucket, or is saturated (then it never falls, and
//! only costs lookups a read of the alternate). No allocation after [`Cache::new`]. Thread-safety:
//! one cache per worker, mutated through `&mut self` (no locks, no atomics); it is `Send` when `V`
//! is.

use prefetch_index::prefetch_index;

use crate::key::FlowKey;

/// Slots per bucket.
pub const WAYS: usize = 7;

/// Words per bucket in `Cache::sigs`: the ways' signatures and the metadata word (64 bytes).
const STRIDE: usize = WAYS + 1;

/// The metadata word's layout: bits 0–7 the round-robin victim, bits 8–23 the spill count.
const SPILL_SHIFT: u32 = 8;
const SPILL_MAX: u64 = 0xffff;

/// Largest capacity accepted (2^26 slots).
const MAX_CAPACITY: usize = 1 << 26;

/// Why a cache could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// Capacity zero.
    #[error("flow cache capacity must be positive")]
    ZeroCapacity,
    /// Capacity above the supported maximum.
    #[error("flow cache capacity {0} exceeds the maximum of 2^26 entries")]
    TooLarge(usize),
}

/// Cache counters since creation (or the last [`Cache::reset_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Lookups that found a current entry.
    pub hits: u64,
    /// Lookups that found nothing current (stale ones included).
    pub misses: u64,
    /// Misses that found the key installed under another generation.
    pub stale: u64,
    /// Inserts of a new key.
    pub inserts: u64,
    /// Current entries displaced by an insert into a full bucket.
    pub evictions: u64,
}

/// Aligned to 32 bytes so that slots (a multiple of 32 in size) start on 32-byte boundaries
/// whatever the allocator: a 96-byte slot then always spans exactly two cache lines, never three.
#[derive(Clone, Copy)]
#[repr(align(32))]
struct Slot<V> {
    key: FlowKey,
    value: V,
}

/// One entry as a dump sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a, V> {
    /// The flow key.
    pub key: &'a FlowKey,
    /// The generation it was installed under.
    pub generation: u64,
    /// The cached value.
    pub value: &'a V,
}

/// A per-worker, set-associative exact-match cache from [`FlowKey`] to `V`.
pub struct Cache<V: Copy> {
    /// Per bucket, [`STRIDE`] words: per way `generation << 32 | (hash | 1)` (the generation
    /// truncated to 32 bits), or 0 when empty; then the metadata word (victim, spill count). A
    /// bucket's words fill one cache line, so a lookup's signature compare, its spill test and
    /// an insert's search for a free or stale slot read that line, not the bucket's slots (13
    /// lines).
    sigs: Box<[Bucket]>,
    /// Per bucket, [`WAYS`] slots: the entry, `Some` iff its signature is non-zero.
    slots: Box<[Option<Slot<V>>]>,
    /// Number of buckets (`sigs.len()`), as the range reduction multiplies by it.
    buckets: u64,
    /// The upper 32 bits of every generation an entry was installed under.
    epoch: u32,
    len: usize,
    stats: CacheStats,
}

impl<V: Copy> core::fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cache")
            .field("capacity", &self.capacity())
            .field("len", &self.len)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Starts loading the cache line at `addr` (a prefetch hint; an address outside the cache's
/// arrays costs a wasted load, never a fault). `prefetch_index` never dereferences: a one-byte
/// origin only lets it name an address by offset.
#[inline(always)]
fn prefetch_addr(addr: usize) {
    static ORIGIN: u8 = 0;
    let origin = core::ptr::addr_of!(ORIGIN) as usize;
    prefetch_index(core::slice::from_ref(&ORIGIN), addr.wrapping_sub(origin));
}

#[inline(always)]
const fn sig(hash: u32) -> u32 {
    hash | 1
}

/// The signature word of an occupied slot (see `Cache::sigs`).
#[inline(always)]
fn word(hash: u32, generation: u64) -> u64 {
    (generation << 32) | u64::from(sig(hash))
}

/// One bucket's signature line: [`WAYS`] signature words and the metadata word.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket([u64; STRIDE]);

const _: () = assert!(core::mem::size_of::<Bucket>() == 64);

impl Bucket {
    #[inline(always)]
    fn victim(&self) -> usize {
        (self.0[WAYS] & 0xff) as usize
    }

    #[inline(always)]
    fn spill(&self) -> u64 {
        (self.0[WAYS] >> SPILL_SHIFT) & SPILL_MAX
    }

    #[inline(always)]
    fn set_meta(&mut self, victim: usize, spill: u64) {
        self.0[WAYS] = victim as u64 | spill << SPILL_SHIFT;
    }

    /// Counts one more key spilled to its alternate (saturating: a saturated count stays).
    #[inline(always)]
    fn spill_one(&mut self) {
        self.set_meta(self.victim(), (self.spill() + 1).min(SPILL_MAX));
    }

    /// Uncounts a spilled key that left its alternate (a saturated count stays, as it no longer
    /// knows how many it stands for).
    #[inline(always)]
    fn unspill_one(&mut self) {
        let spill = self.spill();
        if spill != SPILL_MAX {
            debug_assert!(spill > 0, "a spilled key's primary counts it");
            self.set_meta(self.victim(), spill.saturating_sub(1));
        }
    }

    /// Takes the round-robin victim's way and moves the victim on.
    #[inline(always)]
    fn next_victim(&mut self) -> usize {
        let v = self.victim();
        self.set_meta((v + 1) % WAYS, self.spill());
        v
    }

    /// The ways whose signature is `sig(hash)`, as a bit mask (one SIMD compare, no branches).
    #[inline(always)]
    fn matches(&self, hash: u32) -> u32 {
        let s = sig(hash);
        let mut mask = 0u32;
        for (i, &x) in self.0[..WAYS].iter().enumerate() {
            mask |= u32::from(x as u32 == s) << i;
        }
        mask
    }
}

impl<V: Copy> Cache<V> {
    /// A cache of at least `capacity` slots (rounded up to whole buckets). All memory is
    /// allocated here.
    pub fn new(capacity: usize) -> Result<Cache<V>, CacheError> {
        if capacity == 0 {
            return Err(CacheError::ZeroCapacity);
        }
        if capacity > MAX_CAPACITY {
            return Err(CacheError::TooLarge(capacity));
        }
        let buckets = capacity.div_ceil(WAYS);
        Ok(Cache {
            sigs: vec![Bucket::default(); buckets].into_boxed_slice(),
            slots: vec![None; buckets * WAYS].into_boxed_slice(),
            buckets: buckets as u64,
            epoch: 0,
            len: 0,
            stats: CacheStats::default(),
        })
    }

    /// The primary bucket of `hash`: `hash * buckets / 2^32` (Lemire's multiply-shift range
    /// reduction, so the bucket count need not be a power of two and a cache is as large as
    /// asked). It rests on the high bits, so the low bits, which also pick the RSS queue, do not
    /// leave buckets unused.
    #[inline(always)]
    fn bucket(&self, hash: u32) -> usize {
        ((u64::from(hash) * self.buckets) >> 32) as usize
    }

    /// The alternate bucket of a key whose primary is `b`: another bucket (unless there is only
    /// one) at an offset drawn from all of the hash's bits by a multiply, so that keys sharing a
    /// primary spread out.
    #[inline(always)]
    fn alternate(&self, b: usize, hash: u32) -> usize {
        let mix = u64::from(hash.wrapping_mul(0x9e37_79b1));
        let alt = b + 1 + ((mix * (self.buckets - 1)) >> 32) as usize;
        if alt >= self.buckets as usize {
            alt - self.buckets as usize
        } else {
            alt
        }
    }

    /// Slot index of way `way` of bucket `b`.
    #[inline(always)]
    const fn at(b: usize, way: usize) -> usize {
        b * WAYS + way
    }

    #[inline(always)]
    fn sig_mut(&mut self, at: usize) -> &mut u64 {
        &mut self.sigs[at / WAYS].0[at % WAYS]
    }

    #[inline(always)]
    fn find_in(&self, b: usize, key: &FlowKey, hash: u32) -> Option<usize> {
        let mut mask = self.sigs[b].matches(hash);
        while mask != 0 {
            let at = Self::at(b, mask.trailing_zeros() as usize);
            mask &= mask - 1;
            if let Some(slot) = &self.slots[at]
                && slot.key == *key
            {
                return Some(at);
            }
        }
        None
    }

    /// Where `key` lives: its primary bucket, else (only when the primary spilled keys) its
    /// alternate.
    #[inline(always)]
    fn find(&self, key: &FlowKey, hash: u32) -> Option<usize> {
        let b = self.bucket(hash);
        if let Some(at) = self.find_in(b, key, hash) {
            return Some(at);
        }
        if self.sigs[b].spill() == 0 {
            return None;
        }
        let alt = self.alternate(b, hash);
        if alt == b {
            return None;
        }
        self.find_in(alt, key, hash)
    }

    /// Empties slot `at`, and when its key lived in its alternate bucket, uncounts it from its
    /// primary's spill count (a saturated count stays).
    #[inline]
    fn free(&mut self, at: usize) {
        if let Some(s) = &self.slots[at] {
            let home = self.bucket(s.key.hash());
            if home != at / WAYS {
                self.sigs[home].unspill_one();
            }
            self.len -= 1;
        }
        *self.sig_mut(at) = 0;
        self.slots[at] = None;
    }

    /// Empties the cache when `generation` is of another epoch than its entries (after 2^32
    /// generations), so that comparing the low 32 bits stays exact.
    #[inline(always)]
    fn enter_epoch(&mut self, generation: u64) {
        let epoch = (generation >> 32) as u32;
        if epoch != self.epoch {
            self.clear();
            self.epoch = epoch;
        }
    }

    /// Whether the entry in slot `at` (occupied) was installed under `generation`.
    #[inline(always)]
    fn current(&self, at: usize, generation: u64) -> bool {
        (self.sigs[at / WAYS].0[at % WAYS] >> 32) as u32 == generation as u32
            && (generation >> 32) as u32 == self.epoch
    }

    /// Looks `key` up; `hash` must be `key.hash()`. An entry installed under a generation other
    /// than `generation` is a (stale) miss and is freed.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, hash: u32, generation: u64) -> Option<&mut V> {
        self.enter_epoch(generation);
        let Some(at) = self.find(key, hash) else {
            self.stats.misses += 1;
            return None;
        };
        if !self.current(at, generation) {
            self.free(at);
            self.stats.misses += 1;
            self.stats.stale += 1;
            return None;
        }
        self.stats.hits += 1;
        self.slots[at].as_mut().map(|s| &mut s.value)
    }

    /// Bytes of slot and signature memory, fixed at creation: a caller compares it with the
    /// cache sizes of its CPU to decide whether staged prefetching pays.
    pub fn footprint(&self) -> usize {
        self.sigs.len() * core::mem::size_of::<Bucket>()
            + self.slots.len() * core::mem::size_of::<Option<Slot<V>>>()
    }

    /// Starts loading the signature line of `hash`'s primary bucket (a prefetch hint: nothing
    /// waits for it). The first of the staged prefetches a batch issues before its lookups, as
    /// VPP's graph nodes do, so that a batch's misses overlap instead of queueing one behind
    /// another.
    #[inline(always)]
    pub fn prefetch_bucket(&self, hash: u32) {
        prefetch_index(&self.sigs, self.bucket(hash));
    }

    /// Starts loading the slot where `key` would be, reading the signature line that
    /// [`prefetch_bucket`](Self::prefetch_bucket) started loading: the second stage. When no
    /// signature of the primary bucket matches and it spilled keys, the alternate's signature
    /// line instead.
    #[inline(always)]
    pub fn prefetch_slot(&self, hash: u32) {
        let b = self.bucket(hash);
        let bucket = &self.sigs[b];
        let mask = bucket.matches(hash);
        if mask != 0 {
            self.prefetch_slot_lines(Self::at(b, mask.trailing_zeros() as usize));
        } else if bucket.spill() != 0 {
            prefetch_index(&self.sigs, self.alternate(b, hash));
        }
    }

    /// Starts loading every line of slot `at` (two for the datapath's 96-byte slots; a larger
    /// slot may span three, and prefetching only its start and the next slot's, as this once
    /// did, left the middle line cold and an insert's victim check stalled on it).
    #[inline(always)]
    fn prefetch_slot_lines(&self, at: usize) {
        let size = core::mem::size_of::<Option<Slot<V>>>();
        let start = (self.slots.as_ptr() as usize).wrapping_add(at.wrapping_mul(size));
        let end = start.wrapping_add(size);
        let mut line = start & !63;
        while line < end {
            prefetch_addr(line);
            line += 64;
        }
    }

    /// Starts loading what an [`insert`](Self::insert) under `hash` will read and write when
    /// the key is new and its bucket full (a flow-cache miss under a flood of new flows): the
    /// alternate bucket's signature line, which it searches for room, and the round-robin
    /// victim's slot. Reads the primary's signature line, which the lookup that missed has just
    /// read; a hint: nothing waits for the loads.
    #[inline(always)]
    pub fn prefetch_insert(&self, hash: u32) {
        let b = self.bucket(hash);
        prefetch_index(&self.sigs, self.alternate(b, hash));
        self.prefetch_slot_lines(Self::at(b, self.sigs[b].victim()));
    }

    /// Like [`lookup`](Self::lookup) without touching counters or freeing stale entries.
    pub fn peek(&self, key: &FlowKey, hash: u32, generation: u64) -> Option<&V> {
        let at = self.find(key, hash)?;
        if !self.current(at, generation) {
            return None;
        }
        self.slots[at].as_ref().map(|s| &s.value)
    }

    /// A slot of bucket `b` an insert may take without evicting a current entry: an empty one,
    /// else one holding another generation's entry (told by the signature word alone; the
    /// caller has entered `generation`'s epoch).
    fn vacancy(&self, b: usize, generation: u64) -> Option<usize> {
        let words = &self.sigs[b].0[..WAYS];
        if let Some(i) = words.iter().position(|&w| w == 0) {
            return Some(Self::at(b, i));
        }
        words
            .iter()
            .position(|&w| (w >> 32) as u32 != generation as u32)
            .map(|i| Self::at(b, i))
    }

    /// Installs `value` for `key` under `generation`, replacing the key's previous entry. A new
    /// key takes a free or stale slot of its primary bucket, else of its alternate, else evicts
    /// the primary's round-robin victim. Returns the evicted current entry's key, if one was
    /// displaced.
    #[inline]
    pub fn insert(
        &mut self,
        key: FlowKey,
        hash: u32,
        generation: u64,
        value: V,
    ) -> Option<FlowKey> {
        self.enter_epoch(generation);
        let new = Slot { key, value };
        if let Some(at) = self.find(&key, hash) {
            *self.sig_mut(at) = word(hash, generation);
            self.slots[at] = Some(new);
            return None;
        }
        self.stats.inserts += 1;
        let b = self.bucket(hash);
        let alt = self.alternate(b, hash);
        let mut evicted = None;
        let mut spilled = false;
        let at = if let Some(at) = self.vacancy(b, generation) {
            at
        } else if let Some(at) = (alt != b).then(|| self.vacancy(alt, generation)).flatten() {
            spilled = true;
            at
        } else {
            let at = Self::at(b, self.sigs[b].next_victim());
            self.stats.evictions += 1;
            evicted = self.slots[at].as_ref().map(|s| s.key);
            at
        };
        // The previous occupant (stale, or the victim) leaves through `free`, which keeps its
        // primary's spill count right.
        self.free(at);
        if spilled {
            self.sigs[b].spill_one();
        }
        *self.sig_mut(at) = word(hash, generation);
        self.slots[at] = Some(new);
        self.len += 1;
        evicted
    }

    /// Removes `key`; returns its value (whatever its generation).
    pub fn remove(&mut self, key: &FlowKey, hash: u32) -> Option<V> {
        let at = self.find(key, hash)?;
        let v = self.slots[at].as_ref().map(|s| s.value);
        self.free(at);
        v
    }

    /// Removes every entry for which `keep` returns false (e.g. those whose conntrack entry
    /// expired). Walks the whole cache: a control-path operation.
    pub fn retain(&mut self, mut keep: impl FnMut(&FlowKey, &mut V) -> bool) {
        for at in 0..self.slots.len() {
            let drop = match &mut self.slots[at] {
                Some(s) => !keep(&s.key, &mut s.value),
                None => false,
            };
            if drop {
                self.free(at);
            }
        }
    }

    /// Empties the cache (counters are kept).
    pub fn clear(&mut self) {
        self.sigs.fill(Bucket::default());
        self.slots.fill(None);
        self.len = 0;
    }

    /// Occupied slots (entries of older generations not yet reclaimed included).
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot is occupied.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total slots.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The counters.
    #[inline]
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Zeroes the counters.
    pub fn reset_stats(&mut self) {
        self.stats = CacheStats::default();
    }

    /// Every occupied slot, in slot order (for dumps).
    pub fn iter(&self) -> impl Iterator<Item = Entry<'_, V>> + '_ {
        self.slots.iter().enumerate().filter_map(|(at, s)| {
            s.as_ref().map(|s| Entry {
                key: &s.key,
                generation: u64::from(self.epoch) << 32 | self.sigs[at / WAYS].0[at % WAYS] >> 32,
                value: &s.value,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn k(i: u32) -> FlowKey {
        FlowKey {
            src: u128::from(0x0a00_0000 + i),
            dst: 0x0a00_00ff,
            ethertype: 0x0800,
            protocol: 6,
            src_port: (i % 50_000) as u16,
            dst_port: 80,
            ..FlowKey::default()
        }
    }

    /// Keys whose primary bucket is bucket 0.
    fn same_bucket(c: &Cache<u32>, n: usize) -> Vec<FlowKey> {
        (0..)
            .map(k)
            .filter(|x| c.bucket(x.hash()) == 0)
            .take(n)
            .collect()
    }

    /// Keys whose primary bucket is bucket 0 and whose alternate is one same bucket.
    fn same_buckets(c: &Cache<u32>, n: usize) -> Vec<FlowKey> {
        let first = same_bucket(c, 1)[0];
        let alt = c.alternate(0, first.hash());
        (0..)
            .map(k)
            .filter(|x| c.bucket(x.hash()) == 0 && c.alternate(0, x.hash()) == alt)
            .take(n)
            .collect()
    }

    /// The structural invariants (see the module documentation), checked slot by slot.
    fn check<V: Copy>(c: &Cache<V>) {
        let buckets = c.sigs.len();
        let mut spilled = vec![0u64; buckets];
        let mut occupied = 0;
        for at in 0..c.slots.len() {
            let w = c.sigs[at / WAYS].0[at % WAYS];
            let Some(s) = &c.slots[at] else {
                assert_eq!(w, 0, "an empty slot has no signature");
                continue;
            };
            occupied += 1;
            let h = s.key.hash();
            assert_eq!(w as u32, sig(h), "signature of slot {at}");
            assert_ne!(w >> 32, 0, "generations start at 1 in these tests");
            let home = c.bucket(h);
            if home != at / WAYS {
                assert_eq!(
                    at / WAYS,
                    c.alternate(home, h),
                    "a key lives in its alternate"
                );
                spilled[home] += 1;
            }
            assert_eq!(
                c.find(&s.key, h),
                Some(at),
                "the key is found where it lives"
            );
        }
        assert_eq!(occupied, c.len());
        for (b, &n) in spilled.iter().enumerate() {
            let spill = c.sigs[b].spill();
            assert!(
                spill == n || spill == SPILL_MAX,
                "bucket {b}: spill {spill}, {n} spilled"
            );
            assert!(c.sigs[b].victim() < WAYS);
        }
    }

    #[test]
    fn creation_rounds_and_validates() {
        assert_eq!(Cache::<u8>::new(0).unwrap_err(), CacheError::ZeroCapacity);
        assert!(matches!(
            Cache::<u8>::new(MAX_CAPACITY + 1),
            Err(CacheError::TooLarge(_))
        ));
        assert_eq!(Cache::<u8>::new(1).unwrap().capacity(), WAYS);
        // 1 000 slots need 143 buckets of 7.
        assert_eq!(Cache::<u8>::new(1000).unwrap().capacity(), 143 * WAYS);
        assert!(Cache::<u8>::new(1000).unwrap().is_empty());
    }

    #[test]
    fn hit_miss_and_update_in_place() {
        let mut c = Cache::new(64).unwrap();
        let a = k(1);
        assert_eq!(c.lookup(&a, a.hash(), 1), None);
        assert_eq!(c.insert(a, a.hash(), 1, 10u32), None);
        *c.lookup(&a, a.hash(), 1).unwrap() += 5;
        assert_eq!(c.lookup(&a, a.hash(), 1).copied(), Some(15));
        assert_eq!(c.peek(&a, a.hash(), 1), Some(&15));
        let b = k(2);
        assert_eq!(c.lookup(&b, b.hash(), 1), None);
        // Re-inserting the same key replaces, never duplicates.
        c.insert(a, a.hash(), 1, 99);
        assert_eq!(c.len(), 1);
        assert_eq!(c.peek(&a, a.hash(), 1), Some(&99));
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.inserts, s.evictions), (2, 2, 1, 0));
    }

    #[test]
    fn full_buckets_evict_round_robin_in_the_primary() {
        let mut c = Cache::new(64).unwrap();
        // Both the primary and the alternate fill before anything is evicted.
        let keys = same_buckets(&c, 2 * WAYS + 2);
        for (i, x) in keys[..2 * WAYS].iter().enumerate() {
            assert_eq!(c.insert(*x, x.hash(), 1, i as u32), None);
        }
        assert_eq!(c.len(), 2 * WAYS);
        assert_eq!(c.sigs[0].spill(), WAYS as u64);
        check(&c);
        let extra = keys[2 * WAYS];
        assert_eq!(c.insert(extra, extra.hash(), 1, 100), Some(keys[0]));
        let extra2 = keys[2 * WAYS + 1];
        assert_eq!(c.insert(extra2, extra2.hash(), 1, 101), Some(keys[1]));
        assert_eq!(c.len(), 2 * WAYS);
        assert_eq!(c.stats().evictions, 2);
        check(&c);
        assert_eq!(c.lookup(&keys[0], keys[0].hash(), 1), None);
        assert_eq!(c.lookup(&keys[1], keys[1].hash(), 1), None);
        assert_eq!(c.lookup(&extra, extra.hash(), 1).copied(), Some(100));
        assert_eq!(c.lookup(&keys[2], keys[2].hash(), 1).copied(), Some(2));
        // A spilled key is found in the alternate.
        let spilled = keys[2 * WAYS - 1];
        assert_eq!(
            c.lookup(&spilled, spilled.hash(), 1).copied(),
            Some(2 * WAYS as u32 - 1)
        );
    }

    #[test]
    fn an_overfull_bucket_spills_instead_of_thrashing() {
        // More live flows than ways in one bucket, replayed cyclically: with one bucket per key
        // round-robin eviction missed every lookup; the alternate holds the overflow.
        let mut c = Cache::new(1024).unwrap();
        let keys = same_bucket(&c, WAYS + 3);
        for round in 0..5 {
            for (i, x) in keys.iter().enumerate() {
                if c.lookup(x, x.hash(), 1).is_none() {
                    assert_eq!(round, 0, "key {i} missed in round {round}");
                    assert_eq!(c.insert(*x, x.hash(), 1, i as u32), None);
                }
            }
        }
        assert_eq!(c.stats().evictions, 0);
        assert_eq!(c.sigs[0].spill(), 3);
        check(&c);
        // Removing a spilled key uncounts it; removing a resident one does not.
        let last = keys[WAYS + 2];
        assert_eq!(c.remove(&last, last.hash()), Some(WAYS as u32 + 2));
        assert_eq!(c.sigs[0].spill(), 2);
        assert_eq!(c.remove(&keys[0], keys[0].hash()), Some(0));
        assert_eq!(c.sigs[0].spill(), 2);
        check(&c);
        // A stale spilled entry is reclaimed by a lookup and uncounted too.
        let x = keys[WAYS + 1];
        assert_eq!(c.lookup(&x, x.hash(), 2), None);
        assert_eq!(c.sigs[0].spill(), 1);
        check(&c);
        c.clear();
        assert_eq!(c.sigs[0].spill(), 0);
        check(&c);
    }

    #[test]
    fn older_generation_is_a_stale_miss_and_is_reclaimed() {
        let mut c = Cache::new(64).unwrap();
        let a = k(1);
        c.insert(a, a.hash(), 1, 7u32);
        assert_eq!(c.peek(&a, a.hash(), 2), None);
        assert_eq!(c.lookup(&a, a.hash(), 2), None);
        let s = c.stats();
        assert_eq!((s.misses, s.stale, s.hits), (1, 1, 0));
        assert_eq!(c.len(), 0);
        c.insert(a, a.hash(), 2, 8);
        assert_eq!(c.lookup(&a, a.hash(), 2).copied(), Some(8));
    }

    #[test]
    fn generations_agreeing_in_their_low_32_bits_never_match() {
        // The slot keeps only the low 32 bits; a generation 2^32 later empties the cache.
        let mut c = Cache::new(64).unwrap();
        let (a, b) = (k(1), k(2));
        c.insert(a, a.hash(), 5, 1u32);
        c.insert(b, b.hash(), 5, 2u32);
        let later = (1 << 32) | 5;
        assert_eq!(c.peek(&a, a.hash(), later), None);
        assert_eq!(c.lookup(&a, a.hash(), later), None);
        assert!(c.is_empty(), "entering a new epoch empties the cache");
        c.insert(a, a.hash(), later, 3);
        assert_eq!(c.peek(&a, a.hash(), later), Some(&3));
        assert_eq!(c.peek(&a, a.hash(), 5), None);
        assert_eq!(c.iter().next().map(|e| e.generation), Some(later));
        check(&c);
    }

    #[test]
    fn stale_entries_are_replaced_before_current_ones() {
        let mut c = Cache::new(64).unwrap();
        let keys = same_bucket(&c, WAYS + 1);
        for (i, x) in keys[..WAYS].iter().enumerate() {
            // Slot 5 is left from generation 1; the others are current (generation 2).
            let g = if i == 5 { 1 } else { 2 };
            c.insert(*x, x.hash(), g, i as u32);
        }
        let n = keys[WAYS];
        // The stale entry goes, not the round-robin victim; nothing current is evicted.
        assert_eq!(c.insert(n, n.hash(), 2, 50), None);
        assert_eq!(c.stats().evictions, 0);
        assert_eq!(c.peek(&keys[0], keys[0].hash(), 2), Some(&0));
        assert_eq!(c.peek(&keys[5], keys[5].hash(), 1), None);
        assert_eq!(c.peek(&n, n.hash(), 2), Some(&50));
    }

    #[test]
    fn remove_retain_clear_iter() {
        let mut c = Cache::new(256).unwrap();
        for i in 0..100 {
            let x = k(i);
            c.insert(x, x.hash(), 3, i);
        }
        let n = c.len();
        assert!(n > 90 && n <= 100, "{n}");
        assert_eq!(c.iter().count(), n);
        assert!(
            c.iter()
                .all(|e| e.generation == 3 && *e.value == e.key.src as u32 - 0x0a00_0000)
        );
        let present = (0..100)
            .find(|&i| c.peek(&k(i), k(i).hash(), 3).is_some())
            .unwrap();
        assert_eq!(c.remove(&k(present), k(present).hash()), Some(present));
        assert_eq!(c.remove(&k(present), k(present).hash()), None);
        assert_eq!(c.len(), n - 1);
        c.retain(|_, v| *v % 2 == 0);
        check(&c);
        assert!(c.iter().all(|e| *e.value % 2 == 0));
        assert_eq!(c.len(), c.iter().count());
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.iter().count(), 0);
    }

    #[test]
    fn never_exceeds_capacity() {
        let mut c = Cache::new(128).unwrap();
        for i in 0..10_000 {
            let x = k(i);
            c.insert(x, x.hash(), 1, i);
            assert!(c.len() <= c.capacity());
        }
        assert_eq!(c.len(), c.capacity());
        assert_eq!(c.stats().inserts, 10_000);
        assert_eq!(c.stats().evictions, 10_000 - c.capacity() as u64);
        check(&c);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, u32),
        Remove(u32),
        Lookup(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..200u32, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            (0..200u32).prop_map(Op::Remove),
            (0..200u32).prop_map(Op::Lookup),
        ]
    }

    proptest! {
        /// Against a `HashMap` model that forgets exactly the keys the cache reports evicted: the
        /// cache holds precisely the model's entries, and never more than its capacity.
        #[test]
        fn matches_hashmap_model(ops in proptest::collection::vec(op(), 1..400)) {
            let mut c = Cache::new(64).unwrap();
            let mut model: HashMap<FlowKey, u32> = HashMap::new();
            for o in ops {
                match o {
                    Op::Insert(i, v) => {
                        let x = k(i);
                        if let Some(gone) = c.insert(x, x.hash(), 1, v) {
                            prop_assert!(model.remove(&gone).is_some());
                        }
                        model.insert(x, v);
                    }
                    Op::Remove(i) => {
                        let x = k(i);
                        prop_assert_eq!(c.remove(&x, x.hash()), model.remove(&x));
                    }
                    Op::Lookup(i) => {
                        let x = k(i);
                        prop_assert_eq!(c.lookup(&x, x.hash(), 1).copied(), model.get(&x).copied());
                    }
                }
                prop_assert!(c.len() <= c.capacity());
                prop_assert_eq!(c.len(), model.len());
            }
            check(&c);
            for (x, v) in &model {
                prop_assert_eq!(c.peek(x, x.hash(), 1), Some(v));
            }
            prop_assert_eq!(c.iter().count(), model.len());
        }
    }
}
