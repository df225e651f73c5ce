//! Control mode (`[control] socket = …`): the control crate's [`Controller`] becomes the source
//! of the forwarding state, served on a Unix socket by its [`Server`] on a dedicated thread
//! (`psw-control`), and the daemon follows it.
//!
//! At start the static config is fed to the controller as ordinary requests (namespaces, ports as
//! endpoints, VTEPs, remote endpoints, policy files), so a config file and the socket describe
//! the same node; with a `state_dir` the controller also reloads what clients installed before a
//! restart (a request that conflicts with persisted state is logged and skipped). Workers read the
//! state the controller publishes: the control thread notices a new generation in the
//! controller's [`StateCell`] (checked every 50 ms), lists the endpoints over the socket to learn
//! their interfaces, opens and closes AF_XDP ports to match, then publishes the state to the
//! workers, which report each generation they pick up to the controller's [`Realised`] (so `wait`
//! answers once every worker runs it).
//! Thread-safety: the controller lives on the server thread; the daemon reaches it only through
//! the socket and the shared `StateCell`/`Realised`/[`Dataplane`].

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use podswitch_conntrack::{Instant, Table};
use podswitch_control::proto::{
    EndpointInfo, EndpointSpec, Kind, Mac, NamedPort, RemoteSpec, VtepSpec,
};
use podswitch_control::{
    Client, Controller, ControllerConfig, Dataplane, Realised, Reply, Request, Server,
    ServerConfig, ShutdownHandle, StateCell,
};
use podswitch_datapath::{State, Stats};

use crate::config::{Config, parse_mac};
use crate::runner::Counters;

/// What the controller reads from the running datapath.
#[derive(Debug)]
pub struct DaemonDataplane {
    counters: OnceLock<Counters>,
    conntrack: Arc<Table>,
}

impl DaemonDataplane {
    /// A dataplane whose counters appear once the workers run ([`DaemonDataplane::attach`]).
    pub fn new(conntrack: Arc<Table>) -> Arc<Self> {
        Arc::new(DaemonDataplane {
            counters: OnceLock::new(),
            conntrack,
        })
    }

    /// Connects the workers' counters.
    pub fn attach(&self, counters: Counters) {
        let _ = self.counters.set(counters);
    }
}

impl Dataplane for DaemonDataplane {
    fn stats(&self) -> Option<Stats> {
        self.counters.get().map(|c| c.merged().stats)
    }

    fn conntrack(&self) -> Option<&Table> {
        Some(&self.conntrack)
    }

    fn now(&self) -> Option<Instant> {
        self.counters.get().map(Counters::now)
    }
}

/// The controller before its server starts: seeded, and asked for the first state and ports.
#[derive(Debug)]
pub struct Seeded {
    controller: Controller,
    pub realised: Arc<Realised>,
}

/// The running control server and what the daemon tracks of it.
#[derive(Debug)]
pub struct ControlPlane {
    cell: Arc<StateCell>,
    socket: PathBuf,
    shutdown: ShutdownHandle,
    thread: Option<JoinHandle<()>>,
    seen: u64,
}

fn mac(s: &str) -> anyhow::Result<Mac> {
    Ok(Mac(parse_mac(s)?.0))
}

/// A port's or remote endpoint's named ports as the control protocol spells them.
fn named_ports(list: &[crate::config::NamedPort]) -> Vec<NamedPort> {
    list.iter()
        .map(|n| NamedPort {
            name: Some(n.name.clone()),
            protocol: n.protocol.clone(),
            port: n.port,
        })
        .collect()
}

/// Opens the controller and feeds it the static config.
pub fn seed(
    config: &Config,
    dataplane: Arc<DaemonDataplane>,
    workers: usize,
) -> anyhow::Result<Seeded> {
    let control = config.control.as_ref().context("no [control] section")?;
    let local = config.local_vtep()?;
    let mut cc = ControllerConfig::new(config.router()?, local);
    cc.state_dir.clone_from(&control.state_dir);
    cc.default_mtu = Some(config.node.mtu);
    let realised = Realised::new(workers);
    let mut controller = Controller::open(cc, dataplane, Arc::clone(&realised))
        .map_err(|e| anyhow::anyhow!("opening the controller: {e}"))?;
    let mut requests = Vec::new();
    // Namespaces listed, then those only named by a port (no labels), as the static mode has it.
    let mut names: Vec<(&str, podswitch_control::proto::Labels)> = config
        .namespaces
        .iter()
        .map(|n| (n.name.as_str(), n.labels.clone()))
        .collect();
    for ns in config
        .ports
        .iter()
        .map(|p| &p.namespace)
        .chain(config.remote_endpoints.iter().map(|r| &r.namespace))
    {
        if !names.iter().any(|(n, _)| n == ns) {
            names.push((ns, podswitch_control::proto::Labels::new()));
        }
    }
    for (name, labels) in names {
        requests.push(Request::NamespaceCreate {
            name: name.to_owned(),
            labels,
            subnet_v4: None,
            subnet_v6: None,
        });
    }
    for p in &config.ports {
        requests.push(Request::EndpointAdd(EndpointSpec {
            namespace: p.namespace.clone(),
            name: p.pod.clone(),
            kind: Kind::Pod,
            interface: p.interface.clone(),
            port: Some(p.port),
            mac: mac(&p.mac)?,
            ips: p.ips.clone(),
            allocate: Vec::new(),
            labels: p.labels.clone(),
            ports: named_ports(&p.named_ports),
            mtu: p.mtu,
        }));
    }
    // Tunnels and the endpoints behind them, as the static mode installs them (a VTEP before
    // the remotes that name it).
    for v in &config.vteps {
        requests.push(Request::VtepAdd(VtepSpec {
            id: v.id,
            ip: v.ip,
            next_hop_mac: mac(&v.next_hop_mac)?,
            vni: v.vni,
            gbp: v.gbp,
        }));
    }
    for r in &config.remote_endpoints {
        requests.push(Request::RemoteAdd(RemoteSpec {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            kind: match r.kind.as_str() {
                "pod" => Kind::Pod,
                "vm" => Kind::Vm,
                "bare-metal" => Kind::BareMetal,
                // `Config` validated the kind already.
                other => anyhow::bail!(
                    "remote endpoint {}/{}: kind {other:?}: pod, vm or bare-metal",
                    r.namespace,
                    r.name
                ),
            },
            vtep: r.vtep,
            mac: mac(&r.mac)?,
            ips: r.ips.clone(),
            labels: r.labels.clone(),
            ports: named_ports(&r.named_ports),
        }));
    }
    for f in &config.policies {
        let path = config.base_dir.join(f);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading policy file {}", path.display()))?;
        requests.push(Request::PolicyApply { text });
    }
    for r in requests {
        let what = format!("{r:?}");
        if let Err(e) = controller.handle(r) {
            // With a state_dir, what a previous run installed is already there.
            tracing::warn!(error = %e, "control mode: static config item skipped: {:.120}", what);
        }
    }
    Ok(Seeded {
        controller,
        realised,
    })
}

impl Seeded {
    /// The state the workers start on.
    pub fn state(&self) -> Arc<State> {
        self.controller.state()
    }

    /// Every endpoint's `(port id, interface)`.
    pub fn ports(&self) -> Vec<(u32, String)> {
        self.controller
            .desired()
            .endpoints
            .values()
            .map(|e| (e.port, e.interface.clone()))
            .collect()
    }

    /// Binds the socket and starts serving on the `psw-control` thread.
    pub fn serve(self, socket: PathBuf) -> anyhow::Result<ControlPlane> {
        let cell = self.controller.cell();
        let seen = cell.generation();
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut server = Server::bind(ServerConfig::new(socket.clone()), self.controller)
            .with_context(|| format!("binding the control socket {}", socket.display()))?;
        let shutdown = server.shutdown_handle();
        let thread = std::thread::Builder::new()
            .name("psw-control".into())
            .spawn(move || {
                if let Err(e) = server.run() {
                    tracing::error!("control server stopped: {e}");
                }
            })?;
        tracing::info!(socket = %socket.display(), "control socket listening");
        Ok(ControlPlane {
            cell,
            socket,
            shutdown,
            thread: Some(thread),
            seen,
        })
    }
}

impl ControlPlane {
    /// A new state, if the controller published one since the last call.
    pub fn changed(&mut self) -> Option<Arc<State>> {
        let g = self.cell.generation();
        if g == self.seen {
            return None;
        }
        let st = self.cell.load();
        self.seen = st.generation();
        Some(st)
    }

    /// Every endpoint the controller holds, asked over the socket.
    pub fn endpoints(&self) -> anyhow::Result<Vec<EndpointInfo>> {
        let mut c = Client::connect(&self.socket)
            .map_err(|e| anyhow::anyhow!("connecting to the control socket: {e}"))?;
        c.set_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        match c.call(Request::EndpointList { namespace: None }) {
            Ok(Reply::Endpoints { items }) => Ok(items),
            Ok(other) => anyhow::bail!("unexpected reply to endpoint_list: {other:?}"),
            Err(e) => anyhow::bail!("endpoint_list: {e}"),
        }
    }

    /// Stops the server thread (the socket file is removed).
    pub fn stop(&mut self) {
        self.shutdown.shutdown();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the control thread panicked");
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node with an uplink, one remote VTEP and two endpoints behind it (one a bare-metal
    /// server in a namespace no local port uses), run in control mode.
    const NODE: &str = r#"
[node]
router_mac = "02:00:00:00:00:01"
gateway_v4 = "10.0.0.1"

[[ports]]
interface = "veth-a"
port = 1
mac = "02:00:00:00:0a:01"
ips = ["10.0.0.2"]
namespace = "web"
pod = "a"

[uplink]
interface = "uplink"
port = 1000
vtep_ip = "192.168.80.1"
vtep_mac = "02:50:53:aa:00:01"
underlay_mtu = 1550
vnis = [100]

[[vteps]]
id = 2
ip = "192.168.80.2"
next_hop_mac = "02:50:53:aa:00:02"
vni = 100

[[remote_endpoints]]
vtep = 2
mac = "02:50:53:00:01:1f"
ips = ["10.0.1.31"]
namespace = "web"
name = "b"
labels = { app = "b" }
named_ports = [{ name = "http", port = 8080 }]

[[remote_endpoints]]
vtep = 2
mac = "02:50:53:00:01:20"
ips = ["10.0.1.40"]
namespace = "metal"
name = "server"
kind = "bare-metal"

[control]
socket = "/nonexistent/podswitch.sock"
"#;

    fn dataplane() -> Arc<DaemonDataplane> {
        DaemonDataplane::new(Arc::new(
            Table::new(&podswitch_conntrack::Config::default()),
        ))
    }

    #[test]
    fn control_mode_seeds_vteps_and_remote_endpoints_from_the_file() {
        let c = Config::from_toml(NODE).expect("config");
        let s = seed(&c, dataplane(), 1).expect("seeded");
        let d = s.controller.desired();
        assert_eq!(d.vteps.keys().copied().collect::<Vec<_>>(), [2]);
        assert_eq!(d.remotes["web/b"].ports.len(), 1);
        assert_eq!(d.remotes["metal/server"].kind, Kind::BareMetal);
        assert!(
            d.namespaces.contains_key("metal"),
            "a remote's namespace is created"
        );
        // The published state tunnels to them and knows them as policy peers.
        let st = s.state();
        let remote: std::net::IpAddr = "10.0.1.31".parse().expect("ip");
        assert!(st.overlay().vtep(2).is_some());
        assert!(st.overlay().owns(2, remote));
        assert!(st.overlay().owns(2, "10.0.1.40".parse().expect("ip")));
        assert!(st.policy().endpoint_by_addr(remote).is_some());
    }
}
