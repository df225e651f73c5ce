//! Crash and restart of a daemon configured only over the control socket (issue #7's restart
//! acceptance): namespaces, endpoints and a policy are installed over the socket, traffic flows,
//! the daemon is `kill -9`ed, and a restarted daemon with the same config restores the desired
//! state from its state directory, re-attaches the ports that still exist and forwards and denies
//! exactly as before — nobody registers anything again.

use std::time::{Duration, Instant};

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

fn connect(node: &Node) -> anyhow::Result<Client> {
    Client::connect(node.socket_path()).map_err(|e| anyhow::anyhow!("connect: {e}"))
}

/// Pings until it succeeds or `within` passes (a restarted daemon needs a moment to attach).
fn ping_within(node: &Node, from: &str, to_ip: &str, within: Duration) -> anyhow::Result<bool> {
    let end = Instant::now() + within;
    loop {
        if node.pod(from).ping(to_ip, 1)? {
            return Ok(true);
        }
        if Instant::now() > end {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn state_and_traffic_survive_kill_9_without_re_registration() -> anyhow::Result<()> {
    // The pods' veths exist; the config has no ports: everything arrives over the socket.
    let mut node = Node::up(vec![
        pod("r1", 1, "rst"),
        pod("r2", 2, "rst"),
        pod("r3", 3, "rst"),
    ])?;
    let pods = std::mem::take(&mut node.pods);
    let state_dir = node.dir.join("state");
    node.extra_toml = format!(
        "[control]\nsocket = \"{}\"\nstate_dir = \"{}\"\n",
        node.socket_path().display(),
        state_dir.display()
    );
    node.start()?;
    node.pods = pods;

    let mut client = connect(&node)?;
    client
        .namespace_create("rst", [("team".into(), "x".into())].into(), None, None)
        .map_err(|e| anyhow::anyhow!("namespace_create: {e}"))?;
    for p in &node.pods {
        let spec = EndpointSpec {
            namespace: "rst".into(),
            name: p.short.clone(),
            kind: Kind::Pod,
            interface: p.host_if().into(),
            port: Some(p.port),
            mac: mac(&p.mac),
            ips: vec![p.ip.parse()?],
            allocate: Vec::new(),
            labels: [("app".to_owned(), p.short.clone())].into(),
            ports: Vec::new(),
            mtu: None,
        };
        match client.endpoint_add(spec) {
            Ok(Reply::EndpointAdded { .. }) => {}
            other => anyhow::bail!("endpoint_add {}: {other:?}", p.short),
        }
    }
    // r3 accepts connections from r1 only.
    let g = client
        .policy_apply(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: { name: r3-from-r1, namespace: rst }\n\
             spec:\n  podSelector: { matchLabels: { app: r3 } }\n  ingress:\n  \
             - from: [ { podSelector: { matchLabels: { app: r1 } } } ]\n",
        )
        .map_err(|e| anyhow::anyhow!("policy_apply: {e}"))?;
    client
        .wait(g, Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("wait: {e}"))?;
    let before = client
        .health()
        .map_err(|e| anyhow::anyhow!("health: {e}"))?;
    assert!(before.persistent, "{before:?}");
    assert_eq!(
        (before.namespaces, before.endpoints, before.policies),
        (1, 3, 1)
    );

    let (ip2, ip3) = (node.pod("r2").ip.clone(), node.pod("r3").ip.clone());
    assert!(ping_within(&node, "r1", &ip2, Duration::from_secs(5))?);
    let _srv = node.pod("r3").tcp_server(7000)?;
    assert!(
        node.pod("r1")
            .tcp_send(&ip3, 7000, 256 << 10, 5.0)?
            .is_some(),
        "r1 -> r3 allowed before the crash"
    );
    assert!(
        node.pod("r2").tcp_send(&ip3, 7000, 1000, 2.0)?.is_none(),
        "r2 -> r3 denied before the crash"
    );

    drop(client);
    node.daemon().signal("KILL")?;
    assert!(
        node.daemon().wait_exit(Duration::from_secs(5))?.is_some(),
        "killed"
    );
    assert!(
        !node.pod("r1").ping(&ip2, 1)?,
        "no switch, no traffic while it is down"
    );

    // Same config, same state dir: nothing is registered again.
    node.start()?;
    let mut client = connect(&node)?;
    let after = client
        .health()
        .map_err(|e| anyhow::anyhow!("health: {e}"))?;
    assert_eq!(
        (after.namespaces, after.endpoints, after.policies),
        (before.namespaces, before.endpoints, before.policies),
        "restored desired state: {after:?}"
    );
    assert!(
        after.generation >= before.generation,
        "generation went backwards: {before:?} -> {after:?}"
    );
    client
        .wait(after.generation, Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("wait after restart: {e}"))?;
    assert!(
        ping_within(&node, "r1", &ip2, Duration::from_secs(10))?,
        "traffic returns after the restart"
    );
    assert_eq!(
        node.xdp_attached()?.len(),
        3,
        "every port re-attached after the restart"
    );
    assert!(
        node.pod("r1")
            .tcp_send(&ip3, 7000, 256 << 10, 5.0)?
            .is_some(),
        "r1 -> r3 still allowed after the restart"
    );
    assert!(
        node.pod("r2").tcp_send(&ip3, 7000, 1000, 2.0)?.is_none(),
        "r2 -> r3 still denied after the restart"
    );
    node.wait_stats("the denial after the restart", |s| {
        drops(s, "policy_denied") >= 1
    })?;
    Ok(())
}
