//! The control plane's error: a machine-readable [`ErrorCode`], a message for humans and, when one
//! field of the request is at fault, its path (`request.ips[1]`, `spec.ingress[0].ports[0].port`).
//! It is what every failed request answers with (the `error` member of a response) and what the
//! library functions return. Plain data: `Send + Sync`, cheap to clone.

use serde::{Deserialize, Serialize};

/// What kind of failure; stable names on the wire (`snake_case`), clients branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a JSON object of the envelope's shape (bad length, bad JSON, no `id`).
    BadFrame,
    /// The frame's length prefix exceeds the size bound; the connection is closed after the reply.
    TooLarge,
    /// The envelope's `version` is not one this server speaks.
    UnsupportedVersion,
    /// The request is not one of the documented kinds, or a member has the wrong type.
    BadRequest,
    /// A field's value is invalid (bad name, bad address, invalid policy, ...); `field` says which.
    Invalid,
    /// The object to change or delete does not exist.
    NotFound,
    /// The request conflicts with existing state: duplicate name, address, port or interface;
    /// a namespace that still holds endpoints.
    Conflict,
    /// The namespace's subnet has no free address left.
    Exhausted,
    /// The peer's uid/gid is not on the allowed list.
    PermissionDenied,
    /// Too many connections; retry later.
    Busy,
    /// The daemon does not provide this read (no dataplane attached).
    Unsupported,
    /// `wait` timed out before every worker realised the generation.
    Timeout,
    /// The desired state could not be written to disk; nothing was changed.
    Persist,
    /// A bug: the compiled state was refused. Reported rather than crashing.
    Internal,
}

impl ErrorCode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadFrame => "bad_frame",
            Self::TooLarge => "too_large",
            Self::UnsupportedVersion => "unsupported_version",
            Self::BadRequest => "bad_request",
            Self::Invalid => "invalid",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Exhausted => "exhausted",
            Self::PermissionDenied => "permission_denied",
            Self::Busy => "busy",
            Self::Unsupported => "unsupported",
            Self::Timeout => "timeout",
            Self::Persist => "persist",
            Self::Internal => "internal",
        }
    }
}

/// A failed request (or library call): code, message, optional field path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}: {message}{}", code.as_str(), field.as_ref().map(|f| format!(" (field {f})")).unwrap_or_default())]
pub struct ControlError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ControlError {
    /// An error without a field.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// An error about one field.
    pub fn field(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// `Invalid` about one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::field(ErrorCode::Invalid, field, message)
    }

    /// `NotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// `Conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
}
