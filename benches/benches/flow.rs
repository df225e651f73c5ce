//! Flow cache and flow key costs: `FlowKey::hash` and `symmetric_hash` per key,
//! `FlowKey::from_headers` + hash per parsed frame, and `Cache::lookup` hits with 1 / 1 000 /
//! 100 000 / 1 000 000 flows installed (cache sized to twice the flows, rounded to a power of two,
//! so every flow fits). Lookups walk the flows in a shuffled order, 1 024 per iteration, so the
//! large caches are not cache-warm; hashes are precomputed as the datapath computes one per frame
//! and reuses it. Criterion reports lookups/s (`Throughput::Elements`).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use podswitch_flow::{Actions, Cache, DropReason, FlowKey};
use podswitch_wire::parse_frame;

/// The daemon's allocator: tables of 4 MiB and more on transparent huge pages.
#[global_allocator]
static ALLOC: podswitch_xdp::HugePageAlloc = podswitch_xdp::HugePageAlloc;

/// What the datapath will cache: actions plus a handle and counters.
#[derive(Clone, Copy)]
struct Value {
    actions: Actions,
    handle: u64,
    packets: u64,
}

fn key(i: u32) -> FlowKey {
    FlowKey {
        src: u128::from(0x0a00_0000 | (i >> 10)),
        dst: u128::from(0x0a01_0001u32),
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        in_port: i & 7,
        ethertype: 0x0800,
        protocol: 6,
        src_port: 1024 + (i & 0x3ff) as u16,
        dst_port: 443,
        ..FlowKey::default()
    }
}

/// Deterministic Fisher–Yates with xorshift64.
fn shuffle<T>(v: &mut [T]) {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..v.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
}

fn hash(c: &mut Criterion) {
    let keys: Vec<FlowKey> = (0..1024).map(key).collect();
    let frames = podswitch_benches::mixed_frames();
    let headers: Vec<_> = frames.iter().filter_map(|f| parse_frame(f).ok()).collect();
    let mut g = c.benchmark_group("flow_key");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("hash", |b| {
        b.iter(|| keys.iter().fold(0u32, |a, k| a ^ black_box(k).hash()));
    });
    g.bench_function("symmetric_hash", |b| {
        b.iter(|| {
            keys.iter()
                .fold(0u32, |a, k| a ^ black_box(k).symmetric_hash())
        });
    });
    g.throughput(Throughput::Elements(headers.len() as u64));
    g.bench_function("from_headers+hash", |b| {
        b.iter(|| {
            headers.iter().fold(0u32, |a, h| {
                a ^ FlowKey::from_headers(3, black_box(h)).hash()
            })
        });
    });
    g.finish();
}

fn lookup(c: &mut Criterion) {
    const BATCH: usize = 1024;
    let mut g = c.benchmark_group("flow_cache_lookup_hit");
    g.throughput(Throughput::Elements(BATCH as u64));
    for n in [1usize, 1_000, 100_000, 1_000_000] {
        let mut cache = Cache::<Value>::new((2 * n).next_power_of_two()).unwrap();
        let mut keys: Vec<(FlowKey, u32)> = (0..n as u32)
            .map(|i| {
                let k = key(i);
                (k, k.hash())
            })
            .collect();
        for (i, (k, h)) in keys.iter().enumerate() {
            let v = Value {
                actions: Actions::drop(DropReason::PolicyDenied),
                handle: i as u64,
                packets: 0,
            };
            cache.insert(*k, *h, 1, v);
        }
        // Only flows that were not evicted by a bucket overflow are looked up (all, normally).
        keys.retain(|(k, h)| cache.peek(k, *h, 1).is_some());
        let fit = keys.len();
        shuffle(&mut keys);
        let mut cursor = 0;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let mut acc = 0u64;
                for _ in 0..BATCH {
                    let (k, h) = &keys[cursor];
                    cursor += 1;
                    if cursor == fit {
                        cursor = 0;
                    }
                    if let Some(v) = cache.lookup(black_box(k), *h, 1) {
                        v.packets += 1;
                        acc = acc.wrapping_add(v.handle + v.actions.len() as u64);
                    }
                }
                acc
            });
        });
        let s = cache.stats();
        assert_eq!(s.misses, 0, "every looked-up flow must hit");
        eprintln!(
            "flows {n}: capacity {}, resident {fit}, hits {}",
            cache.capacity(),
            s.hits
        );
    }
    g.finish();
}

criterion_group!(benches, hash, lookup);
criterion_main!(benches);
