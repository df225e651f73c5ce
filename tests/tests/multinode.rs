//! Many nodes over VXLAN (RFC 7348): three node namespaces, each running its own `podswitchd`
//! with its own pods, joined by an underlay bridge, and a "bare-metal server" namespace whose
//! kernel vxlan device is the independent peer (see `Cluster` in tests/lib.rs).
//!
//! Covered: pod ↔ pod across nodes (ping, TCP with sha256-verified contents, UDP); pod ↔ the
//! bare-metal server both ways (the server initiates too); NetworkPolicy across nodes exactly as on
//! one node (namespace isolation, an inter-namespace rule, label selectors resolved against remote
//! endpoints' labels, ipBlock with except, ingress to and egress from the bare-metal endpoint),
//! with ingress from the server enforced on the receiving node; remote endpoints and VTEPs
//! installed over the control socket; anti-spoofing (a source behind the wrong VTEP is a counted
//! drop); a tshark capture on the underlay decoding as VXLAN with the right VNI and inner frames;
//! MTU: pod MTU = underlay − 50, and PMTU discovery (ICMP fragmentation needed, RFC 1191) for a
//! pod whose MTU is too large, with a TCP transfer across nodes still completing.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use podswitch_control::Client;
use podswitch_control::proto::{Kind, Mac, NamedPort, Reply, Request, VtepSpec};
use podswitch_e2e::{
    BARE_METAL_IP, CLUSTER_VNI, Cluster, Node, Pod, TCP_CLIENT, TCP_SERVER, UDP_SERVER, drops,
    node_vtep_ip, pod,
};

/// Pods: blue a1 (node 0), a2 (node 1), a3 (node 2); red x1 (node 0), x2 (node 1).
fn pods() -> Vec<Vec<Pod>> {
    vec![
        vec![pod("a1", 1, "blue"), pod("x1", 2, "red")],
        vec![
            pod("a2", 21, "blue").named_port("web", 7000),
            pod("x2", 22, "red"),
        ],
        vec![pod("a3", 41, "blue")],
    ]
}

const NAMESPACES: &[(&str, &[(&str, &str)])] = &[
    ("blue", &[("team", "blue")]),
    ("red", &[("team", "red")]),
    ("metal", &[("team", "metal")]),
];

/// Sends `size` random bytes from the bare-metal server to `ip:port`; true when the digest the
/// server answered matched.
fn bare_metal_tcp_send(c: &Cluster, ip: &str, port: u16, size: usize) -> anyhow::Result<bool> {
    let o = c.bare_metal.run(
        "python3",
        &[
            "-c",
            TCP_CLIENT,
            ip,
            &port.to_string(),
            &size.to_string(),
            "2.0",
        ],
    )?;
    let err = String::from_utf8_lossy(&o.stderr);
    anyhow::ensure!(
        !err.contains("digest mismatch"),
        "TCP data corrupted: {err}"
    );
    Ok(o.status.success())
}

/// Starts a 4-second tshark capture on the underlay bridge into `pcap`; returns once it runs.
fn start_capture(c: &Cluster, pcap: &std::path::Path) -> anyhow::Result<std::process::Child> {
    let mut tshark = Command::new("ip")
        .args([
            "netns",
            "exec",
            &c.underlay.name,
            "tshark",
            "-i",
            "br0",
            "-a",
        ])
        .arg("duration:4")
        .arg("-w")
        .arg(pcap)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let err = tshark.stderr.take().context("tshark stderr")?;
    let mut lines = std::io::BufReader::new(err).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("Capturing on") => {
                // tshark says so a moment before its first packet is written.
                std::thread::sleep(Duration::from_millis(500));
                return Ok(tshark);
            }
            Some(Ok(_)) => {}
            _ => anyhow::bail!("tshark did not start"),
        }
    }
}

fn total_drops(c: &Cluster, reason: &str) -> anyhow::Result<Vec<u64>> {
    c.nodes
        .iter()
        .map(|n| Ok(drops(&n.stats()?, reason)))
        .collect()
}

/// Waits until node `i`'s `reason` drops exceed `before`.
fn wait_drop(c: &Cluster, i: usize, reason: &str, before: u64) -> anyhow::Result<u64> {
    let s = c.nodes[i].wait_stats(reason, |s| drops(s, reason) > before)?;
    Ok(drops(&s, reason))
}

#[test]
fn traffic_across_nodes_and_with_the_kernel_vxlan_peer() -> anyhow::Result<()> {
    let mut c = Cluster::up(pods(), 1550)?;
    c.bare_metal_namespace = "blue".into();
    c.set_policy(NAMESPACES, None);
    c.start()?;
    let (a1, a2, a3) = (c.pod("a1"), c.pod("a2"), c.pod("a3"));

    // The underlay capture runs while the first pings cross it.
    let pcap = c.nodes[0].dir.join("underlay.pcapng");
    let mut tshark = start_capture(&c, &pcap)?;
    assert!(a1.ping(&a2.ip, 3)?, "node 0 -> node 1");
    assert!(a3.ping(&a1.ip, 3)?, "node 2 -> node 0");
    let status = tshark.wait()?;
    assert!(status.success(), "tshark: {status}");
    let fields = podswitch_e2e::sh(
        "tshark",
        &[
            "-r",
            pcap.to_str().expect("utf-8 path"),
            "-Y",
            "vxlan && icmp",
            "-T",
            "fields",
            "-e",
            "vxlan.vni",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "icmp.type",
        ],
    )?;
    // Each line: VNI, outer+inner sources, outer+inner destinations, ICMP type.
    let want = [
        format!(
            "{CLUSTER_VNI}\t{},{}\t{},{}\t8",
            node_vtep_ip(0),
            a1.ip,
            node_vtep_ip(1),
            a2.ip
        ),
        format!(
            "{CLUSTER_VNI}\t{},{}\t{},{}\t0",
            node_vtep_ip(1),
            a2.ip,
            node_vtep_ip(0),
            a1.ip
        ),
        format!(
            "{CLUSTER_VNI}\t{},{}\t{},{}\t8",
            node_vtep_ip(2),
            a3.ip,
            node_vtep_ip(0),
            a1.ip
        ),
        format!(
            "{CLUSTER_VNI}\t{},{}\t{},{}\t0",
            node_vtep_ip(0),
            a1.ip,
            node_vtep_ip(2),
            a3.ip
        ),
    ];
    for w in &want {
        assert!(
            fields.lines().any(|l| l == w),
            "{w:?} in the capture:\n{fields}"
        );
    }
    assert!(
        fields.lines().all(|l| want.iter().any(|w| w == l)),
        "nothing else, every frame decoded:\n{fields}"
    );

    // TCP with verified contents, and UDP, across nodes.
    let _tcp = a2.tcp_server(7000)?;
    assert!(
        a1.tcp_send(&a2.ip, 7000, 2 << 20, 10.0)?.is_some(),
        "TCP a1 -> a2"
    );
    assert!(
        a3.tcp_send(&a2.ip, 7000, 256 << 10, 10.0)?.is_some(),
        "TCP a3 -> a2"
    );
    let _udp = a3.udp_server(7001)?;
    assert!(a1.udp_requests(&a3.ip, 7001, 20)?, "UDP a1 -> a3");
    assert!(c.pod("x2").udp_requests(&a3.ip, 7001, 5)?, "UDP x2 -> a3");

    // Pod -> bare metal, and the server initiating.
    let _bm_tcp = c.bare_metal_server(TCP_SERVER, 7100)?;
    let _bm_udp = c.bare_metal_server(UDP_SERVER, 7101)?;
    assert!(a2.ping(BARE_METAL_IP, 2)?, "a2 -> server");
    assert!(
        a1.tcp_send(BARE_METAL_IP, 7100, 1 << 20, 10.0)?.is_some(),
        "TCP a1 -> server"
    );
    assert!(
        a3.udp_requests(BARE_METAL_IP, 7101, 10)?,
        "UDP a3 -> server"
    );
    let bm_ping = c
        .bare_metal
        .run("ping", &["-c", "2", "-i", "0.2", "-W", "2", &a3.ip])?;
    assert!(bm_ping.status.success(), "server -> a3 ping");
    assert!(
        bare_metal_tcp_send(&c, &a2.ip, 7000, 1 << 20)?,
        "TCP server -> a2"
    );
    for (i, n) in c.nodes.iter().enumerate() {
        let s = n.stats()?;
        // Frames the bridge floods for a VTEP it has not learnt yet count as vxlan_not_local
        // on the other nodes, never as bad outer headers.
        for r in [
            "vxlan_bad_outer",
            "vxlan_spoofed",
            "vxlan_unknown_vtep",
            "vxlan_bad_inner",
            "too_big",
        ] {
            assert_eq!(drops(&s, r), 0, "node {i} {r}: {s:#}");
        }
    }

    // Anti-spoofing: the server claims a2's address (a2 lives behind node 1's VTEP); node 0
    // receives it from the server's VTEP and drops it, counted.
    let before = drops(&c.nodes[0].stats()?, "vxlan_spoofed");
    c.bare_metal.sh(
        "ip",
        &["addr", "add", &format!("{}/32", a2.ip), "dev", "vxlan0"],
    )?;
    let spoof = c.bare_metal.run(
        "ping",
        &["-c", "2", "-i", "0.2", "-W", "1", "-I", &a2.ip, &a1.ip],
    )?;
    assert!(!spoof.status.success(), "a spoofed source gets no answer");
    wait_drop(&c, 0, "vxlan_spoofed", before)?;
    Ok(())
}

const POLICY: &str = r"
# a2: same-namespace peers by label (on its named port web = 7000), red by namespace, the server by its labels (port 7000)
# and by ipBlock (port 7001). Nothing reaches port 7002.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: a2-in, namespace: blue }
spec:
  podSelector: { matchLabels: { app: a2 } }
  policyTypes: [Ingress]
  ingress:
    - from: [ { podSelector: { matchLabels: { app: a1 } } } ]
      ports: [ { protocol: TCP, port: web } ]
    - from: [ { namespaceSelector: { matchLabels: { team: red } } } ]
      ports: [ { protocol: TCP, port: 7000 } ]
    - from:
        - namespaceSelector: { matchLabels: { team: metal } }
          podSelector: { matchLabels: { role: bare-metal } }
      ports: [ { protocol: TCP, port: 7000 } ]
    - from: [ { ipBlock: { cidr: 10.30.0.192/26, except: [10.30.0.224/27] } } ]
      ports: [ { protocol: TCP, port: 7001 } ]
---
# a1 may talk to the pod network but not to the server.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: a1-out, namespace: blue }
spec:
  podSelector: { matchLabels: { app: a1 } }
  policyTypes: [Egress]
  egress:
    - to: [ { ipBlock: { cidr: 10.30.0.0/24, except: [10.30.0.200/32] } } ]
---
# The bare-metal server accepts only the red namespace.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: server-in, namespace: metal }
spec:
  podSelector: { matchLabels: { role: bare-metal } }
  policyTypes: [Ingress]
  ingress:
    - from: [ { namespaceSelector: { matchLabels: { team: red } } } ]
---
# Namespace isolation: red accepts only red.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: red-isolated, namespace: red }
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
    - from: [ { podSelector: {} } ]
";

#[test]
fn policy_across_nodes_and_for_the_bare_metal_endpoint() -> anyhow::Result<()> {
    let mut c = Cluster::up(pods(), 1550)?;
    c.bare_metal_namespace = "metal".into();
    c.set_policy(NAMESPACES, Some(POLICY));
    c.start()?;
    let (a1, a2, a3, x1, x2) = (
        c.pod("a1"),
        c.pod("a2"),
        c.pod("a3"),
        c.pod("x1"),
        c.pod("x2"),
    );
    let _s: Vec<_> = [7000, 7001, 7002]
        .into_iter()
        .map(|p| a2.tcp_server(p))
        .collect::<anyhow::Result<_>>()?;
    let _x2 = x2.tcp_server(7000)?;
    let _bm = c.bare_metal_server(TCP_SERVER, 7100)?;

    // Label selectors resolved against remote endpoints (a1 is remote on node 1).
    assert!(
        a1.tcp_send(&a2.ip, 7000, 256 << 10, 10.0)?.is_some(),
        "a1 -> a2:7000 by label"
    );
    assert!(
        a1.tcp_send(&a2.ip, 7002, 1000, 1.5)?.is_none(),
        "a1 -> a2:7002 (port)"
    );
    assert!(
        a3.tcp_send(&a2.ip, 7000, 1000, 1.5)?.is_none(),
        "a3 -> a2 (label)"
    );
    // Inter-namespace rule.
    assert!(
        x1.tcp_send(&a2.ip, 7000, 256 << 10, 10.0)?.is_some(),
        "x1 (red) -> a2"
    );
    // Namespace isolation across nodes.
    assert!(
        x1.tcp_send(&x2.ip, 7000, 256 << 10, 10.0)?.is_some(),
        "x1 -> x2 (red)"
    );
    assert!(
        a3.tcp_send(&x2.ip, 7000, 1000, 1.5)?.is_none(),
        "a3 (blue) -> x2 (red)"
    );
    assert!(a1.ping(&x2.ip, 1).map(|ok| !ok)?, "blue -> red ping denied");
    let denied = total_drops(&c, "policy_denied")?;
    assert!(
        denied.iter().sum::<u64>() >= 4,
        "denials counted: {denied:?}"
    );

    // The server initiating: only the receiving node (1) can enforce a2's ingress; it resolves
    // the server's namespace and labels, and its address against the ipBlock.
    let before = drops(&c.nodes[1].stats()?, "policy_denied");
    assert!(
        bare_metal_tcp_send(&c, &a2.ip, 7000, 256 << 10)?,
        "server -> a2:7000 by labels"
    );
    assert!(
        bare_metal_tcp_send(&c, &a2.ip, 7001, 256 << 10)?,
        "server -> a2:7001 by ipBlock"
    );
    assert!(
        !bare_metal_tcp_send(&c, &a2.ip, 7002, 1000)?,
        "server -> a2:7002 denied"
    );
    wait_drop(&c, 1, "policy_denied", before)?;

    // Towards the server: egress ipBlock except (a1), the server's ingress (blue a3 denied, red
    // x1 allowed).
    let before = drops(&c.nodes[0].stats()?, "policy_denied");
    assert!(
        a1.tcp_send(BARE_METAL_IP, 7100, 1000, 1.5)?.is_none(),
        "a1 -> server (egress)"
    );
    wait_drop(&c, 0, "policy_denied", before)?;
    let before = drops(&c.nodes[2].stats()?, "policy_denied");
    assert!(
        a3.tcp_send(BARE_METAL_IP, 7100, 1000, 1.5)?.is_none(),
        "a3 -> server"
    );
    wait_drop(&c, 2, "policy_denied", before)?;
    assert!(
        x1.tcp_send(BARE_METAL_IP, 7100, 256 << 10, 10.0)?.is_some(),
        "x1 (red) -> server"
    );
    Ok(())
}

fn mac(s: &str) -> anyhow::Result<Mac> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        *b = u8::from_str_radix(parts.next().unwrap_or(""), 16)?;
    }
    Ok(Mac(m))
}

fn call(client: &mut Client, r: Request) -> anyhow::Result<u64> {
    match client.call(r) {
        Ok(Reply::Done { generation }) => Ok(generation),
        other => anyhow::bail!("unexpected reply {other:?}"),
    }
}

/// Installs node `i`'s VTEPs and remote endpoints (and the server's namespace) over its socket.
fn install_over_socket(c: &Cluster, i: usize) -> anyhow::Result<Client> {
    let node: &Node = &c.nodes[i];
    let mut client =
        Client::connect(node.socket_path()).map_err(|e| anyhow::anyhow!("connect: {e}"))?;
    client
        .namespace_create(
            "metal",
            [("team".to_owned(), "metal".to_owned())].into(),
            None,
            None,
        )
        .map_err(|e| anyhow::anyhow!("namespace_create: {e}"))?;
    for v in c.vteps_for(i) {
        call(
            &mut client,
            Request::VtepAdd(VtepSpec {
                id: v.id,
                ip: v.ip.parse()?,
                next_hop_mac: mac(&v.next_hop_mac)?,
                vni: CLUSTER_VNI,
                gbp: false,
            }),
        )?;
    }
    let mut g = 0;
    for r in c.remotes_for(i) {
        g = call(
            &mut client,
            Request::RemoteAdd(podswitch_control::proto::RemoteSpec {
                namespace: r.namespace,
                name: r.name,
                kind: if r.kind == "pod" {
                    Kind::Pod
                } else {
                    Kind::BareMetal
                },
                vtep: r.vtep,
                mac: mac(&r.mac)?,
                ips: vec![r.ip.parse()?],
                labels: r.labels.into_iter().collect(),
                ports: r
                    .named_ports
                    .into_iter()
                    .map(|(name, port)| NamedPort {
                        name: Some(name),
                        protocol: "TCP".into(),
                        port,
                    })
                    .collect(),
            }),
        )?;
    }
    client
        .wait(g, Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("wait: {e}"))?;
    Ok(client)
}

#[test]
fn remote_endpoints_installed_over_the_control_socket() -> anyhow::Result<()> {
    let mut c = Cluster::up(
        vec![vec![pod("c1", 1, "blue")], vec![pod("c2", 21, "blue")]],
        1550,
    )?;
    c.bare_metal_namespace = "metal".into();
    for n in &mut c.nodes {
        n.control = true;
    }
    c.start()?;
    let (c1, c2) = (c.pod("c1"), c.pod("c2"));
    // Before the remotes exist, the other node's pod is unknown.
    assert!(!c1.ping(&c2.ip, 1)?, "no route before remote_add");
    let mut clients = (0..2)
        .map(|i| install_over_socket(&c, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The failed resolution above left a FAILED neighbour entry the kernel may keep a while.
    c1.ns().sh("ip", &["neigh", "flush", "dev", "eth0"])?;
    if !c1.ping(&c2.ip, 2)? {
        let n: Vec<_> = c
            .nodes
            .iter()
            .map(|n| n.stats().unwrap_or_default())
            .collect();
        let neigh = c1.ns().sh("ip", &["neigh"])?;
        anyhow::bail!(
            "c1 -> c2 after remote_add failed; neigh {neigh}\n{:#}\n{:#}",
            n[0]["drops"],
            n[1]["drops"]
        );
    }
    let _srv = c2.tcp_server(7000)?;
    assert!(c1.tcp_send(&c2.ip, 7000, 1 << 20, 10.0)?.is_some());
    let bm = c
        .bare_metal
        .run("ping", &["-c", "2", "-i", "0.2", "-W", "2", &c1.ip])?;
    assert!(bm.status.success(), "server -> c1");

    // A policy applied over node 1's socket only, so that nothing but the receiving node can
    // enforce it: c2 accepts c1 (a remote pod: its labels came with remote_add) on port 7000,
    // and the server (by its labels) on any port.
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
                  metadata: { name: c2-in, namespace: blue }\n\
                  spec: { podSelector: { matchLabels: { app: c2 } }, policyTypes: [Ingress],\n\
                  ingress: [ { from: [ { podSelector: { matchLabels: { app: c1 } } } ],\n\
                  ports: [ { protocol: TCP, port: 7000 } ] },\n\
                  { from: [ { namespaceSelector: {}, podSelector: { matchLabels: { role: bare-metal } } } ] } ] }\n";
    let g = clients[1]
        .policy_apply(policy)
        .map_err(|e| anyhow::anyhow!("policy_apply: {e}"))?;
    clients[1]
        .wait(g, Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("wait: {e}"))?;
    let _other = c2.tcp_server(7001)?;
    assert!(
        c1.tcp_send(&c2.ip, 7000, 256 << 10, 10.0)?.is_some(),
        "c1 -> c2:7000 allowed by c1's remote labels"
    );
    let before = total_drops(&c, "policy_denied")?;
    assert!(
        c1.tcp_send(&c2.ip, 7001, 1000, 1.5)?.is_none(),
        "c1 -> c2:7001 denied"
    );
    wait_drop(&c, 1, "policy_denied", before[1])?;
    assert_eq!(
        drops(&c.nodes[0].stats()?, "policy_denied"),
        before[0],
        "the sending node has no policy"
    );
    assert!(
        bare_metal_tcp_send(&c, &c2.ip, 7001, 256 << 10)?,
        "server -> c2 allowed by its labels"
    );
    Ok(())
}

#[test]
fn pod_mtu_and_path_mtu_discovery_across_nodes() -> anyhow::Result<()> {
    // Underlay 1500: the tunnel carries inner packets of 1450 bytes.
    let mut c = Cluster::up(
        vec![
            vec![pod("m1", 1, "blue").with_mtu(1450), pod("big1", 2, "blue")],
            vec![
                pod("m2", 21, "blue").with_mtu(1450),
                pod("big2", 22, "blue"),
            ],
        ],
        1500,
    )?;
    c.start()?;
    let (m1, m2, big1, big2) = (c.pod("m1"), c.pod("m2"), c.pod("big1"), c.pod("big2"));
    let df_ping = |p: &Pod, dst: &str, size: u32| {
        p.ns().run(
            "ping",
            &[
                "-c",
                "1",
                "-W",
                "2",
                "-M",
                "do",
                "-s",
                &size.to_string(),
                dst,
            ],
        )
    };
    // Pod MTU = underlay − 50: a full-sized packet crosses.
    assert!(
        df_ping(m1, &m2.ip, 1450 - 28)?.status.success(),
        "1450-byte packet"
    );
    let _srv = m2.tcp_server(7000)?;
    assert!(
        m1.tcp_send(&m2.ip, 7000, 1 << 20, 10.0)?.is_some(),
        "m1 -> m2"
    );

    // big1/big2 have MTU 1500 (and so a 1460 MSS): TCP's full segments are too big for the
    // tunnel; node 0 answers ICMP fragmentation needed (mtu 1450) and the transfer completes.
    let _big = big2.tcp_server(7001)?;
    assert!(
        big1.tcp_send(&big2.ip, 7001, 2 << 20, 20.0)?.is_some(),
        "TCP with PMTU discovery"
    );
    let s = c.nodes[0].wait_stats("ICMP errors", |s| drops(s, "too_big") >= 1)?;
    assert!(s["icmp_errors"].as_u64() >= Some(1), "{s:#}");
    // The pod's kernel learned the path MTU from the switch's ICMP error.
    let route = big1.ns().sh("ip", &["route", "get", &big2.ip])?;
    assert!(route.contains("mtu 1450"), "{route}");
    let o = df_ping(big1, &big2.ip, 1472)?;
    assert!(!o.status.success(), "a 1500-byte DF packet does not cross");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        out.contains("1450") || err.contains("1450"),
        "ping reports mtu 1450: {out} {err}"
    );
    Ok(())
}

/// Optional VXLAN-GBP: the server's kernel vxlan device has the `gbp` flag and marks its pings
/// (`ping -m 42` sets the socket mark, which the kernel writes as the Group Policy ID). The switch
/// decapsulates GBP headers and reads the group (not used for policy yet); it writes none itself
/// (the datapath passes no group to encap), which the kernel accepts.
#[test]
fn kernel_vxlan_gbp_peer() -> anyhow::Result<()> {
    let mut c = Cluster::up_gbp(vec![vec![pod("g1", 1, "blue")]], 1550)?;
    c.start()?;
    let g1 = c.pod("g1");
    let pcap = c.nodes[0].dir.join("gbp.pcapng");
    let mut tshark = start_capture(&c, &pcap)?;
    let ping = c.bare_metal.run(
        "ping",
        &["-c", "3", "-i", "0.2", "-W", "2", "-m", "42", &g1.ip],
    )?;
    let out = String::from_utf8_lossy(&ping.stdout);
    assert!(out.contains(" 3 received"), "server (GBP) -> g1: {out}");
    assert!(g1.ping(BARE_METAL_IP, 2)?, "g1 -> server (GBP)");
    assert!(tshark.wait()?.success());
    let fields = podswitch_e2e::sh(
        "tshark",
        &[
            "-r",
            pcap.to_str().expect("utf-8 path"),
            "-Y",
            "vxlan && icmp",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "vxlan.flag_g",
            "-e",
            "vxlan.gbp",
        ],
    )?;
    let from_server = format!("{},{BARE_METAL_IP}", podswitch_e2e::BARE_METAL_UNDERLAY_IP);
    let marked = fields
        .lines()
        .filter(|l| l.starts_with(&from_server))
        .filter(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            matches!(f.get(1), Some(&("True" | "1"))) && f.get(2) == Some(&"42")
        })
        .count();
    assert_eq!(
        marked, 3,
        "the server's echo requests carry group 42:\n{fields}"
    );
    let s = c.nodes[0].stats()?;
    for r in ["vxlan_bad_outer", "vxlan_bad_inner", "vxlan_unknown_vtep"] {
        assert_eq!(drops(&s, r), 0, "{r}: {s:#}");
    }
    Ok(())
}
