#![no_main]
//! parse_frame: (a) never panics, offsets are ordered and inside the frame, and every protocol
//! module's checked view and Repr accept what parse_frame accepted, with the same fields;
//! (b) rebuilding the Ethernet header (and an option-less IPv4 or the IPv6 fixed header) from the
//! parsed values and parsing again gives identical `Headers`; (c) etherparse agrees on MACs, VLAN
//! IDs, IP addresses, protocol, fragment state, ports, TCP sequence numbers and lengths when both
//! accept. Legitimate disagreements: etherparse also walks 0x9100 and MACsec tags (skipped), does
//! not know SCTP and stops at fragments (no transport: skipped), and accepts frames we refuse (bad
//! IPv4 checksum — not checked under cfg(fuzzing) anyway —, IPv4 reserved flag, VLAN stacks
//! deeper than two, ICMPv4 inside IPv6 and vice versa; it also walks IPsec AH and reads L4 out
//! of non-first IPv6 fragments), so the comparison is one-way: only when we accept.
use core::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use podswitch_wire::ethernet::{self, EtherType, Tag};
use podswitch_wire::frame::{Fragment, Headers, L3, L4};
use podswitch_wire::{arp, ipv4, ipv6, parse_frame};

fn modules_agree(bytes: &[u8], h: &Headers) {
    let eth = ethernet::Frame::new_checked(bytes).expect("ethernet view");
    let e = ethernet::Repr::parse(&eth).expect("ethernet repr");
    assert_eq!((e.src_addr, e.dst_addr), (h.src_mac, h.dst_mac));
    assert_eq!(u16::from(e.ethertype), h.ethertype);
    assert_eq!(usize::from(h.l3_offset), e.payload_offset());
    let l3 = &bytes[usize::from(h.l3_offset)..];
    match h.l3 {
        L3::Arp(a) => {
            assert_eq!(
                arp::Repr::parse(&arp::Packet::new_checked(l3).expect("arp")).expect("arp"),
                a
            );
        }
        L3::Ip(ip) if h.ethertype == 0x0800 => {
            let r = ipv4::Repr::parse(&ipv4::Packet::new_checked(l3).expect("v4")).expect("v4");
            assert_eq!(
                (IpAddr::V4(r.src_addr), IpAddr::V4(r.dst_addr)),
                (ip.src, ip.dst)
            );
            assert_eq!((r.next_header, r.hop_limit), (ip.protocol, ip.ttl));
            assert_eq!(
                (r.dscp, r.ecn, r.frag_offset),
                (ip.dscp, ip.ecn, ip.frag_offset)
            );
        }
        L3::Ip(ip) => {
            let p = ipv6::Packet::new_checked(l3).expect("v6");
            let r = ipv6::Repr::parse(&p).expect("v6");
            assert_eq!(
                (IpAddr::V6(r.src_addr), IpAddr::V6(r.dst_addr)),
                (ip.src, ip.dst)
            );
            let up = p.upper_layer().expect("walk");
            assert_eq!(up.protocol, ip.protocol);
            assert_eq!(
                up.offset + usize::from(h.l3_offset),
                usize::from(h.l4_offset)
            );
        }
        L3::None => assert!(![0x0800, 0x86dd, 0x0806].contains(&h.ethertype)),
    }
}

fn etherparse_agrees(bytes: &[u8], h: &Headers) {
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
    if let L3::Ip(ip) = h.l3 {
        if ip.protocol == podswitch_wire::IpProtocol::Unknown(51) {
            return;
        }
    }
    let Ok(e) = etherparse::SlicedPacket::from_ethernet(bytes) else {
        return;
    };
    if let Some(etherparse::LinkSlice::Ethernet2(eth)) = &e.link {
        assert_eq!(
            (eth.source(), eth.destination()),
            (h.src_mac.0, h.dst_mac.0)
        );
    }
    let ids: Vec<u16> = e.vlan_ids().iter().map(|v| v.value()).collect();
    let ours: Vec<u16> = h.vlans().iter().map(|v| v.vid).collect();
    assert_eq!(ids, ours);
    match (&e.net, h.l3) {
        (Some(etherparse::NetSlice::Ipv4(ip)), L3::Ip(o)) => {
            assert_eq!(IpAddr::V4(ip.header().source_addr()), o.src);
            assert_eq!(IpAddr::V4(ip.header().destination_addr()), o.dst);
            assert_eq!(ip.payload_ip_number().0, u8::from(o.protocol));
            assert_eq!(ip.is_payload_fragmented(), o.fragment != Fragment::None);
        }
        (Some(etherparse::NetSlice::Ipv6(ip)), L3::Ip(o)) => {
            assert_eq!(IpAddr::V6(ip.header().source_addr()), o.src);
            assert_eq!(IpAddr::V6(ip.header().destination_addr()), o.dst);
            // etherparse walks on into a non-first fragment's data (RFC 8200 §4.5: not headers).
            if o.fragment != Fragment::Later {
                assert_eq!(ip.payload().ip_number.0, u8::from(o.protocol));
            }
        }
        (Some(etherparse::NetSlice::Arp(a)), L3::Arp(o)) => {
            assert_eq!(a.operation().0, u16::from(o.operation));
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
        // etherparse decodes protocol 1 in IPv6 as ICMPv4 and 58 in IPv4 as ICMPv6; we leave a
        // cross-family ICMP as an unparsed protocol.
        (
            Some(etherparse::TransportSlice::Icmpv4(_) | etherparse::TransportSlice::Icmpv6(_)),
            L4::None,
        ) => {}
        (None, _) => {}
        (t, l4) => panic!("disagree: {t:?} vs {l4:?}"),
    }
}

/// Rebuilds L2 (and L3 where it has no options) from parsed values and re-parses.
fn rebuild_agrees(bytes: &[u8], h: &Headers) {
    let tag = |i: usize, tpid| {
        let v = h.vlans[i];
        Tag {
            tpid,
            pcp: v.pcp,
            dei: v.dei,
            vid: v.vid,
        }
    };
    let (outer_tag, inner_tag) = match h.vlan_count {
        0 => (None, None),
        1 => (Some(tag(0, EtherType::Vlan)), None),
        _ => (Some(tag(0, EtherType::QinQ)), Some(tag(1, EtherType::Vlan))),
    };
    let repr = ethernet::Repr {
        src_addr: h.src_mac,
        dst_addr: h.dst_mac,
        outer_tag,
        inner_tag,
        ethertype: EtherType::from(h.ethertype),
    };
    let mut buf = bytes.to_vec();
    repr.emit(&mut ethernet::Frame::new_unchecked(&mut buf[..]));
    let l3 = usize::from(h.l3_offset);
    if h.ethertype == 0x0800 {
        let p = ipv4::Packet::new_unchecked(&bytes[l3..]);
        if p.header_len() == 20 {
            let r = ipv4::Repr::parse(&p).expect("accepted");
            r.emit(&mut ipv4::Packet::new_unchecked(&mut buf[l3..]));
        }
    } else if h.ethertype == 0x86dd {
        let r = ipv6::Repr::parse(&ipv6::Packet::new_unchecked(&bytes[l3..])).expect("accepted");
        r.emit(&mut ipv6::Packet::new_unchecked(&mut buf[l3..]));
    }
    assert_eq!(parse_frame(&buf).as_ref(), Ok(h));
}

fuzz_target!(|data: &[u8]| {
    let Ok(h) = parse_frame(data) else { return };
    assert!(h.l3_offset <= h.l4_offset && h.l4_offset <= h.payload_offset);
    assert!(usize::from(h.payload_offset) <= data.len());
    modules_agree(data, &h);
    etherparse_agrees(data, &h);
    rebuild_agrees(data, &h);
    if let Some(m) = h.vxlan {
        assert_eq!(
            usize::from(m.inner_offset),
            usize::from(h.payload_offset) + 8
        );
        if let Ok(inner) = parse_frame(&data[usize::from(m.inner_offset)..]) {
            modules_agree(&data[usize::from(m.inner_offset)..], &inner);
        }
    }
});
