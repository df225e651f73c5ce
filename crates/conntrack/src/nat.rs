//! NAT: the translation requested when a connection is committed ([`Nat`]), the per-packet
//! rewrite the table derives from an entry ([`Rewrite`]), and [`rewrite`], which applies it to
//! an IPv4 or IPv6 packet in place with RFC 1624 incremental checksum updates.
//!
//! An entry stores its original tuple and its reply tuple; with NAT the reply tuple is the
//! inverse of the *translated* original, so a packet in either direction is rewritten to what
//! the far side expects: the inverse of the other direction's tuple. Checksums: the IPv4 header
//! checksum covers the addresses; TCP, UDP and ICMPv6 checksums cover the pseudo-header
//! (RFC 9293 §3.1, RFC 768, RFC 8200 §8.1) and the ports / identifier; ICMPv4's covers only the
//! identifier. A zero UDP checksum over IPv4 means "none" (RFC 768) and stays zero; an updated
//! UDP checksum that comes out as zero is sent as `0xffff`. SCTP's CRC32c covers the ports, so a
//! port change on SCTP is refused (`Unsupported`); its addresses are not covered and may change.
//! Bad input never panics: lengths are checked before the first byte is written. Pure functions.

use std::net::IpAddr;

use podswitch_wire::checksum;

use crate::tuple::{Key, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP, addr_bits};

/// An address and port (for ICMP echo SNAT, the port is the echo identifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Address.
    pub addr: IpAddr,
    /// Port, or ICMP echo identifier.
    pub port: u16,
}

impl Endpoint {
    /// An endpoint.
    pub fn new(addr: IpAddr, port: u16) -> Self {
        Endpoint { addr, port }
    }
}

/// The translation of a connection, given at commit: the source becomes `snat` and the
/// destination becomes `dnat` (a Service's ClusterIP:port → a chosen endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Nat {
    /// New source of original-direction packets.
    pub snat: Option<Endpoint>,
    /// New destination of original-direction packets.
    pub dnat: Option<Endpoint>,
}

impl Nat {
    /// No translation.
    pub const NONE: Nat = Nat {
        snat: None,
        dnat: None,
    };

    /// Destination NAT only.
    pub fn dnat(to: Endpoint) -> Self {
        Nat {
            snat: None,
            dnat: Some(to),
        }
    }

    /// Source NAT only.
    pub fn snat(to: Endpoint) -> Self {
        Nat {
            snat: Some(to),
            dnat: None,
        }
    }
}

/// The fields to rewrite in one packet (`None`: leave as is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rewrite {
    /// New source address.
    pub src: Option<IpAddr>,
    /// New destination address.
    pub dst: Option<IpAddr>,
    /// New TCP/UDP/SCTP source port.
    pub src_port: Option<u16>,
    /// New TCP/UDP/SCTP destination port.
    pub dst_port: Option<u16>,
    /// New ICMP/ICMPv6 echo identifier.
    pub icmp_id: Option<u16>,
}

impl Rewrite {
    /// The rewrite turning a packet with tuple `from` into one with tuple `to`, or `None` when
    /// they are equal.
    pub(crate) fn between(from: &Key, to: &Key) -> Option<Rewrite> {
        if from == to {
            return None;
        }
        let addr = |a: u128, b: u128| (a != b).then(|| crate::tuple::bits_addr(b, to.v6));
        let mut rw = Rewrite {
            src: addr(from.src, to.src),
            dst: addr(from.dst, to.dst),
            ..Rewrite::default()
        };
        if from.is_icmp() {
            rw.icmp_id = (from.sport != to.sport).then_some(to.sport);
        } else {
            rw.src_port = (from.sport != to.sport).then_some(to.sport);
            rw.dst_port = (from.dport != to.dport).then_some(to.dport);
        }
        Some(rw)
    }
}

/// Why a packet could not be rewritten. Nothing was written when this is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RewriteError {
    /// The buffer ends inside a header that must change.
    #[error("packet truncated")]
    Truncated,
    /// Not an IPv4 or IPv6 packet, or a header length field is impossible.
    #[error("malformed packet")]
    Malformed,
    /// A new address is not of the packet's family.
    #[error("address family mismatch")]
    Family,
    /// The rewrite needs something this module does not do (SCTP port change).
    #[error("unsupported rewrite")]
    Unsupported,
}

fn rd16(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

fn wr16(p: &mut [u8], at: usize, v: u16) {
    p[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Minimum transport header bytes needed to rewrite `proto` and its checksum offset.
fn l4_layout(proto: u8) -> Option<(usize, Option<usize>)> {
    match proto {
        PROTO_TCP => Some((20, Some(16))),
        PROTO_UDP => Some((8, Some(6))),
        PROTO_ICMP | PROTO_ICMPV6 => Some((8, Some(2))),
        PROTO_SCTP => Some((12, None)),
        _ => None,
    }
}

/// Applies `rw` to the IP packet in `packet` (starting at the IP header), updating the IPv4
/// header checksum and the transport checksum incrementally (RFC 1624). Non-first fragments
/// get their addresses rewritten only (they carry no transport header).
pub fn rewrite(packet: &mut [u8], rw: &Rewrite) -> Result<(), RewriteError> {
    let Some(&first) = packet.first() else {
        return Err(RewriteError::Truncated);
    };
    match first >> 4 {
        4 => rewrite_v4(packet, rw),
        6 => rewrite_v6(packet, rw),
        _ => Err(RewriteError::Malformed),
    }
}

/// Applies port / identifier changes and returns the updated transport checksum.
/// Lengths were checked by the caller.
fn rewrite_ports(p: &mut [u8], l4: usize, proto: u8, rw: &Rewrite, mut csum: u16) -> u16 {
    if proto == PROTO_ICMP || proto == PROTO_ICMPV6 {
        if let Some(id) = rw.icmp_id {
            let old = rd16(p, l4 + 4);
            csum = checksum::update(csum, old, id);
            wr16(p, l4 + 4, id);
        }
        return csum;
    }
    for (new, at) in [(rw.src_port, l4), (rw.dst_port, l4 + 2)] {
        if let Some(port) = new {
            let old = rd16(p, at);
            csum = checksum::update(csum, old, port);
            wr16(p, at, port);
        }
    }
    csum
}

fn check_rewrite(proto: u8, rw: &Rewrite, avail: usize) -> Result<(), RewriteError> {
    let touches_ports = rw.src_port.is_some() || rw.dst_port.is_some();
    let touches_id = rw.icmp_id.is_some();
    if proto == PROTO_SCTP && touches_ports {
        return Err(RewriteError::Unsupported);
    }
    let Some((need, _)) = l4_layout(proto) else {
        // Another protocol: only addresses can change.
        return if touches_ports || touches_id {
            Err(RewriteError::Unsupported)
        } else {
            Ok(())
        };
    };
    if avail < need {
        return Err(RewriteError::Truncated);
    }
    Ok(())
}

fn rewrite_v4(p: &mut [u8], rw: &Rewrite) -> Result<(), RewriteError> {
    if p.len() < 20 {
        return Err(RewriteError::Truncated);
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(RewriteError::Malformed);
    }
    if p.len() < ihl {
        return Err(RewriteError::Truncated);
    }
    let v4 = |a: Option<IpAddr>| -> Result<Option<u32>, RewriteError> {
        match a {
            None => Ok(None),
            Some(IpAddr::V4(x)) => Ok(Some(u32::from(x))),
            Some(IpAddr::V6(_)) => Err(RewriteError::Family),
        }
    };
    let (src, dst) = (v4(rw.src)?, v4(rw.dst)?);
    let proto = p[9];
    // Fragment offset (RFC 791 §3.1): only the first fragment carries the transport header.
    let first_fragment = rd16(p, 6).trailing_zeros() >= 13;
    let l4 = first_fragment.then_some(ihl);
    if let Some(l4) = l4 {
        check_rewrite(proto, rw, p.len() - l4)?;
    }
    let mut ip_csum = rd16(p, 10);
    let csum_at = l4.and_then(|l4| l4_layout(proto).and_then(|(_, c)| c.map(|c| l4 + c)));
    let mut l4_csum = csum_at.map(|at| rd16(p, at));
    // A zero UDP checksum over IPv4 means "no checksum" (RFC 768): leave it so.
    let udp_none = proto == PROTO_UDP && l4_csum == Some(0);
    let pseudo = matches!(proto, PROTO_TCP | PROTO_UDP) && !udp_none;
    for (new, at) in [(src, 12), (dst, 16)] {
        if let Some(new) = new {
            let old = u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]);
            ip_csum = checksum::update32(ip_csum, old, new);
            if pseudo {
                l4_csum = l4_csum.map(|c| checksum::update32(c, old, new));
            }
            p[at..at + 4].copy_from_slice(&new.to_be_bytes());
        }
    }
    wr16(p, 10, ip_csum);
    if let Some(l4) = l4 {
        if let (Some(at), Some(c)) = (csum_at, l4_csum) {
            let mut c = rewrite_ports(p, l4, proto, rw, c);
            if udp_none {
                return Ok(());
            }
            if proto == PROTO_UDP && c == 0 {
                c = 0xffff;
            }
            wr16(p, at, c);
        } else {
            rewrite_ports(p, l4, proto, rw, 0);
        }
    }
    Ok(())
}

fn rewrite_v6(p: &mut [u8], rw: &Rewrite) -> Result<(), RewriteError> {
    if p.len() < 40 {
        return Err(RewriteError::Truncated);
    }
    let v6 = |a: Option<IpAddr>| -> Result<Option<[u8; 16]>, RewriteError> {
        match a {
            None => Ok(None),
            Some(IpAddr::V6(x)) => Ok(Some(x.octets())),
            Some(IpAddr::V4(_)) => Err(RewriteError::Family),
        }
    };
    let (src, dst) = (v6(rw.src)?, v6(rw.dst)?);
    // Walk the extension headers to the transport header (RFC 8200 §4).
    let mut nh = p[6];
    let mut off = 40usize;
    let mut l4 = None;
    let mut walked = false;
    for _ in 0..8 {
        match nh {
            0 | 43 | 60 => {
                if p.len() < off + 2 {
                    return Err(RewriteError::Truncated);
                }
                nh = p[off];
                off += (usize::from(p[off + 1]) + 1) * 8;
            }
            44 => {
                if p.len() < off + 8 {
                    return Err(RewriteError::Truncated);
                }
                let frag_offset = rd16(p, off + 2) >> 3;
                nh = p[off];
                off += 8;
                if frag_offset != 0 {
                    // A later fragment carries no transport header: addresses only.
                    walked = true;
                    break;
                }
            }
            _ => {
                l4 = Some(off);
                walked = true;
                break;
            }
        }
    }
    if !walked {
        // Too long an extension-header chain: we could not find the checksum to fix.
        return Err(RewriteError::Unsupported);
    }
    if let Some(at) = l4 {
        if at > p.len() {
            return Err(RewriteError::Truncated);
        }
        check_rewrite(nh, rw, p.len() - at)?;
    }
    let csum_at = l4.and_then(|l4| l4_layout(nh).and_then(|(_, c)| c.map(|c| l4 + c)));
    let mut l4_csum = csum_at.map(|at| rd16(p, at));
    let pseudo = matches!(nh, PROTO_TCP | PROTO_UDP | PROTO_ICMPV6);
    for (new, at) in [(src, 8), (dst, 24)] {
        if let Some(new) = new {
            if pseudo {
                l4_csum = l4_csum.map(|c| checksum::update_bytes(c, &p[at..at + 16], &new));
            }
            p[at..at + 16].copy_from_slice(&new);
        }
    }
    if let Some(l4) = l4 {
        if let (Some(at), Some(c)) = (csum_at, l4_csum) {
            let mut c = rewrite_ports(p, l4, nh, rw, c);
            if nh == PROTO_UDP && c == 0 {
                c = 0xffff;
            }
            wr16(p, at, c);
        } else {
            rewrite_ports(p, l4, nh, rw, 0);
        }
    }
    Ok(())
}

/// Whether `a` and `b` are of one family (used to validate NAT requests).
pub(crate) fn same_family(a: IpAddr, b: IpAddr) -> bool {
    addr_bits(a).1 == addr_bits(b).1
}
