//! Reading Kubernetes objects from YAML or JSON text: one or many documents (`---`-separated YAML,
//! or a stream of JSON values), and `List` objects as `kubectl get -o yaml` prints them. v1
//! `Namespace`, v1 `Pod` and networking.k8s.io/v1 `NetworkPolicy` are decoded with k8s-openapi's
//! types; any other kind is returned as [`Object::Other`] so callers can say what they skipped.
//! Errors, never panics, on any input (the policy fuzz target holds us to it). Pure functions.

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::Deserialize;
use serde_json::Value;

use crate::engine::PolicyEngine;
use crate::error::{EngineError, LoadError};
use crate::spec::{Endpoint, namespace_from_k8s};

/// One decoded object.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Namespace(Box<Namespace>),
    Pod(Box<Pod>),
    NetworkPolicy(Box<NetworkPolicy>),
    /// A kind this crate does not use.
    Other {
        api_version: String,
        kind: String,
    },
}

/// Decodes every object of a YAML or JSON text.
pub fn parse_objects(text: &str) -> Result<Vec<Object>, LoadError> {
    let mut values = Vec::new();
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        for (i, v) in serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .enumerate()
        {
            values.push(v.map_err(|e| LoadError::Syntax {
                document: i,
                message: e.to_string(),
            })?);
        }
    } else {
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            values.push(Value::deserialize(doc).map_err(|e| LoadError::Syntax {
                document: i,
                message: e.to_string(),
            })?);
        }
    }
    let mut out = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        decode(v, i, &mut out, 0)?;
    }
    Ok(out)
}

fn decode(v: Value, document: usize, out: &mut Vec<Object>, depth: u32) -> Result<(), LoadError> {
    let err = |message: String| LoadError::Syntax { document, message };
    match v {
        // Empty documents (a trailing `---`) carry nothing.
        Value::Null => return Ok(()),
        // A bare JSON array of objects.
        Value::Array(items) if depth == 0 => {
            for item in items {
                decode(item, document, out, depth + 1)?;
            }
            return Ok(());
        }
        Value::Object(_) => {}
        _ => return Err(err("expected a Kubernetes object (a mapping)".into())),
    }
    let api_version = v
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let kind = v
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let what = |e: serde_json::Error| err(format!("{api_version} {kind}: {e}"));
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => out.push(Object::Namespace(
            serde_json::from_value(v.clone()).map_err(what)?,
        )),
        ("v1", "Pod") => out.push(Object::Pod(
            serde_json::from_value(v.clone()).map_err(what)?,
        )),
        ("networking.k8s.io/v1", "NetworkPolicy") => out.push(Object::NetworkPolicy(
            serde_json::from_value(v.clone()).map_err(what)?,
        )),
        (_, k) if k == "List" || k.ends_with("List") => {
            // Lists nest only one level in practice; the bound keeps hostile input shallow.
            if depth > 4 {
                return Err(err("List nested too deeply".into()));
            }
            let items = match v.get("items") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items.clone(),
                Some(_) => return Err(err(format!("{kind}: items: expected a list"))),
            };
            for item in items {
                decode(item, document, out, depth + 1)?;
            }
        }
        ("", _) | (_, "") => {
            return Err(err("object without apiVersion and kind".into()));
        }
        _ => out.push(Object::Other { api_version, kind }),
    }
    Ok(())
}

/// What [`apply`] installed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub namespaces: usize,
    pub pods: usize,
    pub policies: usize,
    pub skipped: usize,
}

/// Installs objects into an engine: namespaces, then pods, then policies (order-independent in
/// outcome; this order only avoids needless re-evaluation). Stops at the first invalid object.
pub fn apply(engine: &mut PolicyEngine, objects: &[Object]) -> Result<Applied, EngineError> {
    let mut a = Applied::default();
    for o in objects {
        if let Object::Namespace(ns) = o {
            let (name, labels) = namespace_from_k8s(ns)?;
            engine.upsert_namespace(&name, labels);
            a.namespaces += 1;
        }
    }
    for o in objects {
        if let Object::Pod(p) = o {
            // NetworkPolicy does not apply to host-network pods (they share the node's address),
            // and finished pods no longer hold theirs: both are left out, as upstream does.
            let host_network = p.spec.as_ref().and_then(|s| s.host_network) == Some(true);
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            if host_network || matches!(phase, Some("Succeeded" | "Failed")) {
                a.skipped += 1;
                continue;
            }
            engine.upsert_endpoint(&Endpoint::from_pod(p)?)?;
            a.pods += 1;
        }
    }
    for o in objects {
        match o {
            Object::NetworkPolicy(np) => {
                engine.upsert_policy(np)?;
                a.policies += 1;
            }
            Object::Other { .. } => a.skipped += 1,
            _ => {}
        }
    }
    Ok(a)
}
