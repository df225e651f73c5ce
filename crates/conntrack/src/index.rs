//! A shard's tuple index: a compact open-addressing table of 8-byte slots, each `{tag: u32,
//! code + 1: u32}` (0 = empty), probed linearly. A lookup reads one slot line in the common case
//! and then the entry itself (hashbrown's control bytes and slot array are two more lines).
//!
//! The home position of a slot is `tag & mask`, so it can be recomputed from the slot alone:
//! removal uses backward-shift deletion and leaves no tombstone, so the table never degrades
//! and never rehashes. The tag bits above the mask filter non-matching keys before the entry is
//! read. Invariants: the slot count is a power of two and at least 1.25 times the number of
//! codes the owner may insert, so an empty slot always exists and every probe ends. The table
//! stores two codes per entry but a shard is sized with 25 % slack over its share of the limit,
//! so in practice the load stays under about 64 % and a probe rarely leaves its first line. At
//! 8 bytes a slot this is 20 bytes per configured key: small enough that the index of a large
//! table stays mostly in the last-level cache and its pages in the TLB.
//!
//! Guarded by the owning shard's lock, except that an [`IndexView`] of the same slots may read
//! them at any time as a hint. The slots are atomics for that alone: every write happens under
//! the lock, with relaxed ordering (plain moves on x86), so a view may see a slot mid-update and
//! must never let correctness depend on what it reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prefetch_index::prefetch_index;

#[derive(Debug)]
pub(crate) struct Index {
    /// Slots `base..=base + mask` are this index's (see [`Index::many`]).
    slots: Arc<[AtomicU64]>,
    base: usize,
    mask: usize,
    len: usize,
}

/// A lock-free, read-only view of an [`Index`]'s slots, for starting loads ahead of a lookup
/// without the shard's lock: what it reads is a hint, possibly stale or torn.
#[derive(Debug, Clone)]
pub(crate) struct IndexView {
    slots: Arc<[AtomicU64]>,
    base: usize,
    mask: usize,
}

impl IndexView {
    /// Starts loading the home slot of hash `h`.
    #[inline(always)]
    pub(crate) fn prefetch_home(&self, h: u64) {
        prefetch_index(&self.slots, self.base + (tag(h) as usize & self.mask));
    }

    /// The first code stored under `h`'s tag along its probe run, read without the lock (see
    /// [`Index::first_tagged`]); a hint only.
    #[inline(always)]
    pub(crate) fn first_tagged(&self, h: u64) -> Option<u32> {
        first_tagged(&self.slots, self.base, self.mask, h)
    }
}

#[inline(always)]
fn first_tagged(slots: &[AtomicU64], base: usize, mask: usize, h: u64) -> Option<u32> {
    let t = tag(h);
    let mut pos = t as usize & mask;
    // Bounded: a view may race with writers, and a torn run must not keep it probing.
    for _ in 0..=mask {
        let v = slots.get(base + pos)?.load(Relaxed);
        if v == 0 {
            return None;
        }
        if (v >> 32) as u32 == t {
            return Some((v as u32).wrapping_sub(1));
        }
        pos = (pos + 1) & mask;
    }
    None
}

#[inline(always)]
fn tag(h: u64) -> u32 {
    (h >> 32) as u32
}

impl Index {
    /// An index for at most `max_codes` codes.
    #[cfg(test)]
    pub(crate) fn with_capacity(max_codes: usize) -> Index {
        Index::many(1, max_codes).pop().expect("one index")
    }

    /// `count` indexes for at most `max_codes` codes each, in one allocation: a large table's
    /// 256 indexes of 256 KiB would each sit on 4 KiB pages, and an index read would then miss
    /// the TLB as well as the cache; one 64 MiB array can be backed by huge pages (the daemon's
    /// allocator does so), which made batched lookups at a million entries 8 % faster.
    pub(crate) fn many(count: usize, max_codes: usize) -> Vec<Index> {
        let n = max_codes
            .saturating_add(max_codes / 4)
            .saturating_add(1)
            .max(8)
            .next_power_of_two();
        let slots: Arc<[AtomicU64]> = (0..n * count).map(|_| AtomicU64::new(0)).collect();
        (0..count)
            .map(|i| Index {
                slots: Arc::clone(&slots),
                base: i * n,
                mask: n - 1,
                len: 0,
            })
            .collect()
    }

    /// A view of the slots for reading hints without the lock.
    pub(crate) fn view(&self) -> IndexView {
        IndexView {
            slots: Arc::clone(&self.slots),
            base: self.base,
            mask: self.mask,
        }
    }

    #[inline(always)]
    fn slot(&self, pos: usize) -> &AtomicU64 {
        &self.slots[self.base + pos]
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first code stored under hash `h` for which `eq` holds.
    #[inline(always)]
    pub(crate) fn find(&self, h: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let t = tag(h);
        let mut pos = t as usize & self.mask;
        loop {
            let v = self.slot(pos).load(Relaxed);
            if v == 0 {
                return None;
            }
            if (v >> 32) as u32 == t {
                let code = (v as u32).wrapping_sub(1);
                if eq(code) {
                    return Some(code);
                }
            }
            pos = (pos + 1) & self.mask;
        }
    }

    /// Stores `code` (below `u32::MAX`) under hash `h`. The caller never exceeds the capacity
    /// given at creation and never inserts a key twice.
    pub(crate) fn insert(&mut self, h: u64, code: u32) {
        debug_assert!(self.len < self.mask);
        let t = tag(h);
        let mut pos = t as usize & self.mask;
        while self.slot(pos).load(Relaxed) != 0 {
            pos = (pos + 1) & self.mask;
        }
        self.slot(pos).store(
            u64::from(t) << 32 | u64::from(code.wrapping_add(1)),
            Relaxed,
        );
        self.len += 1;
    }

    /// Removes `code` stored under hash `h`; `false` if it is not there.
    pub(crate) fn remove(&mut self, h: u64, code: u32) -> bool {
        let want = u64::from(tag(h)) << 32 | u64::from(code.wrapping_add(1));
        let mut pos = tag(h) as usize & self.mask;
        loop {
            let v = self.slot(pos).load(Relaxed);
            if v == 0 {
                return false;
            }
            if v == want {
                break;
            }
            pos = (pos + 1) & self.mask;
        }
        // Backward-shift deletion: pull later slots of the probe run into the hole when their
        // home lies at or before it, so no search ever stops early at the hole.
        let mut hole = pos;
        let mut j = (pos + 1) & self.mask;
        loop {
            let v = self.slot(j).load(Relaxed);
            if v == 0 {
                break;
            }
            let home = (v >> 32) as usize & self.mask;
            if j.wrapping_sub(home) & self.mask >= j.wrapping_sub(hole) & self.mask {
                self.slot(hole).store(v, Relaxed);
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        self.slot(hole).store(0, Relaxed);
        self.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes chosen to collide on the home slot and wrap around the end of the table.
    fn h(home: u64, salt: u64) -> u64 {
        (salt << 8 | home) << 32
    }

    #[test]
    fn insert_find_remove_with_collisions_and_wraparound() {
        let mut ix = Index::with_capacity(4); // 8 slots
        let keys: Vec<(u64, u32)> = (0..4).map(|i| (h(6 + (i % 2), i), i as u32)).collect();
        for &(hh, c) in &keys {
            ix.insert(hh, c);
        }
        assert_eq!(ix.len(), 4);
        for &(hh, c) in &keys {
            assert_eq!(ix.find(hh, |x| x == c), Some(c));
        }
        assert_eq!(ix.find(h(6, 9), |_| true), None, "other tags never match");
        // Remove in an order that forces shifts across the wrap.
        assert!(ix.remove(keys[0].0, keys[0].1));
        assert!(!ix.remove(keys[0].0, keys[0].1));
        for &(hh, c) in &keys[1..] {
            assert_eq!(
                ix.find(hh, |x| x == c),
                Some(c),
                "code {c} lost by the shift"
            );
        }
        for &(hh, c) in &keys[1..] {
            assert!(ix.remove(hh, c));
        }
        assert_eq!(ix.len(), 0);
        assert!(
            (0..=ix.mask).all(|p| ix.slot(p).load(Relaxed) == 0),
            "no tombstones left"
        );
    }

    #[test]
    fn indexes_sharing_one_array_stay_apart_and_views_follow_them() {
        let mut ixs = Index::many(3, 4);
        let views: Vec<IndexView> = ixs.iter().map(Index::view).collect();
        // The same hash in every index, a different code in each.
        let hh = h(7, 1);
        for (i, ix) in ixs.iter_mut().enumerate() {
            ix.insert(hh, i as u32 * 10);
        }
        for (i, (ix, v)) in ixs.iter().zip(&views).enumerate() {
            assert_eq!(ix.find(hh, |_| true), Some(i as u32 * 10));
            assert_eq!(v.first_tagged(hh), Some(i as u32 * 10), "view {i}");
            assert_eq!(v.first_tagged(h(7, 2)), None, "another tag, view {i}");
        }
        assert!(ixs[1].remove(hh, 10));
        assert_eq!(views[1].first_tagged(hh), None, "the view sees the removal");
        assert_eq!(views[0].first_tagged(hh), Some(0));
        assert_eq!(views[2].first_tagged(hh), Some(20));
    }

    #[test]
    fn matches_a_model_under_random_churn() {
        let mut ix = Index::with_capacity(64);
        let mut model: Vec<(u64, u32)> = Vec::new();
        let mut x = 0x1234_5678_9abc_def0u64;
        for step in 0..5000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Few distinct homes so runs are long and shifts frequent.
            let hh = h(x & 15, x >> 60);
            if model.len() < 64 && !(x >> 8).is_multiple_of(3) {
                ix.insert(hh, step);
                model.push((hh, step));
            } else if !model.is_empty() {
                let (rh, rc) = model.swap_remove((x >> 20) as usize % model.len());
                assert!(ix.remove(rh, rc));
            }
            assert_eq!(ix.len(), model.len());
        }
        for &(hh, c) in &model {
            assert_eq!(ix.find(hh, |x| x == c), Some(c));
        }
    }
}
