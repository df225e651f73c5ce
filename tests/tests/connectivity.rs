//! Pods talking through the real daemon: ARP answered by the switch, ping both ways, a TCP
//! transfer whose sha256 is checked by the receiver, UDP request/reply, and two workers handing
//! frames to each other. Each test builds its own namespaces (unique names) and cleans up.

use podswitch_e2e::{GATEWAY, Node, ROUTER_MAC, pod};

#[test]
fn arp_and_ping_both_ways() -> anyhow::Result<()> {
    // a routes everything via the gateway (ARP for 10.30.0.1); b resolves a directly (ARP for a
    // peer's address, answered by the switch on the peer's behalf).
    let mut node = Node::up(vec![pod("a", 1, "red").via_gateway(), pod("b", 2, "red")])?;
    node.start()?;
    let (a, b) = (node.pod("a"), node.pod("b"));
    assert!(a.ping(&b.ip, 3)?, "a -> b ping");
    assert!(b.ping(&a.ip, 3)?, "b -> a ping");
    assert_eq!(
        a.neighbour(GATEWAY)?.as_deref(),
        Some(ROUTER_MAC),
        "a's gateway entry"
    );
    assert_eq!(
        b.neighbour(&a.ip)?.as_deref(),
        Some(ROUTER_MAC),
        "b's entry for a"
    );
    let s = node.wait_stats("neighbour replies and echo traffic", |s| {
        s["neighbor_replies"].as_u64() >= Some(2)
            && s["ports"]["2"]["tx_packets"].as_u64() >= Some(3)
    })?;
    assert_eq!(podswitch_e2e::drops(&s, "spoofed_ip"), 0);
    Ok(())
}

#[test]
fn tcp_transfer_is_intact() -> anyhow::Result<()> {
    let mut node = Node::up(vec![pod("cli", 1, "blue"), pod("srv", 2, "blue")])?;
    node.start()?;
    let srv = node.pod("srv");
    let _server = srv.tcp_server(5001)?;
    let secs = node
        .pod("cli")
        .tcp_send(&srv.ip, 5001, 4 << 20, 10.0)?
        .expect("connection succeeds");
    eprintln!("4 MiB in {secs:.3} s = {:.0} Mbit/s", 32.0 / secs);
    let s = node.wait_stats("the transfer's packets", |s| {
        s["ports"]["2"]["rx_packets"].as_u64() >= Some(100)
            && s["conntrack"]["commits"].as_u64() >= Some(1)
    })?;
    // Established packets take the flow cache, not the slow path.
    assert!(
        s["cache"]["hits"].as_u64() > s["cache"]["misses"].as_u64(),
        "{s:#}"
    );
    assert_eq!(podswitch_e2e::drops(&s, "conntrack_invalid"), 0, "{s:#}");
    Ok(())
}

#[test]
fn udp_request_reply() -> anyhow::Result<()> {
    let mut node = Node::up(vec![pod("u1", 1, "green"), pod("u2", 2, "green")])?;
    node.start()?;
    let u2 = node.pod("u2");
    let _server = u2.udp_server(5353)?;
    assert!(
        node.pod("u1").udp_requests(&u2.ip, 5353, 20)?,
        "20 UDP requests answered"
    );
    Ok(())
}

#[test]
fn two_workers_hand_frames_across() -> anyhow::Result<()> {
    let mut node = Node::up(vec![
        pod("w0", 1, "multi").on_worker(0),
        pod("w1", 2, "multi").on_worker(1),
    ])?;
    // Pinned to CPUs 0 and 1 when the machine has two (pinning failures are only logged).
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    node.workers_toml = if cpus >= 2 {
        "count = 2\ncpus = [0, 1]\n".into()
    } else {
        "count = 2\n".into()
    };
    node.start()?;
    let (w0, w1) = (node.pod("w0"), node.pod("w1"));
    assert!(w0.ping(&w1.ip, 2)?, "ping across workers");
    let _server = w1.tcp_server(5002)?;
    assert!(
        w0.tcp_send(&w1.ip, 5002, 1 << 20, 10.0)?.is_some(),
        "TCP across workers"
    );
    let s = node.wait_stats("lane traffic both ways", |s| {
        s["runner"]["lane_sent"].as_u64() >= Some(100) && s["realised"] == serde_json::json!([1, 1])
    })?;
    // A full lane is a counted drop (TCP retransmits), not a failure: on a loaded machine the
    // receiving worker can be descheduled for a moment. Most frames must still cross.
    let (sent, full) = (
        s["runner"]["lane_sent"].as_u64().unwrap_or(0),
        s["runner"]["lane_full"].as_u64(),
    );
    assert!(full.is_some_and(|f| f < sent / 10), "{s:#}");
    assert_eq!(s["ports"]["1"]["worker"], 0);
    assert_eq!(s["ports"]["2"]["worker"], 1);
    if cpus >= 2 {
        let log = node.daemon().log_text();
        // Each worker tried its CPU (the allowed set may exclude 0 or 1: then it says so).
        let tried =
            log.matches("worker pinned").count() + log.matches("CPU pinning failed").count();
        assert_eq!(tried, 2, "{log}");
    }
    Ok(())
}
