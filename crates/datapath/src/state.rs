//! [`State`]: the immutable forwarding state a worker runs on — the node's router identity
//! (router MAC, gateway addresses, uplink), the local endpoints (port, MAC, addresses, MTU), the
//! overlay (VTEPs with prebuilt headers, remote endpoints), the policy [`Snapshot`] and the
//! **generation** that stamps every decision cached from it.
//!
//! The control plane builds a new `State` with [`StateBuilder`] for every change and hands it to
//! each worker as an `Arc<State>` ([`Worker::set_state`](crate::Worker::set_state)), between
//! batches: no locks on the hot path. Invariants checked by [`StateBuilder::build`]: port ids are
//! unique (endpoint ports, the uplink and the tunnel ports `tunnel_port_base + vtep id` never
//! clash); an address belongs to at most one local endpoint and is not also a remote endpoint of
//! the overlay; every endpoint MTU is in 1280..=2000; the generation is the
//! caller's and must grow with every new state (the flow cache compares it for equality, so a
//! reused generation would resurrect stale decisions). Immutable after build; `Send + Sync`.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};
use podswitch_overlay::Overlay;
use podswitch_policy::Snapshot;
use podswitch_wire::ethernet::Address;

use crate::stats::GroupLabel;

/// A local endpoint: a pod (or VM) attached to one switch port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEndpoint {
    /// Switch port id.
    pub port: u32,
    /// The endpoint's MAC (anti-spoofing: its frames must carry it as source).
    pub mac: Address,
    /// Its addresses (anti-spoofing, routing).
    pub addrs: Vec<IpAddr>,
    /// MTU of the port (largest IP packet delivered to it).
    pub mtu: u16,
}

/// The node's router identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterConfig {
    /// The MAC the router answers ARP/ND with and routes from.
    pub mac: Address,
    /// IPv4 gateway address (ARP target, source of ICMPv4 errors).
    pub gateway_v4: Option<Ipv4Addr>,
    /// IPv6 gateway address (NS target, source of ICMPv6 errors).
    pub gateway_v6: Option<Ipv6Addr>,
    /// Port of the underlay uplink (VXLAN in and out).
    pub uplink_port: u32,
    /// Decapsulated frames arrive on port `tunnel_port_base + vtep id`.
    pub tunnel_port_base: u32,
    /// ICMP errors allowed in a burst (per worker).
    pub icmp_burst: u32,
    /// ICMP errors per second (per worker) after the burst.
    pub icmp_per_second: u32,
}

/// What a port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortKind {
    Endpoint,
    Uplink,
    Tunnel { vtep: u32 },
}

/// A port as the pipeline sees it.
#[derive(Debug, Clone)]
pub(crate) struct Port {
    pub(crate) id: u32,
    pub(crate) kind: PortKind,
    pub(crate) mac: Address,
    pub(crate) addrs: Box<[IpAddr]>,
    pub(crate) mtu: u16,
}

/// Where a destination address lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// A local endpoint: index into `State::ports`.
    Local { port: u16 },
    /// A remote endpoint behind a VTEP of the overlay.
    Remote { vtep: u32, mac: Address },
}

/// Why a state could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Two ports (endpoint, uplink or tunnel) share an id.
    #[error("port {0} is used twice (endpoint, uplink or tunnel port)")]
    DuplicatePort(u32),
    /// An address is claimed by two local endpoints, or by a local and a remote one.
    #[error("address {0} belongs to two endpoints")]
    DuplicateAddress(IpAddr),
    /// More ports than the dense port index holds.
    #[error("too many ports ({0}; at most 65535)")]
    TooManyPorts(usize),
    /// A port MTU below the IPv6 minimum (RFC 8200 §5) or above what a buffer holds.
    #[error("port {port}: MTU {mtu} outside 1280..=2000")]
    BadMtu {
        /// Port id.
        port: u32,
        /// The MTU.
        mtu: u16,
    },
}

/// The immutable forwarding state; see the module docs.
#[derive(Debug)]
pub struct State {
    pub(crate) generation: u64,
    pub(crate) router: RouterConfig,
    pub(crate) policy: Arc<Snapshot>,
    pub(crate) overlay: Arc<Overlay>,
    pub(crate) ports: Vec<Port>,
    pub(crate) port_index: HashMap<u32, u16>,
    /// `port_index` as a flat table for ids below [`DENSE_PORTS`] (`u16::MAX`: none): the hot
    /// path indexes it instead of hashing.
    pub(crate) port_dense: Box<[u16]>,
    pub(crate) routes: HashMap<IpAddr, Route>,
    /// Largest inner IP packet a VXLAN tunnel carries (underlay MTU minus the overhead).
    pub(crate) tunnel_mtu: u16,
    /// Namespace → group index; `groups[i]` names group `i`, the last one is External.
    pub(crate) group_ids: HashMap<String, u32>,
    pub(crate) groups: Vec<GroupLabel>,
    /// Gateway addresses of the namespaces' subnets besides the router's own (a pod's default
    /// route points at its subnet's first host); ARP/ND for them is answered with the router MAC.
    pub(crate) subnet_gateways: HashSet<IpAddr>,
}

impl State {
    /// The generation stamped on every decision cached from this state.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The policy snapshot.
    pub fn policy(&self) -> &Arc<Snapshot> {
        &self.policy
    }

    /// The overlay tables.
    pub fn overlay(&self) -> &Arc<Overlay> {
        &self.overlay
    }

    /// The router configuration.
    pub fn router(&self) -> &RouterConfig {
        &self.router
    }

    #[inline]
    pub(crate) fn port(&self, id: u32) -> Option<(u16, &Port)> {
        let i = match self.port_dense.get(id as usize) {
            Some(&u16::MAX) => return None,
            Some(&i) => i,
            None => *self.port_index.get(&id)?,
        };
        Some((i, self.ports.get(usize::from(i))?))
    }

    /// Local endpoints first (one hash lookup), then the overlay's remote endpoints.
    #[inline]
    pub(crate) fn route(&self, dst: IpAddr) -> Option<Route> {
        if let Some(r) = self.routes.get(&dst) {
            return Some(*r);
        }
        let e = self.overlay.endpoint(dst)?;
        Some(Route::Remote {
            vtep: e.vtep,
            mac: e.mac,
        })
    }

    /// The primary group of an address (slow path): the namespace of the policy endpoint that
    /// owns it, or External.
    pub(crate) fn group_of(&self, addr: IpAddr) -> u32 {
        let external = (self.groups.len() - 1) as u32;
        self.policy
            .endpoint_by_addr(addr)
            .and_then(|id| self.policy.endpoint_name(id))
            .and_then(|(ns, _)| self.group_ids.get(ns).copied())
            .unwrap_or(external)
    }

    pub(crate) fn is_gateway(&self, addr: IpAddr) -> bool {
        if self.subnet_gateways.contains(&addr) {
            return true;
        }
        match addr {
            IpAddr::V4(a) => self.router.gateway_v4 == Some(a),
            IpAddr::V6(a) => self.router.gateway_v6 == Some(a),
        }
    }

    /// Whether ARP/ND for `addr` is answered: the gateway or any known endpoint.
    pub(crate) fn answers_for(&self, addr: IpAddr) -> bool {
        self.is_gateway(addr) || self.route(addr).is_some()
    }
}

/// Port ids below this are looked up in a flat table.
const DENSE_PORTS: u32 = 4096;

/// Builds a [`State`].
#[derive(Debug, Clone)]
pub struct StateBuilder {
    generation: u64,
    router: RouterConfig,
    policy: Arc<Snapshot>,
    overlay: Arc<Overlay>,
    locals: Vec<LocalEndpoint>,
    subnet_gateways: Vec<IpAddr>,
}

impl StateBuilder {
    /// A builder for generation `generation` (must exceed every earlier state's).
    pub fn new(
        generation: u64,
        router: RouterConfig,
        policy: Arc<Snapshot>,
        overlay: Arc<Overlay>,
    ) -> StateBuilder {
        StateBuilder {
            generation,
            router,
            policy,
            overlay,
            locals: Vec::new(),
            subnet_gateways: Vec::new(),
        }
    }

    /// Adds the gateway address of a namespace subnet (its first host): the router answers
    /// ARP/ND for it with the router MAC and treats packets to it as addressed to the router,
    /// as it does for `RouterConfig::gateway_v4`/`gateway_v6`. Pods of every namespace can then
    /// use their own subnet's gateway as their default route.
    pub fn subnet_gateway(&mut self, addr: IpAddr) -> &mut Self {
        if !self.subnet_gateways.contains(&addr) {
            self.subnet_gateways.push(addr);
        }
        self
    }

    /// Adds a local endpoint.
    pub fn local(&mut self, ep: LocalEndpoint) -> &mut Self {
        self.locals.push(ep);
        self
    }

    /// Validates and builds.
    pub fn build(&self) -> Result<State, StateError> {
        let mut ports = Vec::new();
        let mut routes = HashMap::new();
        for ep in &self.locals {
            if !(1280..=2000).contains(&ep.mtu) {
                return Err(StateError::BadMtu {
                    port: ep.port,
                    mtu: ep.mtu,
                });
            }
            let idx = ports.len() as u16;
            for a in &ep.addrs {
                if routes.insert(*a, Route::Local { port: idx }).is_some()
                    || self.overlay.endpoint(*a).is_some()
                {
                    return Err(StateError::DuplicateAddress(*a));
                }
            }
            ports.push(Port {
                id: ep.port,
                kind: PortKind::Endpoint,
                mac: ep.mac,
                addrs: ep.addrs.clone().into_boxed_slice(),
                mtu: ep.mtu,
            });
        }
        let plain = |id, kind| Port {
            id,
            kind,
            mac: self.router.mac,
            addrs: Box::new([]),
            mtu: 0,
        };
        ports.push(plain(self.router.uplink_port, PortKind::Uplink));
        for v in self.overlay.vteps() {
            ports.push(plain(
                self.router.tunnel_port_base.wrapping_add(v.id),
                PortKind::Tunnel { vtep: v.id },
            ));
        }
        if ports.len() > usize::from(u16::MAX) {
            return Err(StateError::TooManyPorts(ports.len()));
        }
        let mut port_index = HashMap::with_capacity(ports.len());
        for (i, p) in ports.iter().enumerate() {
            if port_index.insert(p.id, i as u16).is_some() {
                return Err(StateError::DuplicatePort(p.id));
            }
        }
        let mut port_dense = vec![u16::MAX; DENSE_PORTS as usize].into_boxed_slice();
        for (id, i) in &port_index {
            if *id < DENSE_PORTS {
                port_dense[*id as usize] = *i;
            }
        }
        let mut group_ids = HashMap::new();
        let mut groups = Vec::new();
        for id in self.policy.endpoint_ids() {
            if let Some((ns, _)) = self.policy.endpoint_name(id)
                && !group_ids.contains_key(ns)
            {
                group_ids.insert(ns.to_owned(), groups.len() as u32);
                groups.push(GroupLabel::Namespace(ns.to_owned()));
            }
        }
        groups.push(GroupLabel::External);
        Ok(State {
            generation: self.generation,
            router: self.router,
            policy: Arc::clone(&self.policy),
            overlay: Arc::clone(&self.overlay),
            tunnel_mtu: self.overlay.pod_mtu(),
            ports,
            port_index,
            port_dense,
            routes,
            group_ids,
            groups,
            subnet_gateways: self.subnet_gateways.iter().copied().collect(),
        })
    }
}
