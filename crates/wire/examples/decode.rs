//! Decodes every frame of a pcap file with the one-pass classifier, as the datapath sees it.
//!
//! Usage: `cargo run --release -p podswitch-wire --example decode -- FILE.pcap`
//! Prints one line per frame (layers, addresses, ports, flags, VXLAN inner frames) and a summary;
//! malformed frames print their typed `ParseError` instead of stopping the run.

use std::fmt::Write as _;
use std::process::ExitCode;

use podswitch_wire::frame::{Fragment, Headers, L3, L4};
use podswitch_wire::parse_frame;

/// Reads the classic pcap format: a 24-byte global header, then 16-byte record headers
/// (ts_sec, ts_usec, incl_len, orig_len), in the byte order given by the magic number.
fn records(data: &[u8]) -> Result<Vec<&[u8]>, String> {
    if data.len() < 24 {
        return Err("shorter than a pcap global header".into());
    }
    let magic = [data[0], data[1], data[2], data[3]];
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err("not a pcap file (pcapng is not supported; use `tshark -F pcap`)".into()),
    };
    let u32_at = |b: &[u8], at: usize| {
        let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    if u32_at(data, 20) != 1 {
        return Err("link type is not Ethernet".into());
    }
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let incl = u32_at(data, at + 8) as usize;
        let start = at + 16;
        let end = start.checked_add(incl).filter(|&e| e <= data.len());
        let Some(end) = end else {
            return Err(format!("record at byte {at} overruns the file"));
        };
        out.push(&data[start..end]);
        at = end;
    }
    Ok(out)
}

fn describe(h: &Headers) -> String {
    let mut s = format!("{} > {}", h.src_mac, h.dst_mac);
    for v in h.vlans() {
        let _ = write!(s, " vlan {} pcp {}", v.vid, v.pcp);
    }
    match &h.l3 {
        L3::None => {
            let _ = write!(s, " ethertype {:#06x}", h.ethertype);
        }
        L3::Arp(a) => {
            let _ = write!(
                s,
                " arp {:?} who-has {} tell {} ({})",
                a.operation, a.target_protocol_addr, a.source_protocol_addr, a.source_hardware_addr
            );
        }
        L3::Ip(ip) => {
            let _ = write!(s, " {} > {} {} ttl {}", ip.src, ip.dst, ip.protocol, ip.ttl);
            if ip.dscp != 0 {
                let _ = write!(s, " dscp {}", ip.dscp);
            }
            match ip.fragment {
                Fragment::None => {}
                Fragment::First => s.push_str(" first-fragment"),
                Fragment::Later => {
                    let _ = write!(s, " fragment offset {}", ip.frag_offset);
                }
            }
        }
    }
    match &h.l4 {
        L4::None => {}
        L4::Tcp(t) => {
            let _ = write!(
                s,
                " {} > {} flags {:#04x} seq {} ack {} win {} len {}",
                t.src_port, t.dst_port, t.flags, t.seq, t.ack, t.window, t.data_len
            );
        }
        L4::Udp(u) => {
            let _ = write!(s, " {} > {} len {}", u.src_port, u.dst_port, u.length);
        }
        L4::Sctp(c) => {
            let _ = write!(
                s,
                " {} > {} vtag {:#x}",
                c.src_port, c.dst_port, c.verification_tag
            );
        }
        L4::Icmpv4(i) | L4::Icmpv6(i) => {
            let _ = write!(s, " type {} code {}", i.ty, i.code);
            if let Some(id) = i.echo_id {
                let _ = write!(s, " id {id}");
            }
        }
    }
    s
}

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: decode FILE.pcap");
        return ExitCode::from(2);
    };
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("decode: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let frames = match records(&data) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("decode: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut ok, mut bad, mut vxlan) = (0, 0, 0);
    for (i, frame) in frames.iter().enumerate() {
        match parse_frame(frame) {
            Ok(h) => {
                ok += 1;
                println!("{:4} {:5}B {}", i + 1, frame.len(), describe(&h));
                if let Some(vx) = h.vxlan {
                    vxlan += 1;
                    let inner = &frame[usize::from(vx.inner_offset)..];
                    match parse_frame(inner) {
                        Ok(ih) => println!("          └ vxlan vni {}: {}", vx.vni, describe(&ih)),
                        Err(e) => println!("          └ vxlan vni {}: inner frame: {e}", vx.vni),
                    }
                }
            }
            Err(e) => {
                bad += 1;
                println!("{:4} {:5}B malformed: {e}", i + 1, frame.len());
            }
        }
    }
    println!(
        "{} frames: {ok} parsed ({vxlan} VXLAN), {bad} malformed",
        frames.len()
    );
    ExitCode::SUCCESS
}
