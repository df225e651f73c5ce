#![no_main]
//! IPv6: (a) no accessor panics after `new_checked`, including the extension-header walk and the
//! ext/fragment header views; (b) parse → emit → parse gives the same Repr; (c) etherparse agrees
//! on addresses, flow label and, when both walk the chain, the upper-layer protocol and offset.
//! Legitimate disagreements: etherparse also walks AH (51) and has no 8-header bound, and it
//! rejects some chains we accept; we compare only when both succeed and no AH is involved.
//! etherparse takes a zero payload length to mean "the rest of the slice" (we follow RFC 8200:
//! zero bytes; jumbograms are unsupported), and walks on into the data of a non-first fragment
//! (RFC 8200 §4.5: that data is not headers), so both cases skip the chain comparison.
use libfuzzer_sys::fuzz_target;
use podswitch_wire::ip::IpProtocol;
use podswitch_wire::ipv6::{
    ExtHeader, ExtHeaderRepr, FragmentHeader, FragmentRepr, Packet, Repr, walk,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = ExtHeader::new_checked(data) {
        let r = ExtHeaderRepr::parse(&h).expect("checked");
        assert_eq!(r.buffer_len(), h.header_len());
        assert_eq!(h.data().len() + 2, h.header_len());
    }
    if let Ok(h) = FragmentHeader::new_checked(data) {
        let r = FragmentRepr::parse(&h).expect("checked");
        let mut buf = [0xa5u8; 8];
        r.emit(&mut FragmentHeader::new_unchecked(&mut buf[..]));
        assert_eq!(
            FragmentRepr::parse(&FragmentHeader::new_unchecked(&buf[..])).expect("emit"),
            r
        );
    }
    if let Some((&first, rest)) = data.split_first() {
        if let Ok(up) = walk(IpProtocol::from(first), rest) {
            assert!(up.offset <= rest.len());
        }
    }

    let Ok(p) = Packet::new_checked(data) else {
        return;
    };
    let _ = (
        p.version(),
        p.traffic_class(),
        p.dscp(),
        p.ecn(),
        p.flow_label(),
    );
    let _ = (p.next_header(), p.hop_limit(), p.src_addr(), p.dst_addr());
    assert_eq!(p.payload().len(), usize::from(p.payload_len()));
    let up = p.upper_layer();
    if let Ok(up) = up {
        assert!(up.offset <= 40 + p.payload().len());
    }
    let Ok(repr) = Repr::parse(&p) else { return };

    let mut buf = vec![0xa5u8; 40 + usize::from(repr.payload_len)];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    assert_eq!(buf[..40], data[..40]);
    assert_eq!(
        Repr::parse(&Packet::new_checked(&buf[..]).expect("emit")).expect("emit"),
        repr
    );

    let Ok(e) = etherparse::Ipv6Slice::from_slice(data) else {
        return;
    };
    assert_eq!(e.header().source_addr(), repr.src_addr);
    assert_eq!(e.header().destination_addr(), repr.dst_addr);
    assert_eq!(e.header().flow_label().value(), repr.flow_label);
    assert_eq!(e.header().hop_limit(), repr.hop_limit);
    let later_fragment = up.is_ok_and(|u| u.fragment.is_some_and(|f| f.offset != 0));
    if repr.payload_len == 0 || later_fragment {
        return;
    }
    if let Ok(up) = up {
        if up.protocol != IpProtocol::Unknown(51) && e.payload().ip_number.0 != 51 {
            assert_eq!(e.payload().ip_number.0, u8::from(up.protocol));
            assert_eq!(
                e.payload().payload.len(),
                40 + p.payload().len() - up.offset
            );
        }
    }
});
