//! Counters of one worker: per port (rx/tx packets and bytes, drops by named reason), per policy
//! rule (allowed packets/connections, denied packets/connections per isolating policy), per
//! (source group, destination group) pair (packets, bytes, connections), and the worker's own
//! totals (cache hits/misses, generated packets, revocations).
//!
//! Invariants: every dropped packet increments exactly one [`DropReason`] counter of the port it
//! arrived on (VPP's habit: each drop reason is a named counter). Counters are plain integers owned
//! by one worker (no atomics, no sharing on the hot path); readers take a copy and fold workers
//! together with [`Stats::merge`]. Tables are indexed densely (port index, rule index, pair index)
//! so the hot path does array increments only; they grow on the slow path or on a state swap, never
//! per packet of an established flow. Not `Sync`-shared: one `Stats` per worker.

use hashbrown::HashMap;
use podswitch_policy::{PolicyId, RuleRef};

/// Why a packet was dropped. Each variant is one named counter (see [`DropReason::ALL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// `parse_frame` rejected the frame.
    Malformed,
    /// Arrived on a port that is neither an endpoint port, the uplink nor a known tunnel.
    UnknownInputPort,
    /// 802.1Q / 802.1ad tagged frame on a pod port (pods are untagged).
    Vlan,
    /// Neither IPv4, IPv6 nor ARP.
    UnsupportedEthertype,
    /// Unicast frame whose destination MAC is not the router MAC.
    NotRouterMac,
    /// Source MAC is not the port's endpoint MAC.
    SpoofedMac,
    /// Source IP is not one of the port's endpoint addresses.
    SpoofedIp,
    /// ARP sender MAC or IP is not the port's endpoint's.
    SpoofedArp,
    /// ARP request for an address that is neither the gateway nor a known endpoint.
    ArpUnknownTarget,
    /// ARP reply or other ARP the router does not answer (no flooding).
    ArpNotRequest,
    /// Neighbour solicitation for an unknown target, or a DAD probe (unspecified source).
    NdUnknownTarget,
    /// Neighbour-discovery message that fails RFC 4861 §7.1 validation (hop limit, checksum, ...).
    NdInvalid,
    /// ICMPv6 control message the router does not handle (RS, NA, redirect, MLD, ...).
    Icmpv6Control,
    /// Multicast or broadcast IP destination (no flooding, no multicast routing).
    Multicast,
    /// Addressed to the gateway itself (the router terminates nothing but ARP/ND).
    ToRouter,
    /// No route: the destination is no known endpoint.
    UnknownDestination,
    /// IP fragment (podswitch does not reassemble; pods use PMTU discovery).
    Fragment,
    /// TTL / hop limit expired (an ICMP time exceeded was generated unless rate-limited).
    TtlExpired,
    /// Larger than the egress MTU with DF set, or IPv6 (an ICMP error was generated unless
    /// rate-limited).
    TooBig,
    /// Larger than the egress MTU without DF: we do not fragment (counted, silently dropped).
    TooBigNoDf,
    /// Policy denies the new connection.
    PolicyDenied,
    /// A packet of a connection that the current policy no longer allows (conntrack entry removed).
    Revoked,
    /// Conntrack classified the packet invalid.
    ConntrackInvalid,
    /// Conntrack refused to create the entry (table or zone full).
    ConntrackFull,
    /// Outer headers of a VXLAN frame failed the overlay's checks (unknown VNI, bad outer, ...).
    VxlanBadOuter,
    /// A VXLAN frame for another VTEP: the underlay delivered it to us anyway (a bridge floods
    /// frames for a MAC it has not learnt yet). Normal in small numbers; kept apart from
    /// `VxlanBadOuter` so that counter means broken or hostile tunnel traffic.
    VxlanNotLocal,
    /// The sending VTEP is not known.
    VxlanUnknownVtep,
    /// The inner frame failed to parse.
    VxlanBadInner,
    /// The sending VTEP does not own the inner source endpoint (cross-node anti-spoofing).
    VxlanSpoofed,
    /// Non-VXLAN traffic on the uplink (the switch carries only overlay traffic there).
    UplinkNotVxlan,
    /// Generated packets (ARP/ND replies, ICMP errors) had no spare buffer left in the batch.
    NoBuffer,
    /// The frame does not fit the buffer after encapsulation (headroom exhausted).
    NoHeadroom,
}

impl DropReason {
    /// Number of reasons (size of per-port drop arrays).
    pub const COUNT: usize = 32;
    /// Every reason, in counter order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Malformed,
        DropReason::UnknownInputPort,
        DropReason::Vlan,
        DropReason::UnsupportedEthertype,
        DropReason::NotRouterMac,
        DropReason::SpoofedMac,
        DropReason::SpoofedIp,
        DropReason::SpoofedArp,
        DropReason::ArpUnknownTarget,
        DropReason::ArpNotRequest,
        DropReason::NdUnknownTarget,
        DropReason::NdInvalid,
        DropReason::Icmpv6Control,
        DropReason::Multicast,
        DropReason::ToRouter,
        DropReason::UnknownDestination,
        DropReason::Fragment,
        DropReason::TtlExpired,
        DropReason::TooBig,
        DropReason::TooBigNoDf,
        DropReason::PolicyDenied,
        DropReason::Revoked,
        DropReason::ConntrackInvalid,
        DropReason::ConntrackFull,
        DropReason::VxlanBadOuter,
        DropReason::VxlanNotLocal,
        DropReason::VxlanUnknownVtep,
        DropReason::VxlanBadInner,
        DropReason::VxlanSpoofed,
        DropReason::UplinkNotVxlan,
        DropReason::NoBuffer,
        DropReason::NoHeadroom,
    ];

    /// Index of this reason's counter.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The counter's name (snake case, for metrics).
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownInputPort => "unknown_input_port",
            DropReason::Vlan => "vlan",
            DropReason::UnsupportedEthertype => "unsupported_ethertype",
            DropReason::NotRouterMac => "not_router_mac",
            DropReason::SpoofedMac => "spoofed_mac",
            DropReason::SpoofedIp => "spoofed_ip",
            DropReason::SpoofedArp => "spoofed_arp",
            DropReason::ArpUnknownTarget => "arp_unknown_target",
            DropReason::ArpNotRequest => "arp_not_request",
            DropReason::NdUnknownTarget => "nd_unknown_target",
            DropReason::NdInvalid => "nd_invalid",
            DropReason::Icmpv6Control => "icmpv6_control",
            DropReason::Multicast => "multicast",
            DropReason::ToRouter => "to_router",
            DropReason::UnknownDestination => "unknown_destination",
            DropReason::Fragment => "fragment",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::TooBig => "too_big",
            DropReason::TooBigNoDf => "too_big_no_df",
            DropReason::PolicyDenied => "policy_denied",
            DropReason::Revoked => "revoked",
            DropReason::ConntrackInvalid => "conntrack_invalid",
            DropReason::ConntrackFull => "conntrack_full",
            DropReason::VxlanBadOuter => "vxlan_bad_outer",
            DropReason::VxlanNotLocal => "vxlan_not_local",
            DropReason::VxlanUnknownVtep => "vxlan_unknown_vtep",
            DropReason::VxlanBadInner => "vxlan_bad_inner",
            DropReason::VxlanSpoofed => "vxlan_spoofed",
            DropReason::UplinkNotVxlan => "uplink_not_vxlan",
            DropReason::NoBuffer => "no_buffer",
            DropReason::NoHeadroom => "no_headroom",
        }
    }
}

/// Counters of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received (whole frames).
    pub rx_bytes: u64,
    /// Frames transmitted (forwarded and generated).
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Drops of frames received on this port, per [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
}

impl Default for PortStats {
    fn default() -> Self {
        PortStats {
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            drops: [0; DropReason::COUNT],
        }
    }
}

impl PortStats {
    /// Drops counted for `r`.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r.index()]
    }

    /// Total drops.
    pub fn drops_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    fn add(&mut self, o: &PortStats) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
    }
}

/// Packets, bytes and connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Traffic {
    /// Packets.
    pub packets: u64,
    /// Bytes (whole inner frames).
    pub bytes: u64,
    /// Connections (counted once, when created or denied).
    pub connections: u64,
}

impl Traffic {
    fn add(&mut self, o: &Traffic) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.connections += o.connections;
    }
}

/// A policy group as the datapath aggregates traffic: an endpoint's *primary group*.
///
/// The policy snapshot does not expose an endpoint's group ids, so the primary group is the
/// endpoint's namespace (the scope every NetworkPolicy is written in); addresses that are no
/// endpoint are [`GroupLabel::External`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupLabel {
    /// Endpoints of this namespace (or scope, for VMs and bare-metal servers).
    Namespace(String),
    /// Not an endpoint (outside the cluster's endpoints).
    External,
}

/// Counters of one worker, merged across workers on read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Per port id.
    pub ports: HashMap<u32, PortStats>,
    /// Allowed traffic per rule: packets of connections that rule allowed (both directions),
    /// connections it allowed.
    pub rules_allowed: HashMap<RuleRef, Traffic>,
    /// Denied packets and connections per isolating policy (no rule matched, so the policy that
    /// isolates the endpoint is what denied).
    pub policies_denied: HashMap<PolicyId, Traffic>,
    /// Per (source group, destination group) of the connection's original direction.
    pub groups: HashMap<(GroupLabel, GroupLabel), Traffic>,
    /// Packets whose flow-cache lookup hit.
    pub cache_hits: u64,
    /// Packets that took the slow path.
    pub cache_misses: u64,
    /// Connections removed because the current policy no longer allows them (on a packet or
    /// by revalidation).
    pub revoked_connections: u64,
    /// ARP replies and neighbour advertisements sent.
    pub neighbor_replies: u64,
    /// ICMP / ICMPv6 errors sent.
    pub icmp_errors: u64,
    /// ICMP errors suppressed by the rate limiter.
    pub icmp_rate_limited: u64,
}

impl Stats {
    /// Adds `other` into `self` (per-worker counters folded on read).
    pub fn merge(&mut self, other: &Stats) {
        for (p, s) in &other.ports {
            self.ports.entry(*p).or_default().add(s);
        }
        for (r, t) in &other.rules_allowed {
            self.rules_allowed.entry(*r).or_default().add(t);
        }
        for (p, t) in &other.policies_denied {
            self.policies_denied.entry(*p).or_default().add(t);
        }
        for (k, t) in &other.groups {
            self.groups.entry(k.clone()).or_default().add(t);
        }
        self.cache_hits += other.cache_hits;
        self.cache_misses += other.cache_misses;
        self.revoked_connections += other.revoked_connections;
        self.neighbor_replies += other.neighbor_replies;
        self.icmp_errors += other.icmp_errors;
        self.icmp_rate_limited += other.icmp_rate_limited;
    }

    /// The counters of `port` (zero if never seen).
    pub fn port(&self, port: u32) -> PortStats {
        self.ports.get(&port).copied().unwrap_or_default()
    }

    /// Drops for `reason` over all ports.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.ports.values().map(|p| p.dropped(reason)).sum()
    }

    /// Traffic between two namespaces' primary groups.
    pub fn between(&self, src: &GroupLabel, dst: &GroupLabel) -> Traffic {
        self.groups
            .get(&(src.clone(), dst.clone()))
            .copied()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_indexed_densely_and_named_uniquely() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut names: Vec<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn merge_adds_every_counter() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        a.ports.entry(1).or_default().drops[DropReason::SpoofedIp.index()] = 2;
        b.ports.entry(1).or_default().drops[DropReason::SpoofedIp.index()] = 3;
        b.ports.entry(2).or_default().rx_packets = 7;
        b.cache_hits = 4;
        let k = (GroupLabel::Namespace("a".into()), GroupLabel::External);
        b.groups.insert(
            k.clone(),
            Traffic {
                packets: 1,
                bytes: 64,
                connections: 1,
            },
        );
        a.merge(&b);
        a.merge(&b);
        assert_eq!(a.port(1).dropped(DropReason::SpoofedIp), 8);
        assert_eq!(a.port(2).rx_packets, 14);
        assert_eq!(a.cache_hits, 8);
        assert_eq!(a.groups[&k].bytes, 128);
        assert_eq!(a.dropped(DropReason::SpoofedIp), 8);
    }
}
