//! The network configuration read from stdin (CNI spec 1.0.0, "Network configuration"): the
//! spec's members (`cniVersion`, `name`, `type`, `ipam`, `dns`, `prevResult`, `runtimeConfig`,
//! `args`) and ours (`socket`, `mtu`, `namespace`). Unknown members are ignored, as the spec
//! requires of plugins (runtimes inject their own). Invariants after [`NetConf::parse`]: the
//! version is supported, the MTU is within what the daemon accepts, `ipam.type` names a plugin.
//! The raw bytes are kept: a delegated IPAM plugin gets exactly what we got.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{CniError, Code};
use crate::result::{CniResult, Dns, SUPPORTED_VERSIONS};

/// The daemon's default control socket.
pub const DEFAULT_SOCKET: &str = "/run/podswitch/podswitch.sock";
/// Default pod MTU: a 1500-byte underlay less the 50 bytes of an IPv4 VXLAN encapsulation
/// (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8; RFC 7348 §4.3 forbids fragmenting it).
pub const DEFAULT_MTU: u16 = 1450;
/// The MTUs the daemon accepts for a port.
pub const MTU_RANGE: core::ops::RangeInclusive<u16> = 1280..=2000;

/// `ipam`: which plugin to delegate to (its other members are its own business).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipam {
    pub plugin: String,
}

/// A parsed network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub plugin_type: String,
    pub socket: PathBuf,
    pub mtu: u16,
    /// Namespace for endpoints whose runtime gives no `K8S_POD_NAMESPACE`.
    pub namespace: Option<String>,
    pub ipam: Option<Ipam>,
    pub dns: Option<Dns>,
    pub prev_result: Option<CniResult>,
    /// From `runtimeConfig.labels` and `args.cni.labels` (the latter wins on a clash).
    pub labels: BTreeMap<String, String>,
    /// The bytes as read, for delegation.
    pub raw: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    cni_version: String,
    name: String,
    #[serde(rename = "type")]
    plugin_type: String,
    #[serde(default)]
    socket: Option<PathBuf>,
    #[serde(default)]
    mtu: Option<u16>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    ipam: Option<Value>,
    #[serde(default)]
    dns: Option<Dns>,
    #[serde(default)]
    prev_result: Option<Value>,
    #[serde(default)]
    runtime_config: Option<Value>,
    #[serde(default)]
    args: Option<Value>,
}

fn bad(msg: impl Into<String>) -> CniError {
    CniError::new(Code::InvalidConfig, msg)
}

fn labels_at(v: Option<&Value>, at: &str) -> Result<BTreeMap<String, String>, CniError> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| bad(format!("{at}: expected an object of strings: {e}"))),
    }
}

/// The `cniVersion` of a configuration, when it has one (for error objects of a bad config).
pub fn version_of(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_owned)
}

impl NetConf {
    /// Decodes and validates. Not JSON or not an object: code 6; a missing or ill-typed member,
    /// or a bad value: code 7; an unsupported `cniVersion`: code 1.
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(Code::Decode, "the network configuration is not JSON")
                .details(e.to_string())
        })?;
        if !value.is_object() {
            return Err(CniError::new(
                Code::Decode,
                "the network configuration is not a JSON object",
            ));
        }
        let w: Wire = serde_json::from_value(value)
            .map_err(|e| bad(format!("invalid network configuration: {e}")))?;
        if !SUPPORTED_VERSIONS.contains(&w.cni_version.as_str()) {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "cniVersion {:?} is not supported (supported: {})",
                    w.cni_version,
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        if w.name.is_empty() {
            return Err(bad("name: must not be empty"));
        }
        let mtu = w.mtu.unwrap_or(DEFAULT_MTU);
        if !MTU_RANGE.contains(&mtu) {
            return Err(bad(format!(
                "mtu: {mtu} is outside {}..={}",
                MTU_RANGE.start(),
                MTU_RANGE.end()
            )));
        }
        let ipam = match &w.ipam {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) if m.is_empty() => None,
            Some(v) => match v.get("type").and_then(Value::as_str) {
                Some(t) if !t.is_empty() && !t.contains('/') && t != "." && t != ".." => {
                    Some(Ipam {
                        plugin: t.to_owned(),
                    })
                }
                _ => return Err(bad("ipam.type: must name an IPAM plugin (e.g. host-local)")),
            },
        };
        let prev_result = match w.prev_result {
            None | Some(Value::Null) => None,
            Some(v) => {
                Some(serde_json::from_value(v).map_err(|e| bad(format!("prevResult: {e}")))?)
            }
        };
        let mut labels = labels_at(
            w.runtime_config.as_ref().and_then(|r| r.get("labels")),
            "runtimeConfig.labels",
        )?;
        labels.extend(labels_at(
            w.args
                .as_ref()
                .and_then(|a| a.get("cni"))
                .and_then(|c| c.get("labels")),
            "args.cni.labels",
        )?);
        Ok(Self {
            cni_version: w.cni_version,
            name: w.name,
            plugin_type: w.plugin_type,
            socket: w.socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
            mtu,
            namespace: w.namespace.filter(|n| !n.is_empty()),
            ipam,
            dns: w.dns,
            prev_result,
            labels,
            raw: bytes.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_takes_the_defaults() {
        let c =
            NetConf::parse(br#"{"cniVersion":"1.0.0","name":"pods","type":"podswitch"}"#).unwrap();
        assert_eq!(c.cni_version, "1.0.0");
        assert_eq!(c.name, "pods");
        assert_eq!(c.plugin_type, "podswitch");
        assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(c.mtu, 1450);
        assert_eq!(c.ipam, None);
        assert_eq!(c.prev_result, None);
        assert!(c.labels.is_empty());
    }

    #[test]
    fn full_config_is_read() {
        let text = br#"{
            "cniVersion": "0.4.0", "name": "pods", "type": "podswitch",
            "socket": "/tmp/x.sock", "mtu": 1400, "namespace": "lab",
            "ipam": {"type": "host-local", "subnet": "10.9.0.0/24"},
            "dns": {"nameservers": ["10.96.0.10"]},
            "runtimeConfig": {"labels": {"app": "web", "tier": "fe"}, "portMappings": []},
            "args": {"cni": {"labels": {"tier": "be"}}},
            "prevResult": {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.9.0.2/24"}]},
            "somethingElse": 1
        }"#;
        let c = NetConf::parse(text).unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(c.mtu, 1400);
        assert_eq!(c.namespace.as_deref(), Some("lab"));
        assert_eq!(c.ipam.as_ref().unwrap().plugin, "host-local");
        assert_eq!(c.dns.as_ref().unwrap().nameservers, ["10.96.0.10"]);
        assert_eq!(c.labels["app"], "web");
        assert_eq!(c.labels["tier"], "be");
        assert_eq!(
            c.prev_result.unwrap().ips[0].address.to_string(),
            "10.9.0.2/24"
        );
        assert_eq!(c.raw, text.to_vec());
    }

    #[test]
    fn errors_have_the_spec_codes() {
        let cases: [(&[u8], Code); 11] = [
            (b"not json", Code::Decode),
            (b"[1,2]", Code::Decode),
            (br#"{"name":"n","type":"podswitch"}"#, Code::InvalidConfig),
            (br#"{"cniVersion":"1.0.0","type":"podswitch"}"#, Code::InvalidConfig),
            (br#"{"cniVersion":"1.0.0","name":"","type":"podswitch"}"#, Code::InvalidConfig),
            (br#"{"cniVersion":"0.3.1","name":"n","type":"podswitch"}"#, Code::IncompatibleVersion),
            (br#"{"cniVersion":"2.0.0","name":"n","type":"podswitch"}"#, Code::IncompatibleVersion),
            (br#"{"cniVersion":"1.0.0","name":"n","type":"podswitch","mtu":9000}"#, Code::InvalidConfig),
            (br#"{"cniVersion":"1.0.0","name":"n","type":"podswitch","mtu":"big"}"#, Code::InvalidConfig),
            (br#"{"cniVersion":"1.0.0","name":"n","type":"podswitch","ipam":{"type":"../x"}}"#, Code::InvalidConfig),
            (br#"{"cniVersion":"1.0.0","name":"n","type":"podswitch","runtimeConfig":{"labels":{"a":1}}}"#, Code::InvalidConfig),
        ];
        for (text, code) in cases {
            let e = NetConf::parse(text).unwrap_err();
            assert_eq!(e.code, code, "{}: {e}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn version_of_reads_only_the_version() {
        assert_eq!(
            version_of(br#"{"cniVersion":"0.4.0"}"#).as_deref(),
            Some("0.4.0")
        );
        assert_eq!(version_of(b"{"), None);
    }
}
