//! `XskPort`: an AF_XDP socket on one interface queue, owning its UMEM, four rings, XSKMAP,
//! redirect program and bpf_link.
//!
//! Usage: `XskPort::open("eth0", &XskConfig::default())`, then the [`Port`] calls. Copy mode only
//! (`XDP_COPY`; zero-copy is EOPNOTSUPP on veth) with `XDP_USE_NEED_WAKEUP`.
//! Frame flow: free stack → fill ring → (kernel receives) → rx ring → user callback → free stack;
//! free stack → written by `send` → tx ring → (kernel transmits on `sendto`; copy mode sends at
//! most the socket's TX budget per call, raised from 32 to the TX ring size where the kernel has
//! `XDP_MAX_TX_SKB_BUDGET`) → completion ring → free stack. [`Umem`] records each frame's place and refuses
//! impossible transitions, so a frame is never leaked or used twice ([`XskPort::check_frames`]).
//! The fill ring is kept topped up to `fill_target` = min(fill ring size, frames / 2) so
//! transmission always has frames left.
//! Shutdown: dropping the port drops, in order, the link (the kernel detaches the program), the
//! program and map fds, the ring mappings, the socket, and finally the UMEM mapping. Nothing stays
//! attached, also after SIGKILL (the kernel closes the link fd).
//! Thread-safety: `Send`; one thread drives a port at a time.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::bpf::{Link, Program, XdpMode, XskMap};
use crate::port::{Port, PortError, PortStats, XdpStatistics};
use crate::ring::Ring;
use crate::sys;
use crate::umem::{AccountingError, FrameAccounting, FrameState, Umem};

/// `setsockopt(SOL_XDP, XDP_MAX_TX_SKB_BUDGET)` (include/uapi/linux/if_xdp.h, Linux 6.17): frames
/// one copy-mode `sendto` may transmit (32 ..= TX ring size); not yet in the libc crate.
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

/// Settings of one AF_XDP port. Ring sizes must be powers of two.
#[derive(Debug, Clone)]
pub struct XskConfig {
    /// UMEM frame (chunk) size: 2048 or 4096.
    pub frame_size: u32,
    /// Number of UMEM frames. Memory = frame_size × frame_count; the default (4096 × 2048 = 8 MiB)
    /// matches the 8 MiB MEMLOCK limit seen without CAP_IPC_LOCK.
    pub frame_count: u32,
    pub rx_ring_size: u32,
    pub tx_ring_size: u32,
    pub fill_ring_size: u32,
    pub completion_ring_size: u32,
    /// Interface queue to bind.
    pub queue_id: u32,
    /// How to attach the XDP program.
    pub mode: XdpMode,
    /// How long to keep retrying a bind or attach that fails with EBUSY (the previous owner's
    /// socket or link is still being torn down).
    pub busy_timeout: Duration,
    /// A port serves one queue; frames the device steers to another queue reach the kernel stack
    /// (the program returns XDP_PASS for them) and bypass the switch. So `open` refuses an
    /// interface with more than one active RX queue unless this is set (e.g. one port per queue
    /// on a multi-queue uplink). Reduce queues with `ethtool -L <if> combined 1` (or `rx 1`).
    pub allow_other_queues: bool,
}

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            frame_size: 2048,
            frame_count: 4096,
            rx_ring_size: 2048,
            tx_ring_size: 2048,
            fill_ring_size: 2048,
            completion_ring_size: 2048,
            queue_id: 0,
            mode: XdpMode::Auto,
            busy_timeout: Duration::from_secs(3),
            allow_other_queues: false,
        }
    }
}

/// Why opening an AF_XDP port failed.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// The configuration is unusable.
    #[error("invalid AF_XDP configuration: {0}")]
    Config(&'static str),
    /// The interface does not exist in this network namespace.
    #[error("interface {name:?} not found")]
    NoInterface {
        name: String,
        #[source]
        source: io::Error,
    },
    /// A system call of the setup failed.
    #[error("{op} failed for interface {ifname:?}")]
    Sys {
        op: &'static str,
        ifname: String,
        #[source]
        source: io::Error,
    },
    /// The kernel refused the XDP program.
    #[error("the kernel refused the XDP program ({source}); verifier log:\n{log}")]
    Verifier {
        #[source]
        source: io::Error,
        log: String,
    },
    /// The interface has several active RX queues and the port would see only one of them.
    #[error(
        "interface {ifname:?} has {queues} active RX queues but a port serves one; run \
         `ethtool -L {ifname} combined 1` (or `rx 1`), or set allow_other_queues"
    )]
    MultiQueue { ifname: String, queues: u32 },
    /// The program could not be attached.
    #[error(
        "attaching XDP ({mode} mode) to {ifname:?} failed; a leftover program can be removed with \
         `ip link set dev {ifname} xdpgeneric off` (or `xdpdrv off`)"
    )]
    Attach {
        ifname: String,
        mode: XdpMode,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
    tx_dropped: u64,
    rx_dropped: u64,
}

/// An AF_XDP port on one interface queue. See the module documentation.
pub struct XskPort {
    // Field order is drop order: detach first, unmap the UMEM last.
    link: Link,
    _program: Program,
    _map: XskMap,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    fill: Ring<u64>,
    completion: Ring<u64>,
    socket: OwnedFd,
    umem: Umem,
    name: String,
    ifindex: u32,
    mode: XdpMode,
    fill_target: u32,
    max_frame: usize,
    /// TX descriptors the kernel had not consumed when the last `kick` returned.
    tx_pending: u32,
    counters: Counters,
}

fn retry_busy<T>(budget: Duration, mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(1);
    loop {
        match f() {
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EEXIST))
                    && start.elapsed() < budget =>
            {
                tracing::debug!(error = %e, ?delay, "busy, retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

impl XskPort {
    /// Opens an AF_XDP port on `ifname` (resolved in the calling thread's network namespace).
    pub fn open(ifname: &str, config: &XskConfig) -> Result<Self, XskError> {
        validate(config)?;
        let ifindex = sys::ifindex(ifname).map_err(|source| XskError::NoInterface {
            name: ifname.to_owned(),
            source,
        })?;
        let sys_err = |op: &'static str| {
            let ifname = ifname.to_owned();
            move |source: io::Error| XskError::Sys { op, ifname, source }
        };
        if let Err(e) = sys::raise_memlock() {
            // Expected without CAP_SYS_RESOURCE; with CAP_IPC_LOCK the UMEM is not counted anyway.
            tracing::debug!(error = %e, "could not raise RLIMIT_MEMLOCK; continuing");
        }
        let mut umem =
            Umem::new(config.frame_size, config.frame_count).map_err(sys_err("UMEM mmap"))?;
        let socket = sys::xdp_socket().map_err(sys_err("socket(AF_XDP)"))?;
        let fd = socket.as_fd();
        let queues = rx_queues(ifname);
        if queues > 1 && !config.allow_other_queues {
            return Err(XskError::MultiQueue {
                ifname: ifname.to_owned(),
                queues,
            });
        }
        sys::setsockopt(fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &umem.registration())
            .map_err(sys_err("XDP_UMEM_REG"))?;
        for (opt, size, op) in [
            (
                libc::XDP_UMEM_FILL_RING,
                config.fill_ring_size,
                "XDP_UMEM_FILL_RING",
            ),
            (
                libc::XDP_UMEM_COMPLETION_RING,
                config.completion_ring_size,
                "XDP_UMEM_COMPLETION_RING",
            ),
            (libc::XDP_RX_RING, config.rx_ring_size, "XDP_RX_RING"),
            (libc::XDP_TX_RING, config.tx_ring_size, "XDP_TX_RING"),
        ] {
            sys::setsockopt(fd, libc::SOL_XDP, opt, &size).map_err(sys_err(op))?;
        }
        // Let one copy-mode `sendto` transmit up to a whole TX ring instead of the default 32
        // frames (XDP_MAX_TX_SKB_BUDGET, Linux 6.17+): fewer system calls per burst. Older
        // kernels answer ENOPROTOOPT and `kick` simply calls again.
        if let Err(e) = sys::setsockopt(
            fd,
            libc::SOL_XDP,
            XDP_MAX_TX_SKB_BUDGET,
            &config.tx_ring_size,
        ) {
            tracing::debug!(ifname, error = %e, "XDP_MAX_TX_SKB_BUDGET not set; 32 frames per sendto");
        }
        let (off, len) =
            sys::getsockopt::<libc::xdp_mmap_offsets>(fd, libc::SOL_XDP, libc::XDP_MMAP_OFFSETS)
                .map_err(sys_err("XDP_MMAP_OFFSETS"))?;
        if len != std::mem::size_of::<libc::xdp_mmap_offsets>() {
            // Kernels before 5.4 return the layout without the flags word (no need_wakeup).
            return Err(sys_err("XDP_MMAP_OFFSETS")(io::Error::from(
                io::ErrorKind::Unsupported,
            )));
        }
        let rx = Ring::map(fd, &off.rx, config.rx_ring_size, libc::XDP_PGOFF_RX_RING)
            .map_err(sys_err("mmap rx ring"))?;
        let tx = Ring::map(fd, &off.tx, config.tx_ring_size, libc::XDP_PGOFF_TX_RING)
            .map_err(sys_err("mmap tx ring"))?;
        let mut fill = Ring::map(
            fd,
            &off.fr,
            config.fill_ring_size,
            libc::XDP_UMEM_PGOFF_FILL_RING as libc::off_t,
        )
        .map_err(sys_err("mmap fill ring"))?;
        let completion = Ring::map(
            fd,
            &off.cr,
            config.completion_ring_size,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING as libc::off_t,
        )
        .map_err(sys_err("mmap completion ring"))?;

        // Fill before bind and attach, so the first redirected frame already finds a buffer.
        let fill_target = config.fill_ring_size.min(config.frame_count / 2);
        top_up(&mut umem, &mut fill, fill_target);

        retry_busy(config.busy_timeout, || {
            sys::bind_xdp(
                fd,
                ifindex,
                config.queue_id,
                libc::XDP_COPY | libc::XDP_USE_NEED_WAKEUP,
            )
        })
        .map_err(sys_err("bind(AF_XDP)"))?;

        let map = XskMap::create(config.queue_id + 1).map_err(sys_err("BPF_MAP_CREATE(XSKMAP)"))?;
        map.insert(config.queue_id, socket.as_raw_fd())
            .map_err(sys_err("BPF_MAP_UPDATE_ELEM"))?;
        let program = Program::load_redirect(&map).map_err(|e| XskError::Verifier {
            source: e.source,
            log: e.log,
        })?;
        let (link, mode) = attach(&program, ifname, ifindex, config)?;
        tracing::info!(ifname, ifindex, %mode, queue = config.queue_id, "AF_XDP port open");

        let port = Self {
            link,
            _program: program,
            _map: map,
            rx,
            tx,
            fill,
            completion,
            socket,
            umem,
            name: ifname.to_owned(),
            ifindex,
            mode,
            fill_target,
            max_frame: config.frame_size as usize,
            tx_pending: 0,
            counters: Counters::default(),
        };
        Ok(port)
    }

    /// The mode the program was attached in (`Native` or `Generic`).
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Largest frame `send` accepts (the UMEM frame size).
    pub fn max_frame_len(&self) -> usize {
        self.max_frame
    }

    /// The running frame census (cheap).
    pub fn frames(&self) -> FrameAccounting {
        self.umem.accounting()
    }

    /// Recounts every UMEM frame and checks that each is in exactly one place (free stack, fill
    /// ring, user, TX/completion) and none is leaked or duplicated. O(frames).
    pub fn check_frames(&self) -> Result<FrameAccounting, AccountingError> {
        self.umem.check()
    }

    /// The kernel's AF_XDP counters for this socket.
    pub fn xdp_statistics(&self) -> io::Result<XdpStatistics> {
        let (s, _) = sys::getsockopt::<libc::xdp_statistics>(
            self.socket.as_fd(),
            libc::SOL_XDP,
            libc::XDP_STATISTICS,
        )?;
        Ok(XdpStatistics {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }

    /// Waits up to `timeout_ms` for received frames (the idle half of adaptive polling).
    pub fn wait_readable(&self, timeout_ms: i32) -> Result<bool, PortError> {
        sys::poll_readable(self.socket.as_fd(), timeout_ms).map_err(|e| PortError::from_io(&e))
    }

    /// Tops the fill ring up to `fill_target` from the free stack.
    fn refill(&mut self) -> Result<(), PortError> {
        if top_up(&mut self.umem, &mut self.fill, self.fill_target) == 0 {
            return Ok(());
        }
        self.fill.publish();
        if self.fill.needs_wakeup() {
            match sys::kick_rx(self.socket.as_fd()) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS)
                    ) => {}
                Err(e) => return Err(PortError::from_io(&e)),
            }
        }
        Ok(())
    }

    /// Moves transmitted frames from the completion ring back to the free stack.
    fn reap_completions(&mut self) -> u32 {
        let n = self.completion.available(self.completion.size());
        for i in 0..n {
            let addr = self.completion.read(i);
            let ok = self
                .umem
                .frame_of(addr)
                .is_some_and(|f| self.umem.release(f, FrameState::Tx));
            if !ok {
                // The kernel handed back an address we never transmitted: refuse it.
                tracing::warn!(addr, port = %self.name, "unexpected completion address");
            }
        }
        self.completion.release(n);
        n
    }

    /// Asks the kernel to transmit what sits on the TX ring. In copy mode one `sendto` transmits
    /// at most the socket's TX budget (32 frames) and then fails with EAGAIN although it made
    /// progress; it also fails with EAGAIN when the completion ring is full, and with EBUSY when
    /// the device dropped a frame (which still completes). So the errno alone says nothing: we
    /// keep calling, reaping completions in between, while the kernel's consumer index advances,
    /// and stop when it stalls. What is left stays queued and [`Port::tx_pending`] says so, so
    /// the worker flushes again on its next loop instead of leaving frames stranded until new
    /// traffic happens to reach this port (which stalled TCP for a retransmission timeout).
    fn kick(&mut self) -> Result<(), PortError> {
        let mut pending = self.tx.unconsumed();
        while pending > 0 {
            match sys::kick_tx(self.socket.as_fd()) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS)
                    ) => {}
                Err(e) => return Err(PortError::from_io(&e)),
            }
            self.reap_completions();
            let left = self.tx.unconsumed();
            if left >= pending {
                // No progress (out of skbs, or the device refuses): retried on the next flush.
                break;
            }
            pending = left;
        }
        self.tx_pending = pending;
        Ok(())
    }
}

/// Active RX queues of `ifname` (1 when the driver does not report channels).
fn rx_queues(ifname: &str) -> u32 {
    match crate::netdev::rx_queue_count(ifname) {
        Ok(Some(n)) => n,
        Ok(None) => 1,
        Err(e) => {
            tracing::debug!(ifname, error = %e, "ETHTOOL_GCHANNELS failed; assuming one queue");
            1
        }
    }
}

/// Moves free frames onto the fill ring until `target` frames are there (or the ring or the free
/// stack runs out); publishes them and returns how many moved.
fn top_up(umem: &mut Umem, fill: &mut Ring<u64>, target: u32) -> u32 {
    let want = target
        .saturating_sub(umem.count(FrameState::Fill))
        .min(umem.free_len() as u32);
    if want == 0 {
        return 0;
    }
    let room = fill.free_slots(want).min(want);
    let mut moved = 0;
    for _ in 0..room {
        let Some(frame) = umem.alloc(FrameState::Fill) else {
            break;
        };
        if !fill.push(umem.addr_of(frame)) {
            // Cannot happen (room was checked); undo rather than leak.
            umem.release(frame, FrameState::Fill);
            break;
        }
        moved += 1;
    }
    fill.publish();
    moved
}

fn validate(c: &XskConfig) -> Result<(), XskError> {
    if !(c.frame_size == 2048 || c.frame_size == 4096) {
        return Err(XskError::Config("frame_size must be 2048 or 4096"));
    }
    for size in [
        c.rx_ring_size,
        c.tx_ring_size,
        c.fill_ring_size,
        c.completion_ring_size,
    ] {
        if !size.is_power_of_two() || size < 8 {
            return Err(XskError::Config(
                "ring sizes must be powers of two, at least 8",
            ));
        }
    }
    if c.frame_count < 16 || c.frame_count > (1 << 20) {
        return Err(XskError::Config("frame_count must be between 16 and 2^20"));
    }
    if c.queue_id >= 1024 {
        return Err(XskError::Config("queue_id must be below 1024"));
    }
    Ok(())
}

fn attach(
    program: &Program,
    ifname: &str,
    ifindex: u32,
    config: &XskConfig,
) -> Result<(Link, XdpMode), XskError> {
    let try_mode = |mode| retry_busy(config.busy_timeout, || Link::attach(program, ifindex, mode));
    let err = |mode, source| XskError::Attach {
        ifname: ifname.to_owned(),
        mode,
        source,
    };
    match config.mode {
        XdpMode::Auto => match try_mode(XdpMode::Native) {
            Ok(link) => Ok((link, XdpMode::Native)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => {
                tracing::debug!(ifname, error = %e, "native XDP unavailable, using generic mode");
                try_mode(XdpMode::Generic)
                    .map(|l| (l, XdpMode::Generic))
                    .map_err(|e| err(XdpMode::Generic, e))
            }
            Err(e) => Err(err(XdpMode::Native, e)),
        },
        mode => try_mode(mode).map(|l| (l, mode)).map_err(|e| err(mode, e)),
    }
}

impl Port for XskPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn recv(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> Result<usize, PortError> {
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let n = self.rx.available(max);
        let mut delivered = 0;
        for i in 0..n {
            let desc = self.rx.read(i);
            let Some(frame) = self.umem.frame_of(desc.addr) else {
                self.counters.rx_dropped += 1;
                continue;
            };
            if !self
                .umem
                .transition(frame, FrameState::Fill, FrameState::User)
            {
                // Not a frame we gave the kernel: never deliver or recycle it twice.
                self.counters.rx_dropped += 1;
                continue;
            }
            match self.umem.frame(desc.addr, desc.len) {
                Some(bytes) => {
                    f(bytes);
                    delivered += 1;
                    self.counters.rx_packets += 1;
                    self.counters.rx_bytes += u64::from(desc.len);
                }
                None => self.counters.rx_dropped += 1,
            }
            self.umem.release(frame, FrameState::User);
        }
        self.rx.release(n);
        self.refill()?;
        Ok(delivered)
    }

    fn send(&mut self, frame: &[u8]) -> Result<bool, PortError> {
        if frame.len() > self.max_frame {
            return Err(PortError::FrameTooLarge {
                len: frame.len(),
                max: self.max_frame,
            });
        }
        if self.umem.free_len() == 0 {
            self.reap_completions();
        }
        if self.tx.free_slots(1) == 0 || self.umem.free_len() == 0 {
            // Make room: transmit what is queued, then take back finished frames.
            self.tx.publish();
            self.kick()?;
            self.reap_completions();
        }
        if self.tx.free_slots(1) == 0 {
            self.counters.tx_dropped += 1;
            return Ok(false);
        }
        let Some(id) = self.umem.alloc(FrameState::User) else {
            self.counters.tx_dropped += 1;
            return Ok(false);
        };
        let len = frame.len() as u32;
        if let Some(buf) = self.umem.frame_mut(id, len) {
            buf.copy_from_slice(frame);
        } else {
            self.umem.release(id, FrameState::User);
            return Err(PortError::FrameTooLarge {
                len: frame.len(),
                max: self.max_frame,
            });
        }
        self.umem.transition(id, FrameState::User, FrameState::Tx);
        let pushed = self.tx.push(libc::xdp_desc {
            addr: self.umem.addr_of(id),
            len,
            options: 0,
        });
        if !pushed {
            // Unreachable after the free_slots check; keep the frame accounted for regardless.
            self.umem.release(id, FrameState::Tx);
            self.counters.tx_dropped += 1;
            return Ok(false);
        }
        self.counters.tx_packets += 1;
        self.counters.tx_bytes += u64::from(len);
        Ok(true)
    }

    fn flush(&mut self) -> Result<(), PortError> {
        self.tx.publish();
        // Copy mode (the only mode we bind) wants a sendto() for every batch whatever the
        // need_wakeup flag says (measured: shared/AFXDP.md), so no flag test here.
        if self.tx.unconsumed() > 0 {
            self.kick()?;
        } else {
            self.tx_pending = 0;
        }
        self.reap_completions();
        self.refill()
    }

    fn tx_pending(&self) -> bool {
        self.tx_pending > 0
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.socket.as_raw_fd())
    }

    fn stats(&self) -> PortStats {
        let c = self.counters;
        PortStats {
            rx_packets: c.rx_packets,
            rx_bytes: c.rx_bytes,
            tx_packets: c.tx_packets,
            tx_bytes: c.tx_bytes,
            tx_dropped: c.tx_dropped,
            rx_dropped: c.rx_dropped,
            xdp: self.xdp_statistics().ok(),
        }
    }
}

impl std::fmt::Debug for XskPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskPort")
            .field("name", &self.name)
            .field("ifindex", &self.ifindex)
            .field("mode", &self.mode)
            .field("socket", &self.socket.as_raw_fd())
            .field("frames", &self.umem.accounting())
            .finish_non_exhaustive()
    }
}

impl Drop for XskPort {
    fn drop(&mut self) {
        tracing::debug!(port = %self.name, link_fd = self.link.as_fd().as_raw_fd(), "closing AF_XDP port");
    }
}
