//! The batch calls against the per-packet ones: for random packet streams (UDP, UDP with DNAT
//! whose reply lands in another shard, TCP handshakes and stray segments, mixed-family metas,
//! time jumps that expire entries lazily), `lookup_batch` / `update_batch` return exactly what
//! `lookup` / `update` return, packet by packet, and leave the same counters and a consistent
//! table. Half the streams run on a table large enough for batches to start loads ahead.
mod common;

use common::*;
use podswitch_conntrack::{
    CommitError, Config, Direction, Endpoint, Handle, Instant, L4, Lookup, Nat, PacketMeta,
    Rewrite, Table, TcpMeta, Verdict,
};

/// Odd seeds use a table whose slab exceeds the size above which batches start their loads
/// ahead (8 MB), so both code paths are compared.
fn table(seed: u64) -> Table {
    Table::new(&Config {
        max_entries: if seed % 2 == 1 { 65_536 } else { 4096 },
        shards: 64,
        ..Config::default()
    })
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const CONNS: u64 = 48;

/// DNAT target of connection `i` (every fourth connection is translated).
fn dnat(i: u64) -> Option<Endpoint> {
    (i.is_multiple_of(4)).then(|| Endpoint::new(ip(&format!("10.9.0.{}", i % 250 + 1)), 8053))
}

/// A random packet of connection `i`: a UDP query or reply (to the translated address when
/// NATed), a TCP segment of a handshake with arbitrary flags, or a malformed meta.
fn packet(r: &mut Rng) -> (PacketMeta, Nat) {
    let i = r.below(CONNS);
    let port = 1000 + i as u16;
    let nat = Nat {
        snat: None,
        dnat: dnat(i),
    };
    match r.below(8) {
        0..=2 => (udp("10.0.0.1", port, "10.0.0.2", 53), nat),
        3 | 4 => match dnat(i) {
            Some(ep) => (PacketMeta::udp(ep.addr, ip("10.0.0.1"), 8053, port), nat),
            None => (udp("10.0.0.2", 53, "10.0.0.1", port), nat),
        },
        5 | 6 => {
            let s = Session::new("10.1.0.1", port, "10.1.0.2", 80);
            let flags = [SYN, SYNACK, ACK, FIN, RST, PSHACK][r.below(6) as usize];
            let from_client = r.below(2) == 0;
            let mut m = s.meta(from_client, flags, r.below(3) as u32 * 100);
            if let L4::Tcp(TcpMeta { seq, ack, .. }) = &mut m.l4 {
                // Mostly the session's numbers, sometimes a bit off (window checks).
                *seq = seq.wrapping_add(r.below(2) as u32 * 50);
                *ack = ack.wrapping_add(u32::from(flags == SYNACK || flags == ACK));
            }
            (m, Nat::NONE)
        }
        _ => (
            PacketMeta::udp(ip("10.0.0.1"), ip("fd00::1"), port, 53),
            Nat::NONE,
        ),
    }
}

type View = (Verdict, Direction, bool, Option<Rewrite>);

/// A lookup without its handle's slot: a NAT reply resolved after the rest of its group may
/// free an expired entry's slot in another order, so equal tables can hand out other slots.
fn view(l: &Lookup) -> View {
    (l.verdict, l.direction, l.handle.is_some(), l.rewrite)
}

fn commit_news(
    t: &Table,
    batch: &[(PacketMeta, Nat)],
    out: &[Lookup],
    now: Instant,
) -> Vec<Result<View, CommitError>> {
    batch
        .iter()
        .zip(out)
        .filter(|(_, l)| l.verdict == Verdict::New)
        .map(|((m, nat), _)| t.commit(m, *nat, now).map(|l| view(&l)))
        .collect()
}

#[test]
fn lookup_batch_equals_lookup_packet_by_packet() {
    for seed in 1..=40u64 {
        let (a, b) = (table(seed), table(seed));
        let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut now = secs(1);
        for round in 0..60 {
            let len = r.below(40) as usize + 1;
            let batch: Vec<_> = (0..len).map(|_| packet(&mut r)).collect();
            let metas: Vec<_> = batch.iter().map(|(m, _)| *m).collect();
            let one: Vec<Lookup> = metas.iter().map(|m| a.lookup(m, now)).collect();
            let mut many = vec![Lookup { ..one[0] }; len];
            b.lookup_batch(&metas, now, &mut many);
            assert_eq!(
                one.iter().map(view).collect::<Vec<_>>(),
                many.iter().map(view).collect::<Vec<_>>(),
                "seed {seed} round {round}"
            );
            let (ca, cb) = (
                commit_news(&a, &batch, &one, now),
                commit_news(&b, &batch, &many, now),
            );
            assert_eq!(ca, cb, "seed {seed} round {round}: commits");
            now = now.after(std::time::Duration::from_secs(r.below(40)));
        }
        assert_eq!(a.stats(), b.stats(), "seed {seed}");
        b.check_invariants().unwrap();
        assert!(
            b.stats().hits > 0 && b.stats().new > 0,
            "the stream exercised hits and misses"
        );
    }
}

#[test]
fn update_batch_equals_update_packet_by_packet() {
    for seed in 1..=40u64 {
        // `c` takes the datapath's call: prefetch, then `update_batch_prefetched`.
        let (a, b, c) = (table(seed), table(seed), table(seed));
        let mut r = Rng(seed.wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1);
        let mut now = secs(1);
        // Handles a flow cache would hold: learnt from lookups, some going stale later.
        let mut handles: Vec<Handle> = Vec::new();
        let mut updated = 0;
        for round in 0..60 {
            let len = r.below(40) as usize + 1;
            let batch: Vec<_> = (0..len).map(|_| packet(&mut r)).collect();
            let metas: Vec<_> = batch.iter().map(|(m, _)| *m).collect();
            // Learn handles through the per-packet path on both tables alike.
            let la: Vec<_> = metas.iter().map(|m| a.lookup(m, now)).collect();
            let lb: Vec<_> = metas.iter().map(|m| b.lookup(m, now)).collect();
            let lc: Vec<_> = metas.iter().map(|m| c.lookup(m, now)).collect();
            assert_eq!(la, lb);
            assert_eq!(la, lc);
            let news = commit_news(&a, &batch, &la, now);
            assert_eq!(news, commit_news(&b, &batch, &lb, now));
            assert_eq!(news, commit_news(&c, &batch, &lc, now));
            handles.extend(la.iter().filter_map(|l| l.handle));
            if handles.is_empty() {
                continue;
            }
            // Pair packets with random handles: right ones, wrong direction, stale ones.
            let items: Vec<(Handle, PacketMeta)> = (0..len)
                .map(|_| {
                    let h = handles[r.below(handles.len() as u64) as usize];
                    (h, packet(&mut r).0)
                })
                .collect();
            let one: Vec<_> = items.iter().map(|(h, m)| a.update(*h, m, now)).collect();
            let mut many = vec![None; len];
            b.update_batch(&items, now, &mut many);
            assert_eq!(one, many, "seed {seed} round {round}");
            c.prefetch_handles(items.iter().map(|(h, _)| *h));
            let mut warm = vec![None; len];
            c.update_batch_prefetched(&items, now, &mut warm);
            assert_eq!(one, warm, "seed {seed} round {round}, prefetched");
            updated += many.iter().filter(|l| l.is_some()).count();
            now = now.after(std::time::Duration::from_secs(r.below(40)));
        }
        assert!(updated > 0, "seed {seed}: some handles were live");
        assert_eq!(a.stats(), b.stats(), "seed {seed}");
        assert_eq!(a.stats(), c.stats(), "seed {seed}");
        b.check_invariants().unwrap();
        c.check_invariants().unwrap();
    }
}

/// Long batches (more than the prefetch stages hold ahead) and outputs shorter than the input,
/// on a cached table and on one large enough to start loads ahead.
#[test]
fn long_batches_and_short_outputs() {
    for seed in [0, 1] {
        long_batch_and_short_output(&table(seed));
    }
}

fn long_batch_and_short_output(t: &Table) {
    let metas: Vec<_> = (0..101)
        .map(|i| udp("10.0.0.1", 2000 + i, "10.0.0.2", 53))
        .collect();
    for m in &metas {
        t.commit(m, Nat::NONE, secs(1)).unwrap();
    }
    let mut out = vec![t.lookup(&metas[0], secs(1)); metas.len()];
    t.lookup_batch(&metas, secs(2), &mut out);
    assert!(out.iter().all(|l| l.verdict == Verdict::Established));
    // An output shorter than the input processes only that many packets.
    let before = t.stats().lookups;
    t.lookup_batch(&metas, secs(3), &mut out[..3]);
    assert_eq!(t.stats().lookups, before + 3);
    let items: Vec<_> = metas
        .iter()
        .zip(&out)
        .map(|(m, l)| (l.handle.unwrap(), *m))
        .collect();
    let mut up = vec![None; items.len()];
    t.update_batch(&items, secs(4), &mut up);
    assert!(
        up.iter()
            .all(|l| l.is_some_and(|l| l.verdict == Verdict::Established))
    );
}

#[test]
fn threads_batching_the_same_connections_from_both_directions() {
    // A table above the prefetch size, so batches read index slots ahead without locks while
    // other threads write them: four threads with overlapping shard sets must neither deadlock
    // nor lose or duplicate entries.
    const CONNS: u16 = 2000;
    let t = Table::new(&Config {
        max_entries: 65_536,
        shards: 64,
        ..Config::default()
    });
    let q = |i: u16| udp("10.0.0.1", 1000 + i, "10.0.0.2", 53);
    let r = |i: u16| udp("10.0.0.2", 53, "10.0.0.1", 1000 + i);
    std::thread::scope(|sc| {
        for th in 0..4u64 {
            let (t, q, r) = (&t, &q, &r);
            sc.spawn(move || {
                let mut rng = Rng(th * 7919 + 1);
                for _ in 0..400 {
                    let metas: Vec<_> = (0..32)
                        .map(|_| {
                            let i = rng.below(u64::from(CONNS)) as u16;
                            if rng.below(2) == 0 { q(i) } else { r(i) }
                        })
                        .collect();
                    let mut out = vec![t.lookup(&metas[0], secs(1)); metas.len()];
                    t.lookup_batch(&metas, secs(1), &mut out);
                    for (m, l) in metas.iter().zip(&out) {
                        assert!(matches!(
                            l.verdict,
                            Verdict::New | Verdict::Established | Verdict::Reply
                        ));
                        if l.verdict == Verdict::New {
                            t.commit(m, Nat::NONE, secs(1)).expect("room for all");
                        }
                    }
                    let items: Vec<_> = metas
                        .iter()
                        .zip(&out)
                        .filter_map(|(m, l)| Some((l.handle?, *m)))
                        .collect();
                    let mut up = vec![None; items.len()];
                    t.update_batch(&items, secs(1), &mut up);
                }
            });
        }
    });
    t.check_invariants().unwrap();
    // The streams touch every connection (51 200 packets over 2 000 connections, fixed seeds):
    // each has exactly one entry, whichever direction created it.
    assert_eq!(
        t.occupancy(),
        u32::from(CONNS),
        "no lost or duplicated entries"
    );
    assert_eq!(t.stats().commits, u64::from(CONNS));
    for i in 0..CONNS {
        let l = t.lookup(&q(i), secs(1));
        assert!(
            matches!(l.verdict, Verdict::Established | Verdict::Reply),
            "connection {i}: {:?}",
            l.verdict
        );
    }
}
