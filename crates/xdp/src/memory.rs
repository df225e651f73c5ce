//! `MemoryPort`: a [`Port`] over in-memory frame queues, for tests of the datapath worker.
//!
//! Each direction is a bounded [`FrameQueue`]: one preallocated byte arena of `capacity` slots of
//! `slot_size` bytes plus lengths, so pushing and popping frames never allocates (the worker's
//! steady-state allocation count stays honest). A port's receive queue is filled by a
//! [`MemoryPortHandle`] (the test side) or by the peer of a [`MemoryPort::pair`]; what it sends
//! lands in the handle's / peer's queue at once (`flush` has nothing to do).
//! Thread-safety: queues sit behind `Arc<Mutex<_>>`, so a port may run in a worker thread while
//! the test injects and drains frames from another; a poisoned lock reads as `Disconnected`.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use crate::port::{Port, PortError, PortStats};

/// A bounded FIFO of frames stored in one preallocated arena.
#[derive(Debug)]
pub struct FrameQueue {
    arena: Vec<u8>,
    slot_size: usize,
    /// (slot index, length) of queued frames, oldest first.
    queued: VecDeque<(usize, usize)>,
    free_slots: Vec<usize>,
}

impl FrameQueue {
    /// A queue of `capacity` frames of up to `slot_size` bytes each.
    pub fn new(capacity: usize, slot_size: usize) -> Self {
        Self {
            arena: vec![0; capacity * slot_size],
            slot_size,
            queued: VecDeque::with_capacity(capacity),
            free_slots: (0..capacity).rev().collect(),
        }
    }

    /// Appends a copy of `frame`; `Ok(false)` when the queue is full.
    pub fn push(&mut self, frame: &[u8]) -> Result<bool, PortError> {
        if frame.len() > self.slot_size {
            return Err(PortError::FrameTooLarge {
                len: frame.len(),
                max: self.slot_size,
            });
        }
        let Some(slot) = self.free_slots.pop() else {
            return Ok(false);
        };
        let start = slot * self.slot_size;
        self.arena[start..start + frame.len()].copy_from_slice(frame);
        self.queued.push_back((slot, frame.len()));
        Ok(true)
    }

    /// Removes the oldest frame, lending its bytes to `f`; false when empty.
    pub fn pop_with(&mut self, f: &mut dyn FnMut(&[u8])) -> bool {
        let Some((slot, len)) = self.queued.pop_front() else {
            return false;
        };
        let start = slot * self.slot_size;
        f(&self.arena[start..start + len]);
        self.free_slots.push(slot);
        true
    }

    pub fn len(&self) -> usize {
        self.queued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }
}

type Shared = Arc<Mutex<FrameQueue>>;

fn new_queue(capacity: usize, slot_size: usize) -> Shared {
    Arc::new(Mutex::new(FrameQueue::new(capacity, slot_size)))
}

/// An in-memory port. See the module documentation.
#[derive(Debug)]
pub struct MemoryPort {
    name: String,
    rx: Shared,
    tx: Shared,
    slot_size: usize,
    stats: PortStats,
}

/// The test's end of a [`MemoryPort`]: injects frames the port will receive and drains frames the
/// port sent.
#[derive(Debug, Clone)]
pub struct MemoryPortHandle {
    to_port: Shared,
    from_port: Shared,
}

/// Default slot size: a full 1500-byte MTU frame with VLAN tag and room for VXLAN encapsulation.
pub const DEFAULT_SLOT_SIZE: usize = 2048;

impl MemoryPort {
    /// A port with queues of `capacity` frames each, and the handle that feeds and drains it.
    pub fn new(name: &str, capacity: usize) -> (Self, MemoryPortHandle) {
        let rx = new_queue(capacity, DEFAULT_SLOT_SIZE);
        let tx = new_queue(capacity, DEFAULT_SLOT_SIZE);
        let port = Self::with_queues(name, rx.clone(), tx.clone(), DEFAULT_SLOT_SIZE);
        (
            port,
            MemoryPortHandle {
                to_port: rx,
                from_port: tx,
            },
        )
    }

    /// Two ports wired back to back: what one sends, the other receives.
    pub fn pair(name_a: &str, name_b: &str, capacity: usize) -> (Self, Self) {
        let ab = new_queue(capacity, DEFAULT_SLOT_SIZE);
        let ba = new_queue(capacity, DEFAULT_SLOT_SIZE);
        (
            Self::with_queues(name_a, ba.clone(), ab.clone(), DEFAULT_SLOT_SIZE),
            Self::with_queues(name_b, ab, ba, DEFAULT_SLOT_SIZE),
        )
    }

    fn with_queues(name: &str, rx: Shared, tx: Shared, slot_size: usize) -> Self {
        Self {
            name: name.to_owned(),
            rx,
            tx,
            slot_size,
            stats: PortStats::default(),
        }
    }
}

impl MemoryPortHandle {
    /// Queues `frame` for the port to receive; `Ok(false)` when its receive queue is full.
    pub fn inject(&self, frame: &[u8]) -> Result<bool, PortError> {
        self.to_port
            .lock()
            .map_err(|_| PortError::Disconnected)?
            .push(frame)
    }

    /// Takes every frame the port has sent so far, lending each to `f`; returns how many.
    pub fn drain(&self, f: &mut dyn FnMut(&[u8])) -> Result<usize, PortError> {
        let mut q = self.from_port.lock().map_err(|_| PortError::Disconnected)?;
        let mut n = 0;
        while q.pop_with(f) {
            n += 1;
        }
        Ok(n)
    }

    /// Convenience for tests: every sent frame as an owned vector (allocates).
    pub fn take_sent(&self) -> Result<Vec<Vec<u8>>, PortError> {
        let mut out = Vec::new();
        self.drain(&mut |f| out.push(f.to_vec()))?;
        Ok(out)
    }
}

impl Port for MemoryPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn recv(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> Result<usize, PortError> {
        let mut q = self.rx.lock().map_err(|_| PortError::Disconnected)?;
        let mut n = 0;
        while n < max {
            let stats = &mut self.stats;
            let got = q.pop_with(&mut |frame| {
                stats.rx_packets += 1;
                stats.rx_bytes += frame.len() as u64;
                f(frame);
            });
            if !got {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    fn send(&mut self, frame: &[u8]) -> Result<bool, PortError> {
        if frame.len() > self.slot_size {
            return Err(PortError::FrameTooLarge {
                len: frame.len(),
                max: self.slot_size,
            });
        }
        let queued = self
            .tx
            .lock()
            .map_err(|_| PortError::Disconnected)?
            .push(frame)?;
        if queued {
            self.stats.tx_packets += 1;
            self.stats.tx_bytes += frame.len() as u64;
        } else {
            self.stats.tx_dropped += 1;
        }
        Ok(queued)
    }

    fn flush(&mut self) -> Result<(), PortError> {
        Ok(())
    }

    fn poll_fd(&self) -> Option<RawFd> {
        None
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_is_fifo_bounded_and_reuses_slots() {
        let mut q = FrameQueue::new(3, 16);
        for round in 0..10u8 {
            assert!(q.push(&[round, 1]).unwrap());
            assert!(q.push(&[round, 2, 2]).unwrap());
            assert!(q.push(&[round]).unwrap());
            assert!(!q.push(&[9]).unwrap(), "full");
            let mut got = Vec::new();
            while q.pop_with(&mut |f| got.push(f.to_vec())) {}
            assert_eq!(got, vec![vec![round, 1], vec![round, 2, 2], vec![round]]);
            assert!(q.is_empty());
        }
        assert_eq!(
            q.push(&[0; 17]),
            Err(PortError::FrameTooLarge { len: 17, max: 16 })
        );
    }

    #[test]
    fn handle_feeds_and_drains_the_port() {
        let (mut port, handle) = MemoryPort::new("mem0", 4);
        for i in 0..5u8 {
            assert_eq!(handle.inject(&[i; 60]).unwrap(), i < 4);
        }
        let mut seen = Vec::new();
        assert_eq!(port.recv(3, &mut |f| seen.push(f[0])).unwrap(), 3);
        assert_eq!(port.recv(32, &mut |f| seen.push(f[0])).unwrap(), 1);
        assert_eq!(seen, vec![0, 1, 2, 3]);
        for i in 0..6u8 {
            assert_eq!(port.send(&[i; 64]).unwrap(), i < 4);
        }
        port.flush().unwrap();
        let sent = handle.take_sent().unwrap();
        assert_eq!(sent.len(), 4);
        assert!(
            sent.iter()
                .enumerate()
                .all(|(i, f)| f.len() == 64 && f[0] == i as u8)
        );
        let s = port.stats();
        assert_eq!(
            (s.rx_packets, s.rx_bytes, s.tx_packets, s.tx_dropped),
            (4, 240, 4, 2)
        );
        assert_eq!(port.poll_fd(), None);
        assert_eq!(port.name(), "mem0");
        assert!(port.send(&[0; 3000]).is_err());
    }

    #[test]
    fn pair_delivers_both_ways_across_threads() {
        let (mut a, mut b) = MemoryPort::pair("a", "b", 64);
        let echo = std::thread::spawn(move || {
            let mut echoed = 0;
            let mut buf = Vec::new();
            while echoed < 1000 {
                b.recv(32, &mut |f| buf.push(f.to_vec())).unwrap();
                for f in buf.drain(..) {
                    let mut reply = f.clone();
                    reply.reverse();
                    while !b.send(&reply).unwrap() {
                        std::thread::yield_now();
                    }
                    echoed += 1;
                }
                std::thread::yield_now();
            }
            b.stats()
        });
        let mut received = 0u32;
        let mut sent = 0u32;
        while received < 1000 {
            if sent < 1000
                && sent - received < 32
                && a.send(&[0, 0, (sent % 251) as u8, 7]).unwrap()
            {
                sent += 1;
            }
            a.recv(32, &mut |f| {
                assert_eq!(f[0], 7, "reply is the reversed frame");
                assert_eq!(f[1], (received % 251) as u8, "in order");
                received += 1;
            })
            .unwrap();
        }
        let b_stats = echo.join().unwrap();
        assert_eq!(b_stats.rx_packets, 1000);
        assert_eq!(b_stats.tx_packets, 1000);
    }
}
