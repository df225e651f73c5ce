//! `trace`: for one (src, dst, protocol, port) list every policy of the source's namespace (egress)
//! and of the destination's namespace (ingress), whether it selects the endpoint, whether it isolates
//! that direction, and for each rule whether its peers and its ports matched. It allocates and
//! walks all policies of the namespace, so it is for operators and tests, never the packet path.
//! Reads a [`Snapshot`] only; thread-safe as the snapshot is.

use core::fmt;
use core::net::IpAddr;

use crate::engine::{Decision, Direction, EndpointId, NamedPort, PolicyId, Snapshot, Verdict};
use crate::spec::Protocol;

/// One rule's evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleTrace {
    pub index: u32,
    pub peer_matched: bool,
    pub port_matched: bool,
}

/// One policy's evaluation for one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTrace {
    pub policy: PolicyId,
    pub namespace: String,
    pub name: String,
    pub direction: Direction,
    /// The policy's podSelector selects the endpoint.
    pub selects: bool,
    /// The policy has this policyType (so, if it selects, the endpoint is isolated).
    pub isolates: bool,
    pub rules: Vec<RuleTrace>,
}

/// The full trace of one verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub src: String,
    pub dst: String,
    pub protocol: Protocol,
    pub port: u16,
    pub verdict: Verdict,
    /// The decisions in words, with policy names (see [`Snapshot::describe_decision`]).
    pub egress_decision: String,
    pub ingress_decision: String,
    pub egress: Vec<PolicyTrace>,
    pub ingress: Vec<PolicyTrace>,
}

impl Snapshot {
    /// Explains [`Snapshot::verdict`] for the same arguments.
    pub fn explain(&self, src: IpAddr, dst: IpAddr, protocol: Protocol, port: u16) -> Explanation {
        let s = self.endpoint_by_addr(src);
        let d = self.endpoint_by_addr(dst);
        let verdict = self.verdict(src, dst, protocol, port);
        self.explain_inner(s, Some(src), d, Some(dst), protocol, port, verdict)
    }

    /// Explains [`Snapshot::verdict_between`] for the same arguments.
    pub fn explain_between(
        &self,
        src: EndpointId,
        dst: EndpointId,
        protocol: Protocol,
        port: u16,
    ) -> Explanation {
        let sa = self.view(src).and_then(|v| v.addr);
        let da = self.view(dst).and_then(|v| v.addr);
        let verdict = self.verdict_between(src, dst, protocol, port);
        self.explain_inner(Some(src), sa, Some(dst), da, protocol, port, verdict)
    }

    #[allow(clippy::too_many_arguments)]
    fn explain_inner(
        &self,
        s: Option<EndpointId>,
        sa: Option<IpAddr>,
        d: Option<EndpointId>,
        da: Option<IpAddr>,
        protocol: Protocol,
        port: u16,
        verdict: Verdict,
    ) -> Explanation {
        let describe = |id: Option<EndpointId>, a: Option<IpAddr>| {
            let addr = a.map(|a| a.to_string()).unwrap_or_default();
            match id.and_then(|id| self.endpoint_name(id)) {
                Some((ns, name)) => format!("{ns}/{name} ({addr})"),
                None => format!("external {addr}"),
            }
        };
        let no_groups: &[u32] = &[];
        let no_named: &[NamedPort] = &[];
        let sv = s.and_then(|id| self.view(id));
        let dv = d.and_then(|id| self.view(id));
        let dst_named = dv.map_or(no_named, |v| &v.named);
        let same = s.is_some() && s == d;
        let trace = |owner: Option<&crate::engine::EndpointView>,
                     direction: Direction,
                     peer_groups: &[u32],
                     peer_addr: Option<IpAddr>| {
            let mut out = Vec::new();
            let Some(owner) = owner else { return out };
            if same {
                return out;
            }
            for pid in self.policy_ids() {
                let Some(p) = self.policy(pid) else { continue };
                if p.spec.namespace != owner.namespace {
                    continue;
                }
                let selects = owner.groups().binary_search(&p.selector.0).is_ok();
                let rules = p.rules(direction);
                out.push(PolicyTrace {
                    policy: pid,
                    namespace: p.spec.namespace.clone(),
                    name: p.spec.name.clone(),
                    direction,
                    selects,
                    isolates: rules.is_some(),
                    rules: rules
                        .unwrap_or_default()
                        .iter()
                        .enumerate()
                        .map(|(i, r)| RuleTrace {
                            index: i as u32,
                            peer_matched: r.peer_matches(peer_groups, peer_addr),
                            port_matched: r.port_matches(protocol, port, dst_named),
                        })
                        .collect(),
                });
            }
            out
        };
        let egress = trace(
            sv,
            Direction::Egress,
            dv.map_or(no_groups, crate::engine::EndpointView::groups),
            da,
        );
        let ingress = trace(
            dv,
            Direction::Ingress,
            sv.map_or(no_groups, crate::engine::EndpointView::groups),
            sa,
        );
        Explanation {
            src: describe(s, sa),
            dst: describe(d, da),
            protocol,
            port,
            verdict,
            egress_decision: self.describe_decision(verdict.egress),
            ingress_decision: self.describe_decision(verdict.ingress),
            egress,
            ingress,
        }
    }

    /// Formats a decision with policy names.
    pub fn describe_decision(&self, d: Decision) -> String {
        let name = |p: PolicyId| {
            self.policy_name(p)
                .map_or_else(|| format!("#{}", p.0), |(ns, n)| format!("{ns}/{n}"))
        };
        match d {
            Decision::NotIsolated => "allowed (not isolated)".into(),
            Decision::NotAnEndpoint => "not enforced (external address)".into(),
            Decision::SameEndpoint => "allowed (same endpoint)".into(),
            Decision::Allowed(r) => {
                let dir = match r.direction {
                    Direction::Ingress => "ingress",
                    Direction::Egress => "egress",
                };
                format!("allowed by {} {dir}[{}]", name(r.policy), r.rule)
            }
            Decision::Denied { isolated_by } => {
                format!(
                    "denied (isolated by {}; no rule matched)",
                    name(isolated_by)
                )
            }
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} -> {} {}/{}",
            self.src, self.dst, self.protocol, self.port
        )?;
        for (title, list, decision) in [
            ("egress of source", &self.egress, &self.egress_decision),
            (
                "ingress of destination",
                &self.ingress,
                &self.ingress_decision,
            ),
        ] {
            writeln!(f, "  {title}: {decision}")?;
            for p in list {
                let why = match (p.selects, p.isolates) {
                    (false, _) => "podSelector does not select the endpoint",
                    (true, false) => "selects, but has no such policyType",
                    (true, true) if p.rules.is_empty() => "selects and isolates; no rules (deny)",
                    (true, true) => "selects and isolates",
                };
                writeln!(f, "    policy {}/{}: {why}", p.namespace, p.name)?;
                if p.selects && p.isolates {
                    for r in &p.rules {
                        writeln!(
                            f,
                            "      rule {}: peer {}, port {}",
                            r.index,
                            if r.peer_matched {
                                "matched"
                            } else {
                                "not matched"
                            },
                            if r.port_matched {
                                "matched"
                            } else {
                                "not matched"
                            }
                        )?;
                    }
                }
            }
        }
        write!(
            f,
            "  verdict: {}",
            if self.verdict.is_allowed() {
                "allowed"
            } else {
                "denied"
            }
        )
    }
}
