//! Shared helpers for podswitch's criterion benchmarks (frame builders used by several benches).
//! The benchmarks themselves live in `benches/benches/*.rs`; run them with
//! `cargo bench -p podswitch-benches` (or `scripts/bench-smoke` for the quick CI mode).
//!
//! [`mixed_frames`] builds a deterministic mix of the traffic a node switches — TCP, UDP and ICMP
//! over IPv4 and IPv6, untagged, 802.1Q and QinQ, and VXLAN-encapsulated — with the wire crate's
//! own emitters (L4 headers are written by hand so this file depends only on the L2/L3 API).
//! Allocation happens only while building the set, never in a measured loop.

use core::net::{Ipv4Addr, Ipv6Addr};

use podswitch_wire::ethernet::{self, Address, EtherType, Tag};
use podswitch_wire::ip::IpProtocol;
use podswitch_wire::{ipv4, ipv6, vxlan};

/// The L4 header a built frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Kind {
    /// TCP with `options` bytes of options (a multiple of 4) and a data length.
    Tcp { options: usize, data: usize },
    /// UDP with a data length.
    Udp { data: usize },
    /// ICMP echo request (ICMPv4 in IPv4, ICMPv6 in IPv6).
    Echo,
}

/// The L3 a built frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3Kind {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

fn l4_bytes(kind: L4Kind, l3: L3Kind, seed: u16) -> (IpProtocol, Vec<u8>) {
    match kind {
        L4Kind::Tcp { options, data } => {
            let mut b = vec![0u8; 20 + options + data];
            b[0..2].copy_from_slice(&(40000 + seed).to_be_bytes());
            b[2..4].copy_from_slice(&443u16.to_be_bytes());
            b[4..8].copy_from_slice(&(1000 + u32::from(seed)).to_be_bytes());
            b[8..12].copy_from_slice(&2000u32.to_be_bytes());
            b[12] = (((20 + options) / 4) as u8) << 4;
            b[13] = 0x18; // PSH|ACK
            b[14..16].copy_from_slice(&512u16.to_be_bytes());
            b[20..20 + options].fill(1); // NOP options
            (IpProtocol::Tcp, b)
        }
        L4Kind::Udp { data } => {
            let mut b = vec![0u8; 8 + data];
            b[0..2].copy_from_slice(&(50000 + seed).to_be_bytes());
            b[2..4].copy_from_slice(&53u16.to_be_bytes());
            b[4..6].copy_from_slice(&((8 + data) as u16).to_be_bytes());
            (IpProtocol::Udp, b)
        }
        L4Kind::Echo => {
            let mut b = vec![0u8; 16];
            let (ty, proto) = match l3 {
                L3Kind::V4 => (8, IpProtocol::Icmp),
                L3Kind::V6 => (128, IpProtocol::Icmpv6),
            };
            b[0] = ty;
            b[4..6].copy_from_slice(&seed.to_be_bytes());
            (proto, b)
        }
    }
}

fn ip_packet(l3: L3Kind, protocol: IpProtocol, l4: &[u8], seed: u16) -> (EtherType, Vec<u8>) {
    match l3 {
        L3Kind::V4 => {
            let repr = ipv4::Repr {
                src_addr: Ipv4Addr::new(10, 0, (seed >> 8) as u8, seed as u8),
                dst_addr: Ipv4Addr::new(10, 1, 0, 1),
                next_header: protocol,
                payload_len: l4.len() as u16,
                hop_limit: 64,
                dscp: 0,
                ecn: 0,
                ident: seed,
                dont_frag: true,
                more_frags: false,
                frag_offset: 0,
            };
            let mut b = vec![0u8; 20 + l4.len()];
            repr.emit(&mut ipv4::Packet::new_unchecked(&mut b[..]));
            b[20..].copy_from_slice(l4);
            (EtherType::Ipv4, b)
        }
        L3Kind::V6 => {
            let repr = ipv6::Repr {
                src_addr: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, seed),
                dst_addr: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, 1),
                next_header: protocol,
                payload_len: l4.len() as u16,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: u32::from(seed),
            };
            let mut b = vec![0u8; 40 + l4.len()];
            repr.emit(&mut ipv6::Packet::new_unchecked(&mut b[..]));
            b[40..].copy_from_slice(l4);
            (EtherType::Ipv6, b)
        }
    }
}

/// An Ethernet frame with `tags` VLAN tags (0, 1 = 802.1Q, 2 = QinQ) around `l3` carrying `l4`.
pub fn frame(tags: usize, l3: L3Kind, l4: L4Kind, seed: u16) -> Vec<u8> {
    let (protocol, l4b) = l4_bytes(l4, l3, seed);
    let (ethertype, l3b) = ip_packet(l3, protocol, &l4b, seed);
    ethernet_frame(tags, ethertype, &l3b, seed)
}

fn ethernet_frame(tags: usize, ethertype: EtherType, payload: &[u8], seed: u16) -> Vec<u8> {
    let c_tag = Tag {
        tpid: EtherType::Vlan,
        pcp: 0,
        dei: false,
        vid: 100 + (seed & 0xff),
    };
    let s_tag = Tag {
        tpid: EtherType::QinQ,
        pcp: 3,
        dei: false,
        vid: 10,
    };
    let (outer_tag, inner_tag) = match tags {
        0 => (None, None),
        1 => (Some(c_tag), None),
        _ => (Some(s_tag), Some(c_tag)),
    };
    let repr = ethernet::Repr {
        src_addr: Address([2, 0, 0, 0, (seed >> 8) as u8, seed as u8]),
        dst_addr: Address([2, 0, 0, 0, 0, 1]),
        outer_tag,
        inner_tag,
        ethertype,
    };
    let mut b = vec![0u8; repr.buffer_len() + payload.len()];
    repr.emit(&mut ethernet::Frame::new_unchecked(&mut b[..]));
    b[repr.buffer_len()..].copy_from_slice(payload);
    b
}

/// `inner` encapsulated in Ethernet/IPv4/UDP:4789/VXLAN (VNI `vni`), as a VTEP receives it.
pub fn vxlan_frame(inner: &[u8], vni: u32, seed: u16) -> Vec<u8> {
    let mut v = vec![0u8; 8 + 8 + inner.len()];
    v[0..2].copy_from_slice(&(49152 + seed).to_be_bytes());
    v[2..4].copy_from_slice(&vxlan::PORT.to_be_bytes());
    let udp_len = v.len() as u16;
    v[4..6].copy_from_slice(&udp_len.to_be_bytes());
    vxlan::Repr { vni, gbp: None }.emit(&mut vxlan::Packet::new_unchecked(&mut v[8..16]));
    v[16..].copy_from_slice(inner);
    let (ethertype, l3b) = ip_packet(L3Kind::V4, IpProtocol::Udp, &v, seed);
    ethernet_frame(0, ethertype, &l3b, seed)
}

/// The benchmark mix: 16 frames of pod and overlay traffic.
pub fn mixed_frames() -> Vec<Vec<u8>> {
    let tcp = L4Kind::Tcp {
        options: 12,
        data: 100,
    };
    let syn = L4Kind::Tcp {
        options: 20,
        data: 0,
    };
    let udp = L4Kind::Udp { data: 64 };
    let mut frames = vec![
        frame(0, L3Kind::V4, tcp, 1),
        frame(0, L3Kind::V4, syn, 2),
        frame(0, L3Kind::V4, udp, 3),
        frame(0, L3Kind::V4, L4Kind::Echo, 4),
        frame(0, L3Kind::V6, tcp, 5),
        frame(0, L3Kind::V6, udp, 6),
        frame(0, L3Kind::V6, L4Kind::Echo, 7),
        frame(1, L3Kind::V4, tcp, 8),
        frame(1, L3Kind::V6, udp, 9),
        frame(2, L3Kind::V4, udp, 10),
        frame(2, L3Kind::V6, tcp, 11),
        frame(0, L3Kind::V4, tcp, 12),
    ];
    for (i, inner) in [frame(0, L3Kind::V4, tcp, 13), frame(0, L3Kind::V6, udp, 14)]
        .iter()
        .enumerate()
    {
        frames.push(vxlan_frame(inner, 0x1000 + i as u32, 15 + i as u16));
    }
    frames.push(frame(0, L3Kind::V4, udp, 17));
    frames.push(frame(1, L3Kind::V4, L4Kind::Echo, 18));
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bench_frame_parses() {
        let frames = mixed_frames();
        assert_eq!(frames.len(), 16);
        let mut vxlan = 0;
        for f in &frames {
            let h = podswitch_wire::parse_frame(f).unwrap();
            assert!(h.ip().is_some());
            assert_ne!(h.l4, podswitch_wire::frame::L4::None);
            if let Some(m) = h.vxlan {
                vxlan += 1;
                let inner = podswitch_wire::parse_frame(&f[usize::from(m.inner_offset)..]).unwrap();
                assert_ne!(inner.l4, podswitch_wire::frame::L4::None);
            }
        }
        assert_eq!(vxlan, 2);
    }
}
