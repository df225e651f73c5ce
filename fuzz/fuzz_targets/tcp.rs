//! TCP: (a) after `new_checked` no accessor panics and the option walk terminates; (b) parse →
//! emit → parse gives the same `Repr`; (c) differential against smoltcp (acceptance, fields,
//! options), etherparse (acceptance, fields, option bytes) and pnet (checksum value).
//!
//! Legitimate disagreements, by design: smoltcp keeps a window-scale shift above 14 raw (we clamp
//! per RFC 7323 §2.3, so we compare `min(raw, 14)`); smoltcp keeps only 3 SACK blocks (we keep 4);
//! smoltcp treats a timestamps option whose length is not 10 as `Unknown` (we say `Malformed`);
//! smoltcp steps one octet past end-of-list where we stop. The checksum comparison uses pnet because
//! smoltcp's `verify_checksum` returns true under `cfg(fuzzing)`.
#![no_main]

use core::net::{Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use podswitch_wire::Error;
use podswitch_wire::checksum::PseudoHeader;
use podswitch_wire::tcp::{Flags, OptionsIter, Packet, Repr, TcpOption};
use smoltcp::wire::{TcpOption as SmOption, TcpPacket as SmPacket};

const V4_SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const V4_DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const V6_SRC: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const V6_DST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

/// Whether a stored checksum verifies, given the value computed with the field zeroed: equal, or
/// 0xffff where 0 was computed (one's complement -0; the sum then still folds to 0xffff). The
/// reverse, 0 stored where 0xffff was computed, leaves an all-zero sum, which fails (as in Linux).
fn verifies(stored: u16, computed: u16) -> bool {
    stored == computed || (computed == 0 && stored == 0xffff)
}

/// Our options up to end-of-list against smoltcp's.
fn compare_options(ours: &[u8]) {
    let mut sm_rest = ours;
    for option in OptionsIter::new(ours) {
        let sm = SmOption::parse(sm_rest);
        match (option, sm) {
            (Ok(TcpOption::EndOfList), Ok((_, SmOption::EndOfList))) => return,
            (Ok(o), Ok((rest, s))) => {
                sm_rest = rest;
                match (o, s) {
                    (TcpOption::NoOperation, SmOption::NoOperation)
                    | (TcpOption::SackPermitted, SmOption::SackPermitted) => {}
                    (TcpOption::MaxSegmentSize(a), SmOption::MaxSegmentSize(b)) => assert_eq!(a, b),
                    (TcpOption::WindowScale(a), SmOption::WindowScale(b)) => {
                        assert_eq!(a, b.min(14))
                    }
                    (TcpOption::SackRange(a), SmOption::SackRange(b)) => assert_eq!(a[..3], b[..]),
                    (
                        TcpOption::Timestamps { tsval, tsecr },
                        SmOption::TimeStamp { tsval: v, tsecr: e },
                    ) => {
                        assert_eq!((tsval, tsecr), (v, e));
                    }
                    (TcpOption::Unknown { kind, data }, SmOption::Unknown { kind: k, data: d }) => {
                        assert_eq!((kind, data), (k, d));
                    }
                    other => panic!("option disagreement: {other:?}"),
                }
            }
            (Err(Error::Malformed), Err(_)) => return,
            // smoltcp: timestamps with a length other than 10 is Unknown; we reject it.
            (Err(Error::Malformed), Ok((_, SmOption::Unknown { kind: 8, .. }))) => return,
            other => panic!("option disagreement: {other:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let ours = Packet::new_checked(data);
    let sm = SmPacket::new_checked(data);
    let eth = etherparse::TcpHeader::from_slice(data);
    assert_eq!(ours.is_ok(), sm.is_ok(), "acceptance differs from smoltcp");
    assert_eq!(
        ours.is_ok(),
        eth.is_ok(),
        "acceptance differs from etherparse"
    );
    let Ok(p) = ours else { return };
    let sm = sm.unwrap();
    let (eh, eth_payload) = eth.unwrap();

    // (a) every accessor.
    let flags = p.flags();
    let _ = (
        p.reserved(),
        p.urgent_at(),
        p.segment_len(),
        p.data_offset(),
    );
    assert_eq!(flags.0 & Flags::SYN.0 != 0, p.syn());
    assert!(p.options_iter().count() <= 40);
    assert_eq!(usize::from(p.header_len()) + p.payload().len(), data.len());

    // (c) differential.
    assert_eq!((p.src_port(), p.dst_port()), (sm.src_port(), sm.dst_port()));
    assert_eq!(
        (p.seq_number(), p.ack_number()),
        (sm.seq_number().0 as u32, sm.ack_number().0 as u32)
    );
    assert_eq!(
        (
            p.fin(),
            p.syn(),
            p.rst(),
            p.psh(),
            p.ack(),
            p.urg(),
            p.ece(),
            p.cwr()
        ),
        (
            sm.fin(),
            sm.syn(),
            sm.rst(),
            sm.psh(),
            sm.ack(),
            sm.urg(),
            sm.ece(),
            sm.cwr()
        )
    );
    assert_eq!(
        (p.header_len(), p.window_len(), p.checksum()),
        (sm.header_len(), sm.window_len(), sm.checksum())
    );
    assert_eq!(p.options(), sm.options());
    assert_eq!(p.payload(), sm.payload());
    assert_eq!(
        (eh.source_port, eh.destination_port, eh.sequence_number),
        (p.src_port(), p.dst_port(), p.seq_number())
    );
    assert_eq!(
        (
            eh.fin, eh.syn, eh.rst, eh.psh, eh.ack, eh.urg, eh.ece, eh.cwr
        ),
        (
            p.fin(),
            p.syn(),
            p.rst(),
            p.psh(),
            p.ack(),
            p.urg(),
            p.ece(),
            p.cwr()
        )
    );
    assert_eq!(
        (eh.window_size, eh.urgent_pointer),
        (p.window_len(), p.urgent_at())
    );
    assert_eq!(eh.options.as_slice(), p.options());
    assert_eq!(eth_payload, p.payload());
    compare_options(p.options());
    let pn = pnet_packet::tcp::TcpPacket::new(data).unwrap();
    let v4 = PseudoHeader::V4 {
        src: V4_SRC,
        dst: V4_DST,
    };
    let v6 = PseudoHeader::V6 {
        src: V6_SRC,
        dst: V6_DST,
    };
    if data.len() <= usize::from(u16::MAX) {
        assert_eq!(
            p.verify_checksum(&v4),
            verifies(
                p.checksum(),
                pnet_packet::tcp::ipv4_checksum(&pn, &V4_SRC, &V4_DST)
            )
        );
    }
    assert_eq!(
        p.verify_checksum(&v6),
        verifies(
            p.checksum(),
            pnet_packet::tcp::ipv6_checksum(&pn, &V6_SRC, &V6_DST)
        )
    );

    // (b) round trip (checksum verification is skipped in parse under cfg(fuzzing)).
    for ph in [v4, v6] {
        let Ok(repr) = Repr::parse(&p, &ph) else {
            continue;
        };
        assert!(
            repr.options_len() <= 40,
            "a parsed Repr always fits back into 40 octets"
        );
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &ph);
        let again = Packet::new_checked(&buf[..]).expect("emitted segment is well-formed");
        assert!(again.verify_checksum(&ph));
        assert_eq!(Repr::parse(&again, &ph), Ok(repr));
    }
});
