//! Property tests: arbitrary and mutated frames on any port never panic the pipeline, every frame
//! gets a final disposition, and the counters account for every frame exactly once.

use std::net::IpAddr;

use podswitch_conntrack::Instant;
use podswitch_datapath::testing::frames::{self, IpFrame, tcp_flags};
use podswitch_datapath::testing::{
    GATEWAY_V4, LOCAL_VTEP, LOCAL_VTEP_MAC, Pod, ROUTER_MAC, TestNode, UPLINK, VNI,
};
use podswitch_datapath::{Disposition, DropReason};
use podswitch_overlay::Vtep;
use podswitch_policy::EndpointKind;
use podswitch_wire::ethernet::Address;
use proptest::prelude::*;

const A_MAC: Address = Address([0x0a, 0, 0, 0, 0, 1]);
const B_MAC: Address = Address([0x0a, 0, 0, 0, 0, 2]);
const NH: Address = Address([2, 0, 0, 0, 2, 1]);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn node() -> TestNode {
    TestNode::builder()
        .pod(Pod::new(
            "a",
            "a",
            1,
            A_MAC,
            &[ip("10.0.0.11"), ip("fd00::11")],
        ))
        .pod(Pod::new("b", "b", 2, B_MAC, &[ip("10.0.1.12")]).mtu(1400))
        .vtep(Vtep {
            id: 1,
            ip: ip("192.168.0.2"),
            next_hop_mac: NH,
            vni: VNI,
            gbp: false,
        })
        .remote(
            Pod::new(
                "a",
                "r",
                0,
                Address([0x0a, 0, 0, 0, 0, 3]),
                &[ip("10.0.2.21")],
            ),
            EndpointKind::Pod,
            1,
        )
        .build()
        .expect("node")
}

/// Valid frames of every kind the pipeline handles, to be mutated.
fn seeds() -> Vec<(u32, Vec<u8>)> {
    let a = ip("10.0.0.11");
    let b = ip("10.0.1.12");
    let r = ip("10.0.2.21");
    let syn = IpFrame::tcp(A_MAC, ROUTER_MAC, a, b, 1000, 80, tcp_flags::SYN, 1, 0).build();
    let inner = IpFrame::udp(Address([0x0a, 0, 0, 0, 0, 3]), ROUTER_MAC, r, a, 1, 2).build();
    let std::net::IpAddr::V4(l) = ip("192.168.0.2") else {
        unreachable!()
    };
    vec![
        (1, syn.clone()),
        (
            1,
            IpFrame::udp(A_MAC, ROUTER_MAC, a, r, 1, 2)
                .payload(30)
                .build(),
        ),
        (
            1,
            IpFrame::echo(A_MAC, ROUTER_MAC, a, b, true, 7)
                .ttl(1)
                .build(),
        ),
        (
            1,
            frames::arp_request(A_MAC, "10.0.0.11".parse().expect("ip"), GATEWAY_V4),
        ),
        (
            1,
            frames::neighbor_solicit(
                A_MAC,
                "fd00::11".parse().expect("ip"),
                "fd00::1".parse().expect("ip"),
            ),
        ),
        (
            UPLINK,
            frames::vxlan_v4(NH, LOCAL_VTEP_MAC, l, LOCAL_VTEP, VNI, 50000, &inner),
        ),
        (2, syn),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_frame_gets_a_disposition_and_is_counted_once(
        picks in prop::collection::vec(
            (0usize..7, prop::collection::vec((0usize..200, any::<u8>()), 0..6), 0u32..4, 0usize..130, any::<bool>()),
            1..20,
        )
    ) {
        let mut node = node();
        let seeds = seeds();
        let mut batch: Vec<(u32, Vec<u8>)> = Vec::new();
        for (k, flips, port_sel, cut, truncate) in picks {
            let (port, mut f) = seeds[k].clone();
            for (at, v) in flips {
                if let Some(b) = f.get_mut(at) {
                    *b ^= v;
                }
            }
            if truncate {
                f.truncate(cut);
            }
            let port = match port_sel {
                0 => port,
                1 => UPLINK,
                2 => 2,
                _ => 99,
            };
            batch.push((port, f));
        }
        let refs: Vec<(u32, &[u8])> = batch.iter().map(|(p, f)| (*p, f.as_slice())).collect();
        let out = node.inject_batch(&refs, Instant::from_secs(3));
        let d = node.dispositions();
        prop_assert_eq!(d.len(), batch.len());
        prop_assert!(d.iter().all(|x| *x != Disposition::Pending));
        let s = node.stats();
        let rx: u64 = [1u32, 2, 99, UPLINK].iter().map(|p| s.port(*p).rx_packets).sum();
        prop_assert_eq!(rx, batch.len() as u64, "uplink frames count once on the uplink");
        let drops = d.iter().filter(|x| matches!(x, Disposition::Drop(_))).count() as u64;
        let counted: u64 = DropReason::ALL.iter().map(|r| s.dropped(*r)).sum();
        prop_assert_eq!(drops, counted);
        let forwarded = d.iter().filter(|x| matches!(x, Disposition::Output(_))).count();
        prop_assert!(out.len() >= forwarded && out.len() <= 2 * batch.len());
    }
}
