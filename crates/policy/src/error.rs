//! Control-plane errors of the policy crate. A [`PolicyError`] names the object (`Kind ns/name`) and
//! the field path (`spec.ingress[0].ports[1].endPort`) the way the Kubernetes API server's
//! validation does, so a user can find the offending line. Nothing here is on the per-packet path.
//! The types are plain data: `Send + Sync`, cheap to clone.

use core::fmt;

/// Why a field was rejected; mirrors the API server's `field.Invalid` / `field.Required` /
/// `field.NotSupported` families (k8s.io/apimachinery/pkg/util/validation/field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// A CIDR that does not parse, or has host bits set (the API server rejects `10.0.0.1/8`).
    BadCidr(String),
    /// An `except` entry outside its `cidr`, of the other address family, or not strictly smaller.
    ExceptOutsideCidr(String),
    /// `endPort` given without `port`.
    EndPortWithoutPort,
    /// `endPort` given with a named `port`.
    EndPortWithNamedPort,
    /// `endPort` smaller than `port`.
    EndPortBelowPort { port: i32, end_port: i32 },
    /// A port number outside 1..=65535.
    PortOutOfRange(i32),
    /// A named port that is not an IANA_SVC_NAME (RFC 6335 §5.1: 1-15 chars, a-z0-9 and '-',
    /// at least one letter, no leading, trailing or doubled '-').
    BadPortName(String),
    /// A protocol other than TCP, UDP or SCTP (the API is case-sensitive).
    UnsupportedProtocol(String),
    /// A label-selector operator other than In, NotIn, Exists, DoesNotExist.
    UnsupportedOperator(String),
    /// `In`/`NotIn` with no values.
    ValuesRequired,
    /// `Exists`/`DoesNotExist` with values.
    ValuesForbidden,
    /// A policyType other than Ingress or Egress, or a duplicate.
    BadPolicyType(String),
    /// A peer with no field set.
    EmptyPeer,
    /// A peer with ipBlock together with a selector.
    IpBlockWithSelector,
    /// A required field is missing (`metadata.name`).
    Required,
    /// An address that does not parse (pod IPs).
    BadAddress(String),
    /// A label key or value that is not a valid Kubernetes label.
    BadLabel(String),
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadCidr(c) => write!(f, "Invalid value: {c:?}: must be a valid CIDR"),
            Self::ExceptOutsideCidr(c) => {
                write!(f, "Invalid value: {c:?}: must be a strict subset of `cidr`")
            }
            Self::EndPortWithoutPort => {
                f.write_str("Required value: must be specified when `endPort` is specified")
            }
            Self::EndPortWithNamedPort => {
                f.write_str("Invalid value: may not be specified when `port` is non-numeric")
            }
            Self::EndPortBelowPort { port, end_port } => write!(
                f,
                "Invalid value: {end_port}: must be greater than or equal to `port` ({port})"
            ),
            Self::PortOutOfRange(p) => {
                write!(
                    f,
                    "Invalid value: {p}: must be between 1 and 65535, inclusive"
                )
            }
            Self::BadPortName(n) => write!(f, "Invalid value: {n:?}: must be an IANA_SVC_NAME"),
            Self::UnsupportedProtocol(p) => write!(
                f,
                "Unsupported value: {p:?}: supported values: \"SCTP\", \"TCP\", \"UDP\""
            ),
            Self::UnsupportedOperator(o) => write!(
                f,
                "Unsupported value: {o:?}: supported values: \"DoesNotExist\", \"Exists\", \"In\", \"NotIn\""
            ),
            Self::ValuesRequired => {
                f.write_str("Required value: must be specified when `operator` is 'In' or 'NotIn'")
            }
            Self::ValuesForbidden => f.write_str(
                "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            Self::BadPolicyType(t) => write!(
                f,
                "Unsupported value: {t:?}: supported values: \"Egress\", \"Ingress\" (once each)"
            ),
            Self::EmptyPeer => f.write_str("Required value: must specify a peer"),
            Self::IpBlockWithSelector => {
                f.write_str("Forbidden: may not specify both ipBlock and another peer")
            }
            Self::Required => f.write_str("Required value"),
            Self::BadAddress(a) => write!(f, "Invalid value: {a:?}: must be a valid IP address"),
            Self::BadLabel(l) => write!(f, "Invalid value: {l:?}: not a valid label key or value"),
        }
    }
}

/// A rejected object: which object, which field, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {field}: {reason}")]
pub struct PolicyError {
    /// `NetworkPolicy ns/name`, `Pod ns/name`, ...
    pub object: String,
    /// The JSON path of the field, as the API server prints it.
    pub field: String,
    pub reason: Invalid,
}

/// Errors of [`crate::PolicyEngine`] updates that are not about a field of a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Invalid(#[from] PolicyError),
    /// Two endpoints may not share an address: verdicts are looked up by address.
    #[error("address {addr} of {endpoint} is already used by {owner}")]
    AddressInUse {
        addr: core::net::IpAddr,
        endpoint: String,
        owner: String,
    },
}

/// Errors reading Kubernetes objects from YAML or JSON text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The text is not YAML/JSON, or a document is not an object of the kind it claims.
    #[error("document {document}: {message}")]
    Syntax { document: usize, message: String },
}
