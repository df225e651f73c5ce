//! A verdict allocates nothing: counted by a global allocator over many verdicts of every kind
//! (allowed, denied, named ports, ipBlocks, external addresses, self traffic).
//!
//! Runs without libtest (`harness = false`, see Cargo.toml): the allocator is global, and
//! libtest's main thread allocates while a test runs, which CI saw as 4 stray allocations.

use std::alloc::System;
use std::net::IpAddr;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use podswitch_policy::{ContainerPort, Endpoint, Labels, PolicyEngine, Protocol};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
// stats_alloc 0.1's `INSTRUMENTED_SYSTEM` is a `static`; the allocator is installed through a
// reference to it (the crate's documented form).
static A: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    verdicts_do_not_allocate();
    println!("test verdicts_do_not_allocate ... ok");
}

fn verdicts_do_not_allocate() {
    let mut e = PolicyEngine::new();
    let mut addrs: Vec<IpAddr> = Vec::new();
    for (i, app) in ["web", "db", "cache", "web"].iter().enumerate() {
        let mut labels = Labels::new();
        labels.insert("app".into(), (*app).into());
        let addr: IpAddr = format!("10.0.0.{}", i + 1).parse().unwrap();
        let mut ep = Endpoint::pod("default", &format!("p{i}"), labels, vec![addr]);
        ep.ports.push(ContainerPort {
            name: Some("http".into()),
            protocol: Protocol::Tcp,
            port: 80 + i as u16,
        });
        e.upsert_endpoint(&ep).unwrap();
        addrs.push(addr);
    }
    addrs.push("192.0.2.1".parse().unwrap());
    addrs.push("2001:db8::1".parse().unwrap());
    let np: NetworkPolicy = serde_yaml::from_str(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress, Egress]\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {app: web}}\n    - ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}\n    ports: [{port: http}, {port: 5432, endPort: 5440}]\n  egress:\n  - to: [{namespaceSelector: {}}]\n",
    )
    .unwrap();
    e.upsert_policy(&np).unwrap();
    let s = e.commit();

    let region = Region::new(A);
    let mut allowed = 0u32;
    for _ in 0..100 {
        for &src in &addrs {
            for &dst in &addrs {
                for (proto, port) in [
                    (Protocol::Tcp, 81),
                    (Protocol::Tcp, 5433),
                    (Protocol::Udp, 53),
                ] {
                    allowed += u32::from(s.verdict(src, dst, proto, port).is_allowed());
                }
            }
        }
    }
    let stats = region.change();
    assert_eq!(stats.allocations, 0, "{stats:?}");
    assert_eq!(stats.reallocations, 0, "{stats:?}");
    // Both outcomes were exercised.
    assert!(allowed > 0 && allowed < 100 * 36 * 3, "{allowed}");
}
