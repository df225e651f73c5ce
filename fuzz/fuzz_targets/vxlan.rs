#![no_main]
//! VXLAN: (a) no accessor panics after `new_checked`; (b) parse → emit → parse gives the same
//! Repr; (c) pnet agrees on the flags byte, the 24 bits after it (the GBP fields when G is set)
//! and the VNI, and parse succeeds exactly when the I flag is set.
use libfuzzer_sys::fuzz_target;
use pnet_packet::vxlan::VxlanPacket;
use podswitch_wire::vxlan::{FLAG_I, Packet, Repr};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::new_checked(data) else {
        assert!(VxlanPacket::new(data).is_none());
        return;
    };
    let _ = (
        p.flags(),
        p.instance_flag(),
        p.group_flag(),
        p.gbp_flags(),
        p.dont_learn(),
    );
    let _ = (
        p.policy_applied(),
        p.group_policy_id(),
        p.vni(),
        p.reserved2(),
        p.payload(),
    );
    let pn = VxlanPacket::new(data).expect("pnet refuses 8 bytes");
    assert_eq!(pn.get_flags(), p.flags());
    assert_eq!(pn.get_vni(), p.vni());
    assert_eq!(
        pn.get_reserved1(),
        (u32::from(p.gbp_flags()) << 16) | u32::from(p.group_policy_id())
    );

    let parsed = Repr::parse(&p);
    assert_eq!(parsed.is_ok(), pn.get_flags() & FLAG_I != 0);
    let Ok(repr) = parsed else { return };
    let mut buf = [0xa5u8; 8];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    assert_eq!(
        Repr::parse(&Packet::new_checked(&buf[..]).expect("emit")).expect("emit"),
        repr
    );
});
