//! Thin wrappers over the libc calls the AF_XDP datapath needs: sockets, socket options, `bpf()`,
//! `mmap`, interface lookup. This module (with `ring.rs` for the shared-memory ring words) is where
//! the project's unsafe code lives; everything it exports is safe to call.
//!
//! Invariants: every libc call that reports failure as `-1`/`errno` goes through the one
//! [`syscall!`] macro (the mio habit), so an error always becomes an `io::Error` carrying `errno`.
//! `mmap` (which fails with `MAP_FAILED`) and `if_nametoindex` (which fails with `0`) are the two
//! documented exceptions. Structs handed to the kernel by pointer implement the [`Pod`] marker,
//! which promises that every bit pattern, including all zeroes, is a valid value.
//! Thread-safety: the functions are free of shared state; [`Mmap`] is `Send` (it owns its mapping)
//! but not `Sync`.

use std::ffi::{CString, c_void};
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::{self, NonNull};

/// Calls `libc::$fn(args…)` and turns a `-1` result into `io::Error::last_os_error()`.
///
/// Each use site states, in a `// Contract:` comment, why its arguments satisfy the libc
/// function's requirements (live fds, pointers to memory of the stated length).
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: every `syscall!` use is preceded by a `// Contract:` comment at its call site
        // explaining why the arguments meet the function's requirements; the result is checked
        // right here and never trusted when it is -1.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 { Err(std::io::Error::last_os_error()) } else { Ok(res) }
    }};
}

/// Plain-old-data kernel ABI structs.
///
/// # Safety
/// Implementors must be `#[repr(C)]` (or primitive) types for which every bit pattern, including
/// all zeroes, is a valid value, and which hold no references.
pub(crate) unsafe trait Pod: Copy {}

// SAFETY: primitive integer; every bit pattern is valid.
unsafe impl Pod for u32 {}
// SAFETY: primitive integer; every bit pattern is valid.
unsafe impl Pod for libc::c_int {}
// SAFETY: repr(C) struct of u64 fields (linux/if_xdp.h); every bit pattern is valid.
unsafe impl Pod for libc::xdp_mmap_offsets {}
// SAFETY: repr(C) struct of integer fields (linux/if_xdp.h); every bit pattern is valid.
unsafe impl Pod for libc::xdp_umem_reg {}
// SAFETY: repr(C) struct of u64 counters (linux/if_xdp.h); every bit pattern is valid.
unsafe impl Pod for libc::xdp_statistics {}
// SAFETY: repr(C) struct of two integers; every bit pattern is valid.
unsafe impl Pod for libc::timeval {}

fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel as a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Creates an AF_XDP socket (close-on-exec).
pub(crate) fn xdp_socket() -> io::Result<OwnedFd> {
    // Contract: socket() takes no pointers.
    let fd = syscall!(socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0))?;
    Ok(owned(fd))
}

/// `setsockopt(fd, level, name, &value, sizeof value)`.
pub(crate) fn setsockopt<T: Pod>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = size_of::<T>() as libc::socklen_t;
    // Contract: `value` points to a live `T` of exactly `len` bytes; the kernel only reads it.
    syscall!(setsockopt(
        fd.as_raw_fd(),
        level,
        name,
        ptr::from_ref(value).cast::<c_void>(),
        len
    ))?;
    Ok(())
}

/// `getsockopt(fd, level, name, &value, &len)`; returns the value and the length the kernel wrote.
pub(crate) fn getsockopt<T: Pod>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<(T, usize)> {
    let mut value = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // Contract: `value` is writable storage of `len` bytes and `len` is a live socklen_t; the kernel
    // writes at most `len` bytes and stores the written length back into `len`.
    syscall!(getsockopt(
        fd.as_raw_fd(),
        level,
        name,
        value.as_mut_ptr().cast::<c_void>(),
        &raw mut len
    ))?;
    // SAFETY: `T: Pod`, so the zeroed bytes, partly overwritten by the kernel, form a valid `T`.
    let value = unsafe { value.assume_init() };
    Ok((value, len as usize))
}

/// Binds an AF_XDP socket to `(ifindex, queue_id)` with `flags` (`XDP_COPY`, `XDP_USE_NEED_WAKEUP`…).
pub(crate) fn bind_xdp(
    fd: BorrowedFd<'_>,
    ifindex: u32,
    queue_id: u32,
    flags: u16,
) -> io::Result<()> {
    let addr = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: flags,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue_id,
        sxdp_shared_umem_fd: 0,
    };
    // Contract: `addr` is a live sockaddr_xdp and the length passed is its size.
    syscall!(bind(
        fd.as_raw_fd(),
        ptr::from_ref(&addr).cast::<libc::sockaddr>(),
        size_of::<libc::sockaddr_xdp>() as libc::socklen_t
    ))?;
    Ok(())
}

/// `sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0)`: asks the kernel to transmit queued TX descriptors
/// (copy mode transmits at most 32 per call).
pub(crate) fn kick_tx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // Contract: a zero-length send with null buffer and null address reads no user memory.
    syscall!(sendto(
        fd.as_raw_fd(),
        ptr::null(),
        0,
        libc::MSG_DONTWAIT,
        ptr::null(),
        0
    ))?;
    Ok(())
}

/// `recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL)`: wakes the kernel to refill from the fill ring.
pub(crate) fn kick_rx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // Contract: a zero-length receive with null buffer and null address writes no user memory.
    syscall!(recvfrom(
        fd.as_raw_fd(),
        ptr::null_mut(),
        0,
        libc::MSG_DONTWAIT,
        ptr::null_mut(),
        ptr::null_mut()
    ))?;
    Ok(())
}

/// Waits up to `timeout_ms` for `fd` to become readable; returns whether it is.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // Contract: `pfd` is one live pollfd and the count passed is 1.
    let n = syscall!(poll(&raw mut pfd, 1, timeout_ms))?;
    Ok(n > 0 && pfd.revents & libc::POLLIN != 0)
}

/// `madvise(addr, len, MADV_HUGEPAGE)`: asks the kernel to back `[addr, addr + len)` with
/// transparent huge pages. Safe for any arguments: the advice changes neither the contents nor
/// the validity of any memory, and a range that is not mapped (or not page-aligned) is refused
/// with an error, not acted on.
pub(crate) fn madvise_hugepage(addr: usize, len: usize) -> io::Result<()> {
    // Contract: madvise() with MADV_HUGEPAGE does not access the range; the kernel checks it.
    syscall!(madvise(addr as *mut c_void, len, libc::MADV_HUGEPAGE)).map(drop)
}

/// Resolves an interface name in the calling thread's network namespace.
pub(crate) fn ifindex(name: &str) -> io::Result<u32> {
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `cname` is a live NUL-terminated string; if_nametoindex only reads it. It signals
    // failure with 0 (not -1), hence the manual check instead of `syscall!`.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(index)
    }
}

/// `struct ethtool_channels` (include/uapi/linux/ethtool.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EthtoolChannels {
    pub cmd: u32,
    pub max_rx: u32,
    pub max_tx: u32,
    pub max_other: u32,
    pub max_combined: u32,
    pub rx_count: u32,
    pub tx_count: u32,
    pub other_count: u32,
    pub combined_count: u32,
}

/// `struct ifreq` with the `ifr_data` member of its union (40 bytes on 64-bit Linux).
#[repr(C)]
struct IfreqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut c_void,
    pad: [u8; 16],
}

// SAFETY: repr(C) struct of u32 fields; every bit pattern is valid.
unsafe impl Pod for EthtoolChannels {}

/// Runs one `SIOCETHTOOL` command on `ifname` in the calling thread's network namespace; `arg`
/// is the command's struct with its `cmd` field set, updated in place by get commands.
pub(crate) fn ethtool<T: Pod>(ifname: &str, arg: &mut T) -> io::Result<()> {
    ethtool_ptr(ifname, ptr::from_mut(arg).cast::<c_void>())
}

/// Like [`ethtool`] for the variable-length commands (`ETHTOOL_GSTRINGS`, `ETHTOOL_[GS]FEATURES`):
/// `buf` holds the command struct as 32-bit words, sized by the caller for what the kernel will
/// write (`netdev` sizes it from the kernel's own counts, read first).
pub(crate) fn ethtool_words(ifname: &str, buf: &mut [u32]) -> io::Result<()> {
    if buf.is_empty() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    ethtool_ptr(ifname, buf.as_mut_ptr().cast::<c_void>())
}

/// The ioctl goes through a throwaway AF_UNIX socket: AF_XDP sockets answer every ioctl with
/// EOPNOTSUPP instead of passing it on to the device layer.
fn ethtool_ptr(ifname: &str, data: *mut c_void) -> io::Result<()> {
    let mut name = [0u8; libc::IFNAMSIZ];
    if ifname.is_empty() || ifname.len() >= name.len() || ifname.contains('\0') {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    // Contract: socket() takes no pointers.
    let fd = owned(syscall!(socket(
        libc::AF_UNIX,
        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
        0
    ))?);
    let mut req = IfreqData {
        name,
        data,
        pad: [0; 16],
    };
    // Contract: `req` is a live ifreq-shaped struct with a NUL-terminated name; its data pointer
    // refers to live, writable memory that the callers above size for the command in its first
    // word, and the kernel writes no more than that command's struct.
    syscall!(ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL, &raw mut req))?;
    Ok(())
}

/// Moves the calling thread into the network namespace referred to by `fd`.
pub(crate) fn setns_net(fd: BorrowedFd<'_>) -> io::Result<()> {
    // Contract: setns takes an fd and a flag, no pointers.
    syscall!(setns(fd.as_raw_fd(), libc::CLONE_NEWNET))?;
    Ok(())
}

/// Best effort: lifts RLIMIT_MEMLOCK. Failure is expected without CAP_SYS_RESOURCE and harmless
/// with CAP_IPC_LOCK (then UMEM pages are not counted), so callers only log it.
pub(crate) fn raise_memlock() -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // Contract: `limit` is a live rlimit that setrlimit only reads.
    syscall!(setrlimit(libc::RLIMIT_MEMLOCK, &raw const limit))?;
    Ok(())
}

/// `bpf(cmd, attr, sizeof attr)`; returns the syscall's non-negative result (an fd for the
/// commands that create objects).
pub(crate) fn bpf<A: Pod>(cmd: u32, attr: &mut A) -> io::Result<libc::c_long> {
    // Contract: `attr` points to a live, writable `A` of the size passed; bpf() reads (and for some
    // commands writes) at most that many bytes. Pointers inside `attr` were set by the caller to
    // live buffers of the lengths stored beside them.
    syscall!(syscall(
        libc::SYS_bpf,
        cmd as libc::c_int,
        ptr::from_mut(attr).cast::<c_void>(),
        size_of::<A>() as libc::c_uint
    ))
}

/// Wraps a non-negative `bpf()` result that is a new file descriptor.
pub(crate) fn bpf_fd(res: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(res).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    Ok(owned(fd))
}

/// An owned memory mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Mmap` exclusively owns its mapping; the pointer is not tied to the creating thread.
unsafe impl Send for Mmap {}

impl Mmap {
    /// Private anonymous read/write memory (the UMEM), zero-filled by the kernel.
    pub(crate) fn anonymous(len: usize) -> io::Result<Self> {
        Self::map(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    }

    /// A shared read/write mapping of `len` bytes of `fd` at `offset` (an AF_XDP ring).
    pub(crate) fn shared(fd: BorrowedFd<'_>, len: usize, offset: libc::off_t) -> io::Result<Self> {
        Self::map(
            len,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            offset,
        )
    }

    fn map(len: usize, flags: libc::c_int, fd: RawFd, offset: libc::off_t) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: a fresh mapping at a kernel-chosen address (null hint) cannot alias any Rust
        // object; `fd` is either -1 (anonymous) or a live descriptor borrowed by the caller.
        // mmap signals failure with MAP_FAILED, checked below.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::from(io::ErrorKind::Other))?;
        Ok(Self { ptr, len })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Borrows `len` bytes at `offset`, or `None` when the range is outside the mapping.
    ///
    /// # Safety
    /// Nobody else (in particular the kernel) may write the range while the borrow lives.
    pub(crate) unsafe fn bytes(&self, offset: usize, len: usize) -> Option<&[u8]> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        let p = self.ptr.as_ptr().wrapping_add(offset);
        // SAFETY: `offset..end` lies inside the live mapping owned by `self` (checked above); the
        // caller guarantees nothing writes it during the borrow, which is tied to `&self`.
        Some(unsafe { std::slice::from_raw_parts(p, len) })
    }

    /// Mutably borrows `len` bytes at `offset`, or `None` when the range is outside the mapping.
    ///
    /// # Safety
    /// Nobody else (in particular the kernel) may read or write the range while the borrow lives.
    pub(crate) unsafe fn bytes_mut(&mut self, offset: usize, len: usize) -> Option<&mut [u8]> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        let p = self.ptr.as_ptr().wrapping_add(offset);
        // SAFETY: in bounds (checked above); `&mut self` excludes other Rust borrows and the
        // caller guarantees the kernel does not touch the range during the borrow.
        Some(unsafe { std::slice::from_raw_parts_mut(p, len) })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping this value created and still owns; every borrow
        // of it is tied to `&self`, so none outlives this call.
        let rc = unsafe { libc::munmap(self.ptr.as_ptr().cast::<c_void>(), self.len) };
        if rc != 0 {
            tracing::warn!(error = %io::Error::last_os_error(), "munmap failed");
        }
    }
}

/// Test-only helpers: entering a network namespace and a raw AF_PACKET socket, used by the tests
/// that drive real frames through veth pairs.
#[cfg(test)]
pub(crate) mod testing {
    use super::{AsRawFd, OwnedFd, Pod, c_void, io, owned, ptr, size_of};
    use std::os::fd::AsFd;
    use std::time::Duration;

    // SAFETY: repr(C) struct of integers and a byte array; every bit pattern is valid.
    unsafe impl Pod for libc::sockaddr_ll {}

    /// A raw AF_PACKET socket bound to one interface (all protocols).
    #[derive(Debug)]
    pub(crate) struct PacketSocket {
        fd: OwnedFd,
    }

    impl PacketSocket {
        pub(crate) fn open(ifname: &str, recv_timeout: Duration) -> io::Result<Self> {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // Contract: socket() takes no pointers.
            let fd = owned(syscall!(socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::c_int::from(proto)
            ))?);
            let ifindex = super::ifindex(ifname)?;
            // SAFETY: sockaddr_ll is Pod, so the all-zero value is valid.
            let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = proto;
            addr.sll_ifindex = ifindex as i32;
            // Contract: `addr` is a live sockaddr_ll and the length passed is its size.
            syscall!(bind(
                fd.as_raw_fd(),
                ptr::from_ref(&addr).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t
            ))?;
            let tv = libc::timeval {
                tv_sec: recv_timeout.as_secs() as libc::time_t,
                tv_usec: libc::suseconds_t::from(recv_timeout.subsec_micros()),
            };
            super::setsockopt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
            Ok(Self { fd })
        }

        pub(crate) fn send(&self, frame: &[u8]) -> io::Result<()> {
            // Contract: `frame` is a live buffer of the length passed; send only reads it.
            syscall!(send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast::<c_void>(),
                frame.len(),
                0
            ))?;
            Ok(())
        }

        /// Receives one frame; `Ok(None)` when the receive timeout expired.
        pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
            // Contract: `buf` is a live writable buffer of the length passed.
            match syscall!(recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast::<c_void>(),
                buf.len(),
                0
            )) {
                Ok(n) => Ok(Some(n as usize)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e),
            }
        }
    }
}
