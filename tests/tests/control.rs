//! Control mode: podswitchd serves the control socket; an endpoint added over it gets an AF_XDP
//! port and traffic, a policy applied over it denies, and `wait` answers once the workers run
//! the new generation (the daemon reports realisation to the controller).

use std::time::Duration;

use podswitch_control::Client;
use podswitch_control::proto::{EndpointSpec, Kind, Mac, Reply};
use podswitch_e2e::{Node, drops, pod};

fn mac(s: &str) -> Mac {
    let mut m = [0u8; 6];
    for (b, p) in m.iter_mut().zip(s.split(':')) {
        *b = u8::from_str_radix(p, 16).expect("hex");
    }
    Mac(m)
}

#[test]
fn endpoint_and_policy_over_the_socket() -> anyhow::Result<()> {
    let mut node = Node::up(vec![pod("s1", 1, "ctl"), pod("s2", 2, "ctl")])?;
    node.control = true;
    // s2 is not in the config: it arrives over the socket.
    let s2 = node.pods.pop().expect("s2");
    node.start()?;
    node.pods.push(s2);
    let mut client =
        Client::connect(node.socket_path()).map_err(|e| anyhow::anyhow!("connect: {e}"))?;
    let s2 = node.pod("s2");
    let spec = EndpointSpec {
        namespace: "ctl".into(),
        name: "s2".into(),
        kind: Kind::Pod,
        interface: s2.host_if().into(),
        port: Some(2),
        mac: mac(&s2.mac),
        ips: vec![s2.ip.parse()?],
        allocate: Vec::new(),
        labels: [("app".to_owned(), "s2".to_owned())].into(),
        ports: Vec::new(),
        mtu: None,
    };
    let generation = match client.endpoint_add(spec) {
        Ok(Reply::EndpointAdded {
            generation, port, ..
        }) => {
            assert_eq!(port, 2);
            generation
        }
        other => anyhow::bail!("endpoint_add: {other:?}"),
    };
    let realised = client
        .wait(generation, Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("wait: {e}"))?;
    assert!(realised >= generation);
    let (s1, s2) = (node.pod("s1"), node.pod("s2"));
    assert!(
        s1.ping(&s2.ip, 2)?,
        "the endpoint added over the socket forwards"
    );

    let _srv = s2.tcp_server(6000)?;
    assert!(
        s1.tcp_send(&s2.ip, 6000, 64 << 10, 5.0)?.is_some(),
        "open before the policy"
    );
    let g = client
        .policy_apply(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: { name: s2-closed, namespace: ctl }\n\
             spec: { podSelector: { matchLabels: { app: s2 } }, policyTypes: [Ingress] }\n",
        )
        .map_err(|e| anyhow::anyhow!("policy_apply: {e}"))?;
    client
        .wait(g, Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("wait: {e}"))?;
    assert!(
        s1.tcp_send(&s2.ip, 6000, 1000, 2.0)?.is_none(),
        "denied after the policy"
    );
    let s = node.wait_stats("the denial", |s| drops(s, "policy_denied") >= 1)?;
    assert_eq!(s["generation"].as_u64(), Some(g), "{s:#}");
    Ok(())
}

/// 50 clients at once mutate and read over the socket while a sha256-checked TCP transfer and a
/// ping run between two pods: every request is answered, no mutation is lost or applied twice
/// (generations unique and exactly as many as mutations; the object counts match), and the
/// traffic — in a namespace none of the changes touch — is not disturbed.
#[test]
fn fifty_clients_while_traffic_flows() -> anyhow::Result<()> {
    use std::collections::BTreeSet;

    use podswitch_control::Request;

    const CLIENTS: usize = 50;
    let mut node = Node::up(vec![pod("f1", 1, "busy"), pod("f2", 2, "busy")])?;
    node.control = true;
    node.start()?;
    let (f1, f2) = (node.pod("f1"), node.pod("f2"));
    assert!(f1.ping(&f2.ip, 1)?, "path up before the load");
    let mut c = Client::connect(node.socket_path()).map_err(|e| anyhow::anyhow!("connect: {e}"))?;
    let before = c.health().map_err(|e| anyhow::anyhow!("health: {e}"))?;
    let _srv = f2.tcp_server(6100)?;

    let socket = node.socket_path();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || -> anyhow::Result<Vec<u64>> {
                let mut c =
                    Client::connect(&socket).map_err(|e| anyhow::anyhow!("connect {i}: {e}"))?;
                c.set_timeout(Some(Duration::from_mins(1)))
                    .map_err(|e| anyhow::anyhow!("timeout: {e}"))?;
                let ns = format!("load{i}");
                let mut gens = vec![
                    c.namespace_create(&ns, [("client".into(), i.to_string())].into(), None, None)
                        .map_err(|e| anyhow::anyhow!("namespace_create {ns}: {e}"))?,
                ];
                for j in 0..3 {
                    let text = format!(
                        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
                         metadata: {{ name: p{j}, namespace: {ns} }}\n\
                         spec: {{ podSelector: {{ matchLabels: {{ app: a{j} }} }}, \
                         policyTypes: [Ingress] }}\n"
                    );
                    gens.push(
                        c.policy_apply(&text)
                            .map_err(|e| anyhow::anyhow!("policy_apply {ns}/p{j}: {e}"))?,
                    );
                    // Reads interleave with the writes.
                    c.health().map_err(|e| anyhow::anyhow!("health: {e}"))?;
                }
                match c.call(Request::PolicyDelete {
                    namespace: ns.clone(),
                    name: "p0".into(),
                }) {
                    Ok(Reply::Done { generation }) => gens.push(generation),
                    other => anyhow::bail!("policy_delete {ns}/p0: {other:?}"),
                }
                Ok(gens)
            })
        })
        .collect();
    // Traffic while the clients run.
    let sent = f1.tcp_send(&f2.ip, 6100, 4 << 20, 30.0)?;
    let pinged = f1.ping(&f2.ip, 5)?;

    let mut all = Vec::new();
    for t in clients {
        let gens = t
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
        assert!(
            gens.windows(2).all(|w| w[0] < w[1]),
            "a client's generations increase: {gens:?}"
        );
        all.extend(gens);
    }
    let unique: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(all.len(), CLIENTS * 5);
    assert_eq!(unique.len(), all.len(), "a generation was handed out twice");
    let after = c.health().map_err(|e| anyhow::anyhow!("health: {e}"))?;
    assert_eq!(
        after.generation - before.generation,
        (CLIENTS * 5) as u64,
        "one generation per mutation: {before:?} -> {after:?}"
    );
    assert_eq!(after.namespaces - before.namespaces, CLIENTS);
    assert_eq!(after.policies - before.policies, CLIENTS * 2);
    c.wait(after.generation, Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("wait: {e}"))?;
    assert!(
        sent.is_some(),
        "the TCP transfer completed intact under the load"
    );
    assert!(pinged, "every ping answered under the load");
    Ok(())
}
