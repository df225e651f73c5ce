//! Framing: every message is a 4-byte big-endian length followed by that many bytes of JSON.
//!
//! [`Decoder`] accumulates bytes as they arrive (partial reads are the normal case on a
//! non-blocking socket) and yields whole frames; a length above the bound is reported once as
//! [`FrameError::TooLarge`] before any of the body is buffered, so a hostile length cannot make
//! us allocate. [`decode_request`] turns a frame into a request, with an error naming what was
//! wrong (bad JSON, unknown version, unknown request). Pure; a decoder belongs to one connection.

use crate::error::{ControlError, ErrorCode};
use crate::proto::{RequestEnvelope, ResponseEnvelope, VERSION};

/// Default bound on a frame's body (4 MiB).
pub const MAX_FRAME: usize = 4 << 20;

/// Length of the prefix.
pub const HEADER: usize = 4;

/// A framing failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The announced length exceeds the bound.
    TooLarge { len: usize, max: usize },
}

/// Appends a frame holding `body` to `out`. Bodies longer than `u32::MAX` cannot be framed;
/// callers bound replies far below that.
pub fn encode_into(body: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
}

/// A frame holding `body`.
pub fn encode(body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + body.len());
    encode_into(body, &mut v);
    v
}

/// Incremental frame decoder.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed as frames (compacted lazily).
    start: usize,
    max: usize,
}

impl Decoder {
    /// A decoder refusing bodies above `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max,
        }
    }

    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether a whole frame (or an oversize length) is buffered, i.e. [`Decoder::next_frame`]
    /// would not return `Ok(None)`.
    pub fn has_frame(&self) -> bool {
        let avail = &self.buf[self.start..];
        avail.first_chunk::<HEADER>().is_some_and(|h| {
            let len = u32::from_be_bytes(*h) as usize;
            len > self.max || avail.len() >= HEADER + len
        })
    }

    /// The next whole frame's body, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let avail = &self.buf[self.start..];
        let Some(head) = avail.first_chunk::<HEADER>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*head) as usize;
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        if avail.len() < HEADER + len {
            return Ok(None);
        }
        let body = avail[HEADER..HEADER + len].to_vec();
        self.start += HEADER + len;
        // Compact once the consumed prefix dominates, keeping pushes amortised O(1).
        if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(body))
    }
}

/// Decodes a request frame. On failure returns the request id when it could be read, so the
/// error response can carry it.
pub fn decode_request(body: &[u8]) -> Result<RequestEnvelope, (Option<u64>, ControlError)> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        (
            None,
            ControlError::new(ErrorCode::BadFrame, format!("not JSON: {e}")),
        )
    })?;
    let Some(obj) = value.as_object() else {
        return Err((
            None,
            ControlError::new(ErrorCode::BadFrame, "the frame is not a JSON object"),
        ));
    };
    let id = obj.get("id").and_then(serde_json::Value::as_u64);
    if id.is_none() {
        return Err((
            None,
            ControlError::field(
                ErrorCode::BadFrame,
                "id",
                "missing or not an unsigned integer",
            ),
        ));
    }
    match obj.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err((
                id,
                ControlError::field(
                    ErrorCode::UnsupportedVersion,
                    "version",
                    format!("version {v} is not supported (this server speaks {VERSION})"),
                ),
            ));
        }
        None => {
            return Err((
                id,
                ControlError::field(
                    ErrorCode::UnsupportedVersion,
                    "version",
                    "missing or not an unsigned integer",
                ),
            ));
        }
    }
    serde_json::from_value::<RequestEnvelope>(value).map_err(|e| {
        (
            id,
            ControlError::field(ErrorCode::BadRequest, "request", e.to_string()),
        )
    })
}

/// Encodes a request as a frame body.
pub fn encode_request(req: &RequestEnvelope) -> Vec<u8> {
    // Our request types serialise infallibly (string map keys, no I/O).
    serde_json::to_vec(req).unwrap_or_default()
}

/// Encodes a response as a frame body.
pub fn encode_response(resp: &ResponseEnvelope) -> Vec<u8> {
    // Serialising our own types into a Vec cannot fail (no maps with non-string keys, no I/O).
    serde_json::to_vec(resp).unwrap_or_else(|e| {
        format!(
            r#"{{"version":{VERSION},"id":null,"error":{{"code":"internal","message":"encode: {e}"}}}}"#
        )
        .into_bytes()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Request;

    #[test]
    fn round_trip_split_anywhere() {
        let a = encode(br#"{"a":1}"#);
        let b = encode(b"");
        let c = encode(&[7u8; 300]);
        let all: Vec<u8> = [a, b, c].concat();
        for split in 0..all.len() {
            let mut d = Decoder::new(1000);
            d.push(&all[..split]);
            let mut got = Vec::new();
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            d.push(&all[split..]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            assert_eq!(got.len(), 3, "split at {split}");
            assert_eq!(got[0], br#"{"a":1}"#);
            assert!(got[1].is_empty());
            assert_eq!(got[2], vec![7u8; 300]);
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn oversize_is_refused_before_buffering() {
        let mut d = Decoder::new(16);
        d.push(&17u32.to_be_bytes());
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLarge { len: 17, max: 16 })
        );
        let mut d = Decoder::new(16);
        d.push(&16u32.to_be_bytes());
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&[0; 16]);
        assert_eq!(d.next_frame().unwrap().unwrap().len(), 16);
    }

    #[test]
    fn decode_errors_are_typed() {
        let e = decode_request(b"{not json").unwrap_err();
        assert_eq!((e.0, e.1.code), (None, ErrorCode::BadFrame));
        let e = decode_request(b"[1]").unwrap_err();
        assert_eq!(e.1.code, ErrorCode::BadFrame);
        let e = decode_request(br#"{"version":1,"request":{"type":"health"}}"#).unwrap_err();
        assert_eq!(e.1.code, ErrorCode::BadFrame);
        assert_eq!(e.1.field.as_deref(), Some("id"));
        let e = decode_request(br#"{"version":2,"id":5,"request":{"type":"health"}}"#).unwrap_err();
        assert_eq!((e.0, e.1.code), (Some(5), ErrorCode::UnsupportedVersion));
        let e = decode_request(br#"{"id":5,"request":{"type":"health"}}"#).unwrap_err();
        assert_eq!(e.1.code, ErrorCode::UnsupportedVersion);
        let e = decode_request(br#"{"version":1,"id":6,"request":{"type":"launch"}}"#).unwrap_err();
        assert_eq!((e.0, e.1.code), (Some(6), ErrorCode::BadRequest));
        // A typo in a member is an error, not silently ignored.
        let e = decode_request(
            br#"{"version":1,"id":7,"request":{"type":"namespace_delete","nmae":"a"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.1.code, ErrorCode::BadRequest);
        let ok = decode_request(br#"{"version":1,"id":8,"request":{"type":"health"}}"#).unwrap();
        assert_eq!(ok.id, 8);
        assert_eq!(ok.request, Request::Health);
    }
}
