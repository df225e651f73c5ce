//! Unit tests of the controller: every request kind in memory, validation (a failed request
//! changes nothing), IPAM through requests, persistence and its failure, batches, `wait`.

use super::*;
use crate::proto::{Family, Mac};
use podswitch_conntrack::{Config as CtConfig, Table};
use podswitch_datapath::{DropReason, PortStats, Stats};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ctl() -> Controller {
    Controller::in_memory(None).unwrap()
}

fn ns(c: &mut Controller, name: &str, v4: Option<&str>, v6: Option<&str>) -> u64 {
    c.handle(Request::NamespaceCreate {
        name: name.into(),
        labels: Labels::new(),
        subnet_v4: v4.map(|s| Subnet::parse(s).unwrap()),
        subnet_v6: v6.map(|s| Subnet::parse(s).unwrap()),
    })
    .unwrap()
    .generation()
    .unwrap()
}

fn spec(ns: &str, name: &str, n: u8) -> EndpointSpec {
    EndpointSpec {
        namespace: ns.into(),
        name: name.into(),
        kind: Kind::Pod,
        interface: format!("veth{name}"),
        port: None,
        mac: Mac([2, 0, 0, 0, 1, n]),
        ips: vec![],
        allocate: vec![Family::Ipv4],
        labels: [("app".to_owned(), name.to_owned())].into(),
        ports: vec![],
        mtu: None,
    }
}

fn code(r: Result<Reply, ControlError>) -> (ErrorCode, Option<String>) {
    let e = r.unwrap_err();
    (e.code, e.field)
}

/// Runs a request that must fail and checks the desired state did not change.
fn fails(c: &mut Controller, req: Request) -> ControlError {
    let before = c.desired().clone();
    let gen_before = c.cell().generation();
    let e = c.handle(req).unwrap_err();
    assert_eq!(c.desired(), &before, "failed request changed state: {e}");
    assert_eq!(c.cell().generation(), gen_before);
    e
}

#[test]
fn namespace_lifecycle() {
    let mut c = ctl();
    assert_eq!(
        ns(&mut c, "prod", Some("10.1.0.0/24"), Some("fd00:1::/64")),
        1
    );
    assert_eq!(c.state().generation(), 1);
    let e = fails(
        &mut c,
        Request::NamespaceCreate {
            name: "prod".into(),
            labels: Labels::new(),
            subnet_v4: None,
            subnet_v6: None,
        },
    );
    assert_eq!(e.code, ErrorCode::Conflict);
    let e = fails(
        &mut c,
        Request::NamespaceCreate {
            name: "Bad_Name".into(),
            labels: Labels::new(),
            subnet_v4: None,
            subnet_v6: None,
        },
    );
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::Invalid, Some("request.name"))
    );
    let e = fails(
        &mut c,
        Request::NamespaceCreate {
            name: "dev".into(),
            labels: Labels::new(),
            subnet_v4: Some(Subnet::parse("10.1.0.128/25").unwrap()),
            subnet_v6: None,
        },
    );
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("overlaps"), "{e}");
    let e = fails(
        &mut c,
        Request::NamespaceCreate {
            name: "dev".into(),
            labels: Labels::new(),
            subnet_v4: Some(Subnet::parse("fd00:2::/64").unwrap()),
            subnet_v6: None,
        },
    );
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::Invalid, Some("request.subnet_v4"))
    );
    let bad_labels: Labels = [("a b".to_owned(), "x".to_owned())].into();
    let e = fails(
        &mut c,
        Request::NamespaceLabel {
            name: "prod".into(),
            labels: bad_labels,
        },
    );
    assert_eq!(e.code, ErrorCode::Invalid);
    let g = c
        .handle(Request::NamespaceLabel {
            name: "prod".into(),
            labels: [("env".to_owned(), "prod".to_owned())].into(),
        })
        .unwrap()
        .generation()
        .unwrap();
    assert_eq!(g, 2);
    let Reply::Namespaces { items } = c.handle(Request::NamespaceList).unwrap() else {
        panic!()
    };
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].labels["env"], "prod");
    assert_eq!(items[0].gateways, vec![ip("10.1.0.1"), ip("fd00:1::1")]);
    assert_eq!(
        fails(
            &mut c,
            Request::NamespaceLabel {
                name: "nope".into(),
                labels: Labels::new()
            }
        )
        .code,
        ErrorCode::NotFound
    );
    c.handle(Request::NamespaceDelete {
        name: "prod".into(),
    })
    .unwrap();
    assert_eq!(
        fails(
            &mut c,
            Request::NamespaceDelete {
                name: "prod".into()
            }
        )
        .code,
        ErrorCode::NotFound
    );
    assert_eq!(c.generation(), 3);
}

#[test]
fn endpoints_allocate_and_conflict() {
    let mut c = ctl();
    ns(&mut c, "prod", Some("10.1.0.0/24"), Some("fd00:1::/64"));
    let mut s = spec("prod", "web", 1);
    s.allocate = vec![Family::Ipv4, Family::Ipv6];
    s.ports = vec![NamedPort {
        name: Some("http".into()),
        protocol: "TCP".into(),
        port: 80,
    }];
    let Reply::EndpointAdded {
        generation,
        port,
        ips,
        gateways,
        mtu,
    } = c.handle(Request::EndpointAdd(s)).unwrap()
    else {
        panic!()
    };
    assert_eq!(generation, 2);
    assert_eq!(port, 1, "port 0 is the uplink");
    assert_eq!(ips, vec![ip("10.1.0.2"), ip("fd00:1::2")]);
    assert_eq!(gateways, vec![ip("10.1.0.1"), ip("fd00:1::1")]);
    assert_eq!(mtu, 1450, "overlay pod MTU over a 1500 IPv4 underlay");
    // Compiled: the policy snapshot knows the endpoint by address.
    let st = c.state();
    assert_eq!(st.generation(), 2);
    assert!(st.policy().endpoint_by_addr(ip("10.1.0.2")).is_some());

    let Reply::EndpointAdded { port, ips, .. } = c
        .handle(Request::EndpointAdd(spec("prod", "db", 2)))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((port, ips), (2, vec![ip("10.1.0.3")]));

    // Duplicates and conflicts, each naming the culprit.
    let e = fails(&mut c, Request::EndpointAdd(spec("prod", "db", 3)));
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::Conflict, Some("request.name"))
    );
    let mut s = spec("prod", "x", 4);
    s.allocate.clear();
    s.ips = vec![ip("10.1.0.3")];
    let e = fails(&mut c, Request::EndpointAdd(s));
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::Conflict, Some("request.ips[0]"))
    );
    assert!(e.message.contains("prod/db"), "{e}");
    let mut s = spec("prod", "x", 4);
    s.port = Some(2);
    assert_eq!(
        code(c.handle(Request::EndpointAdd(s))).0,
        ErrorCode::Conflict
    );
    let mut s = spec("prod", "x", 4);
    s.port = Some(0);
    assert_eq!(
        code(c.handle(Request::EndpointAdd(s))).0,
        ErrorCode::Conflict
    );
    let mut s = spec("prod", "x", 4);
    s.port = Some(1_000_005);
    let e = fails(&mut c, Request::EndpointAdd(s));
    assert!(e.message.contains("reserved"), "{e}");
    let mut s = spec("prod", "x", 4);
    s.interface = "vethweb".into();
    let e = fails(&mut c, Request::EndpointAdd(s));
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::Conflict, Some("request.interface"))
    );
    let mut s = spec("prod", "x", 4);
    s.ips = vec![ip("10.2.0.9")];
    s.allocate.clear();
    let e = fails(&mut c, Request::EndpointAdd(s));
    assert!(e.message.contains("outside the namespace"), "{e}");
    let mut s = spec("prod", "x", 4);
    s.ips = vec![ip("10.1.0.1")];
    s.allocate.clear();
    assert_eq!(
        fails(&mut c, Request::EndpointAdd(s)).code,
        ErrorCode::Invalid
    );
    let mut s = spec("prod", "x", 4);
    s.ips = vec![ip("10.1.0.9"), ip("10.1.0.9")];
    assert_eq!(
        fails(&mut c, Request::EndpointAdd(s)).field.as_deref(),
        Some("request.ips[1]")
    );
    let mut s = spec("prod", "x", 4);
    s.mac = Mac([1, 0, 0, 0, 0, 1]);
    assert_eq!(
        fails(&mut c, Request::EndpointAdd(s)).field.as_deref(),
        Some("request.mac")
    );
    let mut s = spec("prod", "x", 4);
    s.mtu = Some(9000);
    assert_eq!(
        fails(&mut c, Request::EndpointAdd(s)).field.as_deref(),
        Some("request.mtu")
    );
    let mut s = spec("prod", "x", 4);
    s.allocate.clear();
    assert_eq!(
        fails(&mut c, Request::EndpointAdd(s)).field.as_deref(),
        Some("request.ips")
    );
    let mut s = spec("prod", "x", 4);
    s.ports = vec![NamedPort {
        name: Some("HTTP".into()),
        protocol: "TCP".into(),
        port: 80,
    }];
    assert_eq!(
        fails(&mut c, Request::EndpointAdd(s)).field.as_deref(),
        Some("request.ports[0].name")
    );
    let mut s = spec("prod", "x", 4);
    s.ports = vec![NamedPort {
        name: None,
        protocol: "ICMP".into(),
        port: 80,
    }];
    assert_eq!(
        fails(&mut c, Request::EndpointAdd(s)).field.as_deref(),
        Some("request.ports[0].protocol")
    );
    let s = spec("nope", "x", 4);
    assert_eq!(
        fails(&mut c, Request::EndpointAdd(s)).code,
        ErrorCode::NotFound
    );

    // Relabel, list, delete (releases the addresses).
    c.handle(Request::EndpointLabel {
        namespace: "prod".into(),
        name: "db".into(),
        labels: [("app".to_owned(), "db2".to_owned())].into(),
    })
    .unwrap();
    let Reply::Endpoints { items } = c
        .handle(Request::EndpointList {
            namespace: Some("prod".into()),
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].name, "db");
    assert_eq!(items[0].labels["app"], "db2");
    c.handle(Request::EndpointDelete {
        namespace: "prod".into(),
        name: "db".into(),
    })
    .unwrap();
    assert_eq!(
        fails(
            &mut c,
            Request::EndpointDelete {
                namespace: "prod".into(),
                name: "db".into()
            }
        )
        .code,
        ErrorCode::NotFound
    );
    assert!(
        !c.desired().namespaces["prod"]
            .v4
            .as_ref()
            .unwrap()
            .allocated
            .contains_key(&ip("10.1.0.3"))
    );
    assert!(
        c.state()
            .policy()
            .endpoint_by_addr(ip("10.1.0.3"))
            .is_none()
    );
    // Namespace with an endpoint cannot go.
    let e = fails(
        &mut c,
        Request::NamespaceDelete {
            name: "prod".into(),
        },
    );
    assert_eq!(e.code, ErrorCode::Conflict);
}

#[test]
fn ipam_exhaustion_through_requests() {
    let mut c = ctl();
    ns(&mut c, "tiny", Some("10.5.0.0/29"), None);
    ns(&mut c, "nov6", Some("10.6.0.0/24"), None);
    for i in 0..5 {
        c.handle(Request::EndpointAdd(spec("tiny", &format!("p{i}"), i)))
            .unwrap();
    }
    let e = fails(&mut c, Request::EndpointAdd(spec("tiny", "p5", 5)));
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::Exhausted, Some("request.allocate[0]"))
    );
    let mut s = spec("nov6", "a", 9);
    s.allocate = vec![Family::Ipv6];
    assert_eq!(
        fails(&mut c, Request::EndpointAdd(s)).code,
        ErrorCode::Invalid
    );
    // Every address distinct, none reserved.
    let mut seen = BTreeSet::new();
    for e in c.desired().endpoints.values() {
        for a in &e.ips {
            assert!(seen.insert(*a));
            assert!(Subnet::parse("10.5.0.0/29").unwrap().is_host(*a));
        }
    }
    // Release one, it is handed out again.
    c.handle(Request::EndpointDelete {
        namespace: "tiny".into(),
        name: "p2".into(),
    })
    .unwrap();
    let Reply::EndpointAdded { ips, .. } = c
        .handle(Request::EndpointAdd(spec("tiny", "p6", 6)))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(ips, vec![ip("10.5.0.4")]);
}

const POLICY: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{protocol: TCP, port: 5432}]
";

#[test]
fn policies_and_trace() {
    let mut c = ctl();
    ns(&mut c, "prod", Some("10.1.0.0/24"), None);
    c.handle(Request::EndpointAdd(spec("prod", "web", 1)))
        .unwrap(); // 10.1.0.2
    c.handle(Request::EndpointAdd(spec("prod", "db", 2)))
        .unwrap(); // 10.1.0.3
    c.handle(Request::EndpointAdd(spec("prod", "cache", 3)))
        .unwrap(); // 10.1.0.4
    let Reply::PolicyApplied {
        generation,
        policies,
    } = c
        .handle(Request::PolicyApply {
            text: POLICY.into(),
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(policies, vec!["prod/db"]);
    assert_eq!(c.state().generation(), generation);
    let trace = |c: &mut Controller, src: &str, port: u16| {
        let Reply::Trace(t) = c
            .handle(Request::Trace {
                src: ip(src),
                dst: ip("10.1.0.3"),
                protocol: "TCP".into(),
                port,
            })
            .unwrap()
        else {
            panic!()
        };
        t
    };
    let t = trace(&mut c, "10.1.0.2", 5432);
    assert!(t.allowed, "{t:?}");
    assert_eq!(t.dst_endpoint.as_deref(), Some("prod/db"));
    assert!(t.route.starts_with("local port 2"), "{}", t.route);
    assert!(
        t.policies
            .iter()
            .any(|p| p.policy == "prod/db" && p.selects)
    );
    let t = trace(&mut c, "10.1.0.4", 5432);
    assert!(!t.allowed);
    assert!(
        t.ingress_decision.contains("prod/db"),
        "{}",
        t.ingress_decision
    );
    assert!(!trace(&mut c, "10.1.0.2", 80).allowed);
    // Re-applying the same policy is fine; listing shows it.
    c.handle(Request::PolicyApply {
        text: POLICY.into(),
    })
    .unwrap();
    let Reply::Policies { items } = c.handle(Request::PolicyList { namespace: None }).unwrap()
    else {
        panic!()
    };
    assert_eq!(items.len(), 1);
    assert!(items[0].ingress && !items[0].egress);
    assert_eq!(items[0].object["metadata"]["name"], "db");

    // Invalid policy: the error names the object and the field.
    let bad = POLICY.replace("port: 5432", "port: 70000");
    let e = fails(&mut c, Request::PolicyApply { text: bad });
    assert_eq!(e.code, ErrorCode::Invalid);
    assert_eq!(e.field.as_deref(), Some("spec.ingress[0].ports[0].port"));
    assert!(e.message.contains("NetworkPolicy prod/db"), "{e}");
    let e = fails(
        &mut c,
        Request::PolicyApply {
            text: POLICY.replace("prod}", "ghost}"),
        },
    );
    assert_eq!(e.code, ErrorCode::NotFound);
    let e = fails(
        &mut c,
        Request::PolicyApply {
            text: "{not yaml: [".into(),
        },
    );
    assert_eq!(e.field.as_deref(), Some("request.text"));
    let e = fails(
        &mut c,
        Request::PolicyApply {
            text: "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n".into(),
        },
    );
    assert!(e.message.contains("Pod"), "{e}");
    assert_eq!(
        fails(
            &mut c,
            Request::PolicyApply {
                text: String::new()
            }
        )
        .code,
        ErrorCode::Invalid
    );
    let e = fails(
        &mut c,
        Request::Trace {
            src: ip("10.1.0.2"),
            dst: ip("10.1.0.3"),
            protocol: "XTP".into(),
            port: 1,
        },
    );
    assert_eq!(e.field.as_deref(), Some("request.protocol"));

    c.handle(Request::PolicyDelete {
        namespace: "prod".into(),
        name: "db".into(),
    })
    .unwrap();
    assert!(trace(&mut c, "10.1.0.4", 5432).allowed);
    assert_eq!(
        fails(
            &mut c,
            Request::PolicyDelete {
                namespace: "prod".into(),
                name: "db".into()
            }
        )
        .code,
        ErrorCode::NotFound
    );
}

#[test]
fn namespace_delete_cascades_policies() {
    let mut c = ctl();
    ns(&mut c, "prod", None, None);
    c.handle(Request::PolicyApply {
        text: POLICY.into(),
    })
    .unwrap();
    c.handle(Request::NamespaceDelete {
        name: "prod".into(),
    })
    .unwrap();
    assert!(c.desired().policies.is_empty());
    assert_eq!(c.state().policy().policy_ids().count(), 0);
}

fn vtep(id: u32, last: u8, vni: u32) -> VtepSpec {
    VtepSpec {
        id,
        ip: ip(&format!("192.0.2.{last}")),
        next_hop_mac: Mac([2, 0, 0, 0, 9, last]),
        vni,
        gbp: false,
    }
}

#[test]
fn vteps_and_remote_endpoints() {
    let mut c = ctl();
    ns(&mut c, "prod", Some("10.1.0.0/24"), None);
    c.handle(Request::VtepAdd(vtep(3, 9, 100))).unwrap();
    assert_eq!(
        fails(&mut c, Request::VtepAdd(vtep(3, 10, 100))).code,
        ErrorCode::Conflict
    );
    assert_eq!(
        fails(&mut c, Request::VtepAdd(vtep(4, 9, 100))).code,
        ErrorCode::Conflict
    );
    assert_eq!(
        fails(&mut c, Request::VtepAdd(vtep(4, 10, 300)))
            .field
            .as_deref(),
        Some("request.vni")
    );
    assert_eq!(
        fails(&mut c, Request::VtepAdd(vtep(4, 10, 1 << 24)))
            .field
            .as_deref(),
        Some("request.vni")
    );
    assert_eq!(
        fails(&mut c, Request::VtepAdd(vtep(MAX_VTEPS, 10, 100)))
            .field
            .as_deref(),
        Some("request.id")
    );
    let mut v6 = vtep(4, 10, 100);
    v6.ip = ip("2001:db8::1");
    assert_eq!(
        fails(&mut c, Request::VtepAdd(v6)).field.as_deref(),
        Some("request.ip")
    );
    let remote = RemoteSpec {
        namespace: "prod".into(),
        name: "vm-db".into(),
        kind: Kind::Vm,
        vtep: 3,
        mac: Mac([2, 0, 0, 0, 8, 1]),
        ips: vec![ip("172.16.0.5")],
        labels: [("app".to_owned(), "db".to_owned())].into(),
        ports: vec![],
    };
    c.handle(Request::RemoteAdd(remote.clone())).unwrap();
    let st = c.state();
    assert_eq!(
        st.overlay().endpoint(ip("172.16.0.5")).map(|e| e.vtep),
        Some(3)
    );
    assert!(st.policy().endpoint_by_addr(ip("172.16.0.5")).is_some());
    assert_eq!(
        fails(&mut c, Request::RemoteAdd(remote.clone())).code,
        ErrorCode::Conflict
    );
    let mut other = remote.clone();
    other.name = "vm2".into();
    assert_eq!(
        fails(&mut c, Request::RemoteAdd(other.clone())).code,
        ErrorCode::Conflict
    );
    other.ips = vec![ip("172.16.0.6")];
    other.vtep = 7;
    assert_eq!(
        fails(&mut c, Request::RemoteAdd(other)).field.as_deref(),
        Some("request.vtep")
    );
    // A local endpoint cannot take the remote's address.
    let mut s = spec("prod", "clash", 1);
    s.kind = Kind::Vm;
    s.ips = vec![ip("172.16.0.5")];
    assert_eq!(
        fails(&mut c, Request::EndpointAdd(s)).code,
        ErrorCode::Conflict
    );
    let Reply::Trace(t) = c
        .handle(Request::Trace {
            src: ip("172.16.0.5"),
            dst: ip("172.16.0.5"),
            protocol: "6".into(),
            port: 22,
        })
        .unwrap()
    else {
        panic!()
    };
    assert!(t.route.contains("VTEP 3"), "{}", t.route);
    let Reply::Remotes { items } = c.handle(Request::RemoteList).unwrap() else {
        panic!()
    };
    assert_eq!(items, vec![remote]);
    let Reply::Vteps { items } = c.handle(Request::VtepList).unwrap() else {
        panic!()
    };
    assert_eq!(items.len(), 1);
    assert_eq!(
        fails(&mut c, Request::VtepDelete { id: 3 }).code,
        ErrorCode::Conflict
    );
    assert!(
        fails(
            &mut c,
            Request::EndpointDelete {
                namespace: "prod".into(),
                name: "vm-db".into()
            }
        )
        .message
        .contains("remote_delete")
    );
    c.handle(Request::RemoteDelete {
        namespace: "prod".into(),
        name: "vm-db".into(),
    })
    .unwrap();
    assert!(c.state().overlay().endpoint(ip("172.16.0.5")).is_none());
    c.handle(Request::VtepDelete { id: 3 }).unwrap();
    assert_eq!(
        fails(&mut c, Request::VtepDelete { id: 3 }).code,
        ErrorCode::NotFound
    );
    assert_eq!(
        fails(
            &mut c,
            Request::RemoteDelete {
                namespace: "prod".into(),
                name: "vm-db".into()
            }
        )
        .code,
        ErrorCode::NotFound
    );
    assert_eq!(c.state().overlay().vteps().count(), 0);
}

#[test]
fn reads_without_a_dataplane() {
    let mut c = ctl();
    let Reply::Counters(k) = c.handle(Request::Counters).unwrap() else {
        panic!()
    };
    assert!(!k.dataplane && k.conntrack.is_none());
    for r in [
        Request::FlowDump { max: None },
        Request::FlowFlush,
        Request::ConntrackDump {
            address: None,
            zone: None,
            max: None,
        },
        Request::ConntrackFlush {
            address: None,
            zone: None,
        },
    ] {
        assert_eq!(code(c.handle(r)).0, ErrorCode::Unsupported);
    }
    let Reply::Health(h) = c.handle(Request::Health).unwrap() else {
        panic!()
    };
    assert_eq!((h.generation, h.workers, h.persistent), (0, 0, false));
    // No workers: everything published is realised; a future generation is a client error.
    let Reply::Realised { realised, .. } = c
        .handle(Request::Wait {
            generation: 0,
            timeout_ms: 0,
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(realised, 0);
    assert_eq!(
        code(c.handle(Request::Wait {
            generation: 5,
            timeout_ms: 0
        })),
        (ErrorCode::Invalid, Some("request.generation".into()))
    );
}

struct FakeDataplane {
    table: Table,
    stats: Stats,
}

impl Dataplane for FakeDataplane {
    fn stats(&self) -> Option<Stats> {
        Some(self.stats.clone())
    }
    fn conntrack(&self) -> Option<&Table> {
        Some(&self.table)
    }
    fn flows(&self, max: usize) -> Option<Vec<crate::proto::FlowRecord>> {
        Some(
            (0..3)
                .map(|i| crate::proto::FlowRecord {
                    worker: i,
                    key: format!("flow{i}"),
                    action: "output".into(),
                    generation: 1,
                })
                .take(max)
                .collect(),
        )
    }
    fn flush_flows(&self) -> Option<usize> {
        Some(3)
    }
}

#[test]
fn reads_with_a_dataplane() {
    let mut stats = Stats::default();
    let mut p = PortStats {
        rx_packets: 10,
        ..PortStats::default()
    };
    p.drops[DropReason::SpoofedIp.index()] = 4;
    stats.ports.insert(1, p);
    let dp = FakeDataplane {
        table: Table::new(&CtConfig::default()),
        stats,
    };
    let realised = Realised::new(1);
    let mut c =
        Controller::open(ControllerConfig::example(), Arc::new(dp), realised.clone()).unwrap();
    ns(&mut c, "prod", Some("10.1.0.0/24"), None);
    c.handle(Request::EndpointAdd(spec("prod", "web", 1)))
        .unwrap();
    let Reply::Counters(k) = c.handle(Request::Counters).unwrap() else {
        panic!()
    };
    assert!(k.dataplane);
    assert_eq!(k.ports[0].endpoint.as_deref(), Some("prod/web"));
    assert_eq!(k.ports[0].drops[DropReason::SpoofedIp.name()], 4);
    assert_eq!(k.drops[DropReason::SpoofedIp.name()], 4);
    assert_eq!(k.conntrack.as_ref().map(|t| t.occupancy), Some(0));
    let Reply::Flows { items } = c.handle(Request::FlowDump { max: Some(2) }).unwrap() else {
        panic!()
    };
    assert_eq!(items.len(), 2);
    assert_eq!(
        c.handle(Request::FlowFlush).unwrap(),
        Reply::Flushed { count: 3 }
    );
    let Reply::Conntrack { items } = c
        .handle(Request::ConntrackDump {
            address: Some(ip("10.1.0.2")),
            zone: None,
            max: None,
        })
        .unwrap()
    else {
        panic!()
    };
    assert!(items.is_empty());
    assert_eq!(
        c.handle(Request::ConntrackFlush {
            address: None,
            zone: Some(1)
        })
        .unwrap(),
        Reply::Flushed { count: 0 }
    );
    // One worker: wait reports timeout until it realises; then the latency is recorded.
    assert_eq!(
        code(c.handle(Request::Wait {
            generation: 2,
            timeout_ms: 0
        }))
        .0,
        ErrorCode::Timeout
    );
    let mut reader = c.cell().reader();
    let st = reader.refresh().unwrap();
    assert_eq!(st.generation(), 2);
    assert!(reader.refresh().is_none());
    realised.report(0, st.generation());
    realised.observe(std::time::Instant::now());
    assert!(
        c.handle(Request::Wait {
            generation: 2,
            timeout_ms: 0
        })
        .is_ok()
    );
    let Reply::Counters(k) = c.handle(Request::Counters).unwrap() else {
        panic!()
    };
    assert_eq!(k.realisation.samples, 2, "both generations realised");
    assert_eq!(k.realised_generation, 2);
}

#[test]
fn batch_commits_once_and_keeps_order() {
    let mut c = ctl();
    let out = c.handle_batch(vec![
        Request::NamespaceCreate {
            name: "a".into(),
            labels: Labels::new(),
            subnet_v4: Some(Subnet::parse("10.1.0.0/24").unwrap()),
            subnet_v6: None,
        },
        Request::EndpointAdd(spec("a", "p", 1)),
        Request::EndpointAdd(spec("a", "p", 2)), // duplicate: fails alone
        Request::EndpointAdd(spec("a", "q", 3)),
        Request::EndpointList { namespace: None },
        Request::NamespaceDelete { name: "zz".into() },
    ]);
    assert_eq!(out.len(), 6);
    assert_eq!(out[0].as_ref().unwrap().generation(), Some(1));
    assert_eq!(out[1].as_ref().unwrap().generation(), Some(2));
    assert_eq!(out[2].as_ref().unwrap_err().code, ErrorCode::Conflict);
    assert_eq!(out[3].as_ref().unwrap().generation(), Some(3));
    let Ok(Reply::Endpoints { items }) = &out[4] else {
        panic!()
    };
    assert_eq!(items.len(), 2);
    assert_eq!(out[5].as_ref().unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(c.state().generation(), 3);
}

#[test]
fn persistence_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ControllerConfig::example();
    cfg.state_dir = Some(dir.path().to_owned());
    let open = |cfg: &ControllerConfig| {
        Controller::open(
            cfg.clone(),
            Arc::new(dataplane::NoDataplane),
            Realised::new(0),
        )
        .unwrap()
    };
    let mut c = open(&cfg);
    ns(&mut c, "prod", Some("10.1.0.0/24"), Some("fd00:1::/64"));
    c.handle(Request::EndpointAdd(spec("prod", "web", 1)))
        .unwrap();
    c.handle(Request::EndpointAdd(spec("prod", "db", 2)))
        .unwrap();
    c.handle(Request::EndpointDelete {
        namespace: "prod".into(),
        name: "web".into(),
    })
    .unwrap();
    c.handle(Request::PolicyApply {
        text: POLICY.into(),
    })
    .unwrap();
    c.handle(Request::VtepAdd(vtep(1, 7, 200))).unwrap();
    c.handle(Request::RemoteAdd(RemoteSpec {
        namespace: "prod".into(),
        name: "bm".into(),
        kind: Kind::BareMetal,
        vtep: 1,
        mac: Mac([2, 0, 0, 0, 8, 2]),
        ips: vec![ip("172.16.0.9")],
        labels: Labels::new(),
        ports: vec![],
    }))
    .unwrap();
    let before = c.desired().clone();
    let g = c.generation();
    drop(c);
    let mut c = open(&cfg);
    assert_eq!(c.desired(), &before);
    assert_eq!(c.state().generation(), g);
    assert!(
        c.state()
            .policy()
            .endpoint_by_addr(ip("10.1.0.3"))
            .is_some()
    );
    assert_eq!(c.state().policy().policy_ids().count(), 1);
    assert_eq!(
        c.state()
            .overlay()
            .endpoint(ip("172.16.0.9"))
            .map(|e| e.vtep),
        Some(1)
    );
    // Generations keep growing; next-fit IPAM does not hand out .2 (released) before .4.
    let Reply::EndpointAdded {
        generation, ips, ..
    } = c
        .handle(Request::EndpointAdd(spec("prod", "new", 3)))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(generation, g + 1);
    assert_eq!(ips, vec![ip("10.1.0.4")]);
}

#[test]
fn persist_failure_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ControllerConfig::example();
    cfg.state_dir = Some(dir.path().to_owned());
    let mut c = Controller::open(cfg, Arc::new(dataplane::NoDataplane), Realised::new(0)).unwrap();
    ns(&mut c, "prod", Some("10.1.0.0/24"), None);
    // No journal: every commit writes a snapshot, and a directory where the snapshot's temp file
    // goes makes every save fail (even for root).
    c.store.as_mut().unwrap().set_journal_bytes(0);
    let blocker = dir.path().join("state.json.tmp");
    std::fs::create_dir(&blocker).unwrap();
    let before = c.desired().clone();
    let out = c.handle_batch(vec![
        Request::EndpointAdd(spec("prod", "web", 1)),
        Request::PolicyApply {
            text: POLICY.into(),
        },
    ]);
    for r in &out {
        assert_eq!(r.as_ref().unwrap_err().code, ErrorCode::Persist);
    }
    assert_eq!(c.desired(), &before);
    assert_eq!(c.state().generation(), 1);
    assert!(
        c.state()
            .policy()
            .endpoint_by_addr(ip("10.1.0.2"))
            .is_none()
    );
    std::fs::remove_dir(&blocker).unwrap();
    let Reply::EndpointAdded {
        generation, ips, ..
    } = c
        .handle(Request::EndpointAdd(spec("prod", "web", 1)))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((generation, ips), (2, vec![ip("10.1.0.2")]));
    // After the failed saves the store holds exactly the state.
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(store.load().unwrap().as_ref(), Some(c.desired()));
}

#[test]
fn store_rejects_unknown_format_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    assert!(store.load().unwrap().is_none());
    std::fs::write(store.path(), br#"{"format": 99, "state": {}}"#).unwrap();
    assert!(matches!(
        store.load(),
        Err(crate::store::StoreError::Format { found: 99, .. })
    ));
    std::fs::write(store.path(), b"{\"format\": 1, \"sta").unwrap();
    assert!(matches!(
        store.load(),
        Err(crate::store::StoreError::Corrupt { .. })
    ));
    let mut d = DesiredState {
        generation: 7,
        ..DesiredState::default()
    };
    d.namespaces.insert(
        "a".into(),
        NamespaceRecord {
            labels: Labels::new(),
            v4: Some(Pool::new(Subnet::parse("10.0.0.0/8").unwrap())),
            v6: None,
        },
    );
    store.save(&d).unwrap();
    assert_eq!(store.load().unwrap(), Some(d));
}

#[test]
fn incremental_store_matches_desired_after_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ControllerConfig::example();
    cfg.state_dir = Some(dir.path().to_owned());
    let mut c = Controller::open(cfg, Arc::new(dataplane::NoDataplane), Realised::new(0)).unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let mut reqs = vec![
        Request::NamespaceCreate {
            name: "prod".into(),
            labels: Labels::new(),
            subnet_v4: Some(Subnet::parse("10.1.0.0/24").unwrap()),
            subnet_v6: None,
        },
        Request::NamespaceCreate {
            name: "dev".into(),
            labels: Labels::new(),
            subnet_v4: Some(Subnet::parse("10.2.0.0/24").unwrap()),
            subnet_v6: None,
        },
        Request::EndpointAdd(spec("prod", "web", 1)),
        Request::EndpointAdd(spec("dev", "api", 2)),
        Request::PolicyApply {
            text: POLICY.into(),
        },
        Request::VtepAdd(vtep(2, 8, 100)),
        Request::RemoteAdd(RemoteSpec {
            namespace: "dev".into(),
            name: "vm".into(),
            kind: Kind::Vm,
            vtep: 2,
            mac: Mac([2, 0, 0, 0, 8, 3]),
            ips: vec![ip("172.16.1.1")],
            labels: Labels::new(),
            ports: vec![],
        }),
        Request::EndpointLabel {
            namespace: "dev".into(),
            name: "vm".into(),
            labels: [("app".to_owned(), "x".to_owned())].into(),
        },
        Request::NamespaceLabel {
            name: "prod".into(),
            labels: [("env".to_owned(), "p".to_owned())].into(),
        },
        Request::EndpointDelete {
            namespace: "prod".into(),
            name: "web".into(),
        },
        Request::PolicyApply {
            text: POLICY.replace("5432", "5433"),
        },
        Request::RemoteDelete {
            namespace: "dev".into(),
            name: "vm".into(),
        },
        Request::VtepDelete { id: 2 },
        Request::NamespaceDelete {
            name: "prod".into(),
        },
    ];
    // Some that fail in between.
    reqs.insert(3, Request::EndpointAdd(spec("prod", "web", 9)));
    reqs.insert(7, Request::VtepDelete { id: 7 });
    let mut failed = 0;
    for r in reqs {
        if c.handle(r).is_err() {
            failed += 1;
        }
        assert_eq!(store.load().unwrap().as_ref(), Some(c.desired()));
    }
    assert_eq!(failed, 2);
    // Batches, too: several entries dirty in one commit.
    let out = c.handle_batch(vec![
        Request::EndpointAdd(spec("dev", "a", 3)),
        Request::EndpointAdd(spec("dev", "b", 4)),
        Request::EndpointDelete {
            namespace: "dev".into(),
            name: "a".into(),
        },
    ]);
    assert!(out.iter().all(Result::is_ok));
    assert_eq!(store.load().unwrap().as_ref(), Some(c.desired()));
}
