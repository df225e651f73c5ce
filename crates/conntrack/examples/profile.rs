//! A small measurement binary for instruction and cache profiles of the table's packet path
//! (the criterion bench measures wall time, which a shared machine makes noisy). Usage:
//! `profile <lookup|update|lookup_batch|update_batch|new|tables> <entries> <ops> [passes] [shards] [burst]`; the work to measure runs in the
//! `measure_*` functions, so `valgrind --tool=callgrind --toggle-collect='profile::measure_*'`
//! counts only it. Mirrors `benches/benches/conntrack.rs` (same tuples, scattered order).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use podswitch_conntrack::{
    Config, Handle, Instant, Nat, PacketMeta, Table, TcpFlags, TcpMeta, Verdict,
};

const NOW: Instant = Instant(1_000_000_000);

fn seg(
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
            ..TcpMeta::default()
        },
    )
}

fn ends(i: u32) -> (IpAddr, u16, IpAddr, u16) {
    (
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i >> 12))),
        1024 + (i & 0xfff) as u16,
        IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1)),
        443,
    )
}

fn established(n: u32, shards: u32) -> (Table, Vec<(PacketMeta, Handle)>) {
    let t = Table::new(&Config {
        max_entries: n + n / 8 + 1024,
        shards,
        ..Config::default()
    });
    let mut pkts = Vec::with_capacity(2 * n as usize);
    for i in 0..n {
        let (c, cp, s, sp) = ends(i);
        t.commit(&seg(c, cp, s, sp, TcpFlags::SYN, 100, 0), Nat::NONE, NOW)
            .expect("commit");
        t.lookup(
            &seg(s, sp, c, cp, TcpFlags::SYN | TcpFlags::ACK, 900, 101),
            NOW,
        );
        let a = seg(c, cp, s, sp, TcpFlags::ACK, 101, 901);
        let b = seg(s, sp, c, cp, TcpFlags::ACK, 901, 101);
        let la = t.lookup(&a, NOW);
        let lb = t.lookup(&b, NOW);
        assert_eq!(
            (la.verdict, lb.verdict),
            (Verdict::Established, Verdict::Reply)
        );
        pkts.push((a, la.handle.expect("handle")));
        pkts.push((b, lb.handle.expect("handle")));
    }
    shuffle(&mut pkts);
    (t, pkts)
}

/// Nanoseconds this thread has run on a CPU (the first field of schedstat): unlike wall time,
/// it does not count the time other engineers' jobs hold the core.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Fisher–Yates with xorshift: a uniformly random visiting order, so a large table is read
/// at random addresses (slots are handed out in commit order, so visiting connections in any
/// order correlated with commit order would read memory almost sequentially).
fn shuffle<T>(v: &mut [T]) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

#[inline(never)]
fn measure_lookups(t: &Table, w: &[(PacketMeta, Handle)]) -> u32 {
    let mut ok = 0;
    for (m, _) in w {
        ok += u32::from(!matches!(
            t.lookup(black_box(m), NOW).verdict,
            Verdict::Invalid(_)
        ));
    }
    ok
}

#[inline(never)]
fn measure_updates(t: &Table, w: &[(PacketMeta, Handle)]) -> u32 {
    let mut ok = 0;
    for (m, h) in w {
        ok += u32::from(t.update(*h, black_box(m), NOW).is_some());
    }
    ok
}

#[inline(never)]
fn measure_lookup_batch(t: &Table, metas: &[PacketMeta]) -> u32 {
    let mut out = [t.lookup(&metas[0], NOW); 32];
    let mut ok = 0;
    for chunk in metas.chunks(32) {
        let out = &mut out[..chunk.len()];
        t.lookup_batch(black_box(chunk), NOW, out);
        ok += out
            .iter()
            .filter(|l| !matches!(l.verdict, Verdict::Invalid(_)))
            .count() as u32;
    }
    ok
}

#[inline(never)]
fn measure_update_batch(t: &Table, items: &[(Handle, PacketMeta)]) -> u32 {
    let mut out = [None; 32];
    let mut ok = 0;
    for chunk in items.chunks(32) {
        let out = &mut out[..chunk.len()];
        t.update_batch(black_box(chunk), NOW, out);
        ok += out.iter().filter(|l| l.is_some()).count() as u32;
    }
    ok
}

#[inline(never)]
fn measure_new(t: &Table, syns: &[PacketMeta]) -> Vec<Handle> {
    let mut hs = Vec::with_capacity(syns.len());
    for m in syns {
        if t.lookup(black_box(m), NOW).verdict == Verdict::New
            && let Ok(l) = t.commit(m, Nat::NONE, NOW)
            && let Some(h) = l.handle
        {
            hs.push(h);
        }
    }
    hs
}

/// Creates `n` tables of the fuzz target's shape (a table per fuzz input).
#[inline(never)]
fn measure_tables(n: usize) -> u32 {
    let mut cap = 0;
    for _ in 0..n {
        let t = Table::new(&Config {
            max_entries: 48,
            shards: 4,
            zone_limits: vec![(1, 8)],
            ..Config::default()
        });
        cap += black_box(&t).capacity();
    }
    cap
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("lookup", String::as_str);
    let n: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let ops: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let start = std::time::Instant::now();
    if mode == "tables" {
        let cpu = cpu_ns();
        black_box(measure_tables(ops));
        println!(
            "tables: {:.1} us per Table::new + drop (cpu)",
            (cpu_ns() - cpu) as f64 / ops as f64 / 1000.0
        );
    } else if mode == "new" {
        let t = Table::new(&Config {
            max_entries: 4 * 10_000,
            shards: 256,
            ..Config::default()
        });
        let syns: Vec<_> = (0..ops as u32)
            .map(|i| {
                let (c, cp, s, sp) = ends(i);
                seg(c, cp, s, sp, TcpFlags::SYN, i, 0)
            })
            .collect();
        let mut done = 0;
        let cpu = cpu_ns();
        for chunk in syns.chunks(10_000) {
            let hs = measure_new(&t, chunk);
            done += hs.len();
            for h in hs {
                t.remove(h);
            }
        }
        let cpu = cpu_ns() - cpu;
        println!(
            "new: {done} committed in {:?}, {:.1} ns/op cpu (with removal)",
            start.elapsed(),
            cpu as f64 / ops as f64
        );
    } else {
        // Optional fifth argument: shard count (256 by default, as in the bench).
        let shards = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(256);
        let (t, pkts) = established(n, shards);
        let setup = start.elapsed();
        // Optional sixth argument: each packet repeated this many times back to back, as a
        // burst of one flow arrives in a receive batch (1 by default: every packet another flow).
        let burst: usize = args.get(6).and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
        let w: Vec<_> = pkts
            .iter()
            .flat_map(|&p| std::iter::repeat_n(p, burst))
            .cycle()
            .take(ops)
            .collect();
        // The batch calls' inputs, built once as a datapath builds them per receive batch.
        let metas: Vec<PacketMeta> = w.iter().map(|&(m, _)| m).collect();
        let items: Vec<(Handle, PacketMeta)> = w.iter().map(|&(m, h)| (h, m)).collect();
        // Several passes; the least CPU time is the one least disturbed by other jobs.
        let reps: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
        let mut best = u64::MAX;
        let mut ok = 0;
        for _ in 0..reps {
            let cpu = cpu_ns();
            ok = match mode {
                "update" => measure_updates(&t, &w),
                "update_batch" => measure_update_batch(&t, &items),
                "lookup_batch" => measure_lookup_batch(&t, &metas),
                _ => measure_lookups(&t, &w),
            };
            best = best.min(cpu_ns() - cpu);
        }
        println!(
            "{mode} n={n}: {ok}/{ops} ok, setup {setup:?}, best of {reps}: {:.1} ns/op cpu",
            best as f64 / ops as f64
        );
    }
}
