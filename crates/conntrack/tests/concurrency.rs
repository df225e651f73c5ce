//! Several threads hammering the same connections from both directions.
mod common;

use common::*;
use podswitch_conntrack::{Config, Filter, Nat, PacketMeta, Table, Verdict};

fn classify(t: &Table, m: &PacketMeta) -> Verdict {
    let l = t.lookup(m, secs(1));
    if l.verdict == Verdict::New {
        t.commit(m, Nat::NONE, secs(1))
            .expect("room for all")
            .verdict
    } else {
        l.verdict
    }
}

#[test]
fn racing_creation_from_both_directions_makes_one_entry_each() {
    const CONNS: u16 = 3000;
    const ROUNDS: u64 = 5;
    let t = Table::new(&Config {
        max_entries: 8192,
        shards: 256,
        ..Config::default()
    });
    let q = |i: u16| udp("10.0.0.1", 1000 + i, "10.0.0.2", 53);
    let r = |i: u16| udp("10.0.0.2", 53, "10.0.0.1", 1000 + i);
    std::thread::scope(|sc| {
        for th in 0..4u16 {
            let t = &t;
            sc.spawn(move || {
                for _ in 0..ROUNDS {
                    for k in 0..CONNS {
                        // Threads walk the connections in different orders.
                        let i = if th < 2 { k } else { CONNS - 1 - k };
                        let m = if th % 2 == 0 { q(i) } else { r(i) };
                        let v = classify(t, &m);
                        assert!(
                            matches!(v, Verdict::New | Verdict::Established | Verdict::Reply),
                            "{v:?}"
                        );
                    }
                }
            });
        }
    });
    assert_eq!(
        t.occupancy(),
        u32::from(CONNS),
        "no lost or duplicated entries"
    );
    t.check_invariants().unwrap();
    let entries = t.entries(&Filter::All);
    assert_eq!(entries.len(), usize::from(CONNS));
    for e in &entries {
        assert_eq!(
            e.packets[0] + e.packets[1],
            4 * ROUNDS,
            "every packet counted once: {e:?}"
        );
    }
    let st = t.stats();
    assert_eq!(st.commits, u64::from(CONNS));
}

#[test]
fn tcp_data_from_both_sides_on_two_threads() {
    const CONNS: usize = 500;
    let t = Table::new(&Config {
        max_entries: 4096,
        shards: 256,
        ..Config::default()
    });
    let mut sessions: Vec<Session> = (0..CONNS)
        .map(|i| {
            Session::new(
                &format!("10.2.{}.{}", i / 200, i % 200 + 1),
                20000 + i as u16,
                "10.0.0.9",
                443,
            )
        })
        .collect();
    for s in &mut sessions {
        s.handshake(&t, secs(0));
    }
    let (clients, servers) = (sessions.clone(), sessions);
    std::thread::scope(|sc| {
        let t = &t;
        sc.spawn(move || {
            let mut cs = clients;
            for _ in 0..100 {
                for s in &mut cs {
                    assert_eq!(
                        s.send(t, true, PSHACK, 100, secs(1)).verdict,
                        Verdict::Established
                    );
                }
            }
        });
        sc.spawn(move || {
            let mut ss = servers;
            for _ in 0..100 {
                for s in &mut ss {
                    assert_eq!(
                        s.send(t, false, PSHACK, 200, secs(1)).verdict,
                        Verdict::Reply
                    );
                }
            }
        });
    });
    t.check_invariants().unwrap();
    let entries = t.entries(&Filter::All);
    assert_eq!(entries.len(), CONNS);
    for e in entries {
        // Handshake: 2 original + 1 reply; then 100 each way.
        assert_eq!(e.packets, [102, 101]);
    }
}
