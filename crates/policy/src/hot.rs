//! The verdict path's compact encodings. Everything a verdict reads is packed into a few
//! contiguous `u32` arrays so that one verdict touches a handful of cache lines instead of chasing a
//! pointer per rule, port list and group list:
//! - an endpoint is `[n_groups, n_ingress, n_egress, n_named, groups.., ingress.., egress..,
//!   (name, proto << 16 | port)..]` (groups sorted; policy ids in id order);
//! - a policy direction is a program of rules `[flags, n_ports, n_groups, cidr, (kind << 8 |
//!   proto, arg)*n_ports, group*n_groups]`, `cidr` indexing the policy's [`CidrTable`]s.
//!
//! Both are built only by this crate (so they are well formed), are immutable once built, and are
//! read with checked slicing so that even a malformed array yields "no match", never a panic.

use core::net::IpAddr;

use crate::cidr::CidrTable;
use crate::engine::{NamedPort, PortMatch, Rule};
use crate::spec::Protocol;

const HEADER: usize = 4;
/// Rule flag: no `from`/`to` list — every peer.
const ALL_PEERS: u32 = 1;
/// Rule flag: no `ports` list — every port and protocol.
const ALL_PORTS: u32 = 2;
/// No ipBlock in the rule.
const NO_CIDR: u32 = u32::MAX;
/// `cidr` field flag: the table is inlined after the groups, `cidr & 0xffff` words long. Small
/// tables (the usual one block and a few exceptions) live in the program itself, saving two
/// pointer chases per verdict; larger ones are indices into the policy's table list.
const INLINE: u32 = 1 << 31;
/// Inline entry header bits: prefix length in the low byte, then these flags; the network follows
/// as one word (IPv4) or four (IPv6, most significant first).
const ENTRY_V6: u32 = 1 << 8;
const ENTRY_MEMBER: u32 = 1 << 9;
/// Tables of at most this many prefixes are inlined.
const INLINE_MAX: usize = 8;

const KIND_ALL: u32 = 0;
const KIND_RANGE: u32 = 1;
const KIND_NAMED: u32 = 2;

impl Protocol {
    /// The IP protocol number (TCP 6, UDP 17, SCTP 132).
    #[inline]
    pub fn ip_number(&self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Sctp => 132,
            Self::Other(n) => *n,
        }
    }
}

/// Packs an endpoint's groups, selecting policies and named ports.
pub(crate) fn encode_endpoint(
    groups: &[u32],
    ingress: &[u32],
    egress: &[u32],
    named: &[NamedPort],
) -> Box<[u32]> {
    let mut v =
        Vec::with_capacity(HEADER + groups.len() + ingress.len() + egress.len() + 2 * named.len());
    v.extend([
        groups.len() as u32,
        ingress.len() as u32,
        egress.len() as u32,
        named.len() as u32,
    ]);
    v.extend_from_slice(groups);
    v.extend_from_slice(ingress);
    v.extend_from_slice(egress);
    for n in named {
        v.push(n.name);
        v.push(u32::from(n.protocol.ip_number()) << 16 | u32::from(n.port));
    }
    v.into_boxed_slice()
}

/// Read side of [`encode_endpoint`] (and of the address table's inline copy): the words after
/// the header and the cumulative ends of the four parts, so a copy is 32 bytes, not four slices.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HotEndpoint<'a> {
    words: &'a [u32],
    /// Ends of groups, ingress, egress and named ports within `words`.
    ends: [u32; 4],
}

impl<'a> HotEndpoint<'a> {
    /// From the four part lengths (named ports counted as pairs) and the words that follow.
    #[inline]
    pub(crate) fn from_counts(words: &'a [u32], g: u32, i: u32, e: u32, n: u32) -> Self {
        let a = g;
        let b = a.saturating_add(i);
        let c = b.saturating_add(e);
        let d = c.saturating_add(n.saturating_mul(2));
        Self {
            words,
            ends: [a, b, c, d],
        }
    }

    /// From the cumulative ends of the four parts within `words`.
    #[inline]
    pub(crate) fn from_ends(words: &'a [u32], ends: [u32; 4]) -> Self {
        Self { words, ends }
    }

    #[inline]
    pub(crate) fn decode(h: &'a [u32]) -> Self {
        match h.split_first_chunk::<HEADER>() {
            Some((&[g, i, e, n], words)) => Self::from_counts(words, g, i, e, n),
            None => Self::EMPTY,
        }
    }

    #[inline]
    fn part(&self, start: u32, end: u32) -> &'a [u32] {
        self.words
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    /// Sorted group ids.
    #[inline]
    pub(crate) fn groups(&self) -> &'a [u32] {
        self.part(0, self.ends[0])
    }

    /// Ids of the policies isolating the endpoint for ingress, in id order.
    #[inline]
    pub(crate) fn ingress(&self) -> &'a [u32] {
        self.part(self.ends[0], self.ends[1])
    }

    /// Ids of the policies isolating the endpoint for egress, in id order.
    #[inline]
    pub(crate) fn egress(&self) -> &'a [u32] {
        self.part(self.ends[1], self.ends[2])
    }

    /// `(name, proto << 16 | port)` pairs.
    #[inline]
    pub(crate) fn named(&self) -> &'a [u32] {
        self.part(self.ends[2], self.ends[3])
    }

    pub(crate) const EMPTY: HotEndpoint<'static> = HotEndpoint {
        words: &[],
        ends: [0; 4],
    };
}

/// Encodes a direction's rules; `cidrs` receives the rules' tables (indices stored in the program).
pub(crate) fn encode_rules(rules: &[Rule], cidrs: &mut Vec<CidrTable>) -> Box<[u32]> {
    let mut v = Vec::new();
    let mut inline = Vec::new();
    for r in rules {
        inline.clear();
        let mut flags = 0;
        let (ports, groups, cidr): (&[PortMatch], &[u32], u32) = {
            let ports = match &r.ports {
                None => {
                    flags |= ALL_PORTS;
                    &[][..]
                }
                Some(p) => &p[..],
            };
            match &r.peers {
                None => {
                    flags |= ALL_PEERS;
                    (ports, &[][..], NO_CIDR)
                }
                Some(p) => {
                    let cidr = if p.cidrs.is_empty() {
                        NO_CIDR
                    } else if let Some(entries) =
                        p.cidrs.small_entries().filter(|e| e.len() <= INLINE_MAX)
                    {
                        for (v6, len, bits, member) in entries {
                            let mut h = u32::from(len);
                            if v6 {
                                h |= ENTRY_V6;
                            }
                            if member {
                                h |= ENTRY_MEMBER;
                            }
                            inline.push(h);
                            if v6 {
                                inline.extend([
                                    (bits >> 96) as u32,
                                    (bits >> 64) as u32,
                                    (bits >> 32) as u32,
                                    bits as u32,
                                ]);
                            } else {
                                inline.push(bits as u32);
                            }
                        }
                        INLINE | inline.len() as u32
                    } else {
                        cidrs.push(p.cidrs.clone());
                        (cidrs.len() - 1) as u32
                    };
                    (ports, &p.groups[..], cidr)
                }
            }
        };
        v.extend([flags, ports.len() as u32, groups.len() as u32, cidr]);
        for p in ports {
            let (kind, proto, arg) = match *p {
                PortMatch::AllPorts(pr) => (KIND_ALL, pr, 0),
                PortMatch::Range {
                    protocol,
                    start,
                    end,
                } => (
                    KIND_RANGE,
                    protocol,
                    u32::from(start) << 16 | u32::from(end),
                ),
                PortMatch::Named { protocol, name } => (KIND_NAMED, protocol, name),
            };
            v.push(kind << 8 | u32::from(proto.ip_number()));
            v.push(arg);
        }
        v.extend_from_slice(groups);
        v.extend_from_slice(&inline);
    }
    v.into_boxed_slice()
}

/// A 64-bit summary of the (protocol, port) pairs a direction's rules can match: every such
/// pair's [`port_bit`] is set (all bits when a rule matches every port, a named port or a wide
/// range). A verdict tests it before reading a policy's program, so with many policies
/// selecting one pod, each allowing its own port, it reads only those that can match (the
/// usual case of one policy per service port). Mirrors [`first_match`]: a clear bit implies no
/// rule matches.
pub(crate) fn port_filter(rules: &[Rule]) -> u64 {
    /// Ranges up to this many ports set one bit each; wider ones set all.
    const SMALL_RANGE: u16 = 16;
    let mut f = 0u64;
    for r in rules {
        let Some(ports) = &r.ports else {
            return u64::MAX;
        };
        for p in ports {
            match *p {
                PortMatch::Range {
                    protocol,
                    start,
                    end,
                } if end.saturating_sub(start) < SMALL_RANGE => {
                    for port in start..=end {
                        f |= port_bit(protocol.ip_number(), port);
                    }
                }
                _ => return u64::MAX,
            }
        }
    }
    f
}

/// The bit of `(proto, port)` in a [`port_filter`].
#[inline(always)]
pub(crate) fn port_bit(proto: u8, port: u16) -> u64 {
    let x = (u64::from(proto) << 16 | u64::from(port)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    1 << (x >> 58)
}

/// Longest-prefix lookup in an inlined table (entries of each family longest first).
#[inline]
fn inline_contains(words: &[u32], addr: IpAddr) -> bool {
    let mut i = 0;
    while let Some(&h) = words.get(i) {
        let len = h & 0xff;
        if h & ENTRY_V6 == 0 {
            let Some(&bits) = words.get(i + 1) else {
                return false;
            };
            i += 2;
            if let IpAddr::V4(a) = addr {
                let mask = if len == 0 {
                    0
                } else {
                    u32::MAX << (32 - len.min(32))
                };
                if u32::from(a) & mask == bits {
                    return h & ENTRY_MEMBER != 0;
                }
            }
        } else {
            let Some(&[b0, b1, b2, b3]) = words.get(i + 1..i + 5) else {
                return false;
            };
            i += 5;
            if let IpAddr::V6(a) = addr {
                let bits = u128::from(b0) << 96
                    | u128::from(b1) << 64
                    | u128::from(b2) << 32
                    | u128::from(b3);
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len.min(128))
                };
                if u128::from(a) & mask == bits {
                    return h & ENTRY_MEMBER != 0;
                }
            }
        }
    }
    false
}

#[inline]
fn port_matches(w0: u32, arg: u32, proto: u8, port: u16, named: &[u32]) -> bool {
    if w0 & 0xff != u32::from(proto) {
        return false;
    }
    match w0 >> 8 {
        KIND_ALL => true,
        KIND_RANGE => (arg >> 16) as u16 <= port && port <= arg as u16,
        // Named ports resolve against the destination endpoint, on name and protocol.
        KIND_NAMED => {
            let want = u32::from(proto) << 16 | u32::from(port);
            named
                .as_chunks::<2>()
                .0
                .iter()
                .any(|&[n, w]| n == arg && w == want)
        }
        _ => false,
    }
}

/// Runs a direction's program; returns the index of the first rule that matches.
#[inline]
pub(crate) fn first_match(
    prog: &[u32],
    cidrs: &[CidrTable],
    peer_groups: &[u32],
    peer_addr: Option<IpAddr>,
    dst_named: &[u32],
    proto: u8,
    port: u16,
) -> Option<u32> {
    let mut rest = prog;
    let mut rule = 0;
    // One split per part of a rule (no re-slicing of the whole program).
    while let Some((&[flags, np, ng, cidr], body)) = rest.split_first_chunk::<HEADER>() {
        let inline_len = if cidr != NO_CIDR && cidr & INLINE != 0 {
            (cidr & 0xffff) as usize
        } else {
            0
        };
        let (ports, body) = body.split_at_checked(2 * np as usize)?;
        let (groups, body) = body.split_at_checked(ng as usize)?;
        let (table, body) = body.split_at_checked(inline_len)?;
        rest = body;
        let port_ok = flags & ALL_PORTS != 0
            || ports
                .as_chunks::<2>()
                .0
                .iter()
                .any(|&[w, arg]| port_matches(w, arg, proto, port, dst_named));
        if port_ok {
            let peer_ok = flags & ALL_PEERS != 0
                || groups.iter().any(|g| peer_groups.binary_search(g).is_ok())
                || (cidr != NO_CIDR
                    && peer_addr.is_some_and(|a| {
                        if cidr & INLINE != 0 {
                            inline_contains(table, a)
                        } else {
                            cidrs.get(cidr as usize).is_some_and(|t| t.contains(a))
                        }
                    }));
            if peer_ok {
                return Some(rule);
            }
        }
        rule += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(ports: Option<Vec<PortMatch>>) -> Rule {
        Rule {
            peers: None,
            ports: ports.map(Vec::into_boxed_slice),
        }
    }

    fn range(protocol: Protocol, start: u16, end: u16) -> PortMatch {
        PortMatch::Range {
            protocol,
            start,
            end,
        }
    }

    /// The filter never hides a port the program matches, and does hide most others.
    #[test]
    fn port_filter_covers_every_match_and_excludes_most_other_ports() {
        let sets = [
            vec![rule(Some(vec![range(Protocol::Tcp, 80, 80)]))],
            vec![
                rule(Some(vec![range(Protocol::Tcp, 80, 80)])),
                rule(Some(vec![
                    range(Protocol::Udp, 53, 53),
                    range(Protocol::Tcp, 8000, 8010),
                ])),
            ],
            vec![rule(Some(vec![range(Protocol::Sctp, 1000, 2000)]))],
            vec![rule(Some(vec![PortMatch::AllPorts(Protocol::Udp)]))],
            vec![rule(Some(vec![PortMatch::Named {
                protocol: Protocol::Tcp,
                name: 1,
            }]))],
            vec![rule(None)],
            vec![rule(Some(vec![]))],
            vec![],
        ];
        // Named port 1 is TCP 8080 on the destination.
        let named = [1, (6 << 16) + 8080];
        for rules in &sets {
            let f = port_filter(rules);
            let prog = encode_rules(rules, &mut Vec::new());
            let mut hidden = 0;
            for proto in [1u8, 6, 17, 132] {
                for port in 0..=10_000u16 {
                    let hit = first_match(&prog, &[], &[], None, &named, proto, port).is_some();
                    let bit = f & port_bit(proto, port) != 0;
                    assert!(
                        !hit || bit,
                        "{rules:?}: {proto}/{port} matches but is filtered"
                    );
                    hidden += usize::from(!bit);
                }
            }
            // Only explicit small port lists are selective.
            if f != u64::MAX && !rules.is_empty() && f != 0 {
                assert!(hidden > 30_000, "{rules:?}: only {hidden} of 40 004 hidden");
            }
        }
        assert_eq!(port_filter(&sets[2]), u64::MAX, "a wide range matches all");
        assert_eq!(port_filter(&sets[5]), u64::MAX, "no ports list matches all");
        assert_eq!(port_filter(&sets[7]), 0, "no rules match nothing");
    }
}
