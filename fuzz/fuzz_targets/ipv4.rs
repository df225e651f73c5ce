#![no_main]
//! IPv4: (a) no accessor panics after `new_checked`; (b) parse → emit → parse gives the same Repr
//! (options are not represented, so the emitted header is 20 bytes); (c) whenever we accept the
//! buffer, smoltcp and etherparse accept it with the same addresses, protocol, TTL, fragment fields
//! and lengths. Legitimate disagreements: we refuse IHL < 5 in `new_checked` (smoltcp's
//! `check_len` lets it through), and under `cfg(fuzzing)` our Repr skips the checksum while
//! smoltcp's is told to ignore it, so the check is one-way.
use libfuzzer_sys::fuzz_target;
use podswitch_wire::ipv4::{Packet, Repr};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::new_checked(data) else {
        return;
    };
    let _ = (
        p.version(),
        p.header_len(),
        p.dscp(),
        p.ecn(),
        p.total_len(),
        p.ident(),
    );
    let _ = (
        p.reserved_flag(),
        p.dont_frag(),
        p.more_frags(),
        p.frag_offset(),
        p.ttl(),
    );
    let _ = (
        p.protocol(),
        p.checksum(),
        p.src_addr(),
        p.dst_addr(),
        p.verify_checksum(),
    );
    assert_eq!(p.options().len() + 20, usize::from(p.header_len()));
    assert_eq!(
        p.payload().len() + usize::from(p.header_len()),
        usize::from(p.total_len())
    );

    let s = smoltcp::wire::Ipv4Packet::new_checked(data).expect("smoltcp refuses what we accept");
    assert_eq!(s.src_addr(), p.src_addr());
    assert_eq!(s.dst_addr(), p.dst_addr());
    assert_eq!(s.payload().len(), p.payload().len());

    let Ok(repr) = Repr::parse(&p) else { return };
    let (e, _) =
        etherparse::Ipv4Header::from_slice(data).expect("etherparse refuses what we accept");
    assert_eq!(e.source, repr.src_addr.octets());
    assert_eq!(e.destination, repr.dst_addr.octets());
    assert_eq!(e.protocol.0, u8::from(repr.next_header));
    assert_eq!(e.time_to_live, repr.hop_limit);
    assert_eq!(e.identification, repr.ident);
    assert_eq!(
        (e.dont_fragment, e.more_fragments),
        (repr.dont_frag, repr.more_frags)
    );
    assert_eq!(e.fragment_offset.value(), repr.frag_offset);
    assert_eq!(e.dscp.value(), repr.dscp);
    assert_eq!(e.ecn.value(), repr.ecn);
    assert_eq!(e.payload_len().expect("len"), repr.payload_len);

    let mut buf = vec![0xa5u8; 20 + usize::from(repr.payload_len)];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    let again = Packet::new_checked(&buf[..]).expect("emit");
    assert!(again.verify_checksum());
    assert_eq!(Repr::parse(&again).expect("emit"), repr);
});
