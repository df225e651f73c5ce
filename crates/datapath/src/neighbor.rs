//! Proxy ARP (RFC 826) and proxy neighbour discovery (RFC 4861): the router answers for the
//! gateway address and for every known endpoint with its own MAC, so every pod sends all traffic
//! to the router (Calico's model: routed, no flooding).
//!
//! Builders write a whole Ethernet frame into a caller's slice and return its length. A neighbour
//! advertisement for the gateway sets Router and Override; for a proxied endpoint it clears
//! Override (RFC 4861 §7.2.8: a proxy must not override the owner's own answer). Pure functions,
//! thread-safe.

use core::net::{Ipv4Addr, Ipv6Addr};

use podswitch_wire::IpProtocol;
use podswitch_wire::checksum;
use podswitch_wire::ethernet::Address;

/// Ethertype of ARP.
const ETHERTYPE_ARP: u16 = 0x0806;
/// Ethertype of IPv6.
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Minimum Ethernet frame without FCS; shorter replies are zero-padded.
const MIN_FRAME: usize = 60;

/// Writes an ARP reply: `router_mac` is at `target_ip`, sent to the requester. Returns 60 (the
/// 42-byte reply padded to the Ethernet minimum), or `None` if `out` is shorter.
pub fn build_arp_reply(
    out: &mut [u8],
    router_mac: Address,
    target_ip: Ipv4Addr,
    requester_mac: Address,
    requester_ip: Ipv4Addr,
) -> Option<usize> {
    let f = out.get_mut(..MIN_FRAME)?;
    f[0..6].copy_from_slice(&requester_mac.0);
    f[6..12].copy_from_slice(&router_mac.0);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    // htype Ethernet, ptype IPv4, hlen 6, plen 4, oper reply (RFC 826).
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    f[22..28].copy_from_slice(&router_mac.0);
    f[28..32].copy_from_slice(&target_ip.octets());
    f[32..38].copy_from_slice(&requester_mac.0);
    f[38..42].copy_from_slice(&requester_ip.octets());
    f[42..].fill(0);
    Some(MIN_FRAME)
}

/// Writes a solicited neighbour advertisement (RFC 4861 §4.4, §7.2.4) for `target` with the
/// target link-layer address option set to `router_mac`, from `target` to `dst_ip`/`dst_mac`.
/// `router` sets R and O (the gateway itself); otherwise only S (proxy). Returns the frame
/// length (86), or `None` if `out` is shorter.
pub fn build_neighbor_advert(
    out: &mut [u8],
    router_mac: Address,
    target: Ipv6Addr,
    dst_mac: Address,
    dst_ip: Ipv6Addr,
    router: bool,
) -> Option<usize> {
    const ICMP_LEN: usize = 32;
    let f = out.get_mut(..14 + 40 + ICMP_LEN)?;
    f[0..6].copy_from_slice(&dst_mac.0);
    f[6..12].copy_from_slice(&router_mac.0);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let ip = &mut f[14..54];
    ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    ip[4..6].copy_from_slice(&(ICMP_LEN as u16).to_be_bytes());
    ip[6] = u8::from(IpProtocol::Icmpv6);
    // RFC 4861 §7.1.2: receivers discard an NA whose hop limit is not 255.
    ip[7] = 255;
    ip[8..24].copy_from_slice(&target.octets());
    ip[24..40].copy_from_slice(&dst_ip.octets());
    let icmp = &mut f[54..];
    icmp[0] = 136;
    icmp[1] = 0;
    icmp[2..4].fill(0);
    // Flags: R 0x80, S 0x40, O 0x20.
    icmp[4] = if router { 0x80 | 0x40 | 0x20 } else { 0x40 };
    icmp[5..8].fill(0);
    icmp[8..24].copy_from_slice(&target.octets());
    // Target link-layer address option: type 2, length 1 (8 octets).
    icmp[24] = 2;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&router_mac.0);
    let ph = checksum::pseudo_header_v6(target, dst_ip, IpProtocol::Icmpv6, ICMP_LEN as u32);
    let c = checksum::finish(checksum::combine(&[ph, checksum::data(icmp)]));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Some(14 + 40 + ICMP_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_reply_fields() {
        let mut out = [0xa5u8; 128];
        let r = Address([2, 0, 0, 0, 0, 1]);
        let q = Address([2, 0, 0, 0, 0, 9]);
        let n = build_arp_reply(
            &mut out,
            r,
            Ipv4Addr::new(10, 0, 0, 1),
            q,
            Ipv4Addr::new(10, 0, 0, 9),
        )
        .expect("fits");
        assert_eq!(n, 60);
        assert_eq!(&out[0..6], &q.0);
        assert_eq!(&out[20..22], &[0, 2]);
        assert_eq!(&out[28..32], &[10, 0, 0, 1]);
        assert!(out[42..60].iter().all(|&b| b == 0));
        assert_eq!(out[60], 0xa5);
    }

    #[test]
    fn neighbor_advert_checksum_verifies() {
        let mut out = [0u8; 128];
        let t: Ipv6Addr = "fd00::1".parse().expect("addr");
        let d: Ipv6Addr = "fd00::9".parse().expect("addr");
        let n = build_neighbor_advert(&mut out, Address([2; 6]), t, Address([4; 6]), d, true)
            .expect("fits");
        let ph = checksum::pseudo_header_v6(t, d, IpProtocol::Icmpv6, 32);
        assert_eq!(
            checksum::combine(&[ph, checksum::data(&out[54..n])]),
            0xffff
        );
        assert!(
            build_neighbor_advert(&mut out[..80], Address([2; 6]), t, Address([4; 6]), d, true)
                .is_none()
        );
    }
}
