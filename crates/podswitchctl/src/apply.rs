//! `podswitchctl apply -f FILE…`: reads Namespace, NetworkPolicy, Endpoint, RemoteEndpoint and
//! Vtep objects from YAML (multi-document, `List`s) or JSON files and makes the daemon's state
//! match them, as `kubectl apply` does: absent objects are created, present ones with new labels
//! relabelled, identical ones left alone, and a change the daemon cannot make in place (an
//! endpoint's MAC, a namespace's subnet) refused with "delete it first".
//!
//! Every file is read and every object decoded before the first request, so a typo anywhere
//! changes nothing. Objects are applied in dependency order (namespaces, VTEPs, endpoints,
//! policies), each error naming the file, the document (1-based), its first line and the field.
//!
//! Object forms (besides the Kubernetes `v1 Namespace` and `networking.k8s.io/v1 NetworkPolicy`):
//! ```yaml
//! apiVersion: v1                    # subnets of a Kubernetes Namespace come from annotations
//! kind: Namespace
//! metadata: {name: web, labels: {env: prod},
//!            annotations: {podswitch.io/subnet-v4: 10.1.0.0/24, podswitch.io/subnet-v6: fd00:1::/64}}
//! ---
//! apiVersion: podswitch.io/v1       # spec: the protocol's endpoint_add fields (PROTOCOL.md)
//! kind: Endpoint                    # RemoteEndpoint: remote_add fields; Vtep: vtep_add fields
//! metadata: {name: vm-1, namespace: web, labels: {app: db}}
//! spec: {interface: tap1, mac: "02:00:00:00:01:01", allocate: [ipv4], kind: vm}
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use podswitch_control::Client;
use podswitch_control::client::ClientError;
use podswitch_control::ipam::Subnet;
use podswitch_control::proto::{
    EndpointInfo, EndpointSpec, Labels, NamespaceInfo, RemoteSpec, Reply, Request, VtepSpec,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based document number in the file.
    pub document: usize,
    /// 1-based line where the document starts, when known.
    pub line: Option<usize>,
    /// `items[i]` of a `List`.
    pub item: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file.display(), self.document)?;
        if let Some(l) = self.line {
            write!(f, " (line {l})")?;
        }
        if let Some(i) = self.item {
            write!(f, ", items[{i}]")?;
        }
        Ok(())
    }
}

/// One decoded object.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Namespace {
        name: String,
        labels: Labels,
        subnet_v4: Option<Subnet>,
        subnet_v6: Option<Subnet>,
    },
    Vtep(VtepSpec),
    Endpoint(EndpointSpec),
    Remote(RemoteSpec),
    Policy {
        namespace: String,
        name: String,
        /// The object as JSON text, as `policy_apply` takes it.
        text: String,
    },
}

impl Object {
    /// Dependency order: namespaces before what lives in them, VTEPs before remotes.
    fn rank(&self) -> u8 {
        match self {
            Self::Namespace { .. } => 0,
            Self::Vtep(_) => 1,
            Self::Endpoint(_) | Self::Remote(_) => 2,
            Self::Policy { .. } => 3,
        }
    }

    /// `kind/name` as printed.
    pub fn describe(&self) -> String {
        match self {
            Self::Namespace { name, .. } => format!("namespace/{name}"),
            Self::Vtep(v) => format!("vtep/{}", v.id),
            Self::Endpoint(e) => format!("endpoint/{}/{}", e.namespace, e.name),
            Self::Remote(r) => format!("remoteendpoint/{}/{}", r.namespace, r.name),
            Self::Policy {
                namespace, name, ..
            } => format!("networkpolicy/{namespace}/{name}"),
        }
    }
}

/// Files named directly, and `*.yaml|*.yml|*.json` inside directories (sorted).
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("{}: cannot list directory", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
                })
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Lines (1-based) where each YAML document starts: line 1, and every `---` marker line, except
/// that a leading marker does not open an extra, empty document.
fn yaml_doc_starts(text: &str) -> Vec<usize> {
    let mut starts = vec![1];
    let mut seen_content = false;
    for (i, l) in text.lines().enumerate() {
        let is_marker = l == "---" || l.starts_with("--- ") || l.starts_with("---\t");
        if is_marker {
            if seen_content {
                starts.push(i + 1);
            } else {
                starts[0] = i + 1;
                seen_content = true;
            }
        } else if !l.trim().is_empty() && !l.trim_start().starts_with('#') {
            seen_content = true;
        }
    }
    starts
}

/// The documents of one file's text, with their origins (`null` documents dropped).
pub fn documents(file: &Path, text: &str) -> Result<Vec<(Origin, Value)>> {
    let at = |document: usize, line: Option<usize>| Origin {
        file: file.to_owned(),
        document,
        line,
        item: None,
    };
    let mut docs = Vec::new();
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        for (i, v) in serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .enumerate()
        {
            let v = v.map_err(|e| anyhow!("{}: invalid JSON: {e}", at(i + 1, None)))?;
            match v {
                Value::Array(items) => {
                    for (j, item) in items.into_iter().enumerate() {
                        let mut o = at(i + 1, None);
                        o.item = Some(j);
                        docs.push((o, item));
                    }
                }
                v => docs.push((at(i + 1, None), v)),
            }
        }
    } else {
        let starts = yaml_doc_starts(text);
        for (i, d) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let v = Value::deserialize(d)
                .map_err(|e| anyhow!("{}: invalid YAML: {e}", at(i + 1, starts.get(i).copied())))?;
            if !v.is_null() {
                docs.push((at(i + 1, starts.get(i).copied()), v));
            }
        }
    }
    // Expand `kind: List`.
    let mut out = Vec::new();
    for (o, v) in docs {
        if v.get("kind").and_then(Value::as_str) == Some("List") {
            let items = v
                .get("items")
                .and_then(Value::as_array)
                .ok_or_else(|| anyhow!("{o}: a List without `items`"))?;
            for (j, item) in items.iter().enumerate() {
                let mut o = o.clone();
                o.item = Some(j);
                out.push((o, item.clone()));
            }
        } else {
            out.push((o, v));
        }
    }
    Ok(out)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn labels_at(v: &Value, path: &[&str], field: &str) -> Result<Labels> {
    match path.iter().try_fold(v, |v, k| v.get(k)) {
        None | Some(Value::Null) => Ok(Labels::new()),
        Some(l) => serde_json::from_value(l.clone())
            .map_err(|e| anyhow!("{field}: expected a map of strings: {e}")),
    }
}

fn subnet_at(v: Option<&str>, field: &str) -> Result<Option<Subnet>> {
    v.map(|s| Subnet::parse(s).map_err(|e| anyhow!("{field}: {e}")))
        .transpose()
}

/// Merges `metadata` (name, namespace, labels) into `spec` and decodes it as `T`.
fn spec_with_metadata<T: for<'de> Deserialize<'de>>(v: &Value, namespaced: bool) -> Result<T> {
    let mut spec = match v.get("spec") {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => bail!("spec: expected a map"),
        None => bail!("spec: missing"),
    };
    let name = str_at(v, &["metadata", "name"]).ok_or_else(|| anyhow!("metadata.name: missing"))?;
    spec.insert("name".into(), json!(name));
    if namespaced {
        let ns = str_at(v, &["metadata", "namespace"])
            .ok_or_else(|| anyhow!("metadata.namespace: missing"))?;
        spec.insert("namespace".into(), json!(ns));
        let labels = labels_at(v, &["metadata", "labels"], "metadata.labels")?;
        if !labels.is_empty() {
            spec.insert("labels".into(), json!(labels));
        }
    }
    serde_json::from_value(Value::Object(spec)).map_err(|e| anyhow!("spec: {e}"))
}

/// Decodes one document into an object.
pub fn decode(v: &Value) -> Result<Object> {
    let api = str_at(v, &["apiVersion"]).ok_or_else(|| anyhow!("apiVersion: missing"))?;
    let kind = str_at(v, &["kind"]).ok_or_else(|| anyhow!("kind: missing"))?;
    match (api, kind) {
        ("v1", "Namespace") => {
            let name = str_at(v, &["metadata", "name"])
                .ok_or_else(|| anyhow!("metadata.name: missing"))?;
            let ann = |k: &str| str_at(v, &["metadata", "annotations", k]);
            Ok(Object::Namespace {
                name: name.to_owned(),
                labels: labels_at(v, &["metadata", "labels"], "metadata.labels")?,
                subnet_v4: subnet_at(
                    ann("podswitch.io/subnet-v4"),
                    "metadata.annotations[podswitch.io/subnet-v4]",
                )?,
                subnet_v6: subnet_at(
                    ann("podswitch.io/subnet-v6"),
                    "metadata.annotations[podswitch.io/subnet-v6]",
                )?,
            })
        }
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            let name = str_at(v, &["metadata", "name"])
                .ok_or_else(|| anyhow!("metadata.name: missing"))?;
            // kubectl's rule: no namespace means `default`.
            let namespace = str_at(v, &["metadata", "namespace"]).unwrap_or("default");
            let mut obj = v.clone();
            obj["metadata"]["namespace"] = json!(namespace);
            Ok(Object::Policy {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                text: obj.to_string(),
            })
        }
        ("podswitch.io/v1", "Endpoint") => Ok(Object::Endpoint(spec_with_metadata(v, true)?)),
        ("podswitch.io/v1", "RemoteEndpoint") => Ok(Object::Remote(spec_with_metadata(v, true)?)),
        ("podswitch.io/v1", "Vtep") => {
            let spec = v.get("spec").ok_or_else(|| anyhow!("spec: missing"))?;
            Ok(Object::Vtep(
                serde_json::from_value(spec.clone()).map_err(|e| anyhow!("spec: {e}"))?,
            ))
        }
        (api, kind) => bail!(
            "kind: {api} {kind} is not applied here (v1 Namespace, networking.k8s.io/v1 \
             NetworkPolicy, podswitch.io/v1 Endpoint|RemoteEndpoint|Vtep)"
        ),
    }
}

/// Reads and decodes every object of `paths`, in dependency order.
pub fn load(paths: &[PathBuf]) -> Result<Vec<(Origin, Object)>> {
    let mut out = Vec::new();
    for f in collect_files(paths)? {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("{}: cannot read", f.display()))?;
        for (o, v) in documents(&f, &text)? {
            let obj = decode(&v).map_err(|e| anyhow!("{o}: {e}"))?;
            out.push((o, obj));
        }
    }
    out.sort_by_key(|(_, o)| o.rank());
    Ok(out)
}

/// What apply did to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub object: String,
    /// `created`, `configured` or `unchanged`.
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

/// The daemon's state apply compares against (read once).
struct Current {
    namespaces: Vec<NamespaceInfo>,
    endpoints: Vec<EndpointInfo>,
    remotes: Vec<RemoteSpec>,
    vteps: Vec<VtepSpec>,
    policies: Vec<(String, String)>,
}

fn current(client: &mut Client) -> Result<Current, ClientError> {
    let mut c = Current {
        namespaces: Vec::new(),
        endpoints: Vec::new(),
        remotes: Vec::new(),
        vteps: Vec::new(),
        policies: Vec::new(),
    };
    if let Reply::Namespaces { items } = client.call(Request::NamespaceList)? {
        c.namespaces = items;
    }
    if let Reply::Endpoints { items } = client.call(Request::EndpointList { namespace: None })? {
        c.endpoints = items;
    }
    if let Reply::Remotes { items } = client.call(Request::RemoteList)? {
        c.remotes = items;
    }
    if let Reply::Vteps { items } = client.call(Request::VtepList)? {
        c.vteps = items;
    }
    if let Reply::Policies { items } = client.call(Request::PolicyList { namespace: None })? {
        c.policies = items.into_iter().map(|p| (p.namespace, p.name)).collect();
    }
    Ok(c)
}

fn relabel(client: &mut Client, namespace: &str, name: &str, labels: &Labels) -> Result<u64> {
    let r = client.call(Request::EndpointLabel {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        labels: labels.clone(),
    })?;
    Ok(r.generation().unwrap_or_default())
}

/// Whether an existing endpoint is what `spec` asks for, labels aside.
fn endpoint_matches(e: &EndpointInfo, s: &EndpointSpec) -> bool {
    e.kind == s.kind
        && e.interface == s.interface
        && e.mac == s.mac
        && s.port.is_none_or(|p| p == e.port)
        && s.mtu.is_none_or(|m| m == e.mtu)
        && s.ips.iter().all(|a| e.ips.contains(a))
        && s.allocate.iter().all(|f| {
            e.ips
                .iter()
                .any(|a| a.is_ipv6() == (*f == podswitch_control::proto::Family::Ipv6))
        })
        && e.ports == s.ports
}

fn apply_one(
    client: &mut Client,
    cur: &Current,
    obj: &Object,
) -> Result<(&'static str, Option<u64>)> {
    let created = |g: u64| Ok(("created", Some(g)));
    match obj {
        Object::Namespace {
            name,
            labels,
            subnet_v4,
            subnet_v6,
        } => {
            if let Some(n) = cur.namespaces.iter().find(|n| &n.name == name) {
                for (field, want, have) in [
                    ("podswitch.io/subnet-v4", subnet_v4, n.subnet_v4),
                    ("podswitch.io/subnet-v6", subnet_v6, n.subnet_v6),
                ] {
                    if let Some(w) = want
                        && Some(*w) != have
                    {
                        bail!(
                            "metadata.annotations[{field}]: namespace {name:?} exists with {}; \
                             a subnet cannot change (delete the namespace first)",
                            have.map_or_else(|| "no such subnet".to_owned(), |s| s.to_string())
                        );
                    }
                }
                if &n.labels == labels {
                    return Ok(("unchanged", None));
                }
                let r = client.call(Request::NamespaceLabel {
                    name: name.clone(),
                    labels: labels.clone(),
                })?;
                return Ok(("configured", r.generation()));
            }
            let r = client.call(Request::NamespaceCreate {
                name: name.clone(),
                labels: labels.clone(),
                subnet_v4: *subnet_v4,
                subnet_v6: *subnet_v6,
            })?;
            created(r.generation().unwrap_or_default())
        }
        Object::Vtep(v) => {
            if let Some(have) = cur.vteps.iter().find(|h| h.id == v.id) {
                if have == v {
                    return Ok(("unchanged", None));
                }
                bail!(
                    "spec: VTEP {} exists with a different spec; delete it first",
                    v.id
                );
            }
            let r = client.call(Request::VtepAdd(*v))?;
            created(r.generation().unwrap_or_default())
        }
        Object::Endpoint(s) => {
            if let Some(e) = cur
                .endpoints
                .iter()
                .find(|e| e.namespace == s.namespace && e.name == s.name)
            {
                if !endpoint_matches(e, s) {
                    bail!(
                        "spec: endpoint {}/{} exists with a different spec (only labels change \
                         in place); delete it first",
                        s.namespace,
                        s.name
                    );
                }
                if e.labels == s.labels {
                    return Ok(("unchanged", None));
                }
                return Ok((
                    "configured",
                    Some(relabel(client, &s.namespace, &s.name, &s.labels)?),
                ));
            }
            let r = client.call(Request::EndpointAdd(s.clone()))?;
            created(r.generation().unwrap_or_default())
        }
        Object::Remote(s) => {
            if let Some(r) = cur
                .remotes
                .iter()
                .find(|r| r.namespace == s.namespace && r.name == s.name)
            {
                let mut same = r.clone();
                same.labels.clone_from(&s.labels);
                if &same != s {
                    bail!(
                        "spec: remote endpoint {}/{} exists with a different spec (only labels \
                         change in place); delete it first",
                        s.namespace,
                        s.name
                    );
                }
                if r.labels == s.labels {
                    return Ok(("unchanged", None));
                }
                return Ok((
                    "configured",
                    Some(relabel(client, &s.namespace, &s.name, &s.labels)?),
                ));
            }
            let r = client.call(Request::RemoteAdd(s.clone()))?;
            created(r.generation().unwrap_or_default())
        }
        Object::Policy {
            namespace,
            name,
            text,
        } => {
            let existed = cur
                .policies
                .iter()
                .any(|(n, p)| n == namespace && p == name);
            let r = client.call(Request::PolicyApply { text: text.clone() })?;
            Ok((
                if existed { "configured" } else { "created" },
                r.generation(),
            ))
        }
    }
}

/// Applies `objects` in order; stops at the first failure, which names the object's origin.
/// Returns what was done (also on failure, in the error's context, via `done`).
pub fn apply(
    client: &mut Client,
    objects: &[(Origin, Object)],
    done: &mut Vec<Applied>,
) -> Result<()> {
    let cur = current(client).context("reading the daemon's state")?;
    for (origin, obj) in objects {
        let (action, generation) = apply_one(client, &cur, obj)
            .map_err(|e| anyhow!("{origin}: {}: {e}", obj.describe()))?;
        done.push(Applied {
            object: obj.describe(),
            action,
            generation,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &str = "\
# leading comment
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny}
spec: {podSelector: {}}
---
apiVersion: v1
kind: Namespace
metadata:
  name: web
  labels: {env: prod}
  annotations: {podswitch.io/subnet-v4: 10.1.0.0/24}
---
apiVersion: podswitch.io/v1
kind: Endpoint
metadata: {name: vm-1, namespace: web, labels: {app: db}}
spec: {interface: tap1, mac: \"02:00:00:00:01:01\", allocate: [ipv4], kind: vm}
---
apiVersion: podswitch.io/v1
kind: Vtep
spec: {id: 3, ip: 192.0.2.9, next_hop_mac: \"02:00:00:00:00:09\", vni: 100}
";

    #[test]
    fn documents_know_their_lines() {
        let docs = documents(Path::new("m.yaml"), MIXED).unwrap();
        let lines: Vec<Option<usize>> = docs.iter().map(|(o, _)| o.line).collect();
        assert_eq!(lines, [Some(2), Some(7), Some(14), Some(19)]);
        assert_eq!(docs[1].0.to_string(), "m.yaml: document 2 (line 7)");
    }

    #[test]
    fn objects_decode_and_sort_by_dependency() {
        let f = std::env::temp_dir().join(format!("psctl-unit-{}.yaml", std::process::id()));
        std::fs::write(&f, MIXED).unwrap();
        let objs = load(std::slice::from_ref(&f)).unwrap();
        let _ = std::fs::remove_file(&f);
        let names: Vec<String> = objs.iter().map(|(_, o)| o.describe()).collect();
        assert_eq!(
            names,
            [
                "namespace/web",
                "vtep/3",
                "endpoint/web/vm-1",
                "networkpolicy/default/deny"
            ]
        );
        let Object::Namespace {
            subnet_v4, labels, ..
        } = &objs[0].1
        else {
            panic!("{:?}", objs[0])
        };
        assert_eq!(subnet_v4.unwrap().to_string(), "10.1.0.0/24");
        assert_eq!(labels["env"], "prod");
        let Object::Endpoint(e) = &objs[2].1 else {
            panic!()
        };
        assert_eq!(e.labels["app"], "db");
        assert_eq!(e.kind, podswitch_control::proto::Kind::Vm);
        let Object::Policy { text, .. } = &objs[3].1 else {
            panic!()
        };
        assert!(text.contains(r#""namespace":"default""#), "{text}");
    }

    #[test]
    fn decode_errors_name_the_field() {
        let cases = [
            (json!({"kind": "Namespace"}), "apiVersion"),
            (
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {}}),
                "metadata.name",
            ),
            (
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a",
                    "annotations": {"podswitch.io/subnet-v4": "10.1.0.1/24"}}}),
                "subnet-v4",
            ),
            (json!({"apiVersion": "v1", "kind": "Pod"}), "kind"),
            (
                json!({"apiVersion": "podswitch.io/v1", "kind": "Endpoint",
                    "metadata": {"name": "a", "namespace": "b"},
                    "spec": {"interface": "x", "mac": "zz", "allocate": ["ipv4"]}}),
                "spec",
            ),
            (
                json!({"apiVersion": "podswitch.io/v1", "kind": "Endpoint",
                    "metadata": {"name": "a", "namespace": "b"},
                    "spec": {"interface": "x", "mac": "02:00:00:00:00:01", "macc": 1}}),
                "unknown field `macc`",
            ),
            (
                json!({"apiVersion": "podswitch.io/v1", "kind": "Endpoint",
                    "metadata": {"name": "a"}, "spec": {}}),
                "metadata.namespace",
            ),
        ];
        for (v, want) in cases {
            let e = decode(&v).unwrap_err().to_string();
            assert!(e.contains(want), "{v}: {e}");
        }
    }

    #[test]
    fn json_arrays_and_lists_expand() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}},
            {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"b"}}]}"#;
        let docs = documents(Path::new("l.json"), text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].0.to_string(), "l.json: document 1, items[1]");
        let bad = documents(Path::new("b.yaml"), "a: 1\n---\nb: [\n").unwrap_err();
        assert!(bad.to_string().contains("document 2 (line 2)"), "{bad}");
    }
}
