//! UDP, ICMP and SCTP tracking, and zones.
mod common;

use common::*;
use podswitch_conntrack::{
    Config, ConnState, Direction, Filter, InvalidReason, L4, Nat, PacketMeta, SctpState, Table,
    Tuple, Verdict,
};
use podswitch_wire::IpProtocol;

#[test]
fn udp_reply_and_timeouts() {
    let t = small_table();
    let q = udp("10.0.0.1", 5353, "10.0.0.53", 53);
    let r = udp("10.0.0.53", 53, "10.0.0.1", 5353);
    assert_eq!(
        t.lookup(&r, secs(0)).verdict,
        Verdict::New,
        "an unsolicited 'reply' is just new"
    );
    assert_eq!(t.lookup(&q, secs(0)).verdict, Verdict::New);
    t.commit(&q, Nat::NONE, secs(0)).unwrap();
    let e = t.entries(&Filter::All)[0];
    assert!(!e.replied && !e.assured);
    assert_eq!(e.expires, secs(30));
    let l = t.lookup(&r, secs(1));
    assert_eq!((l.verdict, l.direction), (Verdict::Reply, Direction::Reply));
    let e = t.entries(&Filter::All)[0];
    assert!(e.replied && e.assured);
    assert_eq!(e.expires, secs(121));
    assert_eq!(t.lookup(&q, secs(100)).verdict, Verdict::Established);
    // Idle past the replied timeout: gone, the next query is new.
    assert_eq!(t.lookup(&q, secs(221)).verdict, Verdict::New);
    assert_eq!(t.occupancy(), 0);

    // Unreplied flows expire after 30 s.
    t.commit(&q, Nat::NONE, secs(300)).unwrap();
    assert_eq!(t.sweep(secs(329), 1 << 20), 0);
    assert_eq!(t.sweep(secs(330), 1 << 20), 1);
}

#[test]
fn icmp_echo_pairs_by_identifier() {
    let t = small_table();
    let req = echo("10.0.0.1", "10.0.0.2", 77, true);
    let rep = echo("10.0.0.2", "10.0.0.1", 77, false);
    assert_eq!(
        t.lookup(&rep, secs(0)).verdict,
        Verdict::Invalid(InvalidReason::IcmpNoConnection)
    );
    assert_eq!(t.lookup(&req, secs(0)).verdict, Verdict::New);
    t.commit(&req, Nat::NONE, secs(0)).unwrap();
    assert_eq!(t.lookup(&rep, secs(1)).verdict, Verdict::Reply);
    // Another identifier is another connection; a request from the other side too.
    assert_eq!(
        t.lookup(&echo("10.0.0.2", "10.0.0.1", 78, false), secs(1))
            .verdict,
        Verdict::Invalid(InvalidReason::IcmpNoConnection)
    );
    assert_eq!(
        t.lookup(&echo("10.0.0.2", "10.0.0.1", 77, true), secs(1))
            .verdict,
        Verdict::New
    );
    // ICMPv6 works the same.
    let req6 = echo("fd00::1", "fd00::2", 5, true);
    t.commit(&req6, Nat::NONE, secs(0)).unwrap();
    assert_eq!(
        t.lookup(&echo("fd00::2", "fd00::1", 5, false), secs(1))
            .verdict,
        Verdict::Reply
    );
    assert!(
        t.entries(&Filter::All)
            .iter()
            .all(|e| e.state == ConnState::IcmpEcho && !e.assured)
    );
}

fn icmp_error(src: &str, dst: &str, inner: Tuple) -> PacketMeta {
    PacketMeta {
        zone: 0,
        src: ip(src),
        dst: ip(dst),
        l4: L4::IcmpError { inner },
        len: 70,
    }
}

#[test]
fn icmp_errors_related_only_when_quoting_a_tracked_connection() {
    let t = small_table();
    let mut s = Session::new("10.0.0.1", 40000, "192.0.2.9", 80);
    s.handshake(&t, secs(0));
    let quoted = Tuple::new(ip("10.0.0.1"), ip("192.0.2.9"), IpProtocol::Tcp, 40000, 80);
    // A router on the path tells the client the packet was too big.
    let l = t.lookup(&icmp_error("10.9.9.9", "10.0.0.1", quoted), secs(1));
    assert_eq!(
        (l.verdict, l.direction),
        (Verdict::Related, Direction::Reply)
    );
    // An error about a server-to-client packet goes to the server.
    let quoted_rev = Tuple::new(ip("192.0.2.9"), ip("10.0.0.1"), IpProtocol::Tcp, 80, 40000);
    let l = t.lookup(&icmp_error("10.9.9.9", "192.0.2.9", quoted_rev), secs(1));
    assert_eq!(
        (l.verdict, l.direction),
        (Verdict::Related, Direction::Original)
    );
    // Addressed to someone else than the quoted packet's sender.
    assert_eq!(
        t.lookup(&icmp_error("10.9.9.9", "10.0.0.7", quoted), secs(1))
            .verdict,
        Verdict::Invalid(InvalidReason::IcmpOuterMismatch)
    );
    // Quoting an unknown connection.
    let other = Tuple::new(ip("10.0.0.1"), ip("192.0.2.9"), IpProtocol::Tcp, 40001, 80);
    assert_eq!(
        t.lookup(&icmp_error("10.9.9.9", "10.0.0.1", other), secs(1))
            .verdict,
        Verdict::Invalid(InvalidReason::IcmpUnrelated)
    );
    // Quoting a UDP flow and an echo request.
    let u = udp("10.0.0.1", 999, "192.0.2.9", 53);
    t.commit(&u, Nat::NONE, secs(0)).unwrap();
    let q = Tuple::new(ip("10.0.0.1"), ip("192.0.2.9"), IpProtocol::Udp, 999, 53);
    assert_eq!(
        t.lookup(&icmp_error("192.0.2.9", "10.0.0.1", q), secs(1))
            .verdict,
        Verdict::Related
    );
    t.commit(&echo("10.0.0.1", "192.0.2.9", 3, true), Nat::NONE, secs(0))
        .unwrap();
    let qe = Tuple::icmp_echo_request(ip("10.0.0.1"), ip("192.0.2.9"), 3);
    assert_eq!(
        t.lookup(&icmp_error("10.9.9.9", "10.0.0.1", qe), secs(1))
            .verdict,
        Verdict::Related
    );
    let st = t.stats();
    assert_eq!(st.related, 4);
    assert!(
        t.commit(
            &icmp_error("10.9.9.9", "10.0.0.1", quoted),
            Nat::NONE,
            secs(1)
        )
        .is_err()
    );
}

const INIT: u8 = 1;
const INIT_ACK: u8 = 2;
const DATA: u8 = 0;
const SACK: u8 = 3;
const ABORT: u8 = 6;
const SHUTDOWN: u8 = 7;
const SHUTDOWN_ACK: u8 = 8;
const COOKIE_ECHO: u8 = 10;
const COOKIE_ACK: u8 = 11;
const SHUTDOWN_COMPLETE: u8 = 14;

fn sctp_state(t: &Table) -> SctpState {
    match t.entries(&Filter::All)[0].state {
        ConnState::Sctp(s) => s,
        o => panic!("{o:?}"),
    }
}

#[test]
fn sctp_lifecycle() {
    let t = small_table();
    let (c, s) = ("10.0.0.1", "10.0.0.2");
    let now = secs(1);
    // The client's tag (what the server puts in its packets) is 0xc1, the server's is 0x5e.
    let cs = |chunk, vtag| sctp(c, 3868, s, 3868, chunk, vtag);
    let sc = |chunk, vtag| sctp(s, 3868, c, 3868, chunk, vtag);
    assert_eq!(
        t.lookup(&cs(DATA, 0x5e), now).verdict,
        Verdict::Invalid(InvalidReason::SctpNoInit)
    );
    assert_eq!(
        t.lookup(&cs(INIT, 7), now).verdict,
        Verdict::Invalid(InvalidReason::SctpVtag)
    );
    assert_eq!(t.lookup(&cs(INIT, 0), now).verdict, Verdict::New);
    t.commit(&cs(INIT, 0), Nat::NONE, now).unwrap();
    assert_eq!(sctp_state(&t), SctpState::CookieWait);
    assert_eq!(t.lookup(&sc(INIT_ACK, 0xc1), now).verdict, Verdict::Reply);
    assert_eq!(
        t.lookup(&cs(COOKIE_ECHO, 0x5e), now).verdict,
        Verdict::Established
    );
    assert_eq!(sctp_state(&t), SctpState::CookieEchoed);
    assert_eq!(t.lookup(&sc(COOKIE_ACK, 0xc1), now).verdict, Verdict::Reply);
    assert_eq!(sctp_state(&t), SctpState::Established);
    assert!(t.entries(&Filter::All)[0].assured);
    assert_eq!(t.lookup(&cs(DATA, 0x5e), now).verdict, Verdict::Established);
    assert_eq!(t.lookup(&sc(SACK, 0xc1), now).verdict, Verdict::Reply);
    // Wrong verification tag.
    assert_eq!(
        t.lookup(&cs(DATA, 0x99), now).verdict,
        Verdict::Invalid(InvalidReason::SctpVtag)
    );
    // A second INIT in ESTABLISHED is refused by this basic tracker.
    assert_eq!(
        t.lookup(&cs(INIT, 0), now).verdict,
        Verdict::Invalid(InvalidReason::SctpState)
    );
    assert_eq!(
        t.lookup(&cs(SHUTDOWN, 0x5e), now).verdict,
        Verdict::Established
    );
    assert_eq!(sctp_state(&t), SctpState::ShutdownSent);
    assert_eq!(
        t.lookup(&sc(SHUTDOWN_ACK, 0xc1), now).verdict,
        Verdict::Reply
    );
    assert_eq!(sctp_state(&t), SctpState::ShutdownAckSent);
    assert_eq!(
        t.lookup(&cs(SHUTDOWN_COMPLETE, 0x5e), now).verdict,
        Verdict::Established
    );
    assert_eq!(sctp_state(&t), SctpState::Closed);
    assert_eq!(t.entries(&Filter::All)[0].expires, secs(11));
}

#[test]
fn sctp_abort_may_reflect_the_peer_tag() {
    let t = small_table();
    let (c, s) = ("fd00::1", "fd00::2");
    let now = secs(1);
    t.commit(&sctp(c, 1, s, 2, INIT, 0), Nat::NONE, now)
        .unwrap();
    assert_eq!(
        t.lookup(&sctp(s, 2, c, 1, INIT_ACK, 0xaa), now).verdict,
        Verdict::Reply
    );
    assert_eq!(
        t.lookup(&sctp(c, 1, s, 2, COOKIE_ECHO, 0xbb), now).verdict,
        Verdict::Established
    );
    // ABORT from the client carrying the server's own tag (T bit set).
    assert_eq!(
        t.lookup(&sctp(c, 1, s, 2, ABORT, 0xaa), now).verdict,
        Verdict::Established
    );
    assert_eq!(sctp_state(&t), SctpState::Closed);
}

#[test]
fn zones_separate_identical_tuples() {
    let t = small_table();
    let q = udp("10.0.0.1", 1, "10.0.0.2", 2);
    t.commit(&q.in_zone(1), Nat::NONE, secs(0)).unwrap();
    assert_eq!(t.lookup(&q.in_zone(2), secs(0)).verdict, Verdict::New);
    t.commit(&q.in_zone(2), Nat::NONE, secs(0)).unwrap();
    assert_eq!(t.occupancy(), 2);
    assert_eq!((t.zone_occupancy(1), t.zone_occupancy(2)), (1, 1));
    assert_eq!(t.flush(&Filter::Zone(1)), 1);
    assert_eq!(t.lookup(&q.in_zone(1), secs(0)).verdict, Verdict::New);
    assert_eq!(
        t.lookup(&q.in_zone(2), secs(0)).verdict,
        Verdict::Established
    );
    t.check_invariants().unwrap();
}

#[test]
fn list_and_flush_by_address_and_tuple() {
    let t = small_table();
    for i in 0..10u16 {
        t.commit(
            &udp("10.0.0.1", 100 + i, "10.0.0.2", 53),
            Nat::NONE,
            secs(0),
        )
        .unwrap();
        t.commit(
            &udp("10.0.0.3", 100 + i, "10.0.0.4", 53),
            Nat::NONE,
            secs(0),
        )
        .unwrap();
    }
    assert_eq!(t.entries(&Filter::All).len(), 20);
    assert_eq!(t.entries(&Filter::Address(ip("10.0.0.2"))).len(), 10);
    let tuple = Tuple::new(ip("10.0.0.4"), ip("10.0.0.3"), IpProtocol::Udp, 53, 105);
    assert_eq!(
        t.entries(&Filter::Tuple { zone: 0, tuple }).len(),
        1,
        "found by its reply tuple"
    );
    assert_eq!(t.flush(&Filter::Tuple { zone: 0, tuple }), 1);
    assert_eq!(t.flush(&Filter::Address(ip("10.0.0.1"))), 10);
    assert_eq!(t.occupancy(), 9);
    assert_eq!(t.flush(&Filter::All), 9);
    assert_eq!(t.stats().removals, 20);
    t.check_invariants().unwrap();
}

#[test]
fn other_protocols_are_tracked_generically() {
    let t = Table::new(&Config {
        shards: 2,
        max_entries: 8,
        ..Config::default()
    });
    let gre = PacketMeta {
        zone: 0,
        src: ip("10.0.0.1"),
        dst: ip("10.0.0.2"),
        l4: L4::Other(IpProtocol::Unknown(47)),
        len: 100,
    };
    let back = PacketMeta {
        src: gre.dst,
        dst: gre.src,
        ..gre
    };
    assert_eq!(t.lookup(&gre, secs(0)).verdict, Verdict::New);
    t.commit(&gre, Nat::NONE, secs(0)).unwrap();
    assert_eq!(t.lookup(&back, secs(1)).verdict, Verdict::Reply);
    // Mixed families are malformed, never a panic.
    let bad = PacketMeta {
        dst: ip("::1"),
        ..gre
    };
    assert_eq!(
        t.lookup(&bad, secs(1)).verdict,
        Verdict::Invalid(InvalidReason::Malformed)
    );
}
