//! The XDP side: an XSKMAP (`BPF_MAP_CREATE`), the six-instruction redirect program
//! (`BPF_PROG_LOAD`) and its attachment to an interface through a bpf_link (`BPF_LINK_CREATE`).
//!
//! The `bpf_attr` layouts below are the prefixes of the kernel's union (include/uapi/linux/bpf.h)
//! for the four commands used; the kernel zero-extends a shorter attr. Attaching through a link
//! (not netlink) is deliberate: the kernel detaches the program when the last link fd closes, also
//! when the owning process is killed, so no orphan program is left on the interface.
//! Invariants: each object owns its fd and closes it on drop. Thread-safety: plain owned fds, `Send`.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use crate::sys::{self, Pod};

const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_PROG_LOAD: u32 = 5;
const BPF_LINK_CREATE: u32 = 28;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`: BPF_XDP.
const BPF_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `enum xdp_action`.
const XDP_PASS: i32 = 2;
/// `enum bpf_func_id`: bpf_redirect_map.
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// `offsetof(struct xdp_md, rx_queue_index)`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;
/// `src_reg` value marking an ld_imm64 whose immediate is a map fd.
const BPF_PSEUDO_MAP_FD: u8 = 1;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct MapElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

// SAFETY: repr(C) structs of integers and byte arrays (explicit padding field included); every
// bit pattern is valid.
unsafe impl Pod for MapCreateAttr {}
// SAFETY: as above.
unsafe impl Pod for MapElemAttr {}
// SAFETY: as above.
unsafe impl Pod for ProgLoadAttr {}
// SAFETY: as above.
unsafe impl Pod for LinkCreateAttr {}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = name.len().min(15);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

fn fd_u32(fd: RawFd) -> u32 {
    // Fds are non-negative; the kernel ABI carries them as __u32.
    fd as u32
}

/// One eBPF instruction (`struct bpf_insn`): opcode, dst (low nibble) / src (high nibble)
/// registers, offset, immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }
    /// `dst = *(u32 *)(src + off)` (BPF_LDX | BPF_MEM | BPF_W).
    const fn load_u32(dst: u8, src: u8, off: i16) -> Self {
        Self::new(0x61, dst, src, off, 0)
    }
    /// `dst = imm` (BPF_ALU64 | BPF_MOV | BPF_K).
    const fn mov64_imm(dst: u8, imm: i32) -> Self {
        Self::new(0xb7, dst, 0, 0, imm)
    }
    /// BPF_JMP | BPF_CALL of helper `id`.
    const fn call(id: i32) -> Self {
        Self::new(0x85, 0, 0, 0, id)
    }
    /// BPF_JMP | BPF_EXIT.
    const fn exit() -> Self {
        Self::new(0x95, 0, 0, 0, 0)
    }
}

/// The redirect program: `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);`
/// Frames for a queue without a socket fall back to XDP_PASS (the low bits of the flags argument
/// are the fallback action, kernel >= 5.3), so the kernel stack still sees them.
pub(crate) fn redirect_program(map_fd: RawFd) -> [Insn; 6] {
    [
        Insn::load_u32(2, 1, XDP_MD_RX_QUEUE_INDEX),
        // ld_imm64 r1 = map fd: two slots, the second carries the upper 32 bits (zero).
        Insn::new(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        Insn::new(0, 0, 0, 0, 0),
        Insn::mov64_imm(3, XDP_PASS),
        Insn::call(BPF_FUNC_REDIRECT_MAP),
        Insn::exit(),
    ]
}

/// An XSKMAP: queue index → AF_XDP socket.
#[derive(Debug)]
pub(crate) struct XskMap {
    fd: OwnedFd,
}

impl XskMap {
    pub(crate) fn create(max_entries: u32) -> io::Result<Self> {
        let mut attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries,
            map_name: name16("psx_xsks"),
            ..MapCreateAttr::default()
        };
        let fd = sys::bpf_fd(sys::bpf(BPF_MAP_CREATE, &mut attr)?)?;
        Ok(Self { fd })
    }

    /// `map[queue] = socket`.
    pub(crate) fn insert(&self, queue: u32, socket: RawFd) -> io::Result<()> {
        let key = queue;
        let value = fd_u32(socket);
        let mut attr = MapElemAttr {
            map_fd: fd_u32(self.fd.as_raw_fd()),
            key: std::ptr::from_ref(&key).expose_provenance() as u64,
            value: std::ptr::from_ref(&value).expose_provenance() as u64,
            ..MapElemAttr::default()
        };
        sys::bpf(BPF_MAP_UPDATE_ELEM, &mut attr)?;
        Ok(())
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A loaded XDP program.
#[derive(Debug)]
pub(crate) struct Program {
    fd: OwnedFd,
}

/// A failed program load, with the verifier's log.
#[derive(Debug)]
pub(crate) struct LoadError {
    pub source: io::Error,
    pub log: String,
}

impl Program {
    /// Loads the redirect program for `map`.
    pub(crate) fn load_redirect(map: &XskMap) -> Result<Self, LoadError> {
        Self::load(&redirect_program(map.raw_fd()), "psx_redirect")
    }

    /// Loads `insns` as an XDP program. The first attempt runs without a log (cheap); on failure
    /// the load is repeated with `log_level = 1` so the error carries the verifier's explanation.
    pub(crate) fn load(insns: &[Insn], name: &str) -> Result<Self, LoadError> {
        match Self::load_with_log(insns, name, None) {
            Ok(fd) => Ok(Self { fd }),
            Err(first) => {
                let mut log = vec![0u8; 64 * 1024];
                match Self::load_with_log(insns, name, Some(&mut log)) {
                    Ok(fd) => Ok(Self { fd }),
                    Err(source) => {
                        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                        let log = String::from_utf8_lossy(&log[..end]).trim_end().to_owned();
                        let source = if source.raw_os_error() == Some(libc::ENOSPC) {
                            first
                        } else {
                            source
                        };
                        Err(LoadError { source, log })
                    }
                }
            }
        }
    }

    fn load_with_log(insns: &[Insn], name: &str, log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
        const LICENSE: &[u8] = b"Dual MIT/GPL\0";
        let insn_cnt =
            u32::try_from(insns.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt,
            insns: insns.as_ptr().expose_provenance() as u64,
            license: LICENSE.as_ptr().expose_provenance() as u64,
            prog_name: name16(name),
            ..ProgLoadAttr::default()
        };
        if let Some(buf) = log {
            attr.log_level = 1;
            attr.log_size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
            attr.log_buf = buf.as_mut_ptr().expose_provenance() as u64;
        }
        sys::bpf_fd(sys::bpf(BPF_PROG_LOAD, &mut attr)?)
    }
}

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// Try native (driver) mode, fall back to generic (SKB) mode.
    #[default]
    Auto,
    /// Native mode (`XDP_FLAGS_DRV_MODE`); veth supports it.
    Native,
    /// Generic mode (`XDP_FLAGS_SKB_MODE`): works on every interface.
    Generic,
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Auto => "auto",
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        })
    }
}

/// A bpf_link attaching a program to an interface; dropping it detaches the program.
#[derive(Debug)]
pub(crate) struct Link {
    fd: OwnedFd,
}

impl Link {
    /// Attaches `prog` to `ifindex` in `mode` (`Native` or `Generic`; `Auto` is resolved by the
    /// caller).
    pub(crate) fn attach(prog: &Program, ifindex: u32, mode: XdpMode) -> io::Result<Self> {
        let flags = match mode {
            XdpMode::Native => XDP_FLAGS_DRV_MODE,
            XdpMode::Generic | XdpMode::Auto => XDP_FLAGS_SKB_MODE,
        };
        let mut attr = LinkCreateAttr {
            prog_fd: fd_u32(prog.fd.as_raw_fd()),
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags,
        };
        let fd = sys::bpf_fd(sys::bpf(BPF_LINK_CREATE, &mut attr)?)?;
        Ok(Self { fd })
    }
}

impl AsFd for Link {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_the_kernel_abi() {
        assert_eq!(std::mem::size_of::<MapCreateAttr>(), 44);
        assert_eq!(std::mem::size_of::<MapElemAttr>(), 32);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::size_of::<LinkCreateAttr>(), 16);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(MapElemAttr, key), 8);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    /// The encoding as `llvm-objdump -d` prints it for the C program
    /// `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);` (map fd 7).
    #[test]
    fn redirect_program_encoding() {
        let bytes: Vec<u8> = redirect_program(7)
            .iter()
            .flat_map(|i| {
                let mut b = vec![i.code, i.regs];
                b.extend_from_slice(&i.off.to_le_bytes());
                b.extend_from_slice(&i.imm.to_le_bytes());
                b
            })
            .collect();
        let expected: [u8; 48] = [
            0x61, 0x12, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, // r2 = *(u32 *)(r1 + 16)
            0x18, 0x11, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, // r1 = map fd 7 (pseudo map fd)
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //   (upper half)
            0xb7, 0x03, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, // r3 = XDP_PASS
            0x85, 0x00, 0x00, 0x00, 0x33, 0x00, 0x00, 0x00, // call bpf_redirect_map (51)
            0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // exit
        ];
        assert_eq!(bytes, expected);
    }

    /// Needs root (CAP_BPF): the real verifier accepts the redirect program.
    #[test]
    fn redirect_program_passes_the_verifier() {
        let map = XskMap::create(4).expect("XSKMAP creation (needs root)");
        let prog = Program::load_redirect(&map)
            .map_err(|e| e.log)
            .expect("verifier accepts");
        assert!(prog.fd.as_raw_fd() >= 0);
    }

    /// A broken program (reads r0 before writing it) is refused and the verifier log explains why.
    #[test]
    fn verifier_log_is_returned_on_failure() {
        let bad = [Insn::exit()];
        let err = Program::load(&bad, "psx_bad").expect_err("verifier must refuse");
        assert_eq!(err.source.raw_os_error(), Some(libc::EACCES));
        assert!(err.log.contains("R0 !read_ok"), "log was: {}", err.log);
    }
}
