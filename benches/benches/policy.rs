//! Policy compilation and verdict benchmarks on a synthetic cluster: 100 namespaces, 10 000 pods,
//! 1 000 NetworkPolicies (pod, namespace and AND peers, named ports, port ranges, ipBlocks) — the
//! same shape as crates/policy/tests/scale.rs.
//! - `policy/compile_full`: install everything into a fresh engine and commit (target <= 1 s).
//! - `policy/update_pod`, `policy/update_policy`: one relabel / one policy change + commit
//!   (target <= 1 ms).
//! - `policy/verdict`: lookups by address pair, throughput in verdicts/s (target >= 20 M/s/core).
//!   Random pairs among the 10 000 pods: the datapath asks once per new connection, so caches are
//!   cold-ish. `policy/verdict_hot_pair`: one pair repeated (hot caches, longest rule walk).
//!   Wall time on a shared machine is noisy: `crates/policy/examples/profile.rs` reports CPU time
//!   and runs under callgrind.
//!
//! Inputs are built before measuring; nothing allocates in the verdict loop.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use podswitch_policy::{ContainerPort, Endpoint, Labels, Object, PolicyEngine, Protocol};

/// The daemon's allocator: tables of 4 MiB and more on transparent huge pages.
#[global_allocator]
static ALLOC: podswitch_xdp::HugePageAlloc = podswitch_xdp::HugePageAlloc;

const NAMESPACES: usize = 100;
const PODS_PER_NS: usize = 100;
const POLICIES_PER_NS: usize = 10;

fn ns_labels(k: usize) -> Labels {
    let mut l = Labels::new();
    l.insert("team".into(), format!("t{}", k % 10));
    l.insert(
        "env".into(),
        if k.is_multiple_of(3) { "prod" } else { "dev" }.into(),
    );
    l
}

fn pod(k: usize, j: usize, relabel: bool) -> Endpoint {
    let mut labels = Labels::new();
    let app = if relabel { (j + 1) % 20 } else { j % 20 };
    labels.insert("app".into(), format!("app-{app}"));
    labels.insert("tier".into(), format!("tier-{}", j % 3));
    let addr = IpAddr::V4(Ipv4Addr::new(
        10,
        k as u8,
        (j / 250) as u8,
        (j % 250) as u8 + 1,
    ));
    let mut e = Endpoint::pod(&format!("ns-{k}"), &format!("pod-{j}"), labels, vec![addr]);
    e.ports.push(ContainerPort {
        name: Some("http".into()),
        protocol: Protocol::Tcp,
        port: 8080 + (j % 4) as u16,
    });
    e.ports.push(ContainerPort {
        name: Some("metrics".into()),
        protocol: Protocol::Tcp,
        port: 9090,
    });
    e
}

fn policy_yaml(k: usize, m: usize, port: u16) -> String {
    format!(
        r"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: p-{m}, namespace: ns-{k}}}
spec:
  podSelector: {{matchLabels: {{app: app-{m}}}}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - podSelector: {{matchLabels: {{tier: tier-{tier}}}}}
    - namespaceSelector: {{matchLabels: {{team: t{team}}}}}
      podSelector: {{matchLabels: {{app: app-{next}}}}}
    - ipBlock: {{cidr: 10.{k}.0.0/16, except: [10.{k}.0.0/24]}}
    ports:
    - port: http
    - {{port: {port}, protocol: TCP}}
  - from:
    - namespaceSelector:
        matchExpressions: [{{key: env, operator: In, values: [prod]}}]
    ports: [{{port: metrics}}]
  egress:
  - to:
    - namespaceSelector: {{matchLabels: {{env: prod}}}}
    ports:
    - {{port: 5432, endPort: 5440}}
    - {{port: http}}
  - to:
    - ipBlock: {{cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}
---
",
        tier = m % 3,
        team = (k + m) % 10,
        next = (m + 1) % 10,
    )
}

struct Inputs {
    pods: Vec<Endpoint>,
    policies: Vec<Object>,
}

fn inputs() -> Inputs {
    let mut pods = Vec::new();
    for k in 0..NAMESPACES {
        for j in 0..PODS_PER_NS {
            pods.push(pod(k, j, false));
        }
    }
    let mut yaml = String::new();
    for k in 0..NAMESPACES {
        for m in 0..POLICIES_PER_NS {
            yaml.push_str(&policy_yaml(k, m, 443));
        }
    }
    let policies = podswitch_policy::parse_objects(&yaml).expect("synthetic policies parse");
    Inputs { pods, policies }
}

fn build(inp: &Inputs) -> PolicyEngine {
    let mut e = PolicyEngine::new();
    for k in 0..NAMESPACES {
        e.upsert_namespace(&format!("ns-{k}"), ns_labels(k));
    }
    for p in &inp.pods {
        e.upsert_endpoint(p).expect("unique addresses");
    }
    podswitch_policy::apply(&mut e, &inp.policies).expect("valid policies");
    e
}

fn bench(c: &mut Criterion) {
    let inp = inputs();
    let mut g = c.benchmark_group("policy");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));

    g.sample_size(10);
    g.bench_function("compile_full", |b| {
        b.iter(|| {
            let mut e = build(&inp);
            black_box(e.commit())
        });
    });

    g.sample_size(50);
    let mut engine = build(&inp);
    let _first = engine.commit();
    let mut flip = false;
    g.bench_function("update_pod", |b| {
        b.iter(|| {
            flip = !flip;
            // Relabel ns-42/pod-7 back and forth: its groups and selecting policies change.
            let p = pod(42, 7, flip);
            engine.upsert_endpoint(&p).expect("same address");
            black_box(engine.commit())
        });
    });

    let variants: Vec<Object> = [443u16, 444]
        .iter()
        .flat_map(|port| {
            podswitch_policy::parse_objects(&policy_yaml(42, 3, *port)).expect("parse")
        })
        .collect();
    let mut i = 0usize;
    g.bench_function("update_policy", |b| {
        b.iter(|| {
            i += 1;
            if let Object::NetworkPolicy(np) = &variants[i % 2] {
                engine.upsert_policy(np).expect("valid");
            }
            black_box(engine.commit())
        });
    });

    // Verdict lookups: a fixed mix of pairs (same namespace, cross namespace, external).
    let snap = engine.commit();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let ports = [80u16, 443, 5432, 8080, 8081, 9090];
    let queries: Vec<(IpAddr, IpAddr, Protocol, u16)> = (0..4096)
        .map(|q| {
            let a = next(inp.pods.len());
            let b = if q % 2 == 0 {
                a - a % PODS_PER_NS + next(PODS_PER_NS)
            } else {
                next(inp.pods.len())
            };
            let dst = if q % 16 == 0 {
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))
            } else {
                inp.pods[b].addrs[0]
            };
            (
                inp.pods[a].addrs[0],
                dst,
                Protocol::Tcp,
                ports[next(ports.len())],
            )
        })
        .collect();
    let allowed = queries
        .iter()
        .filter(|(s, d, p, port)| snap.verdict(*s, *d, *p, *port).is_allowed())
        .count();
    assert!(
        allowed > 0 && allowed < queries.len(),
        "mix must hold both outcomes"
    );
    g.sample_size(50);
    g.throughput(Throughput::Elements(queries.len() as u64));
    g.bench_function("verdict", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for (s, d, p, port) in &queries {
                n += u32::from(snap.verdict(*s, *d, *p, *port).is_allowed());
            }
            black_box(n)
        });
    });
    // One pair over and over (hot caches): ns-3/pod-0 -> ns-3/pod-1 on its named http port, both
    // isolated, denied after every rule of both policies was tried (the longest rule walk).
    let (hs, hd) = (inp.pods[300].addrs[0], inp.pods[301].addrs[0]);
    g.bench_function("verdict_hot_pair", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for _ in 0..queries.len() {
                n += u32::from(
                    black_box(&snap)
                        .verdict(hs, hd, Protocol::Tcp, 8081)
                        .is_allowed(),
                );
            }
            black_box(n)
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
