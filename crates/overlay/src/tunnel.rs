//! VXLAN encapsulation and decapsulation (RFC 7348) with prebuilt outer headers.
//!
//! Each remote VTEP gets its whole outer header (Ethernet + IPv4/IPv6 + UDP + VXLAN, 50 or 70
//! bytes) emitted once by the wire crate when the VTEP is added, plus the checksum partial sums of
//! its constant fields. [`Overlay::encap`] copies it into the headroom in front of the inner frame
//! and patches only what varies per packet: IP length, DSCP, the IPv4 header checksum (constant
//! sum + length + TOS, RFC 1071 §2's associativity), the IPv6 flow label (RFC 6438), UDP length and
//! source port (inner flow hash in 49152–65535, RFC 7348 §5), the UDP checksum (zero over IPv4,
//! RFC 7348 §5; computed over IPv6, RFC 6935 §4), and the GBP group.
//!
//! Invariants: encap writes only `buf[new_start..start + len]` and never panics whatever the
//! arguments; decap only reads. No allocation, no I/O. Thread-safety: both take `&self`.

use core::net::IpAddr;

use podswitch_flow::DropReason;
use podswitch_wire::checksum;
use podswitch_wire::ethernet::{self, EtherType};
use podswitch_wire::frame::{Fragment, Headers, L4};
use podswitch_wire::ip::IpProtocol;
use podswitch_wire::{ipv4, ipv6, udp, vxlan};

use crate::tables::{LocalVtep, Overlay, Vtep};

/// Outer header bytes over an IPv4 underlay: Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8.
pub const OVERHEAD_V4: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + 16;
/// Outer header bytes over an IPv6 underlay: Ethernet 14 + IPv6 40 + UDP 8 + VXLAN 8.
pub const OVERHEAD_V6: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN + 16;
/// TTL / hop limit of the outer header.
pub const OUTER_TTL: u8 = 64;

const L3: usize = ethernet::HEADER_LEN;

/// The pod (inner IP) MTU for an underlay MTU: − 50 over IPv4, − 70 over IPv6.
pub const fn pod_mtu(underlay_mtu: u16, ipv6_underlay: bool) -> u16 {
    let overhead = if ipv6_underlay {
        OVERHEAD_V6
    } else {
        OVERHEAD_V4
    };
    underlay_mtu.saturating_sub(overhead as u16)
}

/// The outer UDP source port for an inner flow hash: in the dynamic range 49152–65535 as
/// RFC 7348 §5 recommends, so underlay ECMP spreads flows while one flow keeps one path.
#[inline]
pub const fn source_port(flow_hash: u32) -> u16 {
    0xc000 | ((flow_hash ^ (flow_hash >> 16)) & 0x3fff) as u16
}

/// Why a frame could not be encapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncapError {
    /// `start` is smaller than the outer header.
    NoHeadroom,
    /// No VTEP with that id.
    UnknownVtep,
    /// The inner frame exceeds the tunnel MTU (underlay MTU − overhead, for the inner IP packet).
    MtuExceeded,
    /// `start + len` is outside the buffer, or the frame is shorter than an Ethernet header.
    BadFrame,
}

impl EncapError {
    /// The drop counter this error bumps.
    pub const fn drop_reason(self) -> DropReason {
        match self {
            EncapError::NoHeadroom => DropReason::NoHeadroom,
            EncapError::UnknownVtep => DropReason::UnknownVtep,
            EncapError::MtuExceeded => DropReason::MtuExceeded,
            EncapError::BadFrame => DropReason::ParseError,
        }
    }
}

/// Why a frame was not accepted for decapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecapError {
    /// Not a UDP datagram to the VXLAN port.
    NotVxlan,
    /// The outer datagram is a fragment (RFC 7348 §4.3: VTEPs must not fragment; we do not
    /// reassemble).
    Fragmented,
    /// The outer destination is not our VTEP address.
    NotLocal,
    /// The UDP payload is too short for the VXLAN header and an inner Ethernet header.
    Truncated,
    /// The VXLAN I flag is clear (RFC 7348 §5: it must be set for a valid VNI).
    BadHeader,
    /// A VNI this node does not serve.
    UnknownVni,
    /// The outer source is not a known VTEP on that VNI.
    UnknownVtep,
}

impl DecapError {
    /// The drop counter this error bumps.
    pub const fn drop_reason(self) -> DropReason {
        match self {
            DecapError::NotVxlan | DecapError::Truncated | DecapError::BadHeader => {
                DropReason::VxlanBadHeader
            }
            DecapError::Fragmented => DropReason::VxlanFragment,
            DecapError::NotLocal => DropReason::VxlanNotLocal,
            DecapError::UnknownVni => DropReason::UnknownVni,
            DecapError::UnknownVtep => DropReason::UnknownVtep,
        }
    }
}

/// An accepted VXLAN frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decapsulated {
    /// VNI.
    pub vni: u32,
    /// The VTEP it came from.
    pub vtep: u32,
    /// Offset of the inner Ethernet frame in the outer frame.
    pub inner_offset: usize,
    /// Length of the inner frame (from the UDP length, so outer Ethernet padding is excluded).
    pub inner_len: usize,
    /// The GBP fields, when the G bit is set.
    pub gbp: Option<vxlan::Gbp>,
}

/// A VTEP with its prebuilt outer header.
#[derive(Debug, Clone)]
pub(crate) struct Prebuilt {
    pub(crate) vtep: Vtep,
    hdr: [u8; OVERHEAD_V6],
    v6: bool,
    /// IPv4: folded sum of the header with total length, TOS and checksum zero.
    ip_sum: u16,
    /// IPv6: folded pseudo-header sum (addresses and next header; length added per packet).
    pseudo_sum: u16,
}

impl Prebuilt {
    /// `None` when the VTEP's address family is not the local one.
    pub(crate) fn new(local: &LocalVtep, vtep: Vtep) -> Option<Prebuilt> {
        let mut hdr = [0u8; OVERHEAD_V6];
        let v6 = local.ip.is_ipv6();
        let eth = ethernet::Repr {
            src_addr: local.mac,
            dst_addr: vtep.next_hop_mac,
            outer_tag: None,
            inner_tag: None,
            ethertype: if v6 { EtherType::Ipv6 } else { EtherType::Ipv4 },
        };
        eth.emit(&mut ethernet::Frame::new_unchecked(&mut hdr[..L3]));
        let (mut ip_sum, mut pseudo_sum) = (0, 0);
        let udp_at = match (local.ip, vtep.ip) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let repr = ipv4::Repr {
                    src_addr: src,
                    dst_addr: dst,
                    next_header: IpProtocol::Udp,
                    payload_len: 0,
                    hop_limit: OUTER_TTL,
                    dscp: 0,
                    ecn: 0,
                    // RFC 6864 §4.1: an atomic datagram (DF set, never fragmented) may carry
                    // identification 0.
                    ident: 0,
                    dont_frag: true,
                    more_frags: false,
                    frag_offset: 0,
                };
                let ip = &mut hdr[L3..L3 + ipv4::HEADER_LEN];
                repr.emit(&mut ipv4::Packet::new_unchecked(&mut *ip));
                // The emitted total length is the bare header's 20; remove it and the checksum.
                let mut p = ipv4::Packet::new_unchecked(&mut *ip);
                p.set_total_len(0);
                p.set_checksum(0);
                ip_sum = checksum::data(ip);
                L3 + ipv4::HEADER_LEN
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let repr = ipv6::Repr {
                    src_addr: src,
                    dst_addr: dst,
                    next_header: IpProtocol::Udp,
                    payload_len: 0,
                    hop_limit: OUTER_TTL,
                    traffic_class: 0,
                    flow_label: 0,
                };
                repr.emit(&mut ipv6::Packet::new_unchecked(
                    &mut hdr[L3..L3 + ipv6::HEADER_LEN],
                ));
                pseudo_sum = checksum::pseudo_header_v6(src, dst, IpProtocol::Udp, 0);
                L3 + ipv6::HEADER_LEN
            }
            _ => return None,
        };
        let mut u = udp::Packet::new_unchecked(&mut hdr[udp_at..udp_at + udp::HEADER_LEN]);
        u.set_src_port(0);
        u.set_dst_port(local.udp_port);
        u.set_len(0);
        u.set_checksum(0);
        let vx_at = udp_at + udp::HEADER_LEN;
        vxlan::Repr {
            vni: vtep.vni,
            gbp: None,
        }
        .emit(&mut vxlan::Packet::new_unchecked(
            &mut hdr[vx_at..vx_at + vxlan::HEADER_LEN],
        ));
        Some(Prebuilt {
            vtep,
            hdr,
            v6,
            ip_sum,
            pseudo_sum,
        })
    }

    #[inline(always)]
    fn len(&self) -> usize {
        if self.v6 { OVERHEAD_V6 } else { OVERHEAD_V4 }
    }
}

impl Overlay {
    /// Encapsulates the frame at `buf[start..start + len]` towards VTEP `vtep`, writing the outer
    /// header into the headroom; returns the new start (`start − 50` or `start − 70`).
    ///
    /// `flow_hash` (the inner `FlowKey::hash`) picks the UDP source port and the IPv6 flow label;
    /// `dscp` (the inner DSCP, or a QoS mark) is copied to the outer header; `gbp` is written as the
    /// VXLAN-GBP group only when the VTEP supports GBP.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn encap(
        &self,
        vtep: u32,
        buf: &mut [u8],
        start: usize,
        len: usize,
        flow_hash: u32,
        dscp: u8,
        gbp: Option<u16>,
    ) -> Result<usize, EncapError> {
        let p = self
            .vteps
            .get(vtep as usize)
            .and_then(Option::as_ref)
            .ok_or(EncapError::UnknownVtep)?;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= buf.len() && len >= ethernet::HEADER_LEN)
            .ok_or(EncapError::BadFrame)?;
        let hl = p.len();
        let Some(new_start) = start.checked_sub(hl) else {
            return Err(EncapError::NoHeadroom);
        };
        // The outer IP datagram: everything after the outer Ethernet header.
        let ip_len = len + hl - L3;
        if ip_len > usize::from(self.local.underlay_mtu) {
            return Err(EncapError::MtuExceeded);
        }
        let out = &mut buf[new_start..end];
        out[..hl].copy_from_slice(&p.hdr[..hl]);
        let udp_len = (len + 16) as u16;
        let tos = (dscp & 0x3f) << 2;
        let udp_at = if p.v6 {
            let mut ip = ipv6::Packet::new_unchecked(&mut out[L3..L3 + ipv6::HEADER_LEN]);
            ip.set_traffic_class(tos);
            ip.set_flow_label(flow_hash & 0x000f_ffff);
            ip.set_payload_len(udp_len);
            L3 + ipv6::HEADER_LEN
        } else {
            let mut ip = ipv4::Packet::new_unchecked(&mut out[L3..L3 + ipv4::HEADER_LEN]);
            ip.set_dscp(dscp & 0x3f);
            ip.set_total_len(ip_len as u16);
            // The TOS byte is the low half of the header's first word.
            let sum = checksum::combine(&[p.ip_sum, ip_len as u16, u16::from(tos)]);
            ip.set_checksum(checksum::finish(sum));
            L3 + ipv4::HEADER_LEN
        };
        let vx_at = udp_at + udp::HEADER_LEN;
        if p.vtep.gbp
            && let Some(group) = gbp
        {
            let mut vx = vxlan::Packet::new_unchecked(&mut out[vx_at..vx_at + vxlan::HEADER_LEN]);
            vx.set_flags(vxlan::FLAG_I | vxlan::FLAG_G);
            vx.set_group_policy_id(group);
        }
        let mut u = udp::Packet::new_unchecked(&mut out[udp_at..]);
        u.set_src_port(source_port(flow_hash));
        u.set_len(udp_len);
        if p.v6 {
            // RFC 6935 §4 permits a zero checksum over IPv6 only under RFC 6936's conditions;
            // we compute it (pseudo-header + UDP header + VXLAN header + inner frame).
            let sum = checksum::combine(&[p.pseudo_sum, udp_len, checksum::data(&out[udp_at..])]);
            let c = checksum::finish(sum);
            udp::Packet::new_unchecked(&mut out[udp_at..]).set_checksum(if c == 0 {
                0xffff
            } else {
                c
            });
        }
        Ok(new_start)
    }

    /// Checks an outer frame (parsed by `parse_frame` into `h`) for decapsulation: UDP to our
    /// VXLAN port, not fragmented, addressed to our VTEP address, I flag set, a VNI we serve, and
    /// from a known VTEP on that VNI. The UDP checksum is not verified (RFC 7348 §5 lets it be
    /// zero over IPv4; the inner frame's own checksums protect it).
    #[inline]
    pub fn decap(&self, frame: &[u8], h: &Headers) -> Result<Decapsulated, DecapError> {
        let Some(ip) = h.ip() else {
            return Err(DecapError::NotVxlan);
        };
        if ip.protocol != IpProtocol::Udp {
            return Err(DecapError::NotVxlan);
        }
        let udp = match h.l4 {
            L4::Udp(u) if ip.fragment == Fragment::None => u,
            L4::Udp(u) if u.dst_port != self.local.udp_port => return Err(DecapError::NotVxlan),
            _ if ip.fragment != Fragment::None => return Err(DecapError::Fragmented),
            _ => return Err(DecapError::NotVxlan),
        };
        if udp.dst_port != self.local.udp_port {
            return Err(DecapError::NotVxlan);
        }
        if ip.dst != self.local.ip {
            return Err(DecapError::NotLocal);
        }
        let vx_at = usize::from(h.payload_offset);
        let udp_end = (usize::from(h.l4_offset) + usize::from(udp.length)).min(frame.len());
        let inner_offset = vx_at + vxlan::HEADER_LEN;
        if udp_end < inner_offset + ethernet::HEADER_LEN {
            return Err(DecapError::Truncated);
        }
        let vx = vxlan::Packet::new_unchecked(&frame[vx_at..inner_offset]);
        if !vx.instance_flag() {
            return Err(DecapError::BadHeader);
        }
        let vni = vx.vni();
        if !self.serves(vni) {
            return Err(DecapError::UnknownVni);
        }
        let vtep = self
            .vtep_by_addr(ip.src, vni)
            .ok_or(DecapError::UnknownVtep)?;
        let gbp = vx.group_flag().then(|| vxlan::Gbp {
            group_policy_id: vx.group_policy_id(),
            dont_learn: vx.dont_learn(),
            policy_applied: vx.policy_applied(),
        });
        Ok(Decapsulated {
            vni,
            vtep,
            inner_offset,
            inner_len: udp_end - inner_offset,
            gbp,
        })
    }
}
