//! Real-traffic tests of `XskPort` (run as root): each test builds its own veth pair named `psx-*`
//! whose peer end lives in a fresh network namespace, and a guard removes both even when the test
//! fails. The XSK end stays in the test's namespace; the peer is driven from a thread that entered
//! the namespace (a raw AF_PACKET socket, or a second `XskPort`). Test frames use the local
//! experimental EtherType 0x88b5 and carry a magic and a sequence number, so the IPv6 chatter a
//! freshly-up veth produces is ignored.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sys::testing::PacketSocket;
use crate::{Port, PortError, XdpMode, XskConfig, XskError, XskPort, attached_xdp_program};

const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
const MAGIC: &[u8; 4] = b"PSX!";

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A veth pair `host` ↔ `peer` with `peer` inside namespace `ns`; removed on drop.
struct NetPair {
    ns: String,
    host: String,
    peer: String,
}

impl NetPair {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "{}{}",
            std::process::id() % 10_000_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let pair = Self {
            ns: format!("psx-n{tag}"),
            host: format!("psx-h{tag}"),
            peer: format!("psx-p{tag}"),
        };
        // The guard exists before anything is created, so a failure below still cleans up.
        ip(&["netns", "add", &pair.ns]);
        ip(&[
            "link", "add", &pair.host, "type", "veth", "peer", "name", &pair.peer, "netns",
            &pair.ns,
        ]);
        ip(&["link", "set", &pair.host, "up"]);
        ip(&["-n", &pair.ns, "link", "set", &pair.peer, "up"]);
        pair
    }

    /// Runs `f` on a thread that entered the peer's namespace.
    fn in_ns<T: Send + 'static>(&self, f: impl FnOnce(&str) -> T + Send + 'static) -> T {
        let ns = self.ns.clone();
        let peer = self.peer.clone();
        std::thread::spawn(move || {
            crate::enter_netns(Path::new(&format!("/run/netns/{ns}"))).expect("setns");
            f(&peer)
        })
        .join()
        .expect("namespace thread")
    }

    fn peer_socket(&self) -> PacketSocket {
        self.in_ns(|peer| {
            PacketSocket::open(peer, Duration::from_millis(100)).expect("AF_PACKET socket")
        })
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        // Deleting one end of a veth deletes both; errors are ignored (already gone).
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

fn test_frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(22)];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&ETHERTYPE);
    f[14..18].copy_from_slice(MAGIC);
    f[18..22].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f.iter_mut().enumerate().skip(22) {
        *b = (i as u32 ^ seq) as u8;
    }
    f
}

fn seq_of(frame: &[u8]) -> Option<u32> {
    if frame.len() < 22 || frame[12..14] != ETHERTYPE || &frame[14..18] != MAGIC {
        return None;
    }
    Some(u32::from_be_bytes([
        frame[18], frame[19], frame[20], frame[21],
    ]))
}

fn small_config() -> XskConfig {
    XskConfig {
        frame_count: 1024,
        rx_ring_size: 512,
        tx_ring_size: 512,
        fill_ring_size: 512,
        completion_ring_size: 512,
        ..XskConfig::default()
    }
}

/// Receives test frames until `want` arrived or `timeout` passed; returns them in arrival order.
fn recv_test_frames(port: &mut XskPort, want: usize, timeout: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        let n = port
            .recv(64, &mut |f| {
                if seq_of(f).is_some() {
                    got.push(f.to_vec());
                }
            })
            .expect("recv");
        if n == 0 {
            port.wait_readable(10).expect("poll");
        }
    }
    got
}

/// Waits (bounded) until no XDP program is attached to `ifname`. Dropping a port closes its link
/// fd at once, but a `fork()` elsewhere in this multi-threaded test process (every `ip` command)
/// briefly holds a copy of each fd until its `exec` closes it (CLOEXEC), so detachment may lag by
/// a few milliseconds.
fn wait_detached(ifname: &str) -> Option<crate::AttachedProgram> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let attached = attached_xdp_program(ifname).unwrap();
        if attached.is_none() || Instant::now() > deadline {
            return attached;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Flushes until every transmitted frame came back from the completion ring (bounded).
fn drain_tx(port: &mut XskPort) {
    for _ in 0..2000 {
        port.flush().expect("flush");
        if port.frames().tx == 0 {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn receives_frames_sent_by_the_peer() {
    let pair = NetPair::new();
    let mut port = XskPort::open(&pair.host, &small_config()).expect("open");
    assert_eq!(port.mode(), XdpMode::Native, "veth supports native XDP");
    let attached = attached_xdp_program(&pair.host)
        .unwrap()
        .expect("program attached");
    assert_eq!(attached.mode, "xdp");
    assert!(
        attached.id > 0,
        "{}",
        String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-d", "link", "show", "dev", &pair.host])
                .output()
                .unwrap()
                .stdout
        )
    );
    assert_eq!(port.poll_fd().map(|fd| fd >= 0), Some(true));

    let peer = pair.peer_socket();
    let lens: Vec<usize> = (0..400).map(|i| 60 + (i * 37) % 1441).collect();
    for (seq, &len) in lens.iter().enumerate() {
        peer.send(&test_frame(seq as u32, len)).expect("peer send");
    }
    let got = recv_test_frames(&mut port, lens.len(), Duration::from_secs(5));
    assert_eq!(got.len(), lens.len(), "every frame the peer sent arrived");
    for (seq, frame) in got.iter().enumerate() {
        assert_eq!(
            frame,
            &test_frame(seq as u32, lens[seq]),
            "frame {seq} intact and in order"
        );
    }
    let stats = port.stats();
    assert!(stats.rx_packets >= 400 && stats.rx_bytes >= lens.iter().sum::<usize>() as u64);
    assert_eq!(stats.rx_dropped, 0);
    let xdp = stats.xdp.expect("XDP statistics");
    assert_eq!((xdp.rx_invalid_descs, xdp.rx_ring_full), (0, 0));
    let frames = port.check_frames().expect("accounting");
    assert_eq!(
        (frames.user, frames.tx, frames.fill),
        (0, 0, 512),
        "fill ring topped up again"
    );
    drop(port);
    assert_eq!(wait_detached(&pair.host), None, "drop detaches the program");
}

#[test]
fn transmits_frames_to_the_peer() {
    let pair = NetPair::new();
    let peer = pair.peer_socket();
    let mut port = XskPort::open(&pair.host, &small_config()).expect("open");
    let count = 300u32;
    let len_of = |seq: u32| 60 + (seq as usize * 11) % 1400;
    let mut buf = vec![0u8; 2048];
    let mut next = 0u32;
    // Bursts of 32 with the peer reading in between, so its socket buffer never overflows.
    for burst in 0..count.div_ceil(32) {
        for seq in burst * 32..((burst + 1) * 32).min(count) {
            assert!(
                port.send(&test_frame(seq, len_of(seq))).expect("send"),
                "TX slot free"
            );
        }
        port.flush().expect("flush");
        let deadline = Instant::now() + Duration::from_secs(3);
        while next < ((burst + 1) * 32).min(count) && Instant::now() < deadline {
            let Some(n) = peer.recv(&mut buf).expect("peer recv") else {
                port.flush().expect("flush");
                continue;
            };
            if let Some(seq) = seq_of(&buf[..n]) {
                assert_eq!(seq, next, "in order, none lost");
                assert_eq!(&buf[..n], &test_frame(seq, len_of(seq))[..]);
                next += 1;
            }
        }
    }
    assert_eq!(next, count, "the peer saw every transmitted frame");
    drain_tx(&mut port);
    let frames = port.check_frames().expect("accounting");
    assert_eq!((frames.tx, frames.user), (0, 0), "every completion reaped");
    let stats = port.stats();
    assert_eq!((stats.tx_packets, stats.tx_dropped), (u64::from(count), 0));
    assert_eq!(stats.xdp.expect("stats").tx_invalid_descs, 0);
    let too_big = vec![0u8; port.max_frame_len() + 1];
    assert!(matches!(
        port.send(&too_big),
        Err(PortError::FrameTooLarge { .. })
    ));
}

/// Copy mode transmits at most 32 frames per `sendto` and then reports EAGAIN; one `flush` must
/// still hand the kernel everything queued, or the rest waits for the next unrelated send (a TCP
/// segment stranded that way stalls the connection until its retransmission timeout).
#[test]
fn one_flush_transmits_more_than_the_kernel_tx_budget() {
    let pair = NetPair::new();
    let peer = pair.peer_socket();
    let mut port = XskPort::open(&pair.host, &small_config()).expect("open");
    let count = 128u32;
    for seq in 0..count {
        assert!(
            port.send(&test_frame(seq, 60)).expect("send"),
            "TX slot free"
        );
    }
    port.flush().expect("flush");
    assert!(!port.tx_pending(), "the kernel took every queued frame");
    let mut buf = vec![0u8; 2048];
    let mut next = 0u32;
    let deadline = Instant::now() + Duration::from_secs(3);
    // Only the peer reads from here on: no further flush or send on the port.
    while next < count && Instant::now() < deadline {
        let Some(n) = peer.recv(&mut buf).expect("peer recv") else {
            continue;
        };
        if let Some(seq) = seq_of(&buf[..n]) {
            assert_eq!(seq, next, "in order, none lost");
            next += 1;
        }
    }
    assert_eq!(next, count, "one flush sent all {count} frames");
    drain_tx(&mut port);
    let frames = port.check_frames().expect("accounting");
    assert_eq!((frames.tx, frames.user), (0, 0));
}

#[test]
fn mode_override_and_clean_reopen() {
    let pair = NetPair::new();
    for (mode, shown) in [
        (XdpMode::Generic, "xdpgeneric"),
        (XdpMode::Native, "xdp"),
        (XdpMode::Generic, "xdpgeneric"),
    ] {
        let config = XskConfig {
            mode,
            ..small_config()
        };
        let mut port = XskPort::open(&pair.host, &config).expect("open (EBUSY retried)");
        assert_eq!(port.mode(), mode);
        assert_eq!(
            attached_xdp_program(&pair.host).unwrap().map(|a| a.mode),
            Some(shown.to_owned())
        );
        let peer = pair.peer_socket();
        peer.send(&test_frame(7, 100)).unwrap();
        let got = recv_test_frames(&mut port, 1, Duration::from_secs(3));
        assert_eq!(got, vec![test_frame(7, 100)], "{mode} mode receives");
        drop(port);
        assert_eq!(wait_detached(&pair.host), None, "nothing left after {mode}");
    }
}

/// veth allocates two queues but activates one; with two active, a port would miss half the
/// traffic, so `open` refuses unless told otherwise.
#[test]
fn multi_queue_interfaces_are_refused_unless_allowed() {
    let pair = NetPair::new();
    let out = Command::new("ethtool")
        .args(["-L", &pair.host, "rx", "2", "tx", "2"])
        .output()
        .expect("ethtool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    match XskPort::open(&pair.host, &small_config()) {
        Err(XskError::MultiQueue { queues, .. }) => {
            assert_eq!(queues, 2);
            assert_eq!(crate::rx_queue_count(&pair.host).unwrap(), Some(2));
        }
        other => panic!("expected MultiQueue, got {other:?}"),
    }
    assert_eq!(
        wait_detached(&pair.host),
        None,
        "a refused open attaches nothing"
    );
    let config = XskConfig {
        allow_other_queues: true,
        queue_id: 1,
        ..small_config()
    };
    let port = XskPort::open(&pair.host, &config).expect("explicitly allowed");
    assert!(attached_xdp_program(&pair.host).unwrap().is_some());
    drop(port);
    assert_eq!(wait_detached(&pair.host), None);
}

/// What the CNI plugin does to a pod's veth end, checked against `ethtool -k` as the oracle.
#[test]
fn tx_offloads_can_be_read_and_disabled() {
    let pair = NetPair::new();
    let before = crate::tx_offloads(&pair.host).expect("read offloads");
    assert!(
        before.checksum && before.tso && before.gso,
        "veth default: {before:?}"
    );
    crate::disable_tx_offloads(&pair.host).expect("disable");
    let after = crate::tx_offloads(&pair.host).expect("read offloads");
    assert!(
        !after.checksum && !after.tso && !after.gso && !after.other_segmentation,
        "{after:?}"
    );
    let out = Command::new("ethtool")
        .args(["-k", &pair.host])
        .output()
        .expect("ethtool -k");
    let text = String::from_utf8_lossy(&out.stdout);
    for feature in [
        "tx-checksumming: off",
        "tcp-segmentation-offload: off",
        "generic-segmentation-offload: off",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(feature)),
            "ethtool -k lacks {feature:?}:\n{text}"
        );
    }
}

#[test]
fn open_errors_are_typed() {
    assert!(matches!(
        XskPort::open("psx-absent0", &XskConfig::default()),
        Err(XskError::NoInterface { .. })
    ));
    let bad = XskConfig {
        frame_size: 3000,
        ..XskConfig::default()
    };
    assert!(matches!(
        XskPort::open("lo", &bad),
        Err(XskError::Config(_))
    ));
    let bad = XskConfig {
        rx_ring_size: 100,
        ..XskConfig::default()
    };
    assert!(matches!(
        XskPort::open("lo", &bad),
        Err(XskError::Config(_))
    ));
}

/// 100 000 frames go from port A (host end) to port B (peer end, another namespace), which echoes
/// each back. The UMEMs are small (256 frames), so every frame is recycled hundreds of times; at
/// the end every frame of both UMEMs is counted in exactly one place.
#[test]
fn stress_forwarding_keeps_every_frame_accounted_for() {
    const TOTAL: u32 = 100_000;
    const BATCH: u32 = 32;
    let pair = NetPair::new();
    let config = XskConfig {
        frame_count: 256,
        rx_ring_size: 128,
        tx_ring_size: 64,
        fill_ring_size: 128,
        completion_ring_size: 64,
        ..XskConfig::default()
    };
    let mut a = XskPort::open(&pair.host, &config).expect("open A");
    let peer_config = config.clone();
    let mut b = pair.in_ns(move |peer| XskPort::open(peer, &peer_config).expect("open B"));

    let mut sent = 0u32;
    let mut echoed_back = 0u32;
    let mut last_seq = None;
    let mut scratch: Vec<Vec<u8>> = (0..64).map(|_| Vec::with_capacity(128)).collect();
    let mut rounds = 0;
    while sent < TOTAL && rounds < 2 * TOTAL / BATCH {
        rounds += 1;
        let round_start = sent;
        let round_end = (sent + BATCH).min(TOTAL);
        while sent < round_end {
            if !a.send(&test_frame(sent, 64)).expect("A send") {
                break;
            }
            sent += 1;
        }
        a.flush().expect("A flush");
        let expect = echoed_back + (sent - round_start);
        let mut idle = 0;
        while echoed_back < expect && idle < 20_000 {
            let mut n = 0;
            b.recv(64, &mut |f| {
                scratch[n].clear();
                scratch[n].extend_from_slice(f);
                n += 1;
            })
            .expect("B recv");
            for f in &scratch[..n] {
                if seq_of(f).is_some() {
                    b.send(f).expect("B send");
                }
            }
            b.flush().expect("B flush");
            let before = echoed_back;
            a.recv(64, &mut |f| {
                if let Some(seq) = seq_of(f) {
                    assert!(
                        last_seq.is_none_or(|l| seq > l),
                        "echoes arrive in order, never twice"
                    );
                    last_seq = Some(seq);
                    echoed_back += 1;
                }
            })
            .expect("A recv");
            a.flush().expect("A flush");
            idle = if echoed_back == before && n == 0 {
                idle + 1
            } else {
                0
            };
        }
    }
    assert!(
        echoed_back >= TOTAL * 99 / 100,
        "only {echoed_back} of {TOTAL} echoes came back"
    );

    for port in [&mut a, &mut b] {
        drain_tx(port);
        let frames = port
            .check_frames()
            .expect("every frame in exactly one place");
        assert_eq!(frames.total, 256);
        assert_eq!(
            (frames.user, frames.tx),
            (0, 0),
            "{}: {frames:?}",
            port.name()
        );
        assert_eq!(frames.free + frames.fill, 256);
        let xdp = port.xdp_statistics().expect("stats");
        assert_eq!((xdp.rx_invalid_descs, xdp.tx_invalid_descs), (0, 0));
        assert_eq!(port.stats().rx_dropped, 0, "no descriptor was refused");
    }
    assert!(a.stats().tx_packets >= u64::from(TOTAL));
    assert!(b.stats().tx_packets >= u64::from(echoed_back));
}

const CHILD_ENV: &str = "PSX_XDP_TEST_CHILD_IFACE";

/// Kills a child process on drop, so a failing assertion does not leave it running.
struct ChildGuard(std::process::Child);
impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process holding a port is SIGKILLed: the kernel closes its bpf_link, so no XDP program stays
/// attached, and a new port binds the same queue (EBUSY retried while the old socket dies).
/// The test binary re-executes itself with `CHILD_ENV` set to play the victim.
#[test]
fn sigkill_leaves_nothing_attached() {
    if let Ok(iface) = std::env::var(CHILD_ENV) {
        let port = XskPort::open(&iface, &small_config()).expect("child open");
        println!("PSX-READY {}", port.mode());
        std::thread::sleep(Duration::from_secs(30));
        return;
    }
    let pair = NetPair::new();
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args([
            "nettest::sigkill_leaves_nothing_attached",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &pair.host)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("PSX-READY"));
    assert!(ready.is_some(), "child never opened its port");
    assert!(
        attached_xdp_program(&pair.host).unwrap().is_some(),
        "child's program attached"
    );

    child.0.kill().expect("SIGKILL");
    let status = child.0.wait().expect("wait");
    assert!(!status.success());
    let attached = wait_detached(&pair.host);
    assert_eq!(
        attached, None,
        "the kernel detached the killed process's program"
    );

    let mut port = XskPort::open(&pair.host, &small_config()).expect("reopen after SIGKILL");
    let peer = pair.peer_socket();
    peer.send(&test_frame(1, 80)).unwrap();
    assert_eq!(
        recv_test_frames(&mut port, 1, Duration::from_secs(3)).len(),
        1,
        "new port works"
    );
}

/// Counts heap allocations made by the current thread (the whole test binary uses it; other
/// threads' allocations do not disturb a test that reads its own thread's count).
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged;
// the counter is a const-initialised thread-local `Cell`, whose access never allocates.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System` through this allocator.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> u64 {
    ALLOCATIONS.with(std::cell::Cell::get)
}

/// The per-packet calls of `XskPort` (recv, send, flush) and `MemoryPort` do not allocate once
/// warm: frames cross the trait by copy into preallocated memory.
#[test]
fn steady_state_port_calls_do_not_allocate() {
    let pair = NetPair::new();
    let peer = pair.peer_socket();
    let mut port = XskPort::open(&pair.host, &small_config()).expect("open");
    let frames: Vec<Vec<u8>> = (0..32).map(|i| test_frame(i, 64 + i as usize)).collect();
    let mut copy = [0u8; 2048];
    let mut peer_buf = [0u8; 2048];
    let mut forwarded = 0u64;
    let mut round = |port: &mut XskPort| {
        for f in &frames {
            peer.send(f).expect("peer send");
        }
        let mut got = 0;
        for _ in 0..1000 {
            let mut lens = [0usize; 64];
            let mut n = 0;
            port.recv(64, &mut |f| {
                if seq_of(f).is_some() {
                    copy[..f.len()].copy_from_slice(f);
                    lens[n] = f.len();
                    n += 1;
                }
            })
            .expect("recv");
            for &len in &lens[..n] {
                assert!(port.send(&copy[..len]).expect("send"));
            }
            port.flush().expect("flush");
            got += n;
            if got >= frames.len() {
                break;
            }
        }
        // Let the peer read what came back so its socket buffer never fills.
        let mut back = got;
        while back > 0 {
            match peer.recv(&mut peer_buf).expect("peer recv") {
                Some(n) if seq_of(&peer_buf[..n]).is_some() => back -= 1,
                Some(_) => {}
                None => break,
            }
        }
        forwarded += frames.len() as u64;
    };
    for _ in 0..10 {
        round(&mut port);
    }
    let before = allocations();
    for _ in 0..50 {
        round(&mut port);
    }
    assert_eq!(
        allocations() - before,
        0,
        "XskPort allocated in steady state"
    );
    assert!(forwarded >= 60 * 32);
    assert!(port.stats().rx_packets >= 60 * 32 && port.stats().tx_packets >= 60 * 32);

    let (mut a, mut b) = crate::MemoryPort::pair("a", "b", 64);
    let before = allocations();
    for i in 0..10_000u32 {
        assert!(a.send(&frames[(i % 32) as usize]).unwrap());
        let mut n = 0;
        b.recv(64, &mut |f| {
            copy[..f.len()].copy_from_slice(f);
            n = f.len();
        })
        .unwrap();
        assert!(b.send(&copy[..n]).unwrap());
        assert_eq!(a.recv(64, &mut |_| {}).unwrap(), 1);
    }
    assert_eq!(
        allocations() - before,
        0,
        "MemoryPort allocated in steady state"
    );
}
