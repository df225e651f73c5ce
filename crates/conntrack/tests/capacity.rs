//! Limits, eviction order and SYN floods.
mod common;

use common::*;
use podswitch_conntrack::{
    CommitError, Config, ConnState, Filter, Nat, RefusalReason, Table, TcpState, Verdict,
};

fn assure_udp(t: &Table, zone: u16, i: u16) {
    let q = udp("10.0.0.1", 1000 + i, "10.0.0.2", 53).in_zone(zone);
    t.commit(&q, Nat::NONE, secs(0)).unwrap();
    let r = udp("10.0.0.2", 53, "10.0.0.1", 1000 + i).in_zone(zone);
    assert_eq!(t.lookup(&r, secs(0)).verdict, Verdict::Reply);
}

#[test]
fn eviction_order_unassured_then_closing_then_refuse() {
    let t = Table::new(&Config {
        max_entries: 4,
        shards: 1,
        ..Config::default()
    });
    assure_udp(&t, 0, 1);
    assure_udp(&t, 0, 2);
    let mut closing = Session::new("10.0.0.5", 1, "10.0.0.6", 80);
    closing.handshake(&t, secs(0));
    closing.send(&t, true, FIN, 0, secs(0));
    let mut half = Session::new("10.0.0.7", 1, "10.0.0.8", 80);
    half.send(&t, true, SYN, 0, secs(0));
    assert_eq!(t.occupancy(), 4);

    let mut s1 = Session::new("10.9.0.1", 1, "10.0.0.8", 80);
    assert_eq!(s1.send(&t, true, SYN, 0, secs(1)).verdict, Verdict::New);
    let left: Vec<_> = t
        .entries(&Filter::All)
        .into_iter()
        .map(|e| e.original.src)
        .collect();
    assert!(
        !left.contains(&ip("10.0.0.7")),
        "the half-open entry went first"
    );
    assert!(left.contains(&ip("10.0.0.5")));
    // Next: the new SYN entry is unassured too and is the oldest unassured one now.
    let mut s2 = Session::new("10.9.0.2", 1, "10.0.0.8", 80);
    assert_eq!(s2.send(&t, true, SYN, 0, secs(1)).verdict, Verdict::New);
    let left: Vec<_> = t
        .entries(&Filter::All)
        .into_iter()
        .map(|e| e.original.src)
        .collect();
    assert!(!left.contains(&ip("10.9.0.1")) && left.contains(&ip("10.0.0.5")));
    // Make the newest one established: only the closing entry is evictable now.
    assert_eq!(
        s2.send(&t, false, SYNACK, 0, secs(1)).verdict,
        Verdict::Reply
    );
    assert_eq!(
        s2.send(&t, true, ACK, 0, secs(1)).verdict,
        Verdict::Established
    );
    let mut s3 = Session::new("10.9.0.3", 1, "10.0.0.8", 80);
    assert_eq!(s3.send(&t, true, SYN, 0, secs(1)).verdict, Verdict::New);
    assert!(
        t.entries(&Filter::All)
            .iter()
            .all(|e| e.state != ConnState::Tcp(TcpState::FinWait))
    );
    // s3 is half-open; make it established too: now nothing is evictable.
    s3.send(&t, false, SYNACK, 0, secs(1));
    s3.send(&t, true, ACK, 0, secs(1));
    let syn = Session::new("10.9.0.4", 1, "10.0.0.8", 80).meta(true, SYN, 0);
    assert_eq!(
        t.commit(&syn, Nat::NONE, secs(1)),
        Err(CommitError::Refused(RefusalReason::TableFull))
    );
    let st = t.stats();
    assert_eq!(st.evictions, 3);
    assert_eq!(st.refused(RefusalReason::TableFull), 1);
    assert_eq!(t.occupancy(), 4);
    t.check_invariants().unwrap();
}

#[test]
fn per_zone_limits() {
    let t = Table::new(&Config {
        max_entries: 1000,
        shards: 8,
        zone_limits: vec![(5, 3)],
        default_zone_limit: 100,
        ..Config::default()
    });
    for i in 0..3 {
        assure_udp(&t, 5, i);
    }
    let q = udp("10.0.0.1", 999, "10.0.0.2", 53);
    assert_eq!(
        t.commit(&q.in_zone(5), Nat::NONE, secs(0)),
        Err(CommitError::Refused(RefusalReason::ZoneFull))
    );
    assert_eq!(t.zone_occupancy(5), 3);
    // Other zones have their own (default) limit.
    for i in 0..100 {
        t.commit(
            &udp("10.0.0.1", 2000 + i, "10.0.0.2", 53).in_zone(6),
            Nat::NONE,
            secs(0),
        )
        .unwrap();
    }
    assert_eq!(t.zone_occupancy(6), 100);
    // Zone 6's unreplied entries are evictable within the zone: the 101st replaces one of them
    // (the oldest of its shard).
    t.commit(
        &udp("10.0.0.1", 9999, "10.0.0.2", 53).in_zone(6),
        Nat::NONE,
        secs(0),
    )
    .unwrap();
    assert_eq!(t.zone_occupancy(6), 100);
    let gone = (0..100)
        .filter(|i| {
            t.lookup(
                &udp("10.0.0.1", 2000 + i, "10.0.0.2", 53).in_zone(6),
                secs(0),
            )
            .verdict
                == Verdict::New
        })
        .count();
    assert_eq!(gone, 1);
    assert_eq!(t.stats().refused(RefusalReason::ZoneFull), 1);
    assert_eq!(t.zone_occupancy(5) + t.zone_occupancy(6), t.occupancy());
    t.check_invariants().unwrap();
}

#[test]
fn syn_flood_never_pushes_out_established_connections() {
    const ESTABLISHED: u16 = 10_000;
    let t = Table::new(&Config {
        max_entries: 12_000,
        shards: 256,
        ..Config::default()
    });
    let mut conns = Vec::new();
    for i in 0..ESTABLISHED {
        let mut s = Session::new(
            &format!("10.1.{}.{}", i / 250, i % 250 + 1),
            30000 + i,
            "10.0.0.80",
            80,
        );
        s.handshake(&t, secs(0));
        conns.push(s);
    }
    assert_eq!(t.occupancy(), u32::from(ESTABLISHED));
    let mut refused = 0;
    let mut round = 0u32;
    for wave in 0..5u32 {
        // 10 000 spoofed SYNs per wave...
        for j in 0..10_000u32 {
            let src = format!("172.{}.{}.{}", 16 + wave, j / 250 % 250, j % 250 + 1);
            let syn =
                Session::new(&src, (j % 60000) as u16 + 1024, "10.0.0.80", 80).meta(true, SYN, 0);
            if t.lookup(&syn, secs(1)).verdict == Verdict::New
                && t.commit(&syn, Nat::NONE, secs(1)).is_err()
            {
                refused += 1;
            }
            // ...interleaved with traffic of every established connection, both ways.
            let n = conns.len();
            let s = &mut conns[j as usize % n];
            assert_eq!(
                s.send(&t, true, PSHACK, 100, secs(1)).verdict,
                Verdict::Established
            );
            assert_eq!(s.send(&t, false, ACK, 0, secs(1)).verdict, Verdict::Reply);
        }
        assert!(t.occupancy() <= 12_000);
        round += 1;
    }
    assert_eq!(round, 5);
    let st = t.stats();
    assert!(
        st.evictions >= 40_000,
        "flood entries were recycled: {}",
        st.evictions
    );
    assert_eq!(
        refused,
        st.refusals.iter().sum::<u64>(),
        "every refusal is counted"
    );
    let established = t
        .entries(&Filter::All)
        .iter()
        .filter(|e| e.state == ConnState::Tcp(TcpState::Established))
        .count();
    assert_eq!(established, usize::from(ESTABLISHED));
    t.check_invariants().unwrap();
}
