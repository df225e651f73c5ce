//! [`Batch`]: the vector of frames one call of [`Worker::process`](crate::Worker::process) works on.
//!
//! A batch owns `2 × BATCH_SIZE` preallocated buffers of [`BUF_SIZE`] bytes: the first
//! [`BATCH_SIZE`] receive frames (the runner fills them with [`Batch::push`] or
//! [`Batch::rx_slot`]), the rest hold packets the pipeline generates (ARP replies, neighbour
//! advertisements, ICMP errors; at most one per received frame, so they never run out). Each
//! received frame is written at offset [`HEADROOM`] so VXLAN encapsulation prepends the outer
//! headers in place. After `process`, every frame has a [`Disposition`]; [`Batch::outputs`] lists
//! the frames to transmit grouped by output port (a sort of a preallocated index, no allocation).
//!
//! Invariants: `start + len <= BUF_SIZE` for every frame; nothing allocates after
//! [`Batch::new`]. A batch is owned by one worker thread (`Send`, not shared).

use crate::stats::DropReason;

/// Maximum received frames per batch.
pub const BATCH_SIZE: usize = 64;
/// Bytes reserved in front of each received frame for encapsulation (VXLAN needs 50).
pub const HEADROOM: usize = 128;
/// Size of one buffer: headroom plus a 2048-byte frame.
pub const BUF_SIZE: usize = HEADROOM + 2048;
/// Largest frame a buffer accepts.
pub const MAX_FRAME: usize = BUF_SIZE - HEADROOM;

/// What happens to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Not processed yet (or an unused slot).
    Pending,
    /// Transmit on this port.
    Output(u32),
    /// Dropped, counted under this reason.
    Drop(DropReason),
    /// Consumed by the router (an ARP request or neighbour solicitation it answered).
    Consumed,
}

/// One preallocated packet buffer.
#[derive(Debug)]
pub struct Packet {
    buf: Box<[u8]>,
    /// Offset of the frame in the buffer.
    pub(crate) start: usize,
    /// Frame length.
    pub(crate) len: usize,
    /// Port it arrived on (for generated packets: the port of the frame that caused them).
    pub(crate) in_port: u32,
    /// Fate after processing.
    pub(crate) disposition: Disposition,
}

impl Packet {
    fn new() -> Packet {
        Packet {
            buf: vec![0u8; BUF_SIZE].into_boxed_slice(),
            start: HEADROOM,
            len: 0,
            in_port: 0,
            disposition: Disposition::Pending,
        }
    }

    /// The frame bytes.
    pub fn frame(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// Port the frame arrived on.
    pub fn in_port(&self) -> u32 {
        self.in_port
    }

    /// What the pipeline decided.
    pub fn disposition(&self) -> Disposition {
        self.disposition
    }

    /// The whole buffer and the frame's range, for in-place rewriting and encapsulation.
    pub(crate) fn parts_mut(&mut self) -> (&mut [u8], usize, usize) {
        (&mut self.buf, self.start, self.len)
    }

    pub(crate) fn buffer_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    pub(crate) fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

/// A vector of frames with preallocated buffers; see the module docs.
#[derive(Debug)]
pub struct Batch {
    packets: Box<[Packet]>,
    /// Received frames in `packets[..rx]`.
    rx: usize,
    /// Generated frames in `packets[BATCH_SIZE..BATCH_SIZE + generated]`.
    generated: usize,
    /// (port, packet index) of every frame to transmit, sorted by port after `process`.
    out: Vec<(u32, u16)>,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// Allocates every buffer up front.
    pub fn new() -> Batch {
        Batch {
            packets: (0..2 * BATCH_SIZE).map(|_| Packet::new()).collect(),
            rx: 0,
            generated: 0,
            out: Vec::with_capacity(2 * BATCH_SIZE),
        }
    }

    /// Empties the batch (buffers are kept).
    pub fn clear(&mut self) {
        self.rx = 0;
        self.generated = 0;
        self.out.clear();
    }

    /// Number of received frames.
    pub fn len(&self) -> usize {
        self.rx
    }

    /// Whether no frame was received.
    pub fn is_empty(&self) -> bool {
        self.rx == 0
    }

    /// Whether the batch holds [`BATCH_SIZE`] frames.
    pub fn is_full(&self) -> bool {
        self.rx == BATCH_SIZE
    }

    /// Copies a received frame in. Returns `false` (frame not added) when the batch is full or
    /// the frame is longer than [`MAX_FRAME`].
    pub fn push(&mut self, in_port: u32, frame: &[u8]) -> bool {
        match self.rx_slot(in_port, frame.len()) {
            Some(dst) => {
                dst.copy_from_slice(frame);
                true
            }
            None => false,
        }
    }

    /// Reserves the next receive slot for a frame of `len` bytes and returns where to write it
    /// (for a runner that receives straight into the batch). `None` when full or too long.
    pub fn rx_slot(&mut self, in_port: u32, len: usize) -> Option<&mut [u8]> {
        if self.rx == BATCH_SIZE || len > MAX_FRAME {
            return None;
        }
        let p = &mut self.packets[self.rx];
        self.rx += 1;
        p.start = HEADROOM;
        p.len = len;
        p.in_port = in_port;
        p.disposition = Disposition::Pending;
        Some(&mut p.buf[HEADROOM..HEADROOM + len])
    }

    /// The received frames (after `process`, rewritten in place) with their dispositions.
    pub fn received(&self) -> &[Packet] {
        &self.packets[..self.rx]
    }

    /// The generated frames of the last `process`.
    pub fn generated(&self) -> &[Packet] {
        &self.packets[BATCH_SIZE..BATCH_SIZE + self.generated]
    }

    /// Frames to transmit as `(port, frame)`, grouped by port (ascending), received frames of a
    /// port in arrival order, then its generated frames.
    pub fn outputs(&self) -> impl Iterator<Item = (u32, &[u8])> + '_ {
        self.out
            .iter()
            .map(|&(port, i)| (port, self.packets[usize::from(i)].frame()))
    }

    pub(crate) fn rx_count(&self) -> usize {
        self.rx
    }

    pub(crate) fn packet_mut(&mut self, i: usize) -> &mut Packet {
        &mut self.packets[i]
    }

    /// Two packets at once: received `i` (read) and a fresh generated slot (write), or `None`
    /// when every spare buffer is used.
    pub(crate) fn spare(&mut self, i: usize) -> Option<(&mut Packet, &mut Packet)> {
        if self.generated == BATCH_SIZE || i >= BATCH_SIZE {
            return None;
        }
        let g = BATCH_SIZE + self.generated;
        self.generated += 1;
        let (rx, gen_) = self.packets.split_at_mut(BATCH_SIZE);
        let out = &mut gen_[g - BATCH_SIZE];
        out.start = HEADROOM;
        out.len = 0;
        out.in_port = rx[i].in_port;
        out.disposition = Disposition::Pending;
        Some((&mut rx[i], out))
    }

    /// Index of the last generated packet (valid right after a successful [`Batch::spare`]).
    pub(crate) fn last_generated(&self) -> usize {
        BATCH_SIZE + self.generated - 1
    }

    /// Forgets the last generated packet (its construction was abandoned).
    pub(crate) fn unspare(&mut self) {
        self.generated = self.generated.saturating_sub(1);
    }

    pub(crate) fn reset_generated(&mut self) {
        self.generated = 0;
        self.out.clear();
    }

    /// Builds the per-port output list from the dispositions.
    pub(crate) fn collect_outputs(&mut self) {
        self.out.clear();
        let gen_end = BATCH_SIZE + self.generated;
        for i in (0..self.rx).chain(BATCH_SIZE..gen_end) {
            if let Disposition::Output(port) = self.packets[i].disposition {
                self.out.push((port, i as u16));
            }
        }
        // Stable insertion sort by port: keeps arrival order within a port, never allocates
        // (the library's stable sort may), and the list is short and nearly sorted (few ports).
        let v = &mut self.out;
        for j in 1..v.len() {
            let mut k = j;
            while k > 0 && v[k - 1].0 > v[k].0 {
                v.swap(k - 1, k);
                k -= 1;
            }
        }
    }
}
