//! The UMEM: one anonymous mapping cut into equal power-of-two frames, registered with the socket
//! (`XDP_UMEM_REG`, aligned chunk mode), plus the bookkeeping that proves frame ownership.
//!
//! Every frame is in exactly one place at any time, recorded in a per-frame state byte:
//! `Free` (on our free stack), `Fill` (handed to the kernel through the fill ring, waiting to carry
//! a received packet), `User` (owned by user code: a received frame being delivered, or a frame
//! being written for transmission) or `Tx` (handed to the kernel through the TX ring, until its
//! address comes back on the completion ring). Transitions are checked: an address coming back
//! from the kernel in an unexpected state is refused (counted by the caller), never double-used.
//! Frame bytes are only borrowed while the frame is `User`, the one state in which the kernel does
//! not touch it; that is what makes the borrows in [`Umem::frame`] / [`Umem::frame_mut`] sound.
//! Thread-safety: owned by one `XskPort`; `Send`, not shared.

use std::io;

use crate::sys::Mmap;

/// Where a frame currently is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameState {
    /// On the free stack.
    Free = 0,
    /// On the fill ring or held by the kernel for reception.
    Fill = 1,
    /// Owned by user code (being delivered or being written).
    User = 2,
    /// On the TX ring, in flight, or on the completion ring.
    Tx = 3,
}

/// A census of frame locations (see [`FrameState`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameAccounting {
    pub total: u32,
    pub free: u32,
    pub fill: u32,
    pub user: u32,
    pub tx: u32,
}

/// Why an accounting check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccountingError {
    /// The running counters disagree with a recount of the per-frame states.
    #[error("counters {counted:?} disagree with the per-frame states {recounted:?}")]
    CountersDisagree {
        counted: FrameAccounting,
        recounted: FrameAccounting,
    },
    /// Locations do not add up to the number of frames.
    #[error("frame locations {0:?} do not add up to the total")]
    Leak(FrameAccounting),
    /// The free stack holds a frame twice or a frame that is not `Free`.
    #[error("free stack entry for frame {0} is duplicated or not free")]
    FreeStackCorrupt(u32),
}

#[derive(Debug)]
pub(crate) struct Umem {
    map: Mmap,
    frame_size: u32,
    frame_shift: u32,
    frame_count: u32,
    free: Vec<u32>,
    state: Vec<FrameState>,
    counts: [u32; 4],
}

impl Umem {
    /// Maps `frame_count` frames of `frame_size` bytes (a power of two, 2048 or 4096).
    pub(crate) fn new(frame_size: u32, frame_count: u32) -> io::Result<Self> {
        if !(frame_size == 2048 || frame_size == 4096) || frame_count == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let len = (frame_size as usize)
            .checked_mul(frame_count as usize)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let map = Mmap::anonymous(len)?;
        // Pop order: frame 0 first (cosmetic, makes dumps readable).
        let free = (0..frame_count).rev().collect();
        Ok(Self {
            map,
            frame_size,
            frame_shift: frame_size.trailing_zeros(),
            frame_count,
            free,
            state: vec![FrameState::Free; frame_count as usize],
            counts: [frame_count, 0, 0, 0],
        })
    }

    /// The `XDP_UMEM_REG` argument describing this UMEM (no headroom, aligned chunks).
    pub(crate) fn registration(&self) -> libc::xdp_umem_reg {
        libc::xdp_umem_reg {
            addr: self.map.as_ptr().expose_provenance() as u64,
            len: self.map.len() as u64,
            chunk_size: self.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        }
    }

    pub(crate) fn free_len(&self) -> usize {
        self.free.len()
    }

    pub(crate) fn count(&self, state: FrameState) -> u32 {
        self.counts[state as usize]
    }

    /// The frame holding UMEM address `addr` (aligned mode: the chunk it falls in).
    pub(crate) fn frame_of(&self, addr: u64) -> Option<u32> {
        let frame = addr >> self.frame_shift;
        u32::try_from(frame).ok().filter(|&f| f < self.frame_count)
    }

    pub(crate) fn addr_of(&self, frame: u32) -> u64 {
        u64::from(frame) << self.frame_shift
    }

    /// Takes a frame off the free stack into state `to`.
    pub(crate) fn alloc(&mut self, to: FrameState) -> Option<u32> {
        let frame = self.free.pop()?;
        let moved = self.transition(frame, FrameState::Free, to);
        debug_assert!(moved, "free stack held a non-free frame");
        moved.then_some(frame)
    }

    /// Moves `frame` from `from` to `to`; false (and nothing changes) when it is not in `from`.
    pub(crate) fn transition(&mut self, frame: u32, from: FrameState, to: FrameState) -> bool {
        let Some(slot) = self.state.get_mut(frame as usize) else {
            return false;
        };
        if *slot != from {
            return false;
        }
        *slot = to;
        self.counts[from as usize] -= 1;
        self.counts[to as usize] += 1;
        true
    }

    /// Returns `frame` (currently `from`) to the free stack; false when it is not in `from`.
    pub(crate) fn release(&mut self, frame: u32, from: FrameState) -> bool {
        if !self.transition(frame, from, FrameState::Free) {
            return false;
        }
        self.free.push(frame);
        true
    }

    /// Borrows `len` bytes at `addr` of a `User` frame; `None` when the frame is not `User` or the
    /// range leaves the frame's chunk.
    pub(crate) fn frame(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let (offset, frame) = self.user_range(addr, len)?;
        debug_assert_eq!(self.state[frame as usize], FrameState::User);
        // SAFETY: the frame is `User`: it is on no kernel ring, so the kernel neither reads nor
        // writes it until we hand it back, which needs `&mut self` (excluded by this borrow).
        unsafe { self.map.bytes(offset, len as usize) }
    }

    /// Mutably borrows the first `len` bytes of a `User` frame.
    pub(crate) fn frame_mut(&mut self, frame: u32, len: u32) -> Option<&mut [u8]> {
        let (offset, _) = self.user_range(self.addr_of(frame), len)?;
        // SAFETY: the frame is `User` (checked in `user_range`): the kernel does not touch it.
        unsafe { self.map.bytes_mut(offset, len as usize) }
    }

    fn user_range(&self, addr: u64, len: u32) -> Option<(usize, u32)> {
        let frame = self.frame_of(addr)?;
        if self.state[frame as usize] != FrameState::User {
            return None;
        }
        let end_in_chunk = (addr - self.addr_of(frame)).checked_add(u64::from(len))?;
        if end_in_chunk > u64::from(self.frame_size) {
            return None;
        }
        Some((usize::try_from(addr).ok()?, frame))
    }

    /// The running counters.
    pub(crate) fn accounting(&self) -> FrameAccounting {
        FrameAccounting {
            total: self.frame_count,
            free: self.counts[FrameState::Free as usize],
            fill: self.counts[FrameState::Fill as usize],
            user: self.counts[FrameState::User as usize],
            tx: self.counts[FrameState::Tx as usize],
        }
    }

    /// Recounts every frame's state and checks it against the counters and the free stack: every
    /// frame is in exactly one place and none is leaked. O(frames); for tests and debug checks.
    pub(crate) fn check(&self) -> Result<FrameAccounting, AccountingError> {
        let counted = self.accounting();
        let mut recounted = FrameAccounting {
            total: self.frame_count,
            ..FrameAccounting::default()
        };
        for s in &self.state {
            match s {
                FrameState::Free => recounted.free += 1,
                FrameState::Fill => recounted.fill += 1,
                FrameState::User => recounted.user += 1,
                FrameState::Tx => recounted.tx += 1,
            }
        }
        if counted != recounted {
            return Err(AccountingError::CountersDisagree { counted, recounted });
        }
        if counted.free + counted.fill + counted.user + counted.tx != counted.total
            || self.free.len() != counted.free as usize
        {
            return Err(AccountingError::Leak(counted));
        }
        let mut seen = vec![false; self.frame_count as usize];
        for &f in &self.free {
            let i = f as usize;
            if i >= seen.len() || seen[i] || self.state[i] != FrameState::Free {
                return Err(AccountingError::FreeStackCorrupt(f));
            }
            seen[i] = true;
        }
        Ok(counted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_geometry() {
        assert!(Umem::new(1000, 16).is_err());
        assert!(Umem::new(2048, 0).is_err());
        assert!(Umem::new(4096, 4).is_ok());
    }

    #[test]
    fn transitions_are_checked_and_counted() {
        let mut u = Umem::new(2048, 8).unwrap();
        assert_eq!(u.check().unwrap().free, 8);
        let a = u.alloc(FrameState::Fill).unwrap();
        let b = u.alloc(FrameState::User).unwrap();
        assert_ne!(a, b);
        // Wrong source state: refused, nothing changes.
        assert!(!u.transition(a, FrameState::Tx, FrameState::Free));
        assert!(!u.release(b, FrameState::Fill));
        assert!(!u.transition(99, FrameState::Free, FrameState::Fill));
        let acc = u.check().unwrap();
        assert_eq!((acc.free, acc.fill, acc.user, acc.tx), (6, 1, 1, 0));
        // A frame can be delivered once: the second "receive" of the same address fails.
        assert!(u.transition(a, FrameState::Fill, FrameState::User));
        assert!(!u.transition(a, FrameState::Fill, FrameState::User));
        assert!(u.release(a, FrameState::User));
        assert!(!u.release(a, FrameState::User), "double free refused");
        assert!(u.transition(b, FrameState::User, FrameState::Tx));
        assert!(u.release(b, FrameState::Tx));
        let acc = u.check().unwrap();
        assert_eq!(
            acc,
            FrameAccounting {
                total: 8,
                free: 8,
                fill: 0,
                user: 0,
                tx: 0
            }
        );
    }

    #[test]
    fn frame_bytes_only_for_user_frames_within_the_chunk() {
        let mut u = Umem::new(2048, 4).unwrap();
        let f = u.alloc(FrameState::User).unwrap();
        let addr = u.addr_of(f);
        u.frame_mut(f, 4).unwrap().copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(u.frame(addr, 4).unwrap(), &[1, 2, 3, 4]);
        assert_eq!(u.frame(addr + 2, 2).unwrap(), &[3, 4]);
        assert!(
            u.frame(addr + 2000, 100).is_none(),
            "crosses into the next chunk"
        );
        assert!(u.frame_mut(f, 2049).is_none());
        let g = u.alloc(FrameState::Fill).unwrap();
        assert!(
            u.frame(u.addr_of(g), 4).is_none(),
            "kernel-owned frame not readable"
        );
        assert!(u.frame(u64::MAX, 1).is_none());
        assert_eq!(u.frame_of(u.addr_of(3) + 256), Some(3));
        assert_eq!(u.frame_of(4 * 2048), None);
    }

    #[test]
    fn check_detects_corruption() {
        let mut u = Umem::new(2048, 4).unwrap();
        let f = u.alloc(FrameState::User).unwrap();
        u.free.push(f);
        assert!(u.check().is_err());
    }
}
