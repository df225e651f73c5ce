//! The CNI result types (CNI spec 1.0.0, "Success" and "Version success"): what ADD prints, what
//! CHECK and DEL read back as `prevResult`, and what a delegated IPAM plugin prints. They accept
//! the 0.4.0 form too (`ips[].version`), so a 0.4.0 `prevResult` decodes. Plain data.

use core::fmt;
use core::net::IpAddr;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

/// The versions this plugin speaks, oldest first (0.4.0 is the first with CHECK).
pub const SUPPORTED_VERSIONS: [&str; 2] = ["0.4.0", "1.0.0"];

/// The VERSION command's answer.
pub fn version_json() -> serde_json::Value {
    serde_json::json!({ "cniVersion": "1.0.0", "supportedVersions": SUPPORTED_VERSIONS })
}

/// An address with its prefix length: `10.1.0.5/24`, `fd00:1::5/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected address/prefix"))?;
        let addr: IpAddr = a.parse().map_err(|_| format!("{s:?}: bad address"))?;
        let prefix: u8 = p.parse().map_err(|_| format!("{s:?}: bad prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("{s:?}: prefix longer than /{max}"));
        }
        Ok(Self { addr, prefix })
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// `interfaces[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The netns path for container interfaces; absent for host interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// `ips[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// `"4"` or `"6"`: 0.4.0 results only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub address: Cidr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// `routes[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: Cidr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// `dns`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// A success result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

impl CniResult {
    /// The result as `version` expects it: 0.4.0 results carry `ips[].version`, 1.0.0 ones
    /// must not (the member was removed in 1.0.0).
    pub fn for_version(mut self, version: &str) -> Self {
        let old = version == "0.4.0";
        for ip in &mut self.ips {
            ip.version = old.then(|| if ip.address.addr.is_ipv4() { "4" } else { "6" }.to_owned());
        }
        version.clone_into(&mut self.cni_version);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lists_both_versions() {
        assert_eq!(
            version_json().to_string(),
            r#"{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}"#
        );
    }

    #[test]
    fn result_round_trips_and_omits_empty_members() {
        let r = CniResult {
            cni_version: "1.0.0".into(),
            interfaces: vec![
                Interface {
                    name: "psw01234567".into(),
                    mac: "02:00:00:00:00:09".into(),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: "02:aa:bb:cc:dd:ee".into(),
                    sandbox: Some("/var/run/netns/x".into()),
                },
            ],
            ips: vec![IpConfig {
                version: None,
                address: "10.1.0.5/24".parse().unwrap(),
                gateway: Some("10.1.0.1".parse().unwrap()),
                interface: Some(1),
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("10.1.0.1".parse().unwrap()),
            }],
            dns: Dns::default(),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert!(v["interfaces"][0].get("sandbox").is_none());
        assert_eq!(v["interfaces"][1]["sandbox"], "/var/run/netns/x");
        assert_eq!(v["ips"][0]["address"], "10.1.0.5/24");
        assert_eq!(v["ips"][0]["gateway"], "10.1.0.1");
        assert_eq!(v["ips"][0]["interface"], 1);
        assert!(v["ips"][0].get("version").is_none());
        assert_eq!(v["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(v["dns"], serde_json::json!({}));
        let back: CniResult = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        let old = serde_json::to_value(r.for_version("0.4.0")).unwrap();
        assert_eq!(old["cniVersion"], "0.4.0");
        assert_eq!(old["ips"][0]["version"], "4");
    }

    #[test]
    fn cidrs_are_checked() {
        assert_eq!(
            "fd00::5/64".parse::<Cidr>().unwrap().to_string(),
            "fd00::5/64"
        );
        for bad in [
            "10.0.0.1",
            "10.0.0.1/33",
            "fd00::/129",
            "x/8",
            "10.0.0.1/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_0_4_0_host_local_result_decodes() {
        let text = r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.9.0.2/24","gateway":"10.9.0.1"}],"dns":{}}"#;
        let r: CniResult = serde_json::from_str(text).unwrap();
        assert_eq!(r.ips[0].address.prefix, 24);
        assert_eq!(r.ips[0].interface, None);
        assert!(r.interfaces.is_empty());
    }
}
