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

/// The last tunnel [`Overlay::decap_memo`] found: (outer source, VNI, VTEP id). Per worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecapMemo {
    last: Option<(IpAddr, u32, u32)>,
}

/// Why a frame was not accepted for decapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecapError {
    /// Not a UDP datagram to the VXLAN port.
    NotVxlan,
    /// The outer datagram is a fragment (RFC 7348 §4.3: VTEPs must not fragment; we do not
    /// reassemble).
    Fragmented,
    /// The outer destination is not our VTEP: another IP address, or another MAC (a frame a
    /// bridge flooded to every port; the kernel drops these as `PACKET_OTHERHOST` before IP).
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
                // Pseudo-header without the length; the UDP destination port and the VXLAN
                // header are added below, once the header is written.
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
        if v6 {
            // The UDP header (ports, length and checksum zero but the destination port) and the
            // VXLAN header are constant: fold them into the IPv6 partial sum.
            let constant = checksum::data(&hdr[udp_at..vx_at + vxlan::HEADER_LEN]);
            pseudo_sum = checksum::combine(&[pseudo_sum, constant]);
        }
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
            // we compute it. The constant part (pseudo-header addresses and next header, UDP
            // destination port, VXLAN header without GBP) is precomputed; the per-packet words are
            // added as values rather than read back from `out`, which would stall on
            // store-to-load forwarding of the bytes just written; only the inner frame is summed.
            // With GBP the first VXLAN word goes from 0x0800 to 0x8800 (G flag) and the group
            // policy ID fills the second.
            let (g_flag, g_id) = match gbp {
                Some(group) if p.vtep.gbp => (u16::from(vxlan::FLAG_G) << 8, group),
                _ => (0, 0),
            };
            let sum = checksum::combine(&[
                p.pseudo_sum,
                udp_len,
                udp_len,
                source_port(flow_hash),
                g_flag,
                g_id,
                checksum::data(&out[hl..]),
            ]);
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
        self.decap_by(frame, h, |ip, vni| self.vtep_by_addr(ip, vni))
    }

    /// [`decap`](Self::decap) remembering the last tunnel found in `memo`: consecutive frames
    /// of one tunnel (a burst from one node) then skip the VTEP table's hash lookup (a twelfth
    /// of a decapsulated packet's time). `memo` is valid for this overlay only: reset it (a new
    /// `DecapMemo`) when the overlay changes.
    #[inline]
    pub fn decap_memo(
        &self,
        frame: &[u8],
        h: &Headers,
        memo: &mut DecapMemo,
    ) -> Result<Decapsulated, DecapError> {
        self.decap_by(frame, h, |ip, vni| match memo.last {
            Some((a, v, id)) if v == vni && a == ip => Some(id),
            _ => {
                let id = self.vtep_by_addr(ip, vni)?;
                memo.last = Some((ip, vni, id));
                Some(id)
            }
        })
    }

    #[inline(always)]
    fn decap_by(
        &self,
        frame: &[u8],
        h: &Headers,
        vtep_by_addr: impl FnOnce(IpAddr, u32) -> Option<u32>,
    ) -> Result<Decapsulated, DecapError> {
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
        if ip.dst != self.local.ip || h.dst_mac != self.local.mac {
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
        // Every VTEP is on a served VNI, so one lookup decides the common case; the VNI set is
        // consulted only to name the failure.
        let Some(vtep) = vtep_by_addr(ip.src, vni) else {
            return Err(if self.serves(vni) {
                DecapError::UnknownVtep
            } else {
                DecapError::UnknownVni
            });
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{LocalVtep, Overlay, Vtep};
    use core::net::{Ipv4Addr, Ipv6Addr};
    use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};
    use podswitch_wire::ethernet::Address;
    use podswitch_wire::parse_frame;

    const MAC1: Address = Address([2, 0, 0, 0, 0, 1]);
    const MAC2: Address = Address([2, 0, 0, 0, 0, 2]);
    const HEADROOM: usize = 128;

    fn ip4(d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, d))
    }

    fn ip6(d: u16) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, d))
    }

    /// Node `me` with VTEPs to `peer` on VNI 42 (id 1, no GBP) and VNI 7 (id 2, GBP).
    fn node(me: IpAddr, my_mac: Address, peer: IpAddr, peer_mac: Address) -> Overlay {
        let mut o = Overlay::new(LocalVtep::new(me, my_mac, 1500, &[42, 7])).unwrap();
        for (id, vni, gbp) in [(1, 42, false), (2, 7, true)] {
            o.add_vtep(Vtep {
                id,
                ip: peer,
                next_hop_mac: peer_mac,
                vni,
                gbp,
            })
            .unwrap();
        }
        o
    }

    /// A 64-byte inner frame (UDP over IPv4, DSCP 46) in a buffer with headroom.
    fn inner(dscp: u8) -> (Vec<u8>, usize) {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(
            [0x86, 0xf0, 0xe2, 0xaf, 0xb8, 0xd3],
            [0xe6, 0x81, 0x74, 0x2f, 7, 0xed],
        )
        .ipv4([10, 77, 42, 1], [10, 77, 42, 2], 64)
        .udp(1234, 5678)
        .write(&mut f, &[0xab; 22])
        .unwrap();
        assert_eq!(f.len(), 64);
        {
            let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
            ip.set_dscp(dscp);
            ip.fill_checksum();
        }
        let mut buf = vec![0xa5; HEADROOM];
        buf.extend_from_slice(&f);
        let len = f.len();
        (buf, len)
    }

    #[test]
    fn ipv4_outer_header_verified_by_etherparse() {
        let o = node(ip4(1), MAC1, ip4(2), MAC2);
        let (mut buf, len) = inner(46);
        let orig = buf[HEADROOM..].to_vec();
        let hash = 0xdead_beef;
        let s = o.encap(1, &mut buf, HEADROOM, len, hash, 46, None).unwrap();
        assert_eq!(s, HEADROOM - OVERHEAD_V4);
        let out = &buf[s..];
        assert_eq!(out.len(), len + 50);
        let p = PacketHeaders::from_ethernet_slice(out).unwrap();
        let Some(etherparse::LinkHeader::Ethernet2(eth)) = p.link else {
            panic!("no Ethernet header")
        };
        assert_eq!((eth.source, eth.destination), (MAC1.0, MAC2.0));
        let Some(NetHeaders::Ipv4(ip, _)) = p.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        assert_eq!(usize::from(ip.total_len), len + 36);
        assert_eq!(ip.dscp.value(), 46);
        assert!(ip.dont_fragment && !ip.more_fragments);
        assert_eq!(
            (ip.source, ip.destination),
            ([10, 77, 0, 1], [10, 77, 0, 2])
        );
        assert_eq!(ip.time_to_live, OUTER_TTL);
        let Some(TransportHeader::Udp(u)) = p.transport else {
            panic!("not UDP")
        };
        assert_eq!(u.destination_port, 4789);
        assert_eq!(usize::from(u.length), len + 16);
        assert_eq!(u.checksum, 0, "RFC 7348 §5: zero UDP checksum over IPv4");
        assert_eq!(u.source_port, source_port(hash));
        assert!(u.source_port >= 49152);
        // VXLAN: I flag, VNI 42, reserved zero; then the untouched inner frame.
        assert_eq!(&out[42..50], &[0x08, 0, 0, 0, 0, 0, 42, 0]);
        assert_eq!(&out[50..], &orig[..]);
        // Our own parser agrees.
        let h = parse_frame(out).unwrap();
        assert_eq!(h.vxlan.map(|v| (v.vni, v.inner_offset)), Some((42, 50)));
    }

    #[test]
    fn checksum_is_right_for_every_length_and_dscp() {
        let o = node(ip4(1), MAC1, ip4(2), MAC2);
        for (len, dscp) in [(14, 0), (64, 63), (1000, 10), (1464, 46)] {
            let mut buf = vec![0u8; HEADROOM + len];
            let s = o.encap(1, &mut buf, HEADROOM, len, 7, dscp, None).unwrap();
            let ip = ipv4::Packet::new_checked(&buf[s + 14..]).unwrap();
            assert!(ip.verify_checksum(), "len {len} dscp {dscp}");
            assert_eq!((ip.dscp(), usize::from(ip.total_len())), (dscp, len + 36));
        }
    }

    #[test]
    fn source_port_is_stable_per_flow_and_spread() {
        let mut ports = std::collections::HashSet::new();
        for i in 0..4096u32 {
            let h = i.wrapping_mul(0x9e37_79b9);
            let p = source_port(h);
            assert!(p >= 49152);
            assert_eq!(p, source_port(h));
            ports.insert(p);
        }
        assert!(ports.len() > 3000, "{} distinct ports", ports.len());
    }

    #[test]
    fn gbp_written_only_when_the_vtep_supports_it() {
        let o = node(ip4(1), MAC1, ip4(2), MAC2);
        let (mut buf, len) = inner(0);
        let s = o
            .encap(2, &mut buf, HEADROOM, len, 1, 0, Some(0x1234))
            .unwrap();
        assert_eq!(&buf[s + 42..s + 50], &[0x88, 0, 0x12, 0x34, 0, 0, 7, 0]);
        let h = parse_frame(&buf[s..]).unwrap();
        assert_eq!(
            h.vxlan.and_then(|v| v.gbp).map(|g| g.group_policy_id),
            Some(0x1234)
        );
        let (mut buf, len) = inner(0);
        let s = o
            .encap(1, &mut buf, HEADROOM, len, 1, 0, Some(0x1234))
            .unwrap();
        assert_eq!(&buf[s + 42..s + 50], &[0x08, 0, 0, 0, 0, 0, 42, 0]);
        // A GBP VTEP without a group: plain header.
        let (mut buf, len) = inner(0);
        let s = o.encap(2, &mut buf, HEADROOM, len, 1, 0, None).unwrap();
        assert_eq!(buf[s + 42], 0x08);
    }

    #[test]
    fn ipv6_outer_with_valid_udp_checksum() {
        let o = node(ip6(1), MAC1, ip6(2), MAC2);
        let (mut buf, len) = inner(46);
        let orig = buf[HEADROOM..].to_vec();
        let hash = 0x0012_3456;
        let s = o.encap(1, &mut buf, HEADROOM, len, hash, 46, None).unwrap();
        assert_eq!(s, HEADROOM - OVERHEAD_V6);
        let out = &buf[s..];
        let p = PacketHeaders::from_ethernet_slice(out).unwrap();
        let Some(NetHeaders::Ipv6(ip, _)) = &p.net else {
            panic!("not IPv6")
        };
        assert_eq!(usize::from(ip.payload_length), len + 16);
        assert_eq!(ip.traffic_class, 46 << 2);
        assert_eq!(ip.flow_label.value(), hash & 0xf_ffff);
        assert_eq!(ip.hop_limit, OUTER_TTL);
        let Some(TransportHeader::Udp(u)) = p.transport else {
            panic!("not UDP")
        };
        assert_ne!(u.checksum, 0);
        assert_eq!(u.checksum, u.calc_checksum_ipv6(ip, &out[62..]).unwrap());
        assert_eq!(
            (u.destination_port, u.source_port),
            (4789, source_port(hash))
        );
        assert_eq!(&out[70..], &orig[..]);
        // And with every DSCP and a GBP group the checksum still verifies (our verifier).
        let o = node(ip6(1), MAC1, ip6(2), MAC2);
        for dscp in [0, 1, 63] {
            let (mut buf, len) = inner(dscp);
            let s = o
                .encap(2, &mut buf, HEADROOM, len, 99, dscp, Some(0xffff))
                .unwrap();
            let ph = podswitch_wire::PseudoHeader::V6 {
                src: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
                dst: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
            };
            assert!(
                udp::Packet::new_checked(&buf[s + 54..])
                    .unwrap()
                    .verify_checksum(&ph)
            );
        }
    }

    #[test]
    fn encap_errors() {
        let o = node(ip4(1), MAC1, ip4(2), MAC2);
        let (mut buf, len) = inner(0);
        assert_eq!(
            o.encap(9, &mut buf, HEADROOM, len, 0, 0, None),
            Err(EncapError::UnknownVtep)
        );
        assert_eq!(
            o.encap(1, &mut buf, 49, 64, 0, 0, None),
            Err(EncapError::NoHeadroom)
        );
        assert_eq!(
            o.encap(1, &mut buf, HEADROOM, len + 1, 0, 0, None),
            Err(EncapError::BadFrame)
        );
        assert_eq!(
            o.encap(1, &mut buf, HEADROOM, 13, 0, 0, None),
            Err(EncapError::BadFrame)
        );
        assert_eq!(
            o.encap(1, &mut buf, usize::MAX, 20, 0, 0, None),
            Err(EncapError::BadFrame)
        );
        // Tunnel MTU: an inner IP packet of pod MTU (1450) fits, one byte more does not.
        let mut big = vec![0u8; HEADROOM + 14 + 1451];
        assert_eq!(
            o.encap(1, &mut big, HEADROOM, 14 + 1450, 0, 0, None),
            Ok(HEADROOM - 50)
        );
        assert_eq!(
            o.encap(1, &mut big, HEADROOM, 14 + 1451, 0, 0, None),
            Err(EncapError::MtuExceeded)
        );
        let o6 = node(ip6(1), MAC1, ip6(2), MAC2);
        assert_eq!(
            o6.encap(1, &mut big, HEADROOM, 14 + 1430, 0, 0, None),
            Ok(HEADROOM - 70)
        );
        assert_eq!(
            o6.encap(1, &mut big, HEADROOM, 14 + 1431, 0, 0, None),
            Err(EncapError::MtuExceeded)
        );
        assert_eq!(
            EncapError::MtuExceeded.drop_reason(),
            DropReason::MtuExceeded
        );
    }

    fn round_trip(a: &Overlay, b: &Overlay) {
        for vtep in [1, 2] {
            let (mut buf, len) = inner(10);
            let orig = buf[HEADROOM..].to_vec();
            let s = a
                .encap(vtep, &mut buf, HEADROOM, len, 5, 10, Some(77))
                .unwrap();
            let out = &buf[s..];
            let h = parse_frame(out).unwrap();
            let d = b.decap(out, &h).unwrap();
            let want_vni = a.vtep(vtep).unwrap().vni;
            assert_eq!(d.vni, want_vni);
            assert_eq!(b.vtep(d.vtep).map(|v| v.vni), Some(want_vni));
            assert_eq!(d.gbp.map(|g| g.group_policy_id), (vtep == 2).then_some(77));
            assert_eq!(
                &out[d.inner_offset..d.inner_offset + d.inner_len],
                &orig[..]
            );
        }
    }

    #[test]
    fn encap_then_decap_round_trips() {
        round_trip(
            &node(ip4(1), MAC1, ip4(2), MAC2),
            &node(ip4(2), MAC2, ip4(1), MAC1),
        );
        round_trip(
            &node(ip6(1), MAC1, ip6(2), MAC2),
            &node(ip6(2), MAC2, ip6(1), MAC1),
        );
    }

    /// An outer frame from node 1 to node 2, patched by `edit` (IPv4 header checksum refreshed).
    fn outer_frame(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let a = node(ip4(1), MAC1, ip4(2), MAC2);
        let (mut buf, len) = inner(0);
        let s = a.encap(1, &mut buf, HEADROOM, len, 5, 0, None).unwrap();
        let mut f = buf[s..].to_vec();
        edit(&mut f);
        ipv4::Packet::new_unchecked(&mut f[14..34]).fill_checksum();
        f
    }

    /// Node 2's decapsulation of [`outer_frame`].
    fn outer(edit: impl FnOnce(&mut Vec<u8>)) -> Result<Decapsulated, DecapError> {
        let b = node(ip4(2), MAC2, ip4(1), MAC1);
        let f = outer_frame(edit);
        b.decap(&f, &parse_frame(&f).unwrap())
    }

    /// With one memo across a mix of tunnels and failures, `decap_memo` answers exactly as
    /// `decap`: a remembered tunnel never stands in for another source or VNI.
    #[test]
    fn decap_memo_agrees_with_decap() {
        let b = node(ip4(2), MAC2, ip4(1), MAC1);
        let frames = [
            outer_frame(|_| ()),
            outer_frame(|_| ()),
            outer_frame(|f| f[29] = 9),
            outer_frame(|_| ()),
            outer_frame(|f| f[48] = 43),
            outer_frame(|f| f[33] = 3),
            outer_frame(|_| ()),
        ];
        let mut memo = DecapMemo::default();
        let mut ok = 0;
        for f in &frames {
            let h = parse_frame(f).unwrap();
            let want = b.decap(f, &h);
            assert_eq!(b.decap_memo(f, &h, &mut memo), want);
            ok += usize::from(want.is_ok());
        }
        assert_eq!(ok, 4);
    }

    #[test]
    fn every_decap_error_is_reachable() {
        assert!(outer(|_| ()).is_ok());
        // Not UDP at all, and UDP to another port.
        let mut tcp = Vec::new();
        PacketBuilder::ethernet2(MAC1.0, MAC2.0)
            .ipv4([10, 77, 0, 1], [10, 77, 0, 2], 64)
            .tcp(1, 4789, 0, 100)
            .write(&mut tcp, &[])
            .unwrap();
        let b = node(ip4(2), MAC2, ip4(1), MAC1);
        assert_eq!(
            b.decap(&tcp, &parse_frame(&tcp).unwrap()),
            Err(DecapError::NotVxlan)
        );
        assert_eq!(
            outer(|f| f[36..38].copy_from_slice(&53u16.to_be_bytes())),
            Err(DecapError::NotVxlan)
        );
        // An ARP frame has no IP layer.
        let arp = parse_frame(&[
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 8, 6, 0, 1, 8, 0, 6, 4, 0, 1, 2,
            0, 0, 0, 0, 1, 10, 77, 0, 1, 0, 0, 0, 0, 0, 0, 10, 77, 0, 2,
        ])
        .unwrap();
        assert_eq!(b.decap(&[], &arp), Err(DecapError::NotVxlan));
        // Fragments: a first fragment (MF) and a later one (offset).
        assert_eq!(outer(|f| f[20] |= 0x20), Err(DecapError::Fragmented));
        assert_eq!(outer(|f| f[21] = 8), Err(DecapError::Fragmented));
        // Addressed to another VTEP, by IP address or by MAC.
        assert_eq!(outer(|f| f[33] = 3), Err(DecapError::NotLocal));
        assert_eq!(outer(|f| f[5] ^= 0x10), Err(DecapError::NotLocal));
        assert_eq!(outer(|f| f[..6].fill(0xff)), Err(DecapError::NotLocal));
        // I flag clear.
        assert_eq!(outer(|f| f[42] = 0), Err(DecapError::BadHeader));
        // Unknown VNI, unknown source VTEP, and a known VTEP on a VNI it is not configured for.
        assert_eq!(outer(|f| f[48] = 43), Err(DecapError::UnknownVni));
        assert_eq!(outer(|f| f[29] = 9), Err(DecapError::UnknownVtep));
        // Truncated: the UDP datagram ends inside the inner Ethernet header.
        assert_eq!(
            outer(|f| {
                f.truncate(14 + 20 + 8 + 8 + 10);
                f[16..18].copy_from_slice(&46u16.to_be_bytes());
                f[38..40].copy_from_slice(&26u16.to_be_bytes());
            }),
            Err(DecapError::Truncated)
        );
        for (e, r) in [
            (DecapError::NotVxlan, DropReason::VxlanBadHeader),
            (DecapError::Fragmented, DropReason::VxlanFragment),
            (DecapError::NotLocal, DropReason::VxlanNotLocal),
            (DecapError::UnknownVni, DropReason::UnknownVni),
            (DecapError::UnknownVtep, DropReason::UnknownVtep),
        ] {
            assert_eq!(e.drop_reason(), r);
        }
    }

    proptest::proptest! {
        /// Any inner frame, flow hash, DSCP and GBP group: the outer checksums verify, the source
        /// port is in range, and the receiving node gets the inner frame back unchanged.
        #[test]
        fn encap_decap_any_frame(
            inner in proptest::collection::vec(proptest::prelude::any::<u8>(), 14..400),
            hash in proptest::prelude::any::<u32>(),
            dscp in 0u8..64,
            gbp in proptest::option::of(proptest::prelude::any::<u16>()),
            vtep in 1u32..3,
            v6 in proptest::prelude::any::<bool>(),
        ) {
            let (a, b) = if v6 {
                (node(ip6(1), MAC1, ip6(2), MAC2), node(ip6(2), MAC2, ip6(1), MAC1))
            } else {
                (node(ip4(1), MAC1, ip4(2), MAC2), node(ip4(2), MAC2, ip4(1), MAC1))
            };
            let mut buf = vec![0x5a; HEADROOM];
            buf.extend_from_slice(&inner);
            let s = a.encap(vtep, &mut buf, HEADROOM, inner.len(), hash, dscp, gbp).unwrap();
            let out = &buf[s..];
            let h = parse_frame(out).unwrap();
            let l4 = usize::from(h.l4_offset);
            let u = udp::Packet::new_checked(&out[l4..]).unwrap();
            proptest::prop_assert_eq!(u.src_port(), source_port(hash));
            if v6 {
                let ph = podswitch_wire::PseudoHeader::V6 {
                    src: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
                    dst: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
                };
                proptest::prop_assert!(u.verify_checksum(&ph));
            } else {
                proptest::prop_assert!(ipv4::Packet::new_checked(&out[14..]).unwrap().verify_checksum());
                proptest::prop_assert_eq!(u.checksum(), 0);
            }
            proptest::prop_assert_eq!(h.ip().map(|i| i.dscp), Some(dscp));
            let d = b.decap(out, &h).unwrap();
            proptest::prop_assert_eq!(&out[d.inner_offset..d.inner_offset + d.inner_len], &inner[..]);
            let want_gbp = if vtep == 2 { gbp } else { None };
            proptest::prop_assert_eq!(d.gbp.map(|g| g.group_policy_id), want_gbp);
        }
    }

    #[test]
    fn padded_outer_frame_reports_inner_length_from_udp() {
        let d = outer(|f| f.extend_from_slice(&[0; 6])).unwrap();
        assert_eq!((d.inner_offset, d.inner_len), (50, 64));
    }
}
