#![no_main]
//! ARP: (a) no accessor panics after `new_checked`; (b) parse → emit → parse gives the same Repr
//! and the same 28 bytes; (c) whenever we accept, smoltcp and etherparse accept with the same
//! fields. Legitimate disagreement: smoltcp's Repr accepts any opcode (we refuse non
//! request/reply as `Unsupported`), so the check is one-way.
use libfuzzer_sys::fuzz_target;
use podswitch_wire::arp::{Packet, Repr};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::new_checked(data) else {
        return;
    };
    let _ = (
        p.hardware_type(),
        p.protocol_type(),
        p.hardware_len(),
        p.protocol_len(),
    );
    let _ = (
        p.operation(),
        p.source_hardware_addr(),
        p.source_protocol_addr(),
    );
    let _ = (p.target_hardware_addr(), p.target_protocol_addr());
    let Ok(repr) = Repr::parse(&p) else { return };

    let mut buf = [0xa5u8; 28];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    assert_eq!(buf[..], data[..28]);
    assert_eq!(
        Repr::parse(&Packet::new_checked(&buf[..]).expect("emit")).expect("emit"),
        repr
    );

    let s = smoltcp::wire::ArpPacket::new_checked(data).expect("smoltcp refuses what we accept");
    match smoltcp::wire::ArpRepr::parse(&s).expect("smoltcp repr") {
        smoltcp::wire::ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_hardware_addr,
            target_protocol_addr,
        } => {
            assert_eq!(u16::from(operation), u16::from(repr.operation));
            assert_eq!(source_hardware_addr.0, repr.source_hardware_addr.0);
            assert_eq!(source_protocol_addr, repr.source_protocol_addr);
            assert_eq!(target_hardware_addr.0, repr.target_hardware_addr.0);
            assert_eq!(target_protocol_addr, repr.target_protocol_addr);
        }
        other => panic!("smoltcp saw {other:?}"),
    }
    let e = etherparse::ArpPacket::from_slice(data)
        .expect("etherparse")
        .try_eth_ipv4()
        .expect("eth/ipv4");
    assert_eq!(e.operation.0, u16::from(repr.operation));
    assert_eq!(e.sender_mac, repr.source_hardware_addr.0);
    assert_eq!(e.sender_ipv4, repr.source_protocol_addr.octets());
    assert_eq!(e.target_mac, repr.target_hardware_addr.0);
    assert_eq!(e.target_ipv4, repr.target_protocol_addr.octets());
});
