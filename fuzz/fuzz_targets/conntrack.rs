#![no_main]
//! Drives a small conntrack table with packet sequences decoded from the fuzz input (lookups,
//! commits with and without NAT, flushes, sweeps, clock jumps) and checks after every few
//! operations that its invariants hold: occupancy equals the entries, per-zone counts add up,
//! every entry is indexed, limits are respected. The same bytes also go through `nat::rewrite`,
//! which must never panic and must leave the buffer untouched when it fails.

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use podswitch_conntrack::{
    Config, Endpoint, Filter, Instant, L4, Nat, PacketMeta, Rewrite, SctpMeta, Table, TcpFlags,
    TcpMeta, Tuple, Verdict, nat,
};
use podswitch_wire::IpProtocol;

const V4: [&str; 4] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "192.0.2.1"];
const V6: [&str; 3] = ["fd00::1", "fd00::2", "2001:db8::1"];

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }
}

fn addr(b: u8) -> IpAddr {
    // Mostly IPv4; sometimes IPv6; occasionally a family mix (malformed on purpose).
    if b & 0x80 == 0 {
        V4[usize::from(b) % V4.len()].parse().unwrap()
    } else {
        V6[usize::from(b) % V6.len()].parse().unwrap()
    }
}

fn packet(r: &mut Bytes) -> Option<PacketMeta> {
    let kind = r.u8()?;
    let zone = u16::from(r.u8()? % 3);
    let src = addr(r.u8()?);
    let mut dst = addr(r.u8()?);
    if kind & 0x80 == 0 && src.is_ipv4() != dst.is_ipv4() {
        dst = src;
    }
    let sp = u16::from(r.u8()? % 4) + 1000;
    let dp = u16::from(r.u8()? % 4) + 80;
    let l4 = match kind % 7 {
        0 | 1 | 2 => {
            let flags = TcpFlags(r.u8()?);
            let base = u32::from(r.u8()?) << 8;
            L4::Tcp(TcpMeta {
                src_port: sp,
                dst_port: dp,
                flags,
                seq: if kind & 0x40 == 0 { base } else { r.u32()? },
                ack: if kind & 0x20 == 0 {
                    base.wrapping_add(1)
                } else {
                    r.u32()?
                },
                window: r.u16()?,
                payload_len: u32::from(r.u8()?) * 8,
                window_scale: if flags.contains(TcpFlags::SYN) {
                    Some(r.u8()? % 16)
                } else {
                    None
                },
                sack_permitted: kind & 0x10 != 0,
            })
        }
        3 => L4::Udp {
            src_port: sp,
            dst_port: dp,
        },
        4 => L4::IcmpEcho {
            request: kind & 0x08 == 0,
            id: sp,
        },
        5 => {
            let proto = [
                IpProtocol::Tcp,
                IpProtocol::Udp,
                IpProtocol::Icmp,
                IpProtocol::Icmpv6,
            ][usize::from(kind >> 5 & 3)];
            let isrc = addr(r.u8()?);
            let idst = if kind & 0x10 == 0 { src } else { addr(r.u8()?) };
            L4::IcmpError {
                inner: Tuple::new(isrc, idst, proto, dp, sp),
            }
        }
        _ => L4::Sctp(SctpMeta {
            src_port: sp,
            dst_port: dp,
            verification_tag: u32::from(r.u8()? % 3),
            chunk_type: r.u8()? % 16,
        }),
    };
    Some(PacketMeta {
        zone,
        src,
        dst,
        l4,
        len: 60,
    })
}

fuzz_target!(|data: &[u8]| {
    let table = Table::new(&Config {
        max_entries: 48,
        shards: 4,
        zone_limits: vec![(1, 8)],
        tcp_loose: data.first().is_some_and(|b| b & 1 == 1),
        ..Config::default()
    });
    let mut r = Bytes(data);
    let mut now = 0u64;
    let mut ops = 0u32;
    let mut handles = Vec::new();
    while let Some(op) = r.u8() {
        match op % 10 {
            0..=5 => {
                let Some(m) = packet(&mut r) else { break };
                let l = table.lookup(&m, Instant(now));
                if let Some(h) = l.handle {
                    handles.push((h, m));
                }
                if l.verdict == Verdict::New && op & 0x10 == 0 {
                    let nat = match op >> 5 {
                        0 => Nat::dnat(Endpoint::new(addr(op), 8080)),
                        1 => Nat::snat(Endpoint::new(addr(op ^ 1), 40000 + u16::from(op))),
                        _ => Nat::NONE,
                    };
                    if let Ok(l) = table.commit(&m, nat, Instant(now)) {
                        assert!(l.handle.is_some() || !matches!(l.verdict, Verdict::New));
                    }
                }
            }
            6 => {
                now += u64::from(r.u16().unwrap_or(0)) * 1_000_000_000;
            }
            7 => {
                table.sweep(Instant(now), usize::from(r.u8().unwrap_or(0)));
            }
            8 => {
                let f = match r.u8().unwrap_or(0) % 3 {
                    0 => Filter::Zone(u16::from(op >> 4) % 3),
                    1 => Filter::Address(addr(op)),
                    _ => Filter::All,
                };
                table.flush(&f);
            }
            _ if op & 0x40 != 0 && !handles.is_empty() => {
                // Queued packets through the batch calls, which hold several shard locks at once
                // (the datapath's fast path uses update_batch).
                let n = (usize::from(r.u8().unwrap_or(0)) % 40 + 1).min(handles.len());
                let items = handles.split_off(handles.len() - n);
                let mut out = vec![None; n];
                table.update_batch(&items, Instant(now), &mut out);
                let metas: Vec<PacketMeta> = items.iter().map(|x| x.1).collect();
                let mut looked = vec![table.lookup(&metas[0], Instant(now)); n];
                table.lookup_batch(&metas, Instant(now), &mut looked);
                for (l, (h, m)) in looked.iter().zip(items) {
                    if l.handle.is_some() {
                        handles.push((h, m));
                    }
                }
            }
            _ => {
                if let Some((h, m)) = handles.pop() {
                    let _ = table.update(h, &m, Instant(now));
                }
            }
        }
        ops += 1;
        assert!(table.occupancy() <= table.capacity());
        if ops % 16 == 0 {
            table.check_invariants().unwrap();
        }
    }
    table.check_invariants().unwrap();
    let s = table.stats();
    assert_eq!(s.occupancy, u64::from(table.occupancy()));
    assert_eq!(table.entries(&Filter::All).len() as u64, s.occupancy);
    let z: u32 = (0..3).map(|z| table.zone_occupancy(z)).sum();
    assert_eq!(z, table.occupancy());

    // The raw bytes as an IP packet: rewriting must not panic, and a failure writes nothing.
    for rw in [
        Rewrite {
            src: Some("10.9.9.9".parse().unwrap()),
            dst_port: Some(1),
            ..Rewrite::default()
        },
        Rewrite {
            dst: Some("fd00::9".parse().unwrap()),
            src_port: Some(2),
            icmp_id: Some(3),
            ..Rewrite::default()
        },
    ] {
        let mut buf = data.to_vec();
        if nat::rewrite(&mut buf, &rw).is_err() {
            assert_eq!(buf, data);
        }
    }
});
