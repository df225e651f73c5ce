//! `parse_frame` over a mixed set of frames (TCP/UDP/ICMP, IPv4/IPv6, 802.1Q/QinQ, VXLAN), built
//! by `podswitch_benches::mixed_frames`. Criterion reports frames/s (`Throughput::Elements`); the
//! ns/frame figure printed after the run divides a separately timed pass by the frame count.
//! Target: ≥ 30 M frames/s per core (≤ 33 ns/frame).

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use podswitch_wire::parse_frame;

fn parse_mixed(c: &mut Criterion) {
    let frames = podswitch_benches::mixed_frames();
    let n = frames.len();
    let mut group = c.benchmark_group("parse_frame");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("mixed", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for f in &frames {
                if let Ok(h) = parse_frame(black_box(f)) {
                    acc = acc.wrapping_add(u32::from(h.payload_offset));
                }
            }
            acc
        });
    });
    group.finish();

    // A plain ns/frame figure for the report, over 200k passes.
    let passes = 200_000u32;
    let start = Instant::now();
    let mut acc = 0u32;
    for _ in 0..passes {
        for f in &frames {
            if let Ok(h) = parse_frame(black_box(f)) {
                acc = acc.wrapping_add(u32::from(h.payload_offset));
            }
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / (f64::from(passes) * n as f64);
    black_box(acc);
    println!(
        "parse_frame/mixed: {ns:.2} ns/frame ({:.1} M frames/s)",
        1e3 / ns
    );
}

criterion_group!(benches, parse_mixed);
criterion_main!(benches);
