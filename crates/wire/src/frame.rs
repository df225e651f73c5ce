//! The one-pass classifier parse: [`parse_frame`] walks L2 → L3 → L4 once and returns offsets plus
//! every field a flow key, conntrack or the overlay needs, without allocation.
//!
//! Owns [`Headers`] (a compact `Copy` summary of one frame) and the typed [`ParseError`]. It reads
//! fields by offset after explicit length checks, so it never panics on any input. It validates
//! what a router must (lengths, versions, IPv4 IHL, the IPv4 header checksum — skipped under
//! `cfg(fuzzing)` — and the IPv6 extension-header chain, bounded to
//! [`ipv6::MAX_EXT_HEADERS`]). It does **not** verify TCP, UDP,
//! SCTP or ICMP checksums: that costs a pass over the payload per frame on the hot path; the
//! endpoints verify them, and a NAT rewrite updates them incrementally (RFC 1624), so a corrupt
//! segment stays corrupt. Later fragments (non-zero offset) carry no L4 fields; a first fragment
//! must hold the whole L4 header (RFC 1858 §3's tiny-fragment rule). A UDP datagram to port 4789
//! whose first 8 payload bytes are a valid VXLAN header (I flag set), and which is not a fragment,
//! gets a [`VxlanMarker`]: the datapath decapsulates and calls `parse_frame` on the inner frame at
//! `inner_offset`. Anything else to that port stays plain UDP. Non-IP, non-ARP ethertypes parse
//! as L2-only. Pure function; thread-safe.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::ops::Range;

use crate::arp;
use crate::checksum;
use crate::ethernet::{self, Address, EtherType};
use crate::ip::IpProtocol;
use crate::ipv6;
use crate::vxlan;

/// The layer at which a frame failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Ethernet II and its VLAN tags.
    Ethernet,
    /// ARP.
    Arp,
    /// IPv4.
    Ipv4,
    /// IPv6 fixed header or an extension header.
    Ipv6,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
    /// ICMPv4.
    Icmpv4,
    /// ICMPv6.
    Icmpv6,
}

/// Why a frame failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Shorter than the header or than a length field claims.
    Truncated,
    /// A field holds a forbidden value.
    Malformed,
    /// A checksum did not verify.
    Checksum,
    /// A well-formed header of a kind not handled.
    Unsupported,
    /// The IPv6 extension-header chain is longer than the bounded walk allows.
    TooManyExtensionHeaders,
}

/// A typed, `Copy` parse error naming the layer and the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParseError {
    /// Where parsing stopped.
    pub layer: Layer,
    /// Why.
    pub reason: Reason,
}

impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}: {:?}", self.layer, self.reason)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ParseError {}

/// One VLAN tag as a flow key sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Vlan {
    /// VLAN identifier (12 bits).
    pub vid: u16,
    /// Priority code point (3 bits).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
}

/// IP fragment state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fragment {
    /// A whole datagram (IPv4 MF=0 offset 0; IPv6 without a fragment header, or an atomic
    /// fragment, RFC 6946).
    #[default]
    None,
    /// Offset 0 with more fragments: L4 fields are present.
    First,
    /// Non-zero offset: no L4 header in this frame.
    Later,
}

/// The IPv4 or IPv6 fields of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ip {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Upper-layer protocol (after the IPv6 extension headers).
    pub protocol: IpProtocol,
    /// TTL or hop limit.
    pub ttl: u8,
    /// DSCP.
    pub dscp: u8,
    /// ECN.
    pub ecn: u8,
    /// Fragment state.
    pub fragment: Fragment,
    /// Fragment identification (IPv4's 16 bits widened; 0 when not fragmented).
    pub frag_ident: u32,
    /// Fragment offset in 8-octet units.
    pub frag_offset: u16,
}

/// The network layer of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum L3 {
    /// Not ARP or IP (the ethertype says what).
    #[default]
    None,
    /// An Ethernet/IPv4 ARP request or reply.
    Arp(arp::Repr),
    /// IPv4 or IPv6.
    Ip(Ip),
}

/// TCP fields conntrack needs (RFC 9293 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tcp {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Control bits: CWR ECE URG ACK PSH RST SYN FIN in the low byte, and the former NS bit
    /// (RFC 3540, now reserved) as 0x100.
    pub flags: u16,
    /// Window (unscaled).
    pub window: u16,
    /// Header length in bytes (data offset × 4).
    pub header_len: u8,
    /// Segment data length in this frame.
    pub data_len: u16,
}

impl Tcp {
    /// FIN.
    pub const FIN: u16 = 0x01;
    /// SYN.
    pub const SYN: u16 = 0x02;
    /// RST.
    pub const RST: u16 = 0x04;
    /// PSH.
    pub const PSH: u16 = 0x08;
    /// ACK.
    pub const ACK: u16 = 0x10;
    /// URG.
    pub const URG: u16 = 0x20;
    /// ECE.
    pub const ECE: u16 = 0x40;
    /// CWR.
    pub const CWR: u16 = 0x80;
}

/// UDP fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Udp {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The UDP length field (header included).
    pub length: u16,
}

/// SCTP common-header fields (RFC 9260 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sctp {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Verification tag.
    pub verification_tag: u32,
}

/// ICMPv4 or ICMPv6 fields. For an error message (ICMPv4 types 3, 4, 5, 11, 12; ICMPv6 types
/// 1–4) the invoking packet's IP header starts at `Headers::payload_offset` (RFC 792, RFC 4443
/// §3), which is where conntrack looks for the related flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Icmp {
    /// Type.
    pub ty: u8,
    /// Code.
    pub code: u8,
    /// Identifier of an echo request or reply (ICMPv4 types 8/0, ICMPv6 128/129).
    pub echo_id: Option<u16>,
}

/// The transport layer of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum L4 {
    /// No L4 fields: not IP, a later fragment, or a protocol not parsed here.
    #[default]
    None,
    /// TCP.
    Tcp(Tcp),
    /// UDP.
    Udp(Udp),
    /// SCTP.
    Sctp(Sctp),
    /// ICMPv4 (in IPv4 only).
    Icmpv4(Icmp),
    /// ICMPv6 (in IPv6 only).
    Icmpv6(Icmp),
}

/// A valid VXLAN header after UDP to port 4789.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanMarker {
    /// 24-bit VNI.
    pub vni: u32,
    /// GBP fields when the G bit is set.
    pub gbp: Option<vxlan::Gbp>,
    /// Offset of the inner Ethernet frame.
    pub inner_offset: u16,
}

/// Offsets and flow-key fields of one frame.
///
/// Offsets count from the start of the frame: `l3_offset` is after the Ethernet header and tags,
/// `l4_offset` after the IP header (and IPv6 extension headers), `payload_offset` after the L4
/// header. Where a layer is absent its offset equals the next-lower one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Headers {
    /// Destination MAC.
    pub dst_mac: Address,
    /// Source MAC.
    pub src_mac: Address,
    /// VLAN tags, outermost first; only the first `vlan_count` are meaningful.
    pub vlans: [Vlan; 2],
    /// Number of VLAN tags (0..=2).
    pub vlan_count: u8,
    /// The final ethertype (never a TPID).
    pub ethertype: u16,
    /// Start of the L3 header.
    pub l3_offset: u16,
    /// Start of the L4 header (or of the fragment data).
    pub l4_offset: u16,
    /// Start of the L4 payload.
    pub payload_offset: u16,
    /// L3 fields.
    pub l3: L3,
    /// L4 fields.
    pub l4: L4,
    /// VXLAN marker.
    pub vxlan: Option<VxlanMarker>,
}

impl Headers {
    /// The IP fields, if any.
    pub fn ip(&self) -> Option<&Ip> {
        match &self.l3 {
            L3::Ip(ip) => Some(ip),
            _ => None,
        }
    }

    /// The byte range of the TCP options, if this is a TCP frame.
    pub fn tcp_options(&self) -> Option<Range<usize>> {
        match self.l4 {
            L4::Tcp(_) => Some(usize::from(self.l4_offset) + 20..usize::from(self.payload_offset)),
            _ => None,
        }
    }

    /// The VLAN tags present.
    pub fn vlans(&self) -> &[Vlan] {
        &self.vlans[..usize::from(self.vlan_count).min(2)]
    }
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The folded one's-complement sum of a 20-byte header (RFC 1071), as `checksum::data` computes
/// it, unrolled for the common option-less IPv4 header.
#[inline(always)]
fn sum_words(hdr: &[u8; 20]) -> u16 {
    let mut acc = 0u32;
    for pair in hdr.chunks_exact(2) {
        acc += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

#[inline(always)]
const fn err(layer: Layer, reason: Reason) -> ParseError {
    ParseError { layer, reason }
}

/// Parses one frame, from the Ethernet header to the L4 header.
///
/// Errors name the layer and reason, e.g. an IPv4 IHL below 5 is `{Ipv4, Malformed}`, a bad IPv4
/// header checksum `{Ipv4, Checksum}`, a third VLAN tag `{Ethernet, Unsupported}`.
pub fn parse_frame(frame: &[u8]) -> Result<Headers, ParseError> {
    let mut h = Headers::default();
    parse_frame_into(frame, &mut h)?;
    Ok(h)
}

/// [`parse_frame`] writing into `h` in place (every field is overwritten; after an error `h`
/// holds a partial parse and must not be used).
///
/// For a caller that keeps its per-packet records in a preallocated vector: returning the
/// 116-byte `Headers` by value and moving it into the record reads back, in wide loads, what
/// the parser had just written field by field, and those loads stall on store forwarding (a
/// tenth of a datapath's per-packet time).
#[inline]
pub fn parse_frame_into(frame: &[u8], h: &mut Headers) -> Result<(), ParseError> {
    let len = frame.len();
    if len < ethernet::HEADER_LEN {
        return Err(err(Layer::Ethernet, Reason::Truncated));
    }
    *h = Headers {
        dst_mac: Address::from_bytes(&frame[0..6]),
        src_mac: Address::from_bytes(&frame[6..12]),
        ..Headers::default()
    };
    let mut type_at = 12;
    let mut ethertype = be16(frame, type_at);
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        let n = usize::from(h.vlan_count);
        // 802.1ad §6.9: an S-tag never sits inside a C-tag; a third tag is beyond our model.
        if n == ethernet::MAX_TAGS || (n == 1 && ethertype == 0x88a8) {
            return Err(err(Layer::Ethernet, Reason::Unsupported));
        }
        if len < type_at + 6 {
            return Err(err(Layer::Ethernet, Reason::Truncated));
        }
        let tci = be16(frame, type_at + 2);
        h.vlans[n] = Vlan {
            vid: tci & 0x0fff,
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
        };
        h.vlan_count += 1;
        type_at += ethernet::TAG_LEN;
        ethertype = be16(frame, type_at);
    }
    h.ethertype = ethertype;
    let l3 = type_at + 2;
    h.l3_offset = l3 as u16;
    match EtherType::from(ethertype) {
        EtherType::Ipv4 => parse_ipv4(frame, l3, h)?,
        EtherType::Ipv6 => parse_ipv6(frame, l3, h)?,
        EtherType::Arp => {
            h.l3 = L3::Arp(parse_arp(&frame[l3..])?);
            h.l4_offset = (l3 + arp::ETHERNET_IPV4_LEN) as u16;
            h.payload_offset = h.l4_offset;
        }
        _ => {
            h.l4_offset = l3 as u16;
            h.payload_offset = l3 as u16;
        }
    }
    Ok(())
}

/// Mirrors [`arp::Repr::parse`]'s checks and order so the two agree on every input.
fn parse_arp(b: &[u8]) -> Result<arp::Repr, ParseError> {
    let p = arp::Packet::new_checked(b).map_err(|_| err(Layer::Arp, Reason::Truncated))?;
    arp::Repr::parse(&p).map_err(|e| {
        err(
            Layer::Arp,
            match e {
                crate::Error::Malformed => Reason::Malformed,
                crate::Error::Truncated => Reason::Truncated,
                _ => Reason::Unsupported,
            },
        )
    })
}

#[inline(always)]
fn parse_ipv4(frame: &[u8], l3: usize, h: &mut Headers) -> Result<(), ParseError> {
    // A fixed-size view of the option-less part: field reads below need no bounds checks.
    let Some(hdr) = frame.get(l3..).and_then(<[u8]>::first_chunk::<20>) else {
        return Err(err(Layer::Ipv4, Reason::Truncated));
    };
    let ip = &frame[l3..];
    let vihl = hdr[0];
    if vihl >> 4 != 4 {
        return Err(err(Layer::Ipv4, Reason::Malformed));
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    if ihl < 20 {
        return Err(err(Layer::Ipv4, Reason::Malformed));
    }
    if ip.len() < ihl {
        return Err(err(Layer::Ipv4, Reason::Truncated));
    }
    let total = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    if total < ihl {
        return Err(err(Layer::Ipv4, Reason::Malformed));
    }
    if ip.len() < total {
        return Err(err(Layer::Ipv4, Reason::Truncated));
    }
    let flags_offset = u16::from_be_bytes([hdr[6], hdr[7]]);
    // RFC 791 §3.1: "Bit 0: reserved, must be zero".
    if flags_offset & 0x8000 != 0 {
        return Err(err(Layer::Ipv4, Reason::Malformed));
    }
    #[allow(unexpected_cfgs)]
    let verify = !cfg!(fuzzing);
    if verify {
        // Option-less headers (nearly all) take an unrolled 10-word sum.
        let sum = if ihl == 20 {
            sum_words(hdr)
        } else {
            checksum::data(&ip[..ihl])
        };
        if sum != 0xffff {
            return Err(err(Layer::Ipv4, Reason::Checksum));
        }
    }
    let frag_offset = flags_offset & 0x1fff;
    let fragment = if frag_offset != 0 {
        Fragment::Later
    } else if flags_offset & 0x2000 != 0 {
        Fragment::First
    } else {
        Fragment::None
    };
    let protocol = ip[9];
    h.l3 = L3::Ip(Ip {
        src: IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])),
        dst: IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19])),
        protocol: IpProtocol::from(protocol),
        ttl: ip[8],
        dscp: ip[1] >> 2,
        ecn: ip[1] & 0x03,
        fragment,
        frag_ident: if fragment == Fragment::None {
            0
        } else {
            u32::from(be16(ip, 4))
        },
        frag_offset,
    });
    let l4 = l3 + ihl;
    h.l4_offset = l4 as u16;
    h.payload_offset = l4 as u16;
    if fragment == Fragment::Later {
        return Ok(());
    }
    parse_l4(
        &frame[..l3 + total],
        l4,
        protocol,
        false,
        fragment == Fragment::First,
        h,
    )
}

#[inline(always)]
fn parse_ipv6(frame: &[u8], l3: usize, h: &mut Headers) -> Result<(), ParseError> {
    if frame.len() < l3 + ipv6::HEADER_LEN {
        return Err(err(Layer::Ipv6, Reason::Truncated));
    }
    let ip = &frame[l3..];
    if ip[0] >> 4 != 6 {
        return Err(err(Layer::Ipv6, Reason::Malformed));
    }
    let end = ipv6::HEADER_LEN + usize::from(be16(ip, 4));
    if ip.len() < end {
        return Err(err(Layer::Ipv6, Reason::Truncated));
    }
    let next = ip[6];
    // The common case, no extension header, skips the walk.
    let (protocol, ext_len, frag) = match next {
        0 | 43 | 44 | 60 => {
            let up =
                ipv6::walk(IpProtocol::from(next), &ip[ipv6::HEADER_LEN..end]).map_err(|e| {
                    err(
                        Layer::Ipv6,
                        match e {
                            ipv6::WalkError::Truncated => Reason::Truncated,
                            ipv6::WalkError::Malformed => Reason::Malformed,
                            ipv6::WalkError::TooManyHeaders => Reason::TooManyExtensionHeaders,
                        },
                    )
                })?;
            (u8::from(up.protocol), up.offset, up.fragment)
        }
        _ => (next, 0, None),
    };
    let (fragment, frag_ident, frag_offset) = match frag {
        Some(f) if f.offset != 0 => (Fragment::Later, f.ident, f.offset),
        Some(f) if f.more => (Fragment::First, f.ident, 0),
        _ => (Fragment::None, 0, 0),
    };
    let tc = ((be16(ip, 0) >> 4) & 0xff) as u8;
    let mut src = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&ip[24..40]);
    h.l3 = L3::Ip(Ip {
        src: IpAddr::V6(Ipv6Addr::from(src)),
        dst: IpAddr::V6(Ipv6Addr::from(dst)),
        protocol: IpProtocol::from(protocol),
        ttl: ip[7],
        dscp: tc >> 2,
        ecn: tc & 0x03,
        fragment,
        frag_ident,
        frag_offset,
    });
    let l4 = l3 + ipv6::HEADER_LEN + ext_len;
    h.l4_offset = l4 as u16;
    h.payload_offset = l4 as u16;
    if fragment == Fragment::Later {
        return Ok(());
    }
    parse_l4(
        &frame[..l3 + end],
        l4,
        protocol,
        true,
        fragment == Fragment::First,
        h,
    )
}

/// Parses the L4 header at `at` in `frame`, which ends where the IP datagram ends.
#[inline(always)]
fn parse_l4(
    frame: &[u8],
    at: usize,
    protocol: u8,
    v6: bool,
    first_fragment: bool,
    h: &mut Headers,
) -> Result<(), ParseError> {
    let seg = &frame[at..];
    match protocol {
        6 => {
            let Some(t) = seg.first_chunk::<20>() else {
                return Err(err(Layer::Tcp, Reason::Truncated));
            };
            let header_len = usize::from(t[12] >> 4) * 4;
            if header_len < 20 {
                return Err(err(Layer::Tcp, Reason::Malformed));
            }
            if seg.len() < header_len {
                return Err(err(Layer::Tcp, Reason::Truncated));
            }
            h.l4 = L4::Tcp(Tcp {
                src_port: u16::from_be_bytes([t[0], t[1]]),
                dst_port: u16::from_be_bytes([t[2], t[3]]),
                seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
                ack: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
                flags: u16::from_be_bytes([t[12], t[13]]) & 0x01ff,
                window: u16::from_be_bytes([t[14], t[15]]),
                header_len: header_len as u8,
                data_len: (seg.len() - header_len) as u16,
            });
            h.payload_offset = (at + header_len) as u16;
        }
        17 => {
            let Some(u) = seg.first_chunk::<8>() else {
                return Err(err(Layer::Udp, Reason::Truncated));
            };
            let length = u16::from_be_bytes([u[4], u[5]]);
            if length < 8 {
                return Err(err(Layer::Udp, Reason::Malformed));
            }
            // In a first fragment the UDP length covers the whole datagram, not this frame.
            if !first_fragment && seg.len() < usize::from(length) {
                return Err(err(Layer::Udp, Reason::Truncated));
            }
            let dst_port = u16::from_be_bytes([u[2], u[3]]);
            let src_port = u16::from_be_bytes([u[0], u[1]]);
            h.l4 = L4::Udp(Udp {
                src_port,
                dst_port,
                length,
            });
            h.payload_offset = (at + 8) as u16;
            if dst_port == vxlan::PORT && !first_fragment && length >= 16 {
                let v = vxlan::Packet::new_unchecked(&seg[8..16]);
                if v.instance_flag() {
                    h.vxlan = Some(VxlanMarker {
                        vni: v.vni(),
                        gbp: v.group_flag().then(|| vxlan::Gbp {
                            group_policy_id: v.group_policy_id(),
                            dont_learn: v.dont_learn(),
                            policy_applied: v.policy_applied(),
                        }),
                        inner_offset: (at + 16) as u16,
                    });
                }
            }
        }
        132 => {
            if seg.len() < 12 {
                return Err(err(Layer::Sctp, Reason::Truncated));
            }
            h.l4 = L4::Sctp(Sctp {
                src_port: be16(seg, 0),
                dst_port: be16(seg, 2),
                verification_tag: be32(seg, 4),
            });
            h.payload_offset = (at + 12) as u16;
        }
        1 if !v6 => {
            // RFC 792: every ICMP message has an 8-byte header.
            if seg.len() < 8 {
                return Err(err(Layer::Icmpv4, Reason::Truncated));
            }
            let echo = matches!(seg[0], 0 | 8);
            h.l4 = L4::Icmpv4(Icmp {
                ty: seg[0],
                code: seg[1],
                echo_id: echo.then(|| be16(seg, 4)),
            });
            h.payload_offset = (at + 8) as u16;
        }
        58 if v6 => {
            // RFC 4443 §2.1 requires 4 bytes; every message type defined has 8.
            if seg.len() < 8 {
                return Err(err(Layer::Icmpv6, Reason::Truncated));
            }
            let echo = matches!(seg[0], 128 | 129);
            h.l4 = L4::Icmpv6(Icmp {
                ty: seg[0],
                code: seg[1],
                echo_id: echo.then(|| be16(seg, 4)),
            });
            h.payload_offset = (at + 8) as u16;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::captured;
    use super::*;
    use proptest::prelude::*;

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    #[test]
    fn plain_tcp_syn() {
        let h = parse_frame(&captured::TCP_SYN_V4).unwrap();
        assert_eq!(h.dst_mac, Address([2, 0, 0, 0, 0, 2]));
        assert_eq!(h.src_mac, Address([2, 0, 0, 0, 0, 1]));
        assert_eq!((h.vlan_count, h.ethertype), (0, 0x0800));
        assert_eq!((h.l3_offset, h.l4_offset, h.payload_offset), (14, 34, 74));
        let ip = h.ip().unwrap();
        assert_eq!((ip.src, ip.dst), (v4([10, 0, 0, 1]), v4([10, 0, 0, 2])));
        assert_eq!(
            (ip.protocol, ip.ttl, ip.dscp, ip.ecn),
            (IpProtocol::Tcp, 64, 46, 0)
        );
        assert_eq!(ip.fragment, Fragment::None);
        let L4::Tcp(t) = h.l4 else {
            panic!("not TCP: {:?}", h.l4)
        };
        assert_eq!(
            (t.src_port, t.dst_port, t.seq, t.ack),
            (40000, 80, 0x01020304, 0)
        );
        assert_eq!(
            (t.flags, t.window, t.header_len, t.data_len),
            (Tcp::SYN, 64240, 40, 0)
        );
        assert_eq!(h.tcp_options(), Some(54..74));
        assert_eq!(captured::TCP_SYN_V4[54], 2); // MSS option kind
        assert_eq!(h.vxlan, None);
    }

    #[test]
    fn dot1q_udp_and_qinq_icmpv6() {
        let h = parse_frame(&captured::VLAN_UDP_V4).unwrap();
        assert_eq!(
            h.vlans(),
            &[Vlan {
                vid: 100,
                pcp: 5,
                dei: true
            }]
        );
        assert_eq!((h.l3_offset, h.l4_offset, h.payload_offset), (18, 38, 46));
        assert_eq!(
            h.l4,
            L4::Udp(Udp {
                src_port: 5353,
                dst_port: 53,
                length: 19
            })
        );

        let h = parse_frame(&captured::QINQ_ICMP6).unwrap();
        assert_eq!(
            h.vlans(),
            &[
                Vlan {
                    vid: 200,
                    pcp: 3,
                    dei: false
                },
                Vlan {
                    vid: 300,
                    pcp: 1,
                    dei: false
                }
            ]
        );
        assert_eq!((h.ethertype, h.l3_offset, h.l4_offset), (0x86dd, 22, 62));
        let ip = h.ip().unwrap();
        assert_eq!((ip.src, ip.dst), (v6("2001:db8::1"), v6("2001:db8::2")));
        assert_eq!((ip.ttl, ip.dscp, ip.ecn), (255, 0x2a, 1));
        assert_eq!(
            h.l4,
            L4::Icmpv6(Icmp {
                ty: 128,
                code: 0,
                echo_id: Some(0xbeef)
            })
        );
    }

    #[test]
    fn arp_request_and_padded_reply() {
        let h = parse_frame(&captured::ARP_REQUEST).unwrap();
        let L3::Arp(a) = h.l3 else { panic!("not ARP") };
        assert_eq!(a.operation, arp::Operation::Request);
        assert_eq!(a.target_protocol_addr, Ipv4Addr::new(10, 0, 0, 254));
        assert!(h.dst_mac.is_broadcast());
        assert_eq!((h.l4, h.l4_offset), (L4::None, 42));
        // On the wire a reply is padded to 60 bytes; padding is ignored.
        let mut padded = captured::ARP_REPLY.to_vec();
        padded.resize(60, 0);
        let L3::Arp(a) = parse_frame(&padded).unwrap().l3 else {
            panic!("not ARP")
        };
        assert_eq!(a.operation, arp::Operation::Reply);
        assert_eq!(a.source_hardware_addr, Address([2, 0, 0, 0, 0, 2]));
    }

    #[test]
    fn ipv4_options_and_fragments() {
        let h = parse_frame(&captured::ICMP_V4_OPTIONS).unwrap();
        assert_eq!((h.l4_offset, h.payload_offset), (14 + 32, 14 + 32 + 8));
        assert_eq!(
            h.l4,
            L4::Icmpv4(Icmp {
                ty: 8,
                code: 0,
                echo_id: Some(0x4242)
            })
        );

        let h = parse_frame(&captured::FRAG_V4_FIRST).unwrap();
        let ip = h.ip().unwrap();
        assert_eq!(
            (ip.fragment, ip.frag_ident, ip.frag_offset),
            (Fragment::First, 0x5555, 0)
        );
        // The UDP length (48) covers the whole datagram, more than this fragment holds.
        assert_eq!(
            h.l4,
            L4::Udp(Udp {
                src_port: 1111,
                dst_port: 2222,
                length: 48
            })
        );

        let h = parse_frame(&captured::FRAG_V4_LATER).unwrap();
        let ip = h.ip().unwrap();
        assert_eq!(
            (ip.fragment, ip.frag_ident, ip.frag_offset),
            (Fragment::Later, 0x5555, 3)
        );
        assert_eq!((h.l4, h.l4_offset, h.payload_offset), (L4::None, 34, 34));
    }

    #[test]
    fn ipv6_extension_chain_and_later_fragment() {
        let h = parse_frame(&captured::V6_EXT_CHAIN).unwrap();
        let ip = h.ip().unwrap();
        assert_eq!(
            (ip.protocol, ip.fragment, ip.frag_ident),
            (IpProtocol::Udp, Fragment::First, 0xabcdef01)
        );
        assert_eq!(h.l4_offset, 14 + 40 + 48);
        assert_eq!(
            h.l4,
            L4::Udp(Udp {
                src_port: 3333,
                dst_port: 4444,
                length: 16
            })
        );

        let h = parse_frame(&captured::V6_LATER_FRAGMENT).unwrap();
        let ip = h.ip().unwrap();
        assert_eq!(
            (ip.fragment, ip.frag_offset, ip.frag_ident),
            (Fragment::Later, 3, 0x01020304)
        );
        assert_eq!(
            (ip.protocol, h.l4, h.l4_offset),
            (IpProtocol::Udp, L4::None, 62)
        );

        let h = parse_frame(&captured::TCP_V6).unwrap();
        let L4::Tcp(t) = h.l4 else { panic!("not TCP") };
        assert_eq!(
            (t.src_port, t.dst_port, t.flags, t.data_len),
            (443, 50123, Tcp::ACK, 4)
        );
    }

    /// Found by the parse_frame fuzz target against etherparse: in a non-first fragment the
    /// bytes after the fragment header are data (RFC 8200 §4.5), so the walk stops there and the
    /// protocol is the fragment header's next header.
    #[test]
    fn ipv6_later_fragment_stops_the_walk() {
        let mut b = captured::V6_EXT_CHAIN.to_vec();
        b[88..90].copy_from_slice(&[0x00, 0x21]); // offset 4, M = 1
        let h = parse_frame(&b).unwrap();
        let ip = h.ip().unwrap();
        assert_eq!((ip.fragment, ip.frag_offset), (Fragment::Later, 4));
        assert_eq!(
            (ip.protocol, h.l4, h.l4_offset),
            (IpProtocol::Ipv6Opts, L4::None, 94)
        );
    }

    /// Found by the parse_frame fuzz target against etherparse: ICMPv4 (protocol 1) inside IPv6
    /// is not ICMPv6 (58) and is left unparsed.
    #[test]
    fn cross_family_icmp_is_unparsed() {
        let mut b = captured::TCP_V6.to_vec();
        b[20] = 1;
        let h = parse_frame(&b).unwrap();
        assert_eq!(
            (h.ip().unwrap().protocol, h.l4),
            (IpProtocol::Icmp, L4::None)
        );
    }

    #[test]
    fn sctp() {
        let h = parse_frame(&captured::SCTP_V4).unwrap();
        let s = Sctp {
            src_port: 36412,
            dst_port: 38412,
            verification_tag: 0xdeadbeef,
        };
        assert_eq!((h.l4, h.payload_offset), (L4::Sctp(s), 46));
    }

    #[test]
    fn vxlan_encapsulated_tcp() {
        for (bytes, vni, gbp) in [
            (&captured::VXLAN_TCP[..], 0x123456, None),
            (
                &captured::VXLAN_GBP_TCP[..],
                42,
                Some(vxlan::Gbp {
                    group_policy_id: 0x0102,
                    dont_learn: true,
                    policy_applied: true,
                }),
            ),
        ] {
            let outer = parse_frame(bytes).unwrap();
            assert!(matches!(outer.l4, L4::Udp(Udp { dst_port: 4789, .. })));
            let m = outer.vxlan.unwrap();
            assert_eq!((m.vni, m.gbp, m.inner_offset), (vni, gbp, 50));
            let inner = parse_frame(&bytes[usize::from(m.inner_offset)..]).unwrap();
            assert_eq!(inner.src_mac, Address([0x0a, 0, 0, 0, 0, 1]));
            let ip = inner.ip().unwrap();
            assert_eq!((ip.src, ip.dst), (v4([172, 16, 0, 1]), v4([172, 16, 0, 2])));
            let L4::Tcp(t) = inner.l4 else {
                panic!("inner not TCP")
            };
            assert_eq!(
                (t.src_port, t.dst_port, t.seq, t.ack),
                (12345, 443, 1000, 2000)
            );
            assert_eq!(
                (t.flags, t.window, t.data_len),
                (Tcp::PSH | Tcp::ACK, 512, 5)
            );
        }
        // Without the I flag it is plain UDP to port 4789.
        let mut b = captured::VXLAN_TCP.to_vec();
        b[42] = 0;
        assert_eq!(parse_frame(&b).unwrap().vxlan, None);
    }

    fn fails(bytes: &[u8], layer: Layer, reason: Reason) {
        assert_eq!(
            parse_frame(bytes),
            Err(ParseError { layer, reason }),
            "{bytes:02x?}"
        );
    }

    /// Recomputes the IPv4 header checksum of a frame whose IPv4 header starts at `l3`.
    fn refill_v4(b: &mut [u8], l3: usize) {
        let mut p = crate::ipv4::Packet::new_unchecked(&mut b[l3..]);
        p.fill_checksum();
    }

    #[test]
    fn every_reachable_error() {
        use Layer::*;
        use Reason::*;
        fails(&captured::TCP_SYN_V4[..13], Ethernet, Truncated);
        fails(&captured::VLAN_UDP_V4[..17], Ethernet, Truncated);
        let mut b = captured::QINQ_ICMP6.to_vec();
        b[20..22].copy_from_slice(&[0x81, 0x00]);
        fails(&b, Ethernet, Unsupported); // third tag
        let mut b = captured::QINQ_ICMP6.to_vec();
        b[12..14].copy_from_slice(&[0x81, 0x00]);
        b[16..18].copy_from_slice(&[0x88, 0xa8]);
        fails(&b, Ethernet, Unsupported); // S-tag inside a C-tag

        fails(&captured::ARP_REQUEST[..41], Arp, Truncated);
        let mut b = captured::ARP_REQUEST.to_vec();
        b[15] = 6;
        fails(&b, Arp, Unsupported);
        let mut b = captured::ARP_REQUEST.to_vec();
        b[19] = 3;
        fails(&b, Arp, Malformed);

        fails(&captured::TCP_SYN_V4[..33], Ipv4, Truncated);
        fails(&captured::TCP_SYN_V4[..73], Ipv4, Truncated);
        let mut b = captured::TCP_SYN_V4.to_vec();
        b[14] = 0x44;
        fails(&b, Ipv4, Malformed); // IHL < 5
        let mut b = captured::TCP_SYN_V4.to_vec();
        b[14] = 0x55;
        fails(&b, Ipv4, Malformed); // version 5
        let mut b = captured::TCP_SYN_V4.to_vec();
        b[16..18].copy_from_slice(&16u16.to_be_bytes());
        refill_v4(&mut b, 14);
        fails(&b, Ipv4, Malformed); // total length < header length
        let mut b = captured::TCP_SYN_V4.to_vec();
        b[20] |= 0x80;
        refill_v4(&mut b, 14);
        fails(&b, Ipv4, Malformed); // reserved flag
        let mut b = captured::TCP_SYN_V4.to_vec();
        b[22] ^= 1;
        fails(&b, Ipv4, Checksum);

        fails(&captured::TCP_V6[..53], Ipv6, Truncated);
        fails(&captured::TCP_V6[..77], Ipv6, Truncated);
        let mut b = captured::TCP_V6.to_vec();
        b[14] = 0x40;
        fails(&b, Ipv6, Malformed);
        let mut b = captured::V6_EXT_CHAIN.to_vec();
        b[54] = 0; // hop-by-hop after hop-by-hop
        fails(&b, Ipv6, Malformed);
        let mut b = captured::V6_EXT_CHAIN.to_vec();
        b[63] = 100; // routing header overruns
        fails(&b, Ipv6, Truncated);
        let mut chain = captured::TCP_V6[..54].to_vec();
        chain[20] = 60;
        chain[18..20].copy_from_slice(&(9u16 * 8).to_be_bytes());
        for _ in 0..9 {
            chain.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        fails(&chain, Ipv6, TooManyExtensionHeaders);

        let mut b = captured::TCP_SYN_V4.to_vec();
        b[46] = 0x40; // data offset 4
        fails(&b, Tcp, Malformed);
        let mut b = captured::TCP_SYN_V4.to_vec();
        b[46] = 0xf0; // data offset 15 > segment
        fails(&b, Tcp, Truncated);
        let mut b = captured::TCP_SYN_V4[..50].to_vec();
        b[16..18].copy_from_slice(&36u16.to_be_bytes());
        refill_v4(&mut b, 14);
        fails(&b, Tcp, Truncated);

        let mut b = captured::VLAN_UDP_V4.to_vec();
        b[42..44].copy_from_slice(&7u16.to_be_bytes());
        fails(&b, Udp, Malformed);
        let mut b = captured::VLAN_UDP_V4.to_vec();
        b[42..44].copy_from_slice(&20u16.to_be_bytes());
        fails(&b, Udp, Truncated);

        let mut b = captured::SCTP_V4[..44].to_vec();
        b[16..18].copy_from_slice(&30u16.to_be_bytes());
        refill_v4(&mut b, 14);
        fails(&b, Sctp, Truncated);

        let mut b = captured::ICMP_V4_OPTIONS[..50].to_vec();
        b[16..18].copy_from_slice(&36u16.to_be_bytes());
        refill_v4(&mut b, 14);
        fails(&b, Icmpv4, Truncated);

        let mut b = captured::QINQ_ICMP6[..66].to_vec();
        b[26..28].copy_from_slice(&4u16.to_be_bytes());
        fails(&b, Icmpv6, Truncated);
    }

    #[test]
    fn non_ip_is_l2_only() {
        let mut b = captured::TCP_SYN_V4.to_vec();
        b[12..14].copy_from_slice(&0x88ccu16.to_be_bytes()); // LLDP
        let h = parse_frame(&b).unwrap();
        assert_eq!(
            (h.ethertype, h.l3, h.l4, h.l4_offset),
            (0x88cc, L3::None, L4::None, 14)
        );
    }

    #[test]
    fn headers_stay_compact() {
        let size = core::mem::size_of::<Headers>();
        std::println!("size_of::<Headers>() = {size}");
        assert!(size <= 128, "{size}");
    }

    /// Checks parse_frame against etherparse on the fields both understand, when both accept.
    fn etherparse_agrees(bytes: &[u8], h: &Headers) {
        // Legitimate disagreement: etherparse also walks the legacy 0x9100 QinQ TPID and MACsec
        // (0x88e5); we treat both as opaque ethertypes.
        if h.ethertype == 0x9100 || h.ethertype == 0x88e5 {
            return;
        }
        // etherparse reads an IPv6 payload length of zero as "the rest of the slice"; we read it as
        // zero bytes (RFC 8200; jumbograms unsupported), so the layers above differ by design.
        let l3 = usize::from(h.l3_offset);
        if h.ethertype == 0x86dd && bytes.get(l3 + 4..l3 + 6) == Some(&[0, 0]) {
            return;
        }
        // etherparse walks IPsec AH (51) as an extension header in both families; we stop at it.
        if h.ip()
            .is_some_and(|ip| ip.protocol == IpProtocol::Unknown(51))
        {
            return;
        }
        let Ok(e) = etherparse::SlicedPacket::from_ethernet(bytes) else {
            return;
        };
        if let Some(etherparse::LinkSlice::Ethernet2(eth)) = &e.link {
            assert_eq!(eth.source(), h.src_mac.0);
            assert_eq!(eth.destination(), h.dst_mac.0);
        }
        let ids: std::vec::Vec<u16> = e.vlan_ids().iter().map(|v| v.value()).collect();
        let ours: std::vec::Vec<u16> = h.vlans().iter().map(|v| v.vid).collect();
        assert_eq!(ids, ours);
        match (&e.net, h.l3) {
            (Some(etherparse::NetSlice::Ipv4(ip)), L3::Ip(ours)) => {
                assert_eq!(v4(ip.header().source()), ours.src);
                assert_eq!(v4(ip.header().destination()), ours.dst);
                assert_eq!(ip.payload_ip_number().0, u8::from(ours.protocol));
                assert_eq!(ip.is_payload_fragmented(), ours.fragment != Fragment::None);
            }
            (Some(etherparse::NetSlice::Ipv6(ip)), L3::Ip(ours)) => {
                assert_eq!(IpAddr::V6(ip.header().source_addr()), ours.src);
                assert_eq!(IpAddr::V6(ip.header().destination_addr()), ours.dst);
                // etherparse walks on into a non-first fragment's data (RFC 8200 §4.5: not headers).
                if ours.fragment != Fragment::Later {
                    assert_eq!(ip.payload().ip_number.0, u8::from(ours.protocol));
                }
            }
            (Some(etherparse::NetSlice::Arp(a)), L3::Arp(ours)) => {
                assert_eq!(a.operation().0, u16::from(ours.operation));
            }
            (None, L3::None) => {}
            (net, l3) => panic!("disagree: {net:?} vs {l3:?}"),
        }
        // etherparse may read a TCP/UDP header out of a non-first IPv6 fragment's data; such a
        // fragment has no L4 header (RFC 8200 §4.5).
        if h.ip().is_some_and(|ip| ip.fragment == Fragment::Later) {
            return;
        }
        match (&e.transport, h.l4) {
            (Some(etherparse::TransportSlice::Tcp(t)), L4::Tcp(o)) => {
                assert_eq!(
                    (t.source_port(), t.destination_port()),
                    (o.src_port, o.dst_port)
                );
                assert_eq!(
                    (t.sequence_number(), t.acknowledgment_number()),
                    (o.seq, o.ack)
                );
                assert_eq!(t.window_size(), o.window);
                assert_eq!(t.payload().len(), usize::from(o.data_len));
            }
            (Some(etherparse::TransportSlice::Udp(u)), L4::Udp(o)) => {
                assert_eq!(
                    (u.source_port(), u.destination_port()),
                    (o.src_port, o.dst_port)
                );
                assert_eq!(u.length(), o.length);
            }
            (Some(etherparse::TransportSlice::Icmpv4(i)), L4::Icmpv4(o)) => {
                assert_eq!((i.type_u8(), i.code_u8()), (o.ty, o.code));
            }
            (Some(etherparse::TransportSlice::Icmpv6(i)), L4::Icmpv6(o)) => {
                assert_eq!((i.type_u8(), i.code_u8()), (o.ty, o.code));
            }
            // etherparse stops at fragments and does not know SCTP; it decodes protocol 1 in IPv6
            // as ICMPv4 and 58 in IPv4 as ICMPv6, where we leave a cross-family ICMP unparsed.
            (
                Some(etherparse::TransportSlice::Icmpv4(_) | etherparse::TransportSlice::Icmpv6(_)),
                L4::None,
            )
            | (None, _) => {}
            (t, l4) => panic!("disagree: {t:?} vs {l4:?}"),
        }
    }

    #[test]
    fn etherparse_agrees_on_captured() {
        for bytes in captured::ALL {
            let h = parse_frame(bytes).unwrap();
            etherparse_agrees(bytes, &h);
            if let Some(m) = h.vxlan {
                let inner = &bytes[usize::from(m.inner_offset)..];
                etherparse_agrees(inner, &parse_frame(inner).unwrap());
            }
        }
    }

    /// Whatever parse_frame accepts, the protocol modules' Reprs accept with the same fields.
    fn modules_agree(bytes: &[u8], h: &Headers) {
        let eth = ethernet::Frame::new_checked(bytes).unwrap();
        let e = ethernet::Repr::parse(&eth).unwrap();
        assert_eq!(
            (e.src_addr, e.dst_addr, u16::from(e.ethertype)),
            (h.src_mac, h.dst_mac, h.ethertype)
        );
        assert_eq!(usize::from(h.l3_offset), e.payload_offset());
        let l3 = &bytes[usize::from(h.l3_offset)..];
        match h.l3 {
            L3::Arp(a) => {
                assert_eq!(
                    arp::Repr::parse(&arp::Packet::new_checked(l3).unwrap()).unwrap(),
                    a
                );
            }
            L3::Ip(ip) if h.ethertype == 0x0800 => {
                let r = crate::ipv4::Repr::parse(&crate::ipv4::Packet::new_checked(l3).unwrap())
                    .unwrap();
                assert_eq!(
                    (IpAddr::V4(r.src_addr), IpAddr::V4(r.dst_addr)),
                    (ip.src, ip.dst)
                );
                assert_eq!(
                    (r.next_header, r.hop_limit, r.frag_offset),
                    (ip.protocol, ip.ttl, ip.frag_offset)
                );
            }
            L3::Ip(ip) => {
                let p = ipv6::Packet::new_checked(l3).unwrap();
                let r = ipv6::Repr::parse(&p).unwrap();
                assert_eq!(
                    (IpAddr::V6(r.src_addr), IpAddr::V6(r.dst_addr)),
                    (ip.src, ip.dst)
                );
                let up = p.upper_layer().unwrap();
                assert_eq!(up.protocol, ip.protocol);
                assert_eq!(
                    up.offset + usize::from(h.l3_offset),
                    usize::from(h.l4_offset)
                );
            }
            L3::None => {
                assert!(h.ethertype != 0x0800 && h.ethertype != 0x86dd && h.ethertype != 0x0806);
            }
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(h) = parse_frame(&bytes) {
                prop_assert!(usize::from(h.payload_offset) <= bytes.len());
                prop_assert!(h.l3_offset <= h.l4_offset && h.l4_offset <= h.payload_offset);
                modules_agree(&bytes, &h);
            }
        }

        #[test]
        fn never_panics_on_mutated_frames(
            which in 0usize..14,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            cut in any::<usize>(),
            fix_checksum in any::<bool>(),
        ) {
            let mut b = captured::ALL[which].to_vec();
            for (at, v) in edits {
                let at = at % b.len();
                b[at] = v;
            }
            if fix_checksum && b.len() >= 34 && b[12..14] == [8, 0] && b[14] >> 4 == 4 {
                let ihl = usize::from(b[14] & 0xf) * 4;
                if ihl >= 20 && b.len() >= 14 + ihl {
                    b[24..26].fill(0);
                    let c = checksum::finish(checksum::data(&b[14..14 + ihl]));
                    b[24..26].copy_from_slice(&c.to_be_bytes());
                }
            }
            b.truncate(cut % (b.len() + 1));
            if let Ok(h) = parse_frame(&b) {
                prop_assert!(usize::from(h.payload_offset) <= b.len());
                modules_agree(&b, &h);
                etherparse_agrees(&b, &h);
                if let Some(m) = h.vxlan {
                    let _ = parse_frame(&b[usize::from(m.inner_offset)..]);
                }
            }
        }
    }
}

#[cfg(test)]
#[rustfmt::skip]
pub(crate) mod captured {
    //! Frames captured from scapy 2.5.0, shared by the tests of every module of this crate.
    //! Generated by `/usr/bin/python3` with scapy 2.5.0: each frame is `bytes(<layers>)` of the
    //! layers named in its comment, e.g. `Ether(src=m1,dst=m2)/IP(src="10.0.0.1",dst="10.0.0.2",
    //! id=0x1234,flags="DF",ttl=64,tos=0xb8)/TCP(sport=40000,dport=80,flags="S",seq=0x01020304,
    //! window=64240,options=[MSS 1460, SAckOK, Timestamp (1,0), NOP, WScale 7])` where
    //! m1 = 02:00:00:00:00:01, m2 = 02:00:00:00:00:02. The fragments come from scapy's
    //! `fragment(IP(id=0x5555)/UDP(1111→2222)/Raw(b"x"*40), fragsize=24)`; the IPv6 chain is
    //! HopByHop(RouterAlert)/Routing(type 0, 1 address, segleft 1)/Fragment(id=0xabcdef01, m=1)/
    //! DestOpt(PadN 4)/UDP(3333→4444); the VXLAN frames carry an inner
    //! `Ether/IP(172.16.0.1→172.16.0.2)/TCP(12345→443, PA, seq 1000, ack 2000, window 512)/"GET /"`,
    //! the GBP one with flags I+G, gpflags D+A, gpid 0x0102, VNI 42.
    /// `Ether / IP / TCP 10.0.0.1:40000 > 10.0.0.2:http S` (74 bytes).
    pub(crate) const TCP_SYN_V4: [u8; 74] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0xb8,
        0x00, 0x3c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x13, 0xce, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
        0x00, 0x02, 0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02,
        0xfa, 0xf0, 0x98, 0x75, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];
    /// `Ether / Dot1Q / IP / UDP 192.168.1.10:mdns > 192.168.1.20:domain / Raw` (57 bytes).
    pub(crate) const VLAN_UDP_V4: [u8; 57] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x81, 0x00, 0xb0, 0x64,
        0x08, 0x00, 0x45, 0x00, 0x00, 0x27, 0x00, 0x01, 0x00, 0x00, 0x3f, 0x11, 0xf8, 0x56, 0xc0, 0xa8,
        0x01, 0x0a, 0xc0, 0xa8, 0x01, 0x14, 0x14, 0xe9, 0x00, 0x35, 0x00, 0x13, 0x39, 0x99, 0x12, 0x34,
        0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x2d, 0x64, 0x6e, 0x73,
    ];
    /// `Ether / Dot1AD / Dot1Q / IPv6 / ICMPv6 Echo Request (id: 0xbeef seq: 0x7)` (74 bytes).
    pub(crate) const QINQ_ICMP6: [u8; 74] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0xa8, 0x60, 0xc8,
        0x81, 0x00, 0x21, 0x2c, 0x86, 0xdd, 0x6a, 0x91, 0x23, 0x45, 0x00, 0x0c, 0x3a, 0xff, 0x20, 0x01,
        0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01,
        0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x80, 0x00,
        0x86, 0x7c, 0xbe, 0xef, 0x00, 0x07, 0x70, 0x69, 0x6e, 0x67,
    ];
    /// `Ether / ARP who has 10.0.0.254 says 10.0.0.1` (42 bytes).
    pub(crate) const ARP_REQUEST: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x01,
        0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0xfe,
    ];
    /// `Ether / ARP is at 02:00:00:00:00:02 says 10.0.0.254` (42 bytes).
    pub(crate) const ARP_REPLY: [u8; 42] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x06, 0x00, 0x01,
        0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x00, 0xfe,
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x01,
    ];
    /// `Ether / IP / ICMP 10.1.0.1 > 10.1.0.2 echo-request 0 / Raw` (58 bytes).
    pub(crate) const ICMP_V4_OPTIONS: [u8; 58] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x48, 0x00,
        0x00, 0x2c, 0x00, 0x01, 0x00, 0x00, 0x20, 0x01, 0x78, 0xc0, 0x0a, 0x01, 0x00, 0x01, 0x0a, 0x01,
        0x00, 0x02, 0x07, 0x0b, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
        0xf0, 0xf5, 0x42, 0x42, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64,
    ];
    /// `Ether / 10.2.0.1 > 10.2.0.2 udp / Raw` (58 bytes).
    pub(crate) const FRAG_V4_FIRST: [u8; 58] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x00,
        0x00, 0x2c, 0x55, 0x55, 0x20, 0x00, 0x40, 0x11, 0xf1, 0x65, 0x0a, 0x02, 0x00, 0x01, 0x0a, 0x02,
        0x00, 0x02, 0x04, 0x57, 0x08, 0xae, 0x00, 0x30, 0x75, 0x19, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
        0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    ];
    /// `Ether / 10.2.0.1 > 10.2.0.2 udp frag:3 / Raw` (58 bytes).
    pub(crate) const FRAG_V4_LATER: [u8; 58] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x00,
        0x00, 0x2c, 0x55, 0x55, 0x00, 0x03, 0x40, 0x11, 0x11, 0x63, 0x0a, 0x02, 0x00, 0x01, 0x0a, 0x02,
        0x00, 0x02, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
        0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    ];
    /// `Ether / IPv6 / IPv6ExtHdrHopByHop / IPv6ExtHdrRouting / IPv6ExtHdrFragment / IPv6ExtHdrDestOpt / UDP 3333 > 4444 / Raw` (118 bytes).
    pub(crate) const V6_EXT_CHAIN: [u8; 118] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x60, 0x00,
        0x00, 0x00, 0x00, 0x40, 0x00, 0x40, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x99, 0x2b, 0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00, 0x2c, 0x02,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x3c, 0x00, 0x00, 0x01, 0xab, 0xcd, 0xef, 0x01, 0x11, 0x00,
        0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x0d, 0x05, 0x11, 0x5c, 0x00, 0x10, 0xf7, 0xdc, 0x70, 0x61,
        0x79, 0x6c, 0x6f, 0x61, 0x64, 0x21,
    ];
    /// `Ether / 2001:db8::1 > 2001:db8::2 (44) / IPv6ExtHdrFragment / Raw` (74 bytes).
    pub(crate) const V6_LATER_FRAGMENT: [u8; 74] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x60, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x2c, 0x3c, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x11, 0x00, 0x00, 0x18, 0x01, 0x02, 0x03, 0x04, 0x74, 0x61,
        0x69, 0x6c, 0x74, 0x61, 0x69, 0x6c, 0x74, 0x61, 0x69, 0x6c,
    ];
    /// `Ether / IP / UDP / VXLAN / Ether / IP / TCP 172.16.0.1:12345 > 172.16.0.2:https PA / Raw` (109 bytes).
    pub(crate) const VXLAN_TCP: [u8; 109] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x00,
        0x00, 0x5f, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xb6, 0x89, 0xc0, 0x00, 0x02, 0x01, 0xc0, 0x00,
        0x02, 0x02, 0xc0, 0x00, 0x12, 0xb5, 0x00, 0x4b, 0x74, 0xaa, 0x08, 0x00, 0x00, 0x00, 0x12, 0x34,
        0x56, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
        0x45, 0x00, 0x00, 0x2d, 0x00, 0x01, 0x00, 0x00, 0x40, 0x06, 0x22, 0xa7, 0xac, 0x10, 0x00, 0x01,
        0xac, 0x10, 0x00, 0x02, 0x30, 0x39, 0x01, 0xbb, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x07, 0xd0,
        0x50, 0x18, 0x02, 0x00, 0x4d, 0x92, 0x00, 0x00, 0x47, 0x45, 0x54, 0x20, 0x2f,
    ];
    /// `Ether / IP / UDP / VXLAN / Ether / IP / TCP 172.16.0.1:12345 > 172.16.0.2:https PA / Raw` (109 bytes).
    pub(crate) const VXLAN_GBP_TCP: [u8; 109] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x00,
        0x00, 0x5f, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0xf6, 0x89, 0xc0, 0x00, 0x02, 0x01, 0xc0, 0x00,
        0x02, 0x02, 0xc3, 0x50, 0x12, 0xb5, 0x00, 0x4b, 0x2e, 0x44, 0x88, 0x48, 0x01, 0x02, 0x00, 0x00,
        0x2a, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
        0x45, 0x00, 0x00, 0x2d, 0x00, 0x01, 0x00, 0x00, 0x40, 0x06, 0x22, 0xa7, 0xac, 0x10, 0x00, 0x01,
        0xac, 0x10, 0x00, 0x02, 0x30, 0x39, 0x01, 0xbb, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x07, 0xd0,
        0x50, 0x18, 0x02, 0x00, 0x4d, 0x92, 0x00, 0x00, 0x47, 0x45, 0x54, 0x20, 0x2f,
    ];
    /// `Ether / 10.3.0.1 > 10.3.0.2 sctp / SCTP` (46 bytes).
    pub(crate) const SCTP_V4: [u8; 46] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x00,
        0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0x40, 0x84, 0x66, 0x51, 0x0a, 0x03, 0x00, 0x01, 0x0a, 0x03,
        0x00, 0x02, 0x8e, 0x3c, 0x96, 0x0c, 0xde, 0xad, 0xbe, 0xef, 0x83, 0x13, 0xd4, 0x99,
    ];
    /// `Ether / IPv6 / TCP 2001:db8::a:https > 2001:db8::b:50123 A / Raw` (78 bytes).
    pub(crate) const TCP_V6: [u8; 78] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x60, 0x00,
        0x00, 0x00, 0x00, 0x18, 0x06, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x0b, 0x01, 0xbb, 0xc3, 0xcb, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00,
        0x00, 0x09, 0x50, 0x10, 0x03, 0xe8, 0xb2, 0x08, 0x00, 0x00, 0x64, 0x61, 0x74, 0x61,
    ];

    /// Every captured frame.
    pub(crate) const ALL: [&[u8]; 14] = [
        &TCP_SYN_V4, &VLAN_UDP_V4, &QINQ_ICMP6, &ARP_REQUEST, &ARP_REPLY, &ICMP_V4_OPTIONS,
        &FRAG_V4_FIRST, &FRAG_V4_LATER, &V6_EXT_CHAIN, &V6_LATER_FRAGMENT, &VXLAN_TCP,
        &VXLAN_GBP_TCP, &SCTP_V4, &TCP_V6,
    ];
}
