//! Interoperability with the Linux kernel's vxlan device: the frames in
//! `configs/captures/pods.pcap` (VNI 42 between underlay 10.77.0.1 and 10.77.0.2, pods
//! 10.77.42.1 and 10.77.42.2) decapsulate on the receiving node, and our encapsulation of the same
//! inner frame reproduces the kernel's outer header in every field that does not legitimately
//! differ (UDP source port, IPv4 identification/DF, checksums).

use std::net::{IpAddr, Ipv4Addr};

use podswitch_overlay::{Endpoint, LocalVtep, Overlay, Vtep};
use podswitch_wire::ethernet::Address;
use podswitch_wire::frame::L4;
use podswitch_wire::{ipv4, parse_frame};

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../configs/captures/pods.pcap"
);

/// The frames of a classic little-endian pcap file (24-byte global header, 16-byte record headers).
fn frames(bytes: &[u8]) -> Vec<&[u8]> {
    assert_eq!(
        &bytes[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian microsecond pcap"
    );
    let linktype = u32::from_le_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!(linktype, 1, "Ethernet link type");
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let incl = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let orig = u32::from_le_bytes(bytes[at + 12..at + 16].try_into().unwrap()) as usize;
        assert_eq!(incl, orig, "capture not truncated");
        out.push(&bytes[at + 16..at + 16 + incl]);
        at += 16 + incl;
    }
    assert_eq!(at, bytes.len());
    out
}

fn underlay(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 77, 0, d))
}

fn pod(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 77, 42, d))
}

fn mac(d: u8) -> Address {
    Address([2, 0, 0, 0, 0, d])
}

/// Node `me` (1 or 2) with the other node as VTEP id 1 on VNI 42 and the other pod behind it.
fn node(me: u8) -> Overlay {
    let peer = 3 - me;
    let mut o = Overlay::new(LocalVtep::new(underlay(me), mac(me), 1500, &[42])).unwrap();
    o.add_vtep(Vtep {
        id: 1,
        ip: underlay(peer),
        next_hop_mac: mac(peer),
        vni: 42,
        gbp: false,
    })
    .unwrap();
    let pod_mac = if peer == 1 {
        Address([0x86, 0xf0, 0xe2, 0xaf, 0xb8, 0xd3])
    } else {
        Address([0xe6, 0x81, 0x74, 0x2f, 0x07, 0xed])
    };
    o.insert_endpoint(
        pod(peer),
        Endpoint {
            vtep: 1,
            mac: pod_mac,
        },
    )
    .unwrap();
    o
}

#[test]
fn kernel_vxlan_frames_decapsulate_and_re_encapsulate_identically() {
    let bytes = std::fs::read(CAPTURE).expect("capture present");
    let nodes = [node(1), node(2)];
    let mut decapsulated = 0;
    let mut pod_ip_frames = 0;
    for f in frames(&bytes) {
        let h = parse_frame(f).expect("every captured frame parses");
        let Some(marker) = h.vxlan else {
            continue;
        };
        let ip = h.ip().unwrap();
        let receiver = if ip.dst == underlay(1) {
            &nodes[0]
        } else {
            &nodes[1]
        };
        let sender = if ip.dst == underlay(1) {
            &nodes[1]
        } else {
            &nodes[0]
        };
        let d = receiver.decap(f, &h).expect("kernel frame accepted");
        assert_eq!((d.vni, d.vtep, d.gbp), (42, 1, None));
        assert_eq!(d.inner_offset, usize::from(marker.inner_offset));
        assert_eq!(d.inner_offset + d.inner_len, f.len());
        decapsulated += 1;

        // The other node would not accept it (not addressed to it).
        assert!(sender.decap(f, &h).is_err());

        let inner = &f[d.inner_offset..];
        let ih = parse_frame(inner).expect("inner frame parses");
        if let Some(iip) = ih.ip().filter(|i| i.src.is_ipv4()) {
            // Anti-spoofing: the pod behind the sending VTEP owns its address; nobody else's.
            assert!(receiver.owns(d.vtep, iip.src), "{:?}", iip.src);
            assert!(!receiver.owns(d.vtep, iip.dst));
            assert!(matches!(ih.l4, L4::Icmpv4(_)));
            pod_ip_frames += 1;
        }

        // Re-encapsulate the same inner frame from the sending node.
        let mut buf = vec![0u8; 64 + inner.len()];
        buf[64..].copy_from_slice(inner);
        let udp = match h.l4 {
            L4::Udp(u) => u,
            other => panic!("not UDP: {other:?}"),
        };
        let s = sender
            .encap(
                d.vtep,
                &mut buf,
                64,
                inner.len(),
                u32::from(udp.src_port),
                ip.dscp,
                None,
            )
            .unwrap();
        let ours = &buf[s..];
        assert_eq!(ours.len(), f.len());
        assert_eq!(&ours[..14], &f[..14], "Ethernet");
        assert_eq!(&ours[14..16], &f[14..16], "version, IHL, TOS");
        assert_eq!(&ours[16..18], &f[16..18], "total length");
        assert_eq!(&ours[23..24], &f[23..24], "protocol");
        assert_eq!(&ours[26..34], &f[26..34], "addresses");
        assert!(
            ipv4::Packet::new_checked(&ours[14..])
                .unwrap()
                .verify_checksum()
        );
        assert_eq!(&ours[36..40], &f[36..40], "UDP destination port and length");
        assert_eq!(&ours[42..], &f[42..], "VXLAN header and inner frame");
    }
    assert_eq!(decapsulated, 17);
    assert_eq!(pod_ip_frames, 4);
}
