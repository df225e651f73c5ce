//! ICMP errors a router sends (RFC 792, RFC 1191, RFC 1812 §4.3, RFC 4443, RFC 8201) and the token
//! bucket that rate-limits them.
//!
//! Builders write an IP packet (no Ethernet header) into a caller's slice and return its length;
//! the pipeline routes it back to the source like any other packet. Which packets may *cause* an
//! error is decided here too ([`may_send_error`]): never for an ICMP error, a non-first fragment, a
//! multicast/broadcast destination or an unspecified/multicast source (RFC 1812 §4.3.2.7,
//! RFC 4443 §2.4(e)). [`RateLimiter`] is Firecracker's token bucket with `now` passed in (RFC 1812
//! §4.3.2.8 and RFC 4443 §2.4(f) require limiting). Pure functions; the limiter belongs to one
//! worker (not shared).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use podswitch_conntrack::Instant;
use podswitch_wire::IpProtocol;
use podswitch_wire::checksum;
use podswitch_wire::frame::{Fragment, Headers, L4};

/// The error to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpError {
    /// ICMPv4 type 11 code 0 / ICMPv6 type 3 code 0: TTL / hop limit exceeded in transit.
    TimeExceeded,
    /// ICMPv4 type 3 code 4 with the next-hop MTU (RFC 1191 §4) / ICMPv6 type 2 with the MTU
    /// (RFC 8201 §4).
    TooBig {
        /// The egress link's MTU.
        mtu: u32,
    },
}

/// Largest ICMPv4 error datagram (RFC 1812 §4.3.2.3: quote as much as fits in 576 bytes).
const V4_MAX: usize = 576;
/// Largest ICMPv6 error packet (RFC 4443 §2.4(c): must not exceed the minimum IPv6 MTU).
const V6_MAX: usize = 1280;

/// Whether a router may answer `h` with an ICMP error at all (RFC 1812 §4.3.2.7, RFC 4443 §2.4(e)).
pub fn may_send_error(h: &Headers) -> bool {
    let Some(ip) = h.ip() else { return false };
    if ip.fragment == Fragment::Later {
        return false;
    }
    match h.l4 {
        // ICMPv4 errors: dest unreachable 3, source quench 4, redirect 5, time exceeded 11,
        // parameter problem 12. ICMPv6 errors are types 0..=127.
        L4::Icmpv4(i) if matches!(i.ty, 3 | 4 | 5 | 11 | 12) => return false,
        L4::Icmpv6(i) if i.ty < 128 => return false,
        _ => {}
    }
    if h.dst_mac.is_multicast() {
        return false;
    }
    match (ip.src, ip.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            !(s.is_unspecified()
                || s.is_multicast()
                || s.is_broadcast()
                || d.is_multicast()
                || d.is_broadcast())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            !(s.is_unspecified() || s.is_multicast() || d.is_multicast())
        }
        _ => false,
    }
}

/// Writes an ICMPv4 error from `src` (the gateway) about the IPv4 packet `invoking` into `out`;
/// returns the datagram length, or `None` if `out` is too small for the minimal error.
pub fn build_v4(out: &mut [u8], src: Ipv4Addr, invoking: &[u8], err: IcmpError) -> Option<usize> {
    if invoking.len() < 20 {
        return None;
    }
    let dst = Ipv4Addr::new(invoking[12], invoking[13], invoking[14], invoking[15]);
    let quote = invoking
        .len()
        .min(V4_MAX - 28)
        .min(out.len().checked_sub(28)?);
    let total = 28 + quote;
    let (ty, code, word) = match err {
        IcmpError::TimeExceeded => (11u8, 0u8, 0u32),
        // RFC 1191 §4: the low 16 bits of the unused word carry the next-hop MTU.
        IcmpError::TooBig { mtu } => (3, 4, mtu.min(0xffff)),
    };
    let ip = &mut out[..20];
    ip[0] = 0x45;
    // Precedence "internetwork control", as RFC 1812 §4.3.2.5 suggests for ICMP errors.
    ip[1] = 0xc0;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[4..8].fill(0);
    ip[8] = 64;
    ip[9] = u8::from(IpProtocol::Icmp);
    ip[10..12].fill(0);
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum::finish(checksum::data(&out[..20]));
    out[10..12].copy_from_slice(&c.to_be_bytes());
    let icmp = &mut out[20..total];
    icmp[0] = ty;
    icmp[1] = code;
    icmp[2..4].fill(0);
    icmp[4..8].copy_from_slice(&word.to_be_bytes());
    icmp[8..].copy_from_slice(&invoking[..quote]);
    let c = checksum::finish(checksum::data(icmp));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Some(total)
}

/// Writes an ICMPv6 error from `src` (the gateway) about the IPv6 packet `invoking` into `out`;
/// returns the packet length, or `None` if `out` is too small.
pub fn build_v6(out: &mut [u8], src: Ipv6Addr, invoking: &[u8], err: IcmpError) -> Option<usize> {
    if invoking.len() < 40 {
        return None;
    }
    let mut d = [0u8; 16];
    d.copy_from_slice(&invoking[8..24]);
    let dst = Ipv6Addr::from(d);
    let quote = invoking
        .len()
        .min(V6_MAX - 48)
        .min(out.len().checked_sub(48)?);
    let icmp_len = 8 + quote;
    let (ty, word) = match err {
        IcmpError::TimeExceeded => (3u8, 0u32),
        IcmpError::TooBig { mtu } => (2, mtu),
    };
    let ip = &mut out[..40];
    ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    ip[4..6].copy_from_slice(&(icmp_len as u16).to_be_bytes());
    ip[6] = u8::from(IpProtocol::Icmpv6);
    ip[7] = 64;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let icmp = &mut out[40..40 + icmp_len];
    icmp[0] = ty;
    icmp[1] = 0;
    icmp[2..4].fill(0);
    icmp[4..8].copy_from_slice(&word.to_be_bytes());
    icmp[8..].copy_from_slice(&invoking[..quote]);
    let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::Icmpv6, icmp_len as u32);
    let c = checksum::finish(checksum::combine(&[ph, checksum::data(icmp)]));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Some(40 + icmp_len)
}

/// A token bucket: `burst` tokens, one more every `interval_ns`; `now` drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimiter {
    burst: u32,
    interval_ns: u64,
    tokens: u32,
    last: Instant,
}

impl RateLimiter {
    /// A full bucket of `burst` tokens refilled at `per_second` tokens per second
    /// (`per_second == 0`: never refilled).
    pub fn new(burst: u32, per_second: u32) -> RateLimiter {
        RateLimiter {
            burst,
            interval_ns: if per_second == 0 {
                u64::MAX
            } else {
                1_000_000_000 / u64::from(per_second)
            },
            tokens: burst,
            last: Instant(0),
        }
    }

    /// Takes a token if one is available at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        if now > self.last {
            let earned = (now.0 - self.last.0) / self.interval_ns;
            if earned > 0 {
                let t = u64::from(self.tokens).saturating_add(earned);
                self.tokens = t.min(u64::from(self.burst)) as u32;
                // Keep the remainder so a steady trickle is not lost to rounding.
                self.last = Instant(self.last.0 + earned.saturating_mul(self.interval_ns));
                if self.tokens == self.burst {
                    self.last = now;
                }
            }
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills_with_time() {
        let mut r = RateLimiter::new(3, 10);
        let t0 = Instant::from_secs(100);
        assert!(r.allow(t0));
        assert!(r.allow(t0));
        assert!(r.allow(t0));
        assert!(!r.allow(t0));
        // 10 per second: one token per 100 ms.
        assert!(!r.allow(t0.after(core::time::Duration::from_millis(50))));
        assert!(r.allow(t0.after(core::time::Duration::from_millis(100))));
        assert!(!r.allow(t0.after(core::time::Duration::from_millis(150))));
        // A long pause refills to the burst, no more.
        let later = t0.after(core::time::Duration::from_mins(1));
        let n = (0..10).filter(|_| r.allow(later)).count();
        assert_eq!(n, 3);
    }

    #[test]
    fn v4_error_quotes_the_invoking_header_and_verifies() {
        let mut invoking = [0u8; 60];
        invoking[0] = 0x45;
        invoking[2..4].copy_from_slice(&60u16.to_be_bytes());
        invoking[12..16].copy_from_slice(&[10, 0, 0, 5]);
        invoking[16..20].copy_from_slice(&[10, 0, 1, 9]);
        let mut out = [0xa5u8; 700];
        let n = build_v4(
            &mut out,
            Ipv4Addr::new(10, 0, 0, 1),
            &invoking,
            IcmpError::TooBig { mtu: 1400 },
        )
        .expect("fits");
        assert_eq!(n, 28 + 60);
        assert_eq!(checksum::data(&out[..20]), 0xffff);
        assert_eq!(checksum::data(&out[20..n]), 0xffff);
        assert_eq!(&out[16..20], &[10, 0, 0, 5]);
        assert_eq!(u16::from_be_bytes([out[26], out[27]]), 1400);
        assert_eq!(&out[28..n], &invoking[..]);
    }

    #[test]
    fn v6_error_is_capped_at_the_minimum_mtu() {
        let mut invoking = vec![0u8; 1500];
        invoking[0] = 0x60;
        let mut out = [0u8; 2048];
        let n = build_v6(
            &mut out,
            Ipv6Addr::LOCALHOST,
            &invoking,
            IcmpError::TimeExceeded,
        )
        .expect("fits");
        assert_eq!(n, 1280);
    }
}
