//! The runtime's invocation: the `CNI_*` environment variables (CNI spec 1.0.0, "Parameters"),
//! parsed and validated once, with the spec's rules: `CNI_CONTAINERID` is alphanumeric plus
//! `_ . -` starting with an alphanumeric, `CNI_IFNAME` is a valid Linux interface name,
//! `CNI_NETNS` is required for ADD and CHECK (DEL may omit it: the namespace may be gone),
//! `CNI_ARGS` is `KEY=VALUE` pairs separated by `;`. Pure: the variables come in through a lookup
//! function, so tests need no process environment.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{CniError, Code};

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
}

impl Command {
    /// The wire name (what `CNI_COMMAND` holds).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Version => "VERSION",
        }
    }
}

/// A validated invocation. For VERSION only `command` is meaningful.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    /// The container's network namespace path (absent only for DEL and VERSION).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// `CNI_ARGS`, e.g. `K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `LABELS`.
    pub args: BTreeMap<String, String>,
    /// `CNI_PATH`: where delegated plugins (IPAM) are looked up.
    pub path: Vec<PathBuf>,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(Code::InvalidEnv, msg)
}

/// Whether `id` is a valid container id (CNI spec 1.0.0, "Parameters": "alphanumeric,
/// underscore, dot and hyphen", starting with an alphanumeric).
pub fn valid_container_id(id: &str) -> bool {
    id.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Whether `name` is a valid Linux interface name (as the kernel's `dev_valid_name`): 1–15
/// bytes, not `.` or `..`, no `/`, `:` or whitespace.
pub fn valid_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|c| c == b'/' || c == b':' || c.is_ascii_whitespace() || c == 0 || !c.is_ascii())
}

/// Parses `CNI_ARGS` (`K=V;K2=V2`, empty segments ignored).
pub fn parse_args(s: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut out = BTreeMap::new();
    for part in s.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| invalid(format!("CNI_ARGS: {part:?} is not KEY=VALUE")))?;
        if k.is_empty() {
            return Err(invalid(format!("CNI_ARGS: {part:?} has an empty key")));
        }
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

impl Env {
    /// Reads the variables through `get` (`std::env::var` in the binary).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some(other) => {
                return Err(invalid(format!(
                    "CNI_COMMAND {other:?}: expected ADD, DEL, CHECK or VERSION"
                )));
            }
            None => return Err(invalid("CNI_COMMAND is not set")),
        };
        let mut env = Self {
            command,
            container_id: String::new(),
            netns: None,
            ifname: String::new(),
            args: BTreeMap::new(),
            path: Vec::new(),
        };
        if command == Command::Version {
            return Ok(env);
        }
        let required = |name: &str| {
            get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
                invalid(format!("{name} is not set ({} needs it)", command.as_str()))
            })
        };
        env.container_id = required("CNI_CONTAINERID")?;
        if !valid_container_id(&env.container_id) {
            return Err(invalid(format!(
                "CNI_CONTAINERID {:?}: must be alphanumeric, '_', '.' or '-', starting with an alphanumeric",
                env.container_id
            )));
        }
        env.ifname = required("CNI_IFNAME")?;
        if !valid_ifname(&env.ifname) {
            return Err(invalid(format!(
                "CNI_IFNAME {:?}: not a valid interface name (1-15 bytes, no '/', ':' or whitespace)",
                env.ifname
            )));
        }
        env.netns = match command {
            Command::Del => get("CNI_NETNS")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            _ => Some(PathBuf::from(required("CNI_NETNS")?)),
        };
        env.args = parse_args(&get("CNI_ARGS").unwrap_or_default())?;
        env.path = get("CNI_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const ADD: [(&str, &str); 6] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123_x.y-z"),
        ("CNI_NETNS", "/var/run/netns/test"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=web-0;;LABELS=app=web,tier=fe",
        ),
        ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
    ];

    #[test]
    fn add_parses_every_variable() {
        let e = Env::from_lookup(lookup(&ADD)).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.container_id, "abc123_x.y-z");
        assert_eq!(e.netns, Some(PathBuf::from("/var/run/netns/test")));
        assert_eq!(e.ifname, "eth0");
        assert_eq!(e.args["K8S_POD_NAMESPACE"], "web");
        assert_eq!(e.args["K8S_POD_NAME"], "web-0");
        assert_eq!(e.args["LABELS"], "app=web,tier=fe");
        assert_eq!(e.args.len(), 4);
        assert_eq!(
            e.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
    }

    #[test]
    fn version_needs_nothing_else() {
        let e = Env::from_lookup(lookup(&[("CNI_COMMAND", "VERSION")])).unwrap();
        assert_eq!(e.command, Command::Version);
    }

    #[test]
    fn del_may_omit_the_netns_but_add_and_check_may_not() {
        let mut vars: Vec<(&str, &str)> = ADD
            .iter()
            .copied()
            .filter(|(k, _)| *k != "CNI_NETNS")
            .collect();
        vars[0] = ("CNI_COMMAND", "DEL");
        let e = Env::from_lookup(lookup(&vars)).unwrap();
        assert_eq!(e.netns, None);
        for cmd in ["ADD", "CHECK"] {
            vars[0] = ("CNI_COMMAND", cmd);
            let err = Env::from_lookup(lookup(&vars)).unwrap_err();
            assert_eq!(err.code, Code::InvalidEnv);
            assert!(err.msg.contains("CNI_NETNS"), "{err}");
        }
    }

    #[test]
    fn bad_variables_are_code_4_and_name_the_variable() {
        let cases: [(&str, &str, &str); 7] = [
            ("CNI_COMMAND", "ATTACH", "CNI_COMMAND"),
            ("CNI_CONTAINERID", "", "CNI_CONTAINERID"),
            ("CNI_CONTAINERID", "-leading", "CNI_CONTAINERID"),
            ("CNI_CONTAINERID", "has space", "CNI_CONTAINERID"),
            ("CNI_IFNAME", "averyveryverylongname", "CNI_IFNAME"),
            ("CNI_IFNAME", "eth/0", "CNI_IFNAME"),
            ("CNI_ARGS", "K8S_POD_NAME", "CNI_ARGS"),
        ];
        for (var, value, named) in cases {
            let vars: Vec<(&str, &str)> = ADD
                .iter()
                .map(|&(k, v)| if k == var { (k, value) } else { (k, v) })
                .collect();
            let err = Env::from_lookup(lookup(&vars)).unwrap_err();
            assert_eq!(err.code, Code::InvalidEnv, "{var}={value}");
            assert!(err.msg.contains(named), "{var}={value}: {err}");
        }
        let err = Env::from_lookup(lookup(&[])).unwrap_err();
        assert_eq!(err.code, Code::InvalidEnv);
    }

    #[test]
    fn interface_names_follow_the_kernel_rule() {
        assert!(valid_ifname("eth0"));
        assert!(valid_ifname("a23456789012345"));
        assert!(!valid_ifname("a234567890123456"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname(".."));
        assert!(!valid_ifname("eth:0"));
        assert!(valid_container_id("0"));
        assert!(!valid_container_id("_x"));
    }
}
