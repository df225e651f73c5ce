//! Zero-copy parsers and emitters for every header podswitch switches.
//!
//! This crate owns the wire formats: Ethernet II with 802.1Q/802.1ad tags, ARP, IPv4, IPv6 and its
//! extension-header chain, ICMPv4, ICMPv6 (with neighbour discovery), TCP, UDP, the SCTP common
//! header, VXLAN (RFC 7348, with the VXLAN-GBP group policy ID), and the Internet checksum family.
//!
//! Every protocol follows smoltcp's pattern: a `Packet<T: AsRef<[u8]>>` view over a buffer, with
//! getters named after the RFC fields and `set_*` setters where `T: AsMut<[u8]>`, and a `Repr`
//! holding the parsed high-level fields with `parse`, `buffer_len` and `emit`.
//!
//! Invariants: `Packet::new_unchecked` never panics but its accessors may; `Packet::new_checked`
//! (which calls `check_len`) guarantees that no accessor of the returned view panics, whatever the
//! bytes are. **Untrusted input must only go through `new_checked`** (or [`frame::parse_frame`]).
//! Nothing here allocates, performs I/O or reads a clock; every type is `Send + Sync` when its
//! buffer is.
//!
//! Under `cfg(fuzzing)` checksum verification in `Repr::parse` is skipped so the fuzzer can reach
//! deeper code, as smoltcp does.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

pub mod checksum;
mod field;
pub mod ip;

pub mod arp;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod sctp;
pub mod tcp;
pub mod udp;
pub mod vxlan;

pub mod frame;

pub use checksum::PseudoHeader;
pub use frame::{Headers, Layer, ParseError, Reason, parse_frame, parse_frame_into};
pub use ip::IpProtocol;

/// Why a buffer could not be viewed or parsed as a header.
///
/// Per-packet errors are `Copy` and hold no heap data (our style rule 3), so a drop path can count
/// them without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header, or than a length field inside it claims.
    Truncated,
    /// A field holds a value the protocol forbids (bad version, bad header length, reserved bits,
    /// an option overrunning its header, …).
    Malformed,
    /// A checksum did not verify.
    Checksum,
    /// A well-formed header of a kind this crate does not handle (e.g. an unknown ARP hardware type).
    Unsupported,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated packet",
            Error::Malformed => "malformed packet",
            Error::Checksum => "checksum mismatch",
            Error::Unsupported => "unsupported packet",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Result of a parse or a checked construction.
pub type Result<T> = core::result::Result<T, Error>;
