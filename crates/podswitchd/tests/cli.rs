//! The `podswitchd` binary's command line: `--check` validates the example configs (policy files
//! included) and refuses a broken one with a message naming the problem. (Being an integration
//! test, this also makes `cargo test` build the binary that the end-to-end tests start.)

use std::path::Path;
use std::process::Command;

fn podswitchd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_podswitchd"))
        .args(args)
        .output()
        .expect("podswitchd runs")
}

fn configs() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs"))
}

#[test]
fn check_accepts_the_example_configs() {
    for c in ["node.toml", "demo/node.toml"] {
        let path = configs().join(c);
        let o = podswitchd(&["--check", "--config", path.to_str().expect("utf-8 path")]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{c}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            out.contains("ok — 3 ports, 2 namespaces, 1 policy files"),
            "{c}: {out}"
        );
    }
}

#[test]
fn check_refuses_a_broken_config_with_its_reason() {
    let dir = std::env::temp_dir().join(format!("podswitchd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[node]\nrouter_mac = \"02:00:00:00:00:01\"\ngateway_v4 = \"10.0.0.1\"\n\
         [workers]\npoll = \"sometimes\"\n",
    )
    .expect("write");
    let o = podswitchd(&["--check", "--config", path.to_str().expect("utf-8 path")]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("sometimes"), "{err}");
}

#[test]
fn help_names_the_options() {
    let o = podswitchd(&["--help"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for opt in ["--config", "--log-format", "--stats-file", "--check"] {
        assert!(out.contains(opt), "{opt} missing from --help:\n{out}");
    }
}
