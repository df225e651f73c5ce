//! Helpers for the end-to-end tests: pods as network namespaces with veths, the real
//! `podswitchd` binary started on a generated config, and real tools (ping, ip, python3 for TCP
//! and UDP traffic) run inside the pods.
//!
//! A `Node` runs its daemon in the root namespace (pods' switch-side veth ends there too) or, with
//! `Node::up_in_netns`, in a namespace of its own; a `Cluster` joins such nodes and a kernel-vxlan
//! "bare-metal server" namespace over an underlay bridge (the multi-node tests).
//!
//! Every resource is owned by a guard whose `Drop` removes it — the daemon process (SIGKILL, then
//! reaped), each namespace (its processes killed first) and each host-side veth — so a failing
//! test cleans up too. Names carry a per-test unique prefix `pse<pid><n>` (≤ 15 bytes with the
//! pod suffix), so tests run in parallel without sharing anything.
//! Needs root (CI runs as root). The binary is `<target>/<profile>/podswitchd`, which
//! `cargo test --workspace` builds before any test runs (podswitchd has an integration test, so
//! cargo builds its binary; `cargo test -p podswitch-e2e` alone does not), or `$PODSWITCHD`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// Router MAC of every test node.
pub const ROUTER_MAC: &str = "02:50:53:00:00:01";
/// IPv4 gateway of every test node.
pub const GATEWAY: &str = "10.30.0.1";

/// TCP sink: for each connection, reads to EOF and answers the sha256 hex digest of what it read.
pub const TCP_SERVER: &str = r#"
import hashlib, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    h = hashlib.sha256()
    while True:
        b = c.recv(65536)
        if not b:
            break
        h.update(b)
    c.sendall(h.hexdigest().encode())
    c.close()
"#;

/// TCP source: sends N random bytes, half-closes, checks the digest the server answers. Prints
/// `ok <bytes> <seconds>` or fails.
pub const TCP_CLIENT: &str = r#"
import hashlib, os, socket, sys, time
host, port, size, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
data = os.urandom(size)
t0 = time.monotonic()
c = socket.create_connection((host, port), timeout=timeout)
c.sendall(data)
c.shutdown(socket.SHUT_WR)
got = b""
while len(got) < 64:
    b = c.recv(64)
    if not b:
        break
    got += b
dt = time.monotonic() - t0
want = hashlib.sha256(data).hexdigest()
if got.decode() != want:
    sys.exit(f"digest mismatch: sent {want}, server read {got.decode()!r}")
print(f"ok {size} {dt:.3f}")
"#;

/// UDP echo server: answers every datagram with `echo:` + the datagram.
pub const UDP_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
while True:
    d, a = s.recvfrom(65536)
    s.sendto(b"echo:" + d, a)
"#;

/// UDP client: sends `count` numbered requests and checks each reply. Prints `ok <count>`.
pub const UDP_CLIENT: &str = r#"
import socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for i in range(count):
    msg = f"request {i}".encode()
    for attempt in range(3):
        s.sendto(msg, (host, port))
        try:
            d, _ = s.recvfrom(65536)
            break
        except socket.timeout:
            continue
    else:
        sys.exit(f"no reply to request {i}")
    if d != b"echo:" + msg:
        sys.exit(f"bad reply {d!r}")
print(f"ok {count}")
"#;

/// Runs a command, returning its output (whatever the exit status).
pub fn run(cmd: &str, args: &[&str]) -> anyhow::Result<Output> {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd} {}", args.join(" ")))
}

/// Runs a command that must succeed; returns its stdout.
pub fn sh(cmd: &str, args: &[&str]) -> anyhow::Result<String> {
    let o = run(cmd, args)?;
    ensure!(
        o.status.success(),
        "{cmd} {} failed ({}): {}",
        args.join(" "),
        o.status,
        String::from_utf8_lossy(&o.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Runs a command that must succeed in namespace `ns`, or in the root namespace for `None`.
pub fn host_sh(ns: Option<&str>, cmd: &str, args: &[&str]) -> anyhow::Result<String> {
    match ns {
        None => sh(cmd, args),
        Some(ns) => {
            let mut a = vec!["netns", "exec", ns, cmd];
            a.extend_from_slice(args);
            sh("ip", &a)
        }
    }
}

/// Fails unless running as root (the tests create namespaces and attach XDP programs).
pub fn require_root() {
    let uid = sh("id", &["-u"]).unwrap_or_default();
    assert_eq!(
        uid.trim(),
        "0",
        "end-to-end tests need root (they create network namespaces)"
    );
}

/// A unique name prefix for one test: `pse<pid mod 10^5><n>`.
pub fn unique_prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("pse{}{n}", std::process::id() % 100_000)
}

/// The `podswitchd` binary: `$PODSWITCHD`, or next to this test's target directory.
pub fn daemon_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PODSWITCHD") {
        return PathBuf::from(p);
    }
    // <target>/<profile>/deps/<test>-<hash>  →  <target>/<profile>/podswitchd
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in <target>/<profile>/deps");
    let bin = profile_dir.join("podswitchd");
    assert!(
        bin.exists(),
        "{} not found: run the tests with `cargo test --workspace` (which builds every binary) \
         or `cargo build -p podswitchd` first, or set PODSWITCHD",
        bin.display()
    );
    bin
}

/// A network namespace, deleted (after killing its processes) on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> anyhow::Result<Netns> {
        sh("ip", &["netns", "add", name])?;
        Ok(Netns { name: name.into() })
    }

    /// Runs a command in the namespace.
    pub fn run(&self, cmd: &str, args: &[&str]) -> anyhow::Result<Output> {
        let mut a = vec!["netns", "exec", &self.name, cmd];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// Runs a command in the namespace that must succeed; returns stdout.
    pub fn sh(&self, cmd: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut a = vec!["netns", "exec", &self.name, cmd];
        a.extend_from_slice(args);
        sh("ip", &a)
    }

    /// Starts a background process in the namespace (killed with the namespace).
    pub fn spawn(&self, cmd: &str, args: &[&str]) -> anyhow::Result<Child> {
        let mut a = vec!["netns", "exec", &self.name, cmd];
        a.extend_from_slice(args);
        Command::new("ip")
            .args(&a)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning in namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(o) = run("ip", &["netns", "pids", &self.name]) {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = run("kill", &["-9", pid]);
            }
        }
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// A host-side link, deleted on drop (deleting one veth end deletes the pair).
#[derive(Debug)]
pub struct HostLink {
    pub name: String,
}

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.name]);
    }
}

/// A pod: a namespace with `eth0`, whose peer `host_if` is the switch port.
#[derive(Debug)]
pub struct Pod {
    pub short: String,
    pub ip: String,
    pub mac: String,
    pub port: u32,
    pub namespace: String,
    pub labels: Vec<(String, String)>,
    pub named_ports: Vec<(String, u16)>,
    /// `/32` address with an on-link default route (every destination via the gateway) instead
    /// of the `/24` subnet (peers resolved by ARP directly).
    pub host_route: bool,
    pub worker: Option<usize>,
    /// MTU of both veth ends and of the switch port (default: the veth's 1500 and `node.mtu`).
    pub mtu: Option<u16>,
    // Drop order: the namespace (and its processes) before the host link.
    pub netns: Option<Netns>,
    pub link: Option<HostLink>,
}

/// Describes a pod; `Node::up` creates it.
pub fn pod(short: &str, n: u8, namespace: &str) -> Pod {
    Pod {
        short: short.into(),
        ip: format!("10.30.0.{}", 10 + u32::from(n)),
        mac: format!("02:50:53:00:01:{:02x}", 10 + n),
        port: u32::from(n),
        namespace: namespace.into(),
        labels: vec![("app".into(), short.into())],
        named_ports: Vec::new(),
        host_route: false,
        worker: None,
        mtu: None,
        netns: None,
        link: None,
    }
}

impl Pod {
    /// Adds a named TCP container port.
    #[must_use]
    pub fn named_port(mut self, name: &str, port: u16) -> Pod {
        self.named_ports.push((name.into(), port));
        self
    }

    /// Routes everything via the gateway (`/32` + on-link default route).
    #[must_use]
    pub fn via_gateway(mut self) -> Pod {
        self.host_route = true;
        self
    }

    /// Pins the port to a worker.
    #[must_use]
    pub fn on_worker(mut self, w: usize) -> Pod {
        self.worker = Some(w);
        self
    }

    /// Sets the MTU of the pod's veth (both ends) and of its switch port.
    #[must_use]
    pub fn with_mtu(mut self, mtu: u16) -> Pod {
        self.mtu = Some(mtu);
        self
    }

    /// The pod's namespace.
    pub fn ns(&self) -> &Netns {
        self.netns.as_ref().expect("pod is up")
    }

    /// The switch-side interface name.
    pub fn host_if(&self) -> &str {
        &self.link.as_ref().expect("pod is up").name
    }

    /// Creates the pod; its veth's switch end goes into `host_ns` (a node namespace) when given,
    /// else stays in the root namespace.
    fn create(&mut self, prefix: &str, host_ns: Option<&str>) -> anyhow::Result<()> {
        let name = format!("{prefix}{}", self.port);
        ensure!(name.len() <= 15, "interface name {name} too long");
        let ns = Netns::new(&name)?;
        host_sh(
            host_ns,
            "ip",
            &[
                "link", "add", &name, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ],
        )?;
        self.link = Some(HostLink { name: name.clone() });
        self.netns = Some(ns);
        let ns = self.ns();
        ns.sh("ip", &["link", "set", "eth0", "address", &self.mac])?;
        // No IPv6 chatter (RS, MLD, DAD) in the counters the tests read.
        ns.sh("sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
        host_sh(
            host_ns,
            "sysctl",
            &["-qw", &format!("net.ipv6.conf.{name}.disable_ipv6=1")],
        )?;
        if let Some(mtu) = self.mtu {
            let mtu = mtu.to_string();
            ns.sh("ip", &["link", "set", "eth0", "mtu", &mtu])?;
            host_sh(host_ns, "ip", &["link", "set", &name, "mtu", &mtu])?;
        }
        let prefix_len = if self.host_route { "32" } else { "24" };
        ns.sh(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/{prefix_len}", self.ip),
                "dev",
                "eth0",
            ],
        )?;
        ns.sh("ip", &["link", "set", "lo", "up"])?;
        ns.sh("ip", &["link", "set", "eth0", "up"])?;
        if self.host_route {
            ns.sh("ip", &["route", "add", GATEWAY, "dev", "eth0"])?;
        }
        ns.sh(
            "ip",
            &["route", "add", "default", "via", GATEWAY, "dev", "eth0"],
        )?;
        // The CNI plugin's job (AFXDP.md "checksum offload"): the pod end emits complete
        // checksums and MTU-sized frames.
        ns.sh(
            "ethtool",
            &["-K", "eth0", "tx", "off", "tso", "off", "gso", "off"],
        )?;
        host_sh(host_ns, "ip", &["link", "set", &name, "up"])?;
        Ok(())
    }

    /// `ping -c count` to `ip`; true when every echo was answered.
    pub fn ping(&self, ip: &str, count: u32) -> anyhow::Result<bool> {
        let o = self.ns().run(
            "ping",
            &["-c", &count.to_string(), "-i", "0.2", "-W", "2", ip],
        )?;
        Ok(o.status.success())
    }

    /// Starts the TCP sink on `port` and waits until it listens.
    pub fn tcp_server(&self, port: u16) -> anyhow::Result<Child> {
        self.server(TCP_SERVER, port)
    }

    /// Starts the UDP echo server on `port` and waits until it is bound.
    pub fn udp_server(&self, port: u16) -> anyhow::Result<Child> {
        self.server(UDP_SERVER, port)
    }

    fn server(&self, script: &str, port: u16) -> anyhow::Result<Child> {
        let mut child = self
            .ns()
            .spawn("python3", &["-u", "-c", script, &port.to_string()])?;
        let out = child.stdout.take().context("server stdout")?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)?;
        ensure!(
            line.starts_with("listening"),
            "server did not start: {line:?}"
        );
        Ok(child)
    }

    /// Sends `size` random bytes over TCP to `ip:port`; `Ok(Some(seconds))` when the server's
    /// sha256 matched, `Ok(None)` when the connection failed (e.g. denied by policy).
    pub fn tcp_send(
        &self,
        ip: &str,
        port: u16,
        size: usize,
        timeout_s: f32,
    ) -> anyhow::Result<Option<f64>> {
        let o = self.ns().run(
            "python3",
            &[
                "-c",
                TCP_CLIENT,
                ip,
                &port.to_string(),
                &size.to_string(),
                &timeout_s.to_string(),
            ],
        )?;
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        ensure!(
            !err.contains("digest mismatch"),
            "TCP data corrupted: {err}"
        );
        if !o.status.success() {
            return Ok(None);
        }
        let secs = out
            .split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .context("client output")?;
        Ok(Some(secs))
    }

    /// Sends `count` UDP requests to `ip:port`; true when every reply came back intact.
    pub fn udp_requests(&self, ip: &str, port: u16, count: u32) -> anyhow::Result<bool> {
        let o = self.ns().run(
            "python3",
            &["-c", UDP_CLIENT, ip, &port.to_string(), &count.to_string()],
        )?;
        Ok(o.status.success() && String::from_utf8_lossy(&o.stdout).starts_with("ok"))
    }

    /// The MAC the pod's neighbour table holds for `ip`, if any.
    pub fn neighbour(&self, ip: &str) -> anyhow::Result<Option<String>> {
        let out = self.ns().sh("ip", &["neigh", "show", ip, "dev", "eth0"])?;
        Ok(out
            .split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_owned))
    }
}

/// The running daemon, SIGKILLed and reaped on drop.
#[derive(Debug)]
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`TERM`, `HUP`, `KILL`, ...).
    pub fn signal(&self, sig: &str) -> anyhow::Result<()> {
        sh("kill", &[&format!("-{sig}"), &self.pid().to_string()]).map(|_| ())
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait()? {
                return Ok(Some(s.code().unwrap_or(-1)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(None)
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test node: pods, a work directory with the config, policies and stats, and the daemon.
#[derive(Debug)]
pub struct Node {
    pub prefix: String,
    pub dir: PathBuf,
    pub pods: Vec<Pod>,
    pub namespaces: Vec<(String, Vec<(String, String)>)>,
    pub policy_yaml: Option<String>,
    /// Extra TOML appended to `[workers]`.
    pub workers_toml: String,
    /// Serve the control socket (`<dir>/control.sock`).
    pub control: bool,
    /// Extra command-line arguments for the daemon.
    pub args: Vec<String>,
    /// TOML appended to the generated config (e.g. `[uplink]`, `[[vteps]]`).
    pub extra_toml: String,
    pub daemon: Option<Daemon>,
    /// The node's own network namespace (daemon and switch-side veth ends inside), if any;
    /// dropped after the pods.
    pub netns: Option<Netns>,
}

impl Node {
    /// Creates the pods (namespaces, veths, addresses, offloads off); the daemon is not started.
    pub fn up(mut pods: Vec<Pod>) -> anyhow::Result<Node> {
        require_root();
        let prefix = unique_prefix();
        let dir = std::env::temp_dir().join(format!("podswitch-e2e-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        for p in &mut pods {
            p.create(&prefix, None)?;
        }
        Ok(Node::new(prefix, dir, pods, None))
    }

    /// Like [`Node::up`], but the node lives in its own network namespace `<prefix>n`: the
    /// pods' switch-side veth ends are created there and the daemon runs there.
    pub fn up_in_netns(mut pods: Vec<Pod>) -> anyhow::Result<Node> {
        require_root();
        let prefix = unique_prefix();
        let dir = std::env::temp_dir().join(format!("podswitch-e2e-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let netns = Netns::new(&format!("{prefix}n"))?;
        // No IPv6 chatter on existing and future interfaces.
        netns.sh("sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
        netns.sh("sysctl", &["-qw", "net.ipv6.conf.default.disable_ipv6=1"])?;
        netns.sh("ip", &["link", "set", "lo", "up"])?;
        // From here on, a failure drops the node, which removes what exists so far.
        let mut node = Node::new(prefix, dir, Vec::new(), Some(netns));
        for p in &mut pods {
            p.create(&node.prefix, node.netns.as_ref().map(|n| n.name.as_str()))?;
        }
        node.pods = pods;
        Ok(node)
    }

    fn new(prefix: String, dir: PathBuf, pods: Vec<Pod>, netns: Option<Netns>) -> Node {
        Node {
            prefix,
            dir,
            pods,
            namespaces: Vec::new(),
            policy_yaml: None,
            workers_toml: String::new(),
            control: false,
            args: Vec::new(),
            extra_toml: String::new(),
            daemon: None,
            netns,
        }
    }

    /// The pod named `short`.
    pub fn pod(&self, short: &str) -> &Pod {
        self.pods
            .iter()
            .find(|p| p.short == short)
            .expect("pod exists")
    }

    pub fn stats_path(&self) -> PathBuf {
        self.dir.join("stats.json")
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("node.toml")
    }

    /// Writes `node.toml` (and `policies.yaml`) for the current pods, namespaces and policy.
    pub fn write_config(&self) -> anyhow::Result<()> {
        let mut t = String::new();
        if let Some(y) = &self.policy_yaml {
            std::fs::write(self.dir.join("policies.yaml"), y)?;
            t.push_str("policies = [\"policies.yaml\"]\n");
        }
        write!(
            t,
            "[node]\nname = \"{}\"\nrouter_mac = \"{ROUTER_MAC}\"\ngateway_v4 = \"{GATEWAY}\"\n\n\
             [workers]\n{}\n[stats]\nfile_interval_ms = 100\nlog_interval_secs = 1\n\n",
            self.prefix, self.workers_toml
        )?;
        if self.control {
            writeln!(
                t,
                "[control]\nsocket = \"{}\"\n",
                self.socket_path().display()
            )?;
        }
        for (ns, labels) in &self.namespaces {
            write!(t, "[[namespaces]]\nname = \"{ns}\"\nlabels = {{ ")?;
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k} = \"{v}\""))
                .collect();
            writeln!(t, "{} }}\n", l.join(", "))?;
        }
        for p in &self.pods {
            let Some(link) = &p.link else { continue };
            write!(
                t,
                "[[ports]]\ninterface = \"{}\"\nport = {}\nmac = \"{}\"\nips = [\"{}\"]\n\
                 namespace = \"{}\"\npod = \"{}\"\n",
                link.name, p.port, p.mac, p.ip, p.namespace, p.short
            )?;
            let l: Vec<String> = p
                .labels
                .iter()
                .map(|(k, v)| format!("{k} = \"{v}\""))
                .collect();
            writeln!(t, "labels = {{ {} }}", l.join(", "))?;
            if !p.named_ports.is_empty() {
                let np: Vec<String> = p
                    .named_ports
                    .iter()
                    .map(|(n, port)| format!("{{ name = \"{n}\", port = {port} }}"))
                    .collect();
                writeln!(t, "named_ports = [{}]", np.join(", "))?;
            }
            if let Some(w) = p.worker {
                writeln!(t, "worker = {w}")?;
            }
            if let Some(m) = p.mtu {
                writeln!(t, "mtu = {m}")?;
            }
            t.push('\n');
        }
        t.push_str(&self.extra_toml);
        std::fs::write(self.config_path(), t)?;
        Ok(())
    }

    /// Writes the config and starts the daemon; waits until its first counters are written.
    pub fn start(&mut self) -> anyhow::Result<()> {
        self.write_config()?;
        let _ = std::fs::remove_file(self.stats_path());
        let log = self.dir.join("podswitchd.log");
        let logf = std::fs::File::create(&log)?;
        // In a node namespace, `ip netns exec` execs the daemon in place: the child's pid is the
        // daemon's, so the SIGKILL on drop reaches it.
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name]).arg(daemon_binary());
                c
            }
            None => Command::new(daemon_binary()),
        };
        let child = cmd
            .arg("--config")
            .arg(self.config_path())
            .arg("--stats-file")
            .arg(self.stats_path())
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .context("starting podswitchd")?;
        let mut d = Daemon { child, log };
        let end = Instant::now() + Duration::from_secs(15);
        while !self.stats_path().exists() {
            if let Some(code) = d.wait_exit(Duration::from_millis(50))? {
                bail!("podswitchd exited ({code}) at start:\n{}", d.log_text());
            }
            if Instant::now() > end {
                bail!("podswitchd did not start:\n{}", d.log_text());
            }
        }
        self.daemon = Some(d);
        Ok(())
    }

    pub fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("daemon started")
    }

    /// The latest counters (the stats file, rewritten every 100 ms).
    pub fn stats(&self) -> anyhow::Result<serde_json::Value> {
        let text = std::fs::read_to_string(self.stats_path())?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Waits (bounded) until `f` holds for the counters; returns them.
    pub fn wait_stats(
        &self,
        what: &str,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = self.stats()
                && f(&s)
            {
                return Ok(s);
            }
            if Instant::now() > end {
                bail!(
                    "counters never showed {what}: {:#}",
                    self.stats().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether an XDP program is attached to any of this node's switch-side interfaces.
    pub fn xdp_attached(&self) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for p in &self.pods {
            let Some(link) = &p.link else { continue };
            let text = host_sh(
                self.netns.as_ref().map(|n| n.name.as_str()),
                "ip",
                &["-d", "link", "show", "dev", &link.name],
            )?;
            if text.contains("prog/xdp") {
                out.push(link.name.clone());
            }
        }
        Ok(out)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The daemon first (it holds the ports), then the pods (their own Drop), then the node's
        // namespace, then files.
        self.daemon = None;
        self.pods.clear();
        self.netns = None;
        if std::thread::panicking() {
            eprintln!("test failed; work directory kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Sum of a drop reason over the counters' ports.
pub fn drops(stats: &serde_json::Value, reason: &str) -> u64 {
    stats["drops"][reason].as_u64().unwrap_or(0)
}

/// The VNI every cluster VTEP serves.
pub const CLUSTER_VNI: u32 = 100;
/// VTEP id of the bare-metal server on every node (node `i` is VTEP `i + 1`).
pub const BARE_METAL_VTEP: u32 = 100;
/// The bare-metal server's underlay address and MAC.
pub const BARE_METAL_UNDERLAY_IP: &str = "192.168.80.100";
pub const BARE_METAL_UNDERLAY_MAC: &str = "02:50:53:bb:00:01";
/// The bare-metal server's address and MAC in the pod network (on its kernel `vxlan0`).
pub const BARE_METAL_IP: &str = "10.30.0.200";
pub const BARE_METAL_MAC: &str = "02:50:53:bb:01:01";
/// The switch port id of every node's uplink.
pub const UPLINK_PORT: u32 = 1000;

/// Node `i`'s VTEP (underlay) address.
pub fn node_vtep_ip(i: usize) -> String {
    format!("192.168.80.{}", i + 1)
}

/// Node `i`'s VTEP MAC (its uplink veth's MAC).
pub fn node_vtep_mac(i: usize) -> String {
    format!("02:50:53:aa:00:{:02x}", i + 1)
}

/// A remote VTEP as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteVtep {
    pub id: u32,
    pub ip: String,
    pub next_hop_mac: String,
    /// VXLAN-GBP (the Group Based Policy header extension).
    pub gbp: bool,
}

/// A remote endpoint as a node sees it (a pod on another node, or the bare-metal server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEndpoint {
    pub vtep: u32,
    pub namespace: String,
    pub name: String,
    /// `pod` or `bare-metal`.
    pub kind: String,
    pub mac: String,
    pub ip: String,
    pub labels: Vec<(String, String)>,
    /// Named TCP ports (policies naming a port resolve it on the sending node too).
    pub named_ports: Vec<(String, u16)>,
}

/// A simulated cluster: node namespaces, each running its own daemon with its own pods, joined
/// by an underlay bridge (`br0` in namespace `<prefix>u`); every node's uplink (`uplink`, an
/// AF_XDP port) is a veth on that bridge carrying the node's VTEP MAC. A "bare-metal server"
/// namespace (`<prefix>b`) on the same bridge runs the kernel's own vxlan device (`vxlan0`, VNI
/// [`CLUSTER_VNI`], UDP 4789) with static FDB and neighbour entries for every pod.
///
/// The switch answers no ARP on the underlay, so every underlay neighbour is static: each node
/// knows the others' VTEP MACs as `next_hop_mac`, the server has permanent neighbour entries.
/// Drop order (field order): the nodes (daemons, pods, node namespaces), the server, then the
/// underlay namespace, which takes the remaining veths with it.
#[derive(Debug)]
pub struct Cluster {
    pub prefix: String,
    pub nodes: Vec<Node>,
    pub bare_metal: Netns,
    pub underlay: Netns,
    pub underlay_mtu: u16,
    /// The server's Kubernetes namespace and labels as the nodes register it.
    pub bare_metal_namespace: String,
    pub bare_metal_labels: Vec<(String, String)>,
    /// The server's `vxlan0` has the kernel's `gbp` flag (and nodes mark its VTEP `gbp`).
    pub bare_metal_gbp: bool,
}

impl Cluster {
    /// Builds the topology (one node per entry of `pods`; pod ids and so addresses must be
    /// unique across the cluster); daemons are not started (see [`Cluster::start`]).
    pub fn up(pods: Vec<Vec<Pod>>, underlay_mtu: u16) -> anyhow::Result<Cluster> {
        Cluster::build(pods, underlay_mtu, false)
    }

    /// Like [`Cluster::up`], with the server's kernel vxlan device speaking VXLAN-GBP (`gbp`).
    pub fn up_gbp(pods: Vec<Vec<Pod>>, underlay_mtu: u16) -> anyhow::Result<Cluster> {
        Cluster::build(pods, underlay_mtu, true)
    }

    fn build(pods: Vec<Vec<Pod>>, underlay_mtu: u16, gbp: bool) -> anyhow::Result<Cluster> {
        require_root();
        let prefix = unique_prefix();
        let underlay = Netns::new(&format!("{prefix}u"))?;
        let bare_metal = Netns::new(&format!("{prefix}b"))?;
        let mut c = Cluster {
            prefix,
            nodes: Vec::new(),
            bare_metal,
            underlay,
            underlay_mtu,
            bare_metal_namespace: "default".into(),
            bare_metal_labels: vec![("role".into(), "bare-metal".into())],
            bare_metal_gbp: gbp,
        };
        let mtu = underlay_mtu.to_string();
        for ns in [&c.underlay, &c.bare_metal] {
            ns.sh("sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
            ns.sh("sysctl", &["-qw", "net.ipv6.conf.default.disable_ipv6=1"])?;
            ns.sh("ip", &["link", "set", "lo", "up"])?;
        }
        let u = c.underlay.name.clone();
        c.underlay.sh(
            "ip",
            &[
                "link",
                "add",
                "br0",
                "mtu",
                &mtu,
                "type",
                "bridge",
                "stp_state",
                "0",
            ],
        )?;
        c.underlay.sh("ip", &["link", "set", "br0", "up"])?;
        for (i, node_pods) in pods.into_iter().enumerate() {
            let node = Node::up_in_netns(node_pods)?;
            c.nodes.push(node);
            let node = &c.nodes[i];
            let nns = &node.netns.as_ref().context("node namespace")?.name;
            let port = format!("n{i}");
            sh(
                "ip",
                &[
                    "-n", &u, "link", "add", &port, "type", "veth", "peer", "name", "uplink",
                    "netns", nns,
                ],
            )?;
            c.underlay.sh(
                "ip",
                &["link", "set", &port, "mtu", &mtu, "master", "br0", "up"],
            )?;
            let ns = Some(nns.as_str());
            host_sh(
                ns,
                "ip",
                &[
                    "link",
                    "set",
                    "uplink",
                    "address",
                    &node_vtep_mac(i),
                    "mtu",
                    &mtu,
                    "up",
                ],
            )?;
        }
        c.bare_metal_up()?;
        Ok(c)
    }

    fn bare_metal_up(&self) -> anyhow::Result<()> {
        let u = &self.underlay.name;
        let b = &self.bare_metal;
        sh(
            "ip",
            &[
                "-n", u, "link", "add", "bm", "type", "veth", "peer", "name", "eth0", "netns",
                &b.name,
            ],
        )?;
        let mtu = self.underlay_mtu.to_string();
        self.underlay.sh(
            "ip",
            &["link", "set", "bm", "mtu", &mtu, "master", "br0", "up"],
        )?;
        b.sh(
            "ip",
            &[
                "link",
                "set",
                "eth0",
                "address",
                BARE_METAL_UNDERLAY_MAC,
                "mtu",
                &mtu,
                "up",
            ],
        )?;
        b.sh(
            "ip",
            &[
                "addr",
                "add",
                &format!("{BARE_METAL_UNDERLAY_IP}/24"),
                "dev",
                "eth0",
            ],
        )?;
        for i in 0..self.nodes.len() {
            b.sh(
                "ip",
                &[
                    "neigh",
                    "add",
                    &node_vtep_ip(i),
                    "lladdr",
                    &node_vtep_mac(i),
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ],
            )?;
        }
        let vni = CLUSTER_VNI.to_string();
        let mut vxlan = vec![
            "link",
            "add",
            "vxlan0",
            "type",
            "vxlan",
            "id",
            &vni,
            "local",
            BARE_METAL_UNDERLAY_IP,
            "dstport",
            "4789",
            "dev",
            "eth0",
            "nolearning",
        ];
        if self.bare_metal_gbp {
            vxlan.push("gbp");
        }
        b.sh("ip", &vxlan)?;
        let inner_mtu = (self.underlay_mtu - 50).to_string();
        b.sh(
            "ip",
            &[
                "link",
                "set",
                "vxlan0",
                "address",
                BARE_METAL_MAC,
                "mtu",
                &inner_mtu,
                "up",
            ],
        )?;
        b.sh(
            "ip",
            &[
                "addr",
                "add",
                &format!("{BARE_METAL_IP}/24"),
                "dev",
                "vxlan0",
            ],
        )?;
        // Complete checksums on the wire: the switch reads frames as bytes (AFXDP.md).
        for dev in ["eth0", "vxlan0"] {
            b.sh(
                "ethtool",
                &["-K", dev, "tx", "off", "tso", "off", "gso", "off"],
            )?;
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for p in &node.pods {
                b.sh(
                    "ip",
                    &[
                        "neigh",
                        "add",
                        &p.ip,
                        "lladdr",
                        &p.mac,
                        "dev",
                        "vxlan0",
                        "nud",
                        "permanent",
                    ],
                )?;
                b.sh(
                    "bridge",
                    &[
                        "fdb",
                        "append",
                        &p.mac,
                        "dev",
                        "vxlan0",
                        "dst",
                        &node_vtep_ip(i),
                        "self",
                        "permanent",
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// The remote VTEPs node `i` knows: every other node, and the bare-metal server.
    pub fn vteps_for(&self, i: usize) -> Vec<RemoteVtep> {
        let mut v: Vec<RemoteVtep> = (0..self.nodes.len())
            .filter(|&j| j != i)
            .map(|j| RemoteVtep {
                id: u32::try_from(j + 1).unwrap_or(u32::MAX),
                ip: node_vtep_ip(j),
                next_hop_mac: node_vtep_mac(j),
                gbp: false,
            })
            .collect();
        v.push(RemoteVtep {
            id: BARE_METAL_VTEP,
            ip: BARE_METAL_UNDERLAY_IP.into(),
            next_hop_mac: BARE_METAL_UNDERLAY_MAC.into(),
            gbp: self.bare_metal_gbp,
        });
        v
    }

    /// The remote endpoints node `i` knows: the other nodes' pods and the bare-metal server.
    pub fn remotes_for(&self, i: usize) -> Vec<RemoteEndpoint> {
        let mut r = Vec::new();
        for (j, node) in self.nodes.iter().enumerate() {
            if j == i {
                continue;
            }
            for p in &node.pods {
                r.push(RemoteEndpoint {
                    vtep: u32::try_from(j + 1).unwrap_or(u32::MAX),
                    namespace: p.namespace.clone(),
                    name: p.short.clone(),
                    kind: "pod".into(),
                    mac: p.mac.clone(),
                    ip: p.ip.clone(),
                    labels: p.labels.clone(),
                    named_ports: p.named_ports.clone(),
                });
            }
        }
        r.push(RemoteEndpoint {
            vtep: BARE_METAL_VTEP,
            namespace: self.bare_metal_namespace.clone(),
            name: "server".into(),
            kind: "bare-metal".into(),
            mac: BARE_METAL_MAC.into(),
            ip: BARE_METAL_IP.into(),
            labels: self.bare_metal_labels.clone(),
            named_ports: Vec::new(),
        });
        r
    }

    /// The `[uplink]` (and, when `remotes`, `[[vteps]]` and `[[remote_endpoints]]`) TOML of
    /// node `i`.
    pub fn overlay_toml(&self, i: usize, remotes: bool) -> String {
        let mut t = format!(
            "\n[uplink]\ninterface = \"uplink\"\nport = {UPLINK_PORT}\nvtep_ip = \"{}\"\n\
             vtep_mac = \"{}\"\nunderlay_mtu = {}\nvnis = [{CLUSTER_VNI}]\n\n",
            node_vtep_ip(i),
            node_vtep_mac(i),
            self.underlay_mtu
        );
        if !remotes {
            return t;
        }
        for v in self.vteps_for(i) {
            let _ = write!(
                t,
                "[[vteps]]\nid = {}\nip = \"{}\"\nnext_hop_mac = \"{}\"\nvni = {CLUSTER_VNI}\n\
                 gbp = {}\n\n",
                v.id, v.ip, v.next_hop_mac, v.gbp
            );
        }
        for r in self.remotes_for(i) {
            let l: Vec<String> = r
                .labels
                .iter()
                .map(|(k, v)| format!("{k} = \"{v}\""))
                .collect();
            let _ = write!(
                t,
                "[[remote_endpoints]]\nvtep = {}\nmac = \"{}\"\nips = [\"{}\"]\nnamespace = \"{}\"\n\
                 name = \"{}\"\nkind = \"{}\"\nlabels = {{ {} }}\n\n",
                r.vtep,
                r.mac,
                r.ip,
                r.namespace,
                r.name,
                r.kind,
                l.join(", ")
            );
            if !r.named_ports.is_empty() {
                let np: Vec<String> = r
                    .named_ports
                    .iter()
                    .map(|(n, port)| format!("{{ name = \"{n}\", port = {port} }}"))
                    .collect();
                let _ = writeln!(t, "named_ports = [{}]\n", np.join(", "));
            }
        }
        t
    }

    /// Sets the same namespaces (with labels) and policy on every node.
    pub fn set_policy(&mut self, namespaces: &[(&str, &[(&str, &str)])], yaml: Option<&str>) {
        for n in &mut self.nodes {
            n.namespaces = namespaces
                .iter()
                .map(|(ns, l)| {
                    (
                        (*ns).to_owned(),
                        l.iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                            .collect(),
                    )
                })
                .collect();
            n.policy_yaml = yaml.map(str::to_owned);
        }
    }

    /// Starts every node's daemon. Nodes with `control` set get only the `[uplink]` from the
    /// file, so that the test installs their VTEPs and remote endpoints over the socket (a file's
    /// would be seeded too); the others get every VTEP and remote endpoint statically.
    pub fn start(&mut self) -> anyhow::Result<()> {
        for i in 0..self.nodes.len() {
            let remotes = !self.nodes[i].control;
            let t = self.overlay_toml(i, remotes);
            self.nodes[i].extra_toml.push_str(&t);
            self.nodes[i].start()?;
        }
        Ok(())
    }

    /// The pod named `short`, on whichever node it lives.
    pub fn pod(&self, short: &str) -> &Pod {
        self.nodes
            .iter()
            .flat_map(|n| n.pods.iter())
            .find(|p| p.short == short)
            .expect("pod exists")
    }

    /// Starts a server script (`TCP_SERVER`/`UDP_SERVER`) on the bare-metal server.
    pub fn bare_metal_server(&self, script: &str, port: u16) -> anyhow::Result<Child> {
        let mut child = self
            .bare_metal
            .spawn("python3", &["-u", "-c", script, &port.to_string()])?;
        let out = child.stdout.take().context("server stdout")?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)?;
        ensure!(
            line.starts_with("listening"),
            "server did not start: {line:?}"
        );
        Ok(child)
    }
}
