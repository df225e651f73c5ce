//! The packet summary conntrack consumes: [`PacketMeta`], filled by the datapath from the wire
//! crate's parse of a frame (conntrack never parses packets itself).
//!
//! Invariant: addresses of one meta (and of an ICMP error's quoted tuple) share a family; a meta
//! that breaks it is classified `Invalid(Malformed)`, never a panic. Pure data, `Copy`, thread-safe.

use std::net::IpAddr;

use podswitch_wire::IpProtocol;

use crate::table::InvalidReason;
use crate::tuple::{
    ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, Key, PROTO_SCTP,
    PROTO_TCP, PROTO_UDP, Tuple, addr_bits,
};

/// TCP header flags (RFC 9293 §3.1), as the low byte of the flags field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronise sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push function.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// Acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer field is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN-Echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

/// What conntrack needs of a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpMeta {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Header flags.
    pub flags: TcpFlags,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful when ACK is set).
    pub ack: u32,
    /// Advertised window, unscaled as on the wire.
    pub window: u16,
    /// Payload length in bytes (not counting SYN/FIN).
    pub payload_len: u32,
    /// The window-scale option's shift count, when the segment carries one (only read on SYNs,
    /// RFC 7323 §2.2).
    pub window_scale: Option<u8>,
    /// Whether a SACK-permitted option is present (only read on SYNs).
    pub sack_permitted: bool,
}

/// What conntrack needs of an SCTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SctpMeta {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The common header's verification tag (RFC 9260 §3.1).
    pub verification_tag: u32,
    /// Type of the first chunk (RFC 9260 §3.2): INIT = 1, INIT ACK = 2, ABORT = 6, ...
    pub chunk_type: u8,
}

/// The transport part of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// A TCP segment.
    Tcp(TcpMeta),
    /// A UDP datagram.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// An SCTP packet.
    Sctp(SctpMeta),
    /// An ICMP (over IPv4) or ICMPv6 (over IPv6) echo request or reply.
    IcmpEcho {
        /// `true` for a request (type 8 / 128), `false` for a reply (0 / 129).
        request: bool,
        /// Identifier.
        id: u16,
    },
    /// An ICMP / ICMPv6 error (destination unreachable, time exceeded, packet too big, parameter
    /// problem) with the tuple of the packet it quotes, as that packet was sent (its source is the
    /// host the error is addressed to).
    IcmpError {
        /// Tuple of the quoted packet (for a quoted echo: identifier and type as ports).
        inner: Tuple,
    },
    /// Any other protocol, tracked by addresses only.
    Other(IpProtocol),
}

/// A packet as conntrack sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    /// Conntrack zone (e.g. one per tenant / VRF): tuples in different zones never match.
    pub zone: u16,
    /// Source address.
    pub src: IpAddr,
    /// Destination address (same family as `src`).
    pub dst: IpAddr,
    /// Transport header summary.
    pub l4: L4,
    /// Length of the IP packet in bytes, for the entry's byte counters.
    pub len: u32,
}

impl PacketMeta {
    /// A TCP segment in zone 0.
    pub fn tcp(src: IpAddr, dst: IpAddr, tcp: TcpMeta) -> Self {
        PacketMeta {
            zone: 0,
            src,
            dst,
            l4: L4::Tcp(tcp),
            len: 40 + tcp.payload_len,
        }
    }

    /// A UDP datagram in zone 0.
    pub fn udp(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16) -> Self {
        PacketMeta {
            zone: 0,
            src,
            dst,
            l4: L4::Udp { src_port, dst_port },
            len: 28,
        }
    }

    /// This meta in `zone`.
    #[must_use]
    pub fn in_zone(mut self, zone: u16) -> Self {
        self.zone = zone;
        self
    }

    /// The key of this packet's own tuple. For an ICMP error it is the key of the *quoted*
    /// packet inverted, i.e. the tuple a packet travelling like the error would carry.
    pub(crate) fn key(&self) -> Result<Key, InvalidReason> {
        let (src, v6) = addr_bits(self.src);
        let (dst, v6d) = addr_bits(self.dst);
        if v6 != v6d {
            return Err(InvalidReason::Malformed);
        }
        let (proto, sport, dport) = match self.l4 {
            L4::Tcp(t) => (PROTO_TCP, t.src_port, t.dst_port),
            L4::Udp { src_port, dst_port } => (PROTO_UDP, src_port, dst_port),
            L4::Sctp(s) => (PROTO_SCTP, s.src_port, s.dst_port),
            L4::IcmpEcho { request, id } => {
                let ty = match (v6, request) {
                    (false, true) => ICMP_ECHO_REQUEST,
                    (false, false) => ICMP_ECHO_REPLY,
                    (true, true) => ICMPV6_ECHO_REQUEST,
                    (true, false) => ICMPV6_ECHO_REPLY,
                };
                let proto = if v6 {
                    crate::tuple::PROTO_ICMPV6
                } else {
                    crate::tuple::PROTO_ICMP
                };
                (proto, id, ty)
            }
            L4::IcmpError { inner } => {
                let k = Key::from_tuple(self.zone, &inner).ok_or(InvalidReason::Malformed)?;
                if k.v6 != v6 {
                    return Err(InvalidReason::Malformed);
                }
                return k.invert().ok_or(InvalidReason::IcmpUnrelated);
            }
            L4::Other(p) => (u8::from(p), 0, 0),
        };
        Ok(Key {
            src,
            dst,
            sport,
            dport,
            zone: self.zone,
            proto,
            v6,
        })
    }
}
