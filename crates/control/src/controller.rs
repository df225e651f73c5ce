//! The [`Controller`]: validates requests against the desired state, applies them, persists, and
//! compiles the result into a new `Arc<State>` published to the workers.
//!
//! Every mutating request goes validate → change the desired state (journalled) → persist → apply
//! to the runtime (policy engine, overlay) → publish. Validation checks everything the later
//! steps could refuse (names, addresses, ports, VTEP rules, policy fields), so after it nothing
//! fails; if persisting fails the journal is undone and the request answers `persist`: **a failed
//! request changes nothing**. [`Controller::handle_batch`] persists and publishes once for all
//! mutations of a batch (group commit: one fsync for many clients), flushing before any read so
//! reads see only durable state. Policy changes go through the policy engine's incremental
//! update; the new `State` reuses the unchanged policy and overlay halves (`Arc`s), and the
//! datapath keeps established connections its revalidation still allows.
//!
//! Single-threaded: the control thread owns the controller; workers see only the published
//! [`StateCell`]. Not on any hot path.

use core::net::IpAddr;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use podswitch_conntrack::Filter;
use podswitch_datapath::{LocalEndpoint, RouterConfig, State, StateBuilder};
use podswitch_overlay::{LocalVtep, MAX_VTEPS, Overlay, Vtep};
use podswitch_policy::{
    ContainerPort, Endpoint, EndpointKind, Object, PolicyEngine, PolicySpec, Protocol,
};
use podswitch_wire::ethernet::Address;

use crate::dataplane::{self, Dataplane};
use crate::desired::{
    self, DesiredState, NamespaceRecord, check_dns_label, check_dns_subdomain, check_interface,
    check_labels, is_port_name, key,
};
use crate::error::{ControlError, ErrorCode};
use crate::ipam::{Pool, Subnet};
use crate::proto::{
    ConnRecord, Counters, EndpointInfo, EndpointSpec, Family, Health, Kind, Labels, Mac, NamedPort,
    NamespaceInfo, PolicyInfo, PolicyStep, RemoteSpec, Reply, Request, TraceReport, VtepSpec,
};
use crate::publish::{Realised, StateCell};
use crate::store::{Dirty, Store};

/// Largest VNI (24 bits, RFC 7348 §5).
const MAX_VNI: u32 = (1 << 24) - 1;

/// The node's configuration the controller compiles with.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub router: RouterConfig,
    pub local_vtep: LocalVtep,
    /// Where the desired state is persisted; `None` keeps it in memory only (tests, fuzzing).
    pub state_dir: Option<PathBuf>,
    /// MTU of endpoint ports when a request gives none (1280..=2000); `None`: the overlay's pod MTU.
    pub default_mtu: Option<u16>,
}

impl ControllerConfig {
    /// A configuration with in-memory state and the overlay's pod MTU.
    pub fn new(router: RouterConfig, local_vtep: LocalVtep) -> Self {
        Self {
            router,
            local_vtep,
            state_dir: None,
            default_mtu: None,
        }
    }

    /// A fixed example node for tests, examples and the fuzzer: router MAC 02:00:00:00:00:01,
    /// gateways 10.255.255.1 / fd00:ffff::1, uplink port 0, tunnel ports from 1 000 000, local VTEP
    /// 192.0.2.1 on VNIs 100 and 200, underlay MTU 1500.
    pub fn example() -> Self {
        let router = RouterConfig {
            mac: Address([2, 0, 0, 0, 0, 1]),
            gateway_v4: Some(core::net::Ipv4Addr::new(10, 255, 255, 1)),
            gateway_v6: Some(core::net::Ipv6Addr::new(0xfd00, 0xffff, 0, 0, 0, 0, 0, 1)),
            uplink_port: 0,
            tunnel_port_base: 1_000_000,
            icmp_burst: 16,
            icmp_per_second: 100,
        };
        let vtep = LocalVtep::new(
            IpAddr::V4(core::net::Ipv4Addr::new(192, 0, 2, 1)),
            Address([2, 0, 0, 0, 0, 2]),
            1500,
            &[100, 200],
        );
        Self::new(router, vtep)
    }
}

/// A change to the desired state, remembered so a failed persist can undo it.
#[derive(Debug)]
enum Undo {
    Generation(u64),
    Namespace(String, Option<NamespaceRecord>),
    Endpoint(String, Option<EndpointInfo>),
    Remote(String, Option<RemoteSpec>),
    Policy(
        String,
        Option<Box<k8s_openapi::api::networking::v1::NetworkPolicy>>,
    ),
    Vtep(u32, Option<VtepSpec>),
    /// An address reserved in a namespace pool (and the cursor before).
    Reserve {
        ns: String,
        addr: IpAddr,
        cursor: Option<IpAddr>,
    },
    /// An address released from a namespace pool.
    Release {
        ns: String,
        addr: IpAddr,
        owner: String,
    },
}

/// A change to the runtime (policy engine, overlay), applied after the desired state is durable.
#[derive(Debug)]
enum Op {
    Namespace(String, Labels),
    RemoveNamespace(String),
    Endpoint(Box<Endpoint>),
    RemoveEndpoint(String, String),
    Relabel(String, String, Labels),
    Policy(Box<PolicySpec>),
    RemovePolicy(String, String),
    AddVtep(Vtep),
    RemoveVtep(u32),
    Remote(IpAddr, podswitch_overlay::Endpoint),
    RemoveRemote(IpAddr),
}

/// Derived lookups over the desired state (rebuilt on load and after an undo).
#[derive(Debug, Default)]
struct Index {
    /// Address → `ns/name` of the local or remote endpoint holding it.
    addrs: HashMap<IpAddr, String>,
    /// Port → `ns/name`.
    ports: HashMap<u32, String>,
    /// Interface → `ns/name`.
    interfaces: HashMap<String, String>,
}

impl Index {
    fn build(d: &DesiredState) -> Self {
        let mut ix = Self::default();
        for (k, e) in &d.endpoints {
            for a in &e.ips {
                ix.addrs.insert(*a, k.clone());
            }
            ix.ports.insert(e.port, k.clone());
            ix.interfaces.insert(e.interface.clone(), k.clone());
        }
        for (k, r) in &d.remotes {
            for a in &r.ips {
                ix.addrs.insert(*a, k.clone());
            }
        }
        ix
    }
}

/// The control plane's core; see the module docs.
pub struct Controller {
    config: ControllerConfig,
    desired: DesiredState,
    index: Index,
    engine: PolicyEngine,
    overlay: Arc<Overlay>,
    store: Option<Store>,
    cell: Arc<StateCell>,
    dataplane: Arc<dyn Dataplane>,
    realised: Arc<Realised>,
    journal: Vec<Undo>,
    ops: Vec<Op>,
    /// Next-fit cursor for port assignment (not persisted: used ports are skipped anyway).
    port_cursor: u32,
    default_mtu: u16,
    last_error: Option<String>,
}

impl core::fmt::Debug for Controller {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Controller")
            .field("generation", &self.desired.generation)
            .field("namespaces", &self.desired.namespaces.len())
            .field("endpoints", &self.desired.endpoints.len())
            .field("policies", &self.desired.policies.len())
            .finish_non_exhaustive()
    }
}

fn kind_of(k: Kind) -> EndpointKind {
    match k {
        Kind::Pod => EndpointKind::Pod,
        Kind::Vm => EndpointKind::Vm,
        Kind::BareMetal => EndpointKind::BareMetal,
    }
}

fn mac_ok(m: Mac) -> bool {
    // Unicast (I/G bit clear) and not all-zero.
    m.0[0] & 1 == 0 && m.0 != [0; 6]
}

fn container_ports(ports: &[NamedPort], field: &str) -> Result<Vec<ContainerPort>, ControlError> {
    let mut out = Vec::with_capacity(ports.len());
    for (i, p) in ports.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let protocol = Protocol::parse(&p.protocol).ok_or_else(|| {
            ControlError::invalid(
                format!("{at}.protocol"),
                format!("{:?}: must be TCP, UDP or SCTP", p.protocol),
            )
        })?;
        if p.port == 0 {
            return Err(ControlError::invalid(
                format!("{at}.port"),
                "must be between 1 and 65535",
            ));
        }
        if let Some(n) = &p.name
            && !is_port_name(n)
        {
            return Err(ControlError::invalid(
                format!("{at}.name"),
                format!("{n:?}: must be an IANA_SVC_NAME (RFC 6335 §5.1)"),
            ));
        }
        out.push(ContainerPort {
            name: p.name.clone(),
            protocol,
            port: p.port,
        });
    }
    Ok(out)
}

fn labels_ok(labels: &Labels, field: &str) -> Result<(), ControlError> {
    check_labels(labels, field).map_err(|(f, m)| ControlError::invalid(f, m))
}

impl Controller {
    /// Opens the controller: loads the persisted desired state (if `config.state_dir` is set and
    /// holds one), compiles and publishes it. `realised` tracks the daemon's workers;
    /// `dataplane` answers the reads.
    pub fn open(
        config: ControllerConfig,
        dataplane: Arc<dyn Dataplane>,
        realised: Arc<Realised>,
    ) -> Result<Self, ControlError> {
        let overlay = Overlay::new(config.local_vtep.clone())
            .map_err(|e| ControlError::new(ErrorCode::Invalid, format!("local VTEP: {e}")))?;
        let default_mtu = match config.default_mtu {
            Some(m) if (1280..=2000).contains(&m) => m,
            Some(m) => {
                return Err(ControlError::new(
                    ErrorCode::Invalid,
                    format!("default MTU {m} outside 1280..=2000"),
                ));
            }
            None => overlay.pod_mtu().clamp(1280, 2000),
        };
        let store = match &config.state_dir {
            Some(dir) => Some(
                Store::open(dir)
                    .map_err(|e| ControlError::new(ErrorCode::Persist, e.to_string()))?,
            ),
            None => None,
        };
        let mut store = store;
        let desired = match &mut store {
            Some(s) => s
                .load()
                .map_err(|e| ControlError::new(ErrorCode::Persist, e.to_string()))?
                .unwrap_or_default(),
            None => DesiredState::default(),
        };
        let engine = PolicyEngine::new();
        let empty = StateBuilder::new(
            0,
            config.router,
            engine.snapshot(),
            Arc::new(overlay.clone()),
        )
        .build()
        .map_err(|e| ControlError::new(ErrorCode::Internal, e.to_string()))?;
        let cell = StateCell::new(Arc::new(empty));
        let mut c = Self {
            index: Index::build(&desired),
            desired,
            engine,
            overlay: Arc::new(overlay),
            store,
            cell,
            dataplane,
            realised,
            config,
            journal: Vec::new(),
            ops: Vec::new(),
            port_cursor: 1,
            default_mtu,
            last_error: None,
        };
        c.replay()?;
        Ok(c)
    }

    /// An in-memory controller with no datapath and no workers ([`ControllerConfig::example`]
    /// unless given): what tests and the fuzzer drive.
    pub fn in_memory(config: Option<ControllerConfig>) -> Result<Self, ControlError> {
        let mut config = config.unwrap_or_else(ControllerConfig::example);
        config.state_dir = None;
        Self::open(config, Arc::new(dataplane::NoDataplane), Realised::new(0))
    }

    /// Compiles the loaded desired state into the runtime from scratch and publishes it.
    fn replay(&mut self) -> Result<(), ControlError> {
        let d = &self.desired;
        let mut ops = Vec::new();
        for (name, ns) in &d.namespaces {
            ops.push(Op::Namespace(name.clone(), ns.labels.clone()));
        }
        for v in d.vteps.values() {
            ops.push(Op::AddVtep(Vtep {
                id: v.id,
                ip: v.ip,
                next_hop_mac: Address(v.next_hop_mac.0),
                vni: v.vni,
                gbp: v.gbp,
            }));
        }
        for e in d.endpoints.values() {
            ops.push(Op::Endpoint(Box::new(Self::local_policy_endpoint(e)?)));
        }
        for r in d.remotes.values() {
            ops.extend(Self::remote_ops(r)?);
        }
        for np in d.policies.values() {
            let spec = PolicySpec::from_k8s(np).map_err(|e| {
                ControlError::new(ErrorCode::Persist, format!("stored policy: {e}"))
            })?;
            ops.push(Op::Policy(Box::new(spec)));
        }
        self.ops = ops;
        self.apply_runtime();
        Ok(())
    }

    /// The cell the workers read compiled state from.
    pub fn cell(&self) -> Arc<StateCell> {
        Arc::clone(&self.cell)
    }

    /// The realisation tracker.
    pub fn realised(&self) -> &Arc<Realised> {
        &self.realised
    }

    /// The generation of the desired state (published once durable).
    pub fn generation(&self) -> u64 {
        self.desired.generation
    }

    /// The desired state (what is persisted).
    pub fn desired(&self) -> &DesiredState {
        &self.desired
    }

    /// The current compiled state.
    pub fn state(&self) -> Arc<State> {
        self.cell.load()
    }

    /// Handles one request (persisting and publishing a mutation before returning).
    pub fn handle(&mut self, req: Request) -> Result<Reply, ControlError> {
        let mut out = self.handle_batch(vec![req]);
        out.pop()
            .unwrap_or_else(|| Err(ControlError::new(ErrorCode::Internal, "no reply")))
    }

    /// Handles requests in order, persisting and publishing once for consecutive mutations (see
    /// the module docs). One result per request, in order.
    pub fn handle_batch(&mut self, reqs: Vec<Request>) -> Vec<Result<Reply, ControlError>> {
        let mut out: Vec<Result<Reply, ControlError>> = Vec::with_capacity(reqs.len());
        // Indexes into `out` of mutations applied but not yet durable.
        let mut pending: Vec<usize> = Vec::new();
        for req in reqs {
            if req.is_mutating() {
                let mark = self.journal.len();
                let ops_mark = self.ops.len();
                let r = self.mutate(req);
                if r.is_err() {
                    // Validation failed part-way through nothing (validate-then-change), but be
                    // safe against partial changes: undo to the mark.
                    self.undo_to(mark);
                    self.ops.truncate(ops_mark);
                } else {
                    pending.push(out.len());
                }
                out.push(r);
            } else {
                if let Err(e) = self.flush() {
                    for &i in &pending {
                        out[i] = Err(e.clone());
                    }
                }
                pending.clear();
                out.push(self.read(req));
            }
        }
        if let Err(e) = self.flush() {
            for &i in &pending {
                out[i] = Err(e.clone());
            }
        }
        out
    }

    /// Persists the journalled changes, then applies them to the runtime and publishes. On a
    /// persist failure, undoes them.
    fn flush(&mut self) -> Result<(), ControlError> {
        if self.journal.is_empty() && self.ops.is_empty() {
            return Ok(());
        }
        let dirty: Vec<Dirty> = self
            .journal
            .iter()
            .filter_map(|u| match u {
                Undo::Generation(_) => None,
                Undo::Namespace(k, _) => Some(Dirty::Namespace(k.clone())),
                Undo::Reserve { ns, .. } | Undo::Release { ns, .. } => {
                    Some(Dirty::Namespace(ns.clone()))
                }
                Undo::Endpoint(k, _) => Some(Dirty::Endpoint(k.clone())),
                Undo::Remote(k, _) => Some(Dirty::Remote(k.clone())),
                Undo::Policy(k, _) => Some(Dirty::Policy(k.clone())),
                Undo::Vtep(k, _) => Some(Dirty::Vtep(*k)),
            })
            .collect();
        if let Some(store) = &mut self.store
            && let Err(e) = store.commit(&self.desired, dirty)
        {
            tracing::error!(error = %e, "persisting desired state failed; changes undone");
            self.undo_to(0);
            self.ops.clear();
            return Err(ControlError::new(
                ErrorCode::Persist,
                format!("could not persist the desired state; nothing changed: {e}"),
            ));
        }
        self.journal.clear();
        self.apply_runtime();
        Ok(())
    }

    fn undo_to(&mut self, mark: usize) {
        if self.journal.len() <= mark {
            return;
        }
        while self.journal.len() > mark {
            let Some(u) = self.journal.pop() else { break };
            let d = &mut self.desired;
            match u {
                Undo::Generation(g) => d.generation = g,
                Undo::Namespace(k, v) => restore(&mut d.namespaces, k, v),
                Undo::Endpoint(k, v) => restore(&mut d.endpoints, k, v),
                Undo::Remote(k, v) => restore(&mut d.remotes, k, v),
                Undo::Policy(k, v) => restore(&mut d.policies, k, v.map(|b| *b)),
                Undo::Vtep(k, v) => restore(&mut d.vteps, k, v),
                Undo::Reserve { ns, addr, cursor } => {
                    if let Some(p) = d
                        .namespaces
                        .get_mut(&ns)
                        .and_then(|n| n.pool_mut(addr.is_ipv6()))
                    {
                        p.release(addr);
                        p.cursor = cursor;
                    }
                }
                Undo::Release { ns, addr, owner } => {
                    if let Some(p) = d
                        .namespaces
                        .get_mut(&ns)
                        .and_then(|n| n.pool_mut(addr.is_ipv6()))
                    {
                        p.reserve(addr, &owner, false);
                    }
                }
            }
        }
        self.index = Index::build(&self.desired);
    }

    /// Applies queued runtime ops and publishes a new state.
    fn apply_runtime(&mut self) {
        for op in std::mem::take(&mut self.ops) {
            match op {
                Op::Namespace(n, l) => self.engine.upsert_namespace(&n, l),
                Op::RemoveNamespace(n) => {
                    self.engine.remove_namespace(&n);
                }
                Op::Endpoint(e) => {
                    if let Err(err) = self.engine.upsert_endpoint(&e) {
                        self.note_error(format!(
                            "policy engine refused {}/{}: {err}",
                            e.namespace, e.name
                        ));
                    }
                }
                Op::RemoveEndpoint(ns, n) => {
                    self.engine.remove_endpoint(&ns, &n);
                }
                Op::Relabel(ns, n, l) => {
                    self.engine.relabel_endpoint(&ns, &n, l);
                }
                Op::Policy(spec) => {
                    self.engine.upsert_policy_spec(*spec);
                }
                Op::RemovePolicy(ns, n) => {
                    self.engine.remove_policy(&ns, &n);
                }
                Op::AddVtep(v) => {
                    if let Err(err) = Arc::make_mut(&mut self.overlay).add_vtep(v) {
                        self.note_error(format!("overlay refused VTEP {}: {err}", v.id));
                    }
                }
                Op::RemoveVtep(id) => {
                    Arc::make_mut(&mut self.overlay).remove_vtep(id);
                }
                Op::Remote(ip, e) => {
                    if let Err(err) = Arc::make_mut(&mut self.overlay).insert_endpoint(ip, e) {
                        self.note_error(format!("overlay refused remote endpoint {ip}: {err}"));
                    }
                }
                Op::RemoveRemote(ip) => {
                    Arc::make_mut(&mut self.overlay).remove_endpoint(ip);
                }
            }
        }
        self.publish();
    }

    fn note_error(&mut self, msg: String) {
        tracing::error!("{msg}");
        self.last_error = Some(msg);
    }

    fn publish(&mut self) {
        let snap = self.engine.commit();
        let mut b = StateBuilder::new(
            self.desired.generation,
            self.config.router,
            snap,
            Arc::clone(&self.overlay),
        );
        // Every namespace subnet's gateway (its first host, handed to pods as their default
        // route by IPAM) is answered by the router like the node's own gateway.
        for ns in self.desired.namespaces.values() {
            for pool in [&ns.v4, &ns.v6].into_iter().flatten() {
                b.subnet_gateway(pool.subnet.gateway());
            }
        }
        for e in self.desired.endpoints.values() {
            b.local(LocalEndpoint {
                port: e.port,
                mac: Address(e.mac.0),
                addrs: e.ips.clone(),
                mtu: e.mtu,
            });
        }
        match b.build() {
            Ok(s) => {
                // The generation must grow (workers' flow caches compare it for equality); the
                // initial empty state has the loaded generation, so an empty replay publishes
                // nothing new.
                if s.generation() > self.cell.generation() {
                    self.cell.publish(Arc::new(s));
                    self.realised
                        .published(self.desired.generation, std::time::Instant::now());
                }
            }
            Err(e) => self.note_error(format!("compiled state refused: {e}")),
        }
    }

    fn bump(&mut self) -> u64 {
        self.journal.push(Undo::Generation(self.desired.generation));
        self.desired.generation += 1;
        self.desired.generation
    }

    fn namespace(&self, name: &str, field: &str) -> Result<&NamespaceRecord, ControlError> {
        self.desired.namespaces.get(name).ok_or_else(|| {
            ControlError::field(
                ErrorCode::NotFound,
                field,
                format!("namespace {name:?} does not exist"),
            )
        })
    }

    fn local_policy_endpoint(e: &EndpointInfo) -> Result<Endpoint, ControlError> {
        Ok(Endpoint {
            namespace: e.namespace.clone(),
            name: e.name.clone(),
            kind: kind_of(e.kind),
            labels: e.labels.clone(),
            addrs: e.ips.clone(),
            ports: container_ports(&e.ports, "ports")?,
        })
    }

    fn remote_ops(r: &RemoteSpec) -> Result<Vec<Op>, ControlError> {
        let mut ops: Vec<Op> = r
            .ips
            .iter()
            .map(|ip| {
                Op::Remote(
                    *ip,
                    podswitch_overlay::Endpoint {
                        vtep: r.vtep,
                        mac: Address(r.mac.0),
                    },
                )
            })
            .collect();
        ops.push(Op::Endpoint(Box::new(Endpoint {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            kind: kind_of(r.kind),
            labels: r.labels.clone(),
            addrs: r.ips.clone(),
            ports: container_ports(&r.ports, "ports")?,
        })));
        Ok(ops)
    }

    /// Checks an address given for a new endpoint in `ns`.
    fn check_addr(
        &self,
        a: IpAddr,
        field: &str,
        ns: &NamespaceRecord,
        kind: Kind,
    ) -> Result<(), ControlError> {
        if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
            return Err(ControlError::invalid(
                field,
                format!("{a}: not a unicast endpoint address"),
            ));
        }
        if let IpAddr::V4(v4) = a
            && v4.is_broadcast()
        {
            return Err(ControlError::invalid(field, format!("{a}: broadcast")));
        }
        let router = &self.config.router;
        if Some(a) == router.gateway_v4.map(IpAddr::V4)
            || Some(a) == router.gateway_v6.map(IpAddr::V6)
        {
            return Err(ControlError::field(
                ErrorCode::Conflict,
                field,
                format!("{a} is the node's gateway address"),
            ));
        }
        if let Some(owner) = self.index.addrs.get(&a) {
            return Err(ControlError::field(
                ErrorCode::Conflict,
                field,
                format!("address {a} is already used by {owner}"),
            ));
        }
        if let Some(p) = ns.pool(a.is_ipv6()) {
            if p.subnet.contains(a) && !p.subnet.is_host(a) {
                return Err(ControlError::invalid(
                    field,
                    format!(
                        "{a} is the network, gateway or last address of {}",
                        p.subnet
                    ),
                ));
            }
            if kind == Kind::Pod && !p.subnet.contains(a) {
                return Err(ControlError::invalid(
                    field,
                    format!(
                        "{a} is outside the namespace's subnet {} (a pod's address comes from its namespace)",
                        p.subnet
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_unique_ips(ips: &[IpAddr], field: &str) -> Result<(), ControlError> {
        let mut seen = BTreeSet::new();
        for (i, a) in ips.iter().enumerate() {
            if !seen.insert(*a) {
                return Err(ControlError::invalid(
                    format!("{field}[{i}]"),
                    format!("{a} is listed twice"),
                ));
            }
        }
        Ok(())
    }

    fn mutate(&mut self, req: Request) -> Result<Reply, ControlError> {
        match req {
            Request::NamespaceCreate {
                name,
                labels,
                subnet_v4,
                subnet_v6,
            } => self.namespace_create(name, labels, subnet_v4, subnet_v6),
            Request::NamespaceDelete { name } => self.namespace_delete(&name),
            Request::NamespaceLabel { name, labels } => {
                labels_ok(&labels, "request.labels")?;
                let old = self.namespace(&name, "request.name")?.clone();
                let mut rec = old.clone();
                rec.labels.clone_from(&labels);
                let g = self.bump();
                self.journal.push(Undo::Namespace(name.clone(), Some(old)));
                self.desired.namespaces.insert(name.clone(), rec);
                self.ops.push(Op::Namespace(name, labels));
                Ok(Reply::Done { generation: g })
            }
            Request::EndpointAdd(spec) => self.endpoint_add(spec),
            Request::EndpointDelete { namespace, name } => self.endpoint_delete(&namespace, &name),
            Request::EndpointLabel {
                namespace,
                name,
                labels,
            } => {
                labels_ok(&labels, "request.labels")?;
                let k = key(&namespace, &name);
                if let Some(e) = self.desired.endpoints.get(&k) {
                    let mut e = e.clone();
                    e.labels.clone_from(&labels);
                    let g = self.bump();
                    let old = self.desired.endpoints.insert(k.clone(), e);
                    self.journal.push(Undo::Endpoint(k, old));
                    self.ops.push(Op::Relabel(namespace, name, labels));
                    Ok(Reply::Done { generation: g })
                } else if let Some(r) = self.desired.remotes.get(&k) {
                    let mut r = r.clone();
                    r.labels.clone_from(&labels);
                    let g = self.bump();
                    let old = self.desired.remotes.insert(k.clone(), r);
                    self.journal.push(Undo::Remote(k, old));
                    self.ops.push(Op::Relabel(namespace, name, labels));
                    Ok(Reply::Done { generation: g })
                } else {
                    Err(ControlError::not_found(format!(
                        "endpoint {k} does not exist"
                    )))
                }
            }
            Request::PolicyApply { text } => self.policy_apply(&text),
            Request::PolicyDelete { namespace, name } => {
                let k = key(&namespace, &name);
                if !self.desired.policies.contains_key(&k) {
                    return Err(ControlError::not_found(format!(
                        "NetworkPolicy {k} does not exist"
                    )));
                }
                let g = self.bump();
                let old = self.desired.policies.remove(&k);
                self.journal.push(Undo::Policy(k, old.map(Box::new)));
                self.ops.push(Op::RemovePolicy(namespace, name));
                Ok(Reply::Done { generation: g })
            }
            Request::VtepAdd(v) => self.vtep_add(v),
            Request::VtepDelete { id } => {
                if !self.desired.vteps.contains_key(&id) {
                    return Err(ControlError::field(
                        ErrorCode::NotFound,
                        "request.id",
                        format!("VTEP {id} does not exist"),
                    ));
                }
                let users: Vec<&String> = self
                    .desired
                    .remotes
                    .iter()
                    .filter(|(_, r)| r.vtep == id)
                    .map(|(k, _)| k)
                    .collect();
                if let Some(first) = users.first() {
                    return Err(ControlError::conflict(format!(
                        "VTEP {id} still has {} remote endpoint(s) (e.g. {first}); delete them first",
                        users.len()
                    )));
                }
                let g = self.bump();
                let old = self.desired.vteps.remove(&id);
                self.journal.push(Undo::Vtep(id, old));
                self.ops.push(Op::RemoveVtep(id));
                Ok(Reply::Done { generation: g })
            }
            Request::RemoteAdd(r) => self.remote_add(r),
            Request::RemoteDelete { namespace, name } => {
                let k = key(&namespace, &name);
                let Some(r) = self.desired.remotes.get(&k) else {
                    return Err(ControlError::not_found(format!(
                        "remote endpoint {k} does not exist"
                    )));
                };
                let ips = r.ips.clone();
                let g = self.bump();
                let old = self.desired.remotes.remove(&k);
                self.journal.push(Undo::Remote(k, old));
                for ip in ips {
                    self.index.addrs.remove(&ip);
                    self.ops.push(Op::RemoveRemote(ip));
                }
                self.ops.push(Op::RemoveEndpoint(namespace, name));
                Ok(Reply::Done { generation: g })
            }
            _ => Err(ControlError::new(ErrorCode::Internal, "not a mutation")),
        }
    }

    fn namespace_create(
        &mut self,
        name: String,
        labels: Labels,
        subnet_v4: Option<Subnet>,
        subnet_v6: Option<Subnet>,
    ) -> Result<Reply, ControlError> {
        check_dns_label(&name).map_err(|m| ControlError::invalid("request.name", m))?;
        labels_ok(&labels, "request.labels")?;
        if self.desired.namespaces.contains_key(&name) {
            return Err(ControlError::field(
                ErrorCode::Conflict,
                "request.name",
                format!("namespace {name:?} already exists"),
            ));
        }
        for (field, s, v6) in [
            ("request.subnet_v4", subnet_v4, false),
            ("request.subnet_v6", subnet_v6, true),
        ] {
            let Some(s) = s else { continue };
            if s.network().is_ipv6() != v6 {
                return Err(ControlError::invalid(
                    field,
                    format!("{s} is not an IPv{} subnet", if v6 { 6 } else { 4 }),
                ));
            }
            for (other, rec) in &self.desired.namespaces {
                if let Some(p) = rec.pool(v6)
                    && p.subnet.overlaps(&s)
                {
                    return Err(ControlError::field(
                        ErrorCode::Conflict,
                        field,
                        format!("{s} overlaps {} of namespace {other:?}", p.subnet),
                    ));
                }
            }
        }
        let g = self.bump();
        self.journal.push(Undo::Namespace(name.clone(), None));
        self.desired.namespaces.insert(
            name.clone(),
            NamespaceRecord {
                labels: labels.clone(),
                v4: subnet_v4.map(Pool::new),
                v6: subnet_v6.map(Pool::new),
            },
        );
        self.ops.push(Op::Namespace(name, labels));
        Ok(Reply::Done { generation: g })
    }

    fn namespace_delete(&mut self, name: &str) -> Result<Reply, ControlError> {
        self.namespace(name, "request.name")?;
        let eps = DesiredState::in_namespace(&self.desired.endpoints, name).count()
            + DesiredState::in_namespace(&self.desired.remotes, name).count();
        if eps > 0 {
            return Err(ControlError::conflict(format!(
                "namespace {name:?} still has {eps} endpoint(s); delete them first"
            )));
        }
        let policies: Vec<String> = DesiredState::in_namespace(&self.desired.policies, name)
            .map(|(k, _)| k.clone())
            .collect();
        let g = self.bump();
        for k in policies {
            let old = self.desired.policies.remove(&k);
            if let Some((ns, n)) = k.split_once('/') {
                self.ops.push(Op::RemovePolicy(ns.to_owned(), n.to_owned()));
            }
            self.journal.push(Undo::Policy(k, old.map(Box::new)));
        }
        let old = self.desired.namespaces.remove(name);
        self.journal.push(Undo::Namespace(name.to_owned(), old));
        self.ops.push(Op::RemoveNamespace(name.to_owned()));
        Ok(Reply::Done { generation: g })
    }

    fn port_reserved(&self, p: u32) -> bool {
        let r = &self.config.router;
        p == r.uplink_port
            || (p >= r.tunnel_port_base
                && u64::from(p) < u64::from(r.tunnel_port_base) + u64::from(MAX_VTEPS))
    }

    fn endpoint_add(&mut self, spec: EndpointSpec) -> Result<Reply, ControlError> {
        // ---- validate (nothing changes until every check passed) ----
        let ns = self.namespace(&spec.namespace, "request.namespace")?;
        check_dns_subdomain(&spec.name).map_err(|m| ControlError::invalid("request.name", m))?;
        let k = key(&spec.namespace, &spec.name);
        if self.desired.endpoints.contains_key(&k) || self.desired.remotes.contains_key(&k) {
            return Err(ControlError::field(
                ErrorCode::Conflict,
                "request.name",
                format!("endpoint {k} already exists"),
            ));
        }
        check_interface(&spec.interface)
            .map_err(|m| ControlError::invalid("request.interface", m))?;
        if let Some(owner) = self.index.interfaces.get(&spec.interface) {
            return Err(ControlError::field(
                ErrorCode::Conflict,
                "request.interface",
                format!("interface {:?} is already used by {owner}", spec.interface),
            ));
        }
        if !mac_ok(spec.mac) {
            return Err(ControlError::invalid(
                "request.mac",
                format!("{}: must be a unicast, non-zero MAC", spec.mac),
            ));
        }
        let mtu = spec.mtu.unwrap_or(self.default_mtu);
        if !(1280..=2000).contains(&mtu) {
            return Err(ControlError::invalid(
                "request.mtu",
                format!("{mtu}: must be between 1280 and 2000"),
            ));
        }
        labels_ok(&spec.labels, "request.labels")?;
        container_ports(&spec.ports, "request.ports")?;
        Self::check_unique_ips(&spec.ips, "request.ips")?;
        for (i, a) in spec.ips.iter().enumerate() {
            self.check_addr(*a, &format!("request.ips[{i}]"), ns, spec.kind)?;
        }
        let mut allocated = Vec::new();
        for (i, fam) in spec.allocate.iter().enumerate() {
            let v6 = *fam == Family::Ipv6;
            let field = format!("request.allocate[{i}]");
            if spec.allocate[..i].contains(fam) {
                return Err(ControlError::invalid(field, "family listed twice"));
            }
            let pool = ns.pool(v6).ok_or_else(|| {
                ControlError::invalid(
                    field.clone(),
                    format!(
                        "namespace {:?} has no IPv{} subnet",
                        spec.namespace,
                        if v6 { 6 } else { 4 }
                    ),
                )
            })?;
            let router = self.config.router;
            let a = pool
                .next_free(|a| {
                    self.index.addrs.contains_key(&a)
                        || spec.ips.contains(&a)
                        || Some(a) == router.gateway_v4.map(IpAddr::V4)
                        || Some(a) == router.gateway_v6.map(IpAddr::V6)
                })
                .ok_or_else(|| {
                    ControlError::field(
                        ErrorCode::Exhausted,
                        field.clone(),
                        format!(
                            "namespace {:?}: subnet {} has no free address",
                            spec.namespace, pool.subnet
                        ),
                    )
                })?;
            allocated.push(a);
        }
        if spec.ips.is_empty() && allocated.is_empty() {
            return Err(ControlError::invalid(
                "request.ips",
                "no address: give `ips` or `allocate`",
            ));
        }
        let port = match spec.port {
            Some(p) => {
                if self.port_reserved(p) {
                    return Err(ControlError::field(
                        ErrorCode::Conflict,
                        "request.port",
                        format!("port {p} is reserved for the uplink or tunnels"),
                    ));
                }
                if let Some(owner) = self.index.ports.get(&p) {
                    return Err(ControlError::field(
                        ErrorCode::Conflict,
                        "request.port",
                        format!("port {p} is already used by {owner}"),
                    ));
                }
                p
            }
            None => self
                .free_port()
                .ok_or_else(|| ControlError::new(ErrorCode::Exhausted, "no free port id"))?,
        };
        // ---- change ----
        let gateways = Self::gateways(ns);
        let g = self.bump();
        let mut ips = spec.ips.clone();
        ips.extend(&allocated);
        let rec = self
            .desired
            .namespaces
            .get_mut(&spec.namespace)
            .ok_or_else(|| ControlError::new(ErrorCode::Internal, "namespace vanished"))?;
        for a in &ips {
            if let Some(p) = rec.pool_mut(a.is_ipv6())
                && p.subnet.contains(*a)
            {
                let cursor = p.cursor;
                p.reserve(*a, &k, allocated.contains(a));
                self.journal.push(Undo::Reserve {
                    ns: spec.namespace.clone(),
                    addr: *a,
                    cursor,
                });
            }
        }
        let info = EndpointInfo {
            namespace: spec.namespace,
            name: spec.name,
            kind: spec.kind,
            interface: spec.interface,
            port,
            mac: spec.mac,
            ips: ips.clone(),
            labels: spec.labels,
            ports: spec.ports,
            mtu,
        };
        for a in &ips {
            self.index.addrs.insert(*a, k.clone());
        }
        self.index.ports.insert(port, k.clone());
        self.index
            .interfaces
            .insert(info.interface.clone(), k.clone());
        self.ops
            .push(Op::Endpoint(Box::new(Self::local_policy_endpoint(&info)?)));
        self.journal.push(Undo::Endpoint(k.clone(), None));
        self.desired.endpoints.insert(k, info);
        self.port_cursor = port.wrapping_add(1);
        Ok(Reply::EndpointAdded {
            generation: g,
            port,
            ips,
            gateways,
            mtu,
        })
    }

    fn gateways(ns: &NamespaceRecord) -> Vec<IpAddr> {
        [ns.v4.as_ref(), ns.v6.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| p.subnet.gateway())
            .collect()
    }

    fn free_port(&self) -> Option<u32> {
        let mut p = self.port_cursor.max(1);
        for _ in 0..=self.index.ports.len() + MAX_VTEPS as usize + 2 {
            if !self.port_reserved(p) && !self.index.ports.contains_key(&p) && p != 0 {
                return Some(p);
            }
            p = p.wrapping_add(1);
        }
        None
    }

    fn endpoint_delete(&mut self, namespace: &str, name: &str) -> Result<Reply, ControlError> {
        let k = key(namespace, name);
        let Some(e) = self.desired.endpoints.get(&k) else {
            let hint = if self.desired.remotes.contains_key(&k) {
                " (it is a remote endpoint: use remote_delete)"
            } else {
                ""
            };
            return Err(ControlError::not_found(format!(
                "endpoint {k} does not exist{hint}"
            )));
        };
        let ips = e.ips.clone();
        let g = self.bump();
        if let Some(rec) = self.desired.namespaces.get_mut(namespace) {
            for a in &ips {
                if let Some(p) = rec.pool_mut(a.is_ipv6())
                    && let Some(owner) = p.allocated.get(a).cloned()
                {
                    p.release(*a);
                    self.journal.push(Undo::Release {
                        ns: namespace.to_owned(),
                        addr: *a,
                        owner,
                    });
                }
            }
        }
        let old = self.desired.endpoints.remove(&k);
        if let Some(e) = &old {
            self.index.ports.remove(&e.port);
            self.index.interfaces.remove(&e.interface);
        }
        for a in &ips {
            self.index.addrs.remove(a);
        }
        self.journal.push(Undo::Endpoint(k, old));
        self.ops
            .push(Op::RemoveEndpoint(namespace.to_owned(), name.to_owned()));
        Ok(Reply::Done { generation: g })
    }

    fn policy_apply(&mut self, text: &str) -> Result<Reply, ControlError> {
        let objects = podswitch_policy::parse_objects(text)
            .map_err(|e| ControlError::invalid("request.text", e.to_string()))?;
        let mut specs = Vec::new();
        for (i, o) in objects.into_iter().enumerate() {
            let np = match o {
                Object::NetworkPolicy(np) => np,
                Object::Namespace(_) => {
                    return Err(ControlError::invalid(
                        format!("request.text[{i}]"),
                        "a v1 Namespace: only NetworkPolicy objects are applied here (use namespace_create)",
                    ));
                }
                Object::Pod(_) => {
                    return Err(ControlError::invalid(
                        format!("request.text[{i}]"),
                        "a v1 Pod: only NetworkPolicy objects are applied here (use endpoint_add)",
                    ));
                }
                Object::Other { api_version, kind } => {
                    return Err(ControlError::invalid(
                        format!("request.text[{i}]"),
                        format!(
                            "{api_version} {kind}: only networking.k8s.io/v1 NetworkPolicy objects are applied here"
                        ),
                    ));
                }
            };
            let spec = PolicySpec::from_k8s(&np).map_err(|e| ControlError {
                code: ErrorCode::Invalid,
                message: e.to_string(),
                field: Some(e.field.clone()),
            })?;
            if !self.desired.namespaces.contains_key(&spec.namespace) {
                return Err(ControlError::field(
                    ErrorCode::NotFound,
                    "metadata.namespace",
                    format!(
                        "NetworkPolicy {}/{}: namespace {:?} does not exist",
                        spec.namespace, spec.name, spec.namespace
                    ),
                ));
            }
            let mut np = *np;
            np.metadata.namespace = Some(spec.namespace.clone());
            specs.push((spec, np));
        }
        if specs.is_empty() {
            return Err(ControlError::invalid(
                "request.text",
                "no NetworkPolicy object in the text",
            ));
        }
        let g = self.bump();
        let mut names = Vec::new();
        for (spec, np) in specs {
            let k = key(&spec.namespace, &spec.name);
            let old = self.desired.policies.insert(k.clone(), np);
            self.journal
                .push(Undo::Policy(k.clone(), old.map(Box::new)));
            self.ops.push(Op::Policy(Box::new(spec)));
            names.push(k);
        }
        Ok(Reply::PolicyApplied {
            generation: g,
            policies: names,
        })
    }

    fn vtep_add(&mut self, v: VtepSpec) -> Result<Reply, ControlError> {
        let local = &self.config.local_vtep;
        if v.id >= MAX_VTEPS {
            return Err(ControlError::invalid(
                "request.id",
                format!("must be below {MAX_VTEPS}"),
            ));
        }
        if v.vni > MAX_VNI {
            return Err(ControlError::invalid(
                "request.vni",
                format!("{}: VNIs are 24 bits (RFC 7348 §5)", v.vni),
            ));
        }
        if !local.vnis.contains(&v.vni) {
            return Err(ControlError::invalid(
                "request.vni",
                format!(
                    "VNI {} is not served by this node (serves {:?})",
                    v.vni, local.vnis
                ),
            ));
        }
        if v.ip.is_ipv6() != local.ip.is_ipv6() || v.ip.is_unspecified() || v.ip.is_multicast() {
            return Err(ControlError::invalid(
                "request.ip",
                format!(
                    "{}: not a unicast address of the underlay's family ({})",
                    v.ip, local.ip
                ),
            ));
        }
        if !mac_ok(v.next_hop_mac) {
            return Err(ControlError::invalid(
                "request.next_hop_mac",
                format!("{}: must be a unicast, non-zero MAC", v.next_hop_mac),
            ));
        }
        if self.desired.vteps.contains_key(&v.id) {
            return Err(ControlError::field(
                ErrorCode::Conflict,
                "request.id",
                format!("VTEP {} already exists", v.id),
            ));
        }
        if let Some(o) = self
            .desired
            .vteps
            .values()
            .find(|o| o.ip == v.ip && o.vni == v.vni)
        {
            return Err(ControlError::field(
                ErrorCode::Conflict,
                "request.ip",
                format!(
                    "VTEP {} on VNI {} already exists (id {})",
                    v.ip, v.vni, o.id
                ),
            ));
        }
        let g = self.bump();
        self.journal.push(Undo::Vtep(v.id, None));
        self.desired.vteps.insert(v.id, v);
        self.ops.push(Op::AddVtep(Vtep {
            id: v.id,
            ip: v.ip,
            next_hop_mac: Address(v.next_hop_mac.0),
            vni: v.vni,
            gbp: v.gbp,
        }));
        Ok(Reply::Done { generation: g })
    }

    fn remote_add(&mut self, r: RemoteSpec) -> Result<Reply, ControlError> {
        let ns = self.namespace(&r.namespace, "request.namespace")?;
        check_dns_subdomain(&r.name).map_err(|m| ControlError::invalid("request.name", m))?;
        let k = key(&r.namespace, &r.name);
        if self.desired.endpoints.contains_key(&k) || self.desired.remotes.contains_key(&k) {
            return Err(ControlError::field(
                ErrorCode::Conflict,
                "request.name",
                format!("endpoint {k} already exists"),
            ));
        }
        if !self.desired.vteps.contains_key(&r.vtep) {
            return Err(ControlError::field(
                ErrorCode::NotFound,
                "request.vtep",
                format!("VTEP {} does not exist", r.vtep),
            ));
        }
        if !mac_ok(r.mac) {
            return Err(ControlError::invalid(
                "request.mac",
                format!("{}: must be a unicast, non-zero MAC", r.mac),
            ));
        }
        if r.ips.is_empty() {
            return Err(ControlError::invalid(
                "request.ips",
                "at least one address is required",
            ));
        }
        labels_ok(&r.labels, "request.labels")?;
        container_ports(&r.ports, "request.ports")?;
        Self::check_unique_ips(&r.ips, "request.ips")?;
        for (i, a) in r.ips.iter().enumerate() {
            // Remote pods may come from another node's range: only uniqueness and the reserved
            // addresses are checked, not the namespace subnet.
            self.check_addr(*a, &format!("request.ips[{i}]"), ns, Kind::Vm)?;
        }
        let g = self.bump();
        for a in &r.ips {
            self.index.addrs.insert(*a, k.clone());
        }
        self.ops.extend(Self::remote_ops(&r)?);
        self.journal.push(Undo::Remote(k.clone(), None));
        self.desired.remotes.insert(k, r);
        Ok(Reply::Done { generation: g })
    }

    // ---- reads -------------------------------------------------------------------------------

    fn read(&mut self, req: Request) -> Result<Reply, ControlError> {
        match req {
            Request::NamespaceList => Ok(Reply::Namespaces {
                items: self
                    .desired
                    .namespaces
                    .iter()
                    .map(|(name, rec)| NamespaceInfo {
                        name: name.clone(),
                        labels: rec.labels.clone(),
                        subnet_v4: rec.v4.as_ref().map(|p| p.subnet),
                        subnet_v6: rec.v6.as_ref().map(|p| p.subnet),
                        gateways: Self::gateways(rec),
                        allocated: rec.v4.as_ref().map_or(0, |p| p.allocated.len())
                            + rec.v6.as_ref().map_or(0, |p| p.allocated.len()),
                        endpoints: DesiredState::in_namespace(&self.desired.endpoints, name)
                            .count(),
                    })
                    .collect(),
            }),
            Request::EndpointList { namespace } => {
                let items = match &namespace {
                    Some(ns) => {
                        self.namespace(ns, "request.namespace")?;
                        DesiredState::in_namespace(&self.desired.endpoints, ns)
                            .map(|(_, e)| e.clone())
                            .collect()
                    }
                    None => self.desired.endpoints.values().cloned().collect(),
                };
                Ok(Reply::Endpoints { items })
            }
            Request::PolicyList { namespace } => {
                let iter: Box<dyn Iterator<Item = _>> = match &namespace {
                    Some(ns) => {
                        self.namespace(ns, "request.namespace")?;
                        Box::new(DesiredState::in_namespace(&self.desired.policies, ns))
                    }
                    None => Box::new(self.desired.policies.iter()),
                };
                let items = iter
                    .map(|(k, np)| {
                        let (ns, name) = k.split_once('/').unwrap_or(("", k));
                        let spec = PolicySpec::from_k8s(np).ok();
                        PolicyInfo {
                            namespace: ns.to_owned(),
                            name: name.to_owned(),
                            ingress: spec.as_ref().is_some_and(|s| s.ingress.is_some()),
                            egress: spec.as_ref().is_some_and(|s| s.egress.is_some()),
                            object: serde_json::to_value(np).unwrap_or_default(),
                        }
                    })
                    .collect();
                Ok(Reply::Policies { items })
            }
            Request::VtepList => Ok(Reply::Vteps {
                items: self.desired.vteps.values().copied().collect(),
            }),
            Request::RemoteList => Ok(Reply::Remotes {
                items: self.desired.remotes.values().cloned().collect(),
            }),
            Request::Counters => Ok(Reply::Counters(Box::new(self.counters()))),
            Request::FlowDump { max } => {
                let items = self
                    .dataplane
                    .flows(max.unwrap_or(10_000))
                    .ok_or_else(unsupported)?;
                Ok(Reply::Flows { items })
            }
            Request::FlowFlush => Ok(Reply::Flushed {
                count: self.dataplane.flush_flows().ok_or_else(unsupported)?,
            }),
            Request::ConntrackDump { address, zone, max } => {
                let t = self.dataplane.conntrack().ok_or_else(unsupported)?;
                let now = self.dataplane.now();
                let items: Vec<ConnRecord> = t
                    .entries(&filter(address, zone))
                    .iter()
                    .filter(|e| zone.is_none_or(|z| e.zone == z))
                    .take(max.unwrap_or(10_000))
                    .map(|e| dataplane::conn_record(e, now))
                    .collect();
                Ok(Reply::Conntrack { items })
            }
            Request::ConntrackFlush { address, zone } => {
                let t = self.dataplane.conntrack().ok_or_else(unsupported)?;
                Ok(Reply::Flushed {
                    count: t.flush(&filter(address, zone)),
                })
            }
            Request::Trace {
                src,
                dst,
                protocol,
                port,
            } => self
                .trace(src, dst, &protocol, port)
                .map(|t| Reply::Trace(Box::new(t))),
            Request::Health => Ok(Reply::Health(self.health())),
            Request::Wait { generation, .. } => {
                self.check_wait(generation)?;
                let r = self.realised_generation();
                if r >= generation {
                    Ok(Reply::Realised {
                        generation,
                        realised: r,
                    })
                } else {
                    Err(ControlError::new(
                        ErrorCode::Timeout,
                        format!("generation {generation} not yet realised (workers run {r})"),
                    ))
                }
            }
            _ => Err(ControlError::new(ErrorCode::Internal, "not a read")),
        }
    }

    /// `wait` for a generation never published is a client error, not a hang.
    pub fn check_wait(&self, generation: u64) -> Result<(), ControlError> {
        if generation > self.desired.generation {
            return Err(ControlError::invalid(
                "request.generation",
                format!(
                    "generation {generation} was never published (current {})",
                    self.desired.generation
                ),
            ));
        }
        Ok(())
    }

    /// The generation every worker runs, capped at the published one.
    pub fn realised_generation(&self) -> u64 {
        self.realised.realised().min(self.cell.generation())
    }

    /// Health without the server's part.
    pub fn health(&self) -> Health {
        Health {
            generation: self.desired.generation,
            realised_generation: self.realised_generation(),
            workers: self.realised.workers(),
            namespaces: self.desired.namespaces.len(),
            endpoints: self.desired.endpoints.len(),
            remotes: self.desired.remotes.len(),
            policies: self.desired.policies.len(),
            vteps: self.desired.vteps.len(),
            persistent: self.store.is_some(),
            last_error: self.last_error.clone(),
        }
    }

    /// Counters without the server's part.
    pub fn counters(&self) -> Counters {
        let mut c = Counters {
            generation: self.desired.generation,
            realised_generation: self.realised_generation(),
            dataplane: false,
            ports: Vec::new(),
            drops: std::collections::BTreeMap::new(),
            rules_allowed: Vec::new(),
            policies_denied: Vec::new(),
            groups: Vec::new(),
            cache_hits: 0,
            cache_misses: 0,
            revoked_connections: 0,
            conntrack: self
                .dataplane
                .conntrack()
                .map(dataplane::conntrack_counters),
            realisation: self.realised.histogram(),
            server: crate::proto::ServerCounters::default(),
        };
        if let Some(stats) = self.dataplane.stats() {
            let state = self.cell.load();
            let by_port: HashMap<u32, &String> =
                self.index.ports.iter().map(|(p, k)| (*p, k)).collect();
            dataplane::fill_counters(&mut c, &stats, &state, |p| {
                by_port.get(&p).map(|k| (*k).clone())
            });
        }
        c
    }

    fn trace(
        &self,
        src: IpAddr,
        dst: IpAddr,
        protocol: &str,
        port: u16,
    ) -> Result<TraceReport, ControlError> {
        let proto = match Protocol::parse(&protocol.to_ascii_uppercase()) {
            Some(p) => p,
            None => protocol
                .parse::<u8>()
                .map(Protocol::from_ip_number)
                .map_err(|_| {
                    ControlError::invalid(
                        "request.protocol",
                        format!("{protocol:?}: TCP, UDP, SCTP or an IP protocol number"),
                    )
                })?,
        };
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(ControlError::invalid(
                "request.dst",
                "source and destination are of different address families",
            ));
        }
        let state = self.cell.load();
        let snap = state.policy();
        let ex = snap.explain(src, dst, proto, port);
        let mut policies = Vec::new();
        for t in ex.egress.iter().chain(ex.ingress.iter()) {
            let dir = match t.direction {
                podswitch_policy::Direction::Ingress => "ingress",
                podswitch_policy::Direction::Egress => "egress",
            };
            policies.push(PolicyStep {
                policy: format!("{}/{}", t.namespace, t.name),
                direction: dir.to_owned(),
                selects: t.selects,
                isolates: t.isolates,
                rules: t
                    .rules
                    .iter()
                    .map(|r| {
                        format!(
                            "{dir}[{}]: peer {}, port {}",
                            r.index,
                            if r.peer_matched {
                                "matched"
                            } else {
                                "did not match"
                            },
                            if r.port_matched {
                                "matched"
                            } else {
                                "did not match"
                            }
                        )
                    })
                    .collect(),
            });
        }
        let router = &self.config.router;
        let is_gateway = Some(dst) == router.gateway_v4.map(IpAddr::V4)
            || Some(dst) == router.gateway_v6.map(IpAddr::V6)
            || self
                .desired
                .namespaces
                .values()
                .any(|n| Self::gateways(n).contains(&dst));
        let route = if let Some(k) = self.index.addrs.get(&dst) {
            if let Some(e) = self.desired.endpoints.get(k) {
                format!("local port {} ({k}, interface {})", e.port, e.interface)
            } else if let Some(r) = self.desired.remotes.get(k) {
                match self.desired.vteps.get(&r.vtep) {
                    Some(v) => format!(
                        "remote: VXLAN to VTEP {} ({}, VNI {}) for {k}",
                        v.id, v.ip, v.vni
                    ),
                    None => format!("remote {k}: VTEP {} missing", r.vtep),
                }
            } else {
                format!("endpoint {k}")
            }
        } else if is_gateway {
            "gateway: the router answers ARP/ND only; other traffic to it is dropped (to_router)"
                .to_owned()
        } else {
            "drop: unknown destination (no local or remote endpoint has this address)".to_owned()
        };
        let name = |a: IpAddr| self.index.addrs.get(&a).cloned();
        Ok(TraceReport {
            generation: state.generation(),
            src_endpoint: name(src),
            dst_endpoint: name(dst),
            allowed: ex.verdict.is_allowed(),
            egress_decision: ex.egress_decision.clone(),
            ingress_decision: ex.ingress_decision.clone(),
            policies,
            route,
            explanation: ex.to_string(),
        })
    }
}

fn unsupported() -> ControlError {
    ControlError::new(
        ErrorCode::Unsupported,
        "no datapath is attached to this control plane",
    )
}

fn filter(address: Option<IpAddr>, zone: Option<u16>) -> Filter {
    match (address, zone) {
        (Some(a), _) => Filter::Address(a),
        (None, Some(z)) => Filter::Zone(z),
        (None, None) => Filter::All,
    }
}

fn restore<K: Ord, V>(map: &mut std::collections::BTreeMap<K, V>, k: K, v: Option<V>) {
    match v {
        Some(v) => {
            map.insert(k, v);
        }
        None => {
            map.remove(&k);
        }
    }
}

// Re-exported for the fuzz target's invariant checks.
pub use desired::key as endpoint_key;

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
