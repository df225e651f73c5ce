//! Rendering the merged counters for people and programs: a JSON document (the `--stats-file`
//! and the SIGUSR1 dump) and a one-line summary for the periodic log.
//!
//! The JSON names everything (ports by id and interface, drops by reason name, rules and
//! policies by `namespace/name`, groups by namespace), so tests and the demo read it without
//! knowing internal ids. Pure functions over a [`Merged`] snapshot and the state whose policy
//! ids it uses; allocation is fine here (control path, a few times a second).

use podswitch_conntrack::Stats as CtStats;
use podswitch_datapath::{DropReason, GroupLabel, State};
use podswitch_policy::Direction;
use serde_json::{Map, Value, json};

use crate::runner::Merged;

fn group(g: &GroupLabel) -> String {
    match g {
        GroupLabel::Namespace(ns) => ns.clone(),
        GroupLabel::External => "external".into(),
    }
}

fn drops(counts: &[u64; DropReason::COUNT]) -> Value {
    let mut m = Map::new();
    for r in DropReason::ALL {
        let n = counts[r.index()];
        if n != 0 {
            m.insert(r.name().into(), n.into());
        }
    }
    Value::Object(m)
}

/// The counters as a JSON document.
pub fn to_json(m: &Merged, state: &State, ct: &CtStats, uptime_secs: f64) -> Value {
    let policy = state.policy();
    let name = |id| {
        policy
            .policy_name(id)
            .map_or_else(|| format!("#{}", id.0), |(ns, n)| format!("{ns}/{n}"))
    };
    let mut ports = Map::new();
    let mut ids: Vec<u32> = m.stats.ports.keys().copied().collect();
    ids.extend(m.ports.iter().map(|p| p.id));
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let dp = m.stats.port(id);
        let io = m.ports.iter().find(|p| p.id == id);
        let mut o = json!({
            "rx_packets": dp.rx_packets,
            "rx_bytes": dp.rx_bytes,
            "tx_packets": dp.tx_packets,
            "tx_bytes": dp.tx_bytes,
            "drops": drops(&dp.drops),
        });
        if let Some(p) = io {
            o["interface"] = p.name.clone().into();
            o["worker"] = p.worker.into();
            o["io"] = json!({
                "rx_packets": p.stats.rx_packets,
                "tx_packets": p.stats.tx_packets,
                "tx_dropped": p.stats.tx_dropped,
                "rx_dropped": p.stats.rx_dropped,
            });
            if let Some(x) = p.stats.xdp {
                o["xdp"] = json!({
                    "rx_dropped": x.rx_dropped,
                    "rx_ring_full": x.rx_ring_full,
                    "rx_fill_ring_empty_descs": x.rx_fill_ring_empty_descs,
                    "tx_invalid_descs": x.tx_invalid_descs,
                });
            }
        }
        ports.insert(id.to_string(), o);
    }
    let mut total = [0u64; DropReason::COUNT];
    for p in m.stats.ports.values() {
        for r in DropReason::ALL {
            total[r.index()] += p.dropped(r);
        }
    }
    let mut rules: Vec<Value> = m
        .stats
        .rules_allowed
        .iter()
        .map(|(r, t)| {
            json!({
                "policy": name(r.policy),
                "direction": match r.direction { Direction::Ingress => "ingress", Direction::Egress => "egress" },
                "rule": r.rule,
                "packets": t.packets,
                "bytes": t.bytes,
                "connections": t.connections,
            })
        })
        .collect();
    rules.sort_by_key(|v| {
        (
            v["policy"].to_string(),
            v["direction"].to_string(),
            v["rule"].as_u64(),
        )
    });
    let mut denied: Vec<Value> = m
        .stats
        .policies_denied
        .iter()
        .map(|(p, t)| {
            json!({
                "policy": name(*p),
                "packets": t.packets,
                "connections": t.connections,
            })
        })
        .collect();
    denied.sort_by_key(|v| v["policy"].to_string());
    let mut groups: Vec<Value> = m
        .stats
        .groups
        .iter()
        .map(|((s, d), t)| {
            json!({
                "src": group(s),
                "dst": group(d),
                "packets": t.packets,
                "bytes": t.bytes,
                "connections": t.connections,
            })
        })
        .collect();
    groups.sort_by_key(|v| (v["src"].to_string(), v["dst"].to_string()));
    json!({
        "uptime_secs": uptime_secs,
        "generation": state.generation(),
        "realised": m.realised,
        "ports": ports,
        "drops": drops(&total),
        "rules_allowed": rules,
        "policies_denied": denied,
        "groups": groups,
        "cache": { "hits": m.stats.cache_hits, "misses": m.stats.cache_misses },
        "revoked_connections": m.stats.revoked_connections,
        "neighbor_replies": m.stats.neighbor_replies,
        "icmp_errors": m.stats.icmp_errors,
        "conntrack": {
            "occupancy": ct.occupancy,
            "commits": ct.commits,
            "expirations": ct.expirations,
            "evictions": ct.evictions,
            "invalid": ct.invalid_total(),
        },
        "runner": m.runner,
    })
}

/// One line for the periodic log.
pub fn summary(m: &Merged, ct: &CtStats) -> String {
    let (mut rx, mut tx, mut dropped) = (0u64, 0u64, 0u64);
    for p in m.stats.ports.values() {
        rx += p.rx_packets;
        tx += p.tx_packets;
        dropped += p.drops_total();
    }
    let mut top: Vec<(u64, &str)> = DropReason::ALL
        .iter()
        .map(|r| (m.stats.dropped(*r), r.name()))
        .filter(|(n, _)| *n > 0)
        .collect();
    top.sort_unstable_by(|a, b| b.cmp(a));
    let top: Vec<String> = top
        .iter()
        .take(3)
        .map(|(n, r)| format!("{r}={n}"))
        .collect();
    format!(
        "rx={rx} tx={tx} dropped={dropped} [{}] conns={} cache_hits={} misses={} lane={} sleeps={} gen={:?}",
        top.join(" "),
        ct.occupancy,
        m.stats.cache_hits,
        m.stats.cache_misses,
        m.runner.lane_sent,
        m.runner.sleeps,
        m.realised,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn json_names_ports_drops_and_groups() {
        let c = Config::from_toml(
            r#"
[node]
router_mac = "02:00:00:00:00:01"
gateway_v4 = "10.0.0.1"
[[ports]]
interface = "x"
port = 4
mac = "02:00:00:00:00:04"
ips = ["10.0.0.4"]
namespace = "n"
pod = "p"
"#,
        )
        .expect("config");
        let st = c.build_state(3).expect("state");
        let mut m = Merged::default();
        let p = m.stats.ports.entry(4).or_default();
        p.rx_packets = 9;
        p.drops[DropReason::PolicyDenied.index()] = 2;
        m.stats.groups.insert(
            (GroupLabel::Namespace("n".into()), GroupLabel::External),
            podswitch_datapath::Traffic {
                packets: 5,
                bytes: 500,
                connections: 1,
            },
        );
        m.realised = vec![3];
        let v = to_json(&m, &st, &CtStats::default(), 1.5);
        assert_eq!(v["generation"], 3);
        assert_eq!(v["ports"]["4"]["rx_packets"], 9);
        assert_eq!(v["ports"]["4"]["drops"]["policy_denied"], 2);
        assert_eq!(v["drops"]["policy_denied"], 2);
        assert_eq!(v["groups"][0]["src"], "n");
        assert_eq!(v["groups"][0]["dst"], "external");
        let line = summary(&m, &CtStats::default());
        assert!(line.contains("rx=9"), "{line}");
        assert!(line.contains("policy_denied=2"), "{line}");
    }
}
