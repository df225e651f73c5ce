//! The datapath pipeline per core (one worker, batches of 32 frames of 64 bytes): (a) established
//! TCP local pod → pod with 100 policies installed; (b) the same to a remote pod (VXLAN encap);
//! (c) VXLAN decap and local delivery; (d) new connections through the slow path (policy verdict,
//! conntrack commit, cache install); (e) (a) with 1, 1 000, 100 000 and 1 000 000 active flows.
//! Criterion reports packets/s (`Throughput::Elements`). Targets: (a) ≥ 10 Mpps, (b)(c) ≥ 7 Mpps,
//! (d) ≥ 1 M conn/s, (e) 1 M flows ≥ 50 % of the 1-flow rate.
//!
//! Each iteration refills the batch (32 copies of 64 bytes, as a receive ring would) and runs
//! `Worker::process`; frames are rewritten in place, so they are copied fresh every time.

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant as WallClock};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use podswitch_conntrack::{Config as CtConfig, Filter, Instant};
use podswitch_datapath::testing::frames::{self, IpFrame, tcp_flags};
use podswitch_datapath::testing::{
    LOCAL_VTEP, LOCAL_VTEP_MAC, Pod, ROUTER_MAC, TestNode, UPLINK, VNI,
};
use podswitch_datapath::{Batch, Disposition};
use podswitch_overlay::Vtep;
use podswitch_policy::EndpointKind;
use podswitch_wire::ethernet::Address;

/// The daemon's allocator: tables of 4 MiB and more on transparent huge pages.
#[global_allocator]
static ALLOC: podswitch_xdp::HugePageAlloc = podswitch_xdp::HugePageAlloc;

const BATCH: usize = 32;
const NOW: Instant = Instant(5_000_000_000);

fn mac(i: u32) -> Address {
    let b = i.to_be_bytes();
    Address([0x0a, 0, b[0], b[1], b[2], b[3]])
}

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(0x0a10_0000 | i))
}

const VTEP_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 168, 0, 2);
const VTEP_NH: Address = Address([2, 0, 0, 0, 2, 1]);
const REMOTE: u32 = 0x0002_0001;

/// 100 policies selecting the server pod (namespace b, app=db), each allowing one port from
/// namespace a; the last one allows port 80.
fn policies() -> String {
    let mut y = String::new();
    for i in 0..100 {
        let port = if i == 99 { 80 } else { 10_000 + i };
        let _ = write!(
            y,
            "---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: p{i}, namespace: b}}
spec:
  podSelector: {{matchLabels: {{app: db}}}}
  ingress:
  - from:
    - namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: a}}}}
    ports:
    - port: {port}
"
        );
    }
    y
}

/// `clients` pods in namespace a (ports 1..), one server in b (port 1000 + 1... = 900), one remote
/// pod in a behind VTEP 1.
fn node(clients: u32, ct_entries: u32, cache: usize, loose: bool) -> TestNode {
    let mut b = TestNode::builder()
        .namespace("a", &[])
        .namespace("b", &[])
        .pod(Pod::new("b", "db", 900, mac(900), &[ip(900)]).label("app", "db"))
        .vtep(Vtep {
            id: 1,
            ip: IpAddr::V4(VTEP_IP),
            next_hop_mac: VTEP_NH,
            vni: VNI,
            gbp: false,
        })
        .remote(
            Pod::new("a", "r", 0, mac(REMOTE), &[ip(REMOTE)]),
            EndpointKind::Pod,
            1,
        )
        .yaml(&policies())
        .cache_capacity(cache)
        .conntrack(CtConfig {
            max_entries: ct_entries,
            shards: 256,
            tcp_loose: loose,
            ..CtConfig::default()
        });
    for c in 1..=clients {
        b = b.pod(Pod::new("a", &format!("c{c}"), c, mac(c), &[ip(c)]));
    }
    b.build().expect("bench node")
}

/// A 64-byte frame (54 bytes of headers, zero padding).
fn pad64(mut f: Vec<u8>) -> Vec<u8> {
    f.resize(64, 0);
    f
}

fn seg(c: u32, dst: u32, sport: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    pad64(
        IpFrame::tcp(
            mac(c),
            ROUTER_MAC,
            ip(c),
            ip(dst),
            sport,
            80,
            flags,
            seq,
            ack,
        )
        .build(),
    )
}

/// SYN, SYN-ACK, ACK between client `c` and `dst` (local server or remote pod).
fn establish(node: &mut TestNode, c: u32, dst: u32, sport: u16) {
    let syn = seg(c, dst, sport, tcp_flags::SYN, 100, 0);
    assert_eq!(node.inject(c, &syn, NOW).len(), 1, "SYN");
    let sa = pad64(
        IpFrame::tcp(
            mac(dst),
            ROUTER_MAC,
            ip(dst),
            ip(c),
            80,
            sport,
            tcp_flags::SYN | tcp_flags::ACK,
            900,
            101,
        )
        .build(),
    );
    let (port, sa) = if dst == REMOTE {
        (
            UPLINK,
            frames::vxlan_v4(
                VTEP_NH,
                LOCAL_VTEP_MAC,
                VTEP_IP,
                LOCAL_VTEP,
                VNI,
                50000,
                &sa,
            ),
        )
    } else {
        (dst, sa)
    };
    assert_eq!(node.inject(port, &sa, NOW).len(), 1, "SYN-ACK");
    let ack = seg(c, dst, sport, tcp_flags::ACK, 101, 901);
    assert_eq!(node.inject(c, &ack, NOW).len(), 1, "ACK");
}

/// Runs `frames` through the worker in batches of 32, round robin.
fn run(
    c: &mut Criterion,
    group: &str,
    id: BenchmarkId,
    node: &mut TestNode,
    frames: &[(u32, Vec<u8>)],
) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut batch = Batch::new();
    let mut at = 0;
    // Check once that the workload forwards.
    batch.clear();
    for (p, f) in frames.iter().take(BATCH) {
        batch.push(*p, f);
    }
    node.worker().process(&mut batch, NOW);
    assert!(
        batch
            .received()
            .iter()
            .all(|p| matches!(p.disposition(), Disposition::Output(_))),
        "{group}: {:?}",
        batch
            .received()
            .iter()
            .map(podswitch_datapath::Packet::disposition)
            .collect::<Vec<_>>()
    );
    g.bench_function(id, |b| {
        b.iter(|| {
            batch.clear();
            for _ in 0..BATCH {
                let (p, f) = &frames[at];
                at = if at + 1 == frames.len() { 0 } else { at + 1 };
                batch.push(*p, f);
            }
            node.worker().process(black_box(&mut batch), NOW);
        });
    });
    g.finish();
}

fn established_local(c: &mut Criterion) {
    let mut n = node(1, 1 << 16, 1 << 12, false);
    establish(&mut n, 1, 900, 40000);
    let f = vec![(1, seg(1, 900, 40000, tcp_flags::ACK, 101, 901)); 1];
    run(
        c,
        "datapath/a_established_local_100_policies",
        BenchmarkId::from_parameter(1),
        &mut n,
        &f,
    );
}

fn established_remote(c: &mut Criterion) {
    let mut n = node(1, 1 << 16, 1 << 12, false);
    establish(&mut n, 1, REMOTE, 40000);
    let f = vec![(1, seg(1, REMOTE, 40000, tcp_flags::ACK, 101, 901)); 1];
    run(
        c,
        "datapath/b_established_encap",
        BenchmarkId::from_parameter(1),
        &mut n,
        &f,
    );
}

fn decap_local(c: &mut Criterion) {
    let mut n = node(1, 1 << 16, 1 << 12, false);
    establish(&mut n, 1, REMOTE, 40000);
    // The remote pod's ACKs, encapsulated by its VTEP (inner frame 64 bytes).
    let inner = pad64(
        IpFrame::tcp(
            mac(REMOTE),
            ROUTER_MAC,
            ip(REMOTE),
            ip(1),
            80,
            40000,
            tcp_flags::ACK,
            901,
            101,
        )
        .build(),
    );
    let outer = frames::vxlan_v4(
        VTEP_NH,
        LOCAL_VTEP_MAC,
        VTEP_IP,
        LOCAL_VTEP,
        VNI,
        50000,
        &inner,
    );
    run(
        c,
        "datapath/c_decap_local",
        BenchmarkId::from_parameter(1),
        &mut n,
        &[(UPLINK, outer)],
    );
}

fn new_connections(c: &mut Criterion) {
    const CLIENTS: u32 = 16;
    let mut n = node(CLIENTS, 1 << 20, 1 << 16, false);
    // 16 clients × 16 384 source ports: 262 144 distinct SYNs, then the table is flushed
    // (outside the measured time) and they are reused.
    let syns: Vec<(u32, Vec<u8>)> = (0..16_384u32)
        .flat_map(|p| {
            (1..=CLIENTS).map(move |c| (c, seg(c, 900, 20_000 + p as u16, tcp_flags::SYN, 100, 0)))
        })
        .collect();
    let ct = std::sync::Arc::clone(n.conntrack());
    let mut g = c.benchmark_group("datapath/d_new_connections");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut batch = Batch::new();
    let mut at = 0;
    g.bench_function("slow_path", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if at + BATCH > syns.len() {
                    at = 0;
                    ct.flush(&Filter::All);
                }
                batch.clear();
                for (p, f) in &syns[at..at + BATCH] {
                    batch.push(*p, f);
                }
                at += BATCH;
                let t = WallClock::now();
                n.worker().process(black_box(&mut batch), NOW);
                total += t.elapsed();
            }
            total
        });
    });
    g.finish();
    let s = n.stats();
    let denied: u64 = s
        .ports
        .values()
        .map(podswitch_datapath::PortStats::drops_total)
        .sum();
    assert_eq!(denied, 0, "every SYN was allowed and committed");
}

fn many_flows(c: &mut Criterion) {
    const CLIENTS: u32 = 16;
    for flows in [1u32, 1_000, 100_000, 1_000_000] {
        // Mid-stream pickup (tcp_loose) so one ACK per flow sets it up.
        let mut n = node(
            CLIENTS,
            (flows + flows / 2).max(1024),
            (flows as usize * 2).max(1024),
            true,
        );
        let per = flows.div_ceil(CLIENTS);
        let mut frames: Vec<(u32, Vec<u8>)> = Vec::with_capacity(flows as usize);
        'outer: for p in 0..per {
            for c in 1..=CLIENTS {
                if frames.len() == flows as usize {
                    break 'outer;
                }
                frames.push((c, seg(c, 900, 1024 + p as u16, tcp_flags::ACK, 101, 901)));
            }
        }
        // Scatter the order so consecutive packets hit unrelated cache and conntrack slots.
        let len = frames.len();
        let mut order: Vec<usize> = (0..len).collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in (1..len).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let frames: Vec<(u32, Vec<u8>)> = order.into_iter().map(|i| frames[i].clone()).collect();
        let mut batch = Batch::new();
        for chunk in frames.chunks(BATCH) {
            batch.clear();
            for (p, f) in chunk {
                batch.push(*p, f);
            }
            n.worker().process(&mut batch, NOW);
        }
        assert_eq!(n.conntrack().occupancy(), flows, "every flow set up");
        run(
            c,
            "datapath/e_established_flows",
            BenchmarkId::from_parameter(flows),
            &mut n,
            &frames,
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = established_local, established_remote, decap_local, new_connections, many_flows
}
criterion_main!(benches);
