//! ARP (RFC 826) as used on Ethernet for IPv4: the switch answers ARP for the pods' gateway and
//! for known endpoints, so it parses and emits the Ethernet/IPv4 form only.
//!
//! Owns the [`Packet`] view (generic over hardware/protocol lengths, as RFC 826 lays the packet
//! out), [`Operation`] and the Ethernet/IPv4 [`Repr`]. Invariants: after [`Packet::new_checked`]
//! the four address fields, whose positions depend on `hlen`/`plen`, lie inside the buffer, so no
//! accessor panics. Other hardware or protocol types are `Unsupported` in [`Repr::parse`]; an
//! Ethernet/IPv4 packet with wrong address lengths is `Malformed`. Thread-safe as plain data.

use core::net::Ipv4Addr;

use crate::ethernet::{Address, EtherType};
use crate::field::Field;
use crate::{Error, Result};

mod field {
    #![allow(non_snake_case)]
    use super::Field;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const fn SHA(hlen: u8, _plen: u8) -> Field {
        8..8 + hlen as usize
    }
    pub const fn SPA(hlen: u8, plen: u8) -> Field {
        let start = 8 + hlen as usize;
        start..start + plen as usize
    }
    pub const fn THA(hlen: u8, plen: u8) -> Field {
        let start = 8 + hlen as usize + plen as usize;
        start..start + hlen as usize
    }
    pub const fn TPA(hlen: u8, plen: u8) -> Field {
        let start = 8 + 2 * hlen as usize + plen as usize;
        start..start + plen as usize
    }
}

/// ARP hardware type for Ethernet (RFC 826 `ar$hrd`, IANA value 1).
pub const HTYPE_ETHERNET: u16 = 1;
/// Length of an Ethernet/IPv4 ARP packet.
pub const ETHERNET_IPV4_LEN: usize = 28;

/// The ARP opcode (`ar$op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// 1.
    Request,
    /// 2.
    Reply,
    /// Anything else (RARP, InARP, …).
    Unknown(u16),
}

impl From<u16> for Operation {
    fn from(value: u16) -> Self {
        match value {
            1 => Operation::Request,
            2 => Operation::Reply,
            other => Operation::Unknown(other),
        }
    }
}

impl From<Operation> for u16 {
    fn from(value: Operation) -> Self {
        match value {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Unknown(other) => other,
        }
    }
}

/// A read/write view of an ARP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
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

    /// `Truncated` unless the fixed part and the four addresses fit.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < field::OPER.end {
            return Err(Error::Truncated);
        }
        if b.len() < field::TPA(self.hardware_len(), self.protocol_len()).end {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Consumes the view.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// `ar$hrd`.
    pub fn hardware_type(&self) -> u16 {
        be16(self.buffer.as_ref(), field::HTYPE.start)
    }

    /// `ar$pro` (an EtherType).
    pub fn protocol_type(&self) -> EtherType {
        EtherType::from(be16(self.buffer.as_ref(), field::PTYPE.start))
    }

    /// `ar$hln`.
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// `ar$pln`.
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// `ar$op`.
    pub fn operation(&self) -> Operation {
        Operation::from(be16(self.buffer.as_ref(), field::OPER.start))
    }

    /// `ar$sha`, `hardware_len` bytes.
    pub fn source_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::SHA(self.hardware_len(), self.protocol_len())]
    }

    /// `ar$spa`, `protocol_len` bytes.
    pub fn source_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::SPA(self.hardware_len(), self.protocol_len())]
    }

    /// `ar$tha`.
    pub fn target_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::THA(self.hardware_len(), self.protocol_len())]
    }

    /// `ar$tpa`.
    pub fn target_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::TPA(self.hardware_len(), self.protocol_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets `ar$hrd`.
    pub fn set_hardware_type(&mut self, value: u16) {
        self.buffer.as_mut()[field::HTYPE].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets `ar$pro`.
    pub fn set_protocol_type(&mut self, value: EtherType) {
        self.buffer.as_mut()[field::PTYPE].copy_from_slice(&u16::from(value).to_be_bytes());
    }

    /// Sets `ar$hln`.
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    /// Sets `ar$pln`.
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    /// Sets `ar$op`.
    pub fn set_operation(&mut self, value: Operation) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&u16::from(value).to_be_bytes());
    }

    /// Sets `ar$sha`; `value` must be `hardware_len` bytes long.
    pub fn set_source_hardware_addr(&mut self, value: &[u8]) {
        let r = field::SHA(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[r].copy_from_slice(value);
    }

    /// Sets `ar$spa`.
    pub fn set_source_protocol_addr(&mut self, value: &[u8]) {
        let r = field::SPA(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[r].copy_from_slice(value);
    }

    /// Sets `ar$tha`.
    pub fn set_target_hardware_addr(&mut self, value: &[u8]) {
        let r = field::THA(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[r].copy_from_slice(value);
    }

    /// Sets `ar$tpa`.
    pub fn set_target_protocol_addr(&mut self, value: &[u8]) {
        let r = field::TPA(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[r].copy_from_slice(value);
    }
}

/// An Ethernet/IPv4 ARP request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Request or reply (never `Unknown`).
    pub operation: Operation,
    /// `ar$sha`.
    pub source_hardware_addr: Address,
    /// `ar$spa`.
    pub source_protocol_addr: Ipv4Addr,
    /// `ar$tha` (zero in a request).
    pub target_hardware_addr: Address,
    /// `ar$tpa`.
    pub target_protocol_addr: Ipv4Addr,
}

fn ipv4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

impl Repr {
    /// Parses an Ethernet/IPv4 request or reply.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.hardware_type() != HTYPE_ETHERNET || packet.protocol_type() != EtherType::Ipv4 {
            return Err(Error::Unsupported);
        }
        if packet.hardware_len() != 6 || packet.protocol_len() != 4 {
            return Err(Error::Malformed);
        }
        let operation = packet.operation();
        if let Operation::Unknown(_) = operation {
            return Err(Error::Unsupported);
        }
        Ok(Repr {
            operation,
            source_hardware_addr: Address::from_bytes(packet.source_hardware_addr()),
            source_protocol_addr: ipv4(packet.source_protocol_addr()),
            target_hardware_addr: Address::from_bytes(packet.target_hardware_addr()),
            target_protocol_addr: ipv4(packet.target_protocol_addr()),
        })
    }

    /// Always 28.
    pub const fn buffer_len(&self) -> usize {
        ETHERNET_IPV4_LEN
    }

    /// Writes all 28 bytes.
    ///
    /// # Panics
    /// If the buffer is shorter than 28 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(EtherType::Ipv4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(&self.source_hardware_addr.0);
        packet.set_source_protocol_addr(&self.source_protocol_addr.octets());
        packet.set_target_hardware_addr(&self.target_hardware_addr.0);
        packet.set_target_protocol_addr(&self.target_protocol_addr.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::captured;
    use proptest::prelude::*;

    #[test]
    fn captured_request_and_reply() {
        let p = Packet::new_checked(&captured::ARP_REQUEST[14..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.operation, Operation::Request);
        assert_eq!(r.source_hardware_addr, Address([2, 0, 0, 0, 0, 1]));
        assert_eq!(r.source_protocol_addr, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(r.target_hardware_addr, Address([0; 6]));
        assert_eq!(r.target_protocol_addr, Ipv4Addr::new(10, 0, 0, 254));

        let p = Packet::new_checked(&captured::ARP_REPLY[14..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.operation, Operation::Reply);
        assert_eq!(r.source_protocol_addr, Ipv4Addr::new(10, 0, 0, 254));
        assert_eq!(r.target_hardware_addr, Address([2, 0, 0, 0, 0, 1]));

        let mut buf = [0xa5u8; 28];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf[..], captured::ARP_REPLY[14..]);
    }

    #[test]
    fn errors() {
        let good = &captured::ARP_REQUEST[14..];
        assert_eq!(
            Packet::new_checked(&good[..7]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&good[..27]).unwrap_err(),
            Error::Truncated
        );
        let mut b = [0u8; 28];
        b.copy_from_slice(good);
        b[1] = 6; // IEEE 802 hardware type
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&b[..])).unwrap_err(),
            Error::Unsupported
        );
        b[1] = 1;
        b[5] = 16; // IPv4 with a 16-byte protocol address: now truncated
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);
        b[5] = 3;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap_err(),
            Error::Malformed
        );
        b[5] = 4;
        b[7] = 3; // RARP request
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&b[..])).unwrap_err(),
            Error::Unsupported
        );
    }

    #[test]
    fn smoltcp_and_etherparse_agree() {
        for bytes in [&captured::ARP_REQUEST[14..], &captured::ARP_REPLY[14..]] {
            let ours = Repr::parse(&Packet::new_checked(bytes).unwrap()).unwrap();
            let s = smoltcp::wire::ArpPacket::new_checked(bytes).unwrap();
            let smoltcp::wire::ArpRepr::EthernetIpv4 {
                operation,
                source_hardware_addr,
                source_protocol_addr,
                target_hardware_addr,
                target_protocol_addr,
            } = smoltcp::wire::ArpRepr::parse(&s).unwrap()
            else {
                panic!("not Ethernet/IPv4")
            };
            assert_eq!(u16::from(operation), u16::from(ours.operation));
            assert_eq!(source_hardware_addr.0, ours.source_hardware_addr.0);
            assert_eq!(source_protocol_addr, ours.source_protocol_addr);
            assert_eq!(target_hardware_addr.0, ours.target_hardware_addr.0);
            assert_eq!(target_protocol_addr, ours.target_protocol_addr);
            let e = etherparse::ArpPacket::from_slice(bytes)
                .unwrap()
                .try_eth_ipv4()
                .unwrap();
            assert_eq!(e.operation.0, u16::from(ours.operation));
            assert_eq!(
                (e.sender_mac, e.target_mac),
                (ours.source_hardware_addr.0, ours.target_hardware_addr.0)
            );
            assert_eq!(
                (e.sender_ipv4, e.target_ipv4),
                (
                    ours.source_protocol_addr.octets(),
                    ours.target_protocol_addr.octets()
                )
            );
        }
    }

    fn repr() -> impl Strategy<Value = Repr> {
        (
            any::<bool>(),
            any::<[u8; 6]>(),
            any::<u32>(),
            any::<[u8; 6]>(),
            any::<u32>(),
        )
            .prop_map(|(req, sha, spa, tha, tpa)| Repr {
                operation: if req {
                    Operation::Request
                } else {
                    Operation::Reply
                },
                source_hardware_addr: Address(sha),
                source_protocol_addr: Ipv4Addr::from(spa),
                target_hardware_addr: Address(tha),
                target_protocol_addr: Ipv4Addr::from(tpa),
            })
    }

    proptest! {
        #[test]
        fn round_trip(r in repr()) {
            let mut buf = [0xa5u8; 28];
            r.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
        }

        #[test]
        fn accessors_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.hardware_type(), p.protocol_type(), p.operation());
                let _ = (p.source_hardware_addr(), p.source_protocol_addr());
                let _ = (p.target_hardware_addr(), p.target_protocol_addr(), Repr::parse(&p));
            }
        }
    }
}
