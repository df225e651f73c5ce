//! Which XDP program, if any, is attached to an interface — so tests (and operators) can prove
//! that a closed or killed port left nothing behind.
//!
//! Reads the answer from iproute2 (`ip -details link show dev <if>`): while a program is attached
//! the first line carries an `xdp` (native), `xdpgeneric`, `xdpoffload` or `xdpmulti` token
//! (older iproute2 appends `/id:<n>`), and a detail line reads
//! `prog/xdp id <n> name <name> tag …`. The parser is separate and tested on captured output. Thread-safety: spawns a process; no shared state.

use std::io;
use std::process::Command;

/// An XDP program found attached to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedProgram {
    /// The attach flavour as iproute2 names it: `xdp` (native), `xdpgeneric`, `xdpoffload`,
    /// `xdpmulti`.
    pub mode: String,
    /// The kernel's program id (0 when iproute2 printed none).
    pub id: u32,
    /// The program's name, when iproute2 printed one.
    pub name: Option<String>,
}

/// The XDP program attached to `ifname` in the calling process's network namespace, if any.
pub fn attached_xdp_program(ifname: &str) -> io::Result<Option<AttachedProgram>> {
    let out = Command::new("ip")
        .args(["-details", "link", "show", "dev", ifname])
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(parse_ip_link(&String::from_utf8_lossy(&out.stdout)))
}

/// Parses `ip -details link show` output for one interface.
pub fn parse_ip_link(text: &str) -> Option<AttachedProgram> {
    let mut lines = text.lines();
    let first = lines.next()?;
    let mut found = first.split_whitespace().find_map(|tok| {
        let (mode, rest) = tok.split_once('/').unwrap_or((tok, ""));
        if !matches!(
            mode,
            "xdp" | "xdpgeneric" | "xdpdrv" | "xdpoffload" | "xdpmulti"
        ) {
            return None;
        }
        let id = rest
            .strip_prefix("id:")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Some(AttachedProgram {
            mode: mode.to_owned(),
            id,
            name: None,
        })
    })?;
    for line in lines {
        let mut words = line.split_whitespace();
        if words.next() != Some("prog/xdp") {
            continue;
        }
        while let Some(key) = words.next() {
            match (key, words.next()) {
                ("id", Some(v)) => found.id = v.parse().unwrap_or(found.id),
                ("name", Some(v)) => found.name = Some(v.to_owned()),
                _ => {}
            }
        }
        break;
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iproute2_output() {
        // iproute2 6.1 on kernel 6.18, captured from `ip -d link show` with our program attached.
        let native = "18: psx-h214710@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 xdp qdisc noqueue state UP mode DEFAULT group default qlen 1000\n    link/ether e6:dc:1b:a7:a2:56 brd ff:ff:ff:ff:ff:ff link-netns psx-n214710 promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 \n    veth addrgenmode eui64 numtxqueues 2 numrxqueues 2 gso_max_size 65536 gso_max_segs 65535 \n    prog/xdp id 115 name psx_redirect tag 548a968b70885879 jited load_time 2107249450110 created_by_uid 0 \n";
        assert_eq!(
            parse_ip_link(native),
            Some(AttachedProgram {
                mode: "xdp".into(),
                id: 115,
                name: Some("psx_redirect".into())
            })
        );
        // Older iproute2 puts the id on the first line.
        let generic = "7: psx-h1: <BROADCAST> mtu 1500 xdpgeneric/id:9 qdisc noop state DOWN\n";
        assert_eq!(
            parse_ip_link(generic),
            Some(AttachedProgram {
                mode: "xdpgeneric".into(),
                id: 9,
                name: None
            })
        );
        let none = "7: psx-h1: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT\n    link/ether 0a:1b:2c:3d:4e:5f brd ff:ff:ff:ff:ff:ff\n";
        assert_eq!(parse_ip_link(none), None);
        assert_eq!(parse_ip_link(""), None);
    }

    #[test]
    fn missing_interface_is_an_error() {
        assert!(attached_xdp_program("psx-nonexistent0").is_err());
    }
}
