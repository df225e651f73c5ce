//! What the control plane reads from the running datapath, through the [`Dataplane`] trait the
//! daemon implements (it owns the workers, so it merges their per-worker counters and flow caches;
//! the conntrack table is shared, so it lends a reference). Every method has a default meaning
//! "not available", so a controller without a datapath ([`NoDataplane`], tests, the fuzzer) still
//! answers: reads then report `unsupported` or empty counters.
//!
//! Also the conversions of datapath and conntrack types into the serialisable reply types,
//! naming ports, policies and rules as the operator wrote them. `Dataplane: Send + Sync`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use podswitch_conntrack::{ConnState, EntryInfo, Instant, Table, Tuple};
use podswitch_datapath::{DropReason, GroupLabel, State, Stats};
use podswitch_policy::{Direction, PolicyId, RuleRef};

use crate::proto::{
    ConnRecord, ConntrackCounters, Counters, FlowRecord, PortCounters, TrafficCounters,
};

/// The daemon's view of its datapath; see the module docs.
pub trait Dataplane: Send + Sync {
    /// Counters merged over every worker.
    fn stats(&self) -> Option<Stats> {
        None
    }

    /// The shared connection-tracking table.
    fn conntrack(&self) -> Option<&Table> {
        None
    }

    /// The datapath clock (conntrack deadlines are relative to it).
    fn now(&self) -> Option<Instant> {
        None
    }

    /// Up to `max` flow-cache entries over every worker.
    fn flows(&self, max: usize) -> Option<Vec<FlowRecord>> {
        let _ = max;
        None
    }

    /// Empties every worker's flow cache (each worker does it between batches); returns how many
    /// entries were dropped, if known.
    fn flush_flows(&self) -> Option<usize> {
        None
    }
}

/// No datapath attached.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDataplane;

impl Dataplane for NoDataplane {}

fn policy_name(state: &State, id: PolicyId) -> String {
    state
        .policy()
        .policy_name(id)
        .map_or_else(|| format!("policy#{}", id.0), |(ns, n)| format!("{ns}/{n}"))
}

fn rule_name(state: &State, r: &RuleRef) -> String {
    let dir = match r.direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    };
    format!("{} {dir}[{}]", policy_name(state, r.policy), r.rule)
}

fn group_name(g: &GroupLabel) -> String {
    match g {
        GroupLabel::Namespace(ns) => ns.clone(),
        GroupLabel::External => "external".to_owned(),
    }
}

/// Fills the datapath part of [`Counters`] from merged worker stats. `endpoint_of` names the
/// endpoint on a port.
pub fn fill_counters(
    c: &mut Counters,
    stats: &Stats,
    state: &State,
    endpoint_of: impl Fn(u32) -> Option<String>,
) {
    let mut ports: Vec<PortCounters> = stats
        .ports
        .iter()
        .map(|(&port, s)| PortCounters {
            port,
            endpoint: endpoint_of(port),
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            drops: DropReason::ALL
                .iter()
                .filter(|r| s.dropped(**r) > 0)
                .map(|r| (r.name().to_owned(), s.dropped(*r)))
                .collect(),
        })
        .collect();
    ports.sort_by_key(|p| p.port);
    let mut drops = BTreeMap::new();
    for r in DropReason::ALL {
        let n = stats.dropped(r);
        if n > 0 {
            drops.insert(r.name().to_owned(), n);
        }
    }
    let traffic = |what: String, t: &podswitch_datapath::Traffic| TrafficCounters {
        what,
        packets: t.packets,
        bytes: t.bytes,
        connections: t.connections,
    };
    let mut rules: Vec<TrafficCounters> = stats
        .rules_allowed
        .iter()
        .map(|(r, t)| traffic(rule_name(state, r), t))
        .collect();
    rules.sort_by(|a, b| a.what.cmp(&b.what));
    let mut denied: Vec<TrafficCounters> = stats
        .policies_denied
        .iter()
        .map(|(p, t)| traffic(policy_name(state, *p), t))
        .collect();
    denied.sort_by(|a, b| a.what.cmp(&b.what));
    let mut groups: Vec<TrafficCounters> = stats
        .groups
        .iter()
        .map(|((s, d), t)| traffic(format!("{} -> {}", group_name(s), group_name(d)), t))
        .collect();
    groups.sort_by(|a, b| a.what.cmp(&b.what));
    c.dataplane = true;
    c.ports = ports;
    c.drops = drops;
    c.rules_allowed = rules;
    c.policies_denied = denied;
    c.groups = groups;
    c.cache_hits = stats.cache_hits;
    c.cache_misses = stats.cache_misses;
    c.revoked_connections = stats.revoked_connections;
}

/// Conntrack table counters.
pub fn conntrack_counters(t: &Table) -> ConntrackCounters {
    let s = t.stats();
    ConntrackCounters {
        occupancy: s.occupancy,
        capacity: u64::from(t.capacity()),
        lookups: s.lookups,
        commits: s.commits,
        evictions: s.evictions,
        expirations: s.expirations,
        removals: s.removals,
    }
}

fn tuple_text(t: &Tuple) -> String {
    let mut s = String::new();
    let _ = write!(s, "{}:{} -> {}:{}", t.src, t.src_port, t.dst, t.dst_port);
    s
}

/// One conntrack entry for the wire; `now` makes the deadline relative (ms).
pub fn conn_record(e: &EntryInfo, now: Option<Instant>) -> ConnRecord {
    let state = match e.state {
        ConnState::Tcp(s) => format!("tcp {s:?}"),
        ConnState::Sctp(s) => format!("sctp {s:?}"),
        ConnState::Udp => "udp".to_owned(),
        ConnState::IcmpEcho => "icmp echo".to_owned(),
        ConnState::Other => "other".to_owned(),
    };
    ConnRecord {
        zone: e.zone,
        protocol: u8::from(e.original.protocol),
        original: tuple_text(&e.original),
        reply: tuple_text(&e.reply),
        state,
        replied: e.replied,
        assured: e.assured,
        expires: match now {
            Some(n) => e.expires.0.saturating_sub(n.0) / 1_000_000,
            None => e.expires.0,
        },
        packets: e.packets,
        bytes: e.bytes,
    }
}
