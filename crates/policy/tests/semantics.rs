//! NetworkPolicy semantics, written from the Kubernetes documentation
//! (https://kubernetes.io/docs/concepts/services-networking/network-policies/, cited below as
//! "docs §<section>") and the API reference for networking.k8s.io/v1 NetworkPolicy (cited as
//! "API ref <Type>.<field>").

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use podswitch_policy::{
    Decision, Direction, Endpoint, EndpointKind, Invalid, Labels, PolicyEngine, Protocol, Snapshot,
};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pod(ns: &str, name: &str, l: &[(&str, &str)], addr: &str) -> Endpoint {
    Endpoint::pod(ns, name, labels(l), vec![ip(addr)])
}

fn np(yaml: &str) -> NetworkPolicy {
    serde_yaml::from_str(yaml).unwrap()
}

fn allowed(s: &Snapshot, src: &str, dst: &str, proto: Protocol, port: u16) -> bool {
    s.verdict(ip(src), ip(dst), proto, port).is_allowed()
}

const TCP: Protocol = Protocol::Tcp;
const UDP: Protocol = Protocol::Udp;

/// docs §"The NetworkPolicy resource": the `test-network-policy` example, applied to a small
/// cluster. Ingress to role=db from 172.17.0.0/16 except 172.17.1.0/24, from namespaces with
/// project=myproject, from role=frontend pods of `default`, on TCP 6379; egress to 10.0.0.0/24 on
/// TCP 5978.
const TEST_NETWORK_POLICY: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
    - Ingress
    - Egress
  ingress:
    - from:
        - ipBlock:
            cidr: 172.17.0.0/16
            except:
              - 172.17.1.0/24
        - namespaceSelector:
            matchLabels:
              project: myproject
        - podSelector:
            matchLabels:
              role: frontend
      ports:
        - protocol: TCP
          port: 6379
  egress:
    - to:
        - ipBlock:
            cidr: 10.0.0.0/24
      ports:
        - protocol: TCP
          port: 5978
";

fn docs_cluster() -> PolicyEngine {
    let mut e = PolicyEngine::new();
    e.upsert_namespace("default", Labels::new());
    e.upsert_namespace("myproject", labels(&[("project", "myproject")]));
    e.upsert_namespace("other", labels(&[("project", "other")]));
    e.upsert_endpoint(&pod("default", "db", &[("role", "db")], "10.1.0.1"))
        .unwrap();
    e.upsert_endpoint(&pod("default", "fe", &[("role", "frontend")], "10.1.0.2"))
        .unwrap();
    e.upsert_endpoint(&pod("default", "misc", &[("role", "misc")], "10.1.0.3"))
        .unwrap();
    e.upsert_endpoint(&pod("myproject", "any", &[("role", "misc")], "10.2.0.1"))
        .unwrap();
    e.upsert_endpoint(&pod("other", "fe", &[("role", "frontend")], "10.3.0.1"))
        .unwrap();
    e.upsert_endpoint(&pod("default", "ext-ip", &[], "10.0.0.9"))
        .unwrap();
    e.upsert_policy(&np(TEST_NETWORK_POLICY)).unwrap();
    e
}

#[test]
fn docs_test_network_policy_ingress() {
    let mut e = docs_cluster();
    let s = e.commit();
    // podSelector peer: frontend pods of the policy's own namespace only.
    assert!(allowed(&s, "10.1.0.2", "10.1.0.1", TCP, 6379));
    assert!(
        !allowed(&s, "10.3.0.1", "10.1.0.1", TCP, 6379),
        "frontend of another namespace"
    );
    assert!(
        !allowed(&s, "10.1.0.3", "10.1.0.1", TCP, 6379),
        "non-frontend of default"
    );
    // namespaceSelector peer: every pod of myproject.
    assert!(allowed(&s, "10.2.0.1", "10.1.0.1", TCP, 6379));
    // Port: only TCP 6379.
    assert!(!allowed(&s, "10.1.0.2", "10.1.0.1", TCP, 6380));
    assert!(!allowed(&s, "10.1.0.2", "10.1.0.1", UDP, 6379));
    // ipBlock with except, for external sources.
    assert!(allowed(&s, "172.17.2.5", "10.1.0.1", TCP, 6379));
    assert!(!allowed(&s, "172.17.1.5", "10.1.0.1", TCP, 6379));
    assert!(!allowed(&s, "172.18.0.1", "10.1.0.1", TCP, 6379));
    // Pods not selected by the policy stay non-isolated.
    assert!(allowed(&s, "10.3.0.1", "10.1.0.3", TCP, 1));
    let v = s.verdict(ip("10.3.0.1"), ip("10.1.0.3"), TCP, 1);
    assert_eq!(v.ingress, Decision::NotIsolated);
    assert_eq!(v.egress, Decision::NotIsolated);
}

#[test]
fn docs_test_network_policy_egress_and_verdict_names_rule() {
    let mut e = docs_cluster();
    let s = e.commit();
    // Egress to an external address in 10.0.0.0/24 on TCP 5978 only.
    let v = s.verdict(ip("10.1.0.1"), ip("10.0.0.200"), TCP, 5978);
    assert!(v.is_allowed());
    assert_eq!(v.ingress, Decision::NotAnEndpoint);
    let Decision::Allowed(r) = v.egress else {
        panic!("{v:?}")
    };
    assert_eq!(r.direction, Direction::Egress);
    assert_eq!(r.rule, 0);
    assert_eq!(
        s.policy_name(r.policy),
        Some(("default", "test-network-policy"))
    );
    assert!(!allowed(&s, "10.1.0.1", "10.0.0.200", TCP, 80));
    assert!(!allowed(&s, "10.1.0.1", "10.0.1.1", TCP, 5978));
    // db may not even reach the frontend: egress is isolated.
    let v = s.verdict(ip("10.1.0.1"), ip("10.1.0.2"), TCP, 80);
    assert!(matches!(v.egress, Decision::Denied { .. }));
    assert_eq!(v.ingress, Decision::NotIsolated);
    // ipBlock matches pods' own addresses too: the pod 10.0.0.9 is inside 10.0.0.0/24.
    assert!(allowed(&s, "10.1.0.1", "10.0.0.9", TCP, 5978));
}

/// docs §"Behavior of to and from selectors": one peer with namespaceSelector AND podSelector
/// versus two peers (OR).
#[test]
fn and_versus_or_peers() {
    let and = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: and-peer, namespace: app}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {user: alice}
      podSelector:
        matchLabels: {role: client}
";
    let or = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: or-peers, namespace: app}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {user: alice}
    - podSelector:
        matchLabels: {role: client}
";
    let build = |yaml: &str| {
        let mut e = PolicyEngine::new();
        e.upsert_namespace("app", Labels::new());
        e.upsert_namespace("alice", labels(&[("user", "alice")]));
        e.upsert_endpoint(&pod("app", "server", &[], "10.0.0.1"))
            .unwrap();
        e.upsert_endpoint(&pod("app", "client", &[("role", "client")], "10.0.0.2"))
            .unwrap();
        e.upsert_endpoint(&pod("alice", "client", &[("role", "client")], "10.0.1.2"))
            .unwrap();
        e.upsert_endpoint(&pod("alice", "other", &[], "10.0.1.3"))
            .unwrap();
        e.upsert_policy(&np(yaml)).unwrap();
        e.commit()
    };
    let s = build(and);
    assert!(
        allowed(&s, "10.0.1.2", "10.0.0.1", TCP, 80),
        "alice's client"
    );
    assert!(
        !allowed(&s, "10.0.1.3", "10.0.0.1", TCP, 80),
        "alice's non-client"
    );
    assert!(
        !allowed(&s, "10.0.0.2", "10.0.0.1", TCP, 80),
        "client outside alice"
    );
    let s = build(or);
    assert!(allowed(&s, "10.0.1.2", "10.0.0.1", TCP, 80));
    assert!(
        allowed(&s, "10.0.1.3", "10.0.0.1", TCP, 80),
        "any pod of alice"
    );
    assert!(
        allowed(&s, "10.0.0.2", "10.0.0.1", TCP, 80),
        "client of the policy's namespace"
    );
}

fn default_cluster(policy: &str) -> std::sync::Arc<Snapshot> {
    let mut e = PolicyEngine::new();
    e.upsert_endpoint(&pod("default", "a", &[("app", "a")], "10.0.0.1"))
        .unwrap();
    e.upsert_endpoint(&pod("default", "b", &[("app", "b")], "10.0.0.2"))
        .unwrap();
    e.upsert_endpoint(&pod("other", "c", &[("app", "c")], "10.0.1.1"))
        .unwrap();
    for doc in policy.split("\n---\n") {
        e.upsert_policy(&np(doc)).unwrap();
    }
    e.commit()
}

/// docs §"Default deny all ingress traffic".
#[test]
fn default_deny_ingress() {
    let s = default_cluster(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: default-deny-ingress}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n",
    );
    assert!(!allowed(&s, "10.0.0.2", "10.0.0.1", TCP, 80));
    assert!(!allowed(&s, "10.0.1.1", "10.0.0.1", TCP, 80));
    assert!(!allowed(&s, "8.8.8.8", "10.0.0.1", TCP, 80));
    // Egress not isolated; pods of other namespaces untouched.
    assert!(allowed(&s, "10.0.0.1", "10.0.1.1", TCP, 80));
    assert!(allowed(&s, "10.0.0.1", "8.8.8.8", UDP, 53));
    // Traffic of a pod to itself is always allowed.
    let v = s.verdict(ip("10.0.0.1"), ip("10.0.0.1"), TCP, 80);
    assert_eq!(v.ingress, Decision::SameEndpoint);
    assert!(v.is_allowed());
}

/// docs §"Allow all ingress traffic": `ingress: [{}]` — a rule with no `from` and no `ports`.
#[test]
fn allow_all_ingress_even_with_deny() {
    let s = default_cluster(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: default-deny-ingress}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-all-ingress}\nspec:\n  podSelector: {}\n  ingress:\n  - {}\n  policyTypes: [Ingress]\n",
    );
    assert!(allowed(&s, "10.0.0.2", "10.0.0.1", TCP, 80));
    assert!(allowed(&s, "8.8.8.8", "10.0.0.1", Protocol::Sctp, 9));
    // A port-less rule matches protocols NetworkPolicy has no port for (ICMP).
    assert!(allowed(
        &s,
        "10.0.1.1",
        "10.0.0.1",
        Protocol::from_ip_number(1),
        0
    ));
}

/// docs §"Default deny all egress traffic" and §"Allow all egress traffic".
#[test]
fn deny_and_allow_all_egress() {
    let deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: default-deny-egress}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n";
    let s = default_cluster(deny);
    assert!(!allowed(&s, "10.0.0.1", "10.0.0.2", TCP, 80));
    assert!(!allowed(&s, "10.0.0.1", "8.8.8.8", UDP, 53));
    // Egress-only isolation: ingress stays open.
    assert!(allowed(&s, "10.0.1.1", "10.0.0.1", TCP, 80));
    assert!(allowed(&s, "8.8.8.8", "10.0.0.1", TCP, 80));
    let both = format!(
        "{deny}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: allow-all-egress}}\nspec:\n  podSelector: {{}}\n  egress:\n  - {{}}\n  policyTypes: [Egress]\n"
    );
    let s = default_cluster(&both);
    assert!(allowed(&s, "10.0.0.1", "10.0.0.2", TCP, 80));
    assert!(allowed(&s, "10.0.0.1", "8.8.8.8", UDP, 53));
}

/// docs §"Default deny all ingress and all egress traffic".
#[test]
fn default_deny_all() {
    let s = default_cluster(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: default-deny-all}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress, Egress]\n",
    );
    assert!(!allowed(&s, "10.0.0.1", "10.0.0.2", TCP, 80));
    assert!(!allowed(&s, "10.0.1.1", "10.0.0.1", TCP, 80));
    assert!(!allowed(&s, "10.0.0.1", "10.0.1.1", TCP, 80));
    // The other namespace is unaffected.
    assert!(allowed(&s, "10.0.1.1", "8.8.8.8", TCP, 80));
    let v = s.verdict(ip("10.0.0.1"), ip("10.0.0.2"), TCP, 80);
    let Decision::Denied { isolated_by } = v.egress else {
        panic!("{v:?}")
    };
    assert_eq!(
        s.policy_name(isolated_by),
        Some(("default", "default-deny-all"))
    );
}

/// API ref NetworkPolicySpec.policyTypes: when unspecified, Ingress is always set and Egress is set
/// when the policy has egress rules. So an egress-rules-only policy also denies all ingress; an
/// explicit empty `ingress: []` (or none) allows nothing.
#[test]
fn policy_types_defaulting() {
    let s = default_cluster(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: egress-rules}\nspec:\n  podSelector: {matchLabels: {app: a}}\n  egress:\n  - to:\n    - podSelector: {matchLabels: {app: b}}\n",
    );
    assert!(allowed(&s, "10.0.0.1", "10.0.0.2", TCP, 80));
    assert!(!allowed(&s, "10.0.0.1", "10.0.1.1", TCP, 80));
    assert!(
        !allowed(&s, "10.0.0.2", "10.0.0.1", TCP, 80),
        "ingress isolated by default type"
    );
    // `egress: []` does not add the Egress type.
    let s = default_cluster(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: empty}\nspec:\n  podSelector: {matchLabels: {app: a}}\n  ingress: []\n  egress: []\n",
    );
    assert!(!allowed(&s, "10.0.0.2", "10.0.0.1", TCP, 80));
    assert!(allowed(&s, "10.0.0.1", "10.0.0.2", TCP, 80));
}

/// API ref NetworkPolicyIngressRule.from / .ports: an empty or missing list matches all.
#[test]
fn empty_from_and_ports_match_everything() {
    let s = default_cluster(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {matchLabels: {app: a}}\n  ingress:\n  - from: []\n    ports: []\n",
    );
    assert!(allowed(&s, "10.0.1.1", "10.0.0.1", UDP, 9));
    assert!(allowed(&s, "1.2.3.4", "10.0.0.1", TCP, 22));
    // A pod-selector peer never matches external addresses; only ipBlocks do.
    let s = default_cluster(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {matchLabels: {app: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {}\n",
    );
    assert!(
        allowed(&s, "10.0.1.1", "10.0.0.1", TCP, 22),
        "every pod of every namespace"
    );
    assert!(
        !allowed(&s, "1.2.3.4", "10.0.0.1", TCP, 22),
        "but not external addresses"
    );
}

/// API ref NetworkPolicyPort.protocol: defaults to TCP; UDP and SCTP as written.
#[test]
fn protocol_defaults_to_tcp() {
    let s = default_cluster(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {matchLabels: {app: a}}\n  ingress:\n  - ports:\n    - port: 53\n    - port: 5353\n      protocol: UDP\n    - protocol: SCTP\n",
    );
    assert!(allowed(&s, "10.0.0.2", "10.0.0.1", TCP, 53));
    assert!(!allowed(&s, "10.0.0.2", "10.0.0.1", UDP, 53));
    assert!(allowed(&s, "10.0.0.2", "10.0.0.1", UDP, 5353));
    assert!(!allowed(&s, "10.0.0.2", "10.0.0.1", TCP, 5353));
    // `protocol: SCTP` without port: every SCTP port.
    assert!(allowed(&s, "10.0.0.2", "10.0.0.1", Protocol::Sctp, 38412));
    assert!(!allowed(
        &s,
        "10.0.0.2",
        "10.0.0.1",
        Protocol::from_ip_number(1),
        0
    ));
}

/// docs §"Targeting a range of ports": endPort.
#[test]
fn end_port_range() {
    let s = default_cluster(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: multi-port-egress}\nspec:\n  podSelector: {matchLabels: {app: a}}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - ipBlock: {cidr: 10.0.0.0/24}\n    ports:\n    - protocol: TCP\n      port: 32000\n      endPort: 32768\n",
    );
    for (port, ok) in [
        (31999, false),
        (32000, true),
        (32500, true),
        (32768, true),
        (32769, false),
    ] {
        assert_eq!(
            allowed(&s, "10.0.0.1", "10.0.0.77", TCP, port),
            ok,
            "{port}"
        );
    }
    assert!(
        !allowed(&s, "10.0.0.1", "10.0.1.1", TCP, 32000),
        "outside the block"
    );
    assert!(
        allowed(&s, "10.0.0.1", "10.0.0.2", TCP, 32001),
        "pod address inside the block"
    );
}

/// API ref NetworkPolicyPort.port: a named port resolves against each destination pod's own
/// container ports, so one rule opens different numbers on different pods.
#[test]
fn named_ports_resolve_per_pod() {
    let mut e = PolicyEngine::new();
    let mut web_a = pod("default", "web-a", &[("app", "web")], "10.0.0.1");
    web_a.ports.push(podswitch_policy::ContainerPort {
        name: Some("http".into()),
        protocol: TCP,
        port: 80,
    });
    let mut web_b = pod("default", "web-b", &[("app", "web")], "10.0.0.2");
    web_b.ports.push(podswitch_policy::ContainerPort {
        name: Some("http".into()),
        protocol: TCP,
        port: 8080,
    });
    web_b.ports.push(podswitch_policy::ContainerPort {
        name: Some("dns".into()),
        protocol: UDP,
        port: 53,
    });
    e.upsert_endpoint(&web_a).unwrap();
    e.upsert_endpoint(&web_b).unwrap();
    e.upsert_endpoint(&pod("default", "client", &[("app", "client")], "10.0.0.3"))
        .unwrap();
    e.upsert_policy(&np(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - ports:\n    - port: http\n    - port: dns\n",
    ))
    .unwrap();
    // Egress from the client on named ports resolves against the destination too.
    e.upsert_policy(&np(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: client}\nspec:\n  podSelector: {matchLabels: {app: client}}\n  policyTypes: [Egress]\n  egress:\n  - ports:\n    - port: http\n",
    ))
    .unwrap();
    let s = e.commit();
    assert!(allowed(&s, "10.0.0.3", "10.0.0.1", TCP, 80));
    assert!(!allowed(&s, "10.0.0.3", "10.0.0.1", TCP, 8080));
    assert!(allowed(&s, "10.0.0.3", "10.0.0.2", TCP, 8080));
    assert!(!allowed(&s, "10.0.0.3", "10.0.0.2", TCP, 80));
    // `dns` is a UDP port, but the policy port's protocol defaulted to TCP: no match.
    assert!(!allowed(&s, "10.0.0.1", "10.0.0.2", UDP, 53));
    // A named port never matches an external destination.
    assert!(!allowed(&s, "10.0.0.3", "8.8.8.8", TCP, 80));
}

/// docs §"Targeting a Namespace by its name": the automatic `kubernetes.io/metadata.name` label.
#[test]
fn namespace_by_name_label() {
    let s = default_cluster(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchLabels:\n          kubernetes.io/metadata.name: other\n",
    );
    assert!(allowed(&s, "10.0.1.1", "10.0.0.1", TCP, 80));
    assert!(!allowed(&s, "10.0.0.2", "10.0.0.1", TCP, 80));
}

/// API ref LabelSelector.matchExpressions in a peer.
#[test]
fn match_expressions_in_peers() {
    let s = default_cluster(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {matchLabels: {app: a}}\n  ingress:\n  - from:\n    - podSelector:\n        matchExpressions:\n        - {key: app, operator: NotIn, values: [x, y]}\n        - {key: app, operator: Exists}\n",
    );
    assert!(allowed(&s, "10.0.0.2", "10.0.0.1", TCP, 1));
    assert!(
        !allowed(&s, "10.0.1.1", "10.0.0.1", TCP, 1),
        "podSelector alone: own namespace"
    );
}

/// Separate policies are additive (docs §"Isolated and non-isolated Pods"): allowed if any allows.
#[test]
fn policies_are_additive() {
    let s = default_cluster(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: one}\nspec:\n  podSelector: {matchLabels: {app: a}}\n  ingress:\n  - ports: [{port: 80}]\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: two}\nspec:\n  podSelector: {matchLabels: {app: a}}\n  ingress:\n  - ports: [{port: 443}]\n",
    );
    assert!(allowed(&s, "10.0.0.2", "10.0.0.1", TCP, 80));
    assert!(allowed(&s, "10.0.0.2", "10.0.0.1", TCP, 443));
    assert!(!allowed(&s, "10.0.0.2", "10.0.0.1", TCP, 22));
}

#[test]
fn ipv6_ip_block_with_except() {
    let mut e = PolicyEngine::new();
    e.upsert_endpoint(&Endpoint::pod(
        "default",
        "a",
        labels(&[("app", "a")]),
        vec![ip("10.0.0.1"), ip("fd00::1")],
    ))
    .unwrap();
    e.upsert_policy(&np(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: v6}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: '2001:db8::/32', except: ['2001:db8:bad::/48']}\n",
    ))
    .unwrap();
    let s = e.commit();
    assert!(allowed(&s, "2001:db8:1::5", "fd00::1", TCP, 80));
    assert!(!allowed(&s, "2001:db8:bad::5", "fd00::1", TCP, 80));
    assert!(!allowed(&s, "10.9.9.9", "10.0.0.1", TCP, 80));
    // Both addresses belong to one endpoint: itself, always allowed.
    assert!(allowed(&s, "fd00::1", "10.0.0.1", TCP, 80));
}

/// Non-Kubernetes endpoints (VMs, bare metal) have labels and a scope and are selected like pods.
#[test]
fn vm_endpoints_take_part() {
    let mut e = PolicyEngine::new();
    e.upsert_namespace("legacy", labels(&[("zone", "dc1")]));
    let mut vm = pod("legacy", "oracle-vm", &[("app", "oracle")], "192.168.5.10");
    vm.kind = EndpointKind::Vm;
    let vm_id = e.upsert_endpoint(&vm).unwrap();
    e.upsert_endpoint(&pod("default", "app", &[("app", "erp")], "10.0.0.1"))
        .unwrap();
    e.upsert_policy(&np(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: oracle, namespace: legacy}\nspec:\n  podSelector: {matchLabels: {app: oracle}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: default}}\n      podSelector: {matchLabels: {app: erp}}\n    ports: [{port: 1521}]\n",
    ))
    .unwrap();
    let s = e.commit();
    assert_eq!(s.endpoint_kind(vm_id), Some(EndpointKind::Vm));
    assert!(allowed(&s, "10.0.0.1", "192.168.5.10", TCP, 1521));
    assert!(!allowed(&s, "10.0.0.1", "192.168.5.10", TCP, 22));
}

#[test]
fn pod_and_namespace_label_changes_flip_verdicts() {
    let mut e = PolicyEngine::new();
    e.upsert_namespace("prod", labels(&[("env", "prod")]));
    e.upsert_namespace("dev", labels(&[("env", "dev")]));
    e.upsert_endpoint(&pod("prod", "db", &[("app", "db")], "10.0.0.1"))
        .unwrap();
    e.upsert_endpoint(&pod("prod", "api", &[("app", "api")], "10.0.0.2"))
        .unwrap();
    e.upsert_endpoint(&pod("dev", "tool", &[("app", "tool")], "10.0.1.1"))
        .unwrap();
    e.upsert_policy(&np(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: prod}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {access: db}}\n    - namespaceSelector: {matchLabels: {env: prod}}\n      podSelector: {matchLabels: {app: tool}}\n",
    ))
    .unwrap();
    let s1 = e.commit();
    assert!(!allowed(&s1, "10.0.0.2", "10.0.0.1", TCP, 5432));
    assert!(!allowed(&s1, "10.0.1.1", "10.0.0.1", TCP, 5432));

    // Pod relabel: api gets access=db.
    e.relabel_endpoint("prod", "api", labels(&[("app", "api"), ("access", "db")]))
        .unwrap();
    let s2 = e.commit();
    assert!(s2.generation() > s1.generation());
    assert!(allowed(&s2, "10.0.0.2", "10.0.0.1", TCP, 5432));
    // The earlier snapshot is immutable.
    assert!(!allowed(&s1, "10.0.0.2", "10.0.0.1", TCP, 5432));

    // Namespace relabel: dev becomes env=prod, so its tool pod now matches the AND peer.
    e.upsert_namespace("dev", labels(&[("env", "prod")]));
    let s3 = e.commit();
    assert!(allowed(&s3, "10.0.1.1", "10.0.0.1", TCP, 5432));
    e.upsert_namespace("dev", labels(&[("env", "dev")]));
    let s4 = e.commit();
    assert!(!allowed(&s4, "10.0.1.1", "10.0.0.1", TCP, 5432));

    // Relabel the protected pod out of the policy: no longer isolated.
    e.relabel_endpoint("prod", "db", labels(&[("app", "db2")]))
        .unwrap();
    let s5 = e.commit();
    assert!(allowed(&s5, "10.0.1.1", "10.0.0.1", TCP, 5432));
    // No change, no new generation.
    assert_eq!(e.commit().generation(), s5.generation());
}

#[test]
fn policy_update_and_removal_release_groups() {
    let mut e = PolicyEngine::new();
    e.upsert_endpoint(&pod("default", "a", &[("app", "a")], "10.0.0.1"))
        .unwrap();
    e.upsert_endpoint(&pod("default", "b", &[("app", "b")], "10.0.0.2"))
        .unwrap();
    let v1 = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {matchLabels: {app: a}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: b}}}]\n";
    let v2 = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {matchLabels: {app: a}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: c}}}]\n";
    let id = e.upsert_policy(&np(v1)).unwrap();
    assert_eq!(e.group_count(), 2);
    let s = e.commit();
    assert!(allowed(&s, "10.0.0.2", "10.0.0.1", TCP, 80));
    assert_eq!(e.upsert_policy(&np(v2)).unwrap(), id);
    assert_eq!(e.group_count(), 2, "app=b group released, app=c created");
    let s = e.commit();
    assert!(!allowed(&s, "10.0.0.2", "10.0.0.1", TCP, 80));
    assert!(e.remove_policy("default", "p"));
    assert!(!e.remove_policy("default", "p"));
    assert_eq!(e.group_count(), 0);
    let s = e.commit();
    assert!(allowed(&s, "10.0.0.2", "10.0.0.1", TCP, 80));
    assert_eq!(s.stats().group_memberships, 0);
    // Endpoint removal: the address becomes external.
    assert!(e.remove_endpoint("default", "b"));
    let s = e.commit();
    assert_eq!(s.endpoint_by_addr(ip("10.0.0.2")), None);
    assert_eq!(s.stats().endpoints, 1);
}

#[test]
fn address_conflicts_are_rejected() {
    let mut e = PolicyEngine::new();
    e.upsert_endpoint(&pod("default", "a", &[], "10.0.0.1"))
        .unwrap();
    let err = e
        .upsert_endpoint(&pod("default", "b", &[], "10.0.0.1"))
        .unwrap_err();
    assert!(err.to_string().contains("default/a"), "{err}");
    // Re-upserting the owner with the same address is fine; moving the address frees it.
    e.upsert_endpoint(&pod("default", "a", &[], "10.0.0.1"))
        .unwrap();
    e.upsert_endpoint(&pod("default", "a", &[], "10.0.0.5"))
        .unwrap();
    e.upsert_endpoint(&pod("default", "b", &[], "10.0.0.1"))
        .unwrap();
}

#[test]
fn explain_lists_policies_and_rules() {
    let mut e = docs_cluster();
    e.upsert_policy(&np(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: unrelated}\nspec:\n  podSelector: {matchLabels: {role: nothing}}\n",
    ))
    .unwrap();
    let s = e.commit();
    let x = s.explain(ip("10.1.0.3"), ip("10.1.0.1"), TCP, 6379);
    assert!(!x.verdict.is_allowed());
    let t = x
        .ingress
        .iter()
        .find(|p| p.name == "test-network-policy")
        .unwrap();
    assert!(t.selects && t.isolates);
    assert_eq!(t.rules.len(), 1);
    assert!(t.rules[0].port_matched);
    assert!(!t.rules[0].peer_matched);
    let u = x.ingress.iter().find(|p| p.name == "unrelated").unwrap();
    assert!(!u.selects);
    let text = x.to_string();
    assert!(
        text.contains("policy default/test-network-policy: selects and isolates"),
        "{text}"
    );
    assert!(
        text.contains("rule 0: peer not matched, port matched"),
        "{text}"
    );
    assert!(
        s.describe_decision(x.verdict.ingress)
            .contains("default/test-network-policy")
    );
}

fn invalid(yaml_spec: &str) -> (String, Invalid) {
    let mut e = PolicyEngine::new();
    let err = e
        .upsert_policy(&np(&format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: bad, namespace: ns}}\nspec:\n{yaml_spec}"
        )))
        .unwrap_err();
    assert_eq!(err.object, "NetworkPolicy ns/bad");
    (err.field, err.reason)
}

/// Validation as the API server does it (pkg/apis/networking/validation).
#[test]
fn invalid_policies_name_the_field() {
    let (f, r) =
        invalid("  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/33}\n");
    assert_eq!(f, "spec.ingress[0].from[0].ipBlock.cidr");
    assert!(matches!(r, Invalid::BadCidr(_)));
    let (f, r) = invalid(
        "  podSelector: {}\n  egress:\n  - to:\n    - ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.0/24, 10.1.0.0/24]}\n",
    );
    assert_eq!(f, "spec.egress[0].to[0].ipBlock.except[1]");
    assert!(matches!(r, Invalid::ExceptOutsideCidr(_)));
    let (f, r) = invalid("  podSelector: {}\n  ingress:\n  - ports:\n    - endPort: 90\n");
    assert_eq!(
        (f.as_str(), r),
        ("spec.ingress[0].ports[0].port", Invalid::EndPortWithoutPort)
    );
    let (f, r) =
        invalid("  podSelector: {}\n  ingress:\n  - ports:\n    - {port: 90, endPort: 80}\n");
    assert_eq!(f, "spec.ingress[0].ports[0].endPort");
    assert_eq!(
        r,
        Invalid::EndPortBelowPort {
            port: 90,
            end_port: 80
        }
    );
    let (f, r) = invalid(
        "  podSelector: {}\n  ingress:\n  - {}\n  - ports:\n    - {port: http, endPort: 80}\n",
    );
    assert_eq!(
        (f.as_str(), r),
        (
            "spec.ingress[1].ports[0].endPort",
            Invalid::EndPortWithNamedPort
        )
    );
    let (f, r) =
        invalid("  podSelector: {}\n  ingress:\n  - ports:\n    - {port: 80, protocol: tcp}\n");
    assert_eq!(f, "spec.ingress[0].ports[0].protocol");
    assert_eq!(r, Invalid::UnsupportedProtocol("tcp".into()));
    let (f, r) = invalid("  podSelector: {}\n  ingress:\n  - ports:\n    - {port: 0}\n");
    assert_eq!(
        (f.as_str(), r),
        ("spec.ingress[0].ports[0].port", Invalid::PortOutOfRange(0))
    );
    let (f, r) = invalid("  podSelector: {}\n  ingress:\n  - ports:\n    - {port: '80'}\n");
    assert_eq!(
        (f.as_str(), r),
        (
            "spec.ingress[0].ports[0].port",
            Invalid::BadPortName("80".into())
        )
    );
    let (f, r) = invalid(
        "  podSelector:\n    matchExpressions: [{key: app, operator: Equals, values: [x]}]\n",
    );
    assert_eq!(f, "spec.podSelector.matchExpressions[0].operator");
    assert_eq!(r, Invalid::UnsupportedOperator("Equals".into()));
    let (f, r) = invalid(
        "  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchExpressions: [{key: env, operator: In}]\n",
    );
    assert_eq!(
        (f.as_str(), r),
        (
            "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values",
            Invalid::ValuesRequired
        )
    );
    let (f, r) = invalid(
        "  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8}\n      podSelector: {}\n",
    );
    assert_eq!(
        (f.as_str(), r),
        ("spec.ingress[0].from[0]", Invalid::IpBlockWithSelector)
    );
    let (f, r) = invalid("  podSelector: {}\n  ingress:\n  - from:\n    - {}\n");
    assert_eq!(
        (f.as_str(), r),
        ("spec.ingress[0].from[0]", Invalid::EmptyPeer)
    );
    let (f, r) = invalid("  podSelector: {}\n  policyTypes: [Ingress, ingress]\n");
    assert_eq!(
        (f.as_str(), r),
        (
            "spec.policyTypes[1]",
            Invalid::BadPolicyType("ingress".into())
        )
    );
    // The error message carries object, field and reason.
    let mut e = PolicyEngine::new();
    let msg = e
        .upsert_policy(&np("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: 90, endPort: 80}]\n"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with(
            "NetworkPolicy default/x: spec.ingress[0].ports[0].endPort: Invalid value: 80"
        ),
        "{msg}"
    );
    // A rejected policy changes nothing.
    assert_eq!(e.group_count(), 0);
}

#[test]
fn loader_reads_yaml_json_and_lists() {
    let yaml = format!(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {{name: myproject, labels: {{project: myproject}}}}\n- apiVersion: v1\n  kind: Pod\n  metadata: {{name: any, namespace: myproject}}\n  spec:\n    containers:\n    - name: c\n      ports: [{{containerPort: 8080, name: http}}]\n  status:\n    podIPs: [{{ip: 10.2.0.1}}]\n---\n{TEST_NETWORK_POLICY}---\napiVersion: v1\nkind: Service\nmetadata: {{name: s}}\n---\n"
    );
    let objs = podswitch_policy::parse_objects(&yaml).unwrap();
    assert_eq!(objs.len(), 4);
    let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"db","namespace":"default","labels":{"role":"db"}},"status":{"podIP":"10.1.0.1"}}
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"fe","labels":{"role":"frontend"}},"status":{"podIPs":[{"ip":"10.1.0.2"},{"ip":"fd00::2"}]}}"#;
    let mut all = objs;
    // Host-network and finished pods are skipped (they would otherwise clash on addresses).
    all.extend(
        podswitch_policy::parse_objects(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: kube-proxy, namespace: kube-system}\nspec: {hostNetwork: true, containers: []}\nstatus: {podIP: 192.168.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: node-exporter, namespace: kube-system}\nspec: {hostNetwork: true, containers: []}\nstatus: {podIP: 192.168.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: job, namespace: default}\nstatus: {phase: Succeeded, podIP: 10.1.0.1}\n",
        )
        .unwrap(),
    );
    all.extend(podswitch_policy::parse_objects(json).unwrap());
    let mut e = PolicyEngine::new();
    let applied = podswitch_policy::apply(&mut e, &all).unwrap();
    assert_eq!(
        (
            applied.namespaces,
            applied.pods,
            applied.policies,
            applied.skipped
        ),
        (1, 3, 1, 4)
    );
    let s = e.commit();
    assert!(allowed(&s, "10.2.0.1", "10.1.0.1", TCP, 6379));
    assert!(allowed(&s, "fd00::2", "10.1.0.1", TCP, 6379));
    assert!(!allowed(&s, "10.2.0.1", "10.1.0.1", TCP, 80));
    // Errors, not panics, on garbage and on objects of the wrong shape.
    assert!(podswitch_policy::parse_objects("kind: [").is_err());
    assert!(podswitch_policy::parse_objects("42").is_err());
    assert!(podswitch_policy::parse_objects("apiVersion: v1\nkind: Pod\nmetadata: 7\n").is_err());
    assert!(podswitch_policy::parse_objects("{\"kind\":").is_err());
}
