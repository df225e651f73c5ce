//! Connection tuples: the public [`Tuple`] and the compact internal `Key` the table indexes.
//!
//! A tuple is (source, destination, protocol, source port, destination port). For ICMP and
//! ICMPv6 echo the "source port" is the echo identifier and the "destination port" is the ICMP
//! type, as in nf_conntrack's ICMP tuples: an echo request (type 8 / 128) inverts to the echo
//! reply (type 0 / 129) with the same identifier. For protocols without ports both ports are 0.
//! `Key` adds the zone and stores addresses as `u128` (IPv4 in the low 32 bits, with a family
//! flag) so that comparing and hashing keys is a few integer operations. Pure data, thread-safe.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use podswitch_wire::IpProtocol;

/// ICMPv4 echo request / reply types (RFC 792).
pub(crate) const ICMP_ECHO_REQUEST: u16 = 8;
pub(crate) const ICMP_ECHO_REPLY: u16 = 0;
/// ICMPv6 echo request / reply types (RFC 4443 §4).
pub(crate) const ICMPV6_ECHO_REQUEST: u16 = 128;
pub(crate) const ICMPV6_ECHO_REPLY: u16 = 129;

pub(crate) const PROTO_ICMP: u8 = 1;
pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
pub(crate) const PROTO_ICMPV6: u8 = 58;
pub(crate) const PROTO_SCTP: u8 = 132;

/// A connection's 5-tuple in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (same family as `src`).
    pub dst: IpAddr,
    /// IP protocol.
    pub protocol: IpProtocol,
    /// Source port; the identifier for ICMP echo.
    pub src_port: u16,
    /// Destination port; the ICMP type for ICMP echo.
    pub dst_port: u16,
}

impl Tuple {
    /// A TCP, UDP or SCTP tuple.
    pub fn new(
        src: IpAddr,
        dst: IpAddr,
        protocol: IpProtocol,
        src_port: u16,
        dst_port: u16,
    ) -> Self {
        Tuple {
            src,
            dst,
            protocol,
            src_port,
            dst_port,
        }
    }

    /// The tuple of an ICMP (IPv4) or ICMPv6 (IPv6) echo request with identifier `id`.
    pub fn icmp_echo_request(src: IpAddr, dst: IpAddr, id: u16) -> Self {
        let (protocol, ty) = if src.is_ipv4() {
            (IpProtocol::Icmp, ICMP_ECHO_REQUEST)
        } else {
            (IpProtocol::Icmpv6, ICMPV6_ECHO_REQUEST)
        };
        Tuple {
            src,
            dst,
            protocol,
            src_port: id,
            dst_port: ty,
        }
    }
}

/// The compact, zone-qualified form of a [`Tuple`] the table hashes and compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Key {
    pub src: u128,
    pub dst: u128,
    pub sport: u16,
    pub dport: u16,
    pub zone: u16,
    pub proto: u8,
    pub v6: bool,
}

impl Key {
    /// A 32-bit digest of the whole key, kept in an entry's hot line so that an update by
    /// handle checks the packet against the entry without reading the lines holding the keys.
    /// Not symmetric: a connection's two keys (addresses and ports swapped) differ.
    #[inline(always)]
    pub(crate) fn fingerprint(&self) -> u32 {
        let x = (self.src as u64)
            ^ ((self.src >> 64) as u64).rotate_left(7)
            ^ (self.dst as u64).rotate_left(23)
            ^ ((self.dst >> 64) as u64).rotate_left(41)
            ^ u64::from(self.sport) << 48
            ^ u64::from(self.dport) << 32
            ^ u64::from(self.zone) << 16
            ^ u64::from(self.proto) << 8
            ^ u64::from(self.v6);
        (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
    }
}

pub(crate) fn addr_bits(a: IpAddr) -> (u128, bool) {
    match a {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), false),
        IpAddr::V6(v6) => (u128::from(v6), true),
    }
}

pub(crate) fn bits_addr(bits: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(bits))
    } else {
        IpAddr::V4(Ipv4Addr::from(bits as u32))
    }
}

/// The echo type answering `ty`, or `None` if `ty` is not an echo type.
pub(crate) fn icmp_invert_type(ty: u16) -> Option<u16> {
    match ty {
        ICMP_ECHO_REQUEST => Some(ICMP_ECHO_REPLY),
        ICMP_ECHO_REPLY => Some(ICMP_ECHO_REQUEST),
        ICMPV6_ECHO_REQUEST => Some(ICMPV6_ECHO_REPLY),
        ICMPV6_ECHO_REPLY => Some(ICMPV6_ECHO_REQUEST),
        _ => None,
    }
}

impl Key {
    /// Builds the key of `t` in `zone`; `None` when the addresses are of different families.
    pub fn from_tuple(zone: u16, t: &Tuple) -> Option<Key> {
        let (src, v6a) = addr_bits(t.src);
        let (dst, v6b) = addr_bits(t.dst);
        if v6a != v6b {
            return None;
        }
        Some(Key {
            src,
            dst,
            sport: t.src_port,
            dport: t.dst_port,
            zone,
            proto: u8::from(t.protocol),
            v6: v6a,
        })
    }

    pub fn tuple(&self) -> Tuple {
        Tuple {
            src: bits_addr(self.src, self.v6),
            dst: bits_addr(self.dst, self.v6),
            protocol: IpProtocol::from(self.proto),
            src_port: self.sport,
            dst_port: self.dport,
        }
    }

    pub fn is_icmp(&self) -> bool {
        self.proto == PROTO_ICMP || self.proto == PROTO_ICMPV6
    }

    /// The key of a packet travelling the other way: addresses and ports swapped; for ICMP echo
    /// the identifier is kept and the type inverted. `None` for an ICMP type with no inverse.
    pub fn invert(&self) -> Option<Key> {
        let (sport, dport) = if self.is_icmp() {
            (self.sport, icmp_invert_type(self.dport)?)
        } else {
            (self.dport, self.sport)
        };
        Some(Key {
            src: self.dst,
            dst: self.src,
            sport,
            dport,
            ..*self
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invert_swaps_ports_and_maps_icmp_types() {
        let t = Tuple::new(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            IpProtocol::Tcp,
            1000,
            80,
        );
        let k = Key::from_tuple(3, &t).unwrap();
        let r = k.invert().unwrap();
        assert_eq!((r.sport, r.dport, r.zone), (80, 1000, 3));
        assert_eq!(r.invert().unwrap(), k);
        assert_eq!(k.tuple(), t);

        let e = Tuple::icmp_echo_request("fe80::1".parse().unwrap(), "fe80::2".parse().unwrap(), 7);
        let k = Key::from_tuple(0, &e).unwrap();
        let r = k.invert().unwrap();
        assert_eq!((r.sport, r.dport), (7, ICMPV6_ECHO_REPLY));
        assert_eq!(k.tuple(), e);
    }

    #[test]
    fn mixed_families_are_rejected() {
        let t = Tuple::new(
            "10.0.0.1".parse().unwrap(),
            "::1".parse().unwrap(),
            IpProtocol::Udp,
            1,
            2,
        );
        assert!(Key::from_tuple(0, &t).is_none());
    }
}
