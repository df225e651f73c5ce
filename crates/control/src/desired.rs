//! The desired state: what the operator (or the CNI plugin) asked for — namespaces with their IPAM
//! pools, local endpoints, remote endpoints, NetworkPolicy objects as applied, VTEPs — and the
//! generation counter. This is what is persisted ([`crate::store`]) and what the compiled runtime
//! state is derived from; nothing here is derived data. Plus the name and label validators the
//! requests are checked with (the Kubernetes rules, so names that kubectl accepts are accepted).
//!
//! Keys: endpoints, remote endpoints and policies by `namespace/name` (a namespace name is a
//! DNS-1123 label and cannot contain `/`). Plain data: `Send + Sync`, `Clone`.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::{Deserialize, Serialize};

use crate::ipam::Pool;
use crate::proto::{EndpointInfo, Labels, RemoteSpec, VtepSpec};

/// A namespace: labels and its pools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v4: Option<Pool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v6: Option<Pool>,
}

impl NamespaceRecord {
    /// The pool of `addr`'s family.
    pub fn pool(&self, v6: bool) -> Option<&Pool> {
        if v6 {
            self.v6.as_ref()
        } else {
            self.v4.as_ref()
        }
    }

    /// The pool of `addr`'s family, mutably.
    pub fn pool_mut(&mut self, v6: bool) -> Option<&mut Pool> {
        if v6 {
            self.v6.as_mut()
        } else {
            self.v4.as_mut()
        }
    }
}

/// Everything the node was asked for; see the module docs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DesiredState {
    /// Bumped by every successful mutating request; never reused, also across restarts.
    pub generation: u64,
    pub namespaces: BTreeMap<String, NamespaceRecord>,
    pub endpoints: BTreeMap<String, EndpointInfo>,
    pub remotes: BTreeMap<String, RemoteSpec>,
    pub policies: BTreeMap<String, NetworkPolicy>,
    pub vteps: BTreeMap<u32, VtepSpec>,
}

/// `namespace/name`.
pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl DesiredState {
    /// Keys of the map entries in `namespace` (keys sort by namespace first).
    pub fn in_namespace<'a, V>(
        map: &'a BTreeMap<String, V>,
        namespace: &str,
    ) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
        let prefix = format!("{namespace}/");
        map.range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
    }
}

/// RFC 1123 label as Kubernetes checks namespace names: 1–63 of `a-z0-9-`, alphanumeric at both
/// ends.
pub fn check_dns_label(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?}: must be a DNS-1123 label (1-63 characters a-z, 0-9, '-', alphanumeric at both ends)"
        ))
    }
}

/// RFC 1123 subdomain as Kubernetes checks object names: 1–253 characters, dot-separated labels.
pub fn check_dns_subdomain(s: &str) -> Result<(), String> {
    let ok = (1..=253).contains(&s.len())
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?}: must be a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.')"
        ))
    }
}

/// A label name or value segment: up to 63 of `A-Za-z0-9-_.`, alphanumeric at both ends
/// (empty allowed for values).
fn label_segment(s: &str, allow_empty: bool) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return allow_empty;
    }
    b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Kubernetes label syntax: key `[prefix/]name` (prefix a DNS subdomain), value as a name or empty.
pub fn check_labels(labels: &Labels, field: &str) -> Result<(), (String, String)> {
    for (k, v) in labels {
        let at = format!("{field}.{k}");
        let key_ok = match k.split_once('/') {
            Some((prefix, name)) => {
                check_dns_subdomain(prefix).is_ok() && label_segment(name, false)
            }
            None => label_segment(k, false),
        };
        if !key_ok {
            return Err((at, format!("{k:?}: not a valid label key")));
        }
        if !label_segment(v, true) {
            return Err((at, format!("{v:?}: not a valid label value")));
        }
    }
    Ok(())
}

/// RFC 6335 §5.1 service name (what named container ports must be).
pub fn is_port_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=15).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(u8::is_ascii_lowercase)
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// A Linux interface name: 1–15 bytes (IFNAMSIZ − 1), no '/', ':', whitespace or NUL.
pub fn check_interface(s: &str) -> Result<(), String> {
    let ok = (1..=15).contains(&s.len())
        && s != "."
        && s != ".."
        && !s
            .bytes()
            .any(|c| c == b'/' || c == b':' || c.is_ascii_whitespace() || c == 0 || !c.is_ascii());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?}: not a valid interface name (1-15 bytes, no '/', ':' or whitespace)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_dns_label("team-a").is_ok());
        assert!(check_dns_label("Team").is_err());
        assert!(check_dns_label("-a").is_err());
        assert!(check_dns_label("").is_err());
        assert!(check_dns_label(&"a".repeat(64)).is_err());
        assert!(check_dns_label("a/b").is_err());
        assert!(check_dns_subdomain("web-0.cache").is_ok());
        assert!(check_dns_subdomain("web..0").is_err());
        assert!(check_interface("veth1234abcd").is_ok());
        assert!(check_interface("a/b").is_err());
        assert!(check_interface("sixteen-chars-xx").is_err());
        assert!(is_port_name("http"));
        assert!(!is_port_name("8080"));
    }

    #[test]
    fn labels() {
        let ok: Labels = [
            ("app".to_owned(), "web".to_owned()),
            ("example.com/tier".to_owned(), String::new()),
        ]
        .into();
        assert!(check_labels(&ok, "labels").is_ok());
        let bad: Labels = [("bad key".to_owned(), "x".to_owned())].into();
        assert_eq!(
            check_labels(&bad, "request.labels").unwrap_err().0,
            "request.labels.bad key"
        );
        let bad: Labels = [("k".to_owned(), "-x".to_owned())].into();
        assert!(check_labels(&bad, "l").is_err());
    }

    #[test]
    fn namespace_range() {
        let mut m = BTreeMap::new();
        for k in ["a/x", "a/y", "a-b/z", "ab/w", "b/q"] {
            m.insert(k.to_owned(), 1u8);
        }
        let got: Vec<&String> = DesiredState::in_namespace(&m, "a")
            .map(|(k, _)| k)
            .collect();
        assert_eq!(got, ["a/x", "a/y"]);
    }
}
