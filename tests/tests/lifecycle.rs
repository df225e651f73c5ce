//! The daemon's life: SIGKILL leaves no XDP program attached and a restart works; SIGHUP reloads
//! the config (a new pod and a new policy take effect, generation 2 realised by the workers);
//! SIGTERM stops cleanly (exit 0, programs detached, final counters written); an idle adaptive
//! daemon sleeps rather than spins.

use std::time::Duration;

use podswitch_e2e::{Node, drops, pod};

#[test]
fn sigkill_leaves_nothing_attached_and_restart_works() -> anyhow::Result<()> {
    let mut node = Node::up(vec![pod("k1", 1, "k"), pod("k2", 2, "k")])?;
    node.start()?;
    let peer = node.pod("k2").ip.clone();
    assert!(node.pod("k1").ping(&peer, 1)?);
    assert_eq!(
        node.xdp_attached()?.len(),
        2,
        "both ports attached while running"
    );
    node.daemon().signal("KILL")?;
    assert!(
        node.daemon().wait_exit(Duration::from_secs(5))?.is_some(),
        "killed"
    );
    // The kernel closes the bpf_link fds of a dead process: programs detach with them.
    let mut attached = node.xdp_attached()?;
    for _ in 0..20 {
        if attached.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        attached = node.xdp_attached()?;
    }
    assert!(
        attached.is_empty(),
        "still attached after SIGKILL: {attached:?}"
    );
    assert!(!node.pod("k1").ping(&peer, 1)?, "no switch, no traffic");
    node.start()?;
    assert!(node.pod("k1").ping(&peer, 2)?, "restarted daemon forwards");
    Ok(())
}

#[test]
fn sighup_reloads_and_sigterm_stops_cleanly() -> anyhow::Result<()> {
    let mut node = Node::up(vec![
        pod("h1", 1, "hup"),
        pod("h2", 2, "hup"),
        pod("h3", 3, "hup"),
    ])?;
    // h3 exists but is not in the first config.
    let h3 = node.pods.pop().expect("h3");
    node.start()?;
    node.pods.push(h3);
    let (h1, h2, h3) = (node.pod("h1"), node.pod("h2"), node.pod("h3"));
    let _srv = h2.tcp_server(7000)?;
    assert!(
        h1.tcp_send(&h2.ip, 7000, 1000, 5.0)?.is_some(),
        "open before the policy"
    );
    assert!(!h3.ping(&h2.ip, 1)?, "h3 has no switch port yet");

    node.policy_yaml = Some(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: { name: h2-closed, namespace: hup }\n\
         spec: { podSelector: { matchLabels: { app: h2 } }, policyTypes: [Ingress] }\n"
            .into(),
    );
    node.write_config()?;
    node.daemon().signal("HUP")?;
    node.wait_stats("generation 2 realised", |s| {
        s["generation"] == 2 && s["realised"] == serde_json::json!([2])
    })?;
    let (h1, h2, h3) = (node.pod("h1"), node.pod("h2"), node.pod("h3"));
    assert!(h3.ping(&h1.ip, 2)?, "the new port forwards after reload");
    assert!(
        h1.tcp_send(&h2.ip, 7000, 1000, 2.0)?.is_none(),
        "the new policy denies"
    );
    node.wait_stats("the denial", |s| drops(s, "policy_denied") >= 1)?;

    // A broken config changes nothing.
    std::fs::write(node.config_path(), "this is not toml")?;
    node.daemon().signal("HUP")?;
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        node.pod("h3").ping(&node.pod("h1").ip, 1)?,
        "still running the old config"
    );

    node.daemon().signal("USR1")?;
    std::thread::sleep(Duration::from_millis(300));
    node.daemon().signal("TERM")?;
    let code = node.daemon().wait_exit(Duration::from_secs(10))?;
    assert_eq!(
        code,
        Some(0),
        "graceful exit:\n{}",
        node.daemon().log_text()
    );
    assert!(
        node.xdp_attached()?.is_empty(),
        "programs detached on SIGTERM"
    );
    let log = node.daemon().log_text();
    assert!(log.contains("reload failed"), "{log}");
    assert!(log.contains("SIGUSR1: counters"), "{log}");
    assert!(log.contains("stopped:"), "{log}");
    Ok(())
}

#[test]
fn idle_adaptive_daemon_sleeps() -> anyhow::Result<()> {
    let mut node = Node::up(vec![pod("i1", 1, "idle"), pod("i2", 2, "idle")])?;
    node.start()?;
    let first = node.wait_stats("a report", |s| s["runner"]["sleeps"].as_u64().is_some())?;
    std::thread::sleep(Duration::from_secs(1));
    let later = node.stats()?;
    let (a, b) = (
        first["runner"]["sleeps"].as_u64().unwrap_or(0),
        later["runner"]["sleeps"].as_u64().unwrap_or(0),
    );
    // Woken by the 100 ms housekeeping timer and the 200 ms report: a few sleeps per second,
    // not millions of spins (those would count as loop passes without sleeping).
    assert!(b > a, "the idle worker sleeps: {a} -> {b}");
    assert!(b - a < 1000, "and stays asleep between timers: {a} -> {b}");
    Ok(())
}

#[test]
fn json_logs_are_one_object_per_line() -> anyhow::Result<()> {
    let mut node = Node::up(vec![pod("j1", 1, "json")])?;
    node.args = vec!["--log-format".into(), "json".into()];
    node.start()?;
    node.daemon().signal("TERM")?;
    assert_eq!(node.daemon().wait_exit(Duration::from_secs(10))?, Some(0));
    let log = node.daemon().log_text();
    let mut lines = 0;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| anyhow::anyhow!("not JSON ({e}): {line}"))?;
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        lines += 1;
    }
    assert!(lines >= 3, "{log}");
    assert!(log.contains("\"podswitchd running\""), "{log}");
    Ok(())
}
