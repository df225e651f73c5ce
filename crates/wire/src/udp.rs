//! UDP (RFC 768): a zero-copy [`Packet`] view and a [`Repr`] of the ports and payload.
//!
//! Owns the UDP header format and its checksum rules. Invariants: after [`Packet::new_checked`]
//! the length field is at least 8 and no longer than the buffer, so no accessor panics; the payload
//! is sliced to the length field (bytes past it are link padding, not UDP data).
//! Checksum rules: over IPv4 a stored zero means "no checksum" (RFC 768); a computed zero is sent
//! as `0xffff` so it is never confused with that. Over IPv6 a zero checksum is invalid
//! (RFC 8200 §8.1) unless the caller opted into RFC 6935's zero-checksum tunnels
//! ([`ZeroChecksum::Accept`], for VXLAN). Pure data, no allocation; `Send + Sync` when the buffer is.

use crate::checksum::{self, PseudoHeader};
use crate::field::{Field, Rest};
use crate::ip::IpProtocol;
use crate::{Error, Result};

mod field {
    use super::{Field, Rest};
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const PAYLOAD: Rest = 8..;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// Whether a zero checksum is acceptable over IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ZeroChecksum {
    /// RFC 8200 §8.1: an IPv6 receiver discards UDP with a zero checksum (the default).
    #[default]
    Reject,
    /// RFC 6935 / RFC 6936: a tunnel endpoint (VXLAN) may accept zero-checksum UDP over IPv6.
    Accept,
}

/// A read/write view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer and checks it with [`Packet::check_len`]; no accessor of the result panics.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header fits (`Truncated`), that the length field covers the header
    /// (`Malformed`) and that the buffer holds the whole datagram (`Truncated`).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN {
            Err(Error::Malformed)
        } else if field_len > len {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, f: Field) -> u16 {
        let b = &self.buffer.as_ref()[f];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// The length field: header plus payload, in octets.
    pub fn len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    /// Whether the length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// The stored checksum (zero: none was computed).
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// The payload, up to the length field (trailing link padding excluded).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = usize::from(self.len()).clamp(HEADER_LEN, b.len());
        &b[HEADER_LEN..end]
    }

    /// The datagram as the length field delimits it (what the checksum covers).
    fn datagram(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = usize::from(self.len()).clamp(HEADER_LEN, b.len());
        &b[..end]
    }

    /// Verifies the checksum under RFC 768 / RFC 8200 §8.1 rules, rejecting a zero checksum over
    /// IPv6. See [`Packet::verify_checksum_with`] for tunnels.
    pub fn verify_checksum(&self, ph: &PseudoHeader) -> bool {
        self.verify_checksum_with(ph, ZeroChecksum::Reject)
    }

    /// Verifies the checksum; `zero` says whether a zero checksum over IPv6 is acceptable.
    pub fn verify_checksum_with(&self, ph: &PseudoHeader, zero: ZeroChecksum) -> bool {
        if self.checksum() == 0 {
            // RFC 768: zero means "not computed" — valid over IPv4; over IPv6 only for RFC 6935
            // tunnels.
            return !ph.is_v6() || zero == ZeroChecksum::Accept;
        }
        let d = self.datagram();
        let sum = checksum::combine(&[ph.sum(IpProtocol::Udp, d.len() as u32), checksum::data(d)]);
        sum == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_u16_at(&mut self, f: Field, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        self.set_u16_at(field::SRC_PORT, v);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        self.set_u16_at(field::DST_PORT, v);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, v: u16) {
        self.set_u16_at(field::LENGTH, v);
    }

    /// Sets the checksum field (zero disables it over IPv4, or for an RFC 6935 tunnel over IPv6).
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16_at(field::CHECKSUM, v);
    }

    /// Mutable payload, up to the length field.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len()).clamp(HEADER_LEN, self.buffer.as_ref().len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Computes and stores the checksum over the length-delimited datagram; a computed zero is
    /// stored as `0xffff` (RFC 768).
    pub fn fill_checksum(&mut self, ph: &PseudoHeader) {
        self.set_checksum(0);
        let d = self.datagram();
        let sum = checksum::combine(&[ph.sum(IpProtocol::Udp, d.len() as u32), checksum::data(d)]);
        let stored = match checksum::finish(sum) {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(stored);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The high-level content of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload (borrowed from the parsed buffer).
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses a checked packet, verifying the checksum with RFC rules (zero rejected over IPv6).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&'a T>,
        ph: &PseudoHeader,
    ) -> Result<Repr<'a>> {
        Self::parse_with(packet, ph, ZeroChecksum::Reject)
    }

    /// Parses a checked packet; `zero` chooses whether a zero checksum over IPv6 is accepted.
    ///
    /// Checksum verification is skipped under `cfg(fuzzing)`.
    pub fn parse_with<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&'a T>,
        ph: &PseudoHeader,
        zero: ZeroChecksum,
    ) -> Result<Repr<'a>> {
        packet.check_len()?;
        #[allow(unexpected_cfgs)]
        let verify = !cfg!(fuzzing);
        if verify && !packet.verify_checksum_with(ph, zero) {
            return Err(Error::Checksum);
        }
        let b: &'a [u8] = T::as_ref(packet.buffer);
        let end = usize::from(packet.len());
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload: &b[HEADER_LEN..end],
        })
    }

    /// Bytes needed to emit this datagram.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes header and payload into `packet` and fills the checksum.
    ///
    /// # Panics
    /// If the buffer is shorter than [`Repr::buffer_len`] or the payload exceeds 65527 octets.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>, ph: &PseudoHeader) {
        let len = u16::try_from(self.buffer_len()).expect("UDP datagram longer than 65535 octets");
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        packet.payload_mut().copy_from_slice(self.payload);
        packet.fill_checksum(ph);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};
    use proptest::prelude::*;

    /// scapy: IP(src="10.1.2.3", dst="10.4.5.6")/UDP(sport=5353, dport=53)/b"\x12\x34query"
    const UDP_V4_BYTES: [u8; 15] = [
        0x14, 0xe9, 0x00, 0x35, 0x00, 0x0f, 0x6d, 0x88, 0x12, 0x34, 0x71, 0x75, 0x65, 0x72, 0x79,
    ];
    /// scapy: IPv6(src="2001:db8::1", dst="2001:db8::2")/UDP(sport=4789, dport=4789)/b"vxlan-ish payload"
    const UDP_V6_BYTES: [u8; 25] = [
        0x12, 0xb5, 0x12, 0xb5, 0x00, 0x19, 0x9f, 0x12, 0x76, 0x78, 0x6c, 0x61, 0x6e, 0x2d, 0x69,
        0x73, 0x68, 0x20, 0x70, 0x61, 0x79, 0x6c, 0x6f, 0x61, 0x64,
    ];

    const V4: PseudoHeader = PseudoHeader::V4 {
        src: Ipv4Addr::new(10, 1, 2, 3),
        dst: Ipv4Addr::new(10, 4, 5, 6),
    };
    const V6: PseudoHeader = PseudoHeader::V6 {
        src: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        dst: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
    };

    #[test]
    fn captured_v4_parses() {
        let p = Packet::new_checked(&UDP_V4_BYTES[..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.len(), p.checksum()),
            (5353, 53, 15, 0x6d88)
        );
        assert!(p.verify_checksum(&V4));
        let r = Repr::parse(&p, &V4).unwrap();
        assert_eq!(
            r,
            Repr {
                src_port: 5353,
                dst_port: 53,
                payload: b"\x12\x34query"
            }
        );
    }

    #[test]
    fn captured_v6_parses_and_wrong_addresses_fail() {
        let p = Packet::new_checked(&UDP_V6_BYTES[..]).unwrap();
        let r = Repr::parse(&p, &V6).unwrap();
        assert_eq!(
            (r.src_port, r.dst_port, r.payload),
            (4789, 4789, &b"vxlan-ish payload"[..])
        );
        let other = PseudoHeader::V6 {
            src: Ipv6Addr::LOCALHOST,
            dst: Ipv6Addr::LOCALHOST,
        };
        assert_eq!(Repr::parse(&p, &other), Err(Error::Checksum));
    }

    #[test]
    fn emit_matches_capture() {
        let r = Repr {
            src_port: 4789,
            dst_port: 4789,
            payload: b"vxlan-ish payload",
        };
        let mut buf = [0xa5u8; 25];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]), &V6);
        assert_eq!(buf, UDP_V6_BYTES);
        let r4 = Repr {
            src_port: 5353,
            dst_port: 53,
            payload: b"\x12\x34query",
        };
        let mut buf4 = [0xa5u8; 15];
        r4.emit(&mut Packet::new_unchecked(&mut buf4[..]), &V4);
        assert_eq!(buf4, UDP_V4_BYTES);
    }

    #[test]
    fn zero_checksum_rules() {
        let mut v4 = UDP_V4_BYTES;
        Packet::new_unchecked(&mut v4[..]).set_checksum(0);
        assert!(Packet::new_unchecked(&v4[..]).verify_checksum(&V4));
        let mut v6 = UDP_V6_BYTES;
        Packet::new_unchecked(&mut v6[..]).set_checksum(0);
        let p = Packet::new_checked(&v6[..]).unwrap();
        assert_eq!(Repr::parse(&p, &V6), Err(Error::Checksum));
        assert!(Repr::parse_with(&p, &V6, ZeroChecksum::Accept).is_ok());
    }

    /// A datagram whose checksum computes to zero must carry 0xffff (RFC 768), and verify.
    #[test]
    fn computed_zero_is_sent_as_ffff() {
        let ph = PseudoHeader::V4 {
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
        };
        // Pseudo-header sum is 17 + 10 (protocol + length); the header adds ports + length 10.
        // Choose a 2-byte payload making the total 0xffff, so the complement is zero.
        let base = checksum::combine(&[ph.sum(IpProtocol::Udp, 10), 1, 2, 10]);
        let fill = 0xffff - base;
        let r = Repr {
            src_port: 1,
            dst_port: 2,
            payload: &fill.to_be_bytes(),
        };
        let mut buf = [0xa5u8; 10];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]), &ph);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(&ph));
    }

    #[test]
    fn length_rules() {
        assert_eq!(
            Packet::new_checked(&UDP_V4_BYTES[..7]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&UDP_V4_BYTES[..14]).unwrap_err(),
            Error::Truncated
        );
        let mut short = UDP_V4_BYTES;
        short[5] = 7;
        assert_eq!(
            Packet::new_checked(&short[..]).unwrap_err(),
            Error::Malformed
        );
        // Trailing padding beyond the length field is not payload.
        let mut padded = [0u8; 20];
        padded[..15].copy_from_slice(&UDP_V4_BYTES);
        let p = Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.payload(), b"\x12\x34query");
        assert!(Repr::parse(&p, &V4).is_ok());
    }

    #[test]
    fn differential_against_oracles() {
        for (bytes, ph) in [(&UDP_V4_BYTES[..], V4), (&UDP_V6_BYTES[..], V6)] {
            let ours = Packet::new_checked(bytes).unwrap();
            let sm = smoltcp::wire::UdpPacket::new_checked(bytes).unwrap();
            let (s, d) = match ph {
                PseudoHeader::V4 { src, dst } => (
                    smoltcp::wire::IpAddress::Ipv4(src),
                    smoltcp::wire::IpAddress::Ipv4(dst),
                ),
                PseudoHeader::V6 { src, dst } => (
                    smoltcp::wire::IpAddress::Ipv6(src),
                    smoltcp::wire::IpAddress::Ipv6(dst),
                ),
            };
            assert_eq!(ours.src_port(), sm.src_port());
            assert_eq!(ours.dst_port(), sm.dst_port());
            assert_eq!(ours.len(), sm.len());
            assert_eq!(ours.payload(), sm.payload());
            assert_eq!(ours.verify_checksum(&ph), sm.verify_checksum(&s, &d));
            let (eh, rest) = etherparse::UdpHeader::from_slice(bytes).unwrap();
            assert_eq!(
                (eh.source_port, eh.destination_port, eh.length, eh.checksum),
                (
                    ours.src_port(),
                    ours.dst_port(),
                    ours.len(),
                    ours.checksum()
                )
            );
            assert_eq!(rest, ours.payload());
            let pn = pnet_packet::udp::UdpPacket::new(bytes).unwrap();
            let pn_sum = match ph {
                PseudoHeader::V4 { src, dst } => pnet_packet::udp::ipv4_checksum(&pn, &src, &dst),
                PseudoHeader::V6 { src, dst } => pnet_packet::udp::ipv6_checksum(&pn, &src, &dst),
            };
            assert_eq!(pn_sum, ours.checksum());
        }
    }

    fn ph_strategy() -> impl Strategy<Value = PseudoHeader> {
        prop_oneof![
            (any::<u32>(), any::<u32>()).prop_map(|(s, d)| PseudoHeader::V4 {
                src: s.into(),
                dst: d.into()
            }),
            (any::<u128>(), any::<u128>()).prop_map(|(s, d)| PseudoHeader::V6 {
                src: s.into(),
                dst: d.into()
            }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(sp in any::<u16>(), dp in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..64), ph in ph_strategy()) {
            let r = Repr { src_port: sp, dst_port: dp, payload: &payload };
            let mut buf = vec![0xa5u8; r.buffer_len()];
            r.emit(&mut Packet::new_unchecked(&mut buf[..]), &ph);
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum(&ph));
            prop_assert_ne!(p.checksum(), 0);
            prop_assert_eq!(Repr::parse(&p, &ph).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40), ph in ph_strategy()) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.src_port(), p.dst_port(), p.len(), p.checksum(), p.payload(), p.is_empty());
                let _ = Repr::parse(&p, &ph);
                prop_assert!(p.payload().len() + HEADER_LEN == usize::from(p.len()));
            }
        }
    }
}
