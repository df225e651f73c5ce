//! The Internet checksum family: the RFC 1071 one's-complement sum, the IPv4 and IPv6
//! pseudo-headers that TCP, UDP and ICMPv6 cover (RFC 793 §3.1, RFC 768, RFC 8200 §8.1), and the
//! RFC 1624 incremental update used when NAT or a TTL decrement rewrites a field.
//!
//! Conventions: [`data`], [`combine`] and the pseudo-header helpers return the *folded sum* (not yet
//! complemented); the value stored in a header is `!sum`. A header verifies when the folded sum over
//! it, checksum field included, is `0xffff`. [`update`] and friends take and return the *stored*
//! (complemented) value. Pure functions, no allocation, thread-safe.
//!
//! One protocol rule lives with the caller: a UDP checksum that computes to zero is transmitted as
//! `0xffff`, because zero means "no checksum" over IPv4 (RFC 768); see [`udp`](crate::udp).

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::ip::IpProtocol;

/// Folds a 64-bit accumulator of 16-bit words into a 16-bit one's-complement sum.
#[inline]
fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The folded one's-complement sum of `bytes` as big-endian 16-bit words (RFC 1071 §4.1); an odd
/// final byte is padded with zero.
///
/// Sums 32-bit big-endian words into a 64-bit accumulator, which is the same one's-complement sum
/// (RFC 1071 §2(B): the sum may be computed in wider words and folded at the end).
#[inline]
pub fn data(bytes: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        acc += u64::from(u32::from_be_bytes([c[4], c[5], c[6], c[7]]));
    }
    let mut rest = chunks.remainder();
    while rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [last] = rest {
        acc += u64::from(*last) << 8;
    }
    fold(acc)
}

/// One's-complement sum of several folded sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// Folded sum of the IPv4 pseudo-header (RFC 793 §3.1, RFC 768): source, destination, zero,
/// protocol, upper-layer length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, length: u16) -> u16 {
    let s = src.octets();
    let d = dst.octets();
    let acc = u64::from(u16::from_be_bytes([s[0], s[1]]))
        + u64::from(u16::from_be_bytes([s[2], s[3]]))
        + u64::from(u16::from_be_bytes([d[0], d[1]]))
        + u64::from(u16::from_be_bytes([d[2], d[3]]))
        + u64::from(u8::from(protocol))
        + u64::from(length);
    fold(acc)
}

/// Folded sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, 32-bit
/// upper-layer length, three zero bytes, next header.
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: IpProtocol, length: u32) -> u16 {
    let acc = u64::from(data(&src.octets()))
        + u64::from(data(&dst.octets()))
        + u64::from(length >> 16)
        + u64::from(length & 0xffff)
        + u64::from(u8::from(next_header));
    fold(acc)
}

/// The addresses of the IP header that carries a TCP, UDP or ICMPv6 message: the part of the
/// pseudo-header (RFC 9293 §3.1, RFC 768, RFC 8200 §8.1) that comes from the network layer.
///
/// The L4 modules take one of these in `verify_checksum`, `fill_checksum` and `Repr::parse`, so one
/// signature serves both address families without allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PseudoHeader {
    /// Carried over IPv4.
    V4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
    },
    /// Carried over IPv6 (the final destination, if a routing header is present).
    V6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
    },
}

impl PseudoHeader {
    /// Folded sum of the pseudo-header for an upper-layer message of `length` bytes.
    ///
    /// Over IPv4 the length field is 16 bits; a longer `length` cannot occur in an IPv4 datagram
    /// and is truncated, as the wire would.
    #[inline]
    pub fn sum(&self, protocol: IpProtocol, length: u32) -> u16 {
        match *self {
            PseudoHeader::V4 { src, dst } => pseudo_header_v4(src, dst, protocol, length as u16),
            PseudoHeader::V6 { src, dst } => pseudo_header_v6(src, dst, protocol, length),
        }
    }

    /// Whether this is the IPv6 form.
    #[inline]
    pub fn is_v6(&self) -> bool {
        matches!(self, PseudoHeader::V6 { .. })
    }
}

/// RFC 1624 eqn. 3 incremental update of a *stored* checksum when one 16-bit word changes from
/// `old` to `new`: `HC' = ~(~HC + ~m + m')`.
///
/// Eqn. 3 (rather than RFC 1141's eqn. 2) is what keeps the result from turning into `-0`
/// (`0xffff` where the full computation yields `0x0000`) — RFC 1624 §3.
#[inline]
#[must_use]
pub fn update(checksum: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!checksum) + u64::from(!old) + u64::from(new);
    !fold(acc)
}

/// Incremental update for a 32-bit field (an IPv4 address, or a port pair).
#[inline]
#[must_use]
pub fn update32(checksum: u16, old: u32, new: u32) -> u16 {
    let acc = u64::from(!checksum)
        + u64::from(!(old >> 16) & 0xffff)
        + u64::from(!old & 0xffff)
        + u64::from(new >> 16)
        + u64::from(new & 0xffff);
    !fold(acc)
}

/// Incremental update for a field of any even length (an IPv6 address): `old` and `new` must have
/// the same length; an odd trailing byte is treated as the high byte of a word, as in [`data`].
#[inline]
#[must_use]
pub fn update_bytes(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    let acc = u64::from(!checksum) + u64::from(!data(old)) + u64::from(data(new));
    !fold(acc)
}

/// The value to store in a checksum field given the folded sum of everything it covers (with the
/// field itself zeroed).
#[inline]
pub fn finish(sum: u16) -> u16 {
    !sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        assert_eq!(
            data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(data(&[]), 0);
    }

    /// A real IPv4 header verifies to 0xffff. Made with scapy:
    /// `IP(src="10.0.0.1", dst="10.0.0.2", id=0xa6f2, flags="DF", ttl=64)/ICMP()/(b"x"*56)`.
    /// (The skeleton's copy had checksum 0x7fb3, one off from the correct 0x7fb4.)
    #[test]
    fn captured_ipv4_header_verifies() {
        let hdr = [
            0x45, 0x00, 0x00, 0x54, 0xa6, 0xf2, 0x40, 0x00, 0x40, 0x01, 0x7f, 0xb4, 0x0a, 0x00,
            0x00, 0x01, 0x0a, 0x00, 0x00, 0x02,
        ];
        assert_eq!(data(&hdr), 0xffff);
    }

    #[test]
    fn pseudo_headers_match_byte_layout() {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(192, 168, 7, 9);
        let mut bytes = [0u8; 12];
        bytes[0..4].copy_from_slice(&src.octets());
        bytes[4..8].copy_from_slice(&dst.octets());
        bytes[9] = 17;
        bytes[10..12].copy_from_slice(&1234u16.to_be_bytes());
        assert_eq!(
            pseudo_header_v4(src, dst, IpProtocol::Udp, 1234),
            data(&bytes)
        );

        let src6: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst6: Ipv6Addr = "2001:db8::ffff:1".parse().unwrap();
        let mut b6 = [0u8; 40];
        b6[0..16].copy_from_slice(&src6.octets());
        b6[16..32].copy_from_slice(&dst6.octets());
        b6[32..36].copy_from_slice(&70_000u32.to_be_bytes());
        b6[39] = 58;
        assert_eq!(
            pseudo_header_v6(src6, dst6, IpProtocol::Icmpv6, 70_000),
            data(&b6)
        );
    }

    /// RFC 1624 §4's example: a header whose checksum is 0xdd2f, word 0x5555 → 0x3285.
    #[test]
    fn rfc1624_example() {
        assert_eq!(update(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    proptest::proptest! {
        #[test]
        fn incremental_equals_full(
            mut buf in proptest::collection::vec(proptest::prelude::any::<u8>(), 4..64),
            word in 0usize..30,
            new in proptest::prelude::any::<u32>(),
        ) {
            let len = buf.len() & !3;
            buf.truncate(len);
            let at = (word * 2) % (len - 2);
            let at = at & !1;
            let stored = finish(data(&buf));
            let old16 = u16::from_be_bytes([buf[at], buf[at + 1]]);
            let mut changed = buf.clone();
            changed[at..at + 2].copy_from_slice(&(new as u16).to_be_bytes());
            let full = finish(data(&changed));
            let inc = update(stored, old16, new as u16);
            // Both are valid encodings of the same sum; RFC 1624 eqn. 3 gives exactly the full
            // value except when the data sums to zero (where -0/+0 are both valid).
            proptest::prop_assert!(inc == full || (inc ^ full) == 0xffff && (inc == 0 || full == 0));

            if len >= 8 {
                let at4 = at & !3;
                let at4 = at4.min(len - 4);
                let at4 = at4 & !1;
                let old32 = u32::from_be_bytes([buf[at4], buf[at4 + 1], buf[at4 + 2], buf[at4 + 3]]);
                let mut ch = buf.clone();
                ch[at4..at4 + 4].copy_from_slice(&new.to_be_bytes());
                let full32 = finish(data(&ch));
                let inc32 = update32(stored, old32, new);
                proptest::prop_assert!(inc32 == full32 || (inc32 ^ full32) == 0xffff && (inc32 == 0 || full32 == 0));
                let incb = update_bytes(stored, &old32.to_be_bytes(), &new.to_be_bytes());
                proptest::prop_assert!(incb == full32 || (incb ^ full32) == 0xffff && (incb == 0 || full32 == 0));
            }
        }
    }
}
