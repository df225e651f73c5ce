#![no_main]
//! Ethernet/VLAN: (a) no accessor panics after `new_checked`; (b) parse → emit → parse gives the
//! same Repr; (c) etherparse agrees on addresses, ethertype and each tag's TCI. Legitimate
//! disagreement: etherparse also walks the legacy 0x9100 TPID as a tag; we treat it as an opaque
//! ethertype, so tag comparison stops at a non-0x8100/0x88a8 TPID.
use libfuzzer_sys::fuzz_target;
use podswitch_wire::ethernet::{Frame, Repr};

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = Frame::new_checked(data) else {
        assert!(data.len() < 14 || etherparse::Ethernet2Header::from_slice(data).is_ok());
        return;
    };
    let _ = (
        frame.destination(),
        frame.source(),
        frame.ethertype(),
        frame.tag_count(),
    );
    let _ = (
        frame.tag(0),
        frame.tag(1),
        frame.tag(2),
        frame.payload_ethertype(),
    );
    assert_eq!(frame.header_len() + frame.payload().len(), data.len());

    let (eth, _) =
        etherparse::Ethernet2Header::from_slice(data).expect("etherparse refuses 14 bytes");
    assert_eq!(eth.source, frame.source().0);
    assert_eq!(eth.destination, frame.destination().0);
    assert_eq!(eth.ether_type.0, u16::from(frame.ethertype()));
    for i in 0..frame.tag_count() {
        let tag = frame.tag(i).expect("counted tag");
        // SingleVlanHeader is the TCI and the next type, after the TPID.
        let (v, _) = etherparse::SingleVlanHeader::from_slice(&data[14 + 4 * i..]).expect("tci");
        assert_eq!(v.vlan_id.value(), tag.vid);
        assert_eq!(v.pcp.value(), tag.pcp);
        assert_eq!(v.drop_eligible_indicator, tag.dei);
    }

    if let Ok(repr) = Repr::parse(&frame) {
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        repr.emit(&mut Frame::new_unchecked(&mut buf[..]));
        assert_eq!(buf[..], data[..repr.buffer_len()]);
        let again =
            Repr::parse(&Frame::new_checked(&buf[..]).expect("own emit")).expect("own emit");
        assert_eq!(again, repr);
    }
});
