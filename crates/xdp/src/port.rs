//! The `Port` trait: the datapath worker's copy-based view of one interface, and its counters.
//!
//! A port delivers received frames by lending their bytes to a callback (the worker copies them
//! into its own batch buffers) and queues frames for transmission by copying them in, so no frame
//! memory crosses the trait boundary. `send` queues; `flush` makes the kernel (or the backing
//! store) actually transmit and reaps finished transmissions. Per-packet errors are the small
//! `Copy` enum [`PortError`].
//! Thread-safety: a port is `Send` and owned by one worker thread at a time.

use std::os::fd::RawFd;

/// A per-call port error. Small and `Copy`: it is returned on the per-packet path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The frame does not fit in one buffer of the port.
    #[error("frame of {len} bytes exceeds the port limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    /// A system call failed with this errno.
    #[error("system call failed (errno {0})")]
    Os(i32),
    /// The capture being read is malformed.
    #[error("malformed capture file")]
    Malformed,
    /// The other end of the port is gone.
    #[error("port disconnected")]
    Disconnected,
}

impl PortError {
    pub(crate) fn from_io(e: &std::io::Error) -> Self {
        PortError::Os(e.raw_os_error().unwrap_or(0))
    }
}

/// The kernel's per-socket AF_XDP counters (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XdpStatistics {
    /// Frames dropped for other reasons than the ones below.
    pub rx_dropped: u64,
    /// Invalid descriptors met on the fill ring.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors met on the TX ring.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the TX ring empty on a wakeup.
    pub tx_ring_empty_descs: u64,
}

/// Counters of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Frames accepted by `send` (queued for transmission).
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Frames refused by `send` because no TX slot or buffer was free.
    pub tx_dropped: u64,
    /// Received frames the port had to discard (e.g. a descriptor the kernel should not have
    /// returned, or a malformed record).
    pub rx_dropped: u64,
    /// Kernel AF_XDP counters, for AF_XDP ports.
    pub xdp: Option<XdpStatistics>,
}

/// One interface as the datapath worker sees it.
pub trait Port: Send {
    /// The port's name (the interface name for AF_XDP ports).
    fn name(&self) -> &str;
    /// Receives up to `max` frames, calling `f` with each frame's bytes; returns how many.
    fn recv(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> Result<usize, PortError>;
    /// Queues one frame for transmission; `Ok(false)` when no TX slot is free (a counted drop).
    fn send(&mut self, frame: &[u8]) -> Result<bool, PortError>;
    /// Kicks the kernel for queued TX frames and reaps completions.
    fn flush(&mut self) -> Result<(), PortError>;
    /// Whether frames queued before the last `flush` are still waiting for the kernel (it
    /// stopped making progress); the caller should `flush` again soon rather than wait for
    /// new traffic to this port.
    fn tx_pending(&self) -> bool {
        false
    }
    /// An fd to `poll()` for readability when idle (adaptive polling), if any.
    fn poll_fd(&self) -> Option<RawFd>;
    /// Counters: rx/tx packets, bytes, drops, plus the kernel's XDP statistics where available.
    fn stats(&self) -> PortStats;
}
