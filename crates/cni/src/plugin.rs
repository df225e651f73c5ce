//! ADD, DEL and CHECK (CNI spec 1.0.0, "Operations"), over the daemon's control socket.
//!
//! ADD: (IPAM delegate) → veth pair, host end up → `endpoint_add` (the daemon allocates from
//! the namespace's subnet unless IPAM gave the address) → container side configured → result.
//! Every step done is recorded in an [`Undo`]; on a later failure it is undone in reverse, so a
//! failed ADD leaves no veth, no endpoint and no lease; a registration left by an earlier life
//! of the pod whose host interface is gone (its DEL never reached the daemon) is replaced.
//! DEL is idempotent: it finds the endpoint
//! by its host interface name (derived from the container id, so no `CNI_ARGS` or netns are
//! needed) and treats "not there" as done. CHECK compares the container's interface, addresses,
//! routes and offloads, the host end and the daemon's endpoint with `prevResult`.

use core::net::IpAddr;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use podswitch_control::client::ClientError;
use podswitch_control::proto::{
    EndpointInfo, EndpointSpec, Family, Kind, NamespaceInfo, Reply, Request,
};
use podswitch_control::{Client, ErrorCode};

use crate::config::NetConf;
use crate::env::{Command, Env};
use crate::error::{CniError, Code};
use crate::ipam;
use crate::link;
use crate::result::{Cidr, CniResult, Dns, Interface, IpConfig, Route};

/// How long one control call may take before the runtime is told to try again.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

fn control_err(socket: &Path, e: &ClientError) -> CniError {
    match e {
        ClientError::Io(io) => CniError::new(
            Code::TryAgainLater,
            format!("podswitch daemon unreachable at {}", socket.display()),
        )
        .details(io.to_string()),
        ClientError::Server(s) if matches!(s.code, ErrorCode::Busy | ErrorCode::Timeout) => {
            CniError::new(Code::TryAgainLater, format!("podswitch daemon: {s}"))
        }
        ClientError::Server(s) => CniError::new(Code::Control, format!("podswitch daemon: {s}"))
            .details(serde_json::to_string(s).unwrap_or_default()),
        ClientError::Protocol(p) => {
            CniError::new(Code::Control, "podswitch daemon: protocol error").details(p.clone())
        }
    }
}

fn connect(conf: &NetConf) -> Result<Client, CniError> {
    let c = Client::connect(&conf.socket).map_err(|e| control_err(&conf.socket, &e))?;
    c.set_timeout(Some(CONTROL_TIMEOUT))
        .map_err(|e| control_err(&conf.socket, &e))?;
    Ok(c)
}

/// The endpoint's identity: namespace and name from `CNI_ARGS` (Kubernetes runtimes set
/// `K8S_POD_NAMESPACE`/`K8S_POD_NAME`), else the config's `namespace` (or `default`) and the
/// container id.
pub fn identity(env: &Env, conf: &NetConf) -> (String, String) {
    let ns = env
        .args
        .get("K8S_POD_NAMESPACE")
        .filter(|s| !s.is_empty())
        .cloned()
        .or_else(|| conf.namespace.clone())
        .unwrap_or_else(|| "default".to_owned());
    let name = env
        .args
        .get("K8S_POD_NAME")
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| env.container_id.clone());
    (ns, name)
}

/// Labels: the config's (`runtimeConfig.labels`, `args.cni.labels`), then `CNI_ARGS`
/// `LABELS=k=v,k2=v2`.
pub fn labels(env: &Env, conf: &NetConf) -> Result<BTreeMap<String, String>, CniError> {
    let mut out = conf.labels.clone();
    if let Some(l) = env.args.get("LABELS") {
        for kv in l.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                CniError::new(
                    Code::InvalidEnv,
                    format!("CNI_ARGS LABELS: {kv:?} is not k=v"),
                )
            })?;
            out.insert(k.to_owned(), v.to_owned());
        }
    }
    Ok(out)
}

/// What a failed ADD has to take back.
#[derive(Debug, Default)]
struct Undo {
    ipam: bool,
    veth: Option<String>,
    endpoint: Option<(String, String)>,
}

impl Undo {
    /// Best effort, reverse order; errors are dropped (the ADD error is what the runtime sees).
    fn run(self, client: &mut Client, env: &Env, conf: &NetConf) {
        if let Some((ns, name)) = &self.endpoint {
            let _ = client.endpoint_delete(ns, name);
        }
        if let Some(host) = &self.veth {
            let _ = link::delete(host);
        }
        if self.ipam
            && let Some(i) = &conf.ipam
        {
            let _ = ipam::delegate(&i.plugin, Command::Del, env, conf);
        }
    }
}

fn namespace_info(
    client: &mut Client,
    conf: &NetConf,
    ns: &str,
) -> Result<NamespaceInfo, CniError> {
    match client.call(Request::NamespaceList) {
        Ok(Reply::Namespaces { items }) => items.into_iter().find(|n| n.name == ns).ok_or_else(|| {
            CniError::new(
                Code::Control,
                format!("namespace {ns:?} is not known to podswitch (create it first: podswitchctl apply)"),
            )
        }),
        Ok(r) => Err(CniError::new(Code::Control, "unexpected reply to namespace_list")
            .details(format!("{r:?}"))),
        Err(e) => Err(control_err(&conf.socket, &e)),
    }
}

/// The prefix length of `addr`: from the namespace's subnet that holds it, else a host route.
fn prefix_for(addr: IpAddr, ns: &NamespaceInfo) -> u8 {
    [ns.subnet_v4, ns.subnet_v6]
        .into_iter()
        .flatten()
        .find(|s| s.contains(addr))
        .map_or(if addr.is_ipv4() { 32 } else { 128 }, |s| s.prefix())
}

fn default_dst(v4: bool) -> Cidr {
    Cidr {
        addr: if v4 {
            IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(core::net::Ipv6Addr::UNSPECIFIED)
        },
        prefix: 0,
    }
}

/// ADD.
pub fn add(env: &Env, conf: &NetConf) -> Result<CniResult, CniError> {
    let netns = env
        .netns
        .as_deref()
        .ok_or_else(|| CniError::new(Code::InvalidEnv, "CNI_NETNS is not set"))?;
    if !netns.exists() {
        return Err(CniError::new(
            Code::UnknownContainer,
            format!("network namespace {} does not exist", netns.display()),
        ));
    }
    let (ns, name) = identity(env, conf);
    let labels = labels(env, conf)?;
    let mut client = connect(conf)?;
    let info = namespace_info(&mut client, conf, &ns)?;
    let mut undo = Undo::default();
    let r = add_steps(
        env,
        conf,
        netns,
        &mut client,
        &info,
        (ns, name, labels),
        &mut undo,
    );
    if r.is_err() {
        undo.run(&mut client, env, conf);
    }
    r
}

fn add_steps(
    env: &Env,
    conf: &NetConf,
    netns: &Path,
    client: &mut Client,
    info: &NamespaceInfo,
    (ns, name, labels): (String, String, BTreeMap<String, String>),
    undo: &mut Undo,
) -> Result<CniResult, CniError> {
    let ipam = match &conf.ipam {
        Some(i) => {
            let r = ipam::delegate(&i.plugin, Command::Add, env, conf)?;
            undo.ipam = true;
            r
        }
        None => None,
    };
    let host = link::host_ifname(&env.container_id, &env.ifname);
    let mac = link::container_mac(&env.container_id, &env.ifname);
    if link::link(&host)?.is_some() {
        return Err(CniError::new(
            Code::Link,
            format!("host interface {host} already exists (ADD without DEL for this container?)"),
        ));
    }
    link::create_veth(&host, &env.ifname, netns, mac, conf.mtu)?;
    undo.veth = Some(host.clone());
    // Up before the daemon hears of it: it opens its AF_XDP port on this end as soon as the
    // endpoint is published.
    link::host_up(&host)?;

    let (ips, allocate) = if let Some(r) = &ipam {
        (r.ips.iter().map(|i| i.address.addr).collect(), Vec::new())
    } else {
        let mut fams = Vec::new();
        if info.subnet_v4.is_some() {
            fams.push(Family::Ipv4);
        }
        if info.subnet_v6.is_some() {
            fams.push(Family::Ipv6);
        }
        if fams.is_empty() {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!("namespace {ns:?} has no subnet and no ipam is configured"),
            ));
        }
        (Vec::new(), fams)
    };
    remove_stale(client, conf, &host, (&ns, &name))?;
    let spec = EndpointSpec {
        namespace: ns.clone(),
        name: name.clone(),
        kind: Kind::Pod,
        interface: host.clone(),
        port: None,
        mac,
        ips,
        allocate,
        labels,
        ports: Vec::new(),
        mtu: Some(conf.mtu),
    };
    let (ips, gateways) = match client.endpoint_add(spec) {
        Ok(Reply::EndpointAdded { ips, gateways, .. }) => (ips, gateways),
        Ok(r) => {
            return Err(
                CniError::new(Code::Control, "unexpected reply to endpoint_add")
                    .details(format!("{r:?}")),
            );
        }
        Err(e) => return Err(control_err(&conf.socket, &e)),
    };
    undo.endpoint = Some((ns, name));

    // Addresses (IPAM's prefix when it gave the address), gateways per family (IPAM's first,
    // then the namespace subnet's first host, which the switch answers ARP/ND for).
    let mut addrs = Vec::new();
    let mut ip_configs = Vec::new();
    for a in &ips {
        let from_ipam = ipam
            .as_ref()
            .and_then(|r| r.ips.iter().find(|i| i.address.addr == *a));
        let prefix = from_ipam.map_or_else(|| prefix_for(*a, info), |i| i.address.prefix);
        let gateway = from_ipam.and_then(|i| i.gateway).or_else(|| {
            gateways
                .iter()
                .copied()
                .find(|g| g.is_ipv4() == a.is_ipv4())
        });
        let cidr = Cidr { addr: *a, prefix };
        addrs.push(cidr);
        ip_configs.push(IpConfig {
            version: None,
            address: cidr,
            gateway,
            interface: Some(1),
        });
    }
    let mut routes: Vec<Route> = ipam.as_ref().map(|r| r.routes.clone()).unwrap_or_default();
    for ipc in &ip_configs {
        let v4 = ipc.address.addr.is_ipv4();
        let Some(gw) = ipc.gateway else { continue };
        if !routes
            .iter()
            .any(|r| r.dst.prefix == 0 && r.dst.addr.is_ipv4() == v4)
        {
            routes.push(Route {
                dst: default_dst(v4),
                gw: Some(gw),
            });
        }
    }
    // An IPAM route without a gateway goes via the family's gateway (CNI "routes": gw optional).
    for r in &mut routes {
        if r.gw.is_none() {
            r.gw = ip_configs
                .iter()
                .find(|i| i.address.addr.is_ipv4() == r.dst.addr.is_ipv4())
                .and_then(|i| i.gateway);
        }
    }
    let container = link::configure_container(netns, &env.ifname, &addrs, &routes)?;
    let host_mac = link::link(&host)?.map(|l| l.mac).unwrap_or_default();
    let dns = ipam
        .as_ref()
        .map(|r| r.dns.clone())
        .filter(|d| *d != Dns::default())
        .or_else(|| conf.dns.clone())
        .unwrap_or_default();
    Ok(CniResult {
        cni_version: conf.cni_version.clone(),
        interfaces: vec![
            Interface {
                name: host,
                mac: host_mac,
                sandbox: None,
            },
            Interface {
                name: env.ifname.clone(),
                mac: container.mac,
                sandbox: Some(netns.to_string_lossy().into_owned()),
            },
        ],
        ips: ip_configs,
        routes,
        dns,
    }
    .for_version(&conf.cni_version))
}

/// DEL: undoes ADD; anything already gone counts as done.
pub fn del(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let host = link::host_ifname(&env.container_id, &env.ifname);
    let mut first: Option<CniError> = None;
    match connect(conf) {
        Ok(mut client) => {
            if let Err(e) = deregister(&mut client, conf, &host) {
                first = Some(e);
            }
        }
        Err(e) => first = Some(e),
    }
    if let Err(e) = link::delete(&host) {
        first.get_or_insert(e);
    }
    if let Some(i) = &conf.ipam
        && let Err(e) = ipam::delegate(&i.plugin, Command::Del, env, conf)
    {
        first.get_or_insert(e);
    }
    first.map_or(Ok(()), Err)
}

fn list_endpoints(client: &mut Client, conf: &NetConf) -> Result<Vec<EndpointInfo>, CniError> {
    match client.call(Request::EndpointList { namespace: None }) {
        Ok(Reply::Endpoints { items }) => Ok(items),
        Ok(r) => Err(
            CniError::new(Code::Control, "unexpected reply to endpoint_list")
                .details(format!("{r:?}")),
        ),
        Err(e) => Err(control_err(&conf.socket, &e)),
    }
}

/// Removes registrations left by an earlier life of this pod whose DEL never reached the daemon
/// (it was down): one on our host interface (which we only just created, so it cannot be
/// serving anything), or one under this pod's name whose host interface no longer exists. A
/// registration whose interface is alive belongs to a running pod and is left alone (ADD then
/// fails with the daemon's conflict).
fn remove_stale(
    client: &mut Client,
    conf: &NetConf,
    host: &str,
    (ns, name): (&str, &str),
) -> Result<(), CniError> {
    for e in list_endpoints(client, conf)? {
        let ours = e.interface == host;
        let same_pod = e.namespace == ns && e.name == name;
        if ours || (same_pod && link::link(&e.interface)?.is_none()) {
            match client.endpoint_delete(&e.namespace, &e.name) {
                Ok(_) => {}
                Err(ClientError::Server(s)) if s.code == ErrorCode::NotFound => {}
                Err(err) => return Err(control_err(&conf.socket, &err)),
            }
        }
    }
    Ok(())
}

fn deregister(client: &mut Client, conf: &NetConf, host: &str) -> Result<(), CniError> {
    let items = list_endpoints(client, conf)?;
    let Some(e) = items.into_iter().find(|e| e.interface == host) else {
        return Ok(());
    };
    match client.endpoint_delete(&e.namespace, &e.name) {
        Ok(_) => Ok(()),
        Err(ClientError::Server(s)) if s.code == ErrorCode::NotFound => Ok(()),
        Err(e) => Err(control_err(&conf.socket, &e)),
    }
}

fn mismatch(msg: impl Into<String>) -> CniError {
    CniError::new(Code::CheckFailed, msg)
}

/// CHECK: everything ADD set up is still as `prevResult` says.
pub fn check(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::new(Code::InvalidConfig, "CHECK needs prevResult"))?;
    let netns = env
        .netns
        .as_deref()
        .ok_or_else(|| CniError::new(Code::InvalidEnv, "CNI_NETNS is not set"))?;
    if let Some(i) = &conf.ipam {
        ipam::delegate(&i.plugin, Command::Check, env, conf)?;
    }
    let idx = prev
        .interfaces
        .iter()
        .position(|i| i.name == env.ifname && i.sandbox.is_some())
        .ok_or_else(|| {
            mismatch(format!(
                "prevResult has no sandbox interface {:?}",
                env.ifname
            ))
        })?;
    let state = link::inspect_container(netns, &env.ifname)?;
    let l = state.link.as_ref().ok_or_else(|| {
        mismatch(format!(
            "interface {} is missing from the container",
            env.ifname
        ))
    })?;
    let want_mac = &prev.interfaces[idx].mac;
    if !want_mac.is_empty() && !want_mac.eq_ignore_ascii_case(&l.mac) {
        return Err(mismatch(format!(
            "{}: MAC {} but prevResult says {want_mac}",
            env.ifname, l.mac
        )));
    }
    if !l.up {
        return Err(mismatch(format!("{} is down", env.ifname)));
    }
    if state.tx_offloads_on {
        return Err(mismatch(format!(
            "{}: TX offloads are on again",
            env.ifname
        )));
    }
    let ours: Vec<&IpConfig> = prev
        .ips
        .iter()
        .filter(|i| i.interface.is_none_or(|n| n == idx))
        .collect();
    for ip in &ours {
        if !state.addrs.contains(&ip.address) {
            return Err(mismatch(format!(
                "{}: address {} is missing",
                env.ifname, ip.address
            )));
        }
    }
    for r in &prev.routes {
        let found = state
            .routes
            .iter()
            .any(|(d, g)| *d == r.dst && (r.gw.is_none() || *g == r.gw));
        if !found {
            return Err(mismatch(format!(
                "route {} via {} is missing",
                r.dst,
                r.gw.map_or_else(|| "-".to_owned(), |g| g.to_string())
            )));
        }
    }
    let host = link::host_ifname(&env.container_id, &env.ifname);
    match link::link(&host)? {
        Some(h) if h.up => {}
        Some(_) => return Err(mismatch(format!("host end {host} is down"))),
        None => return Err(mismatch(format!("host end {host} is missing"))),
    }
    let mut client = connect(conf)?;
    let items = list_endpoints(&mut client, conf)?;
    let ep = items
        .iter()
        .find(|e| e.interface == host)
        .ok_or_else(|| mismatch(format!("the daemon has no endpoint on {host}")))?;
    for ip in &ours {
        if !ep.ips.contains(&ip.address.addr) {
            return Err(mismatch(format!(
                "endpoint {}/{} does not hold {}",
                ep.namespace, ep.name, ip.address.addr
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(args: &str) -> Env {
        let vars = [
            ("CNI_COMMAND", "ADD".to_owned()),
            ("CNI_CONTAINERID", "c0ffee".to_owned()),
            ("CNI_NETNS", "/var/run/netns/x".to_owned()),
            ("CNI_IFNAME", "eth0".to_owned()),
            ("CNI_ARGS", args.to_owned()),
        ];
        Env::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap()
    }

    fn conf(extra: &str) -> NetConf {
        NetConf::parse(
            format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"podswitch"{extra}}}"#).as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn identity_prefers_kubernetes_args() {
        let e = env("K8S_POD_NAMESPACE=web;K8S_POD_NAME=web-0");
        assert_eq!(identity(&e, &conf("")), ("web".into(), "web-0".into()));
        let e = env("");
        assert_eq!(identity(&e, &conf("")), ("default".into(), "c0ffee".into()));
        assert_eq!(
            identity(&e, &conf(r#","namespace":"lab""#)),
            ("lab".into(), "c0ffee".into())
        );
    }

    #[test]
    fn labels_merge_config_and_args() {
        let c = conf(r#","runtimeConfig":{"labels":{"app":"web","tier":"fe"}}"#);
        let l = labels(&env("LABELS=tier=db,zone=a"), &c).unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l["app"], "web");
        assert_eq!(l["tier"], "db");
        assert_eq!(l["zone"], "a");
        let err = labels(&env("LABELS=novalue"), &c).unwrap_err();
        assert_eq!(err.code, Code::InvalidEnv);
    }

    #[test]
    fn unreachable_daemon_means_try_again_later() {
        let c = conf(r#","socket":"/nonexistent/podswitch.sock""#);
        let e = connect(&c).unwrap_err();
        assert_eq!(e.code, Code::TryAgainLater);
        assert!(e.msg.contains("/nonexistent/podswitch.sock"));
        let busy = ClientError::Server(podswitch_control::ControlError::new(ErrorCode::Busy, "x"));
        assert_eq!(control_err(&c.socket, &busy).code, Code::TryAgainLater);
        let inv = ClientError::Server(podswitch_control::ControlError::invalid("request.mac", "x"));
        let e = control_err(&c.socket, &inv);
        assert_eq!(e.code, Code::Control);
        assert!(e.details.contains("request.mac"), "{}", e.details);
    }

    #[test]
    fn prefixes_come_from_the_namespace_subnet() {
        let info = NamespaceInfo {
            name: "web".into(),
            labels: BTreeMap::new(),
            subnet_v4: Some(podswitch_control::Subnet::parse("10.1.0.0/24").unwrap()),
            subnet_v6: Some(podswitch_control::Subnet::parse("fd00:1::/64").unwrap()),
            gateways: Vec::new(),
            allocated: 0,
            endpoints: 0,
        };
        assert_eq!(prefix_for("10.1.0.7".parse().unwrap(), &info), 24);
        assert_eq!(prefix_for("fd00:1::7".parse().unwrap(), &info), 64);
        assert_eq!(prefix_for("10.2.0.7".parse().unwrap(), &info), 32);
        assert_eq!(default_dst(false).to_string(), "::/0");
    }

    #[test]
    fn check_without_prev_result_is_a_config_error() {
        let e = check(&env(""), &conf("")).unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig);
    }
}
