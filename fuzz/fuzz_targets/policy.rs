#![no_main]
//! Arbitrary YAML/JSON fed to the policy loader and compiler: errors, never panics. For whatever
//! loads, it checks invariants and a differential oracle: the same objects installed in the
//! opposite order (policies first, then namespaces, then pods — exercising every incremental
//! path) give the same verdict for every pair; a pod always reaches itself; the explanation agrees
//! with the verdict; the verdict by address agrees with the verdict by endpoint; and removing every
//! policy allows everything.

use podswitch_policy::{Endpoint, Object, PolicyEngine, Protocol, namespace_from_k8s};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let Ok(objects) = podswitch_policy::parse_objects(text) else {
        return;
    };
    let mut engine = PolicyEngine::new();
    if podswitch_policy::apply(&mut engine, &objects).is_err() {
        return;
    }
    let snap = engine.commit();

    // The same objects, reverse order of kinds: must end in the same state.
    let mut other = PolicyEngine::new();
    for o in &objects {
        if let Object::NetworkPolicy(np) = o {
            other.upsert_policy(np).expect("valid in the first engine");
        }
    }
    for o in &objects {
        if let Object::Namespace(ns) = o {
            let (name, labels) = namespace_from_k8s(ns).expect("valid in the first engine");
            other.upsert_namespace(&name, labels);
        }
    }
    for o in &objects {
        if let Object::Pod(p) = o {
            let ep = Endpoint::from_pod(p).expect("valid in the first engine");
            other
                .upsert_endpoint(&ep)
                .expect("valid in the first engine");
        }
    }
    let other = other.commit();
    assert_eq!(snap.stats().entries(), other.stats().entries());

    let ids: Vec<_> = snap.endpoint_ids().take(8).collect();
    let twin = |id| {
        let (ns, n) = snap.endpoint_name(id).expect("live id");
        other.endpoint_by_name(ns, n).expect("same endpoints")
    };
    for proto in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
        for port in [53u16, 80, 443] {
            for &a in &ids {
                assert!(snap.verdict_between(a, a, proto, port).is_allowed());
                for &b in &ids {
                    let v = snap.verdict_between(a, b, proto, port);
                    assert_eq!(
                        other
                            .verdict_between(twin(a), twin(b), proto, port)
                            .is_allowed(),
                        v.is_allowed()
                    );
                    assert_eq!(snap.explain_between(a, b, proto, port).verdict, v);
                    if let (Some(sa), Some(da)) =
                        (snap.endpoint_address(a), snap.endpoint_address(b))
                    {
                        assert_eq!(snap.verdict(sa, da, proto, port), v);
                    }
                }
            }
        }
    }

    let names: Vec<(String, String)> = snap
        .policy_ids()
        .filter_map(|p| snap.policy_name(p))
        .map(|(ns, n)| (ns.to_owned(), n.to_owned()))
        .collect();
    for (ns, n) in &names {
        assert!(engine.remove_policy(ns, n));
    }
    let open = engine.commit();
    assert_eq!(open.stats().policies, 0);
    assert_eq!(open.stats().group_memberships, 0);
    for &a in &ids {
        for &b in &ids {
            assert!(open.verdict_between(a, b, Protocol::Tcp, 80).is_allowed());
        }
    }
});
