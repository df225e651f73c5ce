//! The pod's veth pair, through iproute2 (`ip`) and the xdp crate's safe netns/ethtool helpers.
//!
//! Host-side commands run in the plugin's own namespace; container-side ones run on a dedicated
//! thread that first enters `CNI_NETNS` ([`podswitch_xdp::enter_netns`] changes only the calling
//! thread, and the `ip` processes it spawns inherit that thread's namespace), so the plugin's
//! main thread never leaves the host namespace. Names are derived deterministically from the
//! container id and interface name, so DEL finds what ADD made without any state on disk.

use core::net::IpAddr;
use std::path::Path;
use std::process::Command;

use podswitch_control::proto::Mac;
use serde_json::Value;

use crate::error::{CniError, Code};
use crate::result::{Cidr, Route};

/// FNV-1a (64-bit): stable across builds and Rust versions, unlike `DefaultHasher`.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            // A separator no container id or interface name contains: ("ab","c") != ("a","bc").
            h = (h ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3);
        }
        for b in p.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The host end's name: `psw` + the first 8 hex digits of a hash of the container id and the
/// container interface name (a container may have several interfaces on this network). 11 bytes,
/// within the kernel's 15.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    format!("psw{:08x}", fnv1a(&[container_id, ifname]) >> 32)
}

/// The container end's MAC: locally administered (bit 1 of the first octet set) unicast (bit 0
/// clear), IEEE 802 §8.2, from the same hash, so a re-created pod keeps its MAC.
pub fn container_mac(container_id: &str, ifname: &str) -> Mac {
    let h = fnv1a(&[container_id, ifname, "mac"]).to_be_bytes();
    Mac([(h[0] & 0xfc) | 0x02, h[1], h[2], h[3], h[4], h[5]])
}

fn link_err(what: &str, detail: impl Into<String>) -> CniError {
    CniError::new(Code::Link, what.to_owned()).details(detail)
}

/// Runs `ip <args>`; stdout on success, stderr as the error.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `f` on a new thread inside the network namespace at `netns`.
fn in_netns<T: Send>(
    netns: &Path,
    f: impl FnOnce() -> Result<T, CniError> + Send,
) -> Result<T, CniError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            podswitch_xdp::enter_netns(netns).map_err(|e| {
                CniError::new(
                    Code::UnknownContainer,
                    format!("cannot enter network namespace {}", netns.display()),
                )
                .details(e.to_string())
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(CniError::new(Code::Link, "netns worker thread panicked")))
    })
}

/// Creates the pair: `host` in our namespace, `ifname` directly inside `netns` (so it never
/// clashes with a host interface of the same name), both with `mtu`, the container end with
/// `mac`.
pub fn create_veth(
    host: &str,
    ifname: &str,
    netns: &Path,
    mac: Mac,
    mtu: u16,
) -> Result<(), CniError> {
    let mtu = mtu.to_string();
    let mac = mac.to_string();
    let ns = netns.to_string_lossy();
    ip(&[
        "link", "add", host, "mtu", &mtu, "type", "veth", "peer", "name", ifname, "address", &mac,
        "mtu", &mtu, "netns", &ns,
    ])
    .map(drop)
    .map_err(|e| link_err("cannot create the veth pair", e))
}

/// Brings the host end up.
pub fn host_up(host: &str) -> Result<(), CniError> {
    ip(&["link", "set", host, "up"])
        .map(drop)
        .map_err(|e| link_err("cannot bring the host end up", e))
}

/// Deletes the host end (and so its peer). `Ok(false)` when it did not exist.
pub fn delete(host: &str) -> Result<bool, CniError> {
    if link(host)?.is_none() {
        return Ok(false);
    }
    match ip(&["link", "del", host]) {
        Ok(_) => Ok(true),
        // Raced with another deletion (the netns went away): gone is what we want.
        Err(_) if link(host)?.is_none() => Ok(false),
        Err(e) => Err(link_err("cannot delete the veth pair", e)),
    }
}

/// What `ip -j link show` says of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub mac: String,
    pub mtu: u16,
    pub up: bool,
}

/// The interface `name` in the current namespace, if it exists.
pub fn link(name: &str) -> Result<Option<LinkInfo>, CniError> {
    let out = match ip(&["-j", "link", "show", "dev", name]) {
        Ok(o) => o,
        Err(e) if e.contains("does not exist") || e.contains("Cannot find device") => {
            return Ok(None);
        }
        Err(e) => return Err(link_err("cannot read the interface", e)),
    };
    let v: Value = serde_json::from_str(&out)
        .map_err(|e| link_err("cannot parse `ip -j link` output", e.to_string()))?;
    let Some(l) = v.get(0) else { return Ok(None) };
    Ok(Some(LinkInfo {
        index: l.get("ifindex").and_then(Value::as_u64).unwrap_or(0) as u32,
        mac: l
            .get("address")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        mtu: l.get("mtu").and_then(Value::as_u64).unwrap_or(0) as u16,
        up: l
            .get("flags")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == "UP")),
    }))
}

/// Inside the container: addresses, `lo` and `ifname` up, default routes via the gateways, TX
/// checksum/segmentation offloads off (an AF_XDP copy-mode port on the host end would otherwise
/// receive frames with partial checksums). Returns the container end as configured.
pub fn configure_container(
    netns: &Path,
    ifname: &str,
    addrs: &[Cidr],
    routes: &[Route],
) -> Result<LinkInfo, CniError> {
    in_netns(netns, || {
        let step = |what: &str, args: &[&str]| ip(args).map(drop).map_err(|e| link_err(what, e));
        step("cannot bring lo up", &["link", "set", "lo", "up"])?;
        for a in addrs {
            let a = a.to_string();
            let mut args = vec!["addr", "add", a.as_str(), "dev", ifname];
            if a.contains(':') {
                // The address is ours by allocation; duplicate address detection (RFC 4862
                // §5.4) would only delay the pod's first packets.
                args.push("nodad");
            }
            step("cannot add the address", &args)?;
        }
        podswitch_xdp::disable_tx_offloads(ifname)
            .map_err(|e| link_err("cannot disable TX offloads", e.to_string()))?;
        step(
            "cannot bring the interface up",
            &["link", "set", ifname, "up"],
        )?;
        for r in routes {
            let dst = r.dst.to_string();
            let fam = if r.dst.addr.is_ipv4() { "-4" } else { "-6" };
            let mut args = vec![fam, "route", "add", dst.as_str()];
            let gw = r.gw.map(|g| g.to_string());
            if let Some(g) = &gw {
                args.extend(["via", g.as_str()]);
            }
            args.extend(["dev", ifname]);
            step("cannot add the route", &args)?;
        }
        link(ifname)?.ok_or_else(|| link_err("the container interface vanished", ifname))
    })
}

/// What CHECK compares against `prevResult`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub link: Option<LinkInfo>,
    pub addrs: Vec<Cidr>,
    /// Routes through the interface: (destination, gateway).
    pub routes: Vec<(Cidr, Option<IpAddr>)>,
    /// Whether any TX checksum or segmentation offload is still on.
    pub tx_offloads_on: bool,
}

fn parse_addrs(out: &str) -> Vec<Cidr> {
    let v: Value = serde_json::from_str(out).unwrap_or(Value::Null);
    let mut addrs = Vec::new();
    for l in v.as_array().into_iter().flatten() {
        for a in l
            .get("addr_info")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let local = a
                .get("local")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok());
            let prefix = a.get("prefixlen").and_then(Value::as_u64);
            if let (Some(addr), Some(prefix)) = (local, prefix) {
                addrs.push(Cidr {
                    addr,
                    prefix: prefix as u8,
                });
            }
        }
    }
    addrs
}

fn parse_routes(out: &str, v6: bool) -> Vec<(Cidr, Option<IpAddr>)> {
    let v: Value = serde_json::from_str(out).unwrap_or(Value::Null);
    let mut routes = Vec::new();
    for r in v.as_array().into_iter().flatten() {
        let Some(dst) = r.get("dst").and_then(Value::as_str) else {
            continue;
        };
        let dst = if dst == "default" {
            Some(Cidr {
                addr: if v6 {
                    IpAddr::V6(core::net::Ipv6Addr::UNSPECIFIED)
                } else {
                    IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED)
                },
                prefix: 0,
            })
        } else if dst.contains('/') {
            dst.parse().ok()
        } else {
            dst.parse::<IpAddr>().ok().map(|addr| Cidr {
                addr,
                prefix: if addr.is_ipv4() { 32 } else { 128 },
            })
        };
        let gw = r
            .get("gateway")
            .and_then(Value::as_str)
            .and_then(|g| g.parse().ok());
        if let Some(dst) = dst {
            routes.push((dst, gw));
        }
    }
    routes
}

/// Reads the container interface's state (CHECK).
pub fn inspect_container(netns: &Path, ifname: &str) -> Result<ContainerState, CniError> {
    in_netns(netns, || {
        let Some(l) = link(ifname)? else {
            return Ok(ContainerState {
                link: None,
                addrs: Vec::new(),
                routes: Vec::new(),
                tx_offloads_on: false,
            });
        };
        let addrs = ip(&["-j", "addr", "show", "dev", ifname])
            .map_err(|e| link_err("cannot read addresses", e))?;
        let mut routes = Vec::new();
        for (fam, v6) in [("-4", false), ("-6", true)] {
            let out = ip(&["-j", fam, "route", "show", "dev", ifname])
                .map_err(|e| link_err("cannot read routes", e))?;
            routes.extend(parse_routes(&out, v6));
        }
        let off = podswitch_xdp::tx_offloads(ifname)
            .map_err(|e| link_err("cannot read TX offloads", e.to_string()))?;
        Ok(ContainerState {
            link: Some(l),
            addrs: parse_addrs(&addrs),
            routes,
            tx_offloads_on: off.checksum || off.tso || off.gso || off.other_segmentation,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_short_and_distinct() {
        let a = host_ifname("0123456789abcdef", "eth0");
        assert_eq!(a, host_ifname("0123456789abcdef", "eth0"));
        assert_eq!(a.len(), 11);
        assert!(a.starts_with("psw"));
        assert!(crate::env::valid_ifname(&a));
        assert_ne!(a, host_ifname("0123456789abcdef", "eth1"));
        assert_ne!(a, host_ifname("0123456789abcdeF", "eth0"));
        assert_ne!(host_ifname("ab", "c"), host_ifname("a", "bc"));
        // The FNV-1a test vector ("a" → 0xaf63dc4c8601ec8c) pins the hash across builds.
        assert_eq!(fnv1a(&["a"]), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn macs_are_local_unicast() {
        for id in ["a", "b", "c0ffee", "container-1", "x.y_z"] {
            let m = container_mac(id, "eth0");
            assert_eq!(m.0[0] & 0x01, 0, "{m}: multicast bit");
            assert_eq!(m.0[0] & 0x02, 0x02, "{m}: local bit");
            assert_eq!(m, container_mac(id, "eth0"));
        }
        assert_ne!(container_mac("a", "eth0"), container_mac("b", "eth0"));
    }

    #[test]
    fn ip_json_is_parsed() {
        let addrs = r#"[{"ifindex":2,"ifname":"eth0","addr_info":[{"family":"inet","local":"10.1.0.5","prefixlen":24},{"family":"inet6","local":"fe80::1","prefixlen":64}]}]"#;
        assert_eq!(
            parse_addrs(addrs),
            vec![
                "10.1.0.5/24".parse().unwrap(),
                "fe80::1/64".parse().unwrap()
            ]
        );
        let routes = r#"[{"dst":"default","gateway":"10.1.0.1","flags":[]},{"dst":"10.1.0.0/24","protocol":"kernel","prefsrc":"10.1.0.5"},{"dst":"10.2.0.7"}]"#;
        assert_eq!(
            parse_routes(routes, false),
            vec![
                (
                    "0.0.0.0/0".parse().unwrap(),
                    Some("10.1.0.1".parse().unwrap())
                ),
                ("10.1.0.0/24".parse().unwrap(), None),
                ("10.2.0.7/32".parse().unwrap(), None),
            ]
        );
        assert!(parse_addrs("garbage").is_empty());
        assert_eq!(
            parse_routes(r#"[{"dst":"default"}]"#, true)[0]
                .0
                .to_string(),
            "::/0"
        );
    }
}
