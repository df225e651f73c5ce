//! Control-plane figures through the real socket (no assertions; prints numbers):
//!
//! 1. endpoint adds per second, one client and 8 concurrent clients (each add persisted with
//!    fsync before it is answered; concurrent adds share commits);
//! 2. policy apply → realised by every worker, with 1 000 policies installed: two fake workers poll
//!    the `StateCell` as a datapath worker would between batches and report to `Realised`; the
//!    client applies one changed policy and `wait`s for its generation. Prints p50/p99/max.
//!
//! `cargo run --release -p podswitch-control --example measure [-- <adds> <samples> <state dir>]`.
//! The state directory defaults to a temp dir (its filesystem decides the fsync cost).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use podswitch_control::proto::{EndpointSpec, Family, Kind, Labels, Mac};
use podswitch_control::{
    Client, Controller, ControllerConfig, NoDataplane, Realised, Server, ServerConfig,
};

fn spec(ns: &str, i: u32) -> EndpointSpec {
    EndpointSpec {
        namespace: ns.into(),
        name: format!("p{i}"),
        kind: Kind::Pod,
        interface: format!("v{ns}{i}"),
        port: None,
        mac: Mac([2, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8, 1]),
        ips: vec![],
        allocate: vec![Family::Ipv4],
        labels: [("app".to_owned(), format!("a{}", i % 50))].into(),
        ports: vec![],
        mtu: None,
    }
}

fn policy(ns: &str, i: usize, version: usize) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np{i}, namespace: {ns}}}\nspec:\n  podSelector: {{matchLabels: {{app: a{}}}}}\n  ingress:\n  - from: [{{podSelector: {{matchLabels: {{app: a{}}}}}}}]\n    ports: [{{protocol: TCP, port: {}}}]\n",
        i % 50,
        (i + version) % 50,
        1000 + version % 1000
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let adds: u32 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let samples: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = args
        .get(3)
        .map_or_else(|| tmp.path().join("state"), std::path::PathBuf::from);
    let socket = tmp.path().join("podswitch.sock");

    let mut cfg = ControllerConfig::example();
    cfg.state_dir = Some(state_dir.clone());
    let realised = Realised::new(2);
    let controller = Controller::open(cfg, Arc::new(NoDataplane), Arc::clone(&realised)).unwrap();
    let cell = controller.cell();
    let mut server = Server::bind(ServerConfig::new(&socket), controller).unwrap();
    let stop = server.shutdown_handle();
    let server_thread = thread::spawn(move || server.run().unwrap());

    // Two fake workers: refresh between "batches" (every 50 µs) and report.
    let done = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let mut reader = cell.reader();
            let realised = Arc::clone(&realised);
            let done = Arc::clone(&done);
            thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if let Some(s) = reader.refresh() {
                        realised.report(w, s.generation());
                    }
                    thread::sleep(Duration::from_micros(50));
                }
            })
        })
        .collect();

    let mut c = Client::connect(&socket).unwrap();
    c.namespace_create("bench", Labels::new(), Some("10.0.0.0/12"), None)
        .unwrap();
    c.namespace_create("conc", Labels::new(), Some("10.32.0.0/12"), None)
        .unwrap();

    // 1a. One client, sequential adds.
    let t = Instant::now();
    for i in 0..adds {
        c.endpoint_add(spec("bench", i)).unwrap();
    }
    let one = f64::from(adds) / t.elapsed().as_secs_f64();
    println!(
        "endpoint_add, 1 client : {adds} adds in {:?} = {one:.0}/s",
        t.elapsed()
    );

    // 1b. One client, pipelined in batches of 64 (one commit per batch).
    c.namespace_create("pipe", Labels::new(), Some("10.64.0.0/12"), None)
        .unwrap();
    let t = Instant::now();
    for chunk in 0..adds.div_ceil(64) {
        let reqs = (chunk * 64..((chunk + 1) * 64).min(adds))
            .map(|i| podswitch_control::Request::EndpointAdd(spec("pipe", i)))
            .collect();
        for r in c.call_pipelined(reqs).unwrap() {
            r.unwrap();
        }
    }
    let piped = f64::from(adds) / t.elapsed().as_secs_f64();
    println!(
        "endpoint_add, 1 client pipelined x64: {adds} adds in {:?} = {piped:.0}/s",
        t.elapsed()
    );

    // 1c. Eight clients at once.
    let per = adds / 8;
    let t = Instant::now();
    let clients: Vec<_> = (0..8u32)
        .map(|k| {
            let socket = socket.clone();
            thread::spawn(move || {
                let mut c = Client::connect(&socket).unwrap();
                for i in 0..per {
                    c.endpoint_add(spec("conc", k * 1_000_000 + i)).unwrap();
                }
            })
        })
        .collect();
    for h in clients {
        h.join().unwrap();
    }
    let many = f64::from(per * 8) / t.elapsed().as_secs_f64();
    println!(
        "endpoint_add, 8 clients: {} adds in {:?} = {many:.0}/s",
        per * 8,
        t.elapsed()
    );

    // 2. 1 000 policies installed, then apply one changed policy and wait for realisation.
    let t = Instant::now();
    for chunk in 0..10 {
        let text: Vec<String> = (chunk * 100..(chunk + 1) * 100)
            .map(|i| policy("bench", i, 0))
            .collect();
        c.policy_apply(&text.join("---\n")).unwrap();
    }
    println!("installed 1000 policies in {:?}", t.elapsed());
    let mut lat = Vec::with_capacity(samples);
    for s in 0..samples {
        let t = Instant::now();
        let g = c.policy_apply(&policy("bench", s % 1000, s + 1)).unwrap();
        c.wait(g, Duration::from_secs(10)).unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "policy apply -> realised (1000 installed, {} samples): p50 {:?}  p99 {:?}  max {:?}",
        lat.len(),
        q(0.50),
        q(0.99),
        lat[lat.len() - 1]
    );
    let Ok(podswitch_control::Reply::Counters(k)) = c.call(podswitch_control::Request::Counters)
    else {
        panic!("counters")
    };
    let h = &k.realisation;
    println!(
        "publish -> realised by both workers (server histogram, {} samples): p50 <= {:?}  p99 <= {:?}  max {} us",
        h.samples,
        podswitch_control::publish::quantile_bound(h, 0.5),
        podswitch_control::publish::quantile_bound(h, 0.99),
        h.max_us
    );
    let state_bytes = std::fs::metadata(state_dir.join("state.json")).map_or(0, |m| m.len());
    println!("state file: {state_bytes} bytes");
    // 3. CPU cost of one commit's parts with this much state, in memory (no disk).
    let mut mem = Controller::in_memory(None).unwrap();
    mem.handle(podswitch_control::Request::NamespaceCreate {
        name: "bench".into(),
        labels: Labels::new(),
        subnet_v4: Some(podswitch_control::Subnet::parse("10.0.0.0/12").unwrap()),
        subnet_v6: None,
    })
    .unwrap();
    for i in 0..3 * adds {
        mem.handle(podswitch_control::Request::EndpointAdd(spec("bench", i)))
            .unwrap();
    }
    let text: Vec<String> = (0..1000).map(|i| policy("bench", i, 0)).collect();
    mem.handle(podswitch_control::Request::PolicyApply {
        text: text.join("---\n"),
    })
    .unwrap();
    let t = Instant::now();
    let mut bytes = 0;
    for _ in 0..20 {
        bytes = podswitch_control::store::encode(mem.desired())
            .unwrap()
            .len();
    }
    println!(
        "encode desired state ({bytes} bytes): {:?}",
        t.elapsed() / 20
    );
    let t = Instant::now();
    for s in 0..50 {
        mem.handle(podswitch_control::Request::PolicyApply {
            text: policy("bench", s, s + 1),
        })
        .unwrap();
    }
    println!(
        "policy apply in memory (validate, engine, build State, publish): {:?}",
        t.elapsed() / 50
    );
    done.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    stop.shutdown();
    server_thread.join().unwrap();
}
