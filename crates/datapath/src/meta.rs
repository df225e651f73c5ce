//! Fills conntrack's [`PacketMeta`] from the wire crate's [`Headers`] (conntrack never parses).
//!
//! ICMP errors carry the tuple of the packet they quote (RFC 792, RFC 4443 §2.4(c)) so conntrack
//! can classify them as related; TCP SYNs carry their window-scale and SACK-permitted options
//! (RFC 7323 §2.2, RFC 2018) for the window checks. Every read is bounds-checked: a frame that does
//! not hold what `Headers` promised yields `None` (counted as malformed), never a panic. The
//! conntrack zone is 0: one zone for the whole node until tenants/VRFs exist. Pure functions.

use core::net::IpAddr;

use podswitch_conntrack::{L4 as MetaL4, PacketMeta, SctpMeta, TcpFlags, TcpMeta, Tuple};
use podswitch_policy::Protocol;
use podswitch_wire::frame::{Headers, L4};
use podswitch_wire::{IpProtocol, icmpv4, icmpv6};

/// The conntrack zone of every connection (one zone per node for now).
pub const ZONE: u16 = 0;

/// The IP packet's length (from the IP header; Ethernet padding excluded), if the frame holds it.
#[inline]
pub(crate) fn ip_len(h: &Headers, frame: &[u8]) -> Option<usize> {
    let l3 = usize::from(h.l3_offset);
    let ip = frame.get(l3..)?;
    let n = match h.ip()?.src {
        IpAddr::V4(_) => usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?])),
        IpAddr::V6(_) => 40 + usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?])),
    };
    (n <= ip.len()).then_some(n)
}

/// A meta to overwrite (unspecified addresses, UDP ports 0).
pub(crate) fn placeholder_meta() -> PacketMeta {
    let any = IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED);
    PacketMeta::udp(any, any, 0, 0)
}

/// Writes the packet summary conntrack needs into `m`; `false` (with `m` partly written) when
/// the frame is not IP or is inconsistent. In place rather than returned: callers build it
/// straight where it is used (the fast path into the conntrack batch), because building one on
/// the stack and moving it there stalled on store forwarding.
#[inline]
pub(crate) fn packet_meta_into(h: &Headers, frame: &[u8], m: &mut PacketMeta) -> bool {
    let Some(ip) = h.ip() else { return false };
    let Some(len) = ip_len(h, frame) else {
        return false;
    };
    m.zone = ZONE;
    m.src = ip.src;
    m.dst = ip.dst;
    m.len = len as u32;
    m.l4 = match h.l4 {
        L4::Tcp(t) => {
            let flags = TcpFlags(t.flags as u8);
            let (window_scale, sack_permitted) = if flags.contains(TcpFlags::SYN) {
                let Some(opts) = h.tcp_options().and_then(|r| frame.get(r)) else {
                    return false;
                };
                tcp_syn_options(opts)
            } else {
                (None, false)
            };
            MetaL4::Tcp(TcpMeta {
                src_port: t.src_port,
                dst_port: t.dst_port,
                flags,
                seq: t.seq,
                ack: t.ack,
                window: t.window,
                payload_len: u32::from(t.data_len),
                window_scale,
                sack_permitted,
            })
        }
        L4::Udp(u) => MetaL4::Udp {
            src_port: u.src_port,
            dst_port: u.dst_port,
        },
        L4::Sctp(s) => MetaL4::Sctp(SctpMeta {
            src_port: s.src_port,
            dst_port: s.dst_port,
            verification_tag: s.verification_tag,
            chunk_type: frame
                .get(usize::from(h.payload_offset))
                .copied()
                .unwrap_or(0),
        }),
        L4::Icmpv4(i) => match i.ty {
            8 | 0 => {
                let Some(id) = i.echo_id else { return false };
                MetaL4::IcmpEcho {
                    request: i.ty == 8,
                    id,
                }
            }
            // Errors that quote a datagram (RFC 792): unreachable, source quench, redirect,
            // time exceeded, parameter problem.
            3 | 4 | 5 | 11 | 12 => {
                let Some(q) = frame
                    .get(usize::from(h.l4_offset) + 8..)
                    .and_then(|b| icmpv4::Quoted::parse(b).ok())
                else {
                    return false;
                };
                MetaL4::IcmpError {
                    inner: quoted_tuple(
                        IpAddr::V4(q.src_addr),
                        IpAddr::V4(q.dst_addr),
                        q.protocol,
                        q.src_port().zip(q.dst_port()),
                        q.echo_ident().filter(|_| q.first8[0] == 8),
                    ),
                }
            }
            _ => MetaL4::Other(IpProtocol::Icmp),
        },
        L4::Icmpv6(i) => match i.ty {
            128 | 129 => {
                let Some(id) = i.echo_id else { return false };
                MetaL4::IcmpEcho {
                    request: i.ty == 128,
                    id,
                }
            }
            // RFC 4443 §2.1: types 1-4 are errors quoting the invoking packet.
            1..=4 => {
                let Some(q) = frame
                    .get(usize::from(h.l4_offset) + 8..)
                    .and_then(|b| icmpv6::Quoted::parse(b).ok())
                else {
                    return false;
                };
                MetaL4::IcmpError {
                    inner: quoted_tuple(
                        IpAddr::V6(q.src_addr),
                        IpAddr::V6(q.dst_addr),
                        q.next_header,
                        q.src_port().zip(q.dst_port()),
                        q.echo_ident().filter(|_| q.first8[0] == 128),
                    ),
                }
            }
            _ => MetaL4::Other(IpProtocol::Icmpv6),
        },
        L4::None => MetaL4::Other(ip.protocol),
    };
    true
}

fn quoted_tuple(
    src: IpAddr,
    dst: IpAddr,
    protocol: IpProtocol,
    ports: Option<(u16, u16)>,
    echo_request_id: Option<u16>,
) -> Tuple {
    if let Some(id) = echo_request_id {
        return Tuple::icmp_echo_request(src, dst, id);
    }
    let (sp, dp) = ports.unwrap_or((0, 0));
    Tuple::new(src, dst, protocol, sp, dp)
}

/// Window scale (kind 3) and SACK-permitted (kind 4) from a SYN's options (RFC 9293 §3.1 option
/// format: kind 0 ends the list, kind 1 is one-byte padding, others carry a length).
fn tcp_syn_options(mut opts: &[u8]) -> (Option<u8>, bool) {
    let (mut wscale, mut sack) = (None, false);
    while let Some((&kind, rest)) = opts.split_first() {
        match kind {
            0 => break,
            1 => opts = rest,
            _ => {
                let Some(&len) = rest.first() else { break };
                let len = usize::from(len);
                if len < 2 || len > opts.len() {
                    break;
                }
                match (kind, len) {
                    (3, 3) => wscale = Some(opts[2]),
                    (4, 2) => sack = true,
                    _ => {}
                }
                opts = &opts[len..];
            }
        }
    }
    (wscale, sack)
}

/// The policy protocol and destination port of a connection's original-direction tuple.
#[inline]
pub(crate) fn policy_key(protocol: IpProtocol, dst_port: u16) -> (Protocol, u16) {
    match Protocol::from_ip_number(u8::from(protocol)) {
        p @ (Protocol::Tcp | Protocol::Udp | Protocol::Sctp) => (p, dst_port),
        // ICMP and every other protocol: NetworkPolicy only matches them with port-less rules.
        p => (p, 0),
    }
}

/// Protocol number and ports of a meta, in the packet's direction.
#[inline]
pub(crate) fn meta_ports(m: &PacketMeta) -> (IpProtocol, u16, u16) {
    match m.l4 {
        MetaL4::Tcp(t) => (IpProtocol::Tcp, t.src_port, t.dst_port),
        MetaL4::Udp { src_port, dst_port } => (IpProtocol::Udp, src_port, dst_port),
        MetaL4::Sctp(s) => (IpProtocol::Sctp, s.src_port, s.dst_port),
        MetaL4::IcmpEcho { .. } | MetaL4::IcmpError { .. } => {
            if m.src.is_ipv6() {
                (IpProtocol::Icmpv6, 0, 0)
            } else {
                (IpProtocol::Icmp, 0, 0)
            }
        }
        MetaL4::Other(p) => (p, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn_options_are_found_past_padding_and_bad_lengths_stop_the_walk() {
        // MSS, SACK-permitted, timestamps, NOP, window scale 7.
        let opts = [
            2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        assert_eq!(tcp_syn_options(&opts), (Some(7), true));
        assert_eq!(tcp_syn_options(&[3, 9, 1]), (None, false));
        assert_eq!(tcp_syn_options(&[3]), (None, false));
        assert_eq!(tcp_syn_options(&[0, 3, 3, 7]), (None, false));
    }

    #[test]
    fn policy_keys_drop_ports_for_portless_protocols() {
        assert_eq!(policy_key(IpProtocol::Tcp, 80), (Protocol::Tcp, 80));
        assert_eq!(policy_key(IpProtocol::Icmp, 8), (Protocol::Other(1), 0));
    }
}
