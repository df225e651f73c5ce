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

/// Read side of [`encode_endpoint`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct HotEndpoint<'a> {
    pub(crate) groups: &'a [u32],
    pub(crate) ingress: &'a [u32],
    pub(crate) egress: &'a [u32],
    pub(crate) named: &'a [u32],
}

impl<'a> HotEndpoint<'a> {
    #[inline]
    pub(crate) fn decode(h: &'a [u32]) -> Self {
        let (g, i, e, n) = match h.get(..HEADER) {
            Some(&[g, i, e, n]) => (g as usize, i as usize, e as usize, n as usize),
            _ => (0, 0, 0, 0),
        };
        let at = |start: usize, len: usize| h.get(start..start + len).unwrap_or_default();
        Self {
            groups: at(HEADER, g),
            ingress: at(HEADER + g, i),
            egress: at(HEADER + g + i, e),
            named: at(HEADER + g + i + e, 2 * n),
        }
    }

    pub(crate) const EMPTY: HotEndpoint<'static> = HotEndpoint {
        groups: &[],
        ingress: &[],
        egress: &[],
        named: &[],
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
            named.chunks_exact(2).any(|n| n[0] == arg && n[1] == want)
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
    let mut i = 0;
    let mut rule = 0;
    while let Some(&[flags, np, ng, cidr]) = prog.get(i..i + HEADER) {
        let (np, ng) = (np as usize, ng as usize);
        let body = i + HEADER;
        let ports = prog.get(body..body + 2 * np)?;
        let groups = prog.get(body + 2 * np..body + 2 * np + ng)?;
        let inline_len = if cidr != NO_CIDR && cidr & INLINE != 0 {
            (cidr & 0xffff) as usize
        } else {
            0
        };
        let table = prog.get(body + 2 * np + ng..body + 2 * np + ng + inline_len)?;
        i = body + 2 * np + ng + inline_len;
        let port_ok = flags & ALL_PORTS != 0
            || ports
                .chunks_exact(2)
                .any(|w| port_matches(w[0], w[1], proto, port, dst_named));
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
