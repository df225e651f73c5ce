//! UDP: (a) after `new_checked` no accessor panics; (b) parse → emit → parse gives the same
//! `Repr` over IPv4 and IPv6; (c) differential against smoltcp (acceptance, fields, payload),
//! etherparse (header fields) and pnet (checksum value, when the length field covers the whole
//! buffer — pnet sums the whole buffer, we sum the datagram the length field delimits).
//! smoltcp's `verify_checksum` returns true under `cfg(fuzzing)`, so it is not compared.
#![no_main]

use core::net::{Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use podswitch_wire::checksum::PseudoHeader;
use podswitch_wire::udp::{HEADER_LEN, Packet, Repr, ZeroChecksum};

const V4_SRC: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 3);
const V4_DST: Ipv4Addr = Ipv4Addr::new(10, 4, 5, 6);
const V6_SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const V6_DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// Stored checksum verifies: equal to the computed one, or 0xffff (-0) where 0 was computed.
/// (0 stored where 0xffff was computed leaves an all-zero sum, which fails, as in Linux.)
fn verifies(stored: u16, computed: u16) -> bool {
    stored == computed || (computed == 0 && stored == 0xffff)
}

fuzz_target!(|data: &[u8]| {
    let ours = Packet::new_checked(data);
    let sm = smoltcp::wire::UdpPacket::new_checked(data);
    assert_eq!(ours.is_ok(), sm.is_ok(), "acceptance differs from smoltcp");
    let Ok(p) = ours else { return };
    let sm = sm.unwrap();

    // (a)
    let _ = p.is_empty();
    assert_eq!(p.payload().len() + HEADER_LEN, usize::from(p.len()));

    // (c)
    assert_eq!(
        (p.src_port(), p.dst_port(), p.len(), p.checksum()),
        (sm.src_port(), sm.dst_port(), sm.len(), sm.checksum())
    );
    assert_eq!(p.payload(), sm.payload());
    let (eh, _) = etherparse::UdpHeader::from_slice(data).unwrap();
    assert_eq!(
        (eh.source_port, eh.destination_port, eh.length, eh.checksum),
        (p.src_port(), p.dst_port(), p.len(), p.checksum())
    );
    let v4 = PseudoHeader::V4 {
        src: V4_SRC,
        dst: V4_DST,
    };
    let v6 = PseudoHeader::V6 {
        src: V6_SRC,
        dst: V6_DST,
    };
    if usize::from(p.len()) == data.len() {
        let pn = pnet_packet::udp::UdpPacket::new(data).unwrap();
        let c4 = pnet_packet::udp::ipv4_checksum(&pn, &V4_SRC, &V4_DST);
        let c6 = pnet_packet::udp::ipv6_checksum(&pn, &V6_SRC, &V6_DST);
        // Zero means "none" over IPv4 (RFC 768); over IPv6 it is invalid (RFC 8200 §8.1).
        assert_eq!(
            p.verify_checksum(&v4),
            p.checksum() == 0 || verifies(p.checksum(), c4)
        );
        assert_eq!(
            p.verify_checksum(&v6),
            p.checksum() != 0 && verifies(p.checksum(), c6)
        );
        assert_eq!(
            p.verify_checksum_with(&v6, ZeroChecksum::Accept),
            p.checksum() == 0 || verifies(p.checksum(), c6)
        );
    }

    // (b)
    for ph in [v4, v6] {
        let Ok(repr) = Repr::parse(&p, &ph) else {
            continue;
        };
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &ph);
        let again = Packet::new_checked(&buf[..]).expect("emitted datagram is well-formed");
        assert!(again.verify_checksum(&ph));
        assert_ne!(again.checksum(), 0, "a computed zero is sent as 0xffff");
        assert_eq!(Repr::parse(&again, &ph), Ok(repr));
    }
});
