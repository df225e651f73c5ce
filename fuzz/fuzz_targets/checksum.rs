//! Checksums: (1) `checksum::data` agrees with a naive RFC 1071 sum written here (16-bit words,
//! end-around carry after every addition); (2) the incremental updates `update`, `update32` and
//! `update_bytes` (RFC 1624 eqn. 3) agree with a full recomputation, modulo the +0/-0 equivalence
//! of one's complement; (3) the pseudo-header helpers agree with `data` over the laid-out bytes.
//!
//! Input: `[offset, value bytes (16)..., data...]`; the offset picks the even position of the
//! changed field inside `data`.
#![no_main]

use core::net::{Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use podswitch_wire::IpProtocol;
use podswitch_wire::checksum::{
    PseudoHeader, data as sum, finish, pseudo_header_v4, pseudo_header_v6, update, update_bytes,
    update32,
};

fn naive(bytes: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
        acc += word;
        if acc > 0xffff {
            acc = (acc & 0xffff) + 1;
        }
    }
    acc as u16
}

/// Same sum, two encodings allowed only when the sum is zero (+0 = 0x0000, -0 = 0xffff).
fn equivalent(a: u16, b: u16) -> bool {
    a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
}

fuzz_target!(|input: &[u8]| {
    assert_eq!(sum(input), naive(input));
    let [offset, rest @ ..] = input else { return };
    let Some((value, data)) = rest.split_first_chunk::<16>() else {
        return;
    };
    if data.len() < 16 {
        return;
    }
    // An even-length buffer so changed fields sit on word boundaries, as header fields do.
    let data = &data[..data.len() & !1];
    let stored = finish(sum(data));

    let at16 = (usize::from(*offset) * 2) % (data.len() - 1) & !1;
    let mut changed = data.to_vec();
    let old16 = u16::from_be_bytes([data[at16], data[at16 + 1]]);
    let new16 = u16::from_be_bytes([value[0], value[1]]);
    changed[at16..at16 + 2].copy_from_slice(&new16.to_be_bytes());
    assert!(equivalent(
        update(stored, old16, new16),
        finish(sum(&changed))
    ));

    let at32 = at16.min(data.len() - 4) & !1;
    let old32 = u32::from_be_bytes(data[at32..at32 + 4].try_into().unwrap());
    let new32 = u32::from_be_bytes(value[..4].try_into().unwrap());
    let mut changed = data.to_vec();
    changed[at32..at32 + 4].copy_from_slice(&new32.to_be_bytes());
    let full = finish(sum(&changed));
    assert!(equivalent(update32(stored, old32, new32), full));
    assert!(equivalent(
        update_bytes(stored, &old32.to_be_bytes(), &new32.to_be_bytes()),
        full
    ));

    // An IPv6-address-sized rewrite, as NAT66 would do.
    let at128 = at16.min(data.len() - 16) & !1;
    let mut changed = data.to_vec();
    changed[at128..at128 + 16].copy_from_slice(value);
    assert!(equivalent(
        update_bytes(stored, &data[at128..at128 + 16], value),
        finish(sum(&changed))
    ));

    // Pseudo-headers against their byte layout.
    let s4 = Ipv4Addr::from(u32::from_be_bytes(value[..4].try_into().unwrap()));
    let d4 = Ipv4Addr::from(u32::from_be_bytes(value[4..8].try_into().unwrap()));
    let len = u16::from_be_bytes([value[8], value[9]]);
    let mut b4 = [0u8; 12];
    b4[..4].copy_from_slice(&s4.octets());
    b4[4..8].copy_from_slice(&d4.octets());
    b4[9] = 6;
    b4[10..].copy_from_slice(&len.to_be_bytes());
    assert_eq!(pseudo_header_v4(s4, d4, IpProtocol::Tcp, len), naive(&b4));
    assert_eq!(
        PseudoHeader::V4 { src: s4, dst: d4 }.sum(IpProtocol::Tcp, u32::from(len)),
        naive(&b4)
    );
    let s6 = Ipv6Addr::from(*value);
    let d6 = Ipv6Addr::from(u128::from_be_bytes(*value).rotate_left(8));
    let len6 = u32::from_be_bytes(value[..4].try_into().unwrap());
    let mut b6 = [0u8; 40];
    b6[..16].copy_from_slice(&s6.octets());
    b6[16..32].copy_from_slice(&d6.octets());
    b6[32..36].copy_from_slice(&len6.to_be_bytes());
    b6[39] = 17;
    assert_eq!(pseudo_header_v6(s6, d6, IpProtocol::Udp, len6), naive(&b6));
});
