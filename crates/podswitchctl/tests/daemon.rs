//! The built `podswitchctl` against the real control server, run in-process on a temporary
//! socket (in-memory controller; a small test dataplane answers the flow-cache reads). Every
//! expectation is derived from the objects written here, not from the program's output.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

use podswitch_control::proto::FlowRecord;
use podswitch_control::{
    Controller, ControllerConfig, Dataplane, Realised, Server, ServerConfig, ShutdownHandle,
};
use serde_json::Value;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Answers flow dumps with two fixed entries; everything else "not available".
struct TestDataplane;

impl Dataplane for TestDataplane {
    fn flows(&self, max: usize) -> Option<Vec<FlowRecord>> {
        let all = (0..2).map(|w| FlowRecord {
            worker: w,
            key: format!("tcp 10.1.0.2:4000{w} -> 10.2.0.2:5432"),
            action: "output port 2".to_owned(),
            generation: 7,
        });
        Some(all.take(max).collect())
    }

    fn flush_flows(&self) -> Option<usize> {
        Some(2)
    }
}

struct Daemon {
    dir: PathBuf,
    socket: PathBuf,
    stop: ShutdownHandle,
    thread: Option<JoinHandle<()>>,
}

impl Daemon {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "psctl-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("ctl.sock");
        let controller = Controller::open(
            ControllerConfig::example(),
            Arc::new(TestDataplane),
            Realised::new(0),
        )
        .unwrap();
        let mut server = Server::bind(ServerConfig::new(&socket), controller).unwrap();
        let stop = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.run().unwrap());
        Self {
            dir,
            socket,
            stop,
            thread: Some(thread),
        }
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs `podswitchctl <args> --socket <ours>`: (success, stdout, stderr).
    fn ctl(&self, args: &[&str]) -> (bool, String, String) {
        ctl_at(&self.socket, args)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let (ok, out, err) = self.ctl(&a);
        assert!(ok, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }
}

fn ctl_at(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_podswitchctl"))
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const CLUSTER: &str = r#"# Two namespaces, a VTEP, two local pods, one remote endpoint and a policy.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-prod, namespace: db}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {env: prod}}}]
    ports: [{port: pg}]
---
apiVersion: v1
kind: Namespace
metadata:
  name: web
  labels: {env: prod}
  annotations: {podswitch.io/subnet-v4: 10.1.0.0/24}
---
apiVersion: v1
kind: Namespace
metadata:
  name: db
  annotations: {podswitch.io/subnet-v4: 10.2.0.0/24}
---
apiVersion: podswitch.io/v1
kind: Vtep
spec: {id: 3, ip: 192.0.2.9, next_hop_mac: "02:00:00:00:00:09", vni: 100}
---
apiVersion: podswitch.io/v1
kind: Endpoint
metadata: {name: web-0, namespace: web, labels: {app: web}}
spec: {interface: pswa, mac: "02:00:00:00:01:01", allocate: [ipv4]}
---
apiVersion: podswitch.io/v1
kind: Endpoint
metadata: {name: db-0, namespace: db, labels: {app: db}}
spec:
  interface: pswb
  mac: "02:00:00:00:01:02"
  allocate: [ipv4]
  ports: [{name: pg, port: 5432}]
---
apiVersion: podswitch.io/v1
kind: RemoteEndpoint
metadata: {name: db-far, namespace: db, labels: {app: db}}
spec: {vtep: 3, mac: "02:00:00:00:02:01", ips: [10.2.0.50], ports: [{name: pg, port: 5432}]}
"#;

#[test]
fn apply_get_trace_delete_round_trip() {
    let d = Daemon::start();
    let f = d.file("cluster.yaml", CLUSTER);
    let (ok, out, err) = d.ctl(&["apply", "-f", f.to_str().unwrap(), "--wait"]);
    assert!(ok, "{err}");
    // Dependency order, whatever the file order.
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "namespace/web created",
            "namespace/db created",
            "vtep/3 created",
            "endpoint/web/web-0 created",
            "endpoint/db/db-0 created",
            "remoteendpoint/db/db-far created",
            "networkpolicy/db/db-from-prod created",
            "realised generation 7",
        ]
    );

    // get: tables and JSON agree with what was applied.
    let (ok, table, _) = d.ctl(&["get", "namespaces"]);
    assert!(ok);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][..3], ["NAME", "SUBNET-V4", "SUBNET-V6"]);
    assert!(
        rows.contains(&vec![
            "web",
            "10.1.0.0/24",
            "-",
            "10.1.0.1",
            "1",
            "1",
            "env=prod"
        ]),
        "{table}"
    );
    // The remote's address is not allocated from the pool (it may be another node's).
    assert!(
        rows.contains(&vec!["db", "10.2.0.0/24", "-", "10.2.0.1", "1", "1", "-"]),
        "{table}"
    );
    let eps = d.json(&["get", "endpoints"]);
    let eps = eps.as_array().unwrap();
    assert_eq!(eps.len(), 2);
    let by_name = |n: &str| eps.iter().find(|e| e["name"] == n).unwrap().clone();
    // First allocation in each subnet: network .0 and gateway .1 are never handed out.
    assert_eq!(by_name("web-0")["ips"], serde_json::json!(["10.1.0.2"]));
    assert_eq!(by_name("db-0")["ips"], serde_json::json!(["10.2.0.2"]));
    assert_eq!(by_name("db-0")["interface"], "pswb");
    let only_web = d.json(&["get", "ep", "-n", "web"]);
    assert_eq!(only_web.as_array().unwrap().len(), 1);
    let (ok, yaml, _) = d.ctl(&["get", "vteps", "-o", "yaml"]);
    assert!(ok);
    assert!(
        yaml.contains("id: 3") && yaml.contains("vni: 100"),
        "{yaml}"
    );
    let pols = d.json(&["get", "netpol"]);
    assert_eq!(pols[0]["name"], "db-from-prod");
    assert_eq!(pols[0]["ingress"], true);
    assert_eq!(pols[0]["egress"], false);
    let remotes = d.json(&["get", "remotes", "-n", "db"]);
    assert_eq!(remotes[0]["ips"], serde_json::json!(["10.2.0.50"]));

    // trace: the policy admits env=prod namespaces on the named port `pg` (5432) only.
    let t = d.json(&[
        "trace", "--src", "10.1.0.2", "--dst", "10.2.0.2", "--port", "5432",
    ]);
    assert_eq!(t["allowed"], true, "{t}");
    assert_eq!(t["src_endpoint"], "web/web-0");
    assert_eq!(t["dst_endpoint"], "db/db-0");
    let t = d.json(&[
        "trace", "--src", "10.1.0.2", "--dst", "10.2.0.2", "--port", "80",
    ]);
    assert_eq!(t["allowed"], false, "{t}");
    let t = d.json(&[
        "trace",
        "--src",
        "10.1.0.2",
        "--dst",
        "10.2.0.50",
        "--port",
        "5432",
    ]);
    assert_eq!(t["allowed"], true, "{t}");
    assert!(t["route"].as_str().unwrap().contains("VTEP 3"), "{t}");
    let (ok, text, _) = d.ctl(&[
        "trace",
        "--src",
        "10.1.0.2",
        "--dst",
        "10.2.0.2",
        "--protocol",
        "udp",
        "--port",
        "5432",
    ]);
    assert!(ok);
    assert!(text.starts_with("web/web-0 -> db/db-0: DENIED"), "{text}");

    // Re-apply: nothing changes but the policy (always re-applied); a label edit relabels.
    let (ok, out, err) = d.ctl(&["apply", "-f", f.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out.matches(" unchanged").count(), 6, "{out}");
    assert!(
        out.contains("networkpolicy/db/db-from-prod configured"),
        "{out}"
    );
    let edited = CLUSTER.replace("labels: {app: web}", "labels: {app: web, tier: fe}");
    let f2 = d.file("edited.yaml", &edited);
    let applied = d.json(&["apply", "-f", f2.to_str().unwrap()]);
    let web0 = applied
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["object"] == "endpoint/web/web-0")
        .unwrap()
        .clone();
    assert_eq!(web0["action"], "configured");
    assert_eq!(by_labels(&d, "web-0"), "app=web,tier=fe");
    // A change that cannot be made in place is refused, naming the object.
    let moved = CLUSTER.replace("02:00:00:00:01:01", "02:00:00:00:01:99");
    let f3 = d.file("moved.yaml", &moved);
    let (ok, _, err) = d.ctl(&["apply", "-f", f3.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("moved.yaml: document 5 (line 28): endpoint/web/web-0"),
        "{err}"
    );
    assert!(err.contains("delete it first"), "{err}");

    // stats and wait.
    let s = d.json(&["stats"]);
    let g = s["generation"].as_u64().unwrap();
    assert!(g >= 9, "{s}");
    assert_eq!(s["dataplane"], false);
    let (ok, out, err) = d.ctl(&["wait", &g.to_string()]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("generation {g} realised")), "{out}");
    let (ok, _, err) = d.ctl(&["wait", "100000", "--timeout", "1"]);
    assert!(!ok);
    assert!(err.contains("never published"), "{err}");

    // flows through the dataplane; conntrack is not provided by this one.
    let (ok, out, _) = d.ctl(&["flows"]);
    assert!(ok);
    assert!(out.starts_with("WORKER  KEY"), "{out}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert_eq!(
        d.json(&["flows", "--max", "1"]).as_array().unwrap().len(),
        1
    );
    assert_eq!(d.json(&["flows", "--flush"])["flushed"], 2);
    let (ok, _, err) = d.ctl(&["conntrack", "list"]);
    assert!(!ok);
    assert!(err.contains("unsupported"), "{err}");

    // delete: each kind; errors say what is wrong.
    let (ok, _, err) = d.ctl(&["delete", "vtep", "3"]);
    assert!(!ok);
    assert!(
        err.contains("conflict") && err.contains("db/db-far"),
        "{err}"
    );
    for args in [
        ["delete", "remote", "db/db-far"],
        ["delete", "vtep", "3"],
        ["delete", "policy", "db/db-from-prod"],
        ["delete", "endpoint", "web/web-0"],
    ] {
        let (ok, out, err) = d.ctl(&args);
        assert!(ok, "{args:?}: {err}");
        assert!(out.starts_with("deleted (generation "), "{out}");
    }
    let (ok, _, err) = d.ctl(&["delete", "endpoint", "db-0", "-n", "db", "-o", "json"]);
    assert!(ok, "{err}");
    assert!(d.json(&["get", "endpoints"]).as_array().unwrap().is_empty());
    assert!(d.json(&["get", "policies"]).as_array().unwrap().is_empty());
    let (ok, _, err) = d.ctl(&["delete", "namespace", "nope"]);
    assert!(!ok);
    assert!(err.contains("not_found") && err.contains("nope"), "{err}");
    let (ok, _, err) = d.ctl(&["delete", "endpoint", "web-0"]);
    assert!(!ok);
    assert!(err.contains("NAMESPACE/NAME"), "{err}");
}

fn by_labels(d: &Daemon, name: &str) -> String {
    let (ok, table, _) = d.ctl(&["get", "endpoints"]);
    assert!(ok);
    let line = table
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap();
    line.split_whitespace().last().unwrap().to_owned()
}

#[test]
fn apply_errors_name_file_document_line_and_field_and_change_nothing() {
    let d = Daemon::start();
    // A local decoding error in document 2: nothing is sent, not even document 1.
    let bad = d.file(
        "bad.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\n# the endpoint\n\
         apiVersion: podswitch.io/v1\nkind: Endpoint\nmetadata: {name: a, namespace: ok}\n\
         spec: {interface: x, mac: \"02:00:00:00:00:05\", macc: 1}\n",
    );
    let (ok, _, err) = d.ctl(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("bad.yaml: document 2 (line 4)"), "{err}");
    assert!(err.contains("spec: unknown field `macc`"), "{err}");
    assert!(
        d.json(&["get", "namespaces"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    // YAML syntax errors carry the parser's position.
    let broken = d.file("broken.yaml", "apiVersion: v1\nkind: [Namespace\n");
    let (ok, _, err) = d.ctl(&["apply", "-f", broken.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("broken.yaml: document 1 (line 1): invalid YAML"),
        "{err}"
    );
    assert!(err.contains("line"), "{err}");

    // A daemon-side error: the daemon's field path, prefixed with where the object came from;
    // objects before it stay applied and are listed.
    let dir = d.dir.join("objs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("a.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.json"),
        r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
            "metadata":{"name":"p","namespace":"web"},
            "spec":{"podSelector":{},"ingress":[{"ports":[{"port":0}]}]}}"#,
    )
    .unwrap();
    std::fs::write(dir.join("ignored.txt"), "not an object file").unwrap();
    let (ok, _, err) = d.ctl(&["apply", "-f", dir.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("namespace/web created"), "{err}");
    assert!(
        err.contains("b.json: document 1: networkpolicy/web/p: invalid"),
        "{err}"
    );
    assert!(err.contains("spec.ingress[0].ports[0].port"), "{err}");
    assert_eq!(d.json(&["get", "namespaces"]).as_array().unwrap().len(), 1);
    assert!(d.json(&["get", "policies"]).as_array().unwrap().is_empty());

    // Unknown kinds are named.
    let pod = d.file(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
    );
    let (ok, _, err) = d.ctl(&["apply", "-f", pod.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("pod.yaml: document 1 (line 1): kind: v1 Pod is not applied here"),
        "{err}"
    );
}

#[test]
fn health_and_unreachable_daemon() {
    let d = Daemon::start();
    let h = d.json(&["health"]);
    assert_eq!(h["generation"], 0);
    assert_eq!(h["workers"], 0);
    let (ok, out, _) = d.ctl(&["health"]);
    assert!(ok);
    assert!(out.contains("0 namespaces, 0 endpoints"), "{out}");
    let (ok, _, err) = ctl_at(Path::new("/nonexistent/podswitch.sock"), &["get", "ns"]);
    assert!(!ok);
    assert!(
        err.contains("cannot connect to the daemon at /nonexistent/podswitch.sock"),
        "{err}"
    );
    // The offline policy tools are still there.
    let out = Command::new(env!("CARGO_BIN_EXE_podswitchctl"))
        .args(["policy", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("matrix"));
}
