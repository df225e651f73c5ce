//! Port benchmarks.
//!
//! `memory_echo_batch32`: a batch of 32 64-byte frames A → B → A over `MemoryPort::pair`: the cost
//! of the trait and the copies alone. `xsk_veth_echo_batch32_{native,generic}`: the same over two
//! `XskPort`s (XDP attached in that mode) on a veth pair (B's end inside a `psx-*` namespace), i.e. two AF_XDP hops per frame; the kernel's
//! veth/XDP path dominates (shared/AFXDP.md), so this compares designs on this machine rather than
//! measuring our code. Needs root; skipped with a message otherwise.
//! Run: `cargo bench -p podswitch-xdp --bench port -- --quick`.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use podswitch_xdp::{MemoryPort, Port, XdpMode, XskConfig, XskPort, enter_netns};

const BATCH: usize = 32;

fn frame(seq: u32) -> [u8; 64] {
    let mut f = [0u8; 64];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    f
}

fn ours(f: &[u8]) -> bool {
    f.len() >= 14 && f[12..14] == [0x88, 0xb5]
}

fn memory(c: &mut Criterion) {
    let (mut a, mut b) = MemoryPort::pair("a", "b", 64);
    let frames: Vec<[u8; 64]> = (0..BATCH as u32).map(frame).collect();
    let mut scratch = [[0u8; 64]; BATCH];
    let mut group = c.benchmark_group("port");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("memory_echo_batch32", |bench| {
        bench.iter(|| {
            for f in &frames {
                a.send(f).unwrap();
            }
            a.flush().unwrap();
            let mut n = 0;
            b.recv(BATCH, &mut |f| {
                scratch[n][..f.len()].copy_from_slice(f);
                n += 1;
            })
            .unwrap();
            for f in &scratch[..n] {
                b.send(f).unwrap();
            }
            b.flush().unwrap();
            a.recv(BATCH, &mut |f| {
                black_box(f);
            })
            .unwrap()
        });
    });
    group.finish();
}

/// A veth pair with one end in a fresh namespace; removed on drop.
struct NetPair {
    ns: String,
    host: String,
    peer: String,
}

impl NetPair {
    fn new() -> Option<Self> {
        let tag = std::process::id() % 10_000_000;
        let pair = Self {
            ns: format!("psx-bn{tag}"),
            host: format!("psx-bh{tag}"),
            peer: format!("psx-bp{tag}"),
        };
        let ok = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        let built = ok(&["netns", "add", &pair.ns])
            && ok(&[
                "link", "add", &pair.host, "type", "veth", "peer", "name", &pair.peer, "netns",
                &pair.ns,
            ])
            && ok(&["link", "set", &pair.host, "up"])
            && ok(&["-n", &pair.ns, "link", "set", &pair.peer, "up"]);
        built.then_some(pair)
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

fn xsk(c: &mut Criterion) {
    xsk_mode(c, XdpMode::Native, "xsk_veth_echo_batch32_native");
    xsk_mode(c, XdpMode::Generic, "xsk_veth_echo_batch32_generic");
}

fn xsk_mode(c: &mut Criterion, mode: XdpMode, name: &str) {
    let Some(pair) = NetPair::new() else {
        eprintln!("{name} skipped: cannot create namespaces (needs root)");
        return;
    };
    let config = XskConfig {
        frame_count: 1024,
        mode,
        ..XskConfig::default()
    };
    let mut a = match XskPort::open(&pair.host, &config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{name} skipped: {e}");
            return;
        }
    };
    let (ns, peer, cfg) = (pair.ns.clone(), pair.peer.clone(), config.clone());
    let mut b = std::thread::spawn(move || {
        enter_netns(Path::new(&format!("/run/netns/{ns}"))).expect("enter namespace");
        XskPort::open(&peer, &cfg).expect("open peer port")
    })
    .join()
    .expect("peer thread");

    let frames: Vec<[u8; 64]> = (0..BATCH as u32).map(frame).collect();
    let mut scratch = [[0u8; 64]; 64];
    let mut lost = 0u64;
    let mut group = c.benchmark_group("port");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(name, |bench| {
        bench.iter(|| {
            for f in &frames {
                a.send(f).unwrap();
            }
            a.flush().unwrap();
            let mut back = 0;
            let mut idle = 0;
            while back < BATCH && idle < 10_000 {
                let mut n = 0;
                b.recv(64, &mut |f| {
                    if ours(f) {
                        scratch[n][..f.len()].copy_from_slice(f);
                        n += 1;
                    }
                })
                .unwrap();
                for f in &scratch[..n] {
                    b.send(f).unwrap();
                }
                b.flush().unwrap();
                let got = a.recv(64, &mut |f| back += usize::from(ours(f))).unwrap();
                idle = if n == 0 && got == 0 { idle + 1 } else { 0 };
            }
            lost += (BATCH - back.min(BATCH)) as u64;
            back
        });
    });
    group.finish();
    eprintln!("{name}: {lost} frames lost; {:?}", a.frames());
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = memory, xsk }
criterion_main!(benches);
