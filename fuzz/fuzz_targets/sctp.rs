//! SCTP: (a) after `new_checked` no accessor panics and the chunk walk covers the chunk area
//! exactly; (b) parse → emit → parse gives the same `Repr`; (c) differential: smoltcp, etherparse
//! and pnet have no SCTP parser, so the oracle is an independent bit-at-a-time CRC32c written
//! here (RFC 9260 Appendix A: reflected 0x82F63B78, stored least-significant byte first) and a
//! naive chunk walk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podswitch_wire::sctp::{ChunkType, Packet, Repr, crc32c};

fn crc32c_bitwise(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Chunk types and value lengths by the plainest possible walk; `None` if it fails.
fn naive_chunks(mut area: &[u8]) -> Option<Vec<(u8, usize)>> {
    let mut out = Vec::new();
    while !area.is_empty() {
        if area.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([area[2], area[3]]));
        if len < 4 || len > area.len() {
            return None;
        }
        out.push((area[0], len - 4));
        let step = (len + 3) / 4 * 4;
        area = if step >= area.len() {
            &[]
        } else {
            &area[step..]
        };
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    assert_eq!(crc32c(data), crc32c_bitwise(data));
    let Ok(p) = Packet::new_checked(data) else {
        assert!(data.len() < 12);
        return;
    };

    // (a) + (c)
    let _ = (p.src_port(), p.dst_port(), p.verification_tag());
    let mut zeroed = data.to_vec();
    zeroed[8..12].fill(0);
    let oracle = crc32c_bitwise(&zeroed);
    assert_eq!(p.compute_checksum(), oracle);
    assert_eq!(p.verify_checksum(), data[8..12] == oracle.to_le_bytes());
    let ours: Result<Vec<(u8, usize)>, _> = p
        .chunks_iter()
        .map(|c| c.map(|c| (u8::from(c.chunk_type), c.value.len())))
        .collect();
    assert_eq!(ours.ok(), naive_chunks(p.chunks()));
    for c in p.chunks_iter().flatten() {
        let _ = (c.t_bit(), c.buffer_len());
        assert_eq!(
            c.initiate_tag().is_some(),
            matches!(c.chunk_type, ChunkType::Init | ChunkType::InitAck) && c.value.len() >= 4
        );
    }

    // (b)
    let Ok(repr) = Repr::parse(&p) else { return };
    assert_eq!(
        repr.first_chunk_type().map(u8::from),
        p.chunks().first().copied()
    );
    let mut buf = vec![0xa5u8; repr.buffer_len()];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    let again = Packet::new_checked(&buf[..]).expect("emitted packet is well-formed");
    assert!(again.verify_checksum());
    assert_eq!(Repr::parse(&again), Ok(repr));
});
