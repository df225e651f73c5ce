//! The control server: a mio event loop on the control thread serving the protocol on a Unix
//! stream socket.
//!
//! Usage: [`Server::bind`] creates the socket (mode 0660 by default, optionally chowned to a
//! group; a stale socket left by a crash is replaced, a live one is refused), then
//! [`Server::run`] serves until [`ShutdownHandle::shutdown`]. Every accepted peer is checked with
//! SO_PEERCRED against [`Access`] and refused with a `permission_denied` response otherwise.
//!
//! Fairness: sockets are non-blocking; each connection has its own input [`Decoder`] and output
//! buffer, so partial reads and writes are the normal case. A connection whose unsent output
//! exceeds `max_output` is not read until it drains (backpressure), and one idle for
//! `idle_timeout` is closed, so a slow or stuck client costs only its own buffers. At most
//! `max_connections` are served (others get `busy`). Requests of one connection are answered in
//! order; `wait` parks only its own connection until every worker realised the generation (the
//! workers' [`Realised`](crate::Realised) reports wake the loop through a mio `Waker`).
//! All mutations read in one loop iteration are committed together (one fsync).
//!
//! Shutdown: the loop exits, the socket file is removed; open connections are dropped.
//! Writes to a peer that went away rely on SIGPIPE being ignored (Rust binaries' default) and
//! come back as `EPIPE`, which closes that connection only.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use crate::controller::Controller;
use crate::error::{ControlError, ErrorCode};
use crate::frame::{self, Decoder, FrameError, HEADER, MAX_FRAME};
use crate::proto::{Reply, Request, ResponseEnvelope, ServerCounters};

/// The default socket path.
pub const DEFAULT_SOCKET: &str = "/run/podswitch/podswitch.sock";

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;

/// Which peers may talk to the server: a peer is allowed when its uid or its gid is listed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Access {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

impl Access {
    /// root, and the uid the server runs as.
    pub fn root_and_self() -> Self {
        let me = nix::unistd::getuid().as_raw();
        let mut uids = vec![0];
        if me != 0 {
            uids.push(me);
        }
        Self {
            uids,
            gids: Vec::new(),
        }
    }

    /// Whether a peer with these credentials is allowed.
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        self.uids.contains(&uid) || self.gids.contains(&gid)
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub socket: PathBuf,
    /// Permission bits of the socket file (0660: owner and group).
    pub socket_mode: u32,
    /// Group to own the socket file (the owner is the daemon's user, root in production).
    pub socket_group: Option<u32>,
    pub access: Access,
    pub max_connections: usize,
    /// Bound on a request frame's body.
    pub max_frame: usize,
    /// Unsent output above which a connection is no longer read.
    pub max_output: usize,
    /// A connection with no traffic for this long is closed (a pending `wait` is not idle).
    pub idle_timeout: Duration,
}

impl ServerConfig {
    /// Defaults on `socket`: mode 0660, root and our own uid allowed, 256 connections, 4 MiB
    /// frames, 16 MiB output, 60 s idle timeout.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            socket_mode: 0o660,
            socket_group: None,
            access: Access::root_and_self(),
            max_connections: 256,
            max_frame: MAX_FRAME,
            max_output: 16 << 20,
            idle_timeout: Duration::from_mins(1),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::new(DEFAULT_SOCKET)
    }
}

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}: another server is listening on this socket")]
    InUse(PathBuf),
    #[error("{0}: exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// Stops a running server from another thread.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Asks the loop to exit (it removes the socket file).
    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }
}

#[derive(Debug)]
struct PendingWait {
    id: u64,
    generation: u64,
    deadline: Instant,
}

#[derive(Debug)]
struct Conn {
    stream: UnixStream,
    decoder: Decoder,
    out: Vec<u8>,
    out_pos: usize,
    last_active: Instant,
    /// Readable edge not yet drained to WouldBlock.
    readable: bool,
    eof: bool,
    /// Reply queued, then close (oversize frame, refused peer).
    closing: bool,
    waiting: Option<PendingWait>,
}

impl Conn {
    fn unsent(&self) -> usize {
        self.out.len() - self.out_pos
    }

    fn respond(&mut self, id: Option<u64>, result: Result<Reply, ControlError>) {
        let body = frame::encode_response(&ResponseEnvelope::new(id, result));
        if self.out_pos > 0 && self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        frame::encode_into(&body, &mut self.out);
    }
}

/// The control server; see the module docs.
pub struct Server {
    poll: Poll,
    listener: UnixListener,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    controller: Controller,
    config: ServerConfig,
    shutdown: Arc<AtomicBool>,
    waker: Arc<Waker>,
    counters: ServerCounters,
}

impl core::fmt::Debug for Server {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("socket", &self.config.socket)
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

fn prepare_path(path: &Path) -> Result<(), ServerError> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // Live server? Then refuse; a stale socket (connection refused) is replaced.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServerError::InUse(path.to_owned()));
            }
            std::fs::remove_file(path)
                .map_err(io_err(format!("remove stale {}", path.display())))?;
        }
        Ok(_) => return Err(ServerError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("stat {}", path.display()))(e)),
    }
    Ok(())
}

impl Server {
    /// Creates the socket and the event loop around `controller`.
    pub fn bind(config: ServerConfig, controller: Controller) -> Result<Self, ServerError> {
        prepare_path(&config.socket)?;
        // Created owner-only and opened up to `socket_mode` (and the group) after: under the
        // process's umask (022 usually, 000 in some service managers) the socket would exist for
        // a moment with wider permissions than configured, and anyone quick enough could
        // connect. The umask is process-wide; narrowing it for one bind only makes a file
        // another thread creates meanwhile stricter.
        let umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(&config.socket);
        nix::sys::stat::umask(umask);
        let mut listener = bound.map_err(io_err(format!("bind {}", config.socket.display())))?;
        std::fs::set_permissions(
            &config.socket,
            std::fs::Permissions::from_mode(config.socket_mode),
        )
        .map_err(io_err(format!("chmod {}", config.socket.display())))?;
        if let Some(g) = config.socket_group {
            nix::unistd::chown(&config.socket, None, Some(nix::unistd::Gid::from_raw(g))).map_err(
                |e| ServerError::Io {
                    what: format!("chown {}", config.socket.display()),
                    source: io::Error::from(e),
                },
            )?;
        }
        let poll = Poll::new().map_err(io_err("epoll"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io_err("register listener"))?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(io_err("waker"))?);
        controller.realised().set_waker(Arc::clone(&waker));
        Ok(Self {
            poll,
            listener,
            conns: HashMap::new(),
            next_token: FIRST_CONN,
            controller,
            config,
            shutdown: Arc::new(AtomicBool::new(false)),
            waker,
            counters: ServerCounters::default(),
        })
    }

    /// A handle that stops [`Server::run`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            flag: Arc::clone(&self.shutdown),
            waker: Arc::clone(&self.waker),
        }
    }

    /// The controller (e.g. for the daemon's own reads between runs).
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.config.socket
    }

    /// Serves until shut down, then removes the socket file.
    pub fn run(&mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(256);
        let r = loop {
            if self.shutdown.load(Ordering::Acquire) {
                break Ok(());
            }
            let timeout = self.timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break Err(io_err("epoll_wait")(e));
            }
            for ev in &events {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    t => {
                        // Writable: handled by the write pass below for every connection.
                        if let Some(c) = self.conns.get_mut(&t)
                            && (ev.is_readable() || ev.is_read_closed())
                        {
                            c.readable = true;
                        }
                    }
                }
            }
            self.turn();
        };
        let _ = std::fs::remove_file(&self.config.socket);
        r
    }

    fn timeout(&self) -> Duration {
        let now = Instant::now();
        let mut t = Duration::from_secs(1).min(self.config.idle_timeout);
        for c in self.conns.values() {
            let can_read = c.unsent() < self.config.max_output && !c.closing;
            // More to read, or whole frames left behind a resolved `wait`: go round again now.
            if c.waiting.is_none() && can_read && (c.readable || c.decoder.has_frame()) {
                return Duration::ZERO;
            }
            if let Some(w) = &c.waiting {
                t = t.min(w.deadline.saturating_duration_since(now));
            }
        }
        t
    }

    fn accept(&mut self) {
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            };
            let refuse = |stream: &mut UnixStream, err: ControlError| {
                let body = frame::encode_response(&ResponseEnvelope::new(None, Err(err)));
                // Best effort: a fresh socket buffer holds this small frame.
                let _ = stream.write_all(&frame::encode(&body));
            };
            match getsockopt(&stream, PeerCredentials) {
                Ok(cred) if self.config.access.allows(cred.uid(), cred.gid()) => {}
                Ok(cred) => {
                    self.counters.connections_refused += 1;
                    tracing::warn!(
                        uid = cred.uid(),
                        gid = cred.gid(),
                        pid = cred.pid(),
                        "peer refused"
                    );
                    refuse(
                        &mut stream,
                        ControlError::new(
                            ErrorCode::PermissionDenied,
                            format!(
                                "uid {} / gid {} may not use this socket (allowed uids {:?}, gids {:?})",
                                cred.uid(),
                                cred.gid(),
                                self.config.access.uids,
                                self.config.access.gids
                            ),
                        ),
                    );
                    continue;
                }
                Err(e) => {
                    self.counters.connections_refused += 1;
                    refuse(
                        &mut stream,
                        ControlError::new(
                            ErrorCode::PermissionDenied,
                            format!("peer credentials unavailable: {e}"),
                        ),
                    );
                    continue;
                }
            }
            if self.conns.len() >= self.config.max_connections {
                self.counters.connections_refused += 1;
                refuse(
                    &mut stream,
                    ControlError::new(
                        ErrorCode::Busy,
                        format!(
                            "too many connections ({}); retry later",
                            self.config.max_connections
                        ),
                    ),
                );
                continue;
            }
            let token = Token(self.next_token);
            self.next_token = self.next_token.wrapping_add(1).max(FIRST_CONN);
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                tracing::warn!(error = %e, "register connection failed");
                continue;
            }
            self.counters.connections_accepted += 1;
            self.conns.insert(
                token,
                Conn {
                    stream,
                    decoder: Decoder::new(self.config.max_frame),
                    out: Vec::new(),
                    out_pos: 0,
                    last_active: Instant::now(),
                    readable: true,
                    eof: false,
                    closing: false,
                    waiting: None,
                },
            );
        }
    }

    /// One pass: read, decode, handle (one commit), resolve waits, write, sweep.
    fn turn(&mut self) {
        let now = Instant::now();
        // First record realisations the workers' wake-up announced, before this turn's commit
        // (an fsync) would inflate the measured latency.
        self.controller.realised().observe(now);
        let max_output = self.config.max_output;
        let max_frame = self.config.max_frame;
        // Read what the edges announced, within each connection's budget.
        let mut buf = vec![0u8; 64 * 1024];
        for c in self.conns.values_mut() {
            while c.readable
                && !c.closing
                && !c.eof
                && c.unsent() < max_output
                && c.decoder.buffered() < max_frame + HEADER
            {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        c.eof = true;
                        c.readable = false;
                    }
                    Ok(n) => {
                        c.decoder.push(&buf[..n]);
                        c.last_active = now;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        c.eof = true;
                        c.closing = true;
                        c.readable = false;
                    }
                }
            }
        }
        // Decode whole frames into one batch; a connection stops at a `wait`.
        let mut batch: Vec<(Token, u64, Request)> = Vec::new();
        let mut waits: Vec<(Token, u64, u64, u64)> = Vec::new();
        let mut tokens: Vec<Token> = self.conns.keys().copied().collect();
        tokens.sort_unstable();
        for t in &tokens {
            let Some(c) = self.conns.get_mut(t) else {
                continue;
            };
            while c.waiting.is_none() && !c.closing && c.unsent() < max_output {
                match c.decoder.next_frame() {
                    Ok(None) => break,
                    Ok(Some(body)) => {
                        self.counters.requests += 1;
                        match frame::decode_request(&body) {
                            Ok(env) => {
                                if let Request::Wait {
                                    generation,
                                    timeout_ms,
                                } = env.request
                                {
                                    waits.push((*t, env.id, generation, timeout_ms));
                                    // Park the connection; replies stay in order.
                                    c.waiting = Some(PendingWait {
                                        id: env.id,
                                        generation,
                                        deadline: now,
                                    });
                                    break;
                                }
                                batch.push((*t, env.id, env.request));
                            }
                            Err((id, e)) => {
                                self.counters.errors += 1;
                                c.respond(id, Err(e));
                            }
                        }
                    }
                    Err(FrameError::TooLarge { len, max }) => {
                        self.counters.errors += 1;
                        c.respond(
                            None,
                            Err(ControlError::new(
                                ErrorCode::TooLarge,
                                format!(
                                    "frame of {len} bytes exceeds the {max}-byte bound; closing"
                                ),
                            )),
                        );
                        c.closing = true;
                    }
                }
            }
        }
        if !batch.is_empty() {
            let (who, reqs): (Vec<(Token, u64)>, Vec<Request>) =
                batch.into_iter().map(|(t, id, r)| ((t, id), r)).unzip();
            let results = self.controller.handle_batch(reqs);
            for ((t, id), mut r) in who.into_iter().zip(results) {
                if r.is_err() {
                    self.counters.errors += 1;
                }
                if let Ok(Reply::Counters(c)) = &mut r {
                    c.server = self.counters.clone();
                    c.server.connections_open = self.conns.len() as u64;
                }
                if let Some(c) = self.conns.get_mut(&t) {
                    c.respond(Some(id), r);
                }
            }
        }
        // New waits: validate now that the batch before them is committed.
        for (t, id, generation, timeout_ms) in waits {
            let Some(c) = self.conns.get_mut(&t) else {
                continue;
            };
            if let Err(e) = self.controller.check_wait(generation) {
                self.counters.errors += 1;
                c.waiting = None;
                c.respond(Some(id), Err(e));
            } else if let Some(w) = &mut c.waiting {
                w.deadline = now + Duration::from_millis(timeout_ms.min(3_600_000));
            }
        }
        // Resolve waits.
        self.controller.realised().observe(Instant::now());
        let realised = self.controller.realised_generation();
        for c in self.conns.values_mut() {
            let Some(w) = &c.waiting else { continue };
            let result = if realised >= w.generation {
                Some(Ok(Reply::Realised {
                    generation: w.generation,
                    realised,
                }))
            } else if now >= w.deadline {
                self.counters.errors += 1;
                Some(Err(ControlError::new(
                    ErrorCode::Timeout,
                    format!(
                        "generation {} not realised by every worker in time (they run {realised})",
                        w.generation
                    ),
                )))
            } else {
                None
            };
            if let Some(r) = result {
                let id = w.id;
                c.waiting = None;
                c.last_active = now;
                c.respond(Some(id), r);
            }
        }
        // Write, close, sweep.
        let idle = self.config.idle_timeout;
        let mut dead = Vec::new();
        for (t, c) in &mut self.conns {
            while c.unsent() > 0 {
                match c.stream.write(&c.out[c.out_pos..]) {
                    Ok(0) => {
                        dead.push(*t);
                        break;
                    }
                    Ok(n) => {
                        c.out_pos += n;
                        c.last_active = now;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        dead.push(*t);
                        break;
                    }
                }
            }
            if c.unsent() == 0 {
                c.out.clear();
                c.out_pos = 0;
            }
            let drained = c.unsent() == 0 && c.waiting.is_none();
            let finished = c.closing || (c.eof && !c.decoder.has_frame());
            if drained && finished
                || (c.waiting.is_none() && now.saturating_duration_since(c.last_active) > idle)
            {
                dead.push(*t);
            }
        }
        for t in dead {
            if let Some(mut c) = self.conns.remove(&t) {
                let _ = self.poll.registry().deregister(&mut c.stream);
            }
        }
    }
}
