//! [`FlowKey`]: the exact-match key of a frame, extracted once from the wire crate's
//! [`Headers`], and its hashes.
//!
//! The key holds every field a cached forwarding or policy decision depends on: input port, outer
//! VLAN, MAC addresses, ethertype, IP addresses (v4 and v6 in one 128-bit layout, told apart by a
//! family bit), IP protocol, the L4 ports (ICMP: type/code and echo identifier), and the fragment
//! state; for ARP, the operation and the sender/target protocol addresses. It deliberately leaves
//! out anything that changes per packet within one flow (TCP flags, sequence numbers, TTL, length):
//! connection tracking judges those. MAC addresses are in the key because the slow path's decision
//! depends on them (a frame not addressed to the gateway is not routed; a spoofed source MAC must
//! not ride on a cached allow).
//!
//! Invariants: two frames with equal keys receive the same cached decision; unused fields are
//! zero, so equal flows give bit-identical keys. `FlowKey` is `Copy`, 64 bytes, and hashing it costs
//! four 64×64→128-bit multiplies (no SipHash on the hot path). Pure values; thread-safe.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use podswitch_wire::arp;
use podswitch_wire::ethernet::Address;
use podswitch_wire::frame::{self, Headers, L3, L4};

/// IP fragment state as the key records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fragment {
    /// Not a fragment (or not IP).
    #[default]
    None,
    /// First fragment: the L4 ports are present.
    First,
    /// A later fragment: no L4 header, ports are zero.
    Later,
}

/// The exact-match key of one frame.
///
/// Build it with [`FlowKey::from_headers`]; fields are public so the slow path can build the key of
/// a reply or of a synthetic flow, but then it must keep unused fields zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Source IP (IPv4 in the low 32 bits), or for ARP the sender protocol address.
    pub src: u128,
    /// Destination IP (IPv4 in the low 32 bits), or for ARP the target protocol address.
    pub dst: u128,
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Input port.
    pub in_port: u32,
    /// Outer VLAN identifier, 0 when untagged.
    pub vlan: u16,
    /// Final ethertype (never a TPID).
    pub ethertype: u16,
    /// TCP/UDP/SCTP source port; ICMP `type << 8 | code`; ARP operation.
    pub src_port: u16,
    /// TCP/UDP/SCTP destination port; ICMP echo identifier (0 for other ICMP messages).
    pub dst_port: u16,
    /// IP protocol (after IPv6 extension headers); 0 when not IP.
    pub protocol: u8,
    /// Bit 0: IPv6; bits 1–2: [`Fragment`] (0 none, 1 first, 2 later); bit 3: ICMP message.
    pub flags: u8,
}

const FLAG_V6: u8 = 0x01;
const FRAG_SHIFT: u8 = 1;
const FRAG_MASK: u8 = 0x06;
const FLAG_ICMP: u8 = 0x08;

/// Odd 64-bit constants (from wyhash) that seed each multiply.
const K: [u64; 9] = [
    0xa076_1d64_78bd_642f,
    0xe703_7ed1_a0b4_28db,
    0x8ebc_6af0_9c88_c6e3,
    0x5899_65cc_7537_4cc3,
    0x1d8e_4e27_c47d_124f,
    0x9e37_79b9_7f4a_7c15,
    0xbf58_476d_1ce4_e5b9,
    0x94d0_49bb_1331_11eb,
    0xd6e8_feb8_6659_fd93,
];

/// Multiply two words to 128 bits and fold the halves (the "mum" mix of wyhash): every input bit
/// reaches most output bits in one multiply.
#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

#[inline(always)]
fn mac_word(m: &[u8; 6]) -> u64 {
    // Read as the key was just written (four bytes, then two): a load spanning both stores
    // could not be forwarded from the store buffer and stalled (a tenth of a datapath's time).
    u64::from(u32::from_le_bytes([m[0], m[1], m[2], m[3]]))
        | u64::from(u16::from_le_bytes([m[4], m[5]])) << 32
}

#[inline(always)]
fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_bits()),
        IpAddr::V6(a) => a.to_bits(),
    }
}

impl FlowKey {
    /// Extracts the key of a frame parsed by [`podswitch_wire::parse_frame`] arriving on `in_port`.
    #[inline]
    pub fn from_headers(in_port: u32, h: &Headers) -> FlowKey {
        let mut k = FlowKey {
            in_port,
            vlan: h.vlans().first().map_or(0, |v| v.vid),
            ethertype: h.ethertype,
            src_mac: h.src_mac.0,
            dst_mac: h.dst_mac.0,
            ..FlowKey::default()
        };
        match &h.l3 {
            L3::Ip(ip) => {
                k.src = ip_bits(ip.src);
                k.dst = ip_bits(ip.dst);
                k.protocol = u8::from(ip.protocol);
                if ip.dst.is_ipv6() {
                    k.flags |= FLAG_V6;
                }
                let frag = match ip.fragment {
                    frame::Fragment::None => Fragment::None,
                    frame::Fragment::First => Fragment::First,
                    frame::Fragment::Later => Fragment::Later,
                };
                k.flags |= (frag as u8) << FRAG_SHIFT;
            }
            L3::Arp(a) => {
                k.src = u128::from(a.source_protocol_addr.to_bits());
                k.dst = u128::from(a.target_protocol_addr.to_bits());
                k.src_port = u16::from(a.operation);
            }
            L3::None => {}
        }
        match h.l4 {
            L4::Tcp(t) => (k.src_port, k.dst_port) = (t.src_port, t.dst_port),
            L4::Udp(u) => (k.src_port, k.dst_port) = (u.src_port, u.dst_port),
            L4::Sctp(s) => (k.src_port, k.dst_port) = (s.src_port, s.dst_port),
            L4::Icmpv4(i) | L4::Icmpv6(i) => {
                k.src_port = u16::from_be_bytes([i.ty, i.code]);
                k.dst_port = i.echo_id.unwrap_or(0);
                k.flags |= FLAG_ICMP;
            }
            L4::None => {}
        }
        k
    }

    /// A fast 32-bit hash of the whole key (multiply–fold rounds over eight words, no SipHash).
    ///
    /// Deterministic across runs and processes: it indexes the flow cache and gives the VXLAN outer
    /// UDP source port (RFC 7348 §5), so a flow keeps one underlay path.
    #[inline]
    pub fn hash(&self) -> u32 {
        let w = self.words();
        let h = mum(w[0] ^ K[0], w[1] ^ K[1])
            ^ mum(w[2] ^ K[2], w[3] ^ K[3]).rotate_left(17)
            ^ mum(w[4] ^ K[4], w[5] ^ K[5]).rotate_left(31)
            ^ mum(w[6] ^ K[6], w[7] ^ K[7]).rotate_left(47);
        let h = mum(h ^ K[8], K[5]);
        (h ^ (h >> 32)) as u32
    }

    /// A hash equal for both directions of a flow: the (address, port) endpoints and the MACs are
    /// ordered before mixing, so a request and its reply land on the same worker or shard. The input
    /// port and the ICMP type are not part of it (they differ between directions).
    #[inline]
    pub fn symmetric_hash(&self) -> u32 {
        // ICMP keeps type/code in `src_port` (request and reply differ) and the echo identifier
        // (equal both ways) in `dst_port`: only the identifier goes into the symmetric hash.
        let (sp, dp, echo) = if self.is_icmp() {
            (0, 0, self.dst_port)
        } else {
            (self.src_port, self.dst_port, 0)
        };
        let a = (self.src, sp);
        let b = (self.dst, dp);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let (m1, m2) = {
            let (x, y) = (mac_word(&self.src_mac), mac_word(&self.dst_mac));
            if x <= y { (x, y) } else { (y, x) }
        };
        let h = mum((lo.0 as u64) ^ K[0], ((lo.0 >> 64) as u64) ^ K[1])
            ^ mum((hi.0 as u64) ^ K[2], ((hi.0 >> 64) as u64) ^ K[3]).rotate_left(17)
            ^ mum(
                (u64::from(lo.1) << 16 | u64::from(hi.1) | u64::from(echo) << 32) ^ K[4],
                (u64::from(self.ethertype) << 8
                    | u64::from(self.protocol)
                    | u64::from(self.flags) << 24)
                    ^ K[5],
            )
            .rotate_left(31)
            ^ mum(m1 ^ K[6], m2 ^ K[7]).rotate_left(47);
        let h = mum(h ^ K[8], K[5]);
        (h ^ (h >> 32)) as u32
    }

    /// The key as eight 64-bit words (what [`hash`](Self::hash) mixes).
    #[inline(always)]
    fn words(&self) -> [u64; 8] {
        [
            self.src as u64,
            (self.src >> 64) as u64,
            self.dst as u64,
            (self.dst >> 64) as u64,
            mac_word(&self.src_mac) | u64::from(self.vlan) << 48,
            mac_word(&self.dst_mac) | u64::from(self.ethertype) << 48,
            u64::from(self.in_port) | u64::from(self.protocol) << 32 | u64::from(self.flags) << 40,
            u64::from(self.src_port) | u64::from(self.dst_port) << 16,
        ]
    }

    /// Whether the addresses are IPv6.
    #[inline]
    pub fn is_ipv6(&self) -> bool {
        self.flags & FLAG_V6 != 0
    }

    /// Whether the L4 fields are ICMP's (type/code, echo id).
    #[inline]
    pub fn is_icmp(&self) -> bool {
        self.flags & FLAG_ICMP != 0
    }

    /// Whether this is an IPv4 or IPv6 frame.
    #[inline]
    pub fn is_ip(&self) -> bool {
        self.ethertype == 0x0800 || self.ethertype == 0x86dd
    }

    /// Whether this is an ARP frame.
    #[inline]
    pub fn is_arp(&self) -> bool {
        self.ethertype == 0x0806
    }

    /// The fragment state.
    #[inline]
    pub fn fragment(&self) -> Fragment {
        match (self.flags & FRAG_MASK) >> FRAG_SHIFT {
            1 => Fragment::First,
            2 => Fragment::Later,
            _ => Fragment::None,
        }
    }

    /// The source IP of an IP frame (the ARP sender address for ARP), or `None`.
    pub fn src_ip(&self) -> Option<IpAddr> {
        self.addr(self.src)
    }

    /// The destination IP of an IP frame (the ARP target address for ARP), or `None`.
    pub fn dst_ip(&self) -> Option<IpAddr> {
        self.addr(self.dst)
    }

    fn addr(&self, bits: u128) -> Option<IpAddr> {
        if self.is_arp() || (self.is_ip() && !self.is_ipv6()) {
            Some(IpAddr::V4(Ipv4Addr::from_bits(bits as u32)))
        } else if self.is_ip() {
            Some(IpAddr::V6(Ipv6Addr::from_bits(bits)))
        } else {
            None
        }
    }

    /// The ARP operation of an ARP frame.
    pub fn arp_operation(&self) -> Option<arp::Operation> {
        self.is_arp().then(|| arp::Operation::from(self.src_port))
    }

    /// The source MAC.
    pub fn src_mac(&self) -> Address {
        Address(self.src_mac)
    }

    /// The destination MAC.
    pub fn dst_mac(&self) -> Address {
        Address(self.dst_mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder, VlanId};
    use podswitch_wire::parse_frame;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn key(port: u32, frame: &[u8]) -> FlowKey {
        FlowKey::from_headers(port, &parse_frame(frame).expect("test frame parses"))
    }

    fn tcp_v4(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, seq: u32, syn: bool) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2(A, B)
            .single_vlan(VlanId::try_new(42).unwrap())
            .ipv4(src, dst, 64)
            .tcp(sp, dp, seq, 1000);
        if syn {
            b = b.syn();
        } else {
            b = b.ack(7).psh();
        }
        let mut v = Vec::new();
        b.write(&mut v, b"hello").unwrap();
        v
    }

    #[test]
    fn tcp_v4_with_vlan() {
        let k = key(7, &tcp_v4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80, 1, true));
        assert_eq!(k.in_port, 7);
        assert_eq!(k.vlan, 42);
        assert_eq!(k.ethertype, 0x0800);
        assert_eq!((k.src_mac, k.dst_mac), (A, B));
        assert_eq!(k.src_ip(), Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        assert_eq!(k.dst_ip(), Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))));
        assert_eq!((k.protocol, k.src_port, k.dst_port), (6, 40000, 80));
        assert!(!k.is_ipv6() && !k.is_icmp() && k.is_ip());
        assert_eq!(k.fragment(), Fragment::None);
    }

    #[test]
    fn per_packet_fields_do_not_change_the_key() {
        let syn = key(1, &tcp_v4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80, 1, true));
        let data = key(
            1,
            &tcp_v4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80, 99_999, false),
        );
        assert_eq!(syn, data);
        assert_eq!(syn.hash(), data.hash());
        let other_port = key(2, &tcp_v4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80, 1, true));
        assert_ne!(syn, other_port);
        assert_ne!(syn.hash(), other_port.hash());
    }

    #[test]
    fn udp_v6() {
        let src = [0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let mut v = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv6(src, dst, 64)
            .udp(5353, 53)
            .write(&mut v, b"q")
            .unwrap();
        let k = key(3, &v);
        assert!(k.is_ipv6());
        assert_eq!(k.vlan, 0);
        assert_eq!(k.ethertype, 0x86dd);
        assert_eq!(k.src, u128::from_be_bytes(src));
        assert_eq!(k.dst_ip(), Some(IpAddr::V6(Ipv6Addr::from(dst))));
        assert_eq!((k.protocol, k.src_port, k.dst_port), (17, 5353, 53));
    }

    #[test]
    fn v4_and_v6_with_equal_bits_differ() {
        let mut a = FlowKey {
            src: 1,
            dst: 2,
            ethertype: 0x0800,
            ..FlowKey::default()
        };
        let mut b = a;
        b.ethertype = 0x86dd;
        b.flags |= FLAG_V6;
        assert_ne!(a, b);
        assert_ne!(a.hash(), b.hash());
        a.flags = 0;
        assert_eq!(a.src_ip(), Some(IpAddr::V4(Ipv4Addr::new(0, 0, 0, 1))));
        assert_eq!(b.src_ip(), Some(IpAddr::V6(Ipv6Addr::from_bits(1))));
    }

    #[test]
    fn icmp_echo_v4_and_v6() {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .icmpv4_echo_request(0x2371, 1)
            .write(&mut v, b"ping")
            .unwrap();
        let k = key(1, &v);
        assert!(k.is_icmp());
        assert_eq!((k.protocol, k.src_port, k.dst_port), (1, 8 << 8, 0x2371));

        let mut v = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv6([0xfe; 16], [0xfd; 16], 64)
            .icmpv6_echo_request(0x4242, 1)
            .write(&mut v, b"ping")
            .unwrap();
        let k = key(1, &v);
        assert!(k.is_icmp() && k.is_ipv6());
        assert_eq!((k.protocol, k.src_port, k.dst_port), (58, 128 << 8, 0x4242));
    }

    #[test]
    fn arp_request() {
        let arp = ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            ArpOperation::REQUEST,
            &A,
            &[10, 77, 0, 1],
            &[0; 6],
            &[10, 77, 0, 2],
        )
        .unwrap();
        let mut v = Vec::new();
        PacketBuilder::ethernet2(A, [0xff; 6])
            .arp(arp)
            .write(&mut v)
            .unwrap();
        let k = key(5, &v);
        assert!(k.is_arp() && !k.is_ip());
        assert_eq!(k.arp_operation(), Some(arp::Operation::Request));
        assert_eq!(k.src_ip(), Some(IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1))));
        assert_eq!(k.dst_ip(), Some(IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2))));
        assert_eq!(k.dst_mac(), Address::BROADCAST);
    }

    #[test]
    fn fragments() {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1000, 2000)
            .write(&mut v, &[0u8; 32])
            .unwrap();
        // First fragment: MF set, offset 0; ports stay in the key.
        let mut first = v.clone();
        {
            let mut ip = podswitch_wire::ipv4::Packet::new_unchecked(&mut first[14..]);
            ip.set_flags_and_offset(false, true, 0);
            ip.fill_checksum();
        }
        let k = key(1, &first);
        assert_eq!(k.fragment(), Fragment::First);
        assert_eq!((k.src_port, k.dst_port), (1000, 2000));
        // Later fragment: no L4 header.
        let mut later = v;
        {
            let mut ip = podswitch_wire::ipv4::Packet::new_unchecked(&mut later[14..]);
            ip.set_flags_and_offset(false, false, 4);
            ip.fill_checksum();
        }
        let k = key(1, &later);
        assert_eq!(k.fragment(), Fragment::Later);
        assert_eq!((k.protocol, k.src_port, k.dst_port), (17, 0, 0));
    }

    #[test]
    fn non_ip_keeps_macs_only() {
        let mut v = vec![0u8; 60];
        v[..6].copy_from_slice(&B);
        v[6..12].copy_from_slice(&A);
        v[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
        let k = key(9, &v);
        assert_eq!(k.ethertype, 0x88cc);
        assert_eq!((k.src, k.dst, k.protocol, k.src_port), (0, 0, 0, 0));
        assert_eq!((k.src_mac(), k.dst_mac()), (Address(A), Address(B)));
        assert_eq!(k.src_ip(), None);
    }

    fn reversed(k: &FlowKey) -> FlowKey {
        FlowKey {
            src: k.dst,
            dst: k.src,
            src_mac: k.dst_mac,
            dst_mac: k.src_mac,
            src_port: k.dst_port,
            dst_port: k.src_port,
            in_port: k.in_port + 1,
            ..*k
        }
    }

    #[test]
    fn symmetric_hash_matches_both_directions() {
        let k = key(1, &tcp_v4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80, 1, true));
        let r = reversed(&k);
        assert_eq!(k.symmetric_hash(), r.symmetric_hash());
        assert_ne!(k.hash(), r.hash());
        // ICMP echo request and reply: type differs, identifier equal.
        let mut req = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .icmpv4_echo_request(9, 1)
            .write(&mut req, b"")
            .unwrap();
        let mut rep = Vec::new();
        PacketBuilder::ethernet2(B, A)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .icmpv4_echo_reply(9, 1)
            .write(&mut rep, b"")
            .unwrap();
        let (q, p) = (key(1, &req), key(2, &rep));
        assert_eq!(q.symmetric_hash(), p.symmetric_hash());
        // A different echo identifier is another flow.
        let mut other = q;
        other.dst_port = 10;
        assert_ne!(q.symmetric_hash(), other.symmetric_hash());
    }

    #[test]
    fn hash_spreads_sequential_keys() {
        // 65 536 keys differing only in the source port: all hashes distinct in practice, and
        // the 1 024 buckets of the low 10 bits evenly filled.
        let base = key(1, &tcp_v4([10, 0, 0, 1], 0, [10, 0, 0, 2], 80, 1, true));
        let mut seen = std::collections::HashSet::new();
        let mut buckets = vec![0u32; 1024];
        let mut high = vec![0u32; 1024];
        for p in 0..=u16::MAX {
            let k = FlowKey {
                src_port: p,
                ..base
            };
            let h = k.hash();
            seen.insert(h);
            buckets[(h & 1023) as usize] += 1;
            high[(h >> 22) as usize] += 1;
        }
        assert!(seen.len() > 65_500, "{} distinct hashes", seen.len());
        for b in [&buckets, &high] {
            let (min, max) = (b.iter().min().unwrap(), b.iter().max().unwrap());
            assert!(
                *min > 32 && *max < 100,
                "uneven buckets: min {min} max {max}"
            );
        }
    }
}
