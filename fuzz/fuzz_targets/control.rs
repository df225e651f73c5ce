#![no_main]
//! The control protocol's decoder and request handling against an in-memory controller.
//!
//! The first byte picks the mode. Raw mode: the bytes are a stream of frames (split at arbitrary
//! points) decoded and handled as the server would. Structured mode: the bytes drive a generator
//! of well-formed requests over small name and address sets (so namespaces, endpoints, IPAM,
//! policies, VTEPs and remote endpoints collide often), each encoded, framed, decoded (must give
//! the same request back) and handled. Either way: errors, never panics; a failed request changes
//! nothing (desired state and published generation equal before and after); a successful mutation
//! bumps the generation by one and publishes it; and after every request the state's invariants
//! hold (addresses, ports and interfaces unique; IPAM allocations owned by the endpoint holding the
//! address, inside the subnet, never a reserved address; every endpoint known to the compiled
//! policy snapshot; the desired state survives a JSON round trip).

use std::collections::HashMap;
use std::net::IpAddr;

use std::path::Path;

use podswitch_control::frame::{self, Decoder};
use podswitch_control::proto::{
    EndpointSpec, Family, Kind, Labels, Mac, NamedPort, RemoteSpec, Request, RequestEnvelope,
    VERSION, VtepSpec,
};
use podswitch_control::store;
use podswitch_control::{Controller, Subnet};

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
}

const NAMESPACES: [&str; 3] = ["a", "b", "Bad"];
const SUBNETS: [Option<&str>; 5] = [
    None,
    Some("10.0.0.0/29"),
    Some("10.0.0.0/28"),
    Some("10.1.0.0/29"),
    Some("fd00::/125"),
];
const NAMES: [&str; 6] = ["p0", "p1", "p2", "vm", "x..y", "p3"];
const ADDRS: [&str; 8] = [
    "10.0.0.2",
    "10.0.0.3",
    "10.0.0.1",
    "10.0.0.7",
    "10.1.0.4",
    "172.16.0.1",
    "fd00::2",
    "224.0.0.1",
];
const POLICIES: [&str; 4] = [
    "{\"apiVersion\":\"networking.k8s.io/v1\",\"kind\":\"NetworkPolicy\",\"metadata\":{\"name\":\"deny\",\"namespace\":\"a\"},\"spec\":{\"podSelector\":{}}}",
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: b}\nspec:\n  podSelector: {matchLabels: {app: p1}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {env: x}}}]\n    ports: [{port: http}]\n",
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: a}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: 0}]}]\n",
    "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
];

fn pick<T: Copy>(b: &mut Bytes, xs: &[T]) -> Option<T> {
    Some(xs[usize::from(b.u8()?) % xs.len()])
}

fn labels(b: &mut Bytes) -> Option<Labels> {
    let v = b.u8()?;
    let mut l = Labels::new();
    if v & 1 != 0 {
        l.insert("app".into(), NAMES[usize::from(v >> 1) % 4].into());
    }
    if v & 8 != 0 {
        l.insert("env".into(), "x".into());
    }
    if v & 16 != 0 {
        l.insert("bad key".into(), "v".into());
    }
    Some(l)
}

fn request(b: &mut Bytes) -> Option<Request> {
    let ns = pick(b, &NAMESPACES)?.to_owned();
    Some(match b.u8()? % 16 {
        0 => Request::NamespaceCreate {
            name: ns,
            labels: labels(b)?,
            subnet_v4: pick(b, &SUBNETS)?.and_then(|s| Subnet::parse(s).ok()),
            subnet_v6: pick(b, &SUBNETS)?.and_then(|s| Subnet::parse(s).ok()),
        },
        1 => Request::NamespaceDelete { name: ns },
        2 => Request::NamespaceLabel {
            name: ns,
            labels: labels(b)?,
        },
        3 | 4 => {
            let name = pick(b, &NAMES)?.to_owned();
            let flags = b.u8()?;
            let mut ips = Vec::new();
            if flags & 1 != 0 {
                ips.push(pick(b, &ADDRS)?.parse().ok()?);
            }
            let mut allocate = Vec::new();
            if flags & 2 != 0 {
                allocate.push(Family::Ipv4);
            }
            if flags & 4 != 0 {
                allocate.push(Family::Ipv6);
            }
            let port = match flags >> 5 {
                0..=3 => None,
                4 => Some(0),
                5 => Some(1_000_001),
                n => Some(u32::from(n) - 5),
            };
            Request::EndpointAdd(EndpointSpec {
                namespace: ns,
                interface: format!("veth{}", b.u8()? % 5),
                name,
                kind: if flags & 8 != 0 { Kind::Vm } else { Kind::Pod },
                port,
                mac: Mac([if flags & 16 != 0 { 1 } else { 2 }, 0, 0, 0, 0, b.u8()?]),
                ips,
                allocate,
                labels: labels(b)?,
                ports: vec![NamedPort {
                    name: Some("http".into()),
                    protocol: "TCP".into(),
                    port: 80,
                }],
                mtu: None,
            })
        }
        5 => Request::EndpointDelete {
            namespace: ns,
            name: pick(b, &NAMES)?.to_owned(),
        },
        6 => Request::EndpointLabel {
            namespace: ns,
            name: pick(b, &NAMES)?.to_owned(),
            labels: labels(b)?,
        },
        7 => Request::PolicyApply {
            text: pick(b, &POLICIES)?.to_owned(),
        },
        8 => Request::PolicyDelete {
            namespace: ns,
            name: ["deny", "web"][usize::from(b.u8()? & 1)].into(),
        },
        9 => Request::VtepAdd(VtepSpec {
            id: u32::from(b.u8()? % 4),
            ip: format!("192.0.2.{}", b.u8()? % 3 + 5).parse().ok()?,
            next_hop_mac: Mac([2, 0, 0, 0, 0, 9]),
            vni: [100, 200, 300][usize::from(b.u8()?) % 3],
            gbp: false,
        }),
        10 => Request::VtepDelete {
            id: u32::from(b.u8()? % 4),
        },
        11 => Request::RemoteAdd(RemoteSpec {
            namespace: ns,
            name: pick(b, &NAMES)?.to_owned(),
            kind: Kind::Vm,
            vtep: u32::from(b.u8()? % 4),
            mac: Mac([2, 0, 0, 0, 8, 1]),
            ips: vec![pick(b, &ADDRS)?.parse().ok()?],
            labels: labels(b)?,
            ports: vec![],
        }),
        12 => Request::RemoteDelete {
            namespace: ns,
            name: pick(b, &NAMES)?.to_owned(),
        },
        13 => Request::Trace {
            src: pick(b, &ADDRS)?.parse().ok()?,
            dst: pick(b, &ADDRS)?.parse().ok()?,
            protocol: ["TCP", "UDP", "1", "XTP"][usize::from(b.u8()? % 4)].into(),
            port: u16::from(b.u8()?),
        },
        14 => [
            Request::NamespaceList,
            Request::EndpointList { namespace: None },
            Request::PolicyList {
                namespace: Some(ns),
            },
            Request::VtepList,
            Request::RemoteList,
            Request::Counters,
            Request::Health,
            Request::FlowDump { max: None },
        ][usize::from(b.u8()? % 8)]
        .clone(),
        _ => Request::Wait {
            generation: u64::from(b.u8()?),
            timeout_ms: 0,
        },
    })
}

fn check_invariants(c: &Controller) {
    let d = c.desired();
    assert_eq!(
        c.cell().generation(),
        d.generation,
        "published generation lags"
    );
    let mut owner: HashMap<IpAddr, &String> = HashMap::new();
    let mut ports = HashMap::new();
    let mut ifaces = HashMap::new();
    for (k, e) in &d.endpoints {
        assert_eq!(k, &format!("{}/{}", e.namespace, e.name));
        assert!(d.namespaces.contains_key(&e.namespace));
        assert!(!e.ips.is_empty());
        for a in &e.ips {
            assert!(owner.insert(*a, k).is_none(), "address {a} twice");
        }
        assert!(ports.insert(e.port, k).is_none(), "port {} twice", e.port);
        assert!(
            e.port != 0 && e.port < 1_000_000,
            "reserved port {}",
            e.port
        );
        assert!(ifaces.insert(e.interface.clone(), k).is_none());
    }
    for (k, r) in &d.remotes {
        assert!(d.vteps.contains_key(&r.vtep), "remote {k} without VTEP");
        for a in &r.ips {
            assert!(owner.insert(*a, k).is_none(), "address {a} twice");
        }
    }
    let snap = c.state();
    for a in owner.keys() {
        assert!(
            snap.policy().endpoint_by_addr(*a).is_some(),
            "{a} not compiled"
        );
    }
    for (name, ns) in &d.namespaces {
        for pool in [ns.v4.as_ref(), ns.v6.as_ref()].into_iter().flatten() {
            for (a, k) in &pool.allocated {
                assert!(pool.subnet.is_host(*a), "{a} reserved in {}", pool.subnet);
                assert_eq!(
                    owner.get(a),
                    Some(&k),
                    "allocation {a} of {name} not held by {k}"
                );
            }
        }
    }
    let bytes = store::encode(d).unwrap();
    let back = store::decode(&bytes, Path::new("fuzz")).unwrap();
    assert_eq!(&back, d);
}

fn run(c: &mut Controller, req: Request) {
    let before = c.desired().clone();
    let mutating = req.is_mutating();
    let r = c.handle(req);
    match &r {
        Err(_) => {
            assert_eq!(
                c.desired(),
                &before,
                "a failed request changed state: {r:?}"
            );
        }
        Ok(reply) if mutating => {
            assert_eq!(reply.generation(), Some(before.generation + 1));
            assert_eq!(c.generation(), before.generation + 1);
        }
        Ok(_) => assert_eq!(c.desired(), &before, "a read changed state"),
    }
    check_invariants(c);
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut c = Controller::in_memory(None).unwrap();
    let mut decoder = Decoder::new(64 * 1024);
    if mode & 1 == 0 {
        // Raw frames, pushed in chunks whose sizes the input picks.
        let mut b = Bytes(rest);
        let mut i = 0;
        while i < rest.len() {
            let n = usize::from(b.u8().unwrap_or(1)).max(1).min(rest.len() - i);
            decoder.push(&rest[i..i + n]);
            i += n;
            loop {
                match decoder.next_frame() {
                    Ok(Some(body)) => {
                        if let Ok(env) = frame::decode_request(&body) {
                            run(&mut c, env.request);
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return, // the server closes such a connection
                }
            }
        }
    } else {
        let mut b = Bytes(rest);
        let mut id = 0;
        while let Some(req) = request(&mut b) {
            id += 1;
            let env = RequestEnvelope {
                version: VERSION,
                id,
                request: req,
            };
            decoder.push(&frame::encode(&frame::encode_request(&env)));
            let body = decoder.next_frame().unwrap().unwrap();
            let back = frame::decode_request(&body).unwrap();
            assert_eq!(back, env);
            run(&mut c, back.request);
        }
    }
});
