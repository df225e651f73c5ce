//! The plugin's one error type: a CNI error code, a message and details, printed as the CNI
//! error object on stdout (CNI spec 1.0.0, "Error"). Codes 1–99 are the spec's well-known codes;
//! 100 and up are ours and documented on [`Code`]. Plain data, `Send + Sync`.

use serde::Serialize;

/// The error codes this plugin returns (CNI spec 1.0.0, "Error": codes 0–99 are reserved for the
/// spec's well-known errors, 100+ are plugin-specific).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 1: the configuration's `cniVersion` is not one we support.
    IncompatibleVersion,
    /// 3: the container's network namespace does not exist.
    UnknownContainer,
    /// 4: a required `CNI_*` variable is missing or malformed.
    InvalidEnv,
    /// 5: an I/O failure (stdin unreadable).
    Io,
    /// 6: stdin (or a delegate's stdout) is not the JSON object expected.
    Decode,
    /// 7: the network configuration is invalid (missing or wrong field).
    InvalidConfig,
    /// 11: a transient condition (the daemon is down or busy); the runtime should retry.
    TryAgainLater,
    /// 100: creating, configuring or deleting the veth pair failed.
    Link,
    /// 101: the podswitch daemon refused the request (`details` holds its error).
    Control,
    /// 102: the delegated IPAM plugin could not be run or returned garbage.
    Ipam,
    /// 103: CHECK found the container's network differs from `prevResult`.
    CheckFailed,
    /// A code passed through from a delegated IPAM plugin's own error object.
    Delegated(u32),
}

impl Code {
    /// The numeric code on the wire.
    pub fn value(self) -> u32 {
        match self {
            Self::IncompatibleVersion => 1,
            Self::UnknownContainer => 3,
            Self::InvalidEnv => 4,
            Self::Io => 5,
            Self::Decode => 6,
            Self::InvalidConfig => 7,
            Self::TryAgainLater => 11,
            Self::Link => 100,
            Self::Control => 101,
            Self::Ipam => 102,
            Self::CheckFailed => 103,
            Self::Delegated(c) => c,
        }
    }
}

/// A failed invocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

impl CniError {
    /// An error without details.
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Adds details (the underlying cause, command output).
    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The CNI error object for `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_value(Wire {
            cni_version,
            code: self.code.value(),
            msg: &self.msg,
            details: &self.details,
        })
        .unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_spec_members() {
        let e = CniError::new(Code::InvalidEnv, "CNI_IFNAME is not set").details("ADD needs it");
        let v = e.to_json("1.0.0");
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["code"], 4);
        assert_eq!(v["msg"], "CNI_IFNAME is not set");
        assert_eq!(v["details"], "ADD needs it");
        let v = CniError::new(Code::TryAgainLater, "busy").to_json("0.4.0");
        assert_eq!(v["code"], 11);
        assert!(v.get("details").is_none(), "empty details are omitted: {v}");
    }

    #[test]
    fn codes_are_the_spec_values() {
        let all = [
            (Code::IncompatibleVersion, 1),
            (Code::UnknownContainer, 3),
            (Code::InvalidEnv, 4),
            (Code::Io, 5),
            (Code::Decode, 6),
            (Code::InvalidConfig, 7),
            (Code::TryAgainLater, 11),
            (Code::Link, 100),
            (Code::Control, 101),
            (Code::Ipam, 102),
            (Code::CheckFailed, 103),
            (Code::Delegated(42), 42),
        ];
        for (c, v) in all {
            assert_eq!(c.value(), v, "{c:?}");
        }
    }
}
