//! ICMPv4: (a) after `new_checked` no accessor panics; (b) parse → emit → parse gives the same
//! `Repr`; (c) differential against smoltcp (acceptance, type, code, echo fields), etherparse
//! (echo id/seq, fragmentation-needed MTU, quoted bytes) and pnet (checksum value).
//! smoltcp's `verify_checksum` returns true under `cfg(fuzzing)`, so the checksum is compared with
//! pnet's computation instead.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podswitch_wire::icmpv4::{DstUnreachable, Packet, Repr};

/// Stored checksum verifies: equal to the computed one, or 0xffff (-0) where 0 was computed.
/// (0 stored where 0xffff was computed leaves an all-zero sum, which fails, as in Linux.)
fn verifies(stored: u16, computed: u16) -> bool {
    stored == computed || (computed == 0 && stored == 0xffff)
}

fuzz_target!(|data: &[u8]| {
    let ours = Packet::new_checked(data);
    let sm = smoltcp::wire::Icmpv4Packet::new_checked(data);
    assert_eq!(ours.is_ok(), sm.is_ok(), "acceptance differs from smoltcp");
    let Ok(p) = ours else { return };
    let sm = sm.unwrap();

    // (a)
    let _ = (p.pointer(), p.next_hop_mtu(), p.msg_type().is_error());
    assert_eq!(p.data().len() + 8, data.len());

    // (c)
    assert_eq!(u8::from(p.msg_type()), u8::from(sm.msg_type()));
    assert_eq!(
        (p.msg_code(), p.checksum(), p.echo_ident(), p.echo_seq_no()),
        (
            sm.msg_code(),
            sm.checksum(),
            sm.echo_ident(),
            sm.echo_seq_no()
        )
    );
    let pn = pnet_packet::icmp::IcmpPacket::new(data).unwrap();
    assert_eq!(
        p.verify_checksum(),
        verifies(p.checksum(), pnet_packet::icmp::checksum(&pn))
    );
    // etherparse reads the timestamp messages' 12 extra octets as header and refuses one whose
    // length is not exactly 20, and its payload starts later. Elsewhere its payload is our data.
    let eh = match etherparse::Icmpv4Header::from_slice(data) {
        Ok((eh, rest)) => {
            assert_eq!(eh.checksum, p.checksum());
            if !matches!(data[0], 13 | 14) {
                assert_eq!(rest, p.data());
            }
            Some(eh)
        }
        Err(_) => {
            assert!(matches!(data[0], 13 | 14));
            None
        }
    };

    // (b)
    let Ok(repr) = Repr::parse(&p) else { return };
    let eh = eh.expect("etherparse reads every type we represent");
    match (repr, eh.icmp_type) {
        (Repr::EchoRequest { ident, seq_no, .. }, etherparse::Icmpv4Type::EchoRequest(h))
        | (Repr::EchoReply { ident, seq_no, .. }, etherparse::Icmpv4Type::EchoReply(h)) => {
            assert_eq!((ident, seq_no), (h.id, h.seq))
        }
        // etherparse calls an echo with a non-zero code Unknown; RFC 792 fixes the code at 0 and
        // we, like smoltcp, ignore it.
        (
            Repr::EchoRequest { .. } | Repr::EchoReply { .. },
            etherparse::Icmpv4Type::Unknown { .. },
        ) if p.msg_code() != 0 => {}
        (
            Repr::DstUnreachable {
                reason: DstUnreachable::FragRequired,
                next_hop_mtu,
                ..
            },
            etherparse::Icmpv4Type::DestinationUnreachable(h),
        ) => {
            assert_eq!(
                h,
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu }
            );
        }
        (Repr::DstUnreachable { .. }, etherparse::Icmpv4Type::DestinationUnreachable(_))
        | (
            Repr::TimeExceeded { .. },
            etherparse::Icmpv4Type::TimeExceeded(_) | etherparse::Icmpv4Type::Unknown { .. },
        ) => {}
        // etherparse maps unknown codes of a known type to Unknown.
        (Repr::DstUnreachable { .. }, etherparse::Icmpv4Type::Unknown { .. }) => {}
        other => panic!("disagreement with etherparse: {other:?}"),
    }
    if let Repr::DstUnreachable {
        header,
        data: quoted,
        ..
    }
    | Repr::TimeExceeded {
        header,
        data: quoted,
        ..
    } = repr
    {
        assert!(usize::from(header.header_len) + 8 <= quoted.len());
        assert_eq!(u8::from(header.protocol), quoted[9]);
    }
    let mut buf = vec![0xa5u8; repr.buffer_len()];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    let again = Packet::new_checked(&buf[..]).expect("emitted message is well-formed");
    assert!(again.verify_checksum());
    assert_eq!(Repr::parse(&again), Ok(repr));
});
