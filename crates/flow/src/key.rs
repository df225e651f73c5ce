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
    u64::from(u16::from_be_bytes([m[0], m[1]])) << 32
        | u64::from(u32::from_be_bytes([m[2], m[3], m[4], m[5]]))
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
