//! Runs N batches of 32 established local TCP frames (64 bytes) through one worker, for
//! `perf stat` cycle counts independent of machine load: cycles/packet =
//! (cycles(N) − cycles(0)) / (32 N). Usage: `pps <batches> [local|encap|new]`; `new` sends a SYN
//! of a new connection in every frame (slow path; the table is flushed every 8192 batches, and the
//! median wall time per packet of those rounds, flushes excluded, is printed); `pps <batches> flows <n>`
//! spreads established frames over `n` flows (16 clients, mid-stream pickup) in a scattered order.

use std::hint::black_box;
use std::net::IpAddr;

use podswitch_conntrack::Instant;
use podswitch_datapath::Batch;
use podswitch_datapath::testing::frames::{IpFrame, tcp_flags};
use podswitch_datapath::testing::{Pod, ROUTER_MAC, TestNode, VNI};
use podswitch_overlay::Vtep;
use podswitch_policy::EndpointKind;
use podswitch_wire::ethernet::Address;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mode = args.next().unwrap_or_default();
    let remote = mode == "encap";
    if mode == "new" {
        return new_connections(n);
    }
    if mode == "flows" {
        let flows = args
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or(1_000_000);
        return many_flows(n, flows);
    }
    let ip = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0a10_0000 | i));
    let mac = |i: u8| Address([0x0a, 0, 0, 0, 0, i]);
    let mut node = TestNode::builder()
        .pod(Pod::new("a", "c", 1, mac(1), &[ip(1)]))
        .pod(Pod::new("b", "s", 2, mac(2), &[ip(2)]))
        .vtep(Vtep {
            id: 1,
            ip: "192.168.0.2".parse().expect("ip"),
            next_hop_mac: Address([2, 0, 0, 0, 2, 1]),
            vni: VNI,
            gbp: false,
        })
        .remote(
            Pod::new("a", "r", 0, mac(3), &[ip(3)]),
            EndpointKind::Pod,
            1,
        )
        .build()
        .expect("node");
    let now = Instant::from_secs(5);
    let dst = if remote { ip(3) } else { ip(2) };
    let seg = |flags, seq, ack| {
        let mut f =
            IpFrame::tcp(mac(1), ROUTER_MAC, ip(1), dst, 40000, 80, flags, seq, ack).build();
        f.resize(64, 0);
        f
    };
    node.inject(1, &seg(tcp_flags::SYN, 100, 0), now);
    if !remote {
        let mut sa = IpFrame::tcp(
            mac(2),
            ROUTER_MAC,
            ip(2),
            ip(1),
            80,
            40000,
            tcp_flags::SYN | tcp_flags::ACK,
            900,
            101,
        )
        .build();
        sa.resize(64, 0);
        node.inject(2, &sa, now);
    }
    let f = if remote {
        seg(tcp_flags::SYN, 100, 0)
    } else {
        seg(tcp_flags::ACK, 101, 901)
    };
    let mut batch = Batch::new();
    for _ in 0..n {
        batch.clear();
        for _ in 0..32 {
            batch.push(1, &f);
        }
        node.worker().process(black_box(&mut batch), now);
    }
    let s = node.stats();
    println!("hits {} misses {}", s.cache_hits, s.cache_misses);
}

fn new_connections(n: usize) {
    let ip = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0a10_0000 | i));
    let mac = |i: u8| Address([0x0a, 0, 0, 0, 0, i]);
    let mut node = TestNode::builder()
        .pod(Pod::new("a", "c", 1, mac(1), &[ip(1)]))
        .pod(Pod::new("b", "s", 2, mac(2), &[ip(2)]).label("app", "db"))
        .conntrack(podswitch_conntrack::Config {
            max_entries: 1 << 19,
            shards: 256,
            ..podswitch_conntrack::Config::default()
        })
        .cache_capacity(1 << 16)
        .build()
        .expect("node");
    let now = Instant::from_secs(5);
    let syns: Vec<Vec<u8>> = (0..32 * 8192u32)
        .map(|k| {
            let mut f = IpFrame::tcp(
                mac(1),
                ROUTER_MAC,
                ip(1),
                ip(2),
                (k >> 3) as u16 | 1,
                80 + (k & 7) as u16,
                tcp_flags::SYN,
                100,
                0,
            )
            .build();
            f.resize(64, 0);
            f
        })
        .collect();
    let ct = std::sync::Arc::clone(node.conntrack());
    let mut batch = Batch::new();
    // Wall time of each round of 8192 batches, flush excluded; the median is printed.
    let mut rounds = Vec::new();
    let mut t = std::time::Instant::now();
    for b in 0..n {
        if b % 8192 == 0 {
            if b > 0 {
                rounds.push(t.elapsed().as_nanos() as f64 / (8192.0 * 32.0));
            }
            ct.flush(&podswitch_conntrack::Filter::All);
            t = std::time::Instant::now();
        }
        batch.clear();
        let at = (b % 8192) * 32;
        for f in &syns[at..at + 32] {
            batch.push(1, f);
        }
        node.worker().process(black_box(&mut batch), now);
    }
    rounds.sort_by(f64::total_cmp);
    if let (Some(lo), Some(m)) = (rounds.first(), rounds.get(rounds.len() / 2)) {
        println!(
            "new connections: median {m:.1} ns/packet (best {lo:.1}) over {} rounds",
            rounds.len()
        );
    }
    let s = node.stats();
    println!(
        "misses {} drops {}",
        s.cache_misses,
        s.ports
            .values()
            .map(podswitch_datapath::PortStats::drops_total)
            .sum::<u64>()
    );
}

fn many_flows(n: usize, flows: u32) {
    const CLIENTS: u32 = 16;
    let ip = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0a10_0000 | i));
    let mac = |i: u32| Address([0x0a, 0, 0, 0, 0, i as u8]);
    let mut b = TestNode::builder()
        .pod(Pod::new("b", "s", 100, mac(100), &[ip(100)]))
        .conntrack(podswitch_conntrack::Config {
            max_entries: (flows + flows / 2).max(1024),
            shards: 256,
            tcp_loose: true,
            ..podswitch_conntrack::Config::default()
        })
        .cache_capacity((flows as usize * 2).max(1024));
    for c in 1..=CLIENTS {
        b = b.pod(Pod::new("a", &format!("c{c}"), c, mac(c), &[ip(c)]));
    }
    let mut node = b.build().expect("node");
    let now = Instant::from_secs(5);
    let mut frames: Vec<(u32, Vec<u8>)> = (0..flows)
        .map(|k| {
            let c = 1 + k % CLIENTS;
            let mut f = IpFrame::tcp(
                mac(c),
                ROUTER_MAC,
                ip(c),
                ip(100),
                1024 + (k / CLIENTS) as u16,
                80,
                tcp_flags::ACK,
                101,
                901,
            )
            .build();
            f.resize(64, 0);
            (c, f)
        })
        .collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..frames.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        frames.swap(i, (x % (i as u64 + 1)) as usize);
    }
    // Copies in the scattered order, so the frames' bytes lie in the order they are sent, as
    // in a receive ring (only the flows are scattered, not the frame memory).
    let frames: Vec<(u32, Vec<u8>)> = frames.clone();
    let mut batch = Batch::new();
    for chunk in frames.chunks(32) {
        batch.clear();
        for (p, f) in chunk {
            batch.push(*p, f);
        }
        node.worker().process(&mut batch, now);
    }
    let setup = node.stats().cache_hits;
    let t = std::time::Instant::now();
    let mut at = 0;
    for _ in 0..n {
        batch.clear();
        for _ in 0..32 {
            let (p, f) = &frames[at];
            at = if at + 1 == frames.len() { 0 } else { at + 1 };
            batch.push(*p, f);
        }
        node.worker().process(black_box(&mut batch), now);
    }
    let wall = t.elapsed();
    println!(
        "flows {flows}: hits {} in {wall:?} wall",
        node.stats().cache_hits - setup
    );
}
