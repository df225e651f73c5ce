//! The validated, normalised form of the inputs: [`PolicySpec`] from a networking.k8s.io/v1
//! `NetworkPolicy`, [`Endpoint`] from a v1 `Pod` (or built directly for VMs and bare-metal hosts),
//! namespace labels from a v1 `Namespace`. Validation mirrors the API server
//! (pkg/apis/networking/validation/validation.go, `ValidateNetworkPolicySpec`), and defaulting
//! mirrors its defaulting (`policyTypes`, protocol TCP). Everything here is plain owned data;
//! the engine turns selectors into group ids. `Send + Sync`.

use core::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::cidr::{Cidr, IpBlock};
use crate::error::{Invalid, PolicyError};
use crate::selector::{Labels, Selector};

/// The label the API server puts on every namespace (Kubernetes 1.21+).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A transport protocol as NetworkPolicy knows it; `Other` carries any other IP protocol number
/// (ICMP, ...), which only port-less rules match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Other(u8),
}

impl Protocol {
    /// From the IPv4 protocol / IPv6 next-header number.
    pub fn from_ip_number(n: u8) -> Self {
        match n {
            6 => Self::Tcp,
            17 => Self::Udp,
            132 => Self::Sctp,
            n => Self::Other(n),
        }
    }

    /// Parses the API spelling (`TCP`, `UDP`, `SCTP`; case-sensitive as the API server is).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// The API spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
            Self::Other(_) => "OTHER",
        }
    }
}

impl core::fmt::Display for Protocol {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Other(n) => write!(f, "IP protocol {n}"),
            p => f.write_str(p.as_str()),
        }
    }
}

/// One entry of a rule's `ports` list after defaulting.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortSpec {
    /// `port` omitted: every port of the protocol.
    AllPorts(Protocol),
    /// A number, or `port`..=`endPort`.
    Range {
        protocol: Protocol,
        start: u16,
        end: u16,
    },
    /// A named port, resolved against the destination endpoint's container ports.
    Named { protocol: Protocol, name: String },
}

/// Which endpoints a group holds: the unit every distinct selector becomes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKey {
    /// Endpoints of one namespace (scope) whose labels match `pods`. A policy's `podSelector` and a
    /// peer's lone `podSelector` (scoped to the policy's namespace) become this.
    InNamespace { namespace: String, pods: Selector },
    /// Endpoints whose namespace matches `namespaces` AND whose labels match `pods`: a peer's
    /// `namespaceSelector` (with `pods` = `{}`) or `namespaceSelector` + `podSelector` (AND).
    Cluster {
        namespaces: Selector,
        pods: Selector,
    },
}

impl core::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::InNamespace { namespace, pods } => write!(f, "pods {{{pods}}} in {namespace}"),
            Self::Cluster { namespaces, pods } => {
                write!(f, "pods {{{pods}}} in namespaces {{{namespaces}}}")
            }
        }
    }
}

/// One peer of a rule (`from` / `to` entry).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerSpec {
    Group(GroupKey),
    Block(IpBlock),
}

/// One ingress or egress rule. `None` means the list was missing or empty: every peer / port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleSpec {
    pub peers: Option<Vec<PeerSpec>>,
    pub ports: Option<Vec<PortSpec>>,
}

/// A validated NetworkPolicy. `ingress` is `Some` exactly when the policy isolates its pods for
/// ingress (policyTypes contains Ingress after defaulting), likewise `egress`; `Some(vec![])` is
/// the deny-all form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicySpec {
    pub namespace: String,
    pub name: String,
    pub pod_selector: Selector,
    pub ingress: Option<Vec<RuleSpec>>,
    pub egress: Option<Vec<RuleSpec>>,
}

fn object_name(kind: &str, ns: Option<&str>, name: Option<&str>) -> String {
    match ns {
        Some(ns) => format!("{kind} {ns}/{}", name.unwrap_or("<unnamed>")),
        None => format!("{kind} {}", name.unwrap_or("<unnamed>")),
    }
}

/// RFC 6335 §5.1 service name, as `validation.IsValidPortName` checks it.
fn is_port_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=15).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(u8::is_ascii_lowercase)
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

impl PolicySpec {
    /// Validates and defaults a NetworkPolicy. A missing namespace means `default`, as kubectl
    /// applies it.
    pub fn from_k8s(np: &NetworkPolicy) -> Result<Self, PolicyError> {
        let namespace = np.metadata.namespace.as_deref().unwrap_or("default");
        let object = object_name(
            "NetworkPolicy",
            Some(namespace),
            np.metadata.name.as_deref(),
        );
        let err = |field: String, reason| PolicyError {
            object: object.clone(),
            field,
            reason,
        };
        let name = np
            .metadata
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| err("metadata.name".into(), Invalid::Required))?;
        let spec = np.spec.clone().unwrap_or_default();
        let pod_selector = match &spec.pod_selector {
            Some(s) => Selector::from_k8s(s, "spec.podSelector").map_err(|(f, r)| err(f, r))?,
            None => Selector::everything(),
        };

        // policyTypes defaulting (API reference, NetworkPolicySpec.policyTypes): Ingress always,
        // Egress when the policy has egress rules.
        let (mut has_ingress, mut has_egress) = (false, false);
        match spec.policy_types.as_deref() {
            Some(types) if !types.is_empty() => {
                for (i, t) in types.iter().enumerate() {
                    let slot = match t.as_str() {
                        "Ingress" => &mut has_ingress,
                        "Egress" => &mut has_egress,
                        _ => {
                            return Err(err(
                                format!("spec.policyTypes[{i}]"),
                                Invalid::BadPolicyType(t.clone()),
                            ));
                        }
                    };
                    if *slot {
                        return Err(err(
                            format!("spec.policyTypes[{i}]"),
                            Invalid::BadPolicyType(t.clone()),
                        ));
                    }
                    *slot = true;
                }
            }
            _ => {
                has_ingress = true;
                has_egress = spec.egress.as_ref().is_some_and(|e| !e.is_empty());
            }
        }

        // Rules are validated even for a direction the policy does not isolate: the API server
        // validates the whole object.
        let mut ingress = Vec::new();
        for (i, r) in spec.ingress.iter().flatten().enumerate() {
            let at = format!("spec.ingress[{i}]");
            ingress.push(
                rule(
                    namespace,
                    r.from.as_deref(),
                    "from",
                    r.ports.as_deref(),
                    &at,
                )
                .map_err(|(f, r)| err(f, r))?,
            );
        }
        let mut egress = Vec::new();
        for (i, r) in spec.egress.iter().flatten().enumerate() {
            let at = format!("spec.egress[{i}]");
            egress.push(
                rule(namespace, r.to.as_deref(), "to", r.ports.as_deref(), &at)
                    .map_err(|(f, r)| err(f, r))?,
            );
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            name,
            pod_selector,
            ingress: has_ingress.then_some(ingress),
            egress: has_egress.then_some(egress),
        })
    }
}

type FieldResult<T> = Result<T, (String, Invalid)>;

fn rule(
    namespace: &str,
    peers: Option<&[NetworkPolicyPeer]>,
    peers_field: &str,
    ports: Option<&[NetworkPolicyPort]>,
    at: &str,
) -> FieldResult<RuleSpec> {
    let peers = match peers {
        Some(list) if !list.is_empty() => {
            let mut out = Vec::with_capacity(list.len());
            for (i, p) in list.iter().enumerate() {
                out.push(peer(namespace, p, &format!("{at}.{peers_field}[{i}]"))?);
            }
            Some(out)
        }
        _ => None,
    };
    let ports = match ports {
        Some(list) if !list.is_empty() => {
            let mut out = Vec::with_capacity(list.len());
            for (i, p) in list.iter().enumerate() {
                out.push(port(p, &format!("{at}.ports[{i}]"))?);
            }
            Some(out)
        }
        _ => None,
    };
    Ok(RuleSpec { peers, ports })
}

fn peer(namespace: &str, p: &NetworkPolicyPeer, at: &str) -> FieldResult<PeerSpec> {
    let pods = p
        .pod_selector
        .as_ref()
        .map(|s| Selector::from_k8s(s, &format!("{at}.podSelector")))
        .transpose()?;
    let namespaces = p
        .namespace_selector
        .as_ref()
        .map(|s| Selector::from_k8s(s, &format!("{at}.namespaceSelector")))
        .transpose()?;
    match (&p.ip_block, pods, namespaces) {
        (None, None, None) => Err((at.to_owned(), Invalid::EmptyPeer)),
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            Err((at.to_owned(), Invalid::IpBlockWithSelector))
        }
        (Some(b), None, None) => {
            let cidr = Cidr::parse(&b.cidr).map_err(|r| (format!("{at}.ipBlock.cidr"), r))?;
            let mut except = Vec::new();
            for (i, e) in b.except.iter().flatten().enumerate() {
                except.push(Cidr::parse(e).map_err(|r| (format!("{at}.ipBlock.except[{i}]"), r))?);
            }
            IpBlock::new(cidr, except)
                .map(PeerSpec::Block)
                .map_err(|(i, r)| (format!("{at}.ipBlock.except[{i}]"), r))
        }
        // A lone podSelector selects pods in the policy's own namespace (API reference,
        // NetworkPolicyPeer.podSelector).
        (None, Some(pods), None) => Ok(PeerSpec::Group(GroupKey::InNamespace {
            namespace: namespace.to_owned(),
            pods,
        })),
        // namespaceSelector alone: all pods of matching namespaces; with podSelector: AND.
        (None, pods, Some(namespaces)) => Ok(PeerSpec::Group(GroupKey::Cluster {
            namespaces,
            pods: pods.unwrap_or_default(),
        })),
    }
}

fn port(p: &NetworkPolicyPort, at: &str) -> FieldResult<PortSpec> {
    let protocol = match p.protocol.as_deref() {
        None => Protocol::Tcp,
        Some(s) => Protocol::parse(s).ok_or_else(|| {
            (
                format!("{at}.protocol"),
                Invalid::UnsupportedProtocol(s.to_owned()),
            )
        })?,
    };
    let check_num = |n: i32, field: &str| -> FieldResult<u16> {
        if (1..=65535).contains(&n) {
            Ok(n as u16)
        } else {
            Err((format!("{at}.{field}"), Invalid::PortOutOfRange(n)))
        }
    };
    match (&p.port, p.end_port) {
        (None, None) => Ok(PortSpec::AllPorts(protocol)),
        (None, Some(_)) => Err((format!("{at}.port"), Invalid::EndPortWithoutPort)),
        (Some(IntOrString::String(name)), end) => {
            if end.is_some() {
                return Err((format!("{at}.endPort"), Invalid::EndPortWithNamedPort));
            }
            if !is_port_name(name) {
                return Err((format!("{at}.port"), Invalid::BadPortName(name.clone())));
            }
            Ok(PortSpec::Named {
                protocol,
                name: name.clone(),
            })
        }
        (Some(IntOrString::Int(n)), end) => {
            let start = check_num(*n, "port")?;
            let end = match end {
                None => start,
                Some(e) => {
                    if e < *n {
                        return Err((
                            format!("{at}.endPort"),
                            Invalid::EndPortBelowPort {
                                port: *n,
                                end_port: e,
                            },
                        ));
                    }
                    check_num(e, "endPort")?
                }
            };
            Ok(PortSpec::Range {
                protocol,
                start,
                end,
            })
        }
    }
}

/// What kind of workload an endpoint is. Non-Kubernetes endpoints take part in policy like pods:
/// they have labels and live in a namespace-like scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    Pod,
    Vm,
    BareMetal,
}

/// A container (or host) port; `name` is what named policy ports resolve against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub protocol: Protocol,
    pub port: u16,
}

/// An endpoint that policies can select.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Namespace, or the scope of a non-Kubernetes endpoint.
    pub namespace: String,
    pub name: String,
    pub kind: EndpointKind,
    pub labels: Labels,
    /// Addresses; the first is the primary one (used when the endpoint is named rather than
    /// addressed, and for ipBlock matching then).
    pub addrs: Vec<IpAddr>,
    pub ports: Vec<ContainerPort>,
}

impl Endpoint {
    /// A pod endpoint with the given labels and no ports.
    pub fn pod(namespace: &str, name: &str, labels: Labels, addrs: Vec<IpAddr>) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            kind: EndpointKind::Pod,
            labels,
            addrs,
            ports: Vec::new(),
        }
    }

    /// From a v1 Pod: labels, `status.podIPs` (or `status.podIP`), and the container ports of
    /// `spec.containers[].ports[]` (protocol defaults to TCP).
    pub fn from_pod(pod: &Pod) -> Result<Self, PolicyError> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let object = object_name("Pod", Some(namespace), pod.metadata.name.as_deref());
        let err = |field: String, reason| PolicyError {
            object: object.clone(),
            field,
            reason,
        };
        let name = pod
            .metadata
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| err("metadata.name".into(), Invalid::Required))?;
        let labels: Labels = pod.metadata.labels.clone().unwrap_or_default();
        let mut addrs = Vec::new();
        let status = pod.status.as_ref();
        let ips: Vec<(String, &str)> = match status.and_then(|s| s.pod_ips.as_ref()) {
            Some(list) if !list.is_empty() => list
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("status.podIPs[{i}].ip"), p.ip.as_str()))
                .collect(),
            _ => status
                .and_then(|s| s.pod_ip.as_deref())
                .map(|ip| vec![("status.podIP".to_owned(), ip)])
                .unwrap_or_default(),
        };
        for (field, ip) in ips {
            let a: IpAddr = ip
                .parse()
                .map_err(|_| err(field, Invalid::BadAddress(ip.to_owned())))?;
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        let mut ports = Vec::new();
        if let Some(spec) = &pod.spec {
            for (ci, c) in spec.containers.iter().enumerate() {
                for (pi, p) in c.ports.iter().flatten().enumerate() {
                    let at = format!("spec.containers[{ci}].ports[{pi}]");
                    let protocol = match p.protocol.as_deref() {
                        None => Protocol::Tcp,
                        Some(s) => Protocol::parse(s).ok_or_else(|| {
                            err(
                                format!("{at}.protocol"),
                                Invalid::UnsupportedProtocol(s.to_owned()),
                            )
                        })?,
                    };
                    if !(1..=65535).contains(&p.container_port) {
                        return Err(err(
                            format!("{at}.containerPort"),
                            Invalid::PortOutOfRange(p.container_port),
                        ));
                    }
                    if let Some(n) = &p.name
                        && !is_port_name(n)
                    {
                        return Err(err(format!("{at}.name"), Invalid::BadPortName(n.clone())));
                    }
                    ports.push(ContainerPort {
                        name: p.name.clone(),
                        protocol,
                        port: p.container_port as u16,
                    });
                }
            }
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            name,
            kind: EndpointKind::Pod,
            labels,
            addrs,
            ports,
        })
    }
}

/// Name and labels of a v1 Namespace (the engine adds `kubernetes.io/metadata.name`).
pub fn namespace_from_k8s(ns: &Namespace) -> Result<(String, Labels), PolicyError> {
    let name = ns
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| PolicyError {
            object: "Namespace <unnamed>".into(),
            field: "metadata.name".into(),
            reason: Invalid::Required,
        })?;
    Ok((name, ns.metadata.labels.clone().unwrap_or_default()))
}
