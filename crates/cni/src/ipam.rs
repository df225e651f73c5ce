//! Delegation to an IPAM plugin (CNI spec 1.0.0, "Delegated plugins"): the plugin named by
//! `ipam.type` is looked up in `CNI_PATH` and run with our environment (same `CNI_COMMAND` and
//! container) and exactly the configuration we were given on stdin. Its stdout is its result or
//! its error object; its error code is passed through unchanged.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::config::NetConf;
use crate::env::{self, Env};
use crate::error::{CniError, Code};
use crate::result::CniResult;

/// Finds `plugin` in `CNI_PATH`.
pub fn find(plugin: &str, path: &[PathBuf]) -> Result<PathBuf, CniError> {
    path.iter()
        .map(|d| d.join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                Code::Ipam,
                format!("IPAM plugin {plugin:?} not found in CNI_PATH"),
            )
            .details(format!("searched {path:?}"))
        })
}

/// Decodes a delegate's error object (`{"code":N,"msg":...}`), if that is what `out` is.
pub fn error_object(out: &[u8]) -> Option<CniError> {
    let v: serde_json::Value = serde_json::from_slice(out).ok()?;
    let code = u32::try_from(v.get("code")?.as_u64()?).ok()?;
    let msg = v.get("msg").and_then(|m| m.as_str()).unwrap_or_default();
    let details = v
        .get("details")
        .and_then(|m| m.as_str())
        .unwrap_or_default();
    Some(CniError::new(Code::Delegated(code), format!("IPAM: {msg}")).details(details))
}

/// `CNI_ARGS` for the delegate: ours, with `IgnoreUnknown=1` added when absent. The Go plugins
/// (host-local, ...) refuse keys they do not know (`K8S_POD_NAME`, our `LABELS`) unless told to
/// ignore them; Kubernetes runtimes always add it, other runtimes may not.
pub fn delegate_args(args: &std::collections::BTreeMap<String, String>) -> String {
    let mut parts: Vec<String> = Vec::with_capacity(args.len() + 1);
    if !args.keys().any(|k| k.eq_ignore_ascii_case("IgnoreUnknown")) {
        parts.push("IgnoreUnknown=1".to_owned());
    }
    parts.extend(args.iter().map(|(k, v)| format!("{k}={v}")));
    parts.join(";")
}

/// Runs the IPAM plugin for `command`; for ADD, returns its result.
pub fn delegate(
    plugin: &str,
    command: env::Command,
    env: &Env,
    conf: &NetConf,
) -> Result<Option<CniResult>, CniError> {
    let exe = find(plugin, &env.path)?;
    let fail =
        |m: &str, e: String| CniError::new(Code::Ipam, format!("IPAM {plugin}: {m}")).details(e);
    let mut child = Command::new(&exe)
        .env("CNI_COMMAND", command.as_str())
        .env("CNI_ARGS", delegate_args(&env.args))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail("cannot run", e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&conf.raw)
            .map_err(|e| fail("cannot write its stdin", e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail("did not finish", e.to_string()))?;
    if !out.status.success() {
        return Err(error_object(&out.stdout).unwrap_or_else(|| {
            fail(
                "failed",
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        }));
    }
    if command != env::Command::Add {
        return Ok(None);
    }
    let r: CniResult = serde_json::from_slice(&out.stdout).map_err(|e| {
        CniError::new(
            Code::Decode,
            format!("IPAM {plugin}: result is not a CNI result"),
        )
        .details(e.to_string())
    })?;
    if r.ips.is_empty() {
        return Err(fail("returned no address", String::new()));
    }
    Ok(Some(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegate_errors_keep_their_code() {
        let e = error_object(br#"{"cniVersion":"1.0.0","code":18,"msg":"no IP addresses available","details":"range full"}"#).unwrap();
        assert_eq!(e.code, Code::Delegated(18));
        assert_eq!(e.code.value(), 18);
        assert!(e.msg.contains("no IP addresses available"));
        assert_eq!(e.details, "range full");
        assert!(error_object(b"plain text").is_none());
        assert!(error_object(br#"{"code":-1}"#).is_none());
    }

    #[test]
    fn delegates_are_told_to_ignore_our_args() {
        let args = crate::env::parse_args("K8S_POD_NAME=a;LABELS=x=y").unwrap();
        assert_eq!(
            delegate_args(&args),
            "IgnoreUnknown=1;K8S_POD_NAME=a;LABELS=x=y"
        );
        let args = crate::env::parse_args("IgnoreUnknown=true;K8S_POD_NAME=a").unwrap();
        assert_eq!(delegate_args(&args), "IgnoreUnknown=true;K8S_POD_NAME=a");
        assert_eq!(
            delegate_args(&std::collections::BTreeMap::new()),
            "IgnoreUnknown=1"
        );
    }

    #[test]
    fn missing_plugins_are_reported() {
        let e = find("no-such-ipam-plugin", &[PathBuf::from("/nonexistent")]).unwrap_err();
        assert_eq!(e.code, Code::Ipam);
        assert!(e.msg.contains("no-such-ipam-plugin"));
    }
}
