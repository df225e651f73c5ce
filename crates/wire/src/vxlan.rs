//! VXLAN headers (RFC 7348 §5) with the Group Based Policy extension
//! (draft-smith-vxlan-group-policy §2: G bit, D "don't learn" bit, A "policy applied" bit, 16-bit
//! Group Policy ID), which is how the Linux kernel's vxlan device carries a policy group.
//!
//! Owns the [`Packet`] view of the 8-byte header, [`Gbp`] and [`Repr`]. Invariants: after
//! [`Packet::new_checked`] the 8 bytes are present and no accessor panics. RFC 7348 §5: "The I
//! flag MUST be set to 1 for a valid VXLAN Network ID"; [`Repr::parse`] rejects a header without
//! it (`Malformed`), as the kernel does. Reserved bits "MUST be set to zero on transmission and
//! ignored on receipt": `emit` zeroes them and `parse` ignores them. When the G bit is clear the
//! GBP bytes are reserved and ignored too. Plain data, thread-safe.

use crate::field::{Field, Rest};
use crate::{Error, Result};

mod field {
    use super::{Field, Rest};
    pub const FLAGS: usize = 0;
    pub const GBP_FLAGS: usize = 1;
    pub const GROUP_POLICY_ID: Field = 2..4;
    pub const VNI: Field = 4..7;
    pub const RESERVED2: usize = 7;
    pub const PAYLOAD: Rest = 8..;
}

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// The IANA-assigned UDP destination port (RFC 7348 §5).
pub const PORT: u16 = 4789;

/// I flag: the VNI is valid.
pub const FLAG_I: u8 = 0x08;
/// G flag (GBP): a Group Policy ID is present.
pub const FLAG_G: u8 = 0x80;
/// D bit (GBP): don't learn the source.
pub const GBP_FLAG_D: u8 = 0x40;
/// A bit (GBP): policy has already been applied.
pub const GBP_FLAG_A: u8 = 0x08;

/// A read/write view of a VXLAN header and the inner frame after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps and checks a buffer.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` under 8 bytes.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Consumes the view.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The first byte: R R R R I R R R, or G R R R I R R R with GBP.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// I flag.
    pub fn instance_flag(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// G flag (GBP).
    pub fn group_flag(&self) -> bool {
        self.flags() & FLAG_G != 0
    }

    /// Second byte: reserved, or GBP's R D R R A R R R.
    pub fn gbp_flags(&self) -> u8 {
        self.buffer.as_ref()[field::GBP_FLAGS]
    }

    /// D bit (GBP).
    pub fn dont_learn(&self) -> bool {
        self.gbp_flags() & GBP_FLAG_D != 0
    }

    /// A bit (GBP).
    pub fn policy_applied(&self) -> bool {
        self.gbp_flags() & GBP_FLAG_A != 0
    }

    /// Bytes 2..4: reserved, or GBP's Group Policy ID.
    pub fn group_policy_id(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([
            b[field::GROUP_POLICY_ID.start],
            b[field::GROUP_POLICY_ID.start + 1],
        ])
    }

    /// 24-bit VXLAN network identifier.
    pub fn vni(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([
            0,
            b[field::VNI.start],
            b[field::VNI.start + 1],
            b[field::VNI.start + 2],
        ])
    }

    /// The last reserved byte.
    pub fn reserved2(&self) -> u8 {
        self.buffer.as_ref()[field::RESERVED2]
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags byte.
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets the second byte.
    pub fn set_gbp_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::GBP_FLAGS] = value;
    }

    /// Sets bytes 2..4.
    pub fn set_group_policy_id(&mut self, value: u16) {
        self.buffer.as_mut()[field::GROUP_POLICY_ID].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the VNI (24 bits; higher bits are dropped).
    pub fn set_vni(&mut self, value: u32) {
        self.buffer.as_mut()[field::VNI].copy_from_slice(&value.to_be_bytes()[1..]);
    }

    /// Sets the last reserved byte.
    pub fn set_reserved2(&mut self, value: u8) {
        self.buffer.as_mut()[field::RESERVED2] = value;
    }

    /// Mutable inner frame.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// The Group Based Policy fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gbp {
    /// Group Policy ID: the source's policy group.
    pub group_policy_id: u16,
    /// D bit.
    pub dont_learn: bool,
    /// A bit.
    pub policy_applied: bool,
}

/// A parsed VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// 24-bit VNI.
    pub vni: u32,
    /// GBP fields, when the G bit is set.
    pub gbp: Option<Gbp>,
}

impl Repr {
    /// Parses a checked header: `Malformed` without the I flag.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.instance_flag() {
            return Err(Error::Malformed);
        }
        let gbp = packet.group_flag().then(|| Gbp {
            group_policy_id: packet.group_policy_id(),
            dont_learn: packet.dont_learn(),
            policy_applied: packet.policy_applied(),
        });
        Ok(Repr {
            vni: packet.vni(),
            gbp,
        })
    }

    /// Always 8.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes all 8 bytes, reserved bits zero. The VNI is truncated to 24 bits.
    ///
    /// # Panics
    /// If the buffer is shorter than 8 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        if let Some(g) = self.gbp {
            packet.set_flags(FLAG_I | FLAG_G);
            let mut f = 0;
            if g.dont_learn {
                f |= GBP_FLAG_D;
            }
            if g.policy_applied {
                f |= GBP_FLAG_A;
            }
            packet.set_gbp_flags(f);
            packet.set_group_policy_id(g.group_policy_id);
        } else {
            packet.set_flags(FLAG_I);
            packet.set_gbp_flags(0);
            packet.set_group_policy_id(0);
        }
        packet.set_vni(self.vni);
        packet.set_reserved2(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::captured;
    use proptest::prelude::*;

    /// The VXLAN header sits after Ethernet (14), IPv4 (20) and UDP (8).
    const AT: usize = 42;

    #[test]
    fn captured_plain_and_gbp() {
        let p = Packet::new_checked(&captured::VXLAN_TCP[AT..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Repr {
                vni: 0x123456,
                gbp: None
            }
        );
        assert_eq!(p.payload().len(), captured::VXLAN_TCP.len() - AT - 8);
        let mut buf = [0xa5u8; 8];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, captured::VXLAN_TCP[AT..AT + 8]);

        let p = Packet::new_checked(&captured::VXLAN_GBP_TCP[AT..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        let gbp = Gbp {
            group_policy_id: 0x0102,
            dont_learn: true,
            policy_applied: true,
        };
        assert_eq!(
            r,
            Repr {
                vni: 42,
                gbp: Some(gbp)
            }
        );
        let mut buf = [0xa5u8; 8];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, captured::VXLAN_GBP_TCP[AT..AT + 8]);
    }

    #[test]
    fn errors_and_reserved_bits() {
        assert_eq!(
            Packet::new_checked(&[8u8, 0, 0, 0, 0, 0, 1][..]).unwrap_err(),
            Error::Truncated
        );
        let no_i = [0u8, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&no_i[..])).unwrap_err(),
            Error::Malformed
        );
        // Reserved bits set: ignored on receipt (RFC 7348 §5).
        let noisy = [0x08 | 0x77, 0xff, 0xff, 0xff, 0, 0, 7, 0xff];
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&noisy[..])).unwrap(),
            Repr { vni: 7, gbp: None }
        );
    }

    #[test]
    fn pnet_agrees_on_captured() {
        use pnet_packet::vxlan::VxlanPacket;
        for frame in [&captured::VXLAN_TCP[..], &captured::VXLAN_GBP_TCP] {
            let ours = Repr::parse(&Packet::new_checked(&frame[AT..]).unwrap()).unwrap();
            let theirs = VxlanPacket::new(&frame[AT..]).unwrap();
            assert_eq!(theirs.get_vni(), ours.vni);
            assert_eq!(theirs.get_flags() & FLAG_G != 0, ours.gbp.is_some());
            if let Some(g) = ours.gbp {
                assert_eq!(
                    theirs.get_reserved1() & 0xffff,
                    u32::from(g.group_policy_id)
                );
            }
        }
    }

    proptest! {
        #[test]
        fn round_trip(vni in 0u32..1 << 24, gbp in proptest::option::of(any::<(u16, bool, bool)>())) {
            let r = Repr {
                vni,
                gbp: gbp.map(|(id, d, a)| Gbp { group_policy_id: id, dont_learn: d, policy_applied: a }),
            };
            let mut buf = [0xa5u8; 8];
            r.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
        }
    }
}
