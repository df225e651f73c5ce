//! [`Cache`]: the per-worker exact-match flow cache (Open vSwitch's EMC, `lib/dpif-netdev.c`).
//!
//! The cache owns a fixed number of slots, allocated once at creation and grouped into buckets of
//! [`WAYS`] slots; a key lives only in the bucket its precomputed [`FlowKey::hash`] selects, so a
//! lookup reads one bucket's signatures (32 bytes) and compares at most a few full keys. Insertion
//! is O(1): it overwrites the same key, else takes a free or stale slot, else evicts round-robin
//! within the bucket. Each entry remembers the generation of the state that produced it; a lookup
//! under another generation is a miss and frees the slot (lazy invalidation: a policy change bumps
//! the generation instead of walking the cache).
//!
//! Invariants: `len() <= capacity()`; a key occupies at most one slot; a slot's signature is 0 iff
//! it is empty. No allocation after [`Cache::new`]. Thread-safety: one cache per worker, mutated
//! through `&mut self` (no locks, no atomics); it is `Send` when `V` is.

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
    /// Per slot: `hash | 1`, or 0 when empty.
    sigs: Box<[u32]>,
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

#[inline(always)]
const fn sig(hash: u32) -> u32 {
    hash | 1
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
        for (i, &x) in sigs.iter().enumerate() {
            if x == s
                && let Some(slot) = &self.slots[base + i]
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
        if self.slots[at].is_some_and(|s| s.generation != generation) {
            self.free(at);
            self.stats.misses += 1;
            self.stats.stale += 1;
            return None;
        }
        self.stats.hits += 1;
        self.slots[at].as_mut().map(|s| &mut s.value)
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
            for i in 0..WAYS {
                if self.slots[base + i].is_some_and(|s| s.generation != generation) {
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
            evicted = self.slots[base + v].map(|s| s.key);
            base + v
        };
        self.sigs[at] = sig(hash);
        self.slots[at] = Some(new);
        evicted
    }

    /// Removes `key`; returns its value (whatever its generation).
    pub fn remove(&mut self, key: &FlowKey, hash: u32) -> Option<V> {
        let at = self.find(key, hash)?;
        let v = self.slots[at].map(|s| s.value);
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
