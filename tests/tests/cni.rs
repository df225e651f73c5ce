//! The CNI plugin end to end: the real `podswitchd` in control mode, two pods made by the built
//! `podswitch-cni` exactly as a runtime makes them (ADD with `CNI_*` variables and the shipped
//! conflist's plugin config), then real traffic between them through the switch — ping both
//! ways and a sha256-checked TCP transfer — then CHECK, DEL, and nothing left behind.
//!
//! The namespace's subnet is the test node's gateway subnet (10.30.0.0/24, first host
//! [`GATEWAY`]), so the pods' default route goes via the address the switch answers ARP for.
//! A second test gives two namespaces subnets of their own: each pod's gateway is its subnet's
//! first host (not the node's router gateway), and traffic between the namespaces is routed
//! through those gateways.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podswitch_control::Client;
use podswitch_e2e::{GATEWAY, Netns, Node, unique_prefix};
use serde_json::{Value, json};

/// A workspace binary: `$<var>`, or next to this test's target directory (built by
/// `cargo test --workspace` or `cargo build -p <package>`).
fn binary(name: &str, var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("test binary lives in <target>/<profile>/deps")
        .join(name);
    assert!(
        bin.exists(),
        "{} not found: build it (cargo build -p {name}) or set {var}",
        bin.display()
    );
    bin
}

fn cni_binary() -> PathBuf {
    binary("podswitch-cni", "PODSWITCH_CNI")
}

/// `podswitchctl <args> --socket <socket> -o json`, parsed.
fn ctl_json(socket: &std::path::Path, args: &[&str]) -> anyhow::Result<Value> {
    let out = Command::new(binary("podswitchctl", "PODSWITCHCTL"))
        .args(args)
        .arg("--socket")
        .arg(socket)
        .args(["-o", "json"])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "podswitchctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Runs the plugin: (success, stdout as JSON, raw output).
fn cni(command: &str, vars: &[(&str, &str)], conf: &Value) -> (bool, Value, String) {
    let mut child = Command::new(cni_binary())
        .env("CNI_COMMAND", command)
        .env("CNI_PATH", "/opt/cni/bin")
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run podswitch-cni");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(conf.to_string().as_bytes())
        .expect("write config");
    let out = child.wait_with_output().expect("wait");
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.success(),
        serde_json::from_str(&raw).unwrap_or(Value::Null),
        format!("{raw}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

/// The shipped conflist's plugin config, as a runtime hands it to the plugin, on our socket.
fn plugin_config(socket: &std::path::Path) -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/10-podswitch.conflist"
    );
    let list: Value =
        serde_json::from_slice(&std::fs::read(path).expect("read conflist")).expect("conflist");
    let mut conf = list["plugins"][0].clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["socket"] = json!(socket);
    conf
}

/// What a runtime passes the plugin for one pod sandbox: container id, netns path, CNI_ARGS.
struct Sandbox {
    cid: String,
    netns: String,
    args: String,
}

impl Sandbox {
    fn new(ns: &Netns, k8s_namespace: &str, pod: &str) -> Sandbox {
        Sandbox {
            cid: format!("{}cid", ns.name),
            netns: format!("/var/run/netns/{}", ns.name),
            args: format!("K8S_POD_NAMESPACE={k8s_namespace};K8S_POD_NAME={pod}"),
        }
    }

    fn vars(&self) -> [(&str, &str); 4] {
        [
            ("CNI_CONTAINERID", self.cid.as_str()),
            ("CNI_NETNS", self.netns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", self.args.as_str()),
        ]
    }
}

fn ping(ns: &Netns, ip: &str) -> bool {
    ns.run("ping", &["-c", "1", "-W", "1", ip])
        .is_ok_and(|o| o.status.success())
}

#[test]
fn two_cni_pods_talk_through_the_daemon() -> anyhow::Result<()> {
    let mut node = Node::up(Vec::new())?;
    node.control = true;
    node.start()?;
    let socket = node.socket_path();
    let mut client = Client::connect(&socket).map_err(|e| anyhow::anyhow!("connect: {e}"))?;
    client
        .namespace_create(
            "cnie2e",
            [("env".into(), "test".into())].into(),
            Some("10.30.0.0/24"),
            None,
        )
        .map_err(|e| anyhow::anyhow!("namespace_create: {e}"))?;
    let conf = plugin_config(&socket);

    let prefix = unique_prefix();
    let names = [format!("{prefix}a"), format!("{prefix}b")];
    let nss = [Netns::new(&names[0])?, Netns::new(&names[1])?];
    let mut results = Vec::new();
    for (i, ns) in nss.iter().enumerate() {
        let sandbox = Sandbox::new(ns, "cnie2e", &format!("pod-{i}"));
        let (ok, r, raw) = cni("ADD", &sandbox.vars(), &conf);
        anyhow::ensure!(ok, "ADD pod-{i}: {raw}");
        assert_eq!(r["ips"][0]["gateway"], GATEWAY, "{r}");
        results.push((sandbox, r));
    }
    let ip = |i: usize| -> String {
        let a = results[i].1["ips"][0]["address"]
            .as_str()
            .unwrap_or_default();
        a.split('/').next().unwrap_or_default().to_owned()
    };
    let (a, b) = (ip(0), ip(1));
    assert_ne!(a, b);

    // The daemon opens the ports once it has realised the generation; wait for it.
    let h = client
        .health()
        .map_err(|e| anyhow::anyhow!("health: {e}"))?;
    client
        .wait(h.generation, Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("wait: {e}"))?;
    let end = Instant::now() + Duration::from_secs(10);
    while !ping(&nss[0], &b) {
        anyhow::ensure!(Instant::now() < end, "pod-0 never reached pod-1 ({b})");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(ping(&nss[1], &a), "pod-1 reaches pod-0");
    assert!(ping(&nss[0], &b), "pod-0 reaches pod-1");

    // A TCP transfer checked end to end (complete checksums: offloads were turned off).
    let server = nss[1].spawn("python3", &["-c", podswitch_e2e::TCP_SERVER, "5201"])?;
    let _server = KillOnDrop(server);
    std::thread::sleep(Duration::from_millis(300));
    let out = nss[0].run(
        "python3",
        &[
            "-c",
            podswitch_e2e::TCP_CLIENT,
            &b,
            "5201",
            &(256 << 10).to_string(),
            "5",
        ],
    )?;
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("ok"),
        "TCP transfer failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // podswitchctl sees the same thing through the daemon's dataplane: both pods, the tracked
    // TCP connection, traffic on the pods' ports, and an allowed local route.
    let eps = ctl_json(&socket, &["get", "endpoints", "-n", "cnie2e"])?;
    let hosts: Vec<&str> = results
        .iter()
        .map(|r| r.1["interfaces"][0]["name"].as_str().unwrap_or_default())
        .collect();
    for (i, host) in hosts.iter().enumerate() {
        let name = format!("pod-{i}");
        let e = eps
            .as_array()
            .and_then(|a| a.iter().find(|e| e["name"] == name.as_str()))
            .ok_or_else(|| anyhow::anyhow!("{name} not listed: {eps}"))?;
        assert_eq!(e["interface"], *host, "{e}");
    }
    let conns = ctl_json(&socket, &["conntrack", "list", "--address", &b])?;
    assert!(
        conns.as_array().is_some_and(|c| {
            c.iter().any(|c| {
                c["protocol"] == 6 && c["original"].as_str().unwrap_or_default().contains(&b)
            })
        }),
        "no TCP connection to {b} tracked: {conns}"
    );
    let flushed = ctl_json(&socket, &["conntrack", "flush", "--address", &b])?;
    assert!(flushed["flushed"].as_u64() >= Some(1), "{flushed}");
    let left = ctl_json(&socket, &["conntrack", "list", "--address", &b])?;
    assert_eq!(left, json!([]), "flushed entries still listed");
    let stats = ctl_json(&socket, &["stats"])?;
    assert_eq!(stats["dataplane"], true, "{stats}");
    let ports = stats["ports"].as_array().cloned().unwrap_or_default();
    assert!(
        ports
            .iter()
            .filter(|p| p["rx_packets"].as_u64() > Some(0))
            .count()
            >= 2,
        "both pods' ports received: {stats}"
    );
    let trace = ctl_json(
        &socket,
        &["trace", "--src", &a, "--dst", &b, "--port", "5201"],
    )?;
    assert_eq!(trace["allowed"], true, "{trace}");
    assert_eq!(trace["dst_endpoint"], "cnie2e/pod-1", "{trace}");

    // CHECK passes; DEL (twice) removes the port, the endpoint and the veth.
    for (sandbox, r) in &results {
        let vars = sandbox.vars();
        let mut check = conf.clone();
        check["prevResult"] = r.clone();
        let (ok, _, raw) = cni("CHECK", &vars, &check);
        assert!(ok, "CHECK: {raw}");
        for _ in 0..2 {
            let (ok, _, raw) = cni("DEL", &vars, &conf);
            assert!(ok, "DEL: {raw}");
        }
        let host = r["interfaces"][0]["name"].as_str().unwrap_or_default();
        let gone = podswitch_e2e::run("ip", &["link", "show", "dev", host])?;
        assert!(!gone.status.success(), "{host} still exists");
    }
    let h = client
        .health()
        .map_err(|e| anyhow::anyhow!("health: {e}"))?;
    assert_eq!(h.endpoints, 0);
    assert!(!ping(&nss[0], &b), "no path after DEL");
    Ok(())
}

/// Namespaces with subnets of their own: the plugin hands each pod its subnet's first host as
/// the gateway (≠ the node's router gateway), the switch answers ARP for every such gateway, and
/// pods in different namespaces reach each other routed through them.
#[test]
fn namespaces_with_their_own_subnet_gateways_route_between_them() -> anyhow::Result<()> {
    let mut node = Node::up(Vec::new())?;
    node.control = true;
    node.start()?;
    let socket = node.socket_path();
    let mut client = Client::connect(&socket).map_err(|e| anyhow::anyhow!("connect: {e}"))?;
    let subnets = [
        ("gwa", "10.41.0.0/24", "10.41.0.1"),
        ("gwb", "10.42.0.0/24", "10.42.0.1"),
    ];
    for (ns, subnet, _) in subnets {
        client
            .namespace_create(ns, [("team".into(), ns.into())].into(), Some(subnet), None)
            .map_err(|e| anyhow::anyhow!("namespace_create {ns}: {e}"))?;
    }
    let conf = plugin_config(&socket);
    let prefix = unique_prefix();
    let nss = [
        Netns::new(&format!("{prefix}a"))?,
        Netns::new(&format!("{prefix}b"))?,
    ];
    let mut added = Vec::new();
    let mut ips = Vec::new();
    for (ns, (k8s_ns, _, gateway)) in nss.iter().zip(subnets) {
        let sandbox = Sandbox::new(ns, k8s_ns, "pod");
        let (ok, r, raw) = cni("ADD", &sandbox.vars(), &conf);
        anyhow::ensure!(ok, "ADD in {k8s_ns}: {raw}");
        assert_eq!(r["ips"][0]["gateway"], gateway, "{r}");
        assert_ne!(gateway, GATEWAY);
        let addr = r["ips"][0]["address"].as_str().unwrap_or_default();
        ips.push(addr.split('/').next().unwrap_or_default().to_owned());
        added.push(sandbox);
    }
    let h = client
        .health()
        .map_err(|e| anyhow::anyhow!("health: {e}"))?;
    client
        .wait(h.generation, Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("wait: {e}"))?;
    // Different /24s: each pod must resolve its own gateway and be routed by the switch.
    let end = Instant::now() + Duration::from_secs(10);
    while !ping(&nss[0], &ips[1]) {
        anyhow::ensure!(
            Instant::now() < end,
            "gwa/pod never reached gwb/pod ({})",
            ips[1]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(ping(&nss[1], &ips[0]), "gwb/pod reaches gwa/pod");
    for (ns, (_, _, gateway)) in nss.iter().zip(subnets) {
        let neigh = ns.sh("ip", &["neigh", "show", gateway, "dev", "eth0"])?;
        assert!(
            neigh
                .to_ascii_lowercase()
                .contains(podswitch_e2e::ROUTER_MAC),
            "{gateway} resolved to the switch's router MAC: {neigh:?}"
        );
    }
    for sandbox in &added {
        let (ok, _, raw) = cni("DEL", &sandbox.vars(), &conf);
        assert!(ok, "DEL: {raw}");
    }
    Ok(())
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
