//! IPv6 (RFC 8200): the fixed header, the generic extension header, the fragment header, and a
//! bounded walk of the extension-header chain to the upper-layer protocol.
//!
//! Owns [`Packet`], [`Repr`], [`ExtHeader`]/[`ExtHeaderRepr`], [`FragmentHeader`]/
//! [`FragmentRepr`], [`walk`] and [`UpperLayer`]. Invariants: after [`Packet::new_checked`] the 40-byte
//! header and `payload length` bytes after it are in the buffer (trailing padding is ignored);
//! jumbograms (payload length 0 with a Jumbo option, RFC 2675) are not supported and look like an
//! empty payload. The walk visits at most [`MAX_EXT_HEADERS`] headers so a hostile chain costs a
//! bounded amount of work; it follows hop-by-hop (only first, RFC 8200 §4.1), routing, fragment and
//! destination options; any other number is the upper layer. A non-first fragment ends the walk:
//! what follows it is data, not headers (RFC 8200 §4.5). Plain data, thread-safe.

use core::net::Ipv6Addr;

use crate::field::{Field, Rest};
use crate::ip::IpProtocol;
use crate::{Error, Result};

mod field {
    use super::{Field, Rest};
    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
    pub const PAYLOAD: Rest = 40..;

    // Extension headers (RFC 8200 §4.3–4.6) and the fragment header (§4.5).
    pub const EXT_NXT_HDR: usize = 0;
    pub const EXT_LEN: usize = 1;
    pub const FRAG_OFF_M: Field = 2..4;
    pub const FRAG_IDENT: Field = 4..8;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// Length of a fragment header.
pub const FRAGMENT_HEADER_LEN: usize = 8;
/// Most extension headers [`walk`] visits before giving up.
pub const MAX_EXT_HEADERS: usize = 8;

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn addr(b: &[u8], r: Field) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[r]);
    Ipv6Addr::from(a)
}

/// A read/write view of an IPv6 packet's fixed header and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
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

    /// `Truncated` if the buffer is shorter than 40 bytes plus the payload length.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < HEADER_LEN + usize::from(self.payload_len()) {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Consumes the view.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version nibble (6 for a valid packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Traffic class (DSCP << 2 | ECN).
    pub fn traffic_class(&self) -> u8 {
        (be16(self.buffer.as_ref(), 0) >> 4) as u8
    }

    /// DSCP part of the traffic class.
    pub fn dscp(&self) -> u8 {
        self.traffic_class() >> 2
    }

    /// ECN part of the traffic class.
    pub fn ecn(&self) -> u8 {
        self.traffic_class() & 0x03
    }

    /// 20-bit flow label.
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VER_TC_FLOW.start) & 0x000f_ffff
    }

    /// Payload length (extension headers included).
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// The first next-header value.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NXT_HDR])
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        addr(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        addr(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// The `payload length` bytes after the fixed header (extension headers included).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Walks the extension-header chain of the payload; offsets in the result count from the
    /// start of this packet.
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        let mut up = walk(self.next_header(), self.payload()).map_err(WalkError::into_error)?;
        up.offset += HEADER_LEN;
        Ok(up)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version.
    pub fn set_version(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[0];
        *b = (*b & 0x0f) | (value << 4);
    }

    /// Sets traffic class.
    pub fn set_traffic_class(&mut self, value: u8) {
        let b = self.buffer.as_mut();
        b[0] = (b[0] & 0xf0) | (value >> 4);
        b[1] = (b[1] & 0x0f) | (value << 4);
    }

    /// Sets the flow label (20 bits; higher bits are ignored).
    pub fn set_flow_label(&mut self, value: u32) {
        let b = self.buffer.as_mut();
        b[1] = (b[1] & 0xf0) | ((value >> 16) as u8 & 0x0f);
        b[2..4].copy_from_slice(&(value as u16).to_be_bytes());
    }

    /// Sets payload length.
    pub fn set_payload_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the first next header.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = value.into();
    }

    /// Sets hop limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets source address.
    pub fn set_src_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }

    /// Sets destination address.
    pub fn set_dst_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }

    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source.
    pub src_addr: Ipv6Addr,
    /// Destination.
    pub dst_addr: Ipv6Addr,
    /// First next header.
    pub next_header: IpProtocol,
    /// Payload length.
    pub payload_len: u16,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Repr {
    /// Parses a checked packet; version must be 6 (`Malformed`).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.version() != 6 {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len(),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Always 40.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 40-byte fixed header.
    ///
    /// # Panics
    /// If the buffer is shorter than 40 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version(6);
        packet.set_traffic_class(self.traffic_class);
        packet.set_flow_label(self.flow_label);
        packet.set_payload_len(self.payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

/// A generic extension header in the RFC 8200 §4.3 layout (hop-by-hop, routing, destination
/// options): next header, length in 8-octet units not counting the first 8, data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ExtHeader<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> ExtHeader<T> {
        ExtHeader { buffer }
    }

    /// Wraps and checks a buffer.
    pub fn new_checked(buffer: T) -> Result<ExtHeader<T>> {
        let h = Self::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// `Truncated` unless the 2-byte prefix and the whole declared header fit.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < 2 || len < self.header_len() {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Consumes the view.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Next header.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::EXT_NXT_HDR])
    }

    /// `Hdr Ext Len`: length in 8-octet units, not counting the first 8 octets.
    pub fn header_ext_len(&self) -> u8 {
        self.buffer.as_ref()[field::EXT_LEN]
    }

    /// Header length in bytes: `(hdr ext len + 1) × 8`.
    pub fn header_len(&self) -> usize {
        (usize::from(self.header_ext_len()) + 1) * 8
    }

    /// Type-specific data (options, or routing type + segments left + data).
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[2..self.header_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ExtHeader<T> {
    /// Sets next header.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::EXT_NXT_HDR] = value.into();
    }

    /// Sets hdr ext len.
    pub fn set_header_ext_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::EXT_LEN] = value;
    }

    /// Mutable data.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[2..end]
    }
}

/// The generic part of an extension header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtHeaderRepr {
    /// Next header.
    pub next_header: IpProtocol,
    /// Hdr ext len.
    pub header_ext_len: u8,
}

impl ExtHeaderRepr {
    /// Parses a checked header.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(header: &ExtHeader<&T>) -> Result<ExtHeaderRepr> {
        header.check_len()?;
        Ok(ExtHeaderRepr {
            next_header: header.next_header(),
            header_ext_len: header.header_ext_len(),
        })
    }

    /// `(hdr ext len + 1) × 8`.
    pub const fn buffer_len(&self) -> usize {
        (self.header_ext_len as usize + 1) * 8
    }

    /// Writes the two generic bytes; the data is left for the caller.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut ExtHeader<T>) {
        header.set_next_header(self.next_header);
        header.set_header_ext_len(self.header_ext_len);
    }
}

/// A view of the 8-byte fragment header (RFC 8200 §4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FragmentHeader<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> FragmentHeader<T> {
        FragmentHeader { buffer }
    }

    /// Wraps and checks a buffer.
    pub fn new_checked(buffer: T) -> Result<FragmentHeader<T>> {
        let h = Self::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// `Truncated` under 8 bytes.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < FRAGMENT_HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Consumes the view.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Next header.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::EXT_NXT_HDR])
    }

    /// Fragment offset in 8-octet units.
    pub fn frag_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FRAG_OFF_M.start) >> 3
    }

    /// M flag: more fragments follow.
    pub fn more_frags(&self) -> bool {
        self.buffer.as_ref()[field::FRAG_OFF_M.end - 1] & 0x01 != 0
    }

    /// Identification.
    pub fn ident(&self) -> u32 {
        be32(self.buffer.as_ref(), field::FRAG_IDENT.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FragmentHeader<T> {
    /// Sets next header.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::EXT_NXT_HDR] = value.into();
    }

    /// Sets offset and M flag, clearing the reserved fields.
    pub fn set_offset_and_more(&mut self, offset: u16, more: bool) {
        let b = self.buffer.as_mut();
        b[field::EXT_LEN] = 0;
        b[field::FRAG_OFF_M].copy_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
    }

    /// Sets identification.
    pub fn set_ident(&mut self, value: u32) {
        self.buffer.as_mut()[field::FRAG_IDENT].copy_from_slice(&value.to_be_bytes());
    }
}

/// A parsed fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentRepr {
    /// Protocol of the fragmentable part.
    pub next_header: IpProtocol,
    /// Offset in 8-octet units (13 bits).
    pub frag_offset: u16,
    /// M flag.
    pub more_frags: bool,
    /// Identification.
    pub ident: u32,
}

impl FragmentRepr {
    /// Parses a checked header.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(header: &FragmentHeader<&T>) -> Result<FragmentRepr> {
        header.check_len()?;
        Ok(FragmentRepr {
            next_header: header.next_header(),
            frag_offset: header.frag_offset(),
            more_frags: header.more_frags(),
            ident: header.ident(),
        })
    }

    /// Always 8.
    pub const fn buffer_len(&self) -> usize {
        FRAGMENT_HEADER_LEN
    }

    /// Writes all 8 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut FragmentHeader<T>) {
        header.set_next_header(self.next_header);
        header.set_offset_and_more(self.frag_offset, self.more_frags);
        header.set_ident(self.ident);
    }
}

/// Fragment state found on the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// Offset in 8-octet units.
    pub offset: u16,
    /// M flag.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

/// Where the chain ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpperLayer {
    /// The upper-layer protocol (for a non-first fragment: the fragment header's next header).
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header (or fragment data) from the start of the walked bytes.
    pub offset: usize,
    /// The fragment header's state, if the chain has one.
    pub fragment: Option<Fragment>,
    /// Number of extension headers walked.
    pub ext_headers: u8,
}

/// Why [`walk`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WalkError {
    /// A header (or its declared length) overruns the bytes.
    Truncated,
    /// Hop-by-hop not first, or a second fragment header.
    Malformed,
    /// More than [`MAX_EXT_HEADERS`] headers.
    TooManyHeaders,
}

impl WalkError {
    /// The crate-wide error: `TooManyHeaders` maps to `Unsupported`.
    pub const fn into_error(self) -> Error {
        match self {
            WalkError::Truncated => Error::Truncated,
            WalkError::Malformed => Error::Malformed,
            WalkError::TooManyHeaders => Error::Unsupported,
        }
    }
}

/// Walks the extension headers in `bytes` (an IPv6 payload) starting with `first`, the fixed
/// header's next header. Visits at most [`MAX_EXT_HEADERS`]; never panics.
pub fn walk(first: IpProtocol, bytes: &[u8]) -> core::result::Result<UpperLayer, WalkError> {
    let mut next = first;
    let mut offset = 0usize;
    let mut fragment = None;
    let mut count = 0u8;
    loop {
        match next {
            IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {
                // RFC 8200 §4.1: hop-by-hop "is restricted to appear immediately after an IPv6
                // header".
                if next == IpProtocol::HopByHop && count != 0 {
                    return Err(WalkError::Malformed);
                }
                let Some(h) = bytes.get(offset..offset + 2) else {
                    return Err(WalkError::Truncated);
                };
                let len = (usize::from(h[1]) + 1) * 8;
                if bytes.len() < offset + len {
                    return Err(WalkError::Truncated);
                }
                next = IpProtocol::from(h[0]);
                offset += len;
            }
            IpProtocol::Ipv6Frag => {
                // RFC 8200 §4.5 allows one fragment header; two would be reassembly of a
                // reassembled packet, which nobody sends.
                if fragment.is_some() {
                    return Err(WalkError::Malformed);
                }
                let Some(h) = bytes.get(offset..offset + FRAGMENT_HEADER_LEN) else {
                    return Err(WalkError::Truncated);
                };
                let h = FragmentHeader::new_unchecked(h);
                let frag = Fragment {
                    offset: h.frag_offset(),
                    more: h.more_frags(),
                    ident: h.ident(),
                };
                next = h.next_header();
                offset += FRAGMENT_HEADER_LEN;
                fragment = Some(frag);
                if frag.offset != 0 {
                    count += 1;
                    return Ok(UpperLayer {
                        protocol: next,
                        offset,
                        fragment,
                        ext_headers: count,
                    });
                }
            }
            _ => {
                return Ok(UpperLayer {
                    protocol: next,
                    offset,
                    fragment,
                    ext_headers: count,
                });
            }
        }
        count += 1;
        if usize::from(count) > MAX_EXT_HEADERS {
            return Err(WalkError::TooManyHeaders);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::captured;
    use proptest::prelude::*;

    #[test]
    fn captured_chain() {
        let p = Packet::new_checked(&captured::V6_EXT_CHAIN[14..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.src_addr, "fe80::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(r.dst_addr, "2001:db8::99".parse::<Ipv6Addr>().unwrap());
        assert_eq!(r.next_header, IpProtocol::HopByHop);
        let up = p.upper_layer().unwrap();
        assert_eq!(up.protocol, IpProtocol::Udp);
        assert_eq!(up.ext_headers, 4);
        // hop-by-hop 8 + routing type 0 with one address 24 + fragment 8 + dest opts 8.
        assert_eq!(up.offset, 40 + 8 + 24 + 8 + 8);
        assert_eq!(
            up.fragment,
            Some(Fragment {
                offset: 0,
                more: true,
                ident: 0xabcdef01
            })
        );
        let b = p.payload();
        let hbh = ExtHeader::new_checked(b).unwrap();
        assert_eq!(
            ExtHeaderRepr::parse(&hbh).unwrap(),
            ExtHeaderRepr {
                next_header: IpProtocol::Ipv6Route,
                header_ext_len: 0
            }
        );
        assert_eq!(hbh.data()[0], 5); // router alert option
        let rt = ExtHeader::new_checked(&b[8..]).unwrap();
        assert_eq!(
            (rt.next_header(), rt.header_len()),
            (IpProtocol::Ipv6Frag, 24)
        );
        let fh = FragmentHeader::new_checked(&b[32..]).unwrap();
        let fr = FragmentRepr::parse(&fh).unwrap();
        assert_eq!(fr.next_header, IpProtocol::Ipv6Opts);
        let mut buf = [0xa5u8; 8];
        fr.emit(&mut FragmentHeader::new_unchecked(&mut buf[..]));
        assert_eq!(buf, b[32..40]);
    }

    #[test]
    fn captured_later_fragment_and_traffic_class() {
        let p = Packet::new_checked(&captured::V6_LATER_FRAGMENT[14..]).unwrap();
        let up = p.upper_layer().unwrap();
        assert_eq!(up.protocol, IpProtocol::Udp);
        assert_eq!(up.offset, 48);
        assert_eq!(
            up.fragment,
            Some(Fragment {
                offset: 3,
                more: false,
                ident: 0x01020304
            })
        );

        let p = Packet::new_checked(&captured::QINQ_ICMP6[22..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            (p.dscp(), p.ecn(), r.flow_label, r.hop_limit),
            (0x2a, 1, 0x12345, 255)
        );
        let mut buf = [0xa5u8; 40];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf[..], captured::QINQ_ICMP6[22..62]);
    }

    #[test]
    fn errors() {
        let good = &captured::V6_EXT_CHAIN[14..];
        assert_eq!(
            Packet::new_checked(&good[..39]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&good[..good.len() - 1]).unwrap_err(),
            Error::Truncated
        );
        let mut b = good.to_vec();
        b[0] = 0x45;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap_err(),
            Error::Malformed
        );
        // Routing header declaring more bytes than remain.
        let mut b = good.to_vec();
        b[49] = 200;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(Error::Truncated)
        );
        // Hop-by-hop in second position.
        let mut b = good.to_vec();
        b[40] = 0;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(Error::Malformed)
        );
        // Fragment header cut short.
        assert_eq!(
            walk(IpProtocol::Ipv6Frag, &[17, 0, 0]),
            Err(WalkError::Truncated)
        );
        assert_eq!(walk(IpProtocol::Ipv6Opts, &[17]), Err(WalkError::Truncated));
        // Two fragment headers.
        let two = [44, 0, 0, 0, 0, 0, 0, 1, 17, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(walk(IpProtocol::Ipv6Frag, &two), Err(WalkError::Malformed));
        // Nine destination-options headers: over the bound.
        let mut long = [0u8; 8 * 10];
        for h in long.chunks_mut(8) {
            h[0] = 60;
        }
        assert_eq!(
            walk(IpProtocol::Ipv6Opts, &long),
            Err(WalkError::TooManyHeaders)
        );
        assert_eq!(WalkError::TooManyHeaders.into_error(), Error::Unsupported);
        long[7 * 8] = 17;
        let up = walk(IpProtocol::Ipv6Opts, &long).unwrap();
        assert_eq!(
            (up.protocol, up.offset, up.ext_headers),
            (IpProtocol::Udp, 64, 8)
        );
    }

    #[test]
    fn etherparse_agrees_on_captured() {
        for frame in [
            &captured::V6_EXT_CHAIN[..],
            &captured::V6_LATER_FRAGMENT,
            &captured::TCP_V6,
            &captured::QINQ_ICMP6[8..],
        ] {
            let bytes = &frame[14..];
            let p = Packet::new_checked(bytes).unwrap();
            let ours = Repr::parse(&p).unwrap();
            let up = p.upper_layer().unwrap();
            let e = etherparse::Ipv6Slice::from_slice(bytes).unwrap();
            assert_eq!(e.header().source(), ours.src_addr.octets());
            assert_eq!(e.header().destination(), ours.dst_addr.octets());
            assert_eq!(e.header().flow_label().value(), ours.flow_label);
            assert_eq!(e.payload().ip_number.0, u8::from(up.protocol));
            assert_eq!(
                e.is_payload_fragmented(),
                up.fragment.is_some_and(|f| f.offset != 0 || f.more)
            );
            assert_eq!(e.payload().payload.len(), bytes.len() - up.offset);
            let s = smoltcp::wire::Ipv6Packet::new_checked(bytes).unwrap();
            assert_eq!(s.src_addr(), ours.src_addr);
            assert_eq!(u8::from(s.next_header()), u8::from(ours.next_header));
        }
    }

    fn repr() -> impl Strategy<Value = Repr> {
        (
            any::<[u128; 2]>(),
            any::<u8>(),
            any::<u16>(),
            any::<u8>(),
            any::<u8>(),
            0u32..1 << 20,
        )
            .prop_map(
                |([s, d], nh, payload_len, hop_limit, traffic_class, flow_label)| Repr {
                    src_addr: Ipv6Addr::from(s),
                    dst_addr: Ipv6Addr::from(d),
                    next_header: IpProtocol::from(nh),
                    payload_len,
                    hop_limit,
                    traffic_class,
                    flow_label,
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(r in repr()) {
            let mut buf = std::vec![0xa5u8; 40 + usize::from(r.payload_len)];
            r.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
        }

        #[test]
        fn fragment_round_trip(nh in any::<u8>(), off in 0u16..0x2000, m in any::<bool>(), id in any::<u32>()) {
            let r = FragmentRepr { next_header: IpProtocol::from(nh), frag_offset: off, more_frags: m, ident: id };
            let mut buf = [0xa5u8; 8];
            r.emit(&mut FragmentHeader::new_unchecked(&mut buf[..]));
            prop_assert_eq!(buf[1], 0);
            prop_assert_eq!(FragmentRepr::parse(&FragmentHeader::new_checked(&buf[..]).unwrap()).unwrap(), r);
        }

        #[test]
        fn walk_never_panics(first in any::<u8>(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(up) = walk(IpProtocol::from(first), &bytes) {
                prop_assert!(up.offset <= bytes.len());
                prop_assert!(usize::from(up.ext_headers) <= MAX_EXT_HEADERS);
            }
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.version(), p.traffic_class(), p.flow_label(), p.hop_limit());
                let _ = (p.src_addr(), p.dst_addr(), p.payload(), p.upper_layer(), Repr::parse(&p));
            }
            if let Ok(h) = ExtHeader::new_checked(&bytes[..]) {
                let _ = (h.next_header(), h.data(), ExtHeaderRepr::parse(&h));
            }
        }
    }
}
