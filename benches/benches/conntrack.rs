//! Conntrack throughput, per core: established lookup+update (hash path and flow-cache handle
//! path, one call per packet and the batch calls) with 1 000 and 1 000 000 entries, new
//! connection (lookup miss + commit), and two threads (each pinned to its own CPU) against one
//! on the same table. Criterion reports packets/s (`Throughput::Elements`).
//! Targets: established ≥ 20 M/s; new ≥ 2 M/s; 1 M entries ≥ 60 % of the 1 k rate; 2 threads
//! ≥ 1.6× one. Both sizes visit their packets in one uniformly random order over all entries
//! (slots are handed out in commit order, so any order correlated with it would read the large
//! table almost sequentially and flatter it), and both do the same work per iteration.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Barrier;
use std::time::{Duration, Instant as WallClock};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use podswitch_conntrack::{
    Config, Handle, Instant, Nat, PacketMeta, Table, TcpFlags, TcpMeta, Verdict,
};

/// The daemon's allocator: tables of 4 MiB and more on transparent huge pages.
#[global_allocator]
static ALLOC: podswitch_xdp::HugePageAlloc = podswitch_xdp::HugePageAlloc;

const NOW: Instant = Instant(1_000_000_000);

fn addr(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i >> 12)))
}

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

/// Client `i`'s 4-tuple: one server, clients spread over addresses and ports.
fn ends(i: u32) -> (IpAddr, u16, IpAddr, u16) {
    (
        addr(i),
        1024 + (i & 0xfff) as u16,
        IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1)),
        443,
    )
}

/// A table with `n` established connections and, for each, one ACK per direction (with the
/// handle a flow cache would hold), in a scattered order.
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
            .unwrap();
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
        pkts.push((a, la.handle.unwrap()));
        pkts.push((b, lb.handle.unwrap()));
    }
    shuffle(&mut pkts);
    (t, pkts)
}

/// Fisher–Yates with xorshift (deterministic): a uniformly random visiting order.
fn shuffle<T>(v: &mut [T]) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

fn run_lookups(t: &Table, pkts: &[(PacketMeta, Handle)]) -> u32 {
    let mut ok = 0u32;
    for (m, _) in pkts {
        ok += u32::from(!matches!(
            t.lookup(black_box(m), NOW).verdict,
            Verdict::Invalid(_)
        ));
    }
    ok
}

fn run_updates(t: &Table, pkts: &[(PacketMeta, Handle)]) -> u32 {
    let mut ok = 0u32;
    for (m, h) in pkts {
        ok += u32::from(t.update(*h, black_box(m), NOW).is_some());
    }
    ok
}

/// Packets per batch call, as the datapath's receive batches.
const BATCH: usize = 32;

fn run_lookup_batches(t: &Table, metas: &[PacketMeta]) -> u32 {
    let mut out = [t.lookup(&metas[0], NOW); BATCH];
    let mut ok = 0u32;
    for chunk in metas.chunks(BATCH) {
        let out = &mut out[..chunk.len()];
        t.lookup_batch(black_box(chunk), NOW, out);
        ok += out
            .iter()
            .filter(|l| !matches!(l.verdict, Verdict::Invalid(_)))
            .count() as u32;
    }
    ok
}

fn run_update_batches(t: &Table, items: &[(Handle, PacketMeta)]) -> u32 {
    let mut out = [None; BATCH];
    let mut ok = 0u32;
    for chunk in items.chunks(BATCH) {
        let out = &mut out[..chunk.len()];
        t.update_batch(black_box(chunk), NOW, out);
        ok += out.iter().filter(|l| l.is_some()).count() as u32;
    }
    ok
}

fn established_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack/established");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    // Every iteration visits 2 M packets: all of the 1 M-entry table's (both directions of
    // every connection, once each), the 1 k table's a thousand times over.
    const WINDOW: usize = 2_000_000;
    for &n in &[1_000u32, 1_000_000] {
        let (t, pkts) = established(n, 256);
        let window: Vec<_> = pkts.iter().copied().cycle().take(WINDOW).collect();
        drop(pkts);
        let metas: Vec<PacketMeta> = window.iter().map(|&(m, _)| m).collect();
        let items: Vec<(Handle, PacketMeta)> = window.iter().map(|&(m, h)| (h, m)).collect();
        g.throughput(Throughput::Elements(window.len() as u64));
        g.bench_with_input(BenchmarkId::new("lookup", n), &window, |b, w| {
            b.iter(|| run_lookups(&t, w));
        });
        g.bench_with_input(BenchmarkId::new("update_by_handle", n), &window, |b, w| {
            b.iter(|| run_updates(&t, w));
        });
        g.bench_with_input(BenchmarkId::new("lookup_batch", n), &metas, |b, w| {
            b.iter(|| run_lookup_batches(&t, w));
        });
        g.bench_with_input(BenchmarkId::new("update_batch", n), &items, |b, w| {
            b.iter(|| run_update_batches(&t, w));
        });
    }
    g.finish();
}

fn new_connection_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack/new");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    const BATCH: u32 = 10_000;
    let t = Table::new(&Config {
        max_entries: 4 * BATCH,
        shards: 256,
        ..Config::default()
    });
    let mut epoch = 0u32;
    g.throughput(Throughput::Elements(u64::from(BATCH)));
    g.bench_function("lookup_miss_and_commit", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                epoch = epoch.wrapping_add(1);
                let syns: Vec<_> = (0..BATCH)
                    .map(|i| {
                        let (cl, _, s, sp) = ends(i + (epoch & 0xff) * BATCH);
                        seg(
                            cl,
                            (epoch >> 8) as u16 ^ i as u16,
                            s,
                            sp,
                            TcpFlags::SYN,
                            i,
                            0,
                        )
                    })
                    .collect();
                let mut handles = Vec::with_capacity(BATCH as usize);
                let start = WallClock::now();
                for m in &syns {
                    if t.lookup(black_box(m), NOW).verdict == Verdict::New
                        && let Ok(l) = t.commit(m, Nat::NONE, NOW)
                    {
                        handles.push(l.handle);
                    }
                }
                total += start.elapsed();
                for h in handles.into_iter().flatten() {
                    t.remove(h);
                }
            }
            total
        });
    });
    g.finish();
}

fn threads_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack/threads");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let (t, pkts) = established(10_000, 256);
    // Each worker gets its own flows (as RSS spreads them), both directions of each; a shared
    // table, so shards are still shared between the threads.
    let halves: [Vec<(PacketMeta, Handle)>; 2] = [0, 1].map(|k| {
        pkts.iter()
            .filter(|(m, _)| {
                let port = match m.l4 {
                    podswitch_conntrack::L4::Tcp(tcp) => tcp.src_port.max(tcp.dst_port),
                    _ => 0,
                };
                usize::from(port) % 2 == k
            })
            .copied()
            .collect()
    });
    let metas: [Vec<PacketMeta>; 2] = [0, 1].map(|k| halves[k].iter().map(|&(m, _)| m).collect());
    const PER_THREAD: usize = 1_000_000;
    for batched in [false, true] {
        for threads in [1usize, 2] {
            let name = if batched { "lookup_batch" } else { "lookup" };
            g.throughput(Throughput::Elements((PER_THREAD * threads) as u64));
            g.bench_function(BenchmarkId::new(name, threads), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let barrier = Barrier::new(threads);
                        let start = std::sync::Mutex::new(None::<WallClock>);
                        std::thread::scope(|sc| {
                            for (i, (half, metas)) in
                                halves.iter().zip(&metas).take(threads).enumerate()
                            {
                                let (t, barrier, start) = (&t, &barrier, &start);
                                sc.spawn(move || {
                                    pin(i);
                                    barrier.wait();
                                    start.lock().unwrap().get_or_insert_with(WallClock::now);
                                    let ok = if batched {
                                        lookup_batches_cycled(t, metas, PER_THREAD)
                                    } else {
                                        lookups_cycled(t, half, PER_THREAD)
                                    };
                                    black_box(ok);
                                });
                            }
                        });
                        let s = start.lock().unwrap().unwrap();
                        total += s.elapsed();
                    }
                    total
                });
            });
        }
    }
    g.finish();
}

/// Pins the calling thread to CPU `i` (modulo the CPUs this process may use), as the daemon
/// pins worker `i` to `workers.cpus[i]`. Unpinned, the scheduler sometimes ran both workers on
/// one CPU of this 2-CPU machine for a whole measurement, and two threads measured as one.
fn pin(i: usize) {
    let Ok(allowed) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) else {
        return;
    };
    let cpus: Vec<usize> = (0..nix::sched::CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect();
    let Some(&cpu) = cpus.get(i % cpus.len().max(1)) else {
        return;
    };
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        // Best effort: unpinned, the bench still measures, only less steadily.
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

fn lookups_cycled(t: &Table, pkts: &[(PacketMeta, Handle)], count: usize) -> u32 {
    let mut ok = 0u32;
    for (m, _) in pkts.iter().cycle().take(count) {
        ok += u32::from(t.lookup(black_box(m), NOW).verdict != Verdict::New);
    }
    ok
}

fn lookup_batches_cycled(t: &Table, metas: &[PacketMeta], count: usize) -> u32 {
    let mut done = 0;
    let mut ok = 0;
    while done < count {
        let n = metas.len().min(count - done);
        ok += run_lookup_batches(t, &metas[..n]);
        done += n;
    }
    ok
}

criterion_group!(
    benches,
    established_bench,
    new_connection_bench,
    threads_bench
);
criterion_main!(benches);
