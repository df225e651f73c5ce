//! A blocking client over std's `UnixStream`, for `podswitchctl`, the CNI plugin and tests.
//!
//! One request at a time: [`Client::call`] sends a request with the next id and reads until the
//! response with that id (the server answers a connection's requests in order). Typed helpers
//! wrap the common calls. A `Client` is one connection; use one per thread.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::error::ControlError;
use crate::frame::{self, MAX_FRAME};
use crate::proto::{
    EndpointSpec, Health, Labels, Reply, Request, RequestEnvelope, ResponseEnvelope, VERSION,
};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed (connect, read, write, timeout).
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
    /// The server's bytes are not a valid response.
    #[error("control protocol: {0}")]
    Protocol(String),
    /// The server answered with an error.
    #[error("{0}")]
    Server(ControlError),
}

impl ClientError {
    /// The server's error, if that is what this is.
    pub fn server(&self) -> Option<&ControlError> {
        match self {
            Self::Server(e) => Some(e),
            _ => None,
        }
    }
}

/// A connection to the control server.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    next_id: u64,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        Ok(Self {
            stream: UnixStream::connect(path)?,
            next_id: 1,
        })
    }

    /// Sets a read and write timeout (`None`: block forever).
    pub fn set_timeout(&self, t: Option<Duration>) -> Result<(), ClientError> {
        self.stream.set_read_timeout(t)?;
        self.stream.set_write_timeout(t)?;
        Ok(())
    }

    /// The underlying stream (tests write malformed bytes through it).
    pub fn stream(&mut self) -> &mut UnixStream {
        &mut self.stream
    }

    /// Sends `request` and returns the reply.
    pub fn call(&mut self, request: Request) -> Result<Reply, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let sent = self.send(&RequestEnvelope {
            version: VERSION,
            id,
            request,
        });
        if let Err(e) = sent {
            // A server that refuses a connection (e.g. `busy` at its connection limit) answers
            // and closes before it reads our request, so the write can fail with EPIPE or
            // ECONNRESET while its reason is already waiting to be read: prefer the reason.
            return match self.recv() {
                Ok(resp) => match resp.into_result() {
                    Err(server) => Err(ClientError::Server(server)),
                    Ok(_) => Err(e),
                },
                Err(_) => Err(e),
            };
        }
        let resp = self.recv()?;
        match resp.id {
            Some(got) if got == id => resp.into_result().map_err(ClientError::Server),
            // An error about a frame the server could not attribute: ours.
            None => Err(match resp.into_result() {
                Err(e) => ClientError::Server(e),
                Ok(_) => ClientError::Protocol("reply without id".into()),
            }),
            Some(other) => Err(ClientError::Protocol(format!(
                "expected the reply to request {id}, got {other}"
            ))),
        }
    }

    /// Sends every request before reading any reply (pipelining), and returns the results in
    /// order. The server commits mutations that arrive together with one fsync, so this is the
    /// fast way to install many objects from one client. Requests are independent: one failing
    /// does not stop the others.
    pub fn call_pipelined(
        &mut self,
        requests: Vec<Request>,
    ) -> Result<Vec<Result<Reply, ControlError>>, ClientError> {
        let first = self.next_id;
        let mut bytes = Vec::new();
        for request in requests {
            let env = RequestEnvelope {
                version: VERSION,
                id: self.next_id,
                request,
            };
            self.next_id += 1;
            bytes.extend_from_slice(&frame::encode(&frame::encode_request(&env)));
        }
        // Write on a helper thread while reading here: with many requests both socket buffers
        // fill, and a single thread writing everything first would deadlock with the server.
        let mut writer = self.stream.try_clone()?;
        let sender = std::thread::spawn(move || writer.write_all(&bytes));
        let mut out = Vec::with_capacity((self.next_id - first) as usize);
        let mut failure = None;
        for id in first..self.next_id {
            match self.recv() {
                Ok(resp) if resp.id == Some(id) => out.push(resp.into_result()),
                Ok(resp) => {
                    failure = Some(ClientError::Protocol(format!(
                        "expected the reply to request {id}, got {:?}",
                        resp.id
                    )));
                    break;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let sent = sender
            .join()
            .map_err(|_| ClientError::Protocol("writer thread panicked".into()))?;
        if let Some(e) = failure {
            return Err(e);
        }
        sent?;
        Ok(out)
    }

    /// Sends one request envelope.
    pub fn send(&mut self, env: &RequestEnvelope) -> Result<(), ClientError> {
        self.stream
            .write_all(&frame::encode(&frame::encode_request(env)))?;
        Ok(())
    }

    /// Reads one response.
    pub fn recv(&mut self) -> Result<ResponseEnvelope, ClientError> {
        let mut head = [0u8; frame::HEADER];
        self.stream.read_exact(&mut head)?;
        let len = u32::from_be_bytes(head) as usize;
        // Replies (dumps) may exceed the request bound; still refuse absurd lengths.
        if len > 16 * MAX_FRAME {
            return Err(ClientError::Protocol(format!("reply of {len} bytes")));
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body)?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// The generation a mutating call produced.
    fn generation(reply: &Reply) -> Result<u64, ClientError> {
        reply
            .generation()
            .ok_or_else(|| ClientError::Protocol(format!("unexpected reply {reply:?}")))
    }

    /// Creates a namespace; returns the generation.
    pub fn namespace_create(
        &mut self,
        name: &str,
        labels: Labels,
        subnet_v4: Option<&str>,
        subnet_v6: Option<&str>,
    ) -> Result<u64, ClientError> {
        let parse = |s: Option<&str>| {
            s.map(crate::ipam::Subnet::parse)
                .transpose()
                .map_err(ClientError::Protocol)
        };
        let r = self.call(Request::NamespaceCreate {
            name: name.to_owned(),
            labels,
            subnet_v4: parse(subnet_v4)?,
            subnet_v6: parse(subnet_v6)?,
        })?;
        Self::generation(&r)
    }

    /// Adds an endpoint; returns the reply (generation, port, addresses, gateways, MTU).
    pub fn endpoint_add(&mut self, spec: EndpointSpec) -> Result<Reply, ClientError> {
        self.call(Request::EndpointAdd(spec))
    }

    /// Deletes an endpoint; returns the generation.
    pub fn endpoint_delete(&mut self, namespace: &str, name: &str) -> Result<u64, ClientError> {
        let r = self.call(Request::EndpointDelete {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })?;
        Self::generation(&r)
    }

    /// Applies NetworkPolicy YAML/JSON; returns the generation.
    pub fn policy_apply(&mut self, text: &str) -> Result<u64, ClientError> {
        let r = self.call(Request::PolicyApply {
            text: text.to_owned(),
        })?;
        Self::generation(&r)
    }

    /// Waits until every worker runs `generation`; returns the generation they run.
    pub fn wait(&mut self, generation: u64, timeout: Duration) -> Result<u64, ClientError> {
        match self.call(Request::Wait {
            generation,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        })? {
            Reply::Realised { realised, .. } => Ok(realised),
            r => Err(ClientError::Protocol(format!("unexpected reply {r:?}"))),
        }
    }

    /// Health.
    pub fn health(&mut self) -> Result<Health, ClientError> {
        match self.call(Request::Health)? {
            Reply::Health(h) => Ok(h),
            r => Err(ClientError::Protocol(format!("unexpected reply {r:?}"))),
        }
    }
}
