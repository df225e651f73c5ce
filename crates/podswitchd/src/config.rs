//! The daemon's TOML configuration ([`Config`]) and its compilation into the datapath's forwarding
//! [`State`] ([`Config::build_state`]).
//!
//! A config names the node (router MAC, gateway addresses, MTU), the optional uplink and VTEPs,
//! the workers and their poll mode, the XDP attach mode and UMEM size, conntrack limits, the
//! static ports (one AF_XDP port per pod veth: interface, port id, MAC, addresses, Kubernetes
//! namespace, pod name, labels, named ports), namespace labels and NetworkPolicy files (YAML,
//! kubectl's format; paths relative to the config file). Examples with every field documented
//! live in `configs/node*.toml`.
//!
//! Invariants checked by [`Config::from_toml`]: unknown keys are refused (a typo never silently
//! means "default"), port ids and interface names are unique, MACs and addresses parse, a
//! worker index in a port is below `workers.count`. State-level rules (an address owned twice, an
//! MTU out of range) are the datapath's [`StateBuilder`]'s.
//! Pure data and pure functions: no I/O except [`Config::load`] and reading the policy files.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use podswitch_datapath::{LocalEndpoint, RouterConfig, State, StateBuilder};
use podswitch_overlay::{Endpoint as OverlayEndpoint, LocalVtep, Overlay, Vtep};
use podswitch_policy::{
    ContainerPort, Endpoint, EndpointKind, PolicyEngine, Protocol, apply, parse_objects,
};
use podswitch_wire::ethernet::Address;
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: Node,
    #[serde(default)]
    pub uplink: Option<Uplink>,
    #[serde(default)]
    pub vteps: Vec<VtepConfig>,
    #[serde(default)]
    pub remote_endpoints: Vec<RemoteConfig>,
    #[serde(default)]
    pub workers: Workers,
    #[serde(default)]
    pub xdp: Xdp,
    #[serde(default)]
    pub conntrack: Conntrack,
    #[serde(default)]
    pub stats: StatsConfig,
    #[serde(default)]
    pub control: Option<Control>,
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    /// NetworkPolicy (and Namespace/Pod) YAML files, relative to the config file's directory.
    #[serde(default)]
    pub policies: Vec<PathBuf>,
    /// The directory relative paths are resolved against (set by [`Config::load`]).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// The node's router identity.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// A name for logs.
    #[serde(default = "default_node_name")]
    pub name: String,
    /// The MAC the switch answers ARP/ND with and routes from (`02:…` locally administered).
    pub router_mac: String,
    /// The pods' IPv4 gateway.
    pub gateway_v4: Option<Ipv4Addr>,
    /// The pods' IPv6 gateway.
    pub gateway_v6: Option<Ipv6Addr>,
    /// Default MTU of pod ports (1280..=2000).
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// ICMP errors allowed in a burst, per worker.
    #[serde(default = "default_icmp_burst")]
    pub icmp_burst: u32,
    /// ICMP errors per second after the burst, per worker.
    #[serde(default = "default_icmp_rate")]
    pub icmp_per_second: u32,
}

/// The underlay uplink and this node's VTEP.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Uplink {
    /// Uplink interface (an AF_XDP port is opened on it); `None`: the overlay is configured but no
    /// frame is carried (single-node use).
    pub interface: Option<String>,
    /// Switch port id of the uplink.
    #[serde(default = "default_uplink_port")]
    pub port: u32,
    /// Local VTEP address.
    pub vtep_ip: IpAddr,
    /// Local VTEP MAC (the uplink's MAC).
    pub vtep_mac: String,
    /// Underlay IP MTU.
    #[serde(default = "default_underlay_mtu")]
    pub underlay_mtu: u16,
    /// VNIs served.
    #[serde(default = "default_vnis")]
    pub vnis: Vec<u32>,
    /// Decapsulated frames arrive on port `tunnel_port_base + vtep id`.
    #[serde(default = "default_tunnel_base")]
    pub tunnel_port_base: u32,
}

/// A remote VTEP (another node, or a bare-metal server's kernel vxlan device).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VtepConfig {
    pub id: u32,
    pub ip: IpAddr,
    /// MAC of the underlay next hop towards it.
    pub next_hop_mac: String,
    pub vni: u32,
    #[serde(default)]
    pub gbp: bool,
}

/// An endpoint behind a remote VTEP.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    pub vtep: u32,
    pub mac: String,
    pub ips: Vec<IpAddr>,
    pub namespace: String,
    pub name: String,
    /// `pod`, `vm` or `bare-metal`.
    #[serde(default = "default_kind")]
    pub kind: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its named container ports: a policy naming a port (`port: http`) resolves it against the
    /// destination's ports on the sending node too, so a remote pod needs them here.
    #[serde(default)]
    pub named_ports: Vec<NamedPort>,
}

/// How workers wait for frames.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PollMode {
    /// Spin on the rings forever (lowest latency, a full core per worker).
    Busy,
    /// Spin while traffic flows, then sleep in `epoll` on the ports' fds when idle.
    #[default]
    Adaptive,
}

/// Polling workers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workers {
    /// Number of polling threads (1 on a 2-core node).
    #[serde(default = "one")]
    pub count: usize,
    #[serde(default)]
    pub poll: PollMode,
    /// CPU to pin worker `i` to (`cpus[i]`); empty: no pinning.
    #[serde(default)]
    pub cpus: Vec<usize>,
    /// Frames received per port per batch (1..=64).
    #[serde(default = "default_burst")]
    pub burst: usize,
    /// Flow-cache entries per worker.
    #[serde(default = "default_cache")]
    pub cache_capacity: usize,
    /// Adaptive mode: idle time spinning before sleeping, in microseconds.
    #[serde(default = "default_spin_us")]
    pub spin_us: u64,
    /// Housekeeping period (conntrack sweep, revalidation, stats), in milliseconds.
    #[serde(default = "default_housekeeping_ms")]
    pub housekeeping_ms: u64,
    /// Conntrack entries swept per housekeeping round (split across workers).
    #[serde(default = "default_sweep")]
    pub sweep_budget: usize,
    /// Conntrack entries revalidated per housekeeping round per worker.
    #[serde(default = "default_sweep")]
    pub revalidate_budget: usize,
    /// Frame slots per worker pair for cross-worker transmission.
    #[serde(default = "default_ring_slots")]
    pub ring_slots: usize,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            count: 1,
            poll: PollMode::Adaptive,
            cpus: Vec::new(),
            burst: default_burst(),
            cache_capacity: default_cache(),
            spin_us: default_spin_us(),
            housekeeping_ms: default_housekeeping_ms(),
            sweep_budget: default_sweep(),
            revalidate_budget: default_sweep(),
            ring_slots: default_ring_slots(),
        }
    }
}

/// XDP attach mode as configured.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeConfig {
    /// Native if the driver supports it, else generic.
    #[default]
    Auto,
    /// Generic (SKB) mode.
    Skb,
    /// Native (driver) mode.
    Drv,
}

/// AF_XDP settings of every port.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Xdp {
    #[serde(default)]
    pub mode: XdpModeConfig,
    /// UMEM frames per port (2048 bytes each; default 2048 = 4 MiB). Size deliberately: without
    /// CAP_IPC_LOCK the whole process has 8 MiB of locked memory, i.e. two ports at the default.
    #[serde(default = "default_frames")]
    pub frame_count: u32,
    /// Size of each of the four rings (power of two, at most `frame_count`).
    #[serde(default = "default_ring")]
    pub ring_size: u32,
}

impl Default for Xdp {
    fn default() -> Self {
        Xdp {
            mode: XdpModeConfig::Auto,
            frame_count: default_frames(),
            ring_size: default_ring(),
        }
    }
}

/// Conntrack limits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Conntrack {
    #[serde(default = "default_ct_entries")]
    pub max_entries: u32,
    #[serde(default = "default_ct_shards")]
    pub shards: u32,
    /// Pick up TCP connections mid-stream (e.g. after a restart).
    #[serde(default)]
    pub tcp_loose: bool,
}

impl Default for Conntrack {
    fn default() -> Self {
        Conntrack {
            max_entries: default_ct_entries(),
            shards: default_ct_shards(),
            tcp_loose: false,
        }
    }
}

/// Counter reporting.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StatsConfig {
    /// Period of the one-line stats log, seconds (0: off).
    #[serde(default = "default_log_secs")]
    pub log_interval_secs: u64,
    /// JSON counters file rewritten every `file_interval_ms` (also `--stats-file`).
    pub file: Option<PathBuf>,
    #[serde(default = "default_file_ms")]
    pub file_interval_ms: u64,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            log_interval_secs: default_log_secs(),
            file: None,
            file_interval_ms: default_file_ms(),
        }
    }
}

/// The control socket.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// The Unix socket clients (podswitchctl, the CNI plugin) talk to.
    pub socket: PathBuf,
    /// Where the controller persists the desired state (survives restarts); none: memory only.
    pub state_dir: Option<PathBuf>,
}

/// A Kubernetes namespace and its labels.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A named container port.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NamedPort {
    pub name: String,
    #[serde(default = "default_protocol")]
    pub protocol: String,
    pub port: u16,
}

/// A static pod port.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// The switch-side interface (the host end of the pod's veth).
    pub interface: String,
    /// Switch port id (unique; not the uplink's or a tunnel's).
    pub port: u32,
    /// The pod's MAC (its frames must carry it).
    pub mac: String,
    /// The pod's addresses.
    pub ips: Vec<IpAddr>,
    pub namespace: String,
    pub pod: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub named_ports: Vec<NamedPort>,
    /// Port MTU (default: `node.mtu`).
    pub mtu: Option<u16>,
    /// Worker owning the port (default: round robin).
    pub worker: Option<usize>,
}

fn default_node_name() -> String {
    "node".into()
}
fn default_mtu() -> u16 {
    1500
}
fn default_icmp_burst() -> u32 {
    10
}
fn default_icmp_rate() -> u32 {
    10
}
fn default_uplink_port() -> u32 {
    1000
}
fn default_underlay_mtu() -> u16 {
    1550
}
fn default_vnis() -> Vec<u32> {
    vec![100]
}
fn default_tunnel_base() -> u32 {
    2000
}
fn default_kind() -> String {
    "pod".into()
}
fn one() -> usize {
    1
}
fn default_burst() -> usize {
    64
}
fn default_cache() -> usize {
    65_536
}
fn default_spin_us() -> u64 {
    200
}
fn default_housekeeping_ms() -> u64 {
    100
}
fn default_sweep() -> usize {
    1024
}
fn default_ring_slots() -> usize {
    256
}
// 4 MiB of UMEM per port and 1024-entry rings: with 512-entry rings a worker preempted for a
// moment on a busy 2-core node let the fill ring run dry, and TCP through the switch saw 15–48 k
// retransmits per 4 s (about 6 k with these sizes; measured against OVS in the same window).
fn default_frames() -> u32 {
    2048
}
fn default_ring() -> u32 {
    1024
}
fn default_ct_entries() -> u32 {
    65_536
}
fn default_ct_shards() -> u32 {
    64
}
fn default_log_secs() -> u64 {
    30
}
fn default_file_ms() -> u64 {
    500
}
fn default_protocol() -> String {
    "TCP".into()
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> anyhow::Result<Address> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts
            .next()
            .with_context(|| format!("MAC {s:?}: expected six hex octets"))?;
        if p.len() != 2 {
            bail!("MAC {s:?}: octet {p:?} is not two hex digits");
        }
        *b = u8::from_str_radix(p, 16).with_context(|| format!("MAC {s:?}: bad octet {p:?}"))?;
    }
    if parts.next().is_some() {
        bail!("MAC {s:?}: more than six octets");
    }
    Ok(Address(out))
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let mut c =
            Config::from_toml(&text).with_context(|| format!("config {}", path.display()))?;
        c.base_dir = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Ok(c)
    }

    /// Parses and validates config text (relative paths resolve against the working directory).
    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        let mut c: Config = toml::from_str(text)?;
        c.base_dir = PathBuf::from(".");
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> anyhow::Result<()> {
        parse_mac(&self.node.router_mac).context("node.router_mac")?;
        if self.node.gateway_v4.is_none() && self.node.gateway_v6.is_none() {
            bail!("node: set gateway_v4 and/or gateway_v6");
        }
        let w = &self.workers;
        if w.count == 0 || w.count > 64 {
            bail!("workers.count must be 1..=64");
        }
        if !(1..=podswitch_datapath::BATCH_SIZE).contains(&w.burst) {
            bail!(
                "workers.burst must be 1..={}",
                podswitch_datapath::BATCH_SIZE
            );
        }
        if !w.cpus.is_empty() && w.cpus.len() < w.count {
            bail!("workers.cpus: one CPU per worker ({} needed)", w.count);
        }
        if w.ring_slots == 0 {
            bail!("workers.ring_slots must be positive");
        }
        let x = &self.xdp;
        if !x.ring_size.is_power_of_two() || !x.frame_count.is_power_of_two() {
            bail!("xdp.ring_size and xdp.frame_count must be powers of two");
        }
        if x.ring_size > x.frame_count {
            bail!("xdp.ring_size must not exceed xdp.frame_count");
        }
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        if let Some(u) = &self.uplink {
            parse_mac(&u.vtep_mac).context("uplink.vtep_mac")?;
            ids.insert(u.port);
            if let Some(i) = &u.interface {
                names.insert(i.clone());
            }
        }
        for v in &self.vteps {
            parse_mac(&v.next_hop_mac).with_context(|| format!("vtep {}", v.id))?;
            if self.uplink.is_none() {
                bail!("vtep {}: a VTEP needs the [uplink] section", v.id);
            }
        }
        for r in &self.remote_endpoints {
            let what = || format!("remote {}/{}", r.namespace, r.name);
            parse_mac(&r.mac).with_context(what)?;
            kind(&r.kind)?;
            for np in &r.named_ports {
                Protocol::parse(&np.protocol).with_context(|| {
                    format!("{}: protocol {:?} (TCP, UDP or SCTP)", what(), np.protocol)
                })?;
            }
        }
        for p in &self.ports {
            let what = || format!("port {} ({})", p.port, p.interface);
            parse_mac(&p.mac).with_context(what)?;
            if !ids.insert(p.port) {
                bail!("port id {} used twice", p.port);
            }
            if !names.insert(p.interface.clone()) {
                bail!("interface {} used twice", p.interface);
            }
            if p.interface.is_empty() || p.interface.len() > 15 {
                bail!("{}: interface names are 1..=15 bytes", what());
            }
            if p.ips.is_empty() {
                bail!("{}: at least one address", what());
            }
            if let Some(wi) = p.worker
                && wi >= w.count
            {
                bail!("{}: worker {wi} but only {} workers", what(), w.count);
            }
            for np in &p.named_ports {
                Protocol::parse(&np.protocol).with_context(|| {
                    format!("{}: protocol {:?} (TCP, UDP or SCTP)", what(), np.protocol)
                })?;
            }
        }
        Ok(())
    }

    /// The router configuration.
    pub fn router(&self) -> anyhow::Result<RouterConfig> {
        Ok(RouterConfig {
            mac: parse_mac(&self.node.router_mac)?,
            gateway_v4: self.node.gateway_v4,
            gateway_v6: self.node.gateway_v6,
            uplink_port: self
                .uplink
                .as_ref()
                .map_or(default_uplink_port(), |u| u.port),
            tunnel_port_base: self
                .uplink
                .as_ref()
                .map_or(default_tunnel_base(), |u| u.tunnel_port_base),
            icmp_burst: self.node.icmp_burst,
            icmp_per_second: self.node.icmp_per_second,
        })
    }

    /// The conntrack table configuration.
    pub fn conntrack_config(&self) -> podswitch_conntrack::Config {
        podswitch_conntrack::Config {
            max_entries: self.conntrack.max_entries,
            shards: self.conntrack.shards,
            tcp_loose: self.conntrack.tcp_loose,
            // A per-process seed keeps the shard hash unpredictable from outside.
            hash_seed: u64::from(std::process::id()).rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15,
            ..podswitch_conntrack::Config::default()
        }
    }

    /// This node's VTEP.
    pub fn local_vtep(&self) -> anyhow::Result<LocalVtep> {
        // Without an uplink the overlay is empty but still needs a local VTEP; a documentation
        // address (RFC 5737) that no frame will ever carry.
        Ok(match &self.uplink {
            Some(u) => LocalVtep::new(u.vtep_ip, parse_mac(&u.vtep_mac)?, u.underlay_mtu, &u.vnis),
            None => LocalVtep::new(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                parse_mac(&self.node.router_mac)?,
                default_underlay_mtu(),
                &default_vnis(),
            ),
        })
    }

    fn overlay(&self) -> anyhow::Result<Overlay> {
        let mut o = Overlay::new(self.local_vtep()?)?;
        for v in &self.vteps {
            o.add_vtep(Vtep {
                id: v.id,
                ip: v.ip,
                next_hop_mac: parse_mac(&v.next_hop_mac)?,
                vni: v.vni,
                gbp: v.gbp,
            })
            .with_context(|| format!("vtep {}", v.id))?;
        }
        for r in &self.remote_endpoints {
            for a in &r.ips {
                o.insert_endpoint(
                    *a,
                    OverlayEndpoint {
                        vtep: r.vtep,
                        mac: parse_mac(&r.mac)?,
                    },
                )
                .with_context(|| format!("remote {}/{}", r.namespace, r.name))?;
            }
        }
        Ok(o)
    }

    /// The policy engine with this config's namespaces, endpoints and policy files.
    pub fn policy_engine(&self) -> anyhow::Result<PolicyEngine> {
        let mut engine = PolicyEngine::new();
        for ns in &self.namespaces {
            engine.upsert_namespace(&ns.name, ns.labels.clone());
        }
        for p in &self.ports {
            let ports = container_ports(&p.named_ports);
            engine
                .upsert_endpoint(&Endpoint {
                    namespace: p.namespace.clone(),
                    name: p.pod.clone(),
                    kind: EndpointKind::Pod,
                    labels: p.labels.clone(),
                    addrs: p.ips.clone(),
                    ports,
                })
                .with_context(|| format!("pod {}/{}", p.namespace, p.pod))?;
        }
        for r in &self.remote_endpoints {
            engine
                .upsert_endpoint(&Endpoint {
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                    kind: kind(&r.kind)?,
                    labels: r.labels.clone(),
                    addrs: r.ips.clone(),
                    ports: container_ports(&r.named_ports),
                })
                .with_context(|| format!("remote {}/{}", r.namespace, r.name))?;
        }
        for f in &self.policies {
            let path = self.base_dir.join(f);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading policy file {}", path.display()))?;
            let objects =
                parse_objects(&text).with_context(|| format!("policy file {}", path.display()))?;
            let applied = apply(&mut engine, &objects)
                .with_context(|| format!("policy file {}", path.display()))?;
            tracing::info!(
                file = %path.display(),
                policies = applied.policies,
                namespaces = applied.namespaces,
                pods = applied.pods,
                skipped = applied.skipped,
                "policy file loaded"
            );
        }
        Ok(engine)
    }

    /// Compiles the whole config into a forwarding state of `generation`.
    pub fn build_state(&self, generation: u64) -> anyhow::Result<State> {
        let mut engine = self.policy_engine()?;
        let overlay = Arc::new(self.overlay()?);
        let mut b = StateBuilder::new(generation, self.router()?, engine.commit(), overlay);
        for p in &self.ports {
            b.local(LocalEndpoint {
                port: p.port,
                mac: parse_mac(&p.mac)?,
                addrs: p.ips.clone(),
                mtu: p.mtu.unwrap_or(self.node.mtu),
            });
        }
        Ok(b.build()?)
    }

    /// The uplink's AF_XDP port, if any: `(port id, interface, worker 0)`.
    pub fn uplink_plan(&self) -> Vec<(u32, String, usize)> {
        match &self.uplink {
            Some(Uplink {
                interface: Some(i),
                port,
                ..
            }) => vec![(*port, i.clone(), 0)],
            _ => Vec::new(),
        }
    }

    /// Every AF_XDP port to open: `(port id, interface, worker)`, the uplink included.
    pub fn port_plan(&self) -> Vec<(u32, String, usize)> {
        let mut out = self.uplink_plan();
        // The uplink (if any) takes worker 0's first slot; pods continue the round robin.
        let offset = out.len();
        for (n, p) in self.ports.iter().enumerate() {
            let w = p.worker.unwrap_or((n + offset) % self.workers.count);
            out.push((p.port, p.interface.clone(), w));
        }
        out
    }
}

/// The policy engine's view of named ports (protocols were checked by `validate`).
fn container_ports(named: &[NamedPort]) -> Vec<ContainerPort> {
    named
        .iter()
        .map(|np| ContainerPort {
            name: Some(np.name.clone()),
            protocol: Protocol::parse(&np.protocol).unwrap_or(Protocol::Tcp),
            port: np.port,
        })
        .collect()
}

fn kind(s: &str) -> anyhow::Result<EndpointKind> {
    Ok(match s {
        "pod" => EndpointKind::Pod,
        "vm" => EndpointKind::Vm,
        "bare-metal" => EndpointKind::BareMetal,
        other => bail!("endpoint kind {other:?}: pod, vm or bare-metal"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
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
labels = { app = "web" }
named_ports = [{ name = "http", port = 80 }]

[[ports]]
interface = "veth-b"
port = 2
mac = "02:00:00:00:0a:02"
ips = ["10.0.0.3"]
namespace = "db"
pod = "b"
"#;

    #[test]
    fn minimal_config_builds_a_state() {
        let c = Config::from_toml(MINIMAL).expect("valid");
        assert_eq!(c.workers.count, 1);
        assert_eq!(c.workers.poll, PollMode::Adaptive);
        assert_eq!(c.ports[0].named_ports[0].protocol, "TCP");
        let st = c.build_state(7).expect("state");
        assert_eq!(st.generation(), 7);
        assert_eq!(st.router().mac, Address([2, 0, 0, 0, 0, 1]));
        let plan = c.port_plan();
        assert_eq!(
            plan,
            vec![(1, "veth-a".to_owned(), 0), (2, "veth-b".to_owned(), 0)]
        );
    }

    #[test]
    fn typos_and_duplicates_are_refused() {
        let typo = MINIMAL.replace("gateway_v4", "gatewy_v4");
        assert!(Config::from_toml(&typo).is_err());
        let dup = MINIMAL.replace("port = 2\n", "port = 1\n");
        let e = Config::from_toml(&dup).unwrap_err();
        assert!(format!("{e:#}").contains("used twice"), "{e:#}");
        let bad_mac = MINIMAL.replace("02:00:00:00:0a:02", "02:00:00:00:0a");
        assert!(Config::from_toml(&bad_mac).is_err());
        let bad_worker = MINIMAL.replace("pod = \"b\"", "pod = \"b\"\nworker = 3");
        assert!(Config::from_toml(&bad_worker).is_err());
    }

    #[test]
    fn duplicate_address_is_a_state_error() {
        let c = Config::from_toml(&MINIMAL.replace("10.0.0.3", "10.0.0.2")).expect("parses");
        assert!(c.build_state(1).is_err());
    }

    #[test]
    fn remote_named_ports_resolve_on_the_sending_node() {
        let text = format!(
            "{MINIMAL}\n[uplink]\nvtep_ip = \"192.168.1.1\"\nvtep_mac = \"02:00:00:00:00:aa\"\n\n\
             [[vteps]]\nid = 1\nip = \"192.168.1.2\"\nnext_hop_mac = \"02:00:00:00:00:bb\"\nvni = 100\n\n\
             [[remote_endpoints]]\nvtep = 1\nmac = \"02:00:00:00:0b:01\"\nips = [\"10.0.0.9\"]\n\
             namespace = \"web\"\nname = \"far\"\nlabels = {{ app = \"far\" }}\n\
             named_ports = [{{ name = \"api\", port = 9000 }}]\n"
        );
        let c = Config::from_toml(&text).expect("valid");
        let mut engine = c.policy_engine().expect("engine");
        let objects = parse_objects(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: { name: far-api, namespace: web }\n\
             spec: { podSelector: { matchLabels: { app: far } }, policyTypes: [Ingress],\n\
             ingress: [ { ports: [ { port: api } ] } ] }\n",
        )
        .expect("policy");
        apply(&mut engine, &objects).expect("applies");
        let p = engine.commit();
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        // Local pod a -> remote far: the remote's ingress rule names its port `api` = 9000.
        assert!(
            p.verdict(ip("10.0.0.2"), ip("10.0.0.9"), Protocol::Tcp, 9000)
                .is_allowed()
        );
        assert!(
            !p.verdict(ip("10.0.0.2"), ip("10.0.0.9"), Protocol::Tcp, 9001)
                .is_allowed()
        );
        let bad = text.replace("port = 9000 }", "port = 9000, protocol = \"ICMP\" }");
        assert!(Config::from_toml(&bad).is_err());
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("0a:1B:ff:00:00:09").expect("ok"),
            Address([0x0a, 0x1b, 0xff, 0, 0, 9])
        );
        for bad in [
            "",
            "0a:1b",
            "0a:1b:ff:00:00:09:01",
            "0a:1b:ff:00:00:9",
            "zz:00:00:00:00:00",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_robin_and_explicit_workers() {
        let text = MINIMAL.replace("[node]", "[workers]\ncount = 2\n\n[node]");
        let c = Config::from_toml(&text).expect("valid");
        let plan = c.port_plan();
        assert_eq!(plan[0].2, 0);
        assert_eq!(plan[1].2, 1);
    }

    #[test]
    fn example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("configs dir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("node")
                && path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
            {
                let c = Config::load(&path).expect("example config loads");
                c.build_state(1).expect("example config compiles");
                seen += 1;
            }
        }
        assert!(seen >= 1, "no configs/node*.toml found");
        // The cluster's nodes (scripts/cluster): each knows the two others and the server.
        for i in 0..3 {
            let c = Config::load(&dir.join(format!("cluster-node{i}.toml")))
                .expect("cluster config loads");
            let st = c.build_state(1).expect("cluster config compiles");
            assert_eq!(c.vteps.len(), 3);
            assert_eq!(c.remote_endpoints.len(), 3);
            assert_eq!(st.overlay().pod_mtu(), 1500, "underlay 1550 - 50");
        }
        let demo = Config::load(&dir.join("demo/node.toml")).expect("demo config loads");
        let st = demo.build_state(1).expect("demo config compiles");
        // The demo's policy is loaded: db is isolated, web -> db:8080 allowed, cache -> db denied.
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let p = st.policy();
        assert!(
            p.verdict(ip("10.20.0.2"), ip("10.20.0.3"), Protocol::Tcp, 8080)
                .is_allowed()
        );
        assert!(
            !p.verdict(ip("10.20.0.4"), ip("10.20.0.3"), Protocol::Tcp, 8080)
                .is_allowed()
        );
        assert!(
            !p.verdict(ip("10.20.0.2"), ip("10.20.0.3"), Protocol::Tcp, 22)
                .is_allowed()
        );
        assert!(
            p.verdict(ip("10.20.0.2"), ip("10.20.0.4"), Protocol::Other(1), 0)
                .is_allowed()
        );
    }
}
