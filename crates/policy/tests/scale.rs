//! Scale and differential tests. A synthetic cluster (100 namespaces, 10 000 pods, 1 000 policies
//! with pod, namespace and AND peers, named ports, port ranges and ipBlocks) checks that the
//! compiled structure grows linearly with pods (asserted on entry counts, never on time), and that
//! verdicts agree with a naive evaluator written straight from the API reference, before and after
//! incremental updates.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use podswitch_policy::{
    ContainerPort, Endpoint, GroupKey, Labels, NAMESPACE_NAME_LABEL, PeerSpec, PolicyEngine,
    PolicySpec, PortSpec, Protocol, RuleSpec, Snapshot,
};

const NAMESPACES: usize = 100;
const POLICIES_PER_NS: usize = 10;

fn ns_name(k: usize) -> String {
    format!("ns-{k}")
}

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
    if j.is_multiple_of(2) {
        labels.insert("version".into(), "v1".into());
    }
    let addr = IpAddr::V4(Ipv4Addr::new(
        10,
        k as u8,
        (j / 250) as u8,
        (j % 250) as u8 + 1,
    ));
    let mut e = Endpoint::pod(&ns_name(k), &format!("pod-{j}"), labels, vec![addr]);
    // Named ports differ by pod so resolution is per pod.
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
metadata: {{name: p-{m}, namespace: {ns}}}
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
",
        ns = ns_name(k),
        tier = m % 3,
        team = (k + m) % 10,
        next = (m + 1) % 10,
    )
}

struct World {
    engine: PolicyEngine,
    pods: Vec<Endpoint>,
    ns: BTreeMap<String, Labels>,
    specs: Vec<PolicySpec>,
}

fn world(pods_per_ns: usize, with_policies: bool) -> World {
    let mut engine = PolicyEngine::new();
    let mut ns = BTreeMap::new();
    let mut pods = Vec::new();
    let mut specs = Vec::new();
    for k in 0..NAMESPACES {
        engine.upsert_namespace(&ns_name(k), ns_labels(k));
        ns.insert(ns_name(k), ns_labels(k));
        for j in 0..pods_per_ns {
            let p = pod(k, j);
            engine.upsert_endpoint(&p).unwrap();
            pods.push(p);
        }
    }
    if with_policies {
        for k in 0..NAMESPACES {
            for m in 0..POLICIES_PER_NS {
                let np: NetworkPolicy = serde_yaml::from_str(&policy_yaml(k, m)).unwrap();
                engine.upsert_policy(&np).unwrap();
                specs.push(PolicySpec::from_k8s(&np).unwrap());
            }
        }
    }
    World {
        engine,
        pods,
        ns,
        specs,
    }
}

// ---- the naive oracle: the API reference's words, one pair at a time ---------------------------

fn ns_labels_full(w: &World, ns: &str) -> Labels {
    let mut l = w.ns.get(ns).cloned().unwrap_or_default();
    l.insert(NAMESPACE_NAME_LABEL.into(), ns.into());
    l
}

fn peer_ok(w: &World, p: &PeerSpec, peer: Option<&Endpoint>, addr: IpAddr) -> bool {
    match p {
        PeerSpec::Block(b) => b.contains(addr),
        PeerSpec::Group(GroupKey::InNamespace { namespace, pods }) => {
            peer.is_some_and(|e| &e.namespace == namespace && pods.matches(&e.labels))
        }
        PeerSpec::Group(GroupKey::Cluster { namespaces, pods }) => peer.is_some_and(|e| {
            namespaces.matches(&ns_labels_full(w, &e.namespace)) && pods.matches(&e.labels)
        }),
    }
}

fn port_ok(p: &PortSpec, dst: Option<&Endpoint>, proto: Protocol, port: u16) -> bool {
    match p {
        PortSpec::AllPorts(pr) => *pr == proto,
        PortSpec::Range {
            protocol,
            start,
            end,
        } => *protocol == proto && (*start..=*end).contains(&port),
        PortSpec::Named { protocol, name } => {
            *protocol == proto
                && dst.is_some_and(|d| {
                    d.ports.iter().any(|c| {
                        c.name.as_deref() == Some(name) && c.protocol == proto && c.port == port
                    })
                })
        }
    }
}

fn rule_ok(
    w: &World,
    r: &RuleSpec,
    peer: Option<&Endpoint>,
    addr: IpAddr,
    dst: Option<&Endpoint>,
    proto: Protocol,
    port: u16,
) -> bool {
    r.ports
        .as_ref()
        .is_none_or(|ps| ps.iter().any(|p| port_ok(p, dst, proto, port)))
        && r.peers
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| peer_ok(w, p, peer, addr)))
}

fn oracle(w: &World, src: usize, dst: usize, proto: Protocol, port: u16) -> bool {
    let (s, d) = (&w.pods[src], &w.pods[dst]);
    if src == dst {
        return true;
    }
    let egress = {
        let sel: Vec<&PolicySpec> = w
            .specs
            .iter()
            .filter(|p| {
                p.namespace == s.namespace
                    && p.pod_selector.matches(&s.labels)
                    && p.egress.is_some()
            })
            .collect();
        sel.is_empty()
            || sel.iter().any(|p| {
                p.egress
                    .iter()
                    .flatten()
                    .any(|r| rule_ok(w, r, Some(d), d.addrs[0], Some(d), proto, port))
            })
    };
    let ingress = {
        let sel: Vec<&PolicySpec> = w
            .specs
            .iter()
            .filter(|p| {
                p.namespace == d.namespace
                    && p.pod_selector.matches(&d.labels)
                    && p.ingress.is_some()
            })
            .collect();
        sel.is_empty()
            || sel.iter().any(|p| {
                p.ingress
                    .iter()
                    .flatten()
                    .any(|r| rule_ok(w, r, Some(s), s.addrs[0], Some(d), proto, port))
            })
    };
    egress && ingress
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn check_against_oracle(w: &World, s: &Snapshot, samples: usize, seed: u64) -> (usize, usize) {
    let mut rng = Lcg(seed);
    let ports = [80, 443, 5432, 5441, 8080, 8081, 8083, 9090];
    let (mut yes, mut no) = (0, 0);
    for _ in 0..samples {
        let a = rng.next(w.pods.len());
        // Half the pairs within one namespace, where most rules bite.
        let b = if rng.next(2) == 0 {
            a - a % (w.pods.len() / NAMESPACES) + rng.next(w.pods.len() / NAMESPACES)
        } else {
            rng.next(w.pods.len())
        };
        let port = ports[rng.next(ports.len())];
        let proto = if rng.next(8) == 0 {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        let want = oracle(w, a, b, proto, port);
        let got = s
            .verdict(w.pods[a].addrs[0], w.pods[b].addrs[0], proto, port)
            .is_allowed();
        assert_eq!(
            got, want,
            "{}/{} -> {}/{} {proto} {port}",
            w.pods[a].namespace, w.pods[a].name, w.pods[b].namespace, w.pods[b].name
        );
        if want { yes += 1 } else { no += 1 }
    }
    (yes, no)
}

#[test]
fn entries_grow_linearly_with_pods() {
    let mut base = world(0, true);
    let mut full = world(100, true);
    let mut double = world(200, true);
    let e0 = base.engine.commit().stats();
    let e1 = full.engine.commit().stats();
    let e2 = double.engine.commit().stats();
    assert_eq!(e1.endpoints, 10_000);
    assert_eq!(e2.endpoints, 20_000);
    assert_eq!(e1.policies, 1_000);
    assert_eq!(e1.namespaces, 100);
    // Groups depend on selectors, not on pods.
    assert_eq!(e1.groups, e2.groups);
    assert!(e2.groups <= 3 * e2.policies, "{e2:?}");
    // Pod-dependent entries double when pods double...
    let d1 = (e1.entries() - e0.entries()) as f64;
    let d2 = (e2.entries() - e0.entries()) as f64;
    let ratio = d2 / d1;
    assert!(
        (1.9..=2.1).contains(&ratio),
        "ratio {ratio}: {e0:?} {e1:?} {e2:?}"
    );
    // ...and the whole structure never approaches pods²: a bounded number of entries per pod.
    assert!(e2.entries() < 40 * e2.endpoints, "{e2:?}");
    assert!((e2.entries() as f64) / (e1.entries() as f64) < 2.1);
}

#[test]
fn verdicts_agree_with_naive_oracle_through_updates() {
    let mut w = world(100, true);
    let s = w.engine.commit();
    let (yes, no) = check_against_oracle(&w, &s, 3000, 1);
    // The sample must exercise both outcomes.
    assert!(yes > 100 && no > 100, "allowed {yes}, denied {no}");

    // Relabel pods, relabel namespaces, replace and remove policies; compare again.
    for j in 0..50 {
        let i = j * 197 % w.pods.len();
        let mut labels = w.pods[i].labels.clone();
        labels.insert("app".into(), format!("app-{}", (j + 3) % 20));
        labels.insert("tier".into(), format!("tier-{}", j % 3));
        w.engine
            .relabel_endpoint(
                &w.pods[i].namespace.clone(),
                &w.pods[i].name.clone(),
                labels.clone(),
            )
            .unwrap();
        w.pods[i].labels = labels;
    }
    for k in [0usize, 7, 33, 64] {
        let mut l = ns_labels(k);
        l.insert("env".into(), "prod".into());
        l.insert("team".into(), "t9".into());
        w.engine.upsert_namespace(&ns_name(k), l.clone());
        w.ns.insert(ns_name(k), l);
    }
    for k in [1usize, 2, 50] {
        // Replace p-0 with an allow-all-ingress policy, remove p-1.
        let np: NetworkPolicy = serde_yaml::from_str(&format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p-0, namespace: {}}}\nspec:\n  podSelector: {{matchLabels: {{tier: tier-1}}}}\n  ingress: [{{}}]\n",
            ns_name(k)
        ))
        .unwrap();
        w.engine.upsert_policy(&np).unwrap();
        let spec = PolicySpec::from_k8s(&np).unwrap();
        let idx = w
            .specs
            .iter()
            .position(|p| p.namespace == spec.namespace && p.name == "p-0")
            .unwrap();
        w.specs[idx] = spec;
        assert!(w.engine.remove_policy(&ns_name(k), "p-1"));
        w.specs
            .retain(|p| !(p.namespace == ns_name(k) && p.name == "p-1"));
    }
    let s2 = w.engine.commit();
    assert!(s2.generation() > s.generation());
    let (yes, no) = check_against_oracle(&w, &s2, 3000, 2);
    assert!(yes > 100 && no > 100, "allowed {yes}, denied {no}");
}
