//! End-to-end tests of the pipeline in memory. Outputs are checked by independent parsers
//! (etherparse, smoltcp, tshark), never by our own wire crate.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use etherparse::{
    Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type, NetHeaders, PacketHeaders, TransportHeader,
};
use podswitch_conntrack::Instant;
use podswitch_datapath::testing::frames::{self, IpFrame, tcp_flags};
use podswitch_datapath::testing::{
    GATEWAY_V4, GATEWAY_V6, LOCAL_VTEP, LOCAL_VTEP_MAC, Pod, ROUTER_MAC, TestNode, UPLINK, VNI,
};
use podswitch_datapath::{Disposition, DropReason, GroupLabel};
use podswitch_overlay::Vtep;
use podswitch_policy::{EndpointKind, Protocol};
use podswitch_wire::ethernet::Address;

const A1: u32 = 1;
const A2: u32 = 2;
const B1: u32 = 3;
const A1_MAC: Address = Address([0x0a, 0, 0, 0, 0, 0x11]);
const A2_MAC: Address = Address([0x0a, 0, 0, 0, 0, 0x12]);
const B1_MAC: Address = Address([0x0a, 0, 0, 0, 0, 0x13]);
const R1_MAC: Address = Address([0x0a, 0, 0, 0, 0, 0x21]);
const R2_MAC: Address = Address([0x0a, 0, 0, 0, 0, 0x31]);
const VTEP1_NH: Address = Address([0x02, 0, 0, 0, 0x02, 0x01]);
const VTEP1: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
const VTEP2: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 3);

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse().expect("ipv4"))
}
fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse().expect("ipv6"))
}
fn a1() -> IpAddr {
    v4("10.0.0.11")
}
fn a2() -> IpAddr {
    v4("10.0.0.12")
}
fn b1() -> IpAddr {
    v4("10.0.1.13")
}
fn r1() -> IpAddr {
    v4("10.0.2.21")
}
fn r2() -> IpAddr {
    v4("10.0.3.31")
}

const POLICY_B: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: b}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-db, namespace: b}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: a}}
    ports:
    - port: db
";

const DENY_A: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: a}
spec:
  podSelector: {}
  policyTypes: [Ingress]
";

fn node_with(yaml: &[&str]) -> TestNode {
    let mut b = TestNode::builder()
        .namespace("a", &[])
        .namespace("b", &[])
        .pod(Pod::new("a", "a1", A1, A1_MAC, &[a1(), v6("fd00::11")]).label("app", "web"))
        .pod(Pod::new("a", "a2", A2, A2_MAC, &[a2()]).label("app", "web"))
        .pod(
            Pod::new("b", "b1", B1, B1_MAC, &[b1(), v6("fd00::13")])
                .label("app", "db")
                .named_port("db", Protocol::Tcp, 5432)
                .mtu(1400),
        )
        .vtep(Vtep {
            id: 1,
            ip: IpAddr::V4(VTEP1),
            next_hop_mac: VTEP1_NH,
            vni: VNI,
            gbp: false,
        })
        .vtep(Vtep {
            id: 2,
            ip: IpAddr::V4(VTEP2),
            next_hop_mac: Address([0x02, 0, 0, 0, 0x02, 0x02]),
            vni: VNI,
            gbp: false,
        })
        .remote(
            Pod::new("a", "r1", 0, R1_MAC, &[r1()]).label("app", "web"),
            EndpointKind::Pod,
            1,
        )
        .remote(Pod::new("b", "r2", 0, R2_MAC, &[r2()]), EndpointKind::Vm, 2);
    for y in yaml {
        b = b.yaml(y);
    }
    b.build().expect("node")
}

fn node() -> TestNode {
    node_with(&[])
}

fn t0() -> Instant {
    Instant::from_secs(10)
}

/// Parses with etherparse and checks every checksum it can (IPv4 header, TCP, UDP, ICMP, ICMPv6).
fn parse_checked(frame: &[u8]) -> PacketHeaders<'_> {
    let h = PacketHeaders::from_ethernet_slice(frame).expect("etherparse parses the frame");
    let payload = h.payload.slice();
    match (&h.net, &h.transport) {
        (Some(NetHeaders::Ipv4(ip, _)), t) => {
            assert_eq!(
                ip.header_checksum,
                ip.calc_header_checksum(),
                "IPv4 header checksum"
            );
            match t {
                Some(TransportHeader::Tcp(tcp)) => assert_eq!(
                    tcp.checksum,
                    tcp.calc_checksum_ipv4(ip, payload).expect("len"),
                    "TCP checksum"
                ),
                Some(TransportHeader::Udp(u)) if u.checksum != 0 => assert_eq!(
                    u.checksum,
                    u.calc_checksum_ipv4(ip, payload).expect("len"),
                    "UDP checksum"
                ),
                Some(TransportHeader::Icmpv4(i)) => assert_eq!(
                    i.checksum,
                    Icmpv4Header::with_checksum(i.icmp_type.clone(), payload).checksum,
                    "ICMPv4 checksum"
                ),
                _ => {}
            }
        }
        (Some(NetHeaders::Ipv6(ip, _)), t) => match t {
            Some(TransportHeader::Tcp(tcp)) => assert_eq!(
                tcp.checksum,
                tcp.calc_checksum_ipv6(ip, payload).expect("len"),
                "TCP checksum"
            ),
            Some(TransportHeader::Icmpv6(i)) => assert_eq!(
                i.checksum,
                Icmpv6Header::with_checksum(i.icmp_type, ip.source, ip.destination, payload)
                    .expect("len")
                    .checksum,
                "ICMPv6 checksum"
            ),
            _ => {}
        },
        _ => {}
    }
    h
}

fn eth(h: &PacketHeaders<'_>) -> (Address, Address) {
    match &h.link {
        Some(etherparse::LinkHeader::Ethernet2(e)) => (Address(e.source), Address(e.destination)),
        other => panic!("not Ethernet II: {other:?}"),
    }
}

fn ipv4(h: &PacketHeaders<'_>) -> etherparse::Ipv4Header {
    match &h.net {
        Some(NetHeaders::Ipv4(ip, _)) => ip.clone(),
        other => panic!("not IPv4: {other:?}"),
    }
}

fn ipv6(h: &PacketHeaders<'_>) -> etherparse::Ipv6Header {
    match &h.net {
        Some(NetHeaders::Ipv6(ip, _)) => ip.clone(),
        other => panic!("not IPv6: {other:?}"),
    }
}

fn dropped(node: &TestNode) -> DropReason {
    match node.disposition() {
        Disposition::Drop(r) => r,
        d => panic!("expected a drop, got {d:?}"),
    }
}

fn syn(src_mac: Address, src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    IpFrame::tcp(
        src_mac,
        ROUTER_MAC,
        src,
        dst,
        sport,
        dport,
        tcp_flags::SYN,
        1000,
        0,
    )
    .build()
}

/// A full handshake a→b through the node; returns the outputs of the three segments.
fn handshake(
    node: &mut TestNode,
    (a_port, a_mac, a): (u32, Address, IpAddr),
    (b_port, b_mac, b): (u32, Address, IpAddr),
    dport: u16,
    now: Instant,
) -> [Vec<(u32, Vec<u8>)>; 3] {
    let s = node.inject(a_port, &syn(a_mac, a, b, 40000, dport), now);
    let sa = node.inject(
        b_port,
        &IpFrame::tcp(
            b_mac,
            ROUTER_MAC,
            b,
            a,
            dport,
            40000,
            tcp_flags::SYN | tcp_flags::ACK,
            5000,
            1001,
        )
        .build(),
        now,
    );
    let ack = node.inject(
        a_port,
        &IpFrame::tcp(
            a_mac,
            ROUTER_MAC,
            a,
            b,
            40000,
            dport,
            tcp_flags::ACK,
            1001,
            5001,
        )
        .build(),
        now,
    );
    [s, sa, ack]
}

fn data(src_mac: Address, src: IpAddr, dst: IpAddr, sport: u16, dport: u16, seq: u32) -> Vec<u8> {
    IpFrame::tcp(
        src_mac,
        ROUTER_MAC,
        src,
        dst,
        sport,
        dport,
        tcp_flags::ACK | tcp_flags::PSH,
        seq,
        5001,
    )
    .payload(10)
    .build()
}

// ---- ARP and ND ----------------------------------------------------------------------------

#[test]
fn arp_for_gateway_local_and_remote_endpoints_is_answered_with_the_router_mac() {
    let mut node = node();
    let sender = Ipv4Addr::new(10, 0, 0, 11);
    for target in [
        GATEWAY_V4,
        Ipv4Addr::new(10, 0, 1, 13),
        Ipv4Addr::new(10, 0, 2, 21),
    ] {
        let out = node.inject(A1, &frames::arp_request(A1_MAC, sender, target), t0());
        assert_eq!(node.disposition(), Disposition::Consumed);
        assert_eq!(out.len(), 1, "one reply for {target}");
        let (port, f) = &out[0];
        assert_eq!(*port, A1);
        // etherparse's view.
        let h = PacketHeaders::from_ethernet_slice(f).expect("etherparse");
        assert_eq!(eth(&h), (ROUTER_MAC, A1_MAC));
        let Some(NetHeaders::Arp(arp)) = &h.net else {
            panic!("not ARP: {:?}", h.net)
        };
        let arp = arp.try_eth_ipv4().expect("Ethernet/IPv4 ARP");
        assert_eq!(arp.operation, etherparse::ArpOperation::REPLY);
        assert_eq!(arp.sender_mac, ROUTER_MAC.0);
        assert_eq!(arp.sender_ipv4, target.octets());
        assert_eq!(arp.target_mac, A1_MAC.0);
        assert_eq!(arp.target_ipv4, sender.octets());
        // smoltcp's view.
        let eth = smoltcp::wire::EthernetFrame::new_checked(&f[..]).expect("smoltcp eth");
        let p = smoltcp::wire::ArpPacket::new_checked(eth.payload()).expect("smoltcp arp");
        let r = smoltcp::wire::ArpRepr::parse(&p).expect("smoltcp arp repr");
        let smoltcp::wire::ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            ..
        } = r
        else {
            panic!("unexpected {r:?}")
        };
        assert_eq!(operation, smoltcp::wire::ArpOperation::Reply);
        assert_eq!(source_hardware_addr.0, ROUTER_MAC.0);
        assert_eq!(source_protocol_addr.octets(), target.octets());
    }
    assert_eq!(node.stats().neighbor_replies, 3);
}

/// Each namespace owns a subnet whose first host is its pods' default gateway (IPAM hands it to
/// the CNI plugin); the router answers ARP for those gateways too, and only for declared ones.
#[test]
fn arp_for_a_namespace_subnet_gateway_is_answered_once_declared() {
    let subnet_gw = Ipv4Addr::new(10, 0, 7, 1);
    let sender = Ipv4Addr::new(10, 0, 0, 11);
    let request = frames::arp_request(A1_MAC, sender, subnet_gw);

    let mut plain = node();
    assert!(plain.inject(A1, &request, t0()).is_empty());
    assert_eq!(dropped(&plain), DropReason::ArpUnknownTarget);

    let mut node = TestNode::builder()
        .namespace("a", &[])
        .pod(Pod::new("a", "a1", A1, A1_MAC, &[a1()]))
        .subnet_gateway(IpAddr::V4(subnet_gw))
        .build()
        .expect("node");
    let out = node.inject(A1, &request, t0());
    assert_eq!(node.disposition(), Disposition::Consumed);
    assert_eq!(out.len(), 1);
    let h = PacketHeaders::from_ethernet_slice(&out[0].1).expect("etherparse");
    let Some(NetHeaders::Arp(arp)) = &h.net else {
        panic!("not ARP: {:?}", h.net)
    };
    let arp = arp.try_eth_ipv4().expect("Ethernet/IPv4 ARP");
    assert_eq!(arp.operation, etherparse::ArpOperation::REPLY);
    assert_eq!(arp.sender_mac, ROUTER_MAC.0);
    assert_eq!(arp.sender_ipv4, subnet_gw.octets());
}

#[test]
fn arp_for_unknown_or_spoofed_senders_is_dropped_and_counted() {
    let mut node = node();
    let me = Ipv4Addr::new(10, 0, 0, 11);
    let out = node.inject(
        A1,
        &frames::arp_request(A1_MAC, me, Ipv4Addr::new(10, 9, 9, 9)),
        t0(),
    );
    assert!(out.is_empty());
    assert_eq!(dropped(&node), DropReason::ArpUnknownTarget);
    // Sender IP of another pod.
    let out = node.inject(
        A1,
        &frames::arp_request(A1_MAC, Ipv4Addr::new(10, 0, 0, 12), GATEWAY_V4),
        t0(),
    );
    assert!(out.is_empty());
    assert_eq!(dropped(&node), DropReason::SpoofedArp);
    // Sender MAC of another pod.
    let out = node.inject(A1, &frames::arp_request(A2_MAC, me, GATEWAY_V4), t0());
    assert!(out.is_empty());
    assert_eq!(dropped(&node), DropReason::SpoofedArp);
    // RFC 5227 probe: never answered.
    let out = node.inject(
        A1,
        &frames::arp_request(A1_MAC, Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(10, 0, 0, 11)),
        t0(),
    );
    assert!(out.is_empty());
    assert_eq!(dropped(&node), DropReason::ArpNotRequest);
    let s = node.stats();
    assert_eq!(s.port(A1).dropped(DropReason::SpoofedArp), 2);
    assert_eq!(s.port(A1).dropped(DropReason::ArpUnknownTarget), 1);
    assert_eq!(s.port(A1).rx_packets, 4);
    assert_eq!(s.port(A1).tx_packets, 0);
}

#[test]
fn neighbor_solicitation_is_answered_with_a_valid_advertisement() {
    let mut node = node();
    let me: Ipv6Addr = "fd00::11".parse().expect("v6");
    let ll: Ipv6Addr = "fe80::811:ff:fe00:11".parse().expect("v6");
    for (src, target, router) in [
        (me, GATEWAY_V6, true),
        (ll, GATEWAY_V6, true),
        (me, "fd00::13".parse().expect("v6"), false),
    ] {
        let out = node.inject(A1, &frames::neighbor_solicit(A1_MAC, src, target), t0());
        assert_eq!(out.len(), 1, "NA for {target} from {src}");
        let (port, f) = &out[0];
        assert_eq!(*port, A1);
        let h = parse_checked(f);
        assert_eq!(eth(&h), (ROUTER_MAC, A1_MAC));
        let ip = ipv6(&h);
        assert_eq!(ip.hop_limit, 255);
        assert_eq!(ip.destination, src.octets());
        // smoltcp validates the checksum and decodes the NDISC message.
        let e = smoltcp::wire::EthernetFrame::new_checked(&f[..]).expect("eth");
        let ipp = smoltcp::wire::Ipv6Packet::new_checked(e.payload()).expect("ipv6");
        let icmp = smoltcp::wire::Icmpv6Packet::new_checked(ipp.payload()).expect("icmpv6");
        let repr = smoltcp::wire::Icmpv6Repr::parse(
            &ipp.src_addr(),
            &ipp.dst_addr(),
            &icmp,
            &smoltcp::phy::ChecksumCapabilities::default(),
        )
        .expect("valid ICMPv6");
        let smoltcp::wire::Icmpv6Repr::Ndisc(smoltcp::wire::NdiscRepr::NeighborAdvert {
            flags,
            target_addr,
            lladdr,
        }) = repr
        else {
            panic!("not an NA: {repr:?}")
        };
        assert_eq!(target_addr.octets(), target.octets());
        assert!(flags.contains(smoltcp::wire::NdiscNeighborFlags::SOLICITED));
        assert_eq!(
            flags.contains(smoltcp::wire::NdiscNeighborFlags::ROUTER),
            router
        );
        assert_eq!(
            lladdr.map(|l| l.as_bytes().to_vec()),
            Some(ROUTER_MAC.0.to_vec())
        );
    }
    // Unknown target, DAD probe.
    let out = node.inject(
        A1,
        &frames::neighbor_solicit(A1_MAC, me, "fd00::99".parse().expect("v6")),
        t0(),
    );
    assert!(out.is_empty());
    assert_eq!(dropped(&node), DropReason::NdUnknownTarget);
    let out = node.inject(
        A1,
        &frames::neighbor_solicit(A1_MAC, Ipv6Addr::UNSPECIFIED, me),
        t0(),
    );
    assert!(out.is_empty());
    // A DAD probe (unspecified source) with a source link-layer option is invalid (RFC 4861
    // §7.1.1); either way it is never answered.
    assert_eq!(dropped(&node), DropReason::NdInvalid);
}

// ---- forwarding --------------------------------------------------------------------------------

#[test]
fn local_forwarding_rewrites_macs_and_decrements_ttl_with_valid_checksums() {
    let mut node = node();
    let f = IpFrame::tcp(
        A1_MAC,
        ROUTER_MAC,
        a1(),
        b1(),
        40000,
        5432,
        tcp_flags::SYN,
        1000,
        0,
    )
    .ttl(17)
    .build();
    let out = node.inject(A1, &f, t0());
    assert_eq!(out.len(), 1);
    let (port, g) = &out[0];
    assert_eq!(*port, B1);
    let h = parse_checked(g);
    assert_eq!(eth(&h), (ROUTER_MAC, B1_MAC));
    let ip = ipv4(&h);
    assert_eq!(ip.time_to_live, 16);
    assert_eq!(ip.source, [10, 0, 0, 11]);
    assert_eq!(ip.destination, [10, 0, 1, 13]);
    assert_eq!(g.len(), f.len());
    // Everything past the TTL/checksum is untouched.
    assert_eq!(g[34..], f[34..]);
}

#[test]
fn ipv6_local_forwarding_decrements_the_hop_limit() {
    let mut node = node();
    let f = IpFrame::tcp(
        A1_MAC,
        ROUTER_MAC,
        v6("fd00::11"),
        v6("fd00::13"),
        40000,
        5432,
        tcp_flags::SYN,
        1000,
        0,
    )
    .build();
    let out = node.inject(A1, &f, t0());
    assert_eq!(out.len(), 1, "{:?}", node.disposition());
    let h = parse_checked(&out[0].1);
    assert_eq!(out[0].0, B1);
    assert_eq!(eth(&h), (ROUTER_MAC, B1_MAC));
    assert_eq!(ipv6(&h).hop_limit, 63);
}

#[test]
fn unknown_destination_and_wrong_router_mac_are_counted_drops() {
    let mut node = node();
    let out = node.inject(A1, &syn(A1_MAC, a1(), v4("10.77.0.1"), 1, 80), t0());
    assert!(out.is_empty());
    assert_eq!(dropped(&node), DropReason::UnknownDestination);
    let f = IpFrame::tcp(A1_MAC, B1_MAC, a1(), b1(), 1, 80, tcp_flags::SYN, 1, 0).build();
    assert!(node.inject(A1, &f, t0()).is_empty());
    assert_eq!(dropped(&node), DropReason::NotRouterMac);
    assert!(
        node.inject(A1, &syn(A1_MAC, a1(), v4("10.0.0.1"), 1, 80), t0())
            .is_empty()
    );
    assert_eq!(dropped(&node), DropReason::ToRouter);
    assert!(
        node.inject(77, &syn(A1_MAC, a1(), b1(), 1, 80), t0())
            .is_empty()
    );
    assert_eq!(dropped(&node), DropReason::UnknownInputPort);
    assert!(node.inject(A1, &[0u8; 10], t0()).is_empty());
    assert_eq!(dropped(&node), DropReason::Malformed);
    let s = node.stats();
    assert_eq!(s.port(A1).dropped(DropReason::UnknownDestination), 1);
    assert_eq!(s.port(77).dropped(DropReason::UnknownInputPort), 1);
}

#[test]
fn anti_spoofing_drops_foreign_source_mac_and_ip() {
    let mut node = node();
    assert!(
        node.inject(A1, &syn(A2_MAC, a1(), b1(), 1, 5432), t0())
            .is_empty()
    );
    assert_eq!(dropped(&node), DropReason::SpoofedMac);
    assert!(
        node.inject(A1, &syn(A1_MAC, a2(), b1(), 1, 5432), t0())
            .is_empty()
    );
    assert_eq!(dropped(&node), DropReason::SpoofedIp);
    // The same frames from their real owner pass.
    assert_eq!(
        node.inject(A2, &syn(A2_MAC, a2(), b1(), 1, 5432), t0())
            .len(),
        1
    );
    let s = node.stats();
    assert_eq!(s.port(A1).dropped(DropReason::SpoofedMac), 1);
    assert_eq!(s.port(A1).dropped(DropReason::SpoofedIp), 1);
}

/// Splits a VXLAN frame with etherparse: outer headers, VNI, inner frame.
fn split_vxlan(f: &[u8]) -> (PacketHeaders<'_>, u32, &[u8]) {
    let outer = parse_checked(f);
    let Some(TransportHeader::Udp(u)) = &outer.transport else {
        panic!("outer not UDP: {:?}", outer.transport)
    };
    assert_eq!(u.destination_port, 4789);
    assert!(
        u.source_port >= 49152,
        "source port from the flow hash (RFC 7348 §5)"
    );
    let vx = outer.payload.slice();
    assert_eq!(vx[0], 0x08, "I flag");
    let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
    (outer, vni, &vx[8..])
}

#[test]
fn remote_destination_is_vxlan_encapsulated_to_its_vtep() {
    let mut node = node();
    let f = syn(A1_MAC, a1(), r1(), 40000, 80);
    let out = node.inject(A1, &f, t0());
    assert_eq!(out.len(), 1, "{:?}", node.disposition());
    let (port, g) = &out[0];
    assert_eq!(*port, UPLINK);
    let (outer, vni, inner) = split_vxlan(g);
    assert_eq!(eth(&outer), (LOCAL_VTEP_MAC, VTEP1_NH));
    let oip = ipv4(&outer);
    assert_eq!(oip.source, LOCAL_VTEP.octets());
    assert_eq!(oip.destination, VTEP1.octets());
    assert_eq!(vni, VNI);
    let ih = parse_checked(inner);
    assert_eq!(eth(&ih), (ROUTER_MAC, R1_MAC));
    let iip = ipv4(&ih);
    assert_eq!(iip.time_to_live, 63);
    assert_eq!(iip.destination, [10, 0, 2, 21]);
}

#[test]
fn vxlan_from_the_owning_vtep_is_decapsulated_and_delivered() {
    let mut node = node();
    let inner = syn(R1_MAC, r1(), a1(), 40000, 80);
    let outer = frames::vxlan_v4(
        VTEP1_NH,
        LOCAL_VTEP_MAC,
        VTEP1,
        LOCAL_VTEP,
        VNI,
        50000,
        &inner,
    );
    let out = node.inject(UPLINK, &outer, t0());
    assert_eq!(out.len(), 1, "{:?}", node.disposition());
    let (port, g) = &out[0];
    assert_eq!(*port, A1);
    let h = parse_checked(g);
    assert_eq!(eth(&h), (ROUTER_MAC, A1_MAC));
    assert_eq!(ipv4(&h).time_to_live, 63);
    assert_eq!(g.len(), inner.len());
    let s = node.stats();
    assert_eq!(s.port(UPLINK).rx_packets, 1);
    assert_eq!(
        s.port(2001).rx_packets,
        1,
        "counted on VTEP 1's tunnel port"
    );
}

#[test]
fn cross_vtep_spoofing_and_bad_outer_headers_are_dropped() {
    let mut node = node();
    // VTEP 2 claims to carry r1, which VTEP 1 owns.
    let inner = syn(R1_MAC, r1(), a1(), 40000, 80);
    let f = frames::vxlan_v4(
        VTEP1_NH,
        LOCAL_VTEP_MAC,
        VTEP2,
        LOCAL_VTEP,
        VNI,
        50000,
        &inner,
    );
    assert!(node.inject(UPLINK, &f, t0()).is_empty());
    assert_eq!(dropped(&node), DropReason::VxlanSpoofed);
    // Unknown VTEP, unknown VNI, plain traffic on the uplink.
    let f = frames::vxlan_v4(
        VTEP1_NH,
        LOCAL_VTEP_MAC,
        Ipv4Addr::new(192, 168, 0, 99),
        LOCAL_VTEP,
        VNI,
        50000,
        &inner,
    );
    assert!(node.inject(UPLINK, &f, t0()).is_empty());
    assert_eq!(dropped(&node), DropReason::VxlanUnknownVtep);
    let f = frames::vxlan_v4(
        VTEP1_NH,
        LOCAL_VTEP_MAC,
        VTEP1,
        LOCAL_VTEP,
        7,
        50000,
        &inner,
    );
    assert!(node.inject(UPLINK, &f, t0()).is_empty());
    assert_eq!(dropped(&node), DropReason::VxlanBadOuter);
    // A frame for another VTEP (flooded by the underlay) is not a bad outer header.
    let f = frames::vxlan_v4(VTEP1_NH, LOCAL_VTEP_MAC, VTEP1, VTEP2, VNI, 50000, &inner);
    assert!(node.inject(UPLINK, &f, t0()).is_empty());
    assert_eq!(dropped(&node), DropReason::VxlanNotLocal);
    assert!(node.inject(UPLINK, &inner, t0()).is_empty());
    assert_eq!(dropped(&node), DropReason::UplinkNotVxlan);
    let s = node.stats();
    assert_eq!(s.port(2002).dropped(DropReason::VxlanSpoofed), 1);
    assert_eq!(s.port(UPLINK).dropped(DropReason::UplinkNotVxlan), 1);
    assert_eq!(s.port(UPLINK).dropped(DropReason::VxlanNotLocal), 1);
}

// ---- ICMP errors ---------------------------------------------------------------------------------

#[test]
fn ttl_expiry_sends_time_exceeded_from_the_gateway() {
    let mut node = node();
    let f = syn(A1_MAC, a1(), b1(), 40000, 5432);
    let f1 = IpFrame::tcp(
        A1_MAC,
        ROUTER_MAC,
        a1(),
        b1(),
        40000,
        5432,
        tcp_flags::SYN,
        1000,
        0,
    )
    .ttl(1)
    .build();
    let out = node.inject(A1, &f1, t0());
    assert_eq!(dropped(&node), DropReason::TtlExpired);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, A1);
    let h = parse_checked(&out[0].1);
    assert_eq!(eth(&h), (ROUTER_MAC, A1_MAC));
    let ip = ipv4(&h);
    assert_eq!(ip.source, GATEWAY_V4.octets());
    assert_eq!(ip.destination, [10, 0, 0, 11]);
    let Some(TransportHeader::Icmpv4(icmp)) = &h.transport else {
        panic!("not ICMP")
    };
    assert!(matches!(
        icmp.icmp_type,
        Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit)
    ));
    // The quote starts with the invoking IP header.
    assert_eq!(&h.payload.slice()[..20], &f1[14..34]);
    assert_eq!(f.len(), f1.len());
    // No conntrack state was created by the expired packet.
    assert_eq!(node.conntrack().occupancy(), 0);

    // IPv6: time exceeded, hop limit exceeded.
    let f6 = IpFrame::tcp(
        A1_MAC,
        ROUTER_MAC,
        v6("fd00::11"),
        v6("fd00::13"),
        1,
        2,
        tcp_flags::SYN,
        1,
        0,
    )
    .ttl(1)
    .build();
    let out = node.inject(A1, &f6, t0());
    assert_eq!(out.len(), 1);
    let h = parse_checked(&out[0].1);
    assert_eq!(ipv6(&h).source, GATEWAY_V6.octets());
    let Some(TransportHeader::Icmpv6(icmp)) = &h.transport else {
        panic!("not ICMPv6")
    };
    assert!(matches!(
        icmp.icmp_type,
        Icmpv6Type::TimeExceeded(etherparse::icmpv6::TimeExceededCode::HopLimitExceeded)
    ));
}

#[test]
fn oversize_frames_get_frag_needed_or_packet_too_big_and_without_df_are_dropped() {
    let mut node = node();
    // b1's port MTU is 1400: an IP packet of 1420 bytes does not fit.
    let big = IpFrame::udp(A1_MAC, ROUTER_MAC, a1(), b1(), 1, 2).payload(1420 - 28);
    let out = node.inject(A1, &big.build(), t0());
    assert_eq!(dropped(&node), DropReason::TooBig);
    assert_eq!(out.len(), 1);
    let h = parse_checked(&out[0].1);
    let Some(TransportHeader::Icmpv4(icmp)) = &h.transport else {
        panic!("not ICMP")
    };
    assert_eq!(
        icmp.icmp_type,
        Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 }
        )
    );
    assert!(out[0].1.len() <= 14 + 576, "RFC 1812 §4.3.2.3 size");
    // Without DF: dropped silently (we do not fragment).
    let out = node.inject(A1, &big.df(false).build(), t0());
    assert!(out.is_empty());
    assert_eq!(dropped(&node), DropReason::TooBigNoDf);
    // Exactly the MTU passes.
    let fits = IpFrame::udp(A1_MAC, ROUTER_MAC, a1(), b1(), 1, 2).payload(1400 - 28);
    assert_eq!(node.inject(A1, &fits.build(), t0()).len(), 1);
    // IPv6: packet too big with the MTU.
    let big6 = IpFrame::udp(A1_MAC, ROUTER_MAC, v6("fd00::11"), v6("fd00::13"), 1, 2).payload(1420);
    let out = node.inject(A1, &big6.build(), t0());
    assert_eq!(out.len(), 1);
    let h = parse_checked(&out[0].1);
    let Some(TransportHeader::Icmpv6(icmp)) = &h.transport else {
        panic!("not ICMPv6")
    };
    assert_eq!(icmp.icmp_type, Icmpv6Type::PacketTooBig { mtu: 1400 });
    assert!(out[0].1.len() <= 14 + 1280, "RFC 4443 §2.4(c) size");
    // Towards a remote endpoint the limit is the underlay MTU (1550) minus 50.
    let remote = IpFrame::udp(A1_MAC, ROUTER_MAC, a1(), r1(), 1, 2).payload(1501 - 28);
    let out = node.inject(A1, &remote.build(), t0());
    let h = parse_checked(&out[0].1);
    let Some(TransportHeader::Icmpv4(icmp)) = &h.transport else {
        panic!("not ICMP")
    };
    assert_eq!(
        icmp.icmp_type,
        Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1500 }
        )
    );
}

#[test]
fn icmp_errors_are_rate_limited_by_a_token_bucket_on_now() {
    let mut node = node(); // burst 10, 10 per second
    let f = IpFrame::udp(A1_MAC, ROUTER_MAC, a1(), b1(), 1, 2)
        .ttl(1)
        .build();
    let count = |node: &mut TestNode, now| {
        (0..20)
            .map(|_| node.inject(A1, &f, now).len())
            .sum::<usize>()
    };
    assert_eq!(count(&mut node, t0()), 10);
    assert_eq!(count(&mut node, t0().after(Duration::from_millis(50))), 0);
    assert_eq!(count(&mut node, t0().after(Duration::from_millis(350))), 3);
    let s = node.stats();
    assert_eq!(s.icmp_errors, 13);
    assert_eq!(s.icmp_rate_limited, 47);
    assert_eq!(s.port(A1).dropped(DropReason::TtlExpired), 60);
}

// ---- conntrack-backed policy -------------------------------------------------------------------

#[test]
fn allowed_connection_gets_replies_and_reverse_new_connection_is_denied() {
    let mut node = node_with(&[POLICY_B, DENY_A]);
    let [s, sa, ack] = handshake(
        &mut node,
        (A1, A1_MAC, a1()),
        (B1, B1_MAC, b1()),
        5432,
        t0(),
    );
    assert_eq!(s.len(), 1, "SYN a1→b1:5432 allowed by allow-db");
    assert_eq!(
        sa.len(),
        1,
        "SYN-ACK is a reply: passes although a denies ingress"
    );
    assert_eq!(sa[0].0, A1);
    assert_eq!(ack.len(), 1);
    // b1 opening a connection to a1 is new and a isolates ingress.
    assert!(
        node.inject(B1, &syn(B1_MAC, b1(), a1(), 41000, 80), t0())
            .is_empty()
    );
    assert_eq!(dropped(&node), DropReason::PolicyDenied);
    // a1 to b1 on another port: denied by b's isolation.
    assert!(
        node.inject(A1, &syn(A1_MAC, a1(), b1(), 40001, 80), t0())
            .is_empty()
    );
    assert_eq!(dropped(&node), DropReason::PolicyDenied);
    // Invalid TCP (no SYN, no connection) is a conntrack drop.
    let stray = data(A2_MAC, a2(), b1(), 40002, 5432, 1);
    assert!(node.inject(A2, &stray, t0()).is_empty());
    assert_eq!(dropped(&node), DropReason::ConntrackInvalid);
    // Per-rule, per-policy and per-group counters.
    let s = node.stats();
    let allowed: u64 = s.rules_allowed.values().map(|t| t.connections).sum();
    assert_eq!(allowed, 1);
    let packets: u64 = s.rules_allowed.values().map(|t| t.packets).sum();
    assert_eq!(
        packets, 3,
        "SYN, SYN-ACK and ACK counted on the allow-db rule"
    );
    let denied: u64 = s.policies_denied.values().map(|t| t.connections).sum();
    assert_eq!(denied, 2);
    let ab = s.between(
        &GroupLabel::Namespace("a".into()),
        &GroupLabel::Namespace("b".into()),
    );
    assert_eq!((ab.packets, ab.connections), (3, 1));
}

#[test]
fn established_packets_hit_the_cache_and_a_new_state_invalidates_it() {
    let mut node = node();
    handshake(
        &mut node,
        (A1, A1_MAC, a1()),
        (B1, B1_MAC, b1()),
        5432,
        t0(),
    );
    let before = node.stats();
    for k in 0..5 {
        let out = node.inject(
            A1,
            &data(A1_MAC, a1(), b1(), 40000, 5432, 1001 + 10 * k),
            t0(),
        );
        assert_eq!(out.len(), 1);
    }
    let after = node.stats();
    assert_eq!(after.cache_hits - before.cache_hits, 5);
    node.publish().expect("publish");
    node.inject(A1, &data(A1_MAC, a1(), b1(), 40000, 5432, 1051), t0());
    let s = node.stats();
    assert_eq!(
        s.cache_hits, after.cache_hits,
        "first packet after a new state misses"
    );
    assert_eq!(s.cache_misses, after.cache_misses + 1);
    node.inject(A1, &data(A1_MAC, a1(), b1(), 40000, 5432, 1061), t0());
    assert_eq!(node.stats().cache_hits, after.cache_hits + 1);
}

#[test]
fn policy_change_flips_new_connections_and_revokes_established_ones() {
    let mut node = node_with(&[POLICY_B]);
    // Denied at first: a2 is not in a? It is; use a connection to port 80, not allowed.
    assert!(
        node.inject(A1, &syn(A1_MAC, a1(), b1(), 40000, 80), t0())
            .is_empty()
    );
    assert_eq!(dropped(&node), DropReason::PolicyDenied);
    // Established on 5432.
    handshake(
        &mut node,
        (A2, A2_MAC, a2()),
        (B1, B1_MAC, b1()),
        5432,
        t0(),
    );
    assert_eq!(
        node.inject(A2, &data(A2_MAC, a2(), b1(), 40000, 5432, 1001), t0())
            .len(),
        1
    );
    assert_eq!(node.conntrack().occupancy(), 1);
    // Remove allow-db: b1 is isolated by deny-all only.
    assert!(node.remove_policy("b", "allow-db").expect("publish"));
    let out = node.inject(A2, &data(A2_MAC, a2(), b1(), 40000, 5432, 1011), t0());
    assert!(out.is_empty(), "no packet of a revoked connection passes");
    assert_eq!(dropped(&node), DropReason::Revoked);
    assert_eq!(node.conntrack().occupancy(), 0, "entry removed");
    // The reply direction of the revoked connection is now a stray: invalid.
    let reply = IpFrame::tcp(
        B1_MAC,
        ROUTER_MAC,
        b1(),
        a2(),
        5432,
        40000,
        tcp_flags::ACK,
        5001,
        1011,
    )
    .build();
    assert!(node.inject(B1, &reply, t0()).is_empty());
    // Allow port 80 from everywhere: the new connection now passes.
    node.apply_yaml(
        r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-80, namespace: b}
spec:
  podSelector: {}
  ingress:
  - ports:
    - port: 80
",
    )
    .expect("apply");
    assert_eq!(
        node.inject(A1, &syn(A1_MAC, a1(), b1(), 40001, 80), t0())
            .len(),
        1
    );
    assert_eq!(node.stats().revoked_connections, 1);
}

#[test]
fn revalidation_removes_idle_revoked_connections_on_a_budget() {
    let mut node = node_with(&[POLICY_B]);
    handshake(
        &mut node,
        (A1, A1_MAC, a1()),
        (B1, B1_MAC, b1()),
        5432,
        t0(),
    );
    handshake(
        &mut node,
        (A2, A2_MAC, a2()),
        (B1, B1_MAC, b1()),
        5432,
        t0(),
    );
    // A connection that stays allowed: a1 → r1 (no policy on r1's namespace a).
    handshake(
        &mut node,
        (A1, A1_MAC, a1()),
        (UPLINK, R1_MAC, r1()),
        80,
        t0(),
    );
    // The SYN to r1 committed its entry (r1's replies would come encapsulated; these did not).
    assert_eq!(node.conntrack().occupancy(), 3);
    node.remove_policy("b", "allow-db").expect("publish");
    let now = t0();
    assert!(node.worker().revalidating(), "a new state starts a pass");
    let first = node.worker().revalidate(1);
    let second = node.worker().revalidate(10);
    assert!(first <= 1, "a budget of one entry removes at most one");
    assert_eq!(first + second, 2);
    assert_eq!(
        node.conntrack().occupancy(),
        1,
        "the still-allowed connection stays"
    );
    assert_eq!(node.stats().revoked_connections, 2);
    // The pass is done with it; an hour later the idle half-open connection has timed out and
    // a sweep (the runner's housekeeping) expires it.
    assert_eq!(node.worker().revalidate(1 << 20), 0);
    assert_eq!(node.conntrack().occupancy(), 1);
    assert_eq!(
        node.conntrack()
            .sweep(now.after(Duration::from_hours(1)), 1 << 20),
        1
    );
    assert_eq!(node.conntrack().occupancy(), 0);
    // The pass is complete and, with no new state, none starts again (it used to re-list the
    // whole table every time the previous pass ended).
    assert!(!node.worker().revalidating());
    assert_eq!(node.worker().revalidate(1 << 20), 0);
    assert!(!node.worker().revalidating());
}

// ---- tshark ----------------------------------------------------------------------------------

/// Writes frames as a classic pcap (24-byte global header, 16-byte record headers, Ethernet).
fn write_pcap(path: &std::path::Path, frames: &[&[u8]]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(i as u32 + 1).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).expect("write pcap");
}

#[test]
fn vxlan_output_decodes_in_tshark() {
    let tshark = std::process::Command::new("tshark")
        .arg("--version")
        .output();
    assert!(
        tshark.is_ok_and(|o| o.status.success()),
        "tshark is missing: install it with scripts/setup (apt-get install tshark)"
    );
    let mut node = node();
    let tcp = node.inject(A1, &syn(A1_MAC, a1(), r1(), 40000, 80), t0());
    let udp = node.inject(
        A2,
        &IpFrame::udp(A2_MAC, ROUTER_MAC, a2(), r2(), 40500, 7777)
            .payload(100)
            .build(),
        t0(),
    );
    assert_eq!((tcp.len(), udp.len()), (1, 1));
    let dir = std::env::temp_dir().join(format!("podswitch-datapath-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join("vxlan.pcap");
    write_pcap(&path, &[&tcp[0].1, &udp[0].1]);
    let out = std::process::Command::new("tshark")
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "tcp.check_checksum:TRUE",
        ])
        .args(["-o", "udp.check_checksum:TRUE", "-r"])
        .arg(&path)
        .args(["-V", "-Y", "vxlan"])
        .output()
        .expect("run tshark");
    let text = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.matches("Virtual eXtensible Local Area Network")
            .count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.matches("VXLAN Network Identifier (VNI): 100").count(),
        2,
        "{text}"
    );
    // Outer and inner addresses.
    assert!(
        text.contains("Src: 192.168.0.1, Dst: 192.168.0.2"),
        "{text}"
    );
    assert!(
        text.contains("Src: 192.168.0.1, Dst: 192.168.0.3"),
        "{text}"
    );
    assert!(text.contains("Src: 10.0.0.11, Dst: 10.0.2.21"), "{text}");
    assert!(text.contains("Src: 10.0.0.12, Dst: 10.0.3.31"), "{text}");
    // Inner TCP and UDP decoded; every checksum tshark verified is good, nothing malformed.
    assert!(
        text.contains("Transmission Control Protocol, Src Port: 40000, Dst Port: 80"),
        "{text}"
    );
    assert!(
        text.contains("User Datagram Protocol, Src Port: 40500, Dst Port: 7777"),
        "{text}"
    );
    assert!(text.contains("[Header checksum status: Good]"), "{text}");
    assert!(!text.contains("Bad"), "{text}");
    assert!(!text.contains("Malformed"), "{text}");
    assert!(!text.contains("incorrect"), "{text}");
}

#[test]
fn icmp_error_about_a_tunnelled_packet_is_encapsulated_back_to_its_vtep() {
    let mut node = node();
    let inner = IpFrame::udp(R1_MAC, ROUTER_MAC, r1(), a1(), 5000, 6000)
        .ttl(1)
        .build();
    let outer = frames::vxlan_v4(
        VTEP1_NH,
        LOCAL_VTEP_MAC,
        VTEP1,
        LOCAL_VTEP,
        VNI,
        50000,
        &inner,
    );
    let out = node.inject(UPLINK, &outer, t0());
    assert_eq!(dropped(&node), DropReason::TtlExpired);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, UPLINK);
    let (o, vni, err) = split_vxlan(&out[0].1);
    assert_eq!(ipv4(&o).destination, VTEP1.octets());
    assert_eq!(vni, VNI);
    let h = parse_checked(err);
    assert_eq!(eth(&h), (ROUTER_MAC, R1_MAC));
    let ip = ipv4(&h);
    assert_eq!(ip.source, GATEWAY_V4.octets());
    assert_eq!(ip.destination, [10, 0, 2, 21]);
    assert!(matches!(
        h.transport,
        Some(TransportHeader::Icmpv4(Icmpv4Header {
            icmp_type: Icmpv4Type::TimeExceeded(_),
            ..
        }))
    ));
}

#[test]
fn related_icmp_error_of_a_tracked_connection_passes_and_unrelated_is_dropped() {
    let mut node = node_with(&[DENY_A]);
    // a1 → b1 UDP creates the connection; b1 answers with port unreachable.
    let probe = IpFrame::udp(A1_MAC, ROUTER_MAC, a1(), b1(), 5000, 6000).payload(8);
    assert_eq!(node.inject(A1, &probe.build(), t0()).len(), 1);
    let quoted = probe.ttl(63).build();
    let unreachable = |quote: &[u8]| {
        let mut icmp = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&quote[14..]);
        let c = !podswitch_wire::checksum::data(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let f = etherparse::PacketBuilder::ethernet2(B1_MAC.0, ROUTER_MAC.0).ipv4(
            [10, 0, 1, 13],
            [10, 0, 0, 11],
            64,
        );
        let mut out = Vec::new();
        f.write(&mut out, etherparse::IpNumber::ICMP, &icmp)
            .expect("build");
        out
    };
    let out = node.inject(B1, &unreachable(&quoted), t0());
    assert_eq!(
        out.len(),
        1,
        "related error passes although a isolates ingress: {:?}",
        node.disposition()
    );
    assert_eq!(out[0].0, A1);
    parse_checked(&out[0].1);
    // The same error quoting a connection that does not exist.
    let other = IpFrame::udp(A1_MAC, ROUTER_MAC, a1(), b1(), 5001, 6000)
        .payload(8)
        .build();
    assert!(node.inject(B1, &unreachable(&other), t0()).is_empty());
    assert_eq!(dropped(&node), DropReason::ConntrackInvalid);
}
