//! Zero allocations per packet on the established path, counted by a global allocator.
//!
//! Runs without libtest (`harness = false`): the allocator is global, and libtest's main thread
//! allocates while a test runs (seen as a flaky count of 4 under machine load).

use std::alloc::System;

use podswitch_conntrack::Instant;
use podswitch_datapath::testing::frames::{IpFrame, tcp_flags};
use podswitch_datapath::testing::{Pod, ROUTER_MAC, TestNode, UPLINK, VNI};
use podswitch_datapath::{Batch, Disposition};
use podswitch_overlay::Vtep;
use podswitch_policy::EndpointKind;
use podswitch_wire::ethernet::Address;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
// stats_alloc 0.1's `INSTRUMENTED_SYSTEM` is a `static`, so the allocator is installed through a
// reference to it (the crate's documented form).
static A: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    established_path_does_not_allocate();
    println!("test established_path_does_not_allocate ... ok");
}

fn established_path_does_not_allocate() {
    let a_mac = Address([0x0a, 0, 0, 0, 0, 1]);
    let b_mac = Address([0x0a, 0, 0, 0, 0, 2]);
    let (a, b, r) = (
        "10.0.0.11".parse().expect("ip"),
        "10.0.0.12".parse().expect("ip"),
        "10.0.2.21".parse().expect("ip"),
    );
    let mut node = TestNode::builder()
        .pod(Pod::new("a", "a", 1, a_mac, &[a]))
        .pod(Pod::new("b", "b", 2, b_mac, &[b]))
        .vtep(Vtep {
            id: 1,
            ip: "192.168.0.2".parse().expect("ip"),
            next_hop_mac: Address([2, 0, 0, 0, 2, 1]),
            vni: VNI,
            gbp: false,
        })
        .remote(
            Pod::new("a", "r", 0, Address([0x0a, 0, 0, 0, 0, 3]), &[r]),
            EndpointKind::Pod,
            1,
        )
        .yaml(
            r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-from-a, namespace: b}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector: {}
",
        )
        .build()
        .expect("node");
    let now = Instant::from_secs(5);
    // Warm up: SYN / SYN-ACK / ACK for a→b and a SYN to the remote pod.
    let seg = |src_mac, src, dst, sp, dp, flags, seq, ack| {
        IpFrame::tcp(src_mac, ROUTER_MAC, src, dst, sp, dp, flags, seq, ack).build()
    };
    assert_eq!(
        node.inject(1, &seg(a_mac, a, b, 40000, 80, tcp_flags::SYN, 100, 0), now)
            .len(),
        1
    );
    let sa = tcp_flags::SYN | tcp_flags::ACK;
    assert_eq!(
        node.inject(2, &seg(b_mac, b, a, 80, 40000, sa, 900, 101), now)
            .len(),
        1
    );
    assert_eq!(
        node.inject(
            1,
            &seg(a_mac, a, b, 40000, 80, tcp_flags::ACK, 101, 901),
            now
        )
        .len(),
        1
    );
    assert_eq!(
        node.inject(1, &seg(a_mac, a, r, 40001, 80, tcp_flags::SYN, 100, 0), now)
            .len(),
        1
    );
    // Bare ACKs (no payload) keep the sequence numbers valid for ever.
    let local = seg(a_mac, a, b, 40000, 80, tcp_flags::ACK, 101, 901);
    let remote = seg(a_mac, a, r, 40001, 80, tcp_flags::SYN, 100, 0);
    let mut batch = Batch::new();
    let run = |node: &mut TestNode, batch: &mut Batch| {
        batch.clear();
        for _ in 0..32 {
            assert!(batch.push(1, &local));
        }
        for _ in 0..16 {
            assert!(batch.push(1, &remote));
        }
        node.worker().process(batch, now);
        assert!(
            batch
                .received()
                .iter()
                .all(|p| matches!(p.disposition(), Disposition::Output(_)))
        );
        assert_eq!(batch.outputs().filter(|(p, _)| *p == UPLINK).count(), 16);
    };
    run(&mut node, &mut batch);
    let hits_before = node.stats().cache_hits;
    let region = Region::new(A);
    for _ in 0..200 {
        run(&mut node, &mut batch);
    }
    let change = region.change();
    assert_eq!(
        change.allocations, 0,
        "allocations on the established path: {change:?}"
    );
    assert_eq!(change.reallocations, 0, "{change:?}");
    assert_eq!(
        node.stats().cache_hits - hits_before,
        200 * 48,
        "every packet was a cache hit"
    );
}
