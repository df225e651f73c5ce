//! NAT round trips: packets built by etherparse, rewritten by us, verified by etherparse.
mod common;

use common::*;
use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};
use podswitch_conntrack::{
    CommitError, Config, Direction, Endpoint, Filter, L4, Nat, PacketMeta, RefusalReason, Rewrite,
    RewriteError, Table, TcpFlags, TcpMeta, Tuple, Verdict, nat,
};
use podswitch_wire::IpProtocol;
use std::net::IpAddr;

fn octets4(a: IpAddr) -> [u8; 4] {
    match a {
        IpAddr::V4(v) => v.octets(),
        IpAddr::V6(_) => panic!("v4 expected"),
    }
}

fn octets6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(v) => v.octets(),
        IpAddr::V4(_) => panic!("v6 expected"),
    }
}

fn builder(src: IpAddr, dst: IpAddr) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    if src.is_ipv4() {
        PacketBuilder::ipv4(octets4(src), octets4(dst), 64)
    } else {
        PacketBuilder::ipv6(octets6(src), octets6(dst), 64)
    }
}

fn tcp_packet(src: IpAddr, sp: u16, dst: IpAddr, dp: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let b = builder(src, dst).tcp(sp, dp, seq, 1000).ack(1).psh();
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn udp_packet(src: IpAddr, sp: u16, dst: IpAddr, dp: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    builder(src, dst)
        .udp(sp, dp)
        .write(&mut v, payload)
        .unwrap();
    v
}

/// Parses with etherparse and checks every checksum against a full recomputation. Returns
/// (src, dst, src port, dst port) with the ICMP identifier as both ports.
fn verify(buf: &[u8]) -> (IpAddr, IpAddr, u16, u16) {
    let h = PacketHeaders::from_ip_slice(buf).expect("etherparse parses the rewritten packet");
    let payload = h.payload.slice();
    let tr = h.transport.clone().expect("transport header");
    let mut recomputed = tr.clone();
    let (src, dst) = match h.net.expect("ip") {
        NetHeaders::Ipv4(ip, _) => {
            assert_eq!(
                ip.header_checksum,
                ip.calc_header_checksum(),
                "IPv4 header checksum"
            );
            let udp_zero = matches!(&tr, TransportHeader::Udp(u) if u.checksum == 0);
            if !udp_zero {
                recomputed.update_checksum_ipv4(&ip, payload).unwrap();
            }
            (IpAddr::from(ip.source), IpAddr::from(ip.destination))
        }
        NetHeaders::Ipv6(ip, _) => {
            recomputed.update_checksum_ipv6(&ip, payload).unwrap();
            (IpAddr::from(ip.source), IpAddr::from(ip.destination))
        }
        NetHeaders::Arp(_) => panic!("not IP"),
    };
    assert_eq!(recomputed, tr, "transport checksum");
    let (sp, dp) = match tr {
        TransportHeader::Tcp(t) => (t.source_port, t.destination_port),
        TransportHeader::Udp(u) => (u.source_port, u.destination_port),
        TransportHeader::Icmpv4(i) => match i.icmp_type {
            etherparse::Icmpv4Type::EchoRequest(e) | etherparse::Icmpv4Type::EchoReply(e) => {
                (e.id, e.id)
            }
            _ => panic!("not echo"),
        },
        TransportHeader::Icmpv6(i) => match i.icmp_type {
            etherparse::Icmpv6Type::EchoRequest(e) | etherparse::Icmpv6Type::EchoReply(e) => {
                (e.id, e.id)
            }
            _ => panic!("not echo"),
        },
    };
    (src, dst, sp, dp)
}

fn tcp_meta(
    src: IpAddr,
    sp: u16,
    dst: IpAddr,
    dp: u16,
    flags: TcpFlags,
    seq: u32,
    ack: u32,
) -> PacketMeta {
    PacketMeta::tcp(
        src,
        dst,
        TcpMeta {
            src_port: sp,
            dst_port: dp,
            flags,
            seq,
            ack,
            window: 65535,
            payload_len: 0,
            ..TcpMeta::default()
        },
    )
}

fn dnat_round_trip(client: &str, vip: &str, backend: &str) {
    let t = small_table();
    let (c, v, b) = (ip(client), ip(vip), ip(backend));
    let now = secs(1);
    // Client → ClusterIP:80, translated to backend:8080.
    let syn = tcp_meta(c, 40000, v, 80, SYN, 100, 0);
    assert_eq!(t.lookup(&syn, now).verdict, Verdict::New);
    let l = t
        .commit(&syn, Nat::dnat(Endpoint::new(b, 8080)), now)
        .unwrap();
    let rw = l.rewrite.expect("DNAT rewrite");
    assert_eq!(
        rw,
        Rewrite {
            dst: Some(b),
            dst_port: Some(8080),
            ..Rewrite::default()
        }
    );
    let mut pkt = tcp_packet(c, 40000, v, 80, 100, b"hello");
    nat::rewrite(&mut pkt, &rw).unwrap();
    assert_eq!(verify(&pkt), (c, b, 40000, 8080));

    // The backend answers to the client; the reply is found by its (translated) tuple and
    // rewritten back so that it comes from the ClusterIP.
    let synack = tcp_meta(b, 8080, c, 40000, SYNACK, 7000, 101);
    let l = t.lookup(&synack, now);
    assert_eq!((l.verdict, l.direction), (Verdict::Reply, Direction::Reply));
    let rw = l.rewrite.expect("reverse NAT");
    assert_eq!(
        rw,
        Rewrite {
            src: Some(v),
            src_port: Some(80),
            ..Rewrite::default()
        }
    );
    let mut pkt = tcp_packet(b, 8080, c, 40000, 7000, b"world!");
    nat::rewrite(&mut pkt, &rw).unwrap();
    assert_eq!(verify(&pkt), (v, c, 80, 40000));
    // Handshake completes through the NAT entry.
    assert_eq!(
        t.lookup(&tcp_meta(c, 40000, v, 80, ACK, 101, 7001), now)
            .verdict,
        Verdict::Established
    );
    // The backend's address cannot be reached directly on that tuple: it is another flow.
    assert_eq!(
        t.lookup(&tcp_meta(c, 40000, b, 8080, SYN, 5, 0), now)
            .verdict,
        Verdict::New
    );
    t.check_invariants().unwrap();
}

#[test]
fn dnat_round_trip_ipv4() {
    dnat_round_trip("10.0.0.1", "10.96.0.10", "10.1.0.5");
}

#[test]
fn dnat_round_trip_ipv6() {
    dnat_round_trip("fd00::1", "fd00:96::10", "fd00:1::5");
}

#[test]
fn snat_and_dnat_together_udp_v4_and_v6() {
    for (c, v, b, node) in [
        ("10.0.0.1", "10.96.0.10", "192.0.2.5", "10.255.0.1"),
        ("fd00::1", "fd00:96::10", "2001:db8::5", "fd00:ff::1"),
    ] {
        let t = small_table();
        let (c, v, b, node) = (ip(c), ip(v), ip(b), ip(node));
        let q = PacketMeta::udp(c, v, 5353, 53);
        let nat = Nat {
            snat: Some(Endpoint::new(node, 61000)),
            dnat: Some(Endpoint::new(b, 5300)),
        };
        let rw = t.commit(&q, nat, secs(0)).unwrap().rewrite.unwrap();
        let mut pkt = udp_packet(c, 5353, v, 53, b"query");
        nat::rewrite(&mut pkt, &rw).unwrap();
        assert_eq!(verify(&pkt), (node, b, 61000, 5300));
        let r = PacketMeta::udp(b, node, 5300, 61000);
        let l = t.lookup(&r, secs(1));
        assert_eq!(l.verdict, Verdict::Reply);
        let mut pkt = udp_packet(b, 5300, node, 61000, b"answer");
        nat::rewrite(&mut pkt, &l.rewrite.unwrap()).unwrap();
        assert_eq!(verify(&pkt), (v, c, 53, 5353));
        let e = t.entries(&Filter::All)[0];
        assert_eq!((e.reply.src, e.reply.dst), (b, node));
        t.check_invariants().unwrap();
    }
}

#[test]
fn icmp_echo_snat_rewrites_the_identifier() {
    let t = small_table();
    let (c, s, node) = (ip("10.0.0.1"), ip("8.8.8.8"), ip("192.0.2.1"));
    let req = PacketMeta {
        zone: 0,
        src: c,
        dst: s,
        l4: L4::IcmpEcho {
            request: true,
            id: 42,
        },
        len: 84,
    };
    let rw = t
        .commit(&req, Nat::snat(Endpoint::new(node, 4242)), secs(0))
        .unwrap()
        .rewrite
        .unwrap();
    let mut pkt = Vec::new();
    PacketBuilder::ipv4(octets4(c), octets4(s), 64)
        .icmpv4_echo_request(42, 1)
        .write(&mut pkt, b"ping")
        .unwrap();
    nat::rewrite(&mut pkt, &rw).unwrap();
    assert_eq!(verify(&pkt), (node, s, 4242, 4242));
    let rep = PacketMeta {
        zone: 0,
        src: s,
        dst: node,
        l4: L4::IcmpEcho {
            request: false,
            id: 4242,
        },
        len: 84,
    };
    let l = t.lookup(&rep, secs(1));
    assert_eq!(l.verdict, Verdict::Reply);
    let mut pkt = Vec::new();
    PacketBuilder::ipv4(octets4(s), octets4(node), 64)
        .icmpv4_echo_reply(4242, 1)
        .write(&mut pkt, b"ping")
        .unwrap();
    nat::rewrite(&mut pkt, &l.rewrite.unwrap()).unwrap();
    assert_eq!(verify(&pkt), (s, c, 42, 42));

    // ICMPv6: the checksum covers the pseudo-header too.
    let (c6, s6, n6) = (ip("fd00::1"), ip("2001:db8::8"), ip("2001:db8::1"));
    let req = PacketMeta {
        zone: 0,
        src: c6,
        dst: s6,
        l4: L4::IcmpEcho {
            request: true,
            id: 9,
        },
        len: 84,
    };
    let rw = t
        .commit(&req, Nat::snat(Endpoint::new(n6, 99)), secs(0))
        .unwrap()
        .rewrite
        .unwrap();
    let mut pkt = Vec::new();
    PacketBuilder::ipv6(octets6(c6), octets6(s6), 64)
        .icmpv6_echo_request(9, 1)
        .write(&mut pkt, b"ping6")
        .unwrap();
    nat::rewrite(&mut pkt, &rw).unwrap();
    assert_eq!(verify(&pkt), (n6, s6, 99, 99));
}

#[test]
fn udp_checksum_zero_rules() {
    let (c, v) = (ip("10.0.0.1"), ip("10.0.0.2"));
    // Zero ("no checksum") over IPv4 stays zero.
    let mut pkt = udp_packet(c, 1, v, 2, b"x");
    let ihl = usize::from(pkt[0] & 0xf) * 4;
    pkt[ihl + 6] = 0;
    pkt[ihl + 7] = 0;
    let rw = Rewrite {
        dst: Some(ip("10.9.9.9")),
        dst_port: Some(99),
        ..Rewrite::default()
    };
    nat::rewrite(&mut pkt, &rw).unwrap();
    assert_eq!(&pkt[ihl + 6..ihl + 8], &[0, 0]);
    assert_eq!(verify(&pkt), (c, ip("10.9.9.9"), 1, 99));
    // Every destination port: the incremental result always verifies, and a result of zero is
    // sent as 0xffff (RFC 768), which etherparse's full computation agrees with.
    let base = udp_packet(c, 1, v, 2, b"payload");
    let mut saw_ffff = false;
    for port in 0..=u16::MAX {
        let mut pkt = base.clone();
        nat::rewrite(
            &mut pkt,
            &Rewrite {
                dst_port: Some(port),
                ..Rewrite::default()
            },
        )
        .unwrap();
        assert_ne!(&pkt[ihl + 6..ihl + 8], &[0, 0], "port {port}");
        saw_ffff |= pkt[ihl + 6..ihl + 8] == [0xff, 0xff];
        if port % 257 == 0 || pkt[ihl + 6..ihl + 8] == [0xff, 0xff] {
            assert_eq!(verify(&pkt).3, port);
        }
    }
    assert!(saw_ffff, "some port makes the sum zero");
}

#[test]
fn rewrite_rejects_bad_input_without_writing() {
    let mut short = vec![0x45, 0, 0];
    let rw = Rewrite {
        src: Some(ip("10.0.0.9")),
        ..Rewrite::default()
    };
    assert_eq!(nat::rewrite(&mut short, &rw), Err(RewriteError::Truncated));
    assert_eq!(nat::rewrite(&mut [], &rw), Err(RewriteError::Truncated));
    let mut pkt = tcp_packet(ip("10.0.0.1"), 1, ip("10.0.0.2"), 2, 0, b"");
    let before = pkt.clone();
    assert_eq!(
        nat::rewrite(
            &mut pkt,
            &Rewrite {
                src: Some(ip("::1")),
                ..Rewrite::default()
            }
        ),
        Err(RewriteError::Family)
    );
    pkt.truncate(30);
    let cut = pkt.clone();
    assert_eq!(
        nat::rewrite(
            &mut pkt,
            &Rewrite {
                src_port: Some(5),
                ..Rewrite::default()
            }
        ),
        Err(RewriteError::Truncated)
    );
    assert_eq!(pkt, cut);
    assert_eq!(&before[..30], &pkt[..]);
    let mut bogus = vec![0x75; 40];
    assert_eq!(nat::rewrite(&mut bogus, &rw), Err(RewriteError::Malformed));
}

#[test]
fn nat_conflicts_are_refused_and_counted() {
    let t = small_table();
    let node = Endpoint::new(ip("192.0.2.1"), 30000);
    let a = PacketMeta::udp(ip("10.0.0.1"), ip("8.8.8.8"), 1111, 53);
    let b = PacketMeta::udp(ip("10.0.0.2"), ip("8.8.8.8"), 2222, 53);
    t.commit(&a, Nat::snat(node), secs(0)).unwrap();
    assert_eq!(
        t.commit(&b, Nat::snat(node), secs(0)),
        Err(CommitError::Refused(RefusalReason::TupleConflict))
    );
    assert_eq!(t.stats().refused(RefusalReason::TupleConflict), 1);
    assert_eq!(
        t.commit(&b, Nat::snat(Endpoint::new(ip("::1"), 1)), secs(0)),
        Err(CommitError::NatFamily)
    );
    // A retransmitted first packet of `a` finds the existing entry (no duplicate).
    assert_eq!(
        t.commit(&a, Nat::snat(node), secs(0)).unwrap().verdict,
        Verdict::Established
    );
    assert_eq!(t.occupancy(), 1);
    t.check_invariants().unwrap();
}

#[test]
fn many_nat_connections_cross_shards_and_clean_up() {
    let t = Table::new(&Config {
        max_entries: 8192,
        shards: 256,
        ..Config::default()
    });
    let vip = ip("10.96.0.1");
    for i in 0..2000u16 {
        let syn = tcp_meta(ip("10.0.0.1"), 10000 + i, vip, 443, SYN, 1, 0);
        let backend = Endpoint::new(ip(&format!("10.1.{}.{}", i / 200, i % 200 + 1)), 8443);
        t.commit(&syn, Nat::dnat(backend), secs(0)).unwrap();
        let synack = tcp_meta(backend.addr, 8443, ip("10.0.0.1"), 10000 + i, SYNACK, 9, 2);
        let l = t.lookup(&synack, secs(0));
        assert_eq!(l.verdict, Verdict::Reply, "conn {i}");
        assert_eq!(l.rewrite.unwrap().src, Some(vip));
    }
    t.check_invariants().unwrap();
    assert_eq!(t.sweep(secs(1000), 1 << 20), 2000);
    assert_eq!(t.occupancy(), 0);
    t.check_invariants().unwrap();
}

#[test]
fn ipv6_extension_headers_and_fragments() {
    let (c, s, n) = (ip("fd00::1"), ip("fd00::2"), ip("fd00::99"));
    let plain = udp_packet(c, 1000, s, 53, b"q");
    // Insert an 8-byte hop-by-hop header (next header = UDP) after the fixed header.
    let mut with_hbh = plain[..40].to_vec();
    with_hbh[6] = 0; // hop-by-hop
    let payload_len = u16::from_be_bytes([plain[4], plain[5]]) + 8;
    with_hbh[4..6].copy_from_slice(&payload_len.to_be_bytes());
    with_hbh.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
    with_hbh.extend_from_slice(&plain[40..]);
    let rw = Rewrite {
        src: Some(n),
        src_port: Some(7),
        ..Rewrite::default()
    };
    nat::rewrite(&mut with_hbh, &rw).unwrap();
    assert_eq!(verify(&with_hbh), (n, s, 7, 53));
    // A later fragment: only the addresses change.
    let mut frag = plain[..40].to_vec();
    frag[6] = 44;
    frag.extend_from_slice(&[17, 0, 0x00, 0x08, 0, 0, 0, 1]); // offset 1 (×8 bytes)
    frag.extend_from_slice(&[0xab; 16]);
    let before = frag.clone();
    nat::rewrite(&mut frag, &rw).unwrap();
    assert_eq!(&frag[8..24], &octets6(n));
    assert_eq!(&frag[40..], &before[40..], "no transport header to touch");
    // An endless chain of destination-options headers is refused untouched.
    let mut chain = plain[..40].to_vec();
    chain[6] = 60;
    for _ in 0..10 {
        chain.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
    }
    let before = chain.clone();
    assert_eq!(
        nat::rewrite(&mut chain, &rw),
        Err(RewriteError::Unsupported)
    );
    assert_eq!(chain, before);
}

/// `flush` by tuple goes through the index instead of scanning: for plain and NAT'd
/// connections (whose reply key may live behind a redirect in another shard), removing by
/// either tuple removes exactly that connection, once, and leaves the table consistent.
#[test]
fn flush_by_tuple_finds_either_key_without_a_scan() {
    let t = Table::new(&Config {
        max_entries: 4096,
        shards: 64,
        ..Config::default()
    });
    let now = secs(1);
    let vip = ip("10.96.0.10");
    let mut conns = Vec::new();
    for i in 0..600u16 {
        let src = ip(&format!("10.0.{}.{}", i / 200, 1 + i % 200));
        let m = PacketMeta::udp(src, vip, 20_000 + i, 53);
        // Every third connection is DNAT'd to a backend, so its reply key differs.
        let nat = if i % 3 == 0 {
            Nat {
                snat: None,
                dnat: Some(Endpoint::new(ip("10.1.0.7"), 5353)),
            }
        } else {
            Nat::NONE
        };
        let l = t.commit(&m, nat, now).expect("committed");
        let info = t
            .entries(&Filter::Tuple {
                zone: 0,
                tuple: Tuple::new(src, vip, IpProtocol::Udp, 20_000 + i, 53),
            })
            .pop()
            .expect("listed");
        assert!(l.handle.is_some());
        conns.push((info.original, info.reply));
    }
    assert_eq!(t.occupancy(), 600);
    for (i, (original, reply)) in conns.iter().enumerate() {
        // Alternate the key used: the reply tuple of a NAT'd connection exercises the redirect.
        let tuple = if i % 2 == 0 { *original } else { *reply };
        assert_eq!(
            t.flush(&Filter::Tuple { zone: 0, tuple }),
            1,
            "connection {i}"
        );
        assert_eq!(
            t.flush(&Filter::Tuple { zone: 0, tuple }),
            0,
            "connection {i} again"
        );
        assert_eq!(
            t.flush(&Filter::Tuple {
                zone: 1,
                tuple: *original
            }),
            0,
            "other zone"
        );
        assert_eq!(t.occupancy() as usize, 600 - i - 1);
        t.check_invariants().expect("consistent after removal");
    }
    assert!(t.entries(&Filter::All).is_empty());
}
