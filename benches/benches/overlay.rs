//! VXLAN costs per packet on a 64-byte inner frame: `Overlay::encap` over an IPv4 underlay (prebuilt
//! header copy + length/checksum/port patch) and over IPv6 (adds the UDP checksum over the inner
//! frame), and `Overlay::decap` of a parsed outer frame (alone, and with `parse_frame`).
//! Target: well under 50 ns/packet. Criterion reports packets/s (`Throughput::Elements`).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use podswitch_overlay::{LocalVtep, Overlay, Vtep};
use podswitch_wire::ethernet::Address;
use podswitch_wire::parse_frame;

/// The daemon's allocator: tables of 4 MiB and more on transparent huge pages.
#[global_allocator]
static ALLOC: podswitch_xdp::HugePageAlloc = podswitch_xdp::HugePageAlloc;

const HEADROOM: usize = 128;
const INNER: usize = 64;
const BATCH: usize = 32;

fn node(me: IpAddr, peer: IpAddr) -> Overlay {
    let mut o = Overlay::new(LocalVtep::new(me, Address([2, 0, 0, 0, 0, 1]), 1500, &[42])).unwrap();
    o.add_vtep(Vtep {
        id: 1,
        ip: peer,
        next_hop_mac: Address([2, 0, 0, 0, 0, 2]),
        vni: 42,
        gbp: false,
    })
    .unwrap();
    o
}

/// `BATCH` buffers, each with a 64-byte inner frame after `HEADROOM` bytes.
fn buffers() -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|i| {
            let mut b = vec![0u8; HEADROOM + INNER];
            b[HEADROOM..HEADROOM + 14]
                .copy_from_slice(&[2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 8, 0x08, 0x00]);
            for (j, x) in b[HEADROOM + 14..].iter_mut().enumerate() {
                *x = (i * 7 + j) as u8;
            }
            b
        })
        .collect()
}

fn encap(c: &mut Criterion) {
    let mut g = c.benchmark_group("vxlan");
    g.throughput(Throughput::Elements(BATCH as u64));
    let v4 = node(
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)),
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2)),
    );
    let v6 = node(
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
    );
    for (name, o) in [("encap_v4", &v4), ("encap_v6", &v6)] {
        let mut bufs = buffers();
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut acc = 0usize;
                for (i, buf) in bufs.iter_mut().enumerate() {
                    let r = o.encap(
                        1,
                        black_box(buf),
                        HEADROOM,
                        INNER,
                        i as u32 * 0x9e37,
                        46,
                        None,
                    );
                    acc += r.unwrap_or(0);
                }
                acc
            });
        });
    }

    // Decap: frames encapsulated by node 1, received by node 2.
    let rx = node(
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2)),
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)),
    );
    let frames: Vec<Vec<u8>> = buffers()
        .into_iter()
        .enumerate()
        .map(|(i, mut b)| {
            let s = v4
                .encap(1, &mut b, HEADROOM, INNER, i as u32, 0, None)
                .unwrap();
            b[s..].to_vec()
        })
        .collect();
    let parsed: Vec<_> = frames.iter().map(|f| parse_frame(f).unwrap()).collect();
    g.bench_function("decap_v4", |b| {
        b.iter(|| {
            let mut acc = 0usize;
            for (f, h) in frames.iter().zip(&parsed) {
                if let Ok(d) = rx.decap(black_box(f), black_box(h)) {
                    acc += d.inner_offset;
                }
            }
            acc
        });
    });
    g.bench_function("parse_frame+decap_v4", |b| {
        b.iter(|| {
            let mut acc = 0usize;
            for f in &frames {
                if let Ok(h) = parse_frame(black_box(f))
                    && let Ok(d) = rx.decap(f, &h)
                {
                    acc += d.inner_offset;
                }
            }
            acc
        });
    });
    g.finish();
}

criterion_group!(benches, encap);
criterion_main!(benches);
