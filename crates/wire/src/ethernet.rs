//! Ethernet II frames (IEEE 802.3 clause 3.2.6 "Length/Type" used as a type) with up to two VLAN
//! tags: one IEEE 802.1Q C-tag (TPID 0x8100), or an 802.1ad S-tag (TPID 0x88a8) followed by a
//! C-tag ("QinQ"). Legacy double 0x8100 stacks are accepted as well.
//!
//! Owns: [`Address`], [`EtherType`], the [`Frame`] view, the [`Tag`] value and the [`Repr`].
//! Invariants: after [`Frame::new_checked`] every accessor is in bounds whatever the bytes — the
//! check covers the 14-byte header and the 4 bytes of each of the (at most two) tags announced by
//! the type fields. A third tag is not walked: [`Frame::payload_ethertype`] then reports the TPID
//! and [`Repr::parse`] fails with `Unsupported`. The frame check sequence is never present (AF_XDP
//! and the kernel strip it). Plain data over a caller-owned buffer: `Send + Sync` when `T` is.

use core::fmt;

use crate::field::{Field, Rest};
use crate::{Error, Result};

mod field {
    use super::{Field, Rest};
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: Rest = 14..;
}

/// Length of the untagged Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// Length of one VLAN tag (TPID + TCI).
pub const TAG_LEN: usize = 4;
/// Most tags this crate walks (802.1ad outer + 802.1Q inner).
pub const MAX_TAGS: usize = 2;

/// A 48-bit IEEE 802 MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Address(pub [u8; 6]);

impl Address {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: Address = Address([0xff; 6]);

    /// Builds an address from the first six bytes of `data`.
    ///
    /// # Panics
    /// If `data` is shorter than six bytes.
    pub fn from_bytes(data: &[u8]) -> Address {
        let mut bytes = [0u8; 6];
        bytes.copy_from_slice(&data[..6]);
        Address(bytes)
    }

    /// The six address bytes.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// All ones.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// The I/G bit is set (group address); broadcast is a multicast address too.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// The I/G bit is clear (individual address).
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// The U/L bit is set (locally administered, as pod veth addresses usually are).
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// The Ethernet type field (IEEE "Length/Type" ≥ 0x0600; smaller values are 802.3 lengths and
/// come back as `Unknown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EtherType {
    /// IPv4 (0x0800).
    Ipv4,
    /// ARP (0x0806).
    Arp,
    /// IPv6 (0x86dd).
    Ipv6,
    /// IEEE 802.1Q customer VLAN tag (0x8100).
    Vlan,
    /// IEEE 802.1ad service VLAN tag, "QinQ" (0x88a8).
    QinQ,
    /// Any other value.
    Unknown(u16),
}

impl EtherType {
    /// The type announces a VLAN tag.
    pub const fn is_tag(self) -> bool {
        matches!(self, EtherType::Vlan | EtherType::QinQ)
    }
}

impl From<u16> for EtherType {
    fn from(value: u16) -> Self {
        match value {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x86dd => EtherType::Ipv6,
            0x8100 => EtherType::Vlan,
            0x88a8 => EtherType::QinQ,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(value: EtherType) -> Self {
        match value {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Vlan => 0x8100,
            EtherType::QinQ => 0x88a8,
            EtherType::Unknown(other) => other,
        }
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtherType::Ipv4 => f.write_str("IPv4"),
            EtherType::Arp => f.write_str("ARP"),
            EtherType::Ipv6 => f.write_str("IPv6"),
            EtherType::Vlan => f.write_str("802.1Q"),
            EtherType::QinQ => f.write_str("802.1ad"),
            EtherType::Unknown(n) => write!(f, "0x{n:04x}"),
        }
    }
}

/// One VLAN tag: its TPID and the Tag Control Information (IEEE 802.1Q §9.6: PCP 3 bits, DEI 1
/// bit, VID 12 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag {
    /// `EtherType::Vlan` (C-tag) or `EtherType::QinQ` (S-tag).
    pub tpid: EtherType,
    /// Priority code point (0..=7).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier (0..=4095; 0 is a priority-only tag).
    pub vid: u16,
}

impl Tag {
    /// Splits a TCI word into a tag with the given TPID.
    pub const fn from_tci(tpid: EtherType, tci: u16) -> Tag {
        Tag {
            tpid,
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }
    }

    /// The TCI word; out-of-range PCP and VID bits are masked off.
    pub const fn tci(&self) -> u16 {
        ((self.pcp as u16 & 0x7) << 13) | ((self.dei as u16) << 12) | (self.vid & 0x0fff)
    }
}

/// A read/write view of an Ethernet II frame and its VLAN tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a buffer and checks it with [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the header and every walked tag fit in the buffer: `Truncated` otherwise.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < self.header_len_unchecked() {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Counts tags from the type fields, reading only bytes that exist.
    fn header_len_unchecked(&self) -> usize {
        let b = self.buffer.as_ref();
        let mut len = HEADER_LEN;
        while len - HEADER_LEN < MAX_TAGS * TAG_LEN
            && b.len() >= len
            && EtherType::from(be16(b, len - 2)).is_tag()
        {
            len += TAG_LEN;
        }
        len
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    pub fn destination(&self) -> Address {
        Address::from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    /// Source MAC address.
    pub fn source(&self) -> Address {
        Address::from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    /// The type field right after the source address (a TPID when the frame is tagged).
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(be16(self.buffer.as_ref(), field::ETHERTYPE.start))
    }

    /// Number of tags walked (0..=2).
    pub fn tag_count(&self) -> usize {
        (self.header_len() - HEADER_LEN) / TAG_LEN
    }

    /// Tag `index` (0 = outermost), if present.
    pub fn tag(&self, index: usize) -> Option<Tag> {
        if index >= self.tag_count() {
            return None;
        }
        let b = self.buffer.as_ref();
        let at = field::ETHERTYPE.start + index * TAG_LEN;
        Some(Tag::from_tci(EtherType::from(be16(b, at)), be16(b, at + 2)))
    }

    /// The type field after the last walked tag: the payload's protocol (or a third TPID).
    pub fn payload_ethertype(&self) -> EtherType {
        EtherType::from(be16(self.buffer.as_ref(), self.header_len() - 2))
    }

    /// Header length including the walked tags: the payload offset.
    pub fn header_len(&self) -> usize {
        self.header_len_unchecked()
    }

    /// Bytes after the header and tags.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination address.
    pub fn set_destination(&mut self, value: Address) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&value.0);
    }

    /// Sets the source address.
    pub fn set_source(&mut self, value: Address) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&value.0);
    }

    /// Sets the type field after the source address.
    pub fn set_ethertype(&mut self, value: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&u16::from(value).to_be_bytes());
    }

    /// Mutable bytes after the header and tags.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.header_len();
        &mut self.buffer.as_mut()[at..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Frame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The parsed Ethernet header: addresses, up to two tags and the payload's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source MAC.
    pub src_addr: Address,
    /// Destination MAC.
    pub dst_addr: Address,
    /// Outer tag (802.1ad S-tag, or the only 802.1Q tag).
    pub outer_tag: Option<Tag>,
    /// Inner 802.1Q tag; only present with an outer tag.
    pub inner_tag: Option<Tag>,
    /// Type of the payload (never a TPID).
    pub ethertype: EtherType,
}

impl Repr {
    /// Parses a checked frame. A third tag, or an inner tag with the S-tag TPID (802.1ad §6.9
    /// puts S-tags outside C-tags), is `Unsupported`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &Frame<&T>) -> Result<Repr> {
        frame.check_len()?;
        let outer_tag = frame.tag(0);
        let inner_tag = frame.tag(1);
        if inner_tag.is_some_and(|t| t.tpid != EtherType::Vlan) {
            return Err(Error::Unsupported);
        }
        let ethertype = frame.payload_ethertype();
        if ethertype.is_tag() {
            return Err(Error::Unsupported);
        }
        Ok(Repr {
            src_addr: frame.source(),
            dst_addr: frame.destination(),
            outer_tag,
            inner_tag,
            ethertype,
        })
    }

    /// Header length including tags; also the payload offset.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
            + if self.outer_tag.is_some() { TAG_LEN } else { 0 }
            + if self.inner_tag.is_some() { TAG_LEN } else { 0 }
    }

    /// The payload offset (same as [`buffer_len`](Self::buffer_len)).
    pub const fn payload_offset(&self) -> usize {
        self.buffer_len()
    }

    /// Writes the header and tags. An `inner_tag` without an `outer_tag` is written as the only
    /// tag.
    ///
    /// # Panics
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_destination(self.dst_addr);
        frame.set_source(self.src_addr);
        let b = frame.buffer.as_mut();
        let mut at = field::ETHERTYPE.start;
        for tag in [self.outer_tag, self.inner_tag].into_iter().flatten() {
            b[at..at + 2].copy_from_slice(&u16::from(tag.tpid).to_be_bytes());
            b[at + 2..at + 4].copy_from_slice(&tag.tci().to_be_bytes());
            at += TAG_LEN;
        }
        b[at..at + 2].copy_from_slice(&u16::from(self.ethertype).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::captured;
    use proptest::prelude::*;

    #[test]
    fn untagged_captured() {
        let f = Frame::new_checked(&captured::TCP_SYN_V4[..]).unwrap();
        assert_eq!(f.destination(), Address([2, 0, 0, 0, 0, 2]));
        assert_eq!(f.source().to_string(), "02:00:00:00:00:01");
        assert_eq!(f.ethertype(), EtherType::Ipv4);
        assert_eq!(f.tag_count(), 0);
        assert_eq!(f.tag(0), None);
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.payload()[0], 0x45);
        let r = Repr::parse(&f).unwrap();
        assert_eq!(
            (r.outer_tag, r.ethertype, r.payload_offset()),
            (None, EtherType::Ipv4, 14)
        );
    }

    #[test]
    fn dot1q_captured() {
        let f = Frame::new_checked(&captured::VLAN_UDP_V4[..]).unwrap();
        let r = Repr::parse(&f).unwrap();
        assert_eq!(
            r.outer_tag,
            Some(Tag {
                tpid: EtherType::Vlan,
                pcp: 5,
                dei: true,
                vid: 100
            })
        );
        assert_eq!(r.inner_tag, None);
        assert_eq!(r.ethertype, EtherType::Ipv4);
        assert_eq!(r.buffer_len(), 18);
        assert_eq!(f.payload()[0], 0x45);
    }

    #[test]
    fn qinq_captured() {
        let f = Frame::new_checked(&captured::QINQ_ICMP6[..]).unwrap();
        let r = Repr::parse(&f).unwrap();
        assert_eq!(
            r.outer_tag,
            Some(Tag {
                tpid: EtherType::QinQ,
                pcp: 3,
                dei: false,
                vid: 200
            })
        );
        assert_eq!(
            r.inner_tag,
            Some(Tag {
                tpid: EtherType::Vlan,
                pcp: 1,
                dei: false,
                vid: 300
            })
        );
        assert_eq!(r.ethertype, EtherType::Ipv6);
        assert_eq!(f.header_len(), 22);
        assert_eq!(f.payload()[0] >> 4, 6);
    }

    #[test]
    fn address_kinds() {
        assert!(Address::BROADCAST.is_broadcast() && Address::BROADCAST.is_multicast());
        let a = Address([0x01, 0x00, 0x5e, 0, 0, 1]);
        assert!(a.is_multicast() && !a.is_unicast() && !a.is_broadcast() && !a.is_local());
        let p = Address([0x02, 0, 0, 0, 0, 1]);
        assert!(p.is_unicast() && p.is_local());
        assert_eq!(u16::from(EtherType::from(0x1234)), 0x1234);
        assert_eq!(EtherType::Unknown(0x88cc).to_string(), "0x88cc");
    }

    #[test]
    fn errors() {
        assert_eq!(
            Frame::new_checked(&[0u8; 13][..]).unwrap_err(),
            Error::Truncated
        );
        // A tag announced but missing.
        let mut b = [0u8; 16];
        b[12] = 0x81;
        assert_eq!(Frame::new_checked(&b[..]).unwrap_err(), Error::Truncated);
        // Three tags: the third TPID is the payload ethertype and Repr refuses it.
        let mut b = [0u8; 30];
        for at in [12, 16, 20] {
            b[at] = 0x81;
        }
        let f = Frame::new_checked(&b[..]).unwrap();
        assert_eq!(f.payload_ethertype(), EtherType::Vlan);
        assert_eq!(Repr::parse(&f).unwrap_err(), Error::Unsupported);
        // An S-tag inside a C-tag.
        let mut b = [0u8; 30];
        b[12] = 0x81;
        b[16..18].copy_from_slice(&[0x88, 0xa8]);
        b[20..22].copy_from_slice(&[0x08, 0x00]);
        let f = Frame::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&f).unwrap_err(), Error::Unsupported);
    }

    #[test]
    fn emit_fills_every_byte() {
        let f = Frame::new_checked(&captured::QINQ_ICMP6[..]).unwrap();
        let r = Repr::parse(&f).unwrap();
        let mut buf = [0xa5u8; 22];
        r.emit(&mut Frame::new_unchecked(&mut buf[..]));
        assert_eq!(buf[..], captured::QINQ_ICMP6[..22]);
    }

    #[test]
    fn etherparse_agrees_on_captured() {
        for bytes in captured::ALL {
            let ours = Repr::parse(&Frame::new_checked(bytes).unwrap()).unwrap();
            let theirs = etherparse::SlicedPacket::from_ethernet(bytes).unwrap();
            let Some(etherparse::LinkSlice::Ethernet2(eth)) = &theirs.link else {
                panic!()
            };
            assert_eq!(ours.src_addr.0, eth.source());
            assert_eq!(ours.dst_addr.0, eth.destination());
            let vlan_ids: std::vec::Vec<u16> =
                theirs.vlan_ids().iter().map(|v| v.value()).collect();
            let our_ids: std::vec::Vec<u16> = [ours.outer_tag, ours.inner_tag]
                .iter()
                .flatten()
                .map(|t| t.vid)
                .collect();
            assert_eq!(vlan_ids, our_ids);
        }
    }

    fn tag(tpid: EtherType) -> impl Strategy<Value = Tag> {
        (0u8..8, any::<bool>(), 0u16..4096).prop_map(move |(pcp, dei, vid)| Tag {
            tpid,
            pcp,
            dei,
            vid,
        })
    }

    fn repr() -> impl Strategy<Value = Repr> {
        let tags = prop_oneof![
            Just((None, None)),
            prop_oneof![tag(EtherType::Vlan), tag(EtherType::QinQ)].prop_map(|t| (Some(t), None)),
            (
                prop_oneof![tag(EtherType::Vlan), tag(EtherType::QinQ)],
                tag(EtherType::Vlan)
            )
                .prop_map(|(o, i)| (Some(o), Some(i))),
        ];
        (any::<[u8; 6]>(), any::<[u8; 6]>(), tags, any::<u16>()).prop_filter_map(
            "TPID as final type",
            |(s, d, (outer_tag, inner_tag), et)| {
                let ethertype = EtherType::from(et);
                (!ethertype.is_tag()).then_some(Repr {
                    src_addr: Address(s),
                    dst_addr: Address(d),
                    outer_tag,
                    inner_tag,
                    ethertype,
                })
            },
        )
    }

    proptest! {
        #[test]
        fn round_trip(r in repr(), extra in 0usize..8) {
            let mut buf = std::vec![0xa5u8; r.buffer_len() + extra];
            r.emit(&mut Frame::new_unchecked(&mut buf[..]));
            let f = Frame::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&f).unwrap(), r);
            prop_assert_eq!(f.payload().len(), extra);
        }

        #[test]
        fn accessors_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(f) = Frame::new_checked(&bytes[..]) {
                let _ = (f.destination(), f.source(), f.ethertype(), f.tag(0), f.tag(1), f.tag(2));
                let _ = (f.payload_ethertype(), f.payload().len(), Repr::parse(&f));
            }
        }
    }
}
