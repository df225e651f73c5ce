//! The real server (mio loop on a thread, socket in a temp dir) driven through the real socket
//! with the crate's `Client`: lifecycles, generations, `wait` against a fake realisation tracker,
//! peer-credential refusal, bad input, 50 concurrent clients, stuck clients, and crash safety of
//! the store (a child process SIGKILLed while writing).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use podswitch_control::client::ClientError;
use podswitch_control::proto::{EndpointSpec, Family, Kind, Labels, Mac, RemoteSpec, VtepSpec};
use podswitch_control::{
    Access, Client, ControlError, Controller, ControllerConfig, ErrorCode, NoDataplane, Realised,
    Reply, Request, Server, ServerConfig, ShutdownHandle, StateCell, Store,
};

struct Running {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stop: ShutdownHandle,
    thread: Option<thread::JoinHandle<()>>,
    realised: Arc<Realised>,
    cell: Arc<StateCell>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn start(workers: usize, tweak: impl FnOnce(&mut ServerConfig)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/podswitch.sock");
    let mut cfg = ControllerConfig::example();
    cfg.state_dir = Some(dir.path().join("state"));
    let realised = Realised::new(workers);
    let controller = Controller::open(cfg, Arc::new(NoDataplane), Arc::clone(&realised)).unwrap();
    let cell = controller.cell();
    let mut sc = ServerConfig::new(&socket);
    tweak(&mut sc);
    let mut server = Server::bind(sc, controller).unwrap();
    let stop = server.shutdown_handle();
    let thread = thread::spawn(move || server.run().unwrap());
    Running {
        _dir: dir,
        socket,
        stop,
        thread: Some(thread),
        realised,
        cell,
    }
}

fn client(r: &Running) -> Client {
    let c = Client::connect(&r.socket).unwrap();
    c.set_timeout(Some(Duration::from_secs(20))).unwrap();
    c
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn spec(ns: &str, name: &str, n: u16) -> EndpointSpec {
    EndpointSpec {
        namespace: ns.into(),
        name: name.into(),
        kind: Kind::Pod,
        interface: format!("v{ns}{name}"),
        port: None,
        mac: Mac([2, 0, 0, 1, (n >> 8) as u8, n as u8]),
        ips: vec![],
        allocate: vec![Family::Ipv4],
        labels: Labels::new(),
        ports: vec![],
        mtu: None,
    }
}

fn server_err(r: Result<impl std::fmt::Debug, ClientError>) -> ControlError {
    match r {
        Err(ClientError::Server(e)) => e,
        other => panic!("expected a server error, got {other:?}"),
    }
}

const POLICY: &str = r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
 "metadata":{"name":"deny-all","namespace":"prod"},"spec":{"podSelector":{}}}"#;

#[test]
fn lifecycle_generations_and_wait() {
    let r = start(2, |_| {});
    let mut c = client(&r);
    assert_eq!(
        c.namespace_create("prod", Labels::new(), Some("10.1.0.0/24"), None)
            .unwrap(),
        1
    );
    let Reply::EndpointAdded {
        generation,
        port,
        ips,
        ..
    } = c.endpoint_add(spec("prod", "web", 1)).unwrap()
    else {
        panic!()
    };
    assert_eq!((generation, port, ips), (2, 1, vec![ip("10.1.0.2")]));
    assert_eq!(c.policy_apply(POLICY).unwrap(), 3);
    let g = c
        .call(Request::VtepAdd(VtepSpec {
            id: 1,
            ip: ip("192.0.2.7"),
            next_hop_mac: Mac([2, 0, 0, 0, 0, 7]),
            vni: 100,
            gbp: false,
        }))
        .unwrap()
        .generation();
    assert_eq!(g, Some(4));
    let g = c
        .call(Request::RemoteAdd(RemoteSpec {
            namespace: "prod".into(),
            name: "vm".into(),
            kind: Kind::Vm,
            vtep: 1,
            mac: Mac([2, 0, 0, 0, 0, 8]),
            ips: vec![ip("172.16.0.1")],
            labels: Labels::new(),
            ports: vec![],
        }))
        .unwrap()
        .generation();
    assert_eq!(g, Some(5));
    assert_eq!(r.cell.generation(), 5, "published to the workers' cell");

    // wait: a fake pair of workers realises generation 5 only once another client was served
    // while this one waits — so `wait` cannot block the loop (it would time out instead).
    let (served_tx, served_rx) = std::sync::mpsc::channel();
    let cell = Arc::clone(&r.cell);
    let realised = Arc::clone(&r.realised);
    let workers = thread::spawn(move || {
        served_rx.recv().unwrap();
        for w in 0..2 {
            let mut reader = cell.reader();
            let s = reader.refresh().unwrap();
            realised.report(w, s.generation());
        }
    });
    let socket = r.socket.clone();
    let other = thread::spawn(move || {
        // Give the main client time to park in `wait` first.
        thread::sleep(Duration::from_millis(50));
        let mut c2 = Client::connect(&socket).unwrap();
        let h = c2.health().unwrap();
        served_tx.send(()).unwrap();
        h
    });
    assert_eq!(c.wait(5, Duration::from_secs(20)).unwrap(), 5);
    let h = other.join().unwrap();
    assert_eq!(
        (h.generation, h.endpoints, h.remotes, h.policies, h.vteps),
        (5, 1, 1, 1, 1)
    );
    assert_eq!(
        h.realised_generation, 0,
        "health answered while the wait was pending"
    );
    workers.join().unwrap();
    // Realisation latency was recorded.
    let Reply::Counters(k) = c.call(Request::Counters).unwrap() else {
        panic!()
    };
    assert!(k.realisation.samples >= 1);
    assert!(k.server.requests >= 8);

    // Only one worker realises 6: wait times out, with a clear code.
    c.endpoint_delete("prod", "web").unwrap();
    r.realised.report(0, 6);
    let e = server_err(c.wait(6, Duration::from_millis(100)));
    assert_eq!(e.code, ErrorCode::Timeout);
    r.realised.report(1, 6);
    assert_eq!(c.wait(6, Duration::from_secs(5)).unwrap(), 6);
    // Deleting what does not exist.
    let e = server_err(c.endpoint_delete("prod", "web"));
    assert_eq!(e.code, ErrorCode::NotFound);
    assert_eq!(c.health().unwrap().generation, 6);
}

#[test]
fn peer_credentials_refused() {
    let me = nix::unistd::getuid().as_raw();
    let my_gid = nix::unistd::getgid().as_raw();
    let r = start(0, |c| {
        c.access = Access {
            uids: vec![me.wrapping_add(4242)],
            gids: vec![my_gid.wrapping_add(4242)],
        };
    });
    let mut c = client(&r);
    let e = server_err(c.health());
    assert_eq!(e.code, ErrorCode::PermissionDenied);
    assert!(e.message.contains(&format!("uid {me}")), "{e}");
    // And the connection is closed.
    assert_closed(c.stream());
}

/// The server closed the connection: EOF, or a reset when our unread request was discarded.
fn assert_closed(s: &mut std::os::unix::net::UnixStream) {
    let mut buf = [0u8; 1];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("connection still open: {other:?}"),
    }
}

#[test]
fn socket_mode_and_stale_socket() {
    use std::os::unix::fs::PermissionsExt;
    let r = start(0, |_| {});
    let mode = std::fs::metadata(&r.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    // A second server on a live socket is refused.
    let c = Controller::in_memory(None).unwrap();
    assert!(Server::bind(ServerConfig::new(&r.socket), c).is_err());
}

fn raw(c: &mut Client, bytes: &[u8]) -> podswitch_control::proto::ResponseEnvelope {
    c.stream().write_all(bytes).unwrap();
    c.recv().unwrap()
}

fn frame(body: &[u8]) -> Vec<u8> {
    podswitch_control::frame::encode(body)
}

#[test]
fn bad_input_gets_errors_and_the_server_survives() {
    let r = start(0, |c| c.max_frame = 4096);
    let mut c = client(&r);
    let resp = raw(&mut c, &frame(b"hello"));
    assert_eq!(resp.id, None);
    assert_eq!(resp.error.unwrap().code, ErrorCode::BadFrame);
    let resp = raw(
        &mut c,
        &frame(br#"{"version":9,"id":3,"request":{"type":"health"}}"#),
    );
    assert_eq!(resp.id, Some(3));
    assert_eq!(resp.error.unwrap().code, ErrorCode::UnsupportedVersion);
    let resp = raw(
        &mut c,
        &frame(br#"{"version":1,"id":4,"request":{"type":"format_disk"}}"#),
    );
    assert_eq!(
        (resp.id, resp.error.unwrap().code),
        (Some(4), ErrorCode::BadRequest)
    );
    let resp = raw(
        &mut c,
        &frame(br#"{"version":1,"id":5,"request":{"type":"namespace_create","name":7}}"#),
    );
    assert_eq!(resp.error.unwrap().code, ErrorCode::BadRequest);
    // A frame split into single bytes with pauses still works.
    let f = frame(br#"{"version":1,"id":6,"request":{"type":"health"}}"#);
    for b in &f {
        c.stream().write_all(&[*b]).unwrap();
        thread::sleep(Duration::from_millis(1));
    }
    let resp = c.recv().unwrap();
    assert_eq!(resp.id, Some(6));
    assert!(resp.ok.is_some());
    // Invalid request content: named field, nothing changed.
    let e = server_err(c.namespace_create("Bad!", Labels::new(), None, None));
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::Invalid, Some("request.name"))
    );
    c.namespace_create("a", Labels::new(), Some("10.1.0.0/24"), None)
        .unwrap();
    c.endpoint_add(spec("a", "p", 1)).unwrap();
    let mut dup = spec("a", "q", 2);
    dup.ips = vec![ip("10.1.0.2")];
    dup.allocate.clear();
    assert_eq!(server_err(c.endpoint_add(dup)).code, ErrorCode::Conflict);
    let mut dup = spec("a", "q", 2);
    dup.port = Some(1);
    assert_eq!(server_err(c.endpoint_add(dup)).code, ErrorCode::Conflict);
    let bad_policy = POLICY
        .replace(
            "\"podSelector\":{}",
            "\"podSelector\":{},\"policyTypes\":[\"Sideways\"]",
        )
        .replace("prod", "a");
    let e = server_err(c.policy_apply(&bad_policy));
    assert_eq!(e.field.as_deref(), Some("spec.policyTypes[0]"));
    assert!(e.message.contains("NetworkPolicy a/deny-all"), "{e}");
    assert_eq!(c.health().unwrap().generation, 2);
    // Oversize: an error, then the server closes this connection; others carry on.
    let mut big = client(&r);
    big.stream().write_all(&100_000u32.to_be_bytes()).unwrap();
    let resp = big.recv().unwrap();
    assert_eq!(resp.error.unwrap().code, ErrorCode::TooLarge);
    assert_closed(big.stream());
    assert_eq!(c.health().unwrap().generation, 2);
}

#[test]
fn fifty_concurrent_clients() {
    let r = start(0, |_| {});
    let socket = r.socket.clone();
    let threads: Vec<_> = (0..50u16)
        .map(|i| {
            let socket = socket.clone();
            thread::spawn(move || {
                let mut c = Client::connect(&socket).unwrap();
                c.set_timeout(Some(Duration::from_mins(1))).unwrap();
                let ns = format!("ns{i}");
                let mut gens = vec![
                    c.namespace_create(&ns, Labels::new(), Some(&format!("10.{i}.0.0/24")), None)
                        .unwrap(),
                ];
                for j in 0..10u16 {
                    let Reply::EndpointAdded {
                        generation, ips, ..
                    } = c
                        .endpoint_add(spec(&ns, &format!("p{j}"), i * 100 + j))
                        .unwrap()
                    else {
                        panic!()
                    };
                    assert_eq!(ips, vec![ip(&format!("10.{i}.0.{}", j + 2))]);
                    gens.push(generation);
                }
                for j in 0..5u16 {
                    gens.push(c.endpoint_delete(&ns, &format!("p{j}")).unwrap());
                }
                // A conflicting request from every client too: answered, changes nothing.
                let e = server_err(c.endpoint_add(spec(&ns, "p9", 1)));
                assert_eq!(e.code, ErrorCode::Conflict);
                gens
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        let gens = t.join().unwrap();
        // Each client sees its own generations increase.
        assert!(gens.windows(2).all(|w| w[0] < w[1]));
        all.extend(gens);
    }
    let unique: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(all.len(), 50 * 16);
    assert_eq!(unique.len(), all.len(), "a generation was handed out twice");
    assert_eq!(
        unique.iter().copied().collect::<Vec<_>>(),
        (1..=800).collect::<Vec<_>>()
    );
    let mut c = client(&r);
    let h = c.health().unwrap();
    assert_eq!((h.generation, h.namespaces, h.endpoints), (800, 50, 250));
    let Reply::Endpoints { items } = c.call(Request::EndpointList { namespace: None }).unwrap()
    else {
        panic!()
    };
    let ports: BTreeSet<u32> = items.iter().map(|e| e.port).collect();
    assert_eq!(ports.len(), 250, "ports unique");
    assert_eq!(r.cell.generation(), 800);
}

#[test]
fn stuck_and_idle_clients_do_not_block_others() {
    let r = start(0, |c| {
        c.max_output = 32 * 1024;
        c.idle_timeout = Duration::from_secs(3);
    });
    // A: half a frame, then silence.
    let mut a = client(&r);
    a.stream().write_all(&[0, 0, 0, 50, b'{']).unwrap();
    // B: floods requests and never reads its replies.
    let mut b = std::os::unix::net::UnixStream::connect(&r.socket).unwrap();
    b.set_nonblocking(true).unwrap();
    let req = frame(br#"{"version":1,"id":1,"request":{"type":"namespace_list"}}"#);
    let mut sent = 0usize;
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(500) {
        match b.write(&req) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(sent > 0);
    // C is served promptly throughout.
    let mut c = client(&r);
    for _ in 0..20 {
        let t = Instant::now();
        c.health().unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
    }
    let Reply::Counters(k) = c.call(Request::Counters).unwrap() else {
        panic!()
    };
    assert!(k.server.connections_accepted >= 3);
    // A is closed after the idle timeout (and so is C, idle meanwhile).
    a.set_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_closed(a.stream());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let r = start(0, |_| {});
    let mut c = client(&r);
    c.namespace_create("p", Labels::new(), Some("10.9.0.0/16"), None)
        .unwrap();
    let mut reqs: Vec<Request> = (0..300u16)
        .map(|i| Request::EndpointAdd(spec("p", &format!("e{i}"), i)))
        .collect();
    reqs.insert(100, Request::EndpointAdd(spec("p", "e5", 999))); // duplicate name
    reqs.push(Request::Health);
    let out = c.call_pipelined(reqs).unwrap();
    assert_eq!(out.len(), 302);
    assert_eq!(out[100].as_ref().unwrap_err().code, ErrorCode::Conflict);
    let gens: Vec<u64> = out[..301]
        .iter()
        .filter_map(|r| r.as_ref().ok().and_then(Reply::generation))
        .collect();
    assert_eq!(gens, (2..=301).collect::<Vec<_>>());
    let Ok(Reply::Health(h)) = &out[301] else {
        panic!()
    };
    assert_eq!((h.generation, h.endpoints), (301, 300));
}

#[test]
fn connection_limit() {
    let r = start(0, |c| c.max_connections = 2);
    let mut a = client(&r);
    let mut b = client(&r);
    a.health().unwrap();
    b.health().unwrap();
    let mut c = client(&r);
    assert_eq!(server_err(c.health()).code, ErrorCode::Busy);
    drop(a);
    // Once a slot frees, new clients get in.
    let t = Instant::now();
    loop {
        let mut d = client(&r);
        match d.health() {
            Ok(_) => break,
            Err(_) if t.elapsed() < Duration::from_secs(5) => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn restart_restores_state() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let open = || {
        let mut cfg = ControllerConfig::example();
        cfg.state_dir = Some(dir.path().join("state"));
        let controller = Controller::open(cfg, Arc::new(NoDataplane), Realised::new(0)).unwrap();
        let mut server = Server::bind(ServerConfig::new(&socket), controller).unwrap();
        let stop = server.shutdown_handle();
        (stop, thread::spawn(move || server.run().unwrap()))
    };
    let (stop, t) = open();
    let mut c = Client::connect(&socket).unwrap();
    c.namespace_create("prod", Labels::new(), Some("10.1.0.0/24"), None)
        .unwrap();
    c.endpoint_add(spec("prod", "web", 1)).unwrap();
    c.policy_apply(POLICY).unwrap();
    drop(c);
    stop.shutdown();
    t.join().unwrap();
    assert!(!socket.exists(), "socket removed on shutdown");
    let (stop, t) = open();
    let mut c = Client::connect(&socket).unwrap();
    let h = c.health().unwrap();
    assert_eq!((h.generation, h.endpoints, h.policies), (3, 1, 1));
    let Reply::EndpointAdded {
        generation, ips, ..
    } = c.endpoint_add(spec("prod", "db", 2)).unwrap()
    else {
        panic!()
    };
    assert_eq!((generation, ips), (4, vec![ip("10.1.0.3")]));
    stop.shutdown();
    t.join().unwrap();
}

/// The writer half of `store_survives_sigkill`: mutates a persistent controller in a loop. Run
/// directly (no env), it writes a bounded number of times and checks the store loads.
#[test]
fn crash_child_writer() {
    let (dir, forever) = match std::env::var_os("PODSWITCH_CRASH_DIR") {
        Some(d) => (PathBuf::from(d), true),
        None => (tempfile::tempdir().unwrap().keep(), false),
    };
    let mut cfg = ControllerConfig::example();
    cfg.state_dir = Some(dir.clone());
    let mut c = Controller::open(cfg, Arc::new(NoDataplane), Realised::new(0)).unwrap();
    let start = c.generation();
    let mut i = start;
    loop {
        let name = format!("n{i}");
        c.handle(Request::NamespaceCreate {
            name: name.clone(),
            labels: [("i".to_owned(), i.to_string())].into(),
            subnet_v4: None,
            subnet_v6: None,
        })
        .unwrap();
        if i.is_multiple_of(3) {
            c.handle(Request::NamespaceDelete { name }).unwrap();
        }
        i += 1;
        if !forever && i - start >= 30 {
            break;
        }
    }
    let loaded = Store::open(&dir).unwrap().load().unwrap().unwrap();
    assert_eq!(loaded.generation, c.generation());
}

#[test]
fn store_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut last = 0;
    let mut progressed = 0;
    for round in 0..15u64 {
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--test-threads=1",
                "--nocapture",
            ])
            .env("PODSWITCH_CRASH_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill at varied points of the write cycle.
        thread::sleep(Duration::from_millis(40 + (round * 37) % 120));
        child.kill().unwrap();
        child.wait().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let state = store.load().expect("store loads after SIGKILL");
        let g = state.map_or(0, |s| s.generation);
        assert!(g >= last, "generation went back from {last} to {g}");
        if g > last {
            progressed += 1;
        }
        last = g;
        // The controller opens on it, too.
        let mut cfg = ControllerConfig::example();
        cfg.state_dir = Some(dir.path().to_owned());
        let c = Controller::open(cfg, Arc::new(NoDataplane), Realised::new(0)).unwrap();
        assert_eq!(c.generation(), g);
    }
    assert!(
        progressed >= 5,
        "the writer made progress in only {progressed} rounds"
    );
}
