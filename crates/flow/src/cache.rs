//! [`Cache`]: the per-worker exact-match flow cache (Open vSwitch's EMC, `lib/dpif-netdev.c`).
//!
//! The cache owns a fixed number of slots, allocated once at creation and grouped into buckets of
//! [`WAYS`] slots; a key lives only in the bucket its precomputed [`FlowKey::hash`] selects, so a
//! lookup reads one bucket's signature words (64 bytes, one line) and compares at most a few full
//! keys. Insertion is O(1): it overwrites the same key, else takes a free or stale slot, else
//! evicts round-robin within the bucket. Each entry remembers the generation of the state that
//! produced it; a lookup under another generation is a miss and frees the slot (lazy
//! invalidation: a policy change bumps the generation instead of walking the cache).
//!
//! Invariants: `len() <= capacity()`; a key occupies at most one slot; a slot's signature is 0 iff
//! it is empty. No allocation after [`Cache::new`]. Thread-safety: one cache per worker, mutated
//! through `&mut self` (no locks, no atomics); it is `Send` when `V` is.

use prefetch_index::prefetch_index;

use crate::key::FlowKey;

/// Slots per bucket.
pub const WAYS: usize = 8;

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

#[derive(Clone, Copy)]
struct Slot<V> {
    key: FlowKey,
    generation: u64,
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
    /// Per slot: `generation << 32 | (hash | 1)` (the generation truncated to 32 bits), or 0
    /// when empty. A bucket's words fill one cache line, so a lookup's signature compare and an
    /// insert's search for a stale slot read that line, not the bucket's slots (14 lines).
    sigs: Box<[u64]>,
    /// Per slot: the entry, `Some` iff its signature is non-zero.
    slots: Box<[Option<Slot<V>>]>,
    /// Per bucket: the next round-robin victim.
    victim: Box<[u8]>,
    bucket_mask: usize,
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

impl<V: Copy> Cache<V> {
    /// A cache of at least `capacity` slots: rounded up to a power of two, and to at least one
    /// bucket. All memory is allocated here.
    pub fn new(capacity: usize) -> Result<Cache<V>, CacheError> {
        if capacity == 0 {
            return Err(CacheError::ZeroCapacity);
        }
        if capacity > MAX_CAPACITY {
            return Err(CacheError::TooLarge(capacity));
        }
        let slots = capacity.next_power_of_two().max(WAYS);
        let buckets = slots / WAYS;
        Ok(Cache {
            sigs: vec![0; slots].into_boxed_slice(),
            slots: vec![None; slots].into_boxed_slice(),
            victim: vec![0; buckets].into_boxed_slice(),
            bucket_mask: buckets - 1,
            len: 0,
            stats: CacheStats::default(),
        })
    }

    /// First slot of the bucket `hash` selects. Uses the high bits so that the low bits, which
    /// also pick the RSS queue, do not leave buckets unused.
    #[inline(always)]
    fn bucket(&self, hash: u32) -> usize {
        (hash.rotate_right(16) as usize & self.bucket_mask) * WAYS
    }

    #[inline(always)]
    fn find(&self, key: &FlowKey, hash: u32) -> Option<usize> {
        let base = self.bucket(hash);
        let s = sig(hash);
        let sigs = &self.sigs[base..base + WAYS];
        // A branch-free compare of the bucket's signatures into a bit mask (one SIMD compare),
        // then full key compares only where a signature matched.
        let mut mask = 0u32;
        for (i, &x) in sigs.iter().enumerate() {
            mask |= u32::from(x as u32 == s) << i;
        }
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if let Some(slot) = &self.slots[base + i]
                && slot.key == *key
            {
                return Some(base + i);
            }
        }
        None
    }

    #[inline(always)]
    fn free(&mut self, at: usize) {
        self.sigs[at] = 0;
        self.slots[at] = None;
        self.len -= 1;
    }

    /// Looks `key` up; `hash` must be `key.hash()`. An entry installed under a generation other
    /// than `generation` is a (stale) miss and is freed.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, hash: u32, generation: u64) -> Option<&mut V> {
        let Some(at) = self.find(key, hash) else {
            self.stats.misses += 1;
            return None;
        };
        // By reference throughout: `Option<Slot<V>>` is `Copy`, and a by-value test would copy
        // the whole entry on every hit.
        if self.slots[at]
            .as_ref()
            .is_some_and(|s| s.generation != generation)
        {
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
        self.sigs.len() * (core::mem::size_of::<u64>() + core::mem::size_of::<Option<Slot<V>>>())
    }

    /// Starts loading the signatures of `hash`'s bucket (a prefetch hint: nothing waits for
    /// it). The first of the staged prefetches a batch issues before its lookups, as VPP's
    /// graph nodes do, so that a batch's misses overlap instead of queueing one behind another.
    #[inline(always)]
    pub fn prefetch_bucket(&self, hash: u32) {
        // First and last word: one line when the array is line-aligned (a large allocation
        // under the daemon's allocator is), two otherwise.
        let base = self.bucket(hash);
        prefetch_index(&self.sigs, base);
        prefetch_index(&self.sigs, base + WAYS - 1);
    }

    /// Starts loading the slot where `key` would be (after [`prefetch_bucket`](Self::prefetch_bucket)
    /// (Self::prefetch_bucket), whose line this reads): the second stage. Nothing when no
    /// signature matches.
    #[inline(always)]
    pub fn prefetch_slot(&self, hash: u32) {
        let base = self.bucket(hash);
        let s = sig(hash);
        if let Some(i) = self.sigs[base..base + WAYS]
            .iter()
            .position(|&x| x as u32 == s)
        {
            self.prefetch_slot_lines(base + i);
        }
    }

    /// Starts loading every line of slot `at`. A slot is not a divisor of a line (112 bytes
    /// here), so it may span three: prefetching its start and the next slot's, as this once
    /// did, left the middle line cold, and an insert's victim check stalled on it.
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

    /// Starts loading what an [`insert`](Self::insert) under `hash` will write when the key is
    /// new and its bucket full (a flow-cache miss under a flood of new flows): the bucket's
    /// signature line and the round-robin victim's slot. A hint: nothing waits for it.
    #[inline(always)]
    pub fn prefetch_insert(&self, hash: u32) {
        self.prefetch_bucket(hash);
        let base = self.bucket(hash);
        let victim = self.victim.get(base / WAYS).map_or(0, |&v| usize::from(v));
        self.prefetch_slot_lines(base + victim);
    }

    /// Like [`lookup`](Self::lookup) without touching counters or freeing stale entries.
    pub fn peek(&self, key: &FlowKey, hash: u32, generation: u64) -> Option<&V> {
        let at = self.find(key, hash)?;
        self.slots[at]
            .as_ref()
            .filter(|s| s.generation == generation)
            .map(|s| &s.value)
    }

    /// Installs `value` for `key` under `generation`, replacing the key's previous entry; in a full
    /// bucket a stale entry (another generation) is reused first, else the round-robin victim is
    /// evicted. Returns the evicted current entry's key, if one was displaced.
    #[inline]
    pub fn insert(
        &mut self,
        key: FlowKey,
        hash: u32,
        generation: u64,
        value: V,
    ) -> Option<FlowKey> {
        let new = Slot {
            key,
            generation,
            value,
        };
        if let Some(at) = self.find(&key, hash) {
            self.sigs[at] = word(hash, generation);
            self.slots[at] = Some(new);
            return None;
        }
        self.stats.inserts += 1;
        let base = self.bucket(hash);
        let mut target = None;
        for i in 0..WAYS {
            if self.sigs[base + i] == 0 {
                target = Some(base + i);
                self.len += 1;
                break;
            }
        }
        if target.is_none() {
            // A stale slot (another generation) by its signature word; only a candidate's slot
            // is read, to confirm with the full generation.
            for i in 0..WAYS {
                if (self.sigs[base + i] >> 32) as u32 != generation as u32
                    && self.slots[base + i]
                        .as_ref()
                        .is_some_and(|s| s.generation != generation)
                {
                    target = Some(base + i);
                    break;
                }
            }
        }
        let mut evicted = None;
        let at = if let Some(at) = target {
            at
        } else {
            let b = base / WAYS;
            let v = usize::from(self.victim[b]);
            self.victim[b] = ((v + 1) % WAYS) as u8;
            self.stats.evictions += 1;
            evicted = self.slots[base + v].as_ref().map(|s| s.key);
            base + v
        };
        self.sigs[at] = word(hash, generation);
        self.slots[at] = Some(new);
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
        self.sigs.fill(0);
        self.slots.fill(None);
        self.victim.fill(0);
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
        self.slots.iter().filter_map(|s| {
            s.as_ref().map(|s| Entry {
                key: &s.key,
                generation: s.generation,
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

    /// Keys that all land in bucket 0 of a cache with `buckets` buckets.
    fn same_bucket(c: &Cache<u32>, n: usize) -> Vec<FlowKey> {
        (0..)
            .map(k)
            .filter(|x| c.bucket(x.hash()) == 0)
            .take(n)
            .collect()
    }

    #[test]
    fn creation_rounds_and_validates() {
        assert_eq!(Cache::<u8>::new(0).unwrap_err(), CacheError::ZeroCapacity);
        assert!(matches!(
            Cache::<u8>::new(MAX_CAPACITY + 1),
            Err(CacheError::TooLarge(_))
        ));
        assert_eq!(Cache::<u8>::new(1).unwrap().capacity(), WAYS);
        assert_eq!(Cache::<u8>::new(1000).unwrap().capacity(), 1024);
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
    fn full_bucket_evicts_round_robin() {
        let mut c = Cache::new(64).unwrap();
        let keys = same_bucket(&c, WAYS + 2);
        for (i, x) in keys[..WAYS].iter().enumerate() {
            assert_eq!(c.insert(*x, x.hash(), 1, i as u32), None);
        }
        assert_eq!(c.len(), WAYS);
        let extra = keys[WAYS];
        assert_eq!(c.insert(extra, extra.hash(), 1, 100), Some(keys[0]));
        let extra2 = keys[WAYS + 1];
        assert_eq!(c.insert(extra2, extra2.hash(), 1, 101), Some(keys[1]));
        assert_eq!(c.len(), WAYS);
        assert_eq!(c.stats().evictions, 2);
        assert_eq!(c.lookup(&keys[0], keys[0].hash(), 1), None);
        assert_eq!(c.lookup(&keys[1], keys[1].hash(), 1), None);
        assert_eq!(c.lookup(&extra, extra.hash(), 1).copied(), Some(100));
        assert_eq!(c.lookup(&keys[2], keys[2].hash(), 1).copied(), Some(2));
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
        assert_eq!(c.len(), 128);
        assert_eq!(c.stats().inserts, 10_000);
        assert_eq!(c.stats().evictions, 10_000 - 128);
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
            for (x, v) in &model {
                prop_assert_eq!(c.peek(x, x.hash(), 1), Some(v));
            }
            prop_assert_eq!(c.iter().count(), model.len());
        }
    }
}
