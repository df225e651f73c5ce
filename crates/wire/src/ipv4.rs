//! IPv4 headers (RFC 791 §3.1), with DSCP/ECN (RFC 2474, RFC 3168) in the old TOS byte.
//!
//! Owns the [`Packet`] view and the option-less [`Repr`]. Invariants after
//! [`Packet::new_checked`]: the buffer holds at least 20 bytes, IHL ≥ 5, the IHL-declared header
//! fits, total length ≥ header length and the buffer holds total length bytes. So [`Packet::options`]
//! and [`Packet::payload`] are in bounds; the payload is sliced to the total length, which drops
//! Ethernet padding after a short datagram. The version nibble and the checksum are checked by
//! [`Repr::parse`] (the checksum check is skipped under `cfg(fuzzing)`). Plain data, thread-safe.

use core::net::Ipv4Addr;

use crate::checksum;
use crate::field::Field;
use crate::ip::IpProtocol;
use crate::{Error, Result};

mod field {
    use super::Field;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// A read/write view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn addr(b: &[u8], r: Field) -> Ipv4Addr {
    Ipv4Addr::new(b[r.start], b[r.start + 1], b[r.start + 2], b[r.start + 3])
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps and checks a buffer.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` if the buffer is shorter than 20 bytes, the IHL header or the total length;
    /// `Malformed` if IHL < 5 or total length < header length.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = usize::from(self.header_len());
        if header_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len < header_len {
            return Err(Error::Truncated);
        }
        let total = usize::from(self.total_len());
        if total < header_len {
            return Err(Error::Malformed);
        }
        if len < total {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Consumes the view.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version nibble (4 for a valid packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated services code point (RFC 2474).
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification (RFC 3168).
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Total length, header included.
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT.start)
    }

    /// The reserved flag bit (must be zero, RFC 791).
    pub fn reserved_flag(&self) -> bool {
        self.buffer.as_ref()[field::FLG_OFF.start] & 0x80 != 0
    }

    /// Don't fragment.
    pub fn dont_frag(&self) -> bool {
        self.buffer.as_ref()[field::FLG_OFF.start] & 0x40 != 0
    }

    /// More fragments.
    pub fn more_frags(&self) -> bool {
        self.buffer.as_ref()[field::FLG_OFF.start] & 0x20 != 0
    }

    /// Fragment offset in units of 8 octets (RFC 791's unit).
    pub fn frag_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLG_OFF.start) & 0x1fff
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Stored header checksum.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        addr(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        addr(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// The header checksum verifies (RFC 791: the one's-complement sum over the header is zero).
    pub fn verify_checksum(&self) -> bool {
        let header = &self.buffer.as_ref()[..usize::from(self.header_len())];
        checksum::data(header) == 0xffff
    }

    /// Option bytes (between byte 20 and the IHL end); not interpreted here.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.header_len())]
    }

    /// Payload: from the IHL end to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[usize::from(self.header_len())..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version.
    pub fn set_version(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (value << 4);
    }

    /// Sets the header length in bytes (rounded down to a multiple of 4).
    pub fn set_header_len(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((value / 4) & 0x0f);
    }

    /// Sets DSCP.
    pub fn set_dscp(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (value << 2);
    }

    /// Sets ECN.
    pub fn set_ecn(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (value & 0x03);
    }

    /// Sets total length.
    pub fn set_total_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets identification.
    pub fn set_ident(&mut self, value: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets flags and fragment offset at once (reserved bit clear).
    pub fn set_flags_and_offset(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let word = (u16::from(dont_frag) << 14) | (u16::from(more_frags) << 13) | (offset & 0x1fff);
        self.buffer.as_mut()[field::FLG_OFF].copy_from_slice(&word.to_be_bytes());
    }

    /// Sets TTL.
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets protocol.
    pub fn set_protocol(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.into();
    }

    /// Sets the stored checksum.
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets source address.
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }

    /// Sets destination address.
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }

    /// Computes and stores the header checksum over the IHL header.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(&self.buffer.as_ref()[..usize::from(self.header_len())]);
        self.set_checksum(checksum::finish(sum));
    }

    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = usize::from(self.header_len())..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// The parsed fields of an IPv4 header. Options are not represented: `parse` skips them and
/// `emit` writes a 20-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source.
    pub src_addr: Ipv4Addr,
    /// Destination.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol.
    pub next_header: IpProtocol,
    /// Payload length (total length − header length).
    pub payload_len: u16,
    /// TTL.
    pub hop_limit: u8,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN (2 bits).
    pub ecn: u8,
    /// Identification.
    pub ident: u16,
    /// DF.
    pub dont_frag: bool,
    /// MF.
    pub more_frags: bool,
    /// Fragment offset in 8-octet units (13 bits).
    pub frag_offset: u16,
}

impl Repr {
    /// Parses a checked packet: version must be 4 (`Malformed`), the reserved flag clear
    /// (`Malformed`, RFC 791 "Bit 0: reserved, must be zero") and the checksum valid (`Checksum`).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.version() != 4 || packet.reserved_flag() {
            return Err(Error::Malformed);
        }
        // The fuzzer cannot forge checksums; skipping the check lets it reach deeper.
        #[allow(unexpected_cfgs)]
        let verify = !cfg!(fuzzing);
        if verify && !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.protocol(),
            payload_len: packet.total_len() - u16::from(packet.header_len()),
            hop_limit: packet.ttl(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
        })
    }

    /// Always 20: options are never emitted.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with a valid checksum; the payload is left alone.
    ///
    /// # Panics
    /// If the buffer is shorter than 20 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN as u8);
        packet.set_dscp(self.dscp);
        packet.set_ecn(self.ecn);
        packet.set_total_len(self.payload_len.saturating_add(HEADER_LEN as u16));
        packet.set_ident(self.ident);
        packet.set_flags_and_offset(self.dont_frag, self.more_frags, self.frag_offset);
        packet.set_ttl(self.hop_limit);
        packet.set_protocol(self.next_header);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::captured;
    use proptest::prelude::*;

    #[test]
    fn captured_tcp_syn() {
        let p = Packet::new_checked(&captured::TCP_SYN_V4[14..]).unwrap();
        assert!(p.verify_checksum());
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.src_addr, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(r.dst_addr, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(r.next_header, IpProtocol::Tcp);
        assert_eq!((r.dscp, r.ecn, r.hop_limit, r.ident), (46, 0, 64, 0x1234));
        assert!(r.dont_frag && !r.more_frags && r.frag_offset == 0);
        assert_eq!(usize::from(r.payload_len), p.payload().len());
        let mut buf = [0xa5u8; 20];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf[..], captured::TCP_SYN_V4[14..34]);
    }

    #[test]
    fn captured_options() {
        let p = Packet::new_checked(&captured::ICMP_V4_OPTIONS[14..]).unwrap();
        assert_eq!(p.header_len(), 32);
        assert_eq!(p.options()[0], 7); // record route
        assert_eq!(p.options().len(), 12);
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.next_header, IpProtocol::Icmp);
        assert_eq!(p.payload()[0], 8); // echo request
        assert_eq!(usize::from(r.payload_len), p.payload().len());
    }

    #[test]
    fn captured_fragments() {
        let first = Packet::new_checked(&captured::FRAG_V4_FIRST[14..]).unwrap();
        let later = Packet::new_checked(&captured::FRAG_V4_LATER[14..]).unwrap();
        let (f, l) = (Repr::parse(&first).unwrap(), Repr::parse(&later).unwrap());
        assert!(f.more_frags && f.frag_offset == 0 && f.ident == 0x5555);
        assert!(!l.more_frags && l.frag_offset == 3 && l.ident == 0x5555);
        assert_eq!(f.payload_len, 24);
    }

    #[test]
    fn padding_is_not_payload() {
        let mut b = captured::SCTP_V4[14..].to_vec();
        let n = b.len();
        b.extend_from_slice(&[0; 10]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload().len(), n - 20);
    }

    #[test]
    fn errors() {
        let good = &captured::TCP_SYN_V4[14..];
        assert_eq!(
            Packet::new_checked(&good[..19]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&good[..good.len() - 1]).unwrap_err(),
            Error::Truncated
        );
        let mut b = good.to_vec();
        b[0] = 0x44;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        b[0] = 0x4f; // a 60-byte header inside a 40-byte total length
        b[2..4].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        assert_eq!(Packet::new_checked(&b[..30]).unwrap_err(), Error::Truncated);
        let mut b = good.to_vec();
        b[0] = 0x65;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap_err(),
            Error::Malformed
        );
        let mut b = good.to_vec();
        b[6] |= 0x80;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap_err(),
            Error::Malformed
        );
        let mut b = good.to_vec();
        b[8] ^= 1;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap_err(),
            Error::Checksum
        );
    }

    #[test]
    fn oracles_agree_on_captured() {
        for frame in [
            &captured::TCP_SYN_V4[..],
            &captured::ICMP_V4_OPTIONS,
            &captured::FRAG_V4_FIRST,
            &captured::FRAG_V4_LATER,
            &captured::SCTP_V4,
            &captured::VXLAN_TCP,
        ] {
            let bytes = &frame[14..];
            let ours = Repr::parse(&Packet::new_checked(bytes).unwrap()).unwrap();
            let (e, _) = etherparse::Ipv4Header::from_slice(bytes).unwrap();
            assert_eq!(e.source, ours.src_addr.octets());
            assert_eq!(e.destination, ours.dst_addr.octets());
            assert_eq!(e.protocol.0, u8::from(ours.next_header));
            assert_eq!(e.time_to_live, ours.hop_limit);
            assert_eq!(e.identification, ours.ident);
            assert_eq!(e.more_fragments, ours.more_frags);
            assert_eq!(e.fragment_offset.value(), ours.frag_offset);
            assert_eq!(e.payload_len().unwrap(), ours.payload_len);
            let s = smoltcp::wire::Ipv4Packet::new_checked(bytes).unwrap();
            assert_eq!(s.src_addr(), ours.src_addr);
            assert_eq!(s.dst_addr(), ours.dst_addr);
            assert_eq!(s.frag_offset(), ours.frag_offset * 8);
            assert_eq!(
                s.verify_checksum(),
                Packet::new_unchecked(bytes).verify_checksum()
            );
        }
    }

    fn repr() -> impl Strategy<Value = Repr> {
        (
            any::<[u32; 2]>(),
            any::<u8>(),
            0u16..=65515,
            any::<u8>(),
            0u8..64,
            0u8..4,
            any::<u16>(),
            any::<(bool, bool)>(),
            0u16..0x2000,
        )
            .prop_map(
                |([s, d], p, payload_len, ttl, dscp, ecn, ident, (df, mf), off)| Repr {
                    src_addr: Ipv4Addr::from(s),
                    dst_addr: Ipv4Addr::from(d),
                    next_header: IpProtocol::from(p),
                    payload_len,
                    hop_limit: ttl,
                    dscp,
                    ecn,
                    ident,
                    dont_frag: df,
                    more_frags: mf,
                    frag_offset: off,
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(r in repr()) {
            let mut buf = std::vec![0xa5u8; 20 + usize::from(r.payload_len)];
            r.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(Repr::parse(&p).unwrap(), r);
        }

        #[test]
        fn accessors_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.version(), p.dscp(), p.ecn(), p.ident(), p.dont_frag(), p.more_frags());
                let _ = (p.frag_offset(), p.ttl(), p.protocol(), p.checksum(), p.src_addr());
                let _ = (p.dst_addr(), p.verify_checksum(), p.options(), p.payload(), Repr::parse(&p));
            }
        }
    }
}
