//! Instruction-count profile of `Snapshot::verdict` for callgrind (wall time is noisy on a shared
//! machine; instructions and simulated cache misses are not):
//!
//! ```text
//! cargo build --release -p podswitch-policy --example profile
//! valgrind --tool=callgrind --cache-sim=yes target/release/examples/profile random 20
//! ```
//!
//! Builds the cluster of `benches/benches/policy.rs` (100 namespaces, 10 000 pods, 1 000 policies),
//! then runs `rounds` passes over 4096 queries: `random` pairs (the bench's mix: same namespace,
//! cross namespace, external) or one `hot` pair repeated. Divide the `verdict_loop` cost by
//! `5 * rounds * 4096` for the per-verdict figure (five passes). Prints the allowed count so nothing is optimised out.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use podswitch_policy::{ContainerPort, Endpoint, Labels, PolicyEngine, Protocol, Snapshot};

const NAMESPACES: usize = 100;
const PODS_PER_NS: usize = 100;
const POLICIES_PER_NS: usize = 10;
const QUERIES: usize = 4096;

fn ns_labels(k: usize) -> Labels {
    let mut l = Labels::new();
    l.insert("team".into(), format!("t{}", k % 10));
    l.insert(
        "env".into(),
        if k.is_multiple_of(3) { "prod" } else { "dev" }.into(),
    );
    l
}

fn pod(k: usize, j: usize) -> Endpoint {
    let mut labels = Labels::new();
    labels.insert("app".into(), format!("app-{}", j % 20));
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

fn policy_yaml(k: usize, m: usize) -> String {
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
    - {{port: 443, protocol: TCP}}
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

fn build() -> (Vec<Endpoint>, Arc<Snapshot>) {
    let mut e = PolicyEngine::new();
    for k in 0..NAMESPACES {
        e.upsert_namespace(&format!("ns-{k}"), ns_labels(k));
    }
    let mut pods = Vec::new();
    for k in 0..NAMESPACES {
        for j in 0..PODS_PER_NS {
            let p = pod(k, j);
            e.upsert_endpoint(&p).expect("unique addresses");
            pods.push(p);
        }
    }
    let mut yaml = String::new();
    for k in 0..NAMESPACES {
        for m in 0..POLICIES_PER_NS {
            yaml.push_str(&policy_yaml(k, m));
        }
    }
    let objects = podswitch_policy::parse_objects(&yaml).expect("synthetic policies parse");
    podswitch_policy::apply(&mut e, &objects).expect("valid policies");
    let snap = e.commit();
    (pods, snap)
}

/// The bench's query mix (same generator and seed).
fn queries(pods: &[Endpoint], hot: bool) -> Vec<(IpAddr, IpAddr, Protocol, u16)> {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let ports = [80u16, 443, 5432, 8080, 8081, 9090];
    (0..QUERIES)
        .map(|q| {
            if hot {
                // ns-3/pod-0 (selected by p-0) to ns-3/pod-1 on its named http port.
                return (pods[300].addrs[0], pods[301].addrs[0], Protocol::Tcp, 8081);
            }
            let a = next(pods.len());
            let b = if q % 2 == 0 {
                a - a % PODS_PER_NS + next(PODS_PER_NS)
            } else {
                next(pods.len())
            };
            let dst = if q % 16 == 0 {
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))
            } else {
                pods[b].addrs[0]
            };
            (
                pods[a].addrs[0],
                dst,
                Protocol::Tcp,
                ports[next(ports.len())],
            )
        })
        .collect()
}

#[inline(never)]
fn verdict_loop(snap: &Snapshot, qs: &[(IpAddr, IpAddr, Protocol, u16)], rounds: usize) -> u32 {
    let mut n = 0u32;
    for _ in 0..rounds {
        for (s, d, p, port) in qs {
            n += u32::from(black_box(snap).verdict(*s, *d, *p, *port).is_allowed());
        }
    }
    n
}

/// This thread's on-CPU time in ns (Linux schedstat), so time spent descheduled on a shared
/// machine does not count; `None` elsewhere.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "random".into());
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20);
    let (pods, snap) = build();
    let qs = queries(&pods, mode == "hot");
    // Least CPU time per verdict over five passes (the others were disturbed by neighbours).
    let mut allowed = 0;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t0 = cpu_ns();
        allowed = verdict_loop(&snap, &qs, rounds);
        if let (Some(a), Some(b)) = (t0, cpu_ns()) {
            best = best.min((b - a) as f64 / (rounds * QUERIES) as f64);
        }
    }
    let s = snap.stats();
    println!(
        "{mode}: {} verdicts per pass, {allowed} allowed, {best:.1} ns CPU per verdict \
         ({:.1} M/s per core); endpoints {} groups {} memberships {} selections {} named {}",
        rounds * QUERIES,
        1e3 / best,
        s.endpoints,
        s.groups,
        s.group_memberships,
        s.selections,
        s.named_ports
    );
}
