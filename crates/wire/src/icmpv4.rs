//! ICMP for IPv4 (RFC 792): a zero-copy [`Packet`] view and a [`Repr`] of echo request/reply,
//! destination unreachable (with RFC 1191's next-hop MTU for code 4, fragmentation needed) and
//! time exceeded.
//!
//! Owns the ICMPv4 message format and its checksum (RFC 792: the one's-complement sum over the
//! whole ICMP message, no pseudo-header). Error messages quote the invoking datagram's IPv4 header
//! plus at least its first 8 data octets (RFC 792; RFC 1812 §4.3.2.3 allows more); [`Repr`] keeps
//! the quoted bytes and an allocation-free [`Quoted`] summary of the inner header (addresses,
//! protocol, first 8 octets: ports or echo identifier) so conntrack can match the error to a flow.
//! Invariants: after [`Packet::new_checked`] the 8-octet header is present, so no accessor panics.
//! Pure data, no allocation; `Send + Sync` when the buffer is.

use core::net::Ipv4Addr;

use crate::checksum;
use crate::field::{Field, Rest};
use crate::ip::IpProtocol;
use crate::{Error, Result};

mod field {
    use super::{Field, Rest};
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    /// RFC 1191 §4: the low-order 16 bits of the "unused" word of a code-4 unreachable.
    pub const NEXT_HOP_MTU: Field = 6..8;
    /// Parameter problem (RFC 792): octet pointer.
    pub const POINTER: usize = 4;
    pub const DATA: Rest = 8..;
}

/// Length of the ICMPv4 header (type, code, checksum, rest-of-header word).
pub const HEADER_LEN: usize = field::DATA.start;

/// ICMPv4 message types (RFC 792 and the IANA registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message {
    /// 0.
    EchoReply,
    /// 3.
    DstUnreachable,
    /// 5.
    Redirect,
    /// 8.
    EchoRequest,
    /// 11.
    TimeExceeded,
    /// 12.
    ParamProblem,
    /// 13.
    Timestamp,
    /// 14.
    TimestampReply,
    /// Any other type.
    Unknown(u8),
}

impl From<u8> for Message {
    fn from(v: u8) -> Self {
        match v {
            0 => Message::EchoReply,
            3 => Message::DstUnreachable,
            5 => Message::Redirect,
            8 => Message::EchoRequest,
            11 => Message::TimeExceeded,
            12 => Message::ParamProblem,
            13 => Message::Timestamp,
            14 => Message::TimestampReply,
            other => Message::Unknown(other),
        }
    }
}

impl From<Message> for u8 {
    fn from(m: Message) -> u8 {
        match m {
            Message::EchoReply => 0,
            Message::DstUnreachable => 3,
            Message::Redirect => 5,
            Message::EchoRequest => 8,
            Message::TimeExceeded => 11,
            Message::ParamProblem => 12,
            Message::Timestamp => 13,
            Message::TimestampReply => 14,
            Message::Unknown(other) => other,
        }
    }
}

impl Message {
    /// Whether this type is an error message that quotes an invoking datagram.
    pub const fn is_error(self) -> bool {
        matches!(
            self,
            Message::DstUnreachable
                | Message::Redirect
                | Message::TimeExceeded
                | Message::ParamProblem
        )
    }
}

/// Destination-unreachable codes (RFC 792, RFC 1122 §3.2.2.1, RFC 1812 §5.2.7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DstUnreachable {
    /// 0.
    NetUnreachable,
    /// 1.
    HostUnreachable,
    /// 2.
    ProtoUnreachable,
    /// 3.
    PortUnreachable,
    /// 4: fragmentation needed and DF set; carries the next-hop MTU (RFC 1191 §4).
    FragRequired,
    /// 5.
    SrcRouteFailed,
    /// 6.
    DstNetUnknown,
    /// 7.
    DstHostUnknown,
    /// 8.
    SrcHostIsolated,
    /// 9.
    NetProhibited,
    /// 10.
    HostProhibited,
    /// 11.
    NetUnreachToS,
    /// 12.
    HostUnreachToS,
    /// 13.
    CommProhibited,
    /// 14.
    HostPrecedViol,
    /// 15.
    PrecedCutoff,
    /// Any other code.
    Unknown(u8),
}

impl From<u8> for DstUnreachable {
    fn from(v: u8) -> Self {
        #[allow(clippy::enum_glob_use)]
        use DstUnreachable::*;
        match v {
            0 => NetUnreachable,
            1 => HostUnreachable,
            2 => ProtoUnreachable,
            3 => PortUnreachable,
            4 => FragRequired,
            5 => SrcRouteFailed,
            6 => DstNetUnknown,
            7 => DstHostUnknown,
            8 => SrcHostIsolated,
            9 => NetProhibited,
            10 => HostProhibited,
            11 => NetUnreachToS,
            12 => HostUnreachToS,
            13 => CommProhibited,
            14 => HostPrecedViol,
            15 => PrecedCutoff,
            other => Unknown(other),
        }
    }
}

impl From<DstUnreachable> for u8 {
    fn from(v: DstUnreachable) -> u8 {
        #[allow(clippy::enum_glob_use)]
        use DstUnreachable::*;
        match v {
            NetUnreachable => 0,
            HostUnreachable => 1,
            ProtoUnreachable => 2,
            PortUnreachable => 3,
            FragRequired => 4,
            SrcRouteFailed => 5,
            DstNetUnknown => 6,
            DstHostUnknown => 7,
            SrcHostIsolated => 8,
            NetProhibited => 9,
            HostProhibited => 10,
            NetUnreachToS => 11,
            HostUnreachToS => 12,
            CommProhibited => 13,
            HostPrecedViol => 14,
            PrecedCutoff => 15,
            Unknown(other) => other,
        }
    }
}

/// Time-exceeded codes (RFC 792).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeExceeded {
    /// 0: TTL exceeded in transit.
    TtlExpired,
    /// 1: fragment reassembly time exceeded.
    FragExpired,
    /// Any other code.
    Unknown(u8),
}

impl From<u8> for TimeExceeded {
    fn from(v: u8) -> Self {
        match v {
            0 => TimeExceeded::TtlExpired,
            1 => TimeExceeded::FragExpired,
            other => TimeExceeded::Unknown(other),
        }
    }
}

impl From<TimeExceeded> for u8 {
    fn from(v: TimeExceeded) -> u8 {
        match v {
            TimeExceeded::TtlExpired => 0,
            TimeExceeded::FragExpired => 1,
            TimeExceeded::Unknown(other) => other,
        }
    }
}

/// The key fields of the datagram an ICMP error quotes: enough to find its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quoted {
    /// Inner source address (our side, for an error about a packet we sent).
    pub src_addr: Ipv4Addr,
    /// Inner destination address.
    pub dst_addr: Ipv4Addr,
    /// Inner protocol.
    pub protocol: IpProtocol,
    /// Inner header length in octets (IHL × 4).
    pub header_len: u8,
    /// The first 8 octets after the inner header (RFC 792's "64 bits of original data").
    pub first8: [u8; 8],
}

impl Quoted {
    /// Minimum quote: a 20-octet IPv4 header and 8 data octets.
    pub const MIN_LEN: usize = 28;

    /// Parses the quoted invoking datagram: version 4 (`Malformed` otherwise), IHL ≥ 5
    /// (`Malformed`), and the header plus 8 octets present (`Truncated`).
    pub fn parse(quoted: &[u8]) -> Result<Quoted> {
        let (&vihl, _) = quoted.split_first().ok_or(Error::Truncated)?;
        if vihl >> 4 != 4 {
            return Err(Error::Malformed);
        }
        let header_len = usize::from(vihl & 0x0f) * 4;
        if header_len < 20 {
            return Err(Error::Malformed);
        }
        let first8: [u8; 8] = quoted
            .get(header_len..header_len + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or(Error::Truncated)?;
        let addr =
            |at: usize| Ipv4Addr::new(quoted[at], quoted[at + 1], quoted[at + 2], quoted[at + 3]);
        Ok(Quoted {
            src_addr: addr(12),
            dst_addr: addr(16),
            protocol: IpProtocol::from(quoted[9]),
            header_len: header_len as u8,
            first8,
        })
    }

    /// Inner source port, for TCP, UDP or SCTP (their first 4 octets are the ports).
    pub fn src_port(&self) -> Option<u16> {
        self.has_ports()
            .then(|| u16::from_be_bytes([self.first8[0], self.first8[1]]))
    }

    /// Inner destination port, for TCP, UDP or SCTP.
    pub fn dst_port(&self) -> Option<u16> {
        self.has_ports()
            .then(|| u16::from_be_bytes([self.first8[2], self.first8[3]]))
    }

    /// Inner echo identifier, when the quoted datagram is an ICMP echo request or reply.
    pub fn echo_ident(&self) -> Option<u16> {
        (self.protocol == IpProtocol::Icmp && matches!(self.first8[0], 0 | 8))
            .then(|| u16::from_be_bytes([self.first8[4], self.first8[5]]))
    }

    fn has_ports(&self) -> bool {
        matches!(
            self.protocol,
            IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Sctp
        )
    }
}

/// A read/write view of an ICMPv4 message.
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

    /// Checks that the 8-octet header is present (`Truncated`).
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
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

    /// Message type.
    pub fn msg_type(&self) -> Message {
        Message::from(self.buffer.as_ref()[field::TYPE])
    }

    /// Message code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Stored checksum.
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Echo identifier (octets 4–5; meaningful for echo request/reply).
    pub fn echo_ident(&self) -> u16 {
        self.u16_at(field::ECHO_IDENT)
    }

    /// Echo sequence number (octets 6–7; meaningful for echo request/reply).
    pub fn echo_seq_no(&self) -> u16 {
        self.u16_at(field::ECHO_SEQNO)
    }

    /// Next-hop MTU (octets 6–7; meaningful for destination unreachable code 4, RFC 1191 §4;
    /// zero from a router predating RFC 1191).
    pub fn next_hop_mtu(&self) -> u16 {
        self.u16_at(field::NEXT_HOP_MTU)
    }

    /// Parameter-problem pointer (octet 4).
    pub fn pointer(&self) -> u8 {
        self.buffer.as_ref()[field::POINTER]
    }

    /// Octets after the header: echo data, or the quoted invoking datagram of an error.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA]
    }

    /// Verifies the checksum over the whole message.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_u16_at(&mut self, f: Field, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the message type.
    pub fn set_msg_type(&mut self, v: Message) {
        self.buffer.as_mut()[field::TYPE] = v.into();
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16_at(field::CHECKSUM, v);
    }

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, v: u16) {
        self.set_u16_at(field::ECHO_IDENT, v);
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, v: u16) {
        self.set_u16_at(field::ECHO_SEQNO, v);
    }

    /// Sets the next-hop MTU.
    pub fn set_next_hop_mtu(&mut self, v: u16) {
        self.set_u16_at(field::NEXT_HOP_MTU, v);
    }

    /// Zeroes the rest-of-header word (the "unused" field of error messages).
    pub fn clear_rest_of_header(&mut self) {
        self.buffer.as_mut()[4..8].fill(0);
    }

    /// Mutable data after the header.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }

    /// Computes and stores the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(checksum::finish(sum));
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The high-level content of an ICMPv4 message this crate understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Repr<'a> {
    /// Echo request (type 8).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Echo reply (type 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Destination unreachable (type 3).
    DstUnreachable {
        /// Code.
        reason: DstUnreachable,
        /// Next-hop MTU for [`DstUnreachable::FragRequired`]; zero (and not emitted) otherwise.
        next_hop_mtu: u16,
        /// Summary of the quoted datagram.
        header: Quoted,
        /// The quoted bytes, as received (emitted verbatim).
        data: &'a [u8],
    },
    /// Time exceeded (type 11).
    TimeExceeded {
        /// Code.
        reason: TimeExceeded,
        /// Summary of the quoted datagram.
        header: Quoted,
        /// The quoted bytes.
        data: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// Parses a checked packet, verifying the checksum (skipped under `cfg(fuzzing)`).
    ///
    /// Errors: `Truncated` (short header or quote), `Checksum`, `Malformed` (quote not IPv4),
    /// `Unsupported` (other message types: redirect, parameter problem, timestamps, unknown).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>> {
        packet.check_len()?;
        #[allow(unexpected_cfgs)]
        let verify = !cfg!(fuzzing);
        if verify && !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        let data: &'a [u8] = &T::as_ref(packet.buffer)[field::DATA];
        match packet.msg_type() {
            Message::EchoRequest => Ok(Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            Message::EchoReply => Ok(Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            Message::DstUnreachable => {
                let reason = DstUnreachable::from(packet.msg_code());
                let next_hop_mtu = if reason == DstUnreachable::FragRequired {
                    packet.next_hop_mtu()
                } else {
                    0
                };
                Ok(Repr::DstUnreachable {
                    reason,
                    next_hop_mtu,
                    header: Quoted::parse(data)?,
                    data,
                })
            }
            Message::TimeExceeded => Ok(Repr::TimeExceeded {
                reason: TimeExceeded::from(packet.msg_code()),
                header: Quoted::parse(data)?,
                data,
            }),
            _ => Err(Error::Unsupported),
        }
    }

    /// Bytes needed to emit this message.
    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::EchoRequest { data, .. }
            | Repr::EchoReply { data, .. }
            | Repr::DstUnreachable { data, .. }
            | Repr::TimeExceeded { data, .. } => HEADER_LEN + data.len(),
        }
    }

    /// Writes the message into `packet` (sized to [`Repr::buffer_len`]) and fills the checksum.
    /// For errors the quoted `data` is written verbatim; `header` is its summary and not re-encoded.
    ///
    /// # Panics
    /// If the buffer is shorter than [`Repr::buffer_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let end = self.buffer_len() - HEADER_LEN;
        let data = match *self {
            Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
            | Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                let t = if matches!(self, Repr::EchoRequest { .. }) {
                    Message::EchoRequest
                } else {
                    Message::EchoReply
                };
                packet.set_msg_type(t);
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                data
            }
            Repr::DstUnreachable {
                reason,
                next_hop_mtu,
                data,
                ..
            } => {
                packet.set_msg_type(Message::DstUnreachable);
                packet.set_msg_code(reason.into());
                packet.clear_rest_of_header();
                if reason == DstUnreachable::FragRequired {
                    packet.set_next_hop_mtu(next_hop_mtu);
                }
                data
            }
            Repr::TimeExceeded { reason, data, .. } => {
                packet.set_msg_type(Message::TimeExceeded);
                packet.set_msg_code(reason.into());
                packet.clear_rest_of_header();
                data
            }
        };
        packet.data_mut()[..end].copy_from_slice(data);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// scapy: IP(src="10.0.0.1", dst="10.0.0.2")/ICMP(type=8, id=0x1234, seq=7)/b"abcdefgh"
    const ECHO_BYTES: [u8; 16] = [
        0x08, 0x00, 0x54, 0x2f, 0x12, 0x34, 0x00, 0x07, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67,
        0x68,
    ];
    /// scapy: IP(src="10.0.0.254", dst="10.0.0.1")/ICMP(type=3, code=4, nexthopmtu=1400) quoting
    /// the first 28 bytes of IP(src="10.0.0.1", dst="192.168.1.1", flags="DF", id=99, ttl=63)
    /// /UDP(sport=40000, dport=53)/(b"x"*1500)
    const FRAG_NEEDED_BYTES: [u8; 36] = [
        0x03, 0x04, 0xba, 0x14, 0x00, 0x00, 0x05, 0x78, 0x45, 0x00, 0x05, 0xf8, 0x00, 0x63, 0x40,
        0x00, 0x3f, 0x11, 0x69, 0xe8, 0x0a, 0x00, 0x00, 0x01, 0xc0, 0xa8, 0x01, 0x01, 0x9c, 0x40,
        0x00, 0x35, 0x05, 0xe4, 0x9b, 0x15,
    ];

    #[test]
    fn captured_echo() {
        let p = Packet::new_checked(&ECHO_BYTES[..]).unwrap();
        assert_eq!(
            (p.msg_type(), p.msg_code(), p.echo_ident(), p.echo_seq_no()),
            (Message::EchoRequest, 0, 0x1234, 7)
        );
        assert!(p.verify_checksum());
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 7,
                data: b"abcdefgh"
            }
        );
        let mut buf = [0xa5u8; 16];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, ECHO_BYTES);
    }

    #[test]
    fn captured_frag_needed() {
        let p = Packet::new_checked(&FRAG_NEEDED_BYTES[..]).unwrap();
        assert_eq!(
            (p.msg_type(), p.msg_code(), p.next_hop_mtu()),
            (Message::DstUnreachable, 4, 1400)
        );
        let r = Repr::parse(&p).unwrap();
        let Repr::DstUnreachable {
            reason,
            next_hop_mtu,
            header,
            data,
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!((reason, next_hop_mtu), (DstUnreachable::FragRequired, 1400));
        assert_eq!(
            (header.src_addr, header.dst_addr),
            (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(192, 168, 1, 1))
        );
        assert_eq!((header.protocol, header.header_len), (IpProtocol::Udp, 20));
        assert_eq!(
            (header.src_port(), header.dst_port(), header.echo_ident()),
            (Some(40000), Some(53), None)
        );
        assert_eq!(data, &FRAG_NEEDED_BYTES[8..]);
        let mut buf = [0xa5u8; 36];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, FRAG_NEEDED_BYTES);
    }

    #[test]
    fn time_exceeded_quoting_an_echo() {
        // Quote: IPv4 header (protocol 1) + the first 8 bytes of ECHO_BYTES.
        let mut quote = [0u8; 28];
        quote[0] = 0x45;
        quote[9] = 1;
        quote[12..16].copy_from_slice(&[10, 0, 0, 1]);
        quote[16..20].copy_from_slice(&[10, 0, 0, 2]);
        quote[20..].copy_from_slice(&ECHO_BYTES[..8]);
        let header = Quoted::parse(&quote).unwrap();
        let r = Repr::TimeExceeded {
            reason: TimeExceeded::TtlExpired,
            header,
            data: &quote,
        };
        let mut buf = [0xa5u8; 36];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(&buf[4..8], &[0; 4]);
        assert_eq!(Repr::parse(&p).unwrap(), r);
        assert_eq!(
            (header.echo_ident(), header.src_port()),
            (Some(0x1234), None)
        );
    }

    #[test]
    fn every_error_variant() {
        assert_eq!(
            Packet::new_checked(&ECHO_BYTES[..7]).unwrap_err(),
            Error::Truncated
        );
        let mut bad = ECHO_BYTES;
        bad[8] ^= 1;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&bad[..]).unwrap()),
            Err(Error::Checksum)
        );
        let refill = |mut b: Vec<u8>| {
            Packet::new_unchecked(&mut b[..]).fill_checksum();
            b
        };
        // Quote shorter than header + 8 octets.
        let short = refill(FRAG_NEEDED_BYTES[..35].to_vec());
        assert_eq!(
            Repr::parse(&Packet::new_checked(&short[..]).unwrap()),
            Err(Error::Truncated)
        );
        // Quoted datagram is not IPv4, or has IHL < 5.
        for (at, v) in [(8, 0x65), (8, 0x44)] {
            let mut b = FRAG_NEEDED_BYTES.to_vec();
            b[at] = v;
            let b = refill(b);
            assert_eq!(
                Repr::parse(&Packet::new_checked(&b[..]).unwrap()),
                Err(Error::Malformed)
            );
        }
        // Redirect: a valid message we do not represent.
        let mut b = FRAG_NEEDED_BYTES.to_vec();
        b[0] = 5;
        let b = refill(b);
        assert_eq!(
            Repr::parse(&Packet::new_checked(&b[..]).unwrap()),
            Err(Error::Unsupported)
        );
        assert_eq!(Quoted::parse(&[]), Err(Error::Truncated));
    }

    /// An all-zero echo reply sums to +0: its correct checksum is 0xffff (-0), and a stored 0
    /// does not verify (found by the fuzzer's differential against pnet; Linux agrees).
    #[test]
    fn all_zero_message_needs_ffff() {
        let zero = [0u8; 8];
        assert_eq!(
            Repr::parse(&Packet::new_checked(&zero[..]).unwrap()),
            Err(Error::Checksum)
        );
        let mut buf = [0xa5u8; 8];
        Repr::EchoReply {
            ident: 0,
            seq_no: 0,
            data: &[],
        }
        .emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0, 0, 0xff, 0xff, 0, 0, 0, 0]);
        assert!(Packet::new_checked(&buf[..]).unwrap().verify_checksum());
    }

    #[test]
    fn differential_against_oracles() {
        for bytes in [&ECHO_BYTES[..], &FRAG_NEEDED_BYTES[..]] {
            let ours = Packet::new_checked(bytes).unwrap();
            let sm = smoltcp::wire::Icmpv4Packet::new_checked(bytes).unwrap();
            assert_eq!(u8::from(ours.msg_type()), u8::from(sm.msg_type()));
            assert_eq!(ours.msg_code(), sm.msg_code());
            assert_eq!(ours.checksum(), sm.checksum());
            assert_eq!(ours.verify_checksum(), sm.verify_checksum());
            let pn = pnet_packet::icmp::IcmpPacket::new(bytes).unwrap();
            assert_eq!(pnet_packet::icmp::checksum(&pn), ours.checksum());
            let (eh, payload) = etherparse::Icmpv4Header::from_slice(bytes).unwrap();
            assert_eq!(eh.checksum, ours.checksum());
            assert_eq!(payload, ours.data());
            match (Repr::parse(&ours).unwrap(), eh.icmp_type) {
                (
                    Repr::EchoRequest { ident, seq_no, .. },
                    etherparse::Icmpv4Type::EchoRequest(h),
                ) => {
                    assert_eq!((ident, seq_no), (h.id, h.seq));
                    assert_eq!((ident, seq_no), (sm.echo_ident(), sm.echo_seq_no()));
                }
                (
                    Repr::DstUnreachable { next_hop_mtu, .. },
                    etherparse::Icmpv4Type::DestinationUnreachable(h),
                ) => {
                    assert_eq!(
                        h,
                        etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                            next_hop_mtu
                        }
                    );
                }
                other => panic!("disagreement: {other:?}"),
            }
        }
    }

    fn quote_strategy() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<[u8; 20]>(),
            5u8..=15,
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 48..80),
        )
            .prop_map(|(hdr, ihl, proto, tail)| {
                let mut q = hdr.to_vec();
                q[0] = 0x40 | ihl;
                q[9] = proto;
                q.extend_from_slice(&tail);
                q
            })
    }

    proptest! {
        #[test]
        fn round_trip(kind in 0u8..4, ident in any::<u16>(), seq in any::<u16>(), code in any::<u8>(), mtu in any::<u16>(), data in quote_strategy()) {
            let header = Quoted::parse(&data).unwrap();
            let r = match kind {
                0 => Repr::EchoRequest { ident, seq_no: seq, data: &data },
                1 => Repr::EchoReply { ident, seq_no: seq, data: &data },
                2 => {
                    let reason = DstUnreachable::from(code);
                    let next_hop_mtu = if reason == DstUnreachable::FragRequired { mtu } else { 0 };
                    Repr::DstUnreachable { reason, next_hop_mtu, header, data: &data }
                }
                _ => Repr::TimeExceeded { reason: TimeExceeded::from(code), header, data: &data },
            };
            let mut buf = vec![0xa5u8; r.buffer_len()];
            r.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(Repr::parse(&p).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.echo_ident(), p.echo_seq_no());
                let _ = (p.next_hop_mtu(), p.pointer(), p.data(), p.verify_checksum());
                if let Ok(Repr::DstUnreachable { header, .. } | Repr::TimeExceeded { header, .. }) = Repr::parse(&p) {
                    prop_assert!(usize::from(header.header_len) + 8 <= p.data().len());
                }
            }
        }
    }
}
