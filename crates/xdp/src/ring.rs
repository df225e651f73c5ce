//! The four AF_XDP single-producer/single-consumer rings (fill, completion, rx, tx) as mapped from
//! the socket with `XDP_MMAP_OFFSETS`.
//!
//! Each ring is a power-of-two array of entries plus a producer word, a consumer word and a flags
//! word shared with the kernel. We follow the protocol of the kernel's
//! Documentation/networking/af_xdp.rst and libxdp's xsk.h: the side that *reads* entries loads the
//! other side's index with **Acquire** (so the entries it wrote are visible) and publishes its own
//! index with a **Release** store (so the kernel sees our entry writes, or knows we are done reading
//! the slots it may now reuse). Each side keeps a cached copy of the other's index and refreshes it
//! only when the cache says the ring is empty/full, as libxdp does.
//! Invariants: offsets were checked at construction to lie inside the mapping, 4-aligned for the
//! index words and entry-aligned for the array; entry positions are masked by `size - 1`.
//! Thread-safety: a `Ring` is `Send` but used by one thread at a time (`&mut self` for updates).

use std::io;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys::Mmap;

/// An entry type of a ring: `u64` UMEM addresses (fill, completion) or `xdp_desc` (rx, tx).
pub(crate) trait Entry: Copy {}
impl Entry for u64 {}
impl Entry for libc::xdp_desc {}

/// Byte offsets of a ring's parts inside its mapping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub producer: usize,
    pub consumer: usize,
    pub flags: usize,
    pub desc: usize,
}

impl Layout {
    pub(crate) fn from_kernel(off: &libc::xdp_ring_offset) -> io::Result<Self> {
        let conv =
            |v: u64| usize::try_from(v).map_err(|_| io::Error::from(io::ErrorKind::InvalidData));
        Ok(Self {
            producer: conv(off.producer)?,
            consumer: conv(off.consumer)?,
            flags: conv(off.flags)?,
            desc: conv(off.desc)?,
        })
    }

    /// Bytes needed to map a ring of `size` entries of `T`.
    pub(crate) fn map_len<T>(&self, size: u32) -> Option<usize> {
        (size as usize)
            .checked_mul(size_of::<T>())?
            .checked_add(self.desc)
    }
}

#[derive(Debug)]
pub(crate) struct Ring<T> {
    map: Mmap,
    layout: Layout,
    size: u32,
    mask: u32,
    /// Our producer position (producer rings: includes entries written but not yet published).
    cached_prod: u32,
    /// Our consumer position (consumer rings) or the last consumer index read from the kernel.
    cached_cons: u32,
    _entry: PhantomData<T>,
}

impl<T: Entry> Ring<T> {
    /// Maps the ring of `size` entries found at page offset `pgoff` of the socket.
    pub(crate) fn map(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: libc::off_t,
    ) -> io::Result<Self> {
        let layout = Layout::from_kernel(off)?;
        let len = layout
            .map_len::<T>(size)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let map = Mmap::shared(fd, len, pgoff)?;
        Self::over(map, layout, size)
    }

    /// Builds a ring over an existing mapping (also used by tests over anonymous memory).
    pub(crate) fn over(map: Mmap, layout: Layout, size: u32) -> io::Result<Self> {
        let bad = || io::Error::from(io::ErrorKind::InvalidData);
        if !size.is_power_of_two() {
            return Err(bad());
        }
        let base = map.as_ptr() as usize;
        for word in [layout.producer, layout.consumer, layout.flags] {
            if word.checked_add(4).is_none_or(|end| end > map.len())
                || !(base + word).is_multiple_of(4)
            {
                return Err(bad());
            }
        }
        if layout.map_len::<T>(size).is_none_or(|end| end > map.len())
            || !(base + layout.desc).is_multiple_of(align_of::<T>())
        {
            return Err(bad());
        }
        let mut ring = Self {
            map,
            layout,
            size,
            mask: size - 1,
            cached_prod: 0,
            cached_cons: 0,
            _entry: PhantomData,
        };
        ring.cached_prod = ring.word(layout.producer).load(Ordering::Acquire);
        ring.cached_cons = ring.word(layout.consumer).load(Ordering::Acquire);
        Ok(ring)
    }

    #[expect(clippy::cast_ptr_alignment, reason = "alignment checked in `over`")]
    fn word(&self, offset: usize) -> &AtomicU32 {
        let p = self.map.as_ptr().wrapping_add(offset).cast::<u32>();
        // SAFETY: `offset` was checked in `over` to leave 4 in-bounds, 4-aligned bytes inside the
        // mapping, which lives as long as `self`; the kernel accesses these words only atomically
        // (smp_load_acquire / smp_store_release / READ_ONCE), so no non-atomic access races.
        unsafe { AtomicU32::from_ptr(p) }
    }

    fn slot(&self, pos: u32) -> *mut T {
        let index = (pos & self.mask) as usize;
        self.map
            .as_ptr()
            .wrapping_add(self.layout.desc + index * size_of::<T>())
            .cast::<T>()
    }

    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    /// Whether the kernel asked to be woken (`XDP_RING_NEED_WAKEUP`) for this ring.
    pub(crate) fn needs_wakeup(&self) -> bool {
        self.word(self.layout.flags).load(Ordering::Acquire) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // ---- producer side (fill, tx) ----

    /// Free slots for producing, refreshing the kernel's consumer index (Acquire) only when the
    /// cached value shows fewer than `want`.
    pub(crate) fn free_slots(&mut self, want: u32) -> u32 {
        let free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return free;
        }
        self.cached_cons = self.word(self.layout.consumer).load(Ordering::Acquire);
        self.size - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Writes one entry at our producer position without publishing it; false when full.
    pub(crate) fn push(&mut self, entry: T) -> bool {
        if self.free_slots(1) == 0 {
            return false;
        }
        let p = self.slot(self.cached_prod);
        // SAFETY: `slot` masks the position into the entry array checked in `over`; the slot lies
        // between the kernel's consumer index and our unpublished producer position, so the
        // kernel does not read it until `publish` (a Release store) hands it over.
        unsafe { p.write(entry) };
        self.cached_prod = self.cached_prod.wrapping_add(1);
        true
    }

    /// Publishes every pushed entry to the kernel (Release store of the producer index).
    pub(crate) fn publish(&self) {
        self.word(self.layout.producer)
            .store(self.cached_prod, Ordering::Release);
    }

    /// Entries produced (published or not) that the kernel has not consumed yet.
    pub(crate) fn unconsumed(&mut self) -> u32 {
        self.cached_cons = self.word(self.layout.consumer).load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    // ---- consumer side (rx, completion) ----

    /// Entries ready to read (at most `max`), refreshing the kernel's producer index (Acquire)
    /// when the cache shows fewer than `max`.
    pub(crate) fn available(&mut self, max: u32) -> u32 {
        let mut n = self.cached_prod.wrapping_sub(self.cached_cons);
        if n < max {
            self.cached_prod = self.word(self.layout.producer).load(Ordering::Acquire);
            n = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        n.min(max)
    }

    /// Reads the `i`-th available entry; `i` must be below what `available` returned.
    pub(crate) fn read(&self, i: u32) -> T {
        debug_assert!(i < self.cached_prod.wrapping_sub(self.cached_cons));
        let p = self.slot(self.cached_cons.wrapping_add(i));
        // SAFETY: the slot is inside the checked entry array; it lies between our consumer index
        // and the producer index loaded with Acquire, so the producer finished writing it and
        // will not reuse it before we `release` it.
        unsafe { p.read() }
    }

    /// Hands `n` read entries back to the producer (Release store of the consumer index).
    pub(crate) fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        self.word(self.layout.consumer)
            .store(self.cached_cons, Ordering::Release);
    }

    /// Test hook: the raw index words, as the "other side" sees them.
    #[cfg(test)]
    pub(crate) fn raw_indices(&self) -> (&AtomicU32, &AtomicU32) {
        (
            self.word(self.layout.producer),
            self.word(self.layout.consumer),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anon_ring<T: Entry>(size: u32) -> Ring<T> {
        let layout = Layout {
            producer: 0,
            consumer: 64,
            flags: 128,
            desc: 192,
        };
        let len = layout.map_len::<T>(size).unwrap();
        Ring::over(Mmap::anonymous(len).unwrap(), layout, size).unwrap()
    }

    /// Two `Ring` views over one mapping cannot exist safely, so the test plays the kernel by
    /// moving the raw index words directly and checks the user side wraps around correctly.
    #[test]
    fn producer_ring_respects_consumer_index_across_wraparound() {
        let mut ring = anon_ring::<u64>(8);
        let mut next = 0u64;
        let mut consumed = 0u32;
        for round in 0..50u32 {
            let mut pushed = 0;
            while ring.push(next) {
                next += 1;
                pushed += 1;
            }
            // Never more than `size` entries outstanding.
            assert_eq!(ring.unconsumed(), 8, "round {round}");
            assert!(pushed <= 8);
            ring.publish();
            let (prod, cons) = ring.raw_indices();
            assert_eq!(prod.load(Ordering::Acquire), next as u32);
            // The "kernel" consumes a few entries, checking their values.
            let take = 1 + round % 8;
            for k in 0..take {
                let pos = consumed.wrapping_add(k);
                let v = ring.slot(pos);
                // SAFETY: the test plays the kernel: the slot was published and is in bounds.
                let got = unsafe { v.read() };
                assert_eq!(got, u64::from(pos));
            }
            consumed = consumed.wrapping_add(take);
            cons.store(consumed, Ordering::Release);
            assert_eq!(ring.free_slots(8), take);
        }
    }

    #[test]
    fn consumer_ring_reads_in_order_and_releases() {
        let mut ring = anon_ring::<libc::xdp_desc>(4);
        let mut produced = 0u32;
        let mut seen = 0u32;
        for _ in 0..20 {
            assert_eq!(ring.available(4), produced - seen);
            // The "kernel" produces up to the free space.
            while produced - seen < 4 {
                let p = ring.slot(produced);
                // SAFETY: the test plays the kernel writing a free, in-bounds slot.
                unsafe {
                    p.write(libc::xdp_desc {
                        addr: u64::from(produced) * 2048,
                        len: produced,
                        options: 0,
                    });
                }
                produced += 1;
            }
            ring.raw_indices().0.store(produced, Ordering::Release);
            let n = ring.available(3);
            assert_eq!(n, 3);
            for i in 0..n {
                let d = ring.read(i);
                assert_eq!(d.len, seen + i);
                assert_eq!(d.addr, u64::from(seen + i) * 2048);
            }
            ring.release(n);
            seen += n;
            assert_eq!(ring.raw_indices().1.load(Ordering::Acquire), seen);
        }
    }

    #[test]
    fn rejects_bad_layouts() {
        let layout = Layout {
            producer: 0,
            consumer: 2,
            flags: 8,
            desc: 16,
        };
        assert!(Ring::<u64>::over(Mmap::anonymous(4096).unwrap(), layout, 8).is_err());
        let layout = Layout {
            producer: 0,
            consumer: 4,
            flags: 8,
            desc: 16,
        };
        assert!(Ring::<u64>::over(Mmap::anonymous(4096).unwrap(), layout, 6).is_err());
        assert!(Ring::<u64>::over(Mmap::anonymous(4096).unwrap(), layout, 1024).is_err());
        assert!(Ring::<u64>::over(Mmap::anonymous(4096).unwrap(), layout, 256).is_ok());
    }
}
