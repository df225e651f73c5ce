//! `podswitchctl policy matrix` on configs/cluster.yaml + configs/policies.yaml, checked against
//! truth tables derived by hand from the NetworkPolicy semantics (not from this program's output).
//!
//! Derivation, per destination port (policy numbers as in configs/policies.yaml):
//! egress — x pods and z/a, z/b are not egress-isolated; y pods are isolated by #5 and allowed
//! UDP 53 anywhere (#6); y/a may reach pods of env=prod namespaces (x, z) on their named `http`
//! port (#7); y/c may reach 10.0.0.0/8 minus 10.1.0.0/16 (everything but x) on TCP 80-81 (#8);
//! z/c is isolated both ways with no rules (#10).
//! ingress — x is deny-all (#1) except: web x/a on its `http` (80) from anyone (#2), db x/b on
//! TCP 80 from web pods of env=prod namespaces, i.e. x/a and z/a (#3, AND peer), cache x/c on 81
//! from x's db pods, i.e. x/b (#4). y/b (db) takes its named `http` port, which is 81 on y/b, from
//! every pod (#9); y/a and y/c are not ingress-isolated. Every z pod takes anything from z pods
//! (#11); z/a also takes TCP 80 from app in {web, api} in namespaces with an env label (#12).
//! A pod always reaches itself.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const PODS: [&str; 9] = [
    "x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c",
];

// Rows: from (PODS order); columns: to. '.' allowed, 'X' denied.
const TCP_80: [&str; 9] = [
    "..X.X..XX", // x/a
    "..X.X.XXX", // x/b
    ".X..X.XXX", // x/c
    ".XX.XX.XX", // y/a
    "XXXX.XXXX", // y/b
    "XXX.X..XX", // y/c
    "..X.X....", // z/a
    ".XX.X....", // z/b
    "XXXXXXXX.", // z/c
];
const TCP_81: [&str; 9] = [
    ".XX...XXX", // x/a: x/a's http is 80, x/b takes only 80, x/c only from db
    "X.....XXX", // x/b reaches x/c (#4)
    "XX....XXX", // x/c
    "XXX.XXXXX", // y/a: y/b's http is 81, but y is not env=prod
    "XXXX.XXXX", // y/b
    "XXX...XXX", // y/c: reaches y/b on its named http (81); z/a takes 81 only from z
    "XXX......", // z/a
    "XXX......", // z/b
    "XXXXXXXX.", // z/c
];
const UDP_53: [&str; 9] = [
    ".XX.X.XXX",
    "X.X.X.XXX",
    "XX..X.XXX",
    "XXX.X.XXX",
    "XXX...XXX",
    "XXX.X.XXX",
    "XXX.X....",
    "XXX.X....",
    "XXXXXXXX.",
];

fn configs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_podswitchctl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn files() -> Vec<String> {
    let c = configs();
    vec![
        "-f".into(),
        c.join("cluster.yaml").display().to_string(),
        "-f".into(),
        c.join("policies.yaml").display().to_string(),
    ]
}

fn check(json: &Value, protocol: &str, port: u64, table: &[&str; 9]) {
    assert_eq!(json["protocol"], protocol);
    assert_eq!(json["port"], port);
    let m = json["matrix"].as_object().unwrap();
    assert_eq!(m.len(), 9);
    for (i, from) in PODS.iter().enumerate() {
        let row = m[*from].as_object().unwrap();
        assert_eq!(row.len(), 9);
        for (j, to) in PODS.iter().enumerate() {
            let want = table[i].as_bytes()[j] == b'.';
            assert_eq!(row[*to], want, "{protocol}/{port} {from} -> {to}");
        }
    }
}

fn matrix(extra: &[&str]) -> String {
    let mut args: Vec<String> = vec!["policy".into(), "matrix".into()];
    args.extend(files());
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = run(&args);
    assert!(ok, "{err}");
    out
}

#[test]
fn tcp_80_json_is_exactly_the_documented_shape() {
    let out = matrix(&["--protocol", "TCP", "--port", "80", "-o", "json"]);
    assert!(
        out.starts_with(r#"{"protocol":"TCP","port":80,"matrix":{"x/a":{"x/a":true,"#),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1);
    check(&serde_json::from_str(&out).unwrap(), "TCP", 80, &TCP_80);
}

#[test]
fn named_ports_and_udp() {
    // --port alone defaults the protocol to TCP.
    let out = matrix(&["--port", "81", "-o", "json"]);
    check(&serde_json::from_str(&out).unwrap(), "TCP", 81, &TCP_81);
    let out = matrix(&["--protocol", "UDP", "--port", "53", "-o", "json"]);
    check(&serde_json::from_str(&out).unwrap(), "UDP", 53, &UDP_53);
}

#[test]
fn without_port_one_table_per_port_found() {
    let out = matrix(&["-o", "json"]);
    let tables: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tables.len(), 3, "{out}");
    check(&tables[0], "TCP", 80, &TCP_80);
    check(&tables[1], "TCP", 81, &TCP_81);
    check(&tables[2], "UDP", 53, &UDP_53);
    // --protocol alone keeps that protocol's ports.
    let out = matrix(&["--protocol", "udp", "-o", "json"]);
    assert_eq!(out.lines().count(), 1);
    check(&serde_json::from_str(&out).unwrap(), "UDP", 53, &UDP_53);
}

#[test]
fn readable_table_and_directory_input() {
    let dir = configs().display().to_string();
    let (ok, out, err) = run(&["policy", "matrix", "-f", &dir, "--port", "80"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("TCP/80"), "{out}");
    assert_eq!(
        lines[1].split_whitespace().skip(1).collect::<Vec<_>>(),
        PODS
    );
    for (i, from) in PODS.iter().enumerate() {
        let cells: Vec<&str> = lines[2 + i].split_whitespace().collect();
        assert_eq!(cells[0], *from);
        let marks: String = cells[1..].concat();
        assert_eq!(marks, TCP_80[i], "row {from}");
    }
}

#[test]
fn trace_names_the_deciding_policies() {
    let dir = configs().display().to_string();
    let (ok, out, err) = run(&[
        "policy", "trace", "-f", &dir, "--from", "y/c", "--to", "y/b", "--port", "80",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("egress of source: allowed by y/api-egress-ipblock egress[0]"),
        "{out}"
    );
    assert!(
        out.contains("denied (isolated by y/db-ingress-named-port"),
        "{out}"
    );
    assert!(out.contains("verdict: denied"), "{out}");
}

#[test]
fn invalid_policy_names_object_and_field_and_fails() {
    let path = std::env::temp_dir().join(format!("podswitchctl-bad-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: x}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/40}\n",
    )
    .unwrap();
    let cluster = configs().join("cluster.yaml").display().to_string();
    let p = path.display().to_string();
    let (ok, _, err) = run(&["policy", "matrix", "-f", &cluster, "-f", &p, "--port", "80"]);
    std::fs::remove_file(&path).unwrap();
    assert!(!ok);
    assert!(err.contains("NetworkPolicy x/bad"), "{err}");
    assert!(
        err.contains("spec.ingress[0].from[0].ipBlock.cidr"),
        "{err}"
    );
    // Syntax errors name the file.
    let (ok, _, err) = run(&["policy", "matrix", "-f", "/nonexistent.yaml"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent.yaml"), "{err}");
}
