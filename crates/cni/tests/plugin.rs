//! The built plugin, run as a container runtime runs it, against real network namespaces and the
//! real control server (in-process, on a temporary socket, with an in-memory controller).
//!
//! Each test owns its netns (`psc-<pid>-<n>`), container ids, socket and server; guards delete
//! namespaces, leftover host veths and the server on drop, also when an assertion fails.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

use podswitch_control::proto::{Reply, Request};
use podswitch_control::{Client, Controller, Server, ServerConfig, ShutdownHandle};
use serde_json::{Value, json};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn unique() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A network namespace deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Self {
        let name = format!("psc-{}", unique());
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name}");
        Self { name }
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// `ip -n <ns> -j <args>` as JSON.
    fn ip_json(&self, args: &[&str]) -> Value {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-j"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    fn exec(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The control server on a temp socket, shut down on drop.
struct Daemon {
    dir: PathBuf,
    socket: PathBuf,
    stop: ShutdownHandle,
    thread: Option<JoinHandle<()>>,
}

impl Daemon {
    /// A server whose namespace `web` has `subnet`.
    fn start(subnet: &str) -> Self {
        Self::start_dual(subnet, None)
    }

    /// A server whose namespace `web` has `subnet` and optionally an IPv6 one.
    fn start_dual(subnet: &str, v6: Option<&str>) -> Self {
        let dir = std::env::temp_dir().join(format!("psc-test-{}", unique()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("podswitch.sock");
        let controller = Controller::in_memory(None).unwrap();
        let mut server = Server::bind(ServerConfig::new(&socket), controller).unwrap();
        let stop = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.run().unwrap());
        let d = Self {
            dir,
            socket,
            stop,
            thread: Some(thread),
        };
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("team".to_owned(), "web".to_owned());
        d.client()
            .namespace_create("web", labels, Some(subnet), v6)
            .unwrap();
        d
    }

    fn client(&self) -> Client {
        Client::connect(&self.socket).unwrap()
    }

    fn endpoints(&self) -> Vec<podswitch_control::proto::EndpointInfo> {
        match self
            .client()
            .call(Request::EndpointList { namespace: None })
            .unwrap()
        {
            Reply::Endpoints { items } => items,
            r => panic!("unexpected {r:?}"),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Deletes a host interface on drop (if a test fails between ADD and DEL).
struct HostLink(String);

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

struct Outcome {
    ok: bool,
    stdout: Value,
    raw: String,
}

/// Runs the plugin with `vars` and `config` on stdin.
fn cni(command: &str, vars: &[(&str, &str)], config: &Value) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_podswitch-cni"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CNI_COMMAND", command)
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    Outcome {
        ok: out.status.success(),
        stdout: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw: format!("{raw}{}", String::from_utf8_lossy(&out.stderr)),
    }
}

fn config(socket: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "podswitch",
        "type": "podswitch",
        "socket": socket,
        "mtu": 1400,
        "runtimeConfig": {"labels": {"app": "web"}},
    })
}

fn host_link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn add_check_del_against_a_real_netns_and_the_real_server() {
    let daemon = Daemon::start("10.77.0.0/24");
    let ns = Netns::new();
    let netns = ns.path();
    let cid = format!("c{}", unique().replace('-', "x"));
    let vars = [
        ("CNI_CONTAINERID", cid.as_str()),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/nonexistent"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=web-0;LABELS=tier=fe",
        ),
    ];
    let conf = config(&daemon.socket);

    let add = cni("ADD", &vars, &conf);
    assert!(add.ok, "ADD failed: {}", add.raw);
    let r = &add.stdout;
    let host = r["interfaces"][0]["name"].as_str().unwrap().to_owned();
    let _guard = HostLink(host.clone());
    assert!(host.starts_with("psw") && host.len() == 11, "{host}");
    assert_eq!(r["cniVersion"], "1.0.0");
    assert!(r["interfaces"][0].get("sandbox").is_none());
    assert_eq!(r["interfaces"][1]["name"], "eth0");
    assert_eq!(r["interfaces"][1]["sandbox"], netns.as_str());
    let mac = r["interfaces"][1]["mac"].as_str().unwrap().to_owned();
    // The first allocation: .0 is the network, .1 the gateway.
    assert_eq!(r["ips"][0]["address"], "10.77.0.2/24");
    assert_eq!(r["ips"][0]["gateway"], "10.77.0.1");
    assert_eq!(r["ips"][0]["interface"], 1);
    assert!(
        r["ips"][0].get("version").is_none(),
        "1.0.0 has no ips[].version"
    );
    assert_eq!(
        r["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.77.0.1"}])
    );
    assert!(r["dns"].is_object());

    // Inside the container: the interface, its MAC, MTU, address, route, state, offloads.
    let link = &ns.ip_json(&["link", "show", "dev", "eth0"])[0];
    assert_eq!(link["address"], mac.as_str());
    assert_eq!(link["mtu"], 1400);
    assert!(
        link["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{link}"
    );
    let addrs = &ns.ip_json(&["addr", "show", "dev", "eth0"])[0]["addr_info"];
    assert!(
        addrs
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == "10.77.0.2" && a["prefixlen"] == 24),
        "{addrs}"
    );
    let routes = ns.ip_json(&["route", "show", "default"]);
    assert_eq!(routes[0]["gateway"], "10.77.0.1", "{routes}");
    assert_eq!(routes[0]["dev"], "eth0");
    let k = ns.exec(&["ethtool", "-k", "eth0"]);
    let k = String::from_utf8_lossy(&k.stdout);
    for feature in [
        "tx-checksumming: off",
        "tcp-segmentation-offload: off",
        "generic-segmentation-offload: off",
    ] {
        assert!(k.contains(feature), "{feature} not in:\n{k}");
    }
    // On the host: the peer exists, is up, has the MTU.
    let out = Command::new("ip")
        .args(["-j", "link", "show", "dev", &host])
        .output()
        .unwrap();
    let hl: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hl[0]["mtu"], 1400);
    assert!(
        hl[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{hl}"
    );
    assert_eq!(r["interfaces"][0]["mac"], hl[0]["address"]);
    // The daemon's endpoint.
    let eps = daemon.endpoints();
    assert_eq!(eps.len(), 1);
    let ep = &eps[0];
    assert_eq!((ep.namespace.as_str(), ep.name.as_str()), ("web", "web-0"));
    assert_eq!(ep.interface, host);
    assert_eq!(ep.mac.to_string(), mac);
    assert_eq!(
        ep.ips,
        vec!["10.77.0.2".parse::<core::net::IpAddr>().unwrap()]
    );
    assert_eq!(ep.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(ep.labels.get("tier").map(String::as_str), Some("fe"));
    assert_eq!(ep.mtu, 1400);

    // CHECK with the ADD result as prevResult passes.
    let mut check_conf = conf.clone();
    check_conf["prevResult"] = add.stdout.clone();
    let check = cni("CHECK", &vars, &check_conf);
    assert!(check.ok, "CHECK failed: {}", check.raw);
    assert!(
        check.raw.trim().is_empty(),
        "CHECK prints nothing on success: {}",
        check.raw
    );

    // ADD again without DEL: refused, and the first pod is untouched.
    let again = cni("ADD", &vars, &conf);
    assert!(!again.ok);
    assert_eq!(again.stdout["code"], 100, "{}", again.raw);
    assert!(
        host_link_exists(&host),
        "a refused ADD must not delete the existing pod"
    );
    assert_eq!(daemon.endpoints().len(), 1);

    // Break the route: CHECK fails with our code and says what is missing.
    let st = Command::new("ip")
        .args(["-n", &ns.name, "route", "del", "default"])
        .status()
        .unwrap();
    assert!(st.success());
    let check = cni("CHECK", &vars, &check_conf);
    assert!(!check.ok);
    assert_eq!(check.stdout["code"], 103, "{}", check.raw);
    assert!(
        check.stdout["msg"].as_str().unwrap().contains("route"),
        "{}",
        check.raw
    );

    // DEL twice: both succeed, everything is gone.
    for i in 0..2 {
        let del = cni("DEL", &vars, &conf);
        assert!(del.ok, "DEL #{i} failed: {}", del.raw);
        assert!(!host_link_exists(&host), "host end left after DEL #{i}");
        assert!(
            daemon.endpoints().is_empty(),
            "endpoint left after DEL #{i}"
        );
        let links = ns.ip_json(&["link", "show"]);
        assert!(
            links
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["ifname"] != "eth0"),
            "eth0 left in the netns: {links}"
        );
    }
    // The address went back to the pool: the next pod gets a fresh one (next-fit), not an error.
    let ns2 = Netns::new();
    let netns2 = ns2.path();
    let cid2 = format!("{cid}b");
    let vars2 = [
        ("CNI_CONTAINERID", cid2.as_str()),
        ("CNI_NETNS", netns2.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAMESPACE=web;K8S_POD_NAME=web-1"),
    ];
    let add2 = cni("ADD", &vars2, &conf);
    assert!(add2.ok, "{}", add2.raw);
    let guard2 = HostLink(
        add2.stdout["interfaces"][0]["name"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    assert_eq!(add2.stdout["ips"][0]["address"], "10.77.0.3/24");
    // DEL after the container's netns is gone still cleans up (the runtime may delete it first).
    drop(ns2);
    let vars2_nonetns = [vars2[0], vars2[2], vars2[3]];
    let del = cni("DEL", &vars2_nonetns, &conf);
    assert!(del.ok, "{}", del.raw);
    assert!(daemon.endpoints().is_empty());
    assert!(!host_link_exists(&guard2.0));
}

#[test]
fn dual_stack_pod_with_a_0_4_0_config() {
    let daemon = Daemon::start_dual("10.80.0.0/24", Some("fd00:80::/64"));
    let ns = Netns::new();
    let netns = ns.path();
    let cid = format!("d{}", unique().replace('-', "x"));
    let vars = [
        ("CNI_CONTAINERID", cid.as_str()),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAMESPACE=web;K8S_POD_NAME=dual"),
    ];
    let mut conf = config(&daemon.socket);
    conf["cniVersion"] = json!("0.4.0");
    let add = cni("ADD", &vars, &conf);
    assert!(add.ok, "{}", add.raw);
    let r = &add.stdout;
    let _guard = HostLink(r["interfaces"][0]["name"].as_str().unwrap().to_owned());
    assert_eq!(r["cniVersion"], "0.4.0");
    assert_eq!(
        r["ips"],
        json!([
            {"version": "4", "address": "10.80.0.2/24", "gateway": "10.80.0.1", "interface": 1},
            {"version": "6", "address": "fd00:80::2/64", "gateway": "fd00:80::1", "interface": 1},
        ])
    );
    assert_eq!(
        r["routes"],
        json!([
            {"dst": "0.0.0.0/0", "gw": "10.80.0.1"},
            {"dst": "::/0", "gw": "fd00:80::1"},
        ])
    );
    let addrs = &ns.ip_json(&["addr", "show", "dev", "eth0"])[0]["addr_info"];
    assert!(
        addrs
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == "fd00:80::2" && a["prefixlen"] == 64),
        "{addrs}"
    );
    let routes = ns.ip_json(&["-6", "route", "show", "default"]);
    assert_eq!(routes[0]["gateway"], "fd00:80::1", "{routes}");
    let mut check_conf = conf.clone();
    check_conf["prevResult"] = add.stdout.clone();
    let check = cni("CHECK", &vars, &check_conf);
    assert!(check.ok, "{}", check.raw);
    // An address removed behind the plugin's back fails CHECK.
    let st = Command::new("ip")
        .args([
            "-n",
            &ns.name,
            "addr",
            "del",
            "fd00:80::2/64",
            "dev",
            "eth0",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let check = cni("CHECK", &vars, &check_conf);
    assert_eq!(check.stdout["code"], 103, "{}", check.raw);
    assert!(
        check.stdout["msg"].as_str().unwrap().contains("fd00:80::2"),
        "{}",
        check.raw
    );
    assert_eq!(check.stdout["cniVersion"], "0.4.0");
    let del = cni("DEL", &vars, &conf);
    assert!(del.ok, "{}", del.raw);
    assert!(daemon.endpoints().is_empty());
}

#[test]
fn stale_registrations_of_the_pod_are_replaced_live_ones_are_not() {
    let daemon = Daemon::start("10.81.0.0/24");
    // The pod's previous sandbox: registered, but its veth is gone (DEL never reached us).
    let stale =
        |name: &str, interface: &str, mac: [u8; 6]| podswitch_control::proto::EndpointSpec {
            namespace: "web".into(),
            name: name.into(),
            kind: podswitch_control::proto::Kind::Pod,
            interface: interface.into(),
            port: None,
            mac: podswitch_control::proto::Mac(mac),
            ips: Vec::new(),
            allocate: vec![podswitch_control::proto::Family::Ipv4],
            labels: std::collections::BTreeMap::new(),
            ports: Vec::new(),
            mtu: None,
        };
    daemon
        .client()
        .endpoint_add(stale("web-0", "pswdead0", [2, 0, 0, 0, 0, 0x10]))
        .unwrap();
    // A live pod of the same name elsewhere: its interface exists (lo stands in for it).
    daemon
        .client()
        .endpoint_add(stale("web-1", "lo", [2, 0, 0, 0, 0, 0x11]))
        .unwrap();
    let ns = Netns::new();
    let netns = ns.path();
    let cid = format!("s{}", unique().replace('-', "x"));
    let mut vars = [
        ("CNI_CONTAINERID", cid.as_str()),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAMESPACE=web;K8S_POD_NAME=web-0"),
    ];
    let conf = config(&daemon.socket);
    let add = cni("ADD", &vars, &conf);
    assert!(add.ok, "{}", add.raw);
    let host = add.stdout["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let _guard = HostLink(host.clone());
    let eps = daemon.endpoints();
    let web0 = eps.iter().find(|e| e.name == "web-0").unwrap();
    assert_eq!(web0.interface, host, "the stale registration was replaced");
    assert!(eps.iter().any(|e| e.name == "web-1" && e.interface == "lo"));
    // Same name as the live one: refused by the daemon, the live one untouched, nothing left.
    vars[3] = ("CNI_ARGS", "K8S_POD_NAMESPACE=web;K8S_POD_NAME=web-1");
    vars[2] = ("CNI_IFNAME", "eth1");
    let out = cni("ADD", &vars, &conf);
    assert_eq!(out.stdout["code"], 101, "{}", out.raw);
    assert!(
        out.stdout["msg"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{}",
        out.raw
    );
    assert!(
        daemon
            .endpoints()
            .iter()
            .any(|e| e.name == "web-1" && e.interface == "lo")
    );
    let links = ns.ip_json(&["link", "show"]);
    assert!(
        links
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["ifname"] != "eth1"),
        "{links}"
    );
    vars[2] = ("CNI_IFNAME", "eth0");
    vars[3] = ("CNI_ARGS", "K8S_POD_NAMESPACE=web;K8S_POD_NAME=web-0");
    assert!(cni("DEL", &vars, &conf).ok);
}

#[test]
fn failures_after_the_veth_exists_are_undone() {
    let daemon = Daemon::start("10.78.0.0/24");
    let ns = Netns::new();
    let netns = ns.path();
    let cid = format!("u{}", unique().replace('-', "x"));
    // A pod name the daemon refuses (not a DNS subdomain): endpoint_add fails after the veth
    // was created.
    let vars = [
        ("CNI_CONTAINERID", cid.as_str()),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAMESPACE=web;K8S_POD_NAME=Not_A_Name"),
    ];
    let out = cni("ADD", &vars, &config(&daemon.socket));
    assert!(!out.ok);
    assert_eq!(out.stdout["code"], 101, "{}", out.raw);
    assert_eq!(out.stdout["cniVersion"], "1.0.0");
    assert!(
        out.stdout["details"]
            .as_str()
            .unwrap()
            .contains("request.name"),
        "{}",
        out.raw
    );
    let links = ns.ip_json(&["link", "show"]);
    assert!(
        links
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["ifname"] == "lo"),
        "veth left in the netns: {links}"
    );
    assert!(daemon.endpoints().is_empty());

    // Unknown namespace: refused before anything is created.
    let vars = [
        vars[0],
        vars[1],
        vars[2],
        ("CNI_ARGS", "K8S_POD_NAMESPACE=nope;K8S_POD_NAME=p"),
    ];
    let out = cni("ADD", &vars, &config(&daemon.socket));
    assert_eq!(out.stdout["code"], 101, "{}", out.raw);
    assert!(
        out.stdout["msg"].as_str().unwrap().contains("nope"),
        "{}",
        out.raw
    );
    assert!(ns.ip_json(&["link", "show"]).as_array().unwrap().len() == 1);
}

#[test]
fn ipam_is_delegated_with_our_env_and_config() {
    let daemon = Daemon::start("10.79.0.0/24");
    let ns = Netns::new();
    let netns = ns.path();
    let cid = format!("i{}", unique().replace('-', "x"));
    // A fake IPAM plugin: records its command, container and stdin; ADD answers a 0.4.0-style
    // result with an address from the namespace subnet and a gateway of its own choosing.
    let bin = daemon.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\ncat > {dir}/stdin-$CNI_COMMAND\necho \"$CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME\" >> {dir}/calls\n\
         if [ \"$CNI_COMMAND\" = ADD ]; then echo '{{\"cniVersion\":\"1.0.0\",\"ips\":[{{\"address\":\"10.79.0.50/24\",\"gateway\":\"10.79.0.1\"}}],\"routes\":[{{\"dst\":\"0.0.0.0/0\"}}],\"dns\":{{\"nameservers\":[\"10.96.0.10\"]}}}}'; fi\n",
        dir = daemon.dir.display()
    );
    let fake = bin.join("fake-ipam");
    std::fs::write(&fake, script).unwrap();
    let st = Command::new("chmod")
        .arg("755")
        .arg(&fake)
        .status()
        .unwrap();
    assert!(st.success());
    let path = format!("/nonexistent:{}", bin.display());
    let vars = [
        ("CNI_CONTAINERID", cid.as_str()),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "net1"),
        ("CNI_PATH", path.as_str()),
        ("CNI_ARGS", "K8S_POD_NAMESPACE=web;K8S_POD_NAME=db-0"),
    ];
    let mut conf = config(&daemon.socket);
    conf["ipam"] = json!({"type": "fake-ipam", "subnet": "10.79.0.0/24"});
    let add = cni("ADD", &vars, &conf);
    assert!(add.ok, "{}", add.raw);
    let _guard = HostLink(
        add.stdout["interfaces"][0]["name"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    assert_eq!(add.stdout["ips"][0]["address"], "10.79.0.50/24");
    assert_eq!(
        add.stdout["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.79.0.1"}])
    );
    assert_eq!(add.stdout["dns"]["nameservers"], json!(["10.96.0.10"]));
    let stdin_seen: Value =
        serde_json::from_slice(&std::fs::read(daemon.dir.join("stdin-ADD")).unwrap()).unwrap();
    assert_eq!(stdin_seen, conf, "the delegate gets our config verbatim");
    let eps = daemon.endpoints();
    assert_eq!(
        eps[0].ips,
        vec!["10.79.0.50".parse::<core::net::IpAddr>().unwrap()]
    );
    let addrs = &ns.ip_json(&["addr", "show", "dev", "net1"])[0]["addr_info"];
    assert!(
        addrs
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == "10.79.0.50"),
        "{addrs}"
    );

    let mut check_conf = conf.clone();
    check_conf["prevResult"] = add.stdout.clone();
    let check = cni("CHECK", &vars, &check_conf);
    assert!(check.ok, "{}", check.raw);
    let del = cni("DEL", &vars, &conf);
    assert!(del.ok, "{}", del.raw);
    let calls = std::fs::read_to_string(daemon.dir.join("calls")).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            format!("ADD {cid} net1"),
            format!("CHECK {cid} net1"),
            format!("DEL {cid} net1")
        ]
    );
    assert!(daemon.endpoints().is_empty());

    // A delegate that cannot be found: code 102, nothing left behind.
    conf["ipam"] = json!({"type": "no-such-ipam"});
    let out = cni("ADD", &vars, &conf);
    assert_eq!(out.stdout["code"], 102, "{}", out.raw);
    assert_eq!(ns.ip_json(&["link", "show"]).as_array().unwrap().len(), 1);
}

#[test]
fn version_and_protocol_errors() {
    let out = cni("VERSION", &[], &json!({"cniVersion": "1.0.0"}));
    assert!(out.ok);
    assert_eq!(
        out.stdout,
        json!({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]})
    );
    let vars = [
        ("CNI_CONTAINERID", "abc"),
        ("CNI_NETNS", "/var/run/netns/none"),
        ("CNI_IFNAME", "eth0"),
    ];
    // Each error: exit non-zero, the error object on stdout with the spec's code.
    let bad_version = json!({"cniVersion": "0.3.1", "name": "n", "type": "podswitch"});
    let out = cni("ADD", &vars, &bad_version);
    assert!(!out.ok);
    assert_eq!(out.stdout["code"], 1, "{}", out.raw);
    let out = cni(
        "ADD",
        &vars,
        &json!({"cniVersion": "1.0.0", "type": "podswitch"}),
    );
    assert_eq!(out.stdout["code"], 7, "{}", out.raw);
    let out = cni("ADD", &vars[1..], &config(Path::new("/x")));
    assert_eq!(out.stdout["code"], 4, "{}", out.raw);
    assert!(
        out.stdout["msg"]
            .as_str()
            .unwrap()
            .contains("CNI_CONTAINERID")
    );
    let out = cni("BOGUS", &vars, &config(Path::new("/x")));
    assert_eq!(out.stdout["code"], 4, "{}", out.raw);
    // Missing netns: code 3; unreachable daemon: 11 (try again later).
    let out = cni("ADD", &vars, &config(Path::new("/nonexistent/p.sock")));
    assert_eq!(out.stdout["code"], 3, "{}", out.raw);
    let ns = Netns::new();
    let netns = ns.path();
    let vars = [vars[0], ("CNI_NETNS", netns.as_str()), vars[2]];
    let out = cni("ADD", &vars, &config(Path::new("/nonexistent/p.sock")));
    assert_eq!(out.stdout["code"], 11, "{}", out.raw);
    let mut old = config(Path::new("/nonexistent/p.sock"));
    old["cniVersion"] = json!("0.4.0");
    let out = cni("ADD", &vars, &old);
    assert_eq!(
        out.stdout["cniVersion"], "0.4.0",
        "errors carry the config's version"
    );
    // DEL with the daemon down is an error to retry, not a silent success (it would leak the
    // endpoint).
    let out = cni("DEL", &vars, &config(Path::new("/nonexistent/p.sock")));
    assert!(!out.ok);
    assert_eq!(out.stdout["code"], 11, "{}", out.raw);
}

#[test]
fn shipped_conflist_is_a_valid_podswitch_config() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/10-podswitch.conflist");
    let list: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(list["cniVersion"], "1.0.0");
    let plugin = &list["plugins"][0];
    assert_eq!(plugin["type"], "podswitch");
    // A runtime runs each plugin with the list's name and version injected: the plugin accepts
    // the result (it fails later, on the missing netns, with code 3, not on the config).
    let mut conf = plugin.clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    let vars = [
        ("CNI_CONTAINERID", "abc"),
        ("CNI_NETNS", "/var/run/netns/psc-none"),
        ("CNI_IFNAME", "eth0"),
    ];
    let out = cni("ADD", &vars, &conf);
    assert_eq!(out.stdout["code"], 3, "{}", out.raw);
}
