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
