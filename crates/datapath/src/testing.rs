//! The in-memory harness: a [`TestNode`] (policy engine, overlay, forwarding state, conntrack, one
//! [`Worker`]) built from namespaces, pods, remote endpoints, VTEPs and policies written as
//! Kubernetes YAML, so a test reads `node.inject(port, &frame, now)` and asserts on the
//! `Vec<(port, frame)>` that came out; a [`VirtualClock`]; and [`frames`], small builders of the
//! frames pods send (checksums filled by the wire crate's functions).
//!
//! Test support, not the hot path: it allocates freely. Deterministic; single-threaded.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::time::Duration;
use std::sync::Arc;

use podswitch_conntrack::{Config as CtConfig, Instant, Table};
use podswitch_flow::CacheError;
use podswitch_overlay::{Endpoint as OverlayEndpoint, LocalVtep, Overlay, OverlayError, Vtep};
use podswitch_policy::{
    ContainerPort, Endpoint, EndpointKind, EngineError, LoadError, PolicyEngine, Protocol, apply,
    parse_objects,
};
use podswitch_wire::ethernet::Address;

use crate::batch::{Batch, Disposition};
use crate::pipeline::Worker;
use crate::state::{LocalEndpoint, RouterConfig, State, StateBuilder, StateError};
use crate::stats::Stats;

/// A clock that moves only when told.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtualClock {
    now: Instant,
}

impl VirtualClock {
    /// A clock at `start`.
    pub fn at(start: Instant) -> VirtualClock {
        VirtualClock { now: start }
    }

    /// The current time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Moves the clock forward and returns the new time.
    pub fn advance(&mut self, d: Duration) -> Instant {
        self.now = self.now.after(d);
        self.now
    }
}

/// Why a test node could not be built or changed.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// The policy engine refused an object.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// YAML did not decode.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The overlay refused a VTEP or endpoint.
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    /// The forwarding state is inconsistent.
    #[error(transparent)]
    State(#[from] StateError),
    /// The flow cache could not be created.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// A pod (or VM) on this node.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Switch port.
    pub port: u32,
    /// MAC.
    pub mac: Address,
    /// Addresses.
    pub addrs: Vec<IpAddr>,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// Named container ports `(name, protocol, port)`.
    pub named_ports: Vec<(String, Protocol, u16)>,
    /// Port MTU.
    pub mtu: u16,
}

impl Pod {
    /// A pod with MTU 1500, no labels and no named ports.
    pub fn new(namespace: &str, name: &str, port: u32, mac: Address, addrs: &[IpAddr]) -> Pod {
        Pod {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            port,
            mac,
            addrs: addrs.to_vec(),
            labels: Vec::new(),
            named_ports: Vec::new(),
            mtu: 1500,
        }
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, k: &str, v: &str) -> Pod {
        self.labels.push((k.to_owned(), v.to_owned()));
        self
    }

    /// Adds a named container port.
    #[must_use]
    pub fn named_port(mut self, name: &str, protocol: Protocol, port: u16) -> Pod {
        self.named_ports.push((name.to_owned(), protocol, port));
        self
    }

    /// Sets the port MTU.
    #[must_use]
    pub fn mtu(mut self, mtu: u16) -> Pod {
        self.mtu = mtu;
        self
    }

    fn endpoint(&self, kind: EndpointKind) -> Endpoint {
        Endpoint {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            kind,
            labels: self.labels.iter().cloned().collect(),
            addrs: self.addrs.clone(),
            ports: self
                .named_ports
                .iter()
                .map(|(n, p, port)| ContainerPort {
                    name: Some(n.clone()),
                    protocol: *p,
                    port: *port,
                })
                .collect(),
        }
    }
}

/// An endpoint on another node (or a VM / bare-metal server) behind a VTEP.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The endpoint as policy sees it (its `port` and `mtu` are unused).
    pub pod: Pod,
    /// What it is.
    pub kind: EndpointKind,
    /// VTEP id.
    pub vtep: u32,
}

/// Builds a [`TestNode`]. Defaults: router MAC `02:00:00:00:00:01`, gateways `10.0.0.1` and
/// `fd00::1`, uplink port 1000, tunnel ports from 2000, local VTEP `192.168.0.1` (MAC
/// `02:00:00:00:01:01`, underlay MTU 1550, VNI 100), ICMP errors: burst 10, 10/s.
#[derive(Debug, Clone)]
pub struct TestNodeBuilder {
    router: RouterConfig,
    local_vtep: LocalVtep,
    namespaces: Vec<(String, Vec<(String, String)>)>,
    pods: Vec<Pod>,
    vteps: Vec<Vtep>,
    remotes: Vec<Remote>,
    yaml: Vec<String>,
    cache_capacity: usize,
    conntrack: CtConfig,
    subnet_gateways: Vec<IpAddr>,
}

impl Default for TestNodeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// The default router MAC of a test node.
pub const ROUTER_MAC: Address = Address([0x02, 0, 0, 0, 0, 0x01]);
/// The default IPv4 gateway of a test node.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The default IPv6 gateway of a test node.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
/// The default uplink port.
pub const UPLINK: u32 = 1000;
/// The default first tunnel port.
pub const TUNNEL_BASE: u32 = 2000;
/// The default VNI.
pub const VNI: u32 = 100;
/// The default local VTEP address.
pub const LOCAL_VTEP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
/// The default local VTEP MAC.
pub const LOCAL_VTEP_MAC: Address = Address([0x02, 0, 0, 0, 0x01, 0x01]);

impl TestNodeBuilder {
    /// A builder with the defaults above.
    pub fn new() -> TestNodeBuilder {
        TestNodeBuilder {
            router: RouterConfig {
                mac: ROUTER_MAC,
                gateway_v4: Some(GATEWAY_V4),
                gateway_v6: Some(GATEWAY_V6),
                uplink_port: UPLINK,
                tunnel_port_base: TUNNEL_BASE,
                icmp_burst: 10,
                icmp_per_second: 10,
            },
            local_vtep: LocalVtep::new(IpAddr::V4(LOCAL_VTEP), LOCAL_VTEP_MAC, 1550, &[VNI]),
            namespaces: Vec::new(),
            subnet_gateways: Vec::new(),
            pods: Vec::new(),
            vteps: Vec::new(),
            remotes: Vec::new(),
            yaml: Vec::new(),
            cache_capacity: 4096,
            conntrack: CtConfig {
                max_entries: 4096,
                shards: 16,
                ..CtConfig::default()
            },
        }
    }

    /// Replaces the router configuration.
    #[must_use]
    pub fn router(mut self, r: RouterConfig) -> Self {
        self.router = r;
        self
    }

    /// Adds a namespace subnet's gateway address (answered like the router's own gateway).
    #[must_use]
    pub fn subnet_gateway(mut self, addr: IpAddr) -> Self {
        self.subnet_gateways.push(addr);
        self
    }

    /// Replaces the local VTEP.
    #[must_use]
    pub fn local_vtep(mut self, v: LocalVtep) -> Self {
        self.local_vtep = v;
        self
    }

    /// Declares a namespace with labels.
    #[must_use]
    pub fn namespace(mut self, name: &str, labels: &[(&str, &str)]) -> Self {
        self.namespaces.push((
            name.to_owned(),
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ));
        self
    }

    /// Attaches a pod.
    #[must_use]
    pub fn pod(mut self, pod: Pod) -> Self {
        self.pods.push(pod);
        self
    }

    /// Adds a remote VTEP.
    #[must_use]
    pub fn vtep(mut self, v: Vtep) -> Self {
        self.vteps.push(v);
        self
    }

    /// Adds a remote endpoint behind VTEP `vtep`.
    #[must_use]
    pub fn remote(mut self, pod: Pod, kind: EndpointKind, vtep: u32) -> Self {
        self.remotes.push(Remote { pod, kind, vtep });
        self
    }

    /// Adds Kubernetes objects (NetworkPolicies, Namespaces, Pods) as YAML.
    #[must_use]
    pub fn yaml(mut self, text: &str) -> Self {
        self.yaml.push(text.to_owned());
        self
    }

    /// Flow-cache capacity.
    #[must_use]
    pub fn cache_capacity(mut self, n: usize) -> Self {
        self.cache_capacity = n;
        self
    }

    /// Conntrack configuration.
    #[must_use]
    pub fn conntrack(mut self, c: CtConfig) -> Self {
        self.conntrack = c;
        self
    }

    /// Builds the node and publishes its first state.
    pub fn build(self) -> Result<TestNode, TestError> {
        let mut engine = PolicyEngine::new();
        for (ns, labels) in &self.namespaces {
            engine.upsert_namespace(ns, labels.iter().cloned().collect());
        }
        for p in &self.pods {
            engine.upsert_endpoint(&p.endpoint(EndpointKind::Pod))?;
        }
        for r in &self.remotes {
            engine.upsert_endpoint(&r.pod.endpoint(r.kind))?;
        }
        for y in &self.yaml {
            apply(&mut engine, &parse_objects(y)?)?;
        }
        let mut overlay = Overlay::new(self.local_vtep.clone())?;
        for v in &self.vteps {
            overlay.add_vtep(*v)?;
        }
        for r in &self.remotes {
            for a in &r.pod.addrs {
                overlay.insert_endpoint(
                    *a,
                    OverlayEndpoint {
                        vtep: r.vtep,
                        mac: r.pod.mac,
                    },
                )?;
            }
        }
        let locals: Vec<LocalEndpoint> = self
            .pods
            .iter()
            .map(|p| LocalEndpoint {
                port: p.port,
                mac: p.mac,
                addrs: p.addrs.clone(),
                mtu: p.mtu,
            })
            .collect();
        let conntrack = Arc::new(Table::new(&self.conntrack));
        let overlay = Arc::new(overlay);
        let gateways = self.subnet_gateways;
        let state = Self::state(1, self.router, &mut engine, &overlay, &locals, &gateways)?;
        let worker = Worker::new(Arc::new(state), Arc::clone(&conntrack), self.cache_capacity)?;
        Ok(TestNode {
            engine,
            overlay,
            router: self.router,
            locals,
            subnet_gateways: gateways,
            generation: 1,
            conntrack,
            worker,
            batch: Batch::new(),
            clock: VirtualClock::at(Instant::from_secs(1)),
        })
    }

    fn state(
        generation: u64,
        router: RouterConfig,
        engine: &mut PolicyEngine,
        overlay: &Arc<Overlay>,
        locals: &[LocalEndpoint],
        subnet_gateways: &[IpAddr],
    ) -> Result<State, StateError> {
        let mut b = StateBuilder::new(generation, router, engine.commit(), Arc::clone(overlay));
        for l in locals {
            b.local(l.clone());
        }
        for g in subnet_gateways {
            b.subnet_gateway(*g);
        }
        b.build()
    }
}

/// One node in memory; see the module docs.
#[derive(Debug)]
pub struct TestNode {
    engine: PolicyEngine,
    overlay: Arc<Overlay>,
    router: RouterConfig,
    locals: Vec<LocalEndpoint>,
    subnet_gateways: Vec<IpAddr>,
    generation: u64,
    conntrack: Arc<Table>,
    worker: Worker,
    batch: Batch,
    /// The node's virtual clock (tests may also pass their own instants).
    pub clock: VirtualClock,
}

impl TestNode {
    /// A builder.
    pub fn builder() -> TestNodeBuilder {
        TestNodeBuilder::new()
    }

    /// Processes one frame arriving on `port` at `now`; returns every frame sent, as
    /// `(output port, bytes)`.
    pub fn inject(&mut self, port: u32, frame: &[u8], now: Instant) -> Vec<(u32, Vec<u8>)> {
        self.inject_batch(&[(port, frame)], now)
    }

    /// Processes up to [`BATCH_SIZE`](crate::BATCH_SIZE) frames as one batch.
    pub fn inject_batch(&mut self, frames: &[(u32, &[u8])], now: Instant) -> Vec<(u32, Vec<u8>)> {
        self.batch.clear();
        for (port, f) in frames {
            assert!(self.batch.push(*port, f), "batch full or frame too long");
        }
        self.worker.process(&mut self.batch, now);
        self.batch.outputs().map(|(p, f)| (p, f.to_vec())).collect()
    }

    /// Dispositions of the last batch's received frames, in order.
    pub fn dispositions(&self) -> Vec<Disposition> {
        self.batch
            .received()
            .iter()
            .map(crate::batch::Packet::disposition)
            .collect()
    }

    /// Disposition of the last batch's first frame.
    pub fn disposition(&self) -> Disposition {
        self.batch
            .received()
            .first()
            .map_or(Disposition::Pending, crate::batch::Packet::disposition)
    }

    /// Applies Kubernetes objects (YAML) and publishes a new state.
    pub fn apply_yaml(&mut self, text: &str) -> Result<(), TestError> {
        apply(&mut self.engine, &parse_objects(text)?)?;
        self.publish()
    }

    /// Removes a policy and publishes a new state. Returns whether it existed.
    pub fn remove_policy(&mut self, namespace: &str, name: &str) -> Result<bool, TestError> {
        let existed = self.engine.remove_policy(namespace, name);
        self.publish()?;
        Ok(existed)
    }

    /// Publishes the current desired state as a new generation to the worker.
    pub fn publish(&mut self) -> Result<(), TestError> {
        self.generation += 1;
        let st = TestNodeBuilder::state(
            self.generation,
            self.router,
            &mut self.engine,
            &self.overlay,
            &self.locals,
            &self.subnet_gateways,
        )?;
        self.worker.set_state(Arc::new(st));
        Ok(())
    }

    /// The worker's counters.
    pub fn stats(&self) -> Stats {
        self.worker.stats()
    }

    /// The worker.
    pub fn worker(&mut self) -> &mut Worker {
        &mut self.worker
    }

    /// The shared conntrack table.
    pub fn conntrack(&self) -> &Arc<Table> {
        &self.conntrack
    }

    /// The policy engine (e.g. to relabel); call [`TestNode::publish`] after changing it.
    pub fn engine(&mut self) -> &mut PolicyEngine {
        &mut self.engine
    }
}

/// Builders of the frames a test sends. Checksums are complete and correct.
pub mod frames {
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use podswitch_wire::IpProtocol;
    use podswitch_wire::checksum;
    use podswitch_wire::ethernet::Address;

    /// TCP flag bits (RFC 9293 §3.1).
    pub mod tcp_flags {
        /// FIN.
        pub const FIN: u8 = 0x01;
        /// SYN.
        pub const SYN: u8 = 0x02;
        /// RST.
        pub const RST: u8 = 0x04;
        /// PSH.
        pub const PSH: u8 = 0x08;
        /// ACK.
        pub const ACK: u8 = 0x10;
    }

    /// The transport part of an IP frame.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Transport {
        /// TCP with these fields.
        Tcp {
            /// Source port.
            sport: u16,
            /// Destination port.
            dport: u16,
            /// Flags.
            flags: u8,
            /// Sequence number.
            seq: u32,
            /// Acknowledgment number.
            ack: u32,
        },
        /// UDP.
        Udp {
            /// Source port.
            sport: u16,
            /// Destination port.
            dport: u16,
        },
        /// ICMP / ICMPv6 echo.
        Echo {
            /// Request (true) or reply.
            request: bool,
            /// Identifier.
            id: u16,
            /// Sequence number.
            seq: u16,
        },
    }

    /// An Ethernet + IPv4/IPv6 + transport frame.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct IpFrame {
        /// Source MAC.
        pub src_mac: Address,
        /// Destination MAC.
        pub dst_mac: Address,
        /// Source address.
        pub src: IpAddr,
        /// Destination address (same family).
        pub dst: IpAddr,
        /// TTL / hop limit.
        pub ttl: u8,
        /// IPv4 don't-fragment.
        pub df: bool,
        /// Transport.
        pub transport: Transport,
        /// Payload bytes (filled with a counter pattern).
        pub payload: usize,
    }

    impl IpFrame {
        /// A TCP segment with TTL 64, DF set, no payload.
        #[allow(clippy::too_many_arguments)]
        pub fn tcp(
            src_mac: Address,
            dst_mac: Address,
            src: IpAddr,
            dst: IpAddr,
            sport: u16,
            dport: u16,
            flags: u8,
            seq: u32,
            ack: u32,
        ) -> IpFrame {
            IpFrame {
                src_mac,
                dst_mac,
                src,
                dst,
                ttl: 64,
                df: true,
                transport: Transport::Tcp {
                    sport,
                    dport,
                    flags,
                    seq,
                    ack,
                },
                payload: 0,
            }
        }

        /// A UDP datagram with TTL 64, DF set, no payload.
        pub fn udp(
            src_mac: Address,
            dst_mac: Address,
            src: IpAddr,
            dst: IpAddr,
            sport: u16,
            dport: u16,
        ) -> IpFrame {
            IpFrame {
                src_mac,
                dst_mac,
                src,
                dst,
                ttl: 64,
                df: true,
                transport: Transport::Udp { sport, dport },
                payload: 0,
            }
        }

        /// An echo request or reply.
        pub fn echo(
            src_mac: Address,
            dst_mac: Address,
            src: IpAddr,
            dst: IpAddr,
            request: bool,
            id: u16,
        ) -> IpFrame {
            IpFrame {
                src_mac,
                dst_mac,
                src,
                dst,
                ttl: 64,
                df: true,
                transport: Transport::Echo {
                    request,
                    id,
                    seq: 1,
                },
                payload: 0,
            }
        }

        /// With this TTL.
        #[must_use]
        pub fn ttl(mut self, ttl: u8) -> IpFrame {
            self.ttl = ttl;
            self
        }

        /// With this many payload bytes.
        #[must_use]
        pub fn payload(mut self, n: usize) -> IpFrame {
            self.payload = n;
            self
        }

        /// With DF set or clear.
        #[must_use]
        pub fn df(mut self, df: bool) -> IpFrame {
            self.df = df;
            self
        }

        /// The frame bytes.
        pub fn build(&self) -> Vec<u8> {
            let v6 = self.dst.is_ipv6();
            let (proto, l4_hdr) = match self.transport {
                Transport::Tcp { .. } => (IpProtocol::Tcp, 20),
                Transport::Udp { .. } => (IpProtocol::Udp, 8),
                Transport::Echo { .. } if v6 => (IpProtocol::Icmpv6, 8),
                Transport::Echo { .. } => (IpProtocol::Icmp, 8),
            };
            let l4_len = l4_hdr + self.payload;
            let ip_hdr = if v6 { 40 } else { 20 };
            let mut f = vec![0u8; 14 + ip_hdr + l4_len];
            f[0..6].copy_from_slice(&self.dst_mac.0);
            f[6..12].copy_from_slice(&self.src_mac.0);
            f[12..14].copy_from_slice(&(if v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
            match (self.src, self.dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    let ip = &mut f[14..34];
                    ip[0] = 0x45;
                    ip[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
                    ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
                    ip[6] = if self.df { 0x40 } else { 0 };
                    ip[8] = self.ttl;
                    ip[9] = u8::from(proto);
                    ip[12..16].copy_from_slice(&s.octets());
                    ip[16..20].copy_from_slice(&d.octets());
                    let c = checksum::finish(checksum::data(&f[14..34]));
                    f[24..26].copy_from_slice(&c.to_be_bytes());
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    let ip = &mut f[14..54];
                    ip[0] = 0x60;
                    ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                    ip[6] = u8::from(proto);
                    ip[7] = self.ttl;
                    ip[8..24].copy_from_slice(&s.octets());
                    ip[24..40].copy_from_slice(&d.octets());
                }
                _ => panic!("mixed address families"),
            }
            let at = 14 + ip_hdr;
            for (i, b) in f[at + l4_hdr..].iter_mut().enumerate() {
                *b = i as u8;
            }
            let l4 = &mut f[at..];
            let csum_at = match self.transport {
                Transport::Tcp {
                    sport,
                    dport,
                    flags,
                    seq,
                    ack,
                } => {
                    l4[0..2].copy_from_slice(&sport.to_be_bytes());
                    l4[2..4].copy_from_slice(&dport.to_be_bytes());
                    l4[4..8].copy_from_slice(&seq.to_be_bytes());
                    l4[8..12].copy_from_slice(&ack.to_be_bytes());
                    l4[12] = 5 << 4;
                    l4[13] = flags;
                    l4[14..16].copy_from_slice(&64240u16.to_be_bytes());
                    16
                }
                Transport::Udp { sport, dport } => {
                    l4[0..2].copy_from_slice(&sport.to_be_bytes());
                    l4[2..4].copy_from_slice(&dport.to_be_bytes());
                    l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                    6
                }
                Transport::Echo { request, id, seq } => {
                    l4[0] = match (v6, request) {
                        (false, true) => 8,
                        (false, false) => 0,
                        (true, true) => 128,
                        (true, false) => 129,
                    };
                    l4[4..6].copy_from_slice(&id.to_be_bytes());
                    l4[6..8].copy_from_slice(&seq.to_be_bytes());
                    2
                }
            };
            let body = checksum::data(l4);
            let sum = if proto == IpProtocol::Icmp {
                body
            } else {
                let ph = match (self.src, self.dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => {
                        checksum::pseudo_header_v4(s, d, proto, l4_len as u16)
                    }
                    (IpAddr::V6(s), IpAddr::V6(d)) => {
                        checksum::pseudo_header_v6(s, d, proto, l4_len as u32)
                    }
                    _ => 0,
                };
                checksum::combine(&[ph, body])
            };
            let mut c = checksum::finish(sum);
            if proto == IpProtocol::Udp && c == 0 {
                c = 0xffff;
            }
            l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
            f
        }
    }

    /// A broadcast ARP request from `sender_mac`/`sender_ip` for `target_ip`.
    pub fn arp_request(sender_mac: Address, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
        let mut f = vec![0u8; 42];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&sender_mac.0);
        f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        f[14..22].copy_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
        f[22..28].copy_from_slice(&sender_mac.0);
        f[28..32].copy_from_slice(&sender_ip.octets());
        f[38..42].copy_from_slice(&target_ip.octets());
        f
    }

    /// A neighbour solicitation (RFC 4861 §4.3) from `src_mac`/`src_ip` for `target`, sent to the
    /// target's solicited-node multicast address with a source link-layer address option.
    pub fn neighbor_solicit(src_mac: Address, src_ip: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
        let t = target.octets();
        let dst = Ipv6Addr::new(
            0xff02,
            0,
            0,
            0,
            0,
            1,
            0xff00 | u16::from(t[13]),
            u16::from_be_bytes([t[14], t[15]]),
        );
        let mut f = vec![0u8; 14 + 40 + 32];
        f[0..6].copy_from_slice(&[0x33, 0x33, 0xff, t[13], t[14], t[15]]);
        f[6..12].copy_from_slice(&src_mac.0);
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        f[14] = 0x60;
        f[18..20].copy_from_slice(&32u16.to_be_bytes());
        f[20] = 58;
        f[21] = 255;
        f[22..38].copy_from_slice(&src_ip.octets());
        f[38..54].copy_from_slice(&dst.octets());
        let icmp = &mut f[54..];
        icmp[0] = 135;
        icmp[8..24].copy_from_slice(&t);
        icmp[24] = 1;
        icmp[25] = 1;
        icmp[26..32].copy_from_slice(&src_mac.0);
        let ph = checksum::pseudo_header_v6(src_ip, dst, IpProtocol::Icmpv6, 32);
        let c = checksum::finish(checksum::combine(&[ph, checksum::data(icmp)]));
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// Wraps `inner` in Ethernet + IPv4 + UDP (to port 4789, checksum 0 as RFC 7348 §5 allows) +
    /// VXLAN with `vni`, as a remote VTEP sends it.
    pub fn vxlan_v4(
        src_mac: Address,
        dst_mac: Address,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        vni: u32,
        sport: u16,
        inner: &[u8],
    ) -> Vec<u8> {
        let udp_len = 8 + 8 + inner.len();
        let mut f = vec![0u8; 14 + 20 + udp_len];
        f[0..6].copy_from_slice(&dst_mac.0);
        f[6..12].copy_from_slice(&src_mac.0);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.octets());
        let c = checksum::finish(checksum::data(&f[14..34]));
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let u = &mut f[34..];
        u[0..2].copy_from_slice(&sport.to_be_bytes());
        u[2..4].copy_from_slice(&4789u16.to_be_bytes());
        u[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        u[8] = 0x08;
        u[12..15].copy_from_slice(&vni.to_be_bytes()[1..4]);
        u[16..].copy_from_slice(inner);
        f
    }
}
