//! NetworkPolicy enforced on real connections: a YAML policy denies one connection (it really
//! fails) and allows another (it really succeeds, data intact); replies of an allowed connection
//! pass into a pod whose ingress is closed, while a new connection the other way is refused —
//! the stateful firewall at work. Counters record the denials and the rule that allowed.

use podswitch_e2e::{Node, drops, pod};

const POLICY: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: db-allow-web, namespace: backend }
spec:
  podSelector: { matchLabels: { app: db } }
  policyTypes: [Ingress]
  ingress:
    - from: [ { namespaceSelector: { matchLabels: { team: web } } } ]
      ports: [ { protocol: TCP, port: http } ]
---
# web accepts no new connection at all (ingress isolated, no rule).
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: web-closed, namespace: frontend }
spec:
  podSelector: { matchLabels: { app: web } }
  policyTypes: [Ingress]
";

fn node() -> anyhow::Result<Node> {
    let mut node = Node::up(vec![
        pod("web", 1, "frontend"),
        pod("db", 2, "backend").named_port("http", 8080),
        pod("cache", 3, "backend"),
    ])?;
    node.namespaces = vec![
        ("frontend".into(), vec![("team".into(), "web".into())]),
        ("backend".into(), vec![("team".into(), "data".into())]),
    ];
    node.policy_yaml = Some(POLICY.into());
    node.start()?;
    Ok(node)
}

#[test]
fn policy_denies_one_connection_and_allows_another() -> anyhow::Result<()> {
    let node = node()?;
    let (web, db, cache) = (node.pod("web"), node.pod("db"), node.pod("cache"));
    let _srv = db.tcp_server(8080)?;
    let _other = db.tcp_server(9090)?;
    assert!(
        web.tcp_send(&db.ip, 8080, 1 << 20, 10.0)?.is_some(),
        "web -> db:8080 allowed"
    );
    assert!(
        cache.tcp_send(&db.ip, 8080, 1000, 2.0)?.is_none(),
        "cache -> db:8080 denied"
    );
    assert!(
        web.tcp_send(&db.ip, 9090, 1000, 2.0)?.is_none(),
        "web -> db:9090 denied (port)"
    );
    // web's ingress is closed even to ping; cache, selected by no policy, stays open.
    assert!(
        !cache.ping(&web.ip, 1)?,
        "web's ingress is closed, even to ping"
    );
    assert!(web.ping(&cache.ip, 1)?, "cache is not isolated");
    let s = node.wait_stats("denials and the allowing rule", |s| {
        drops(s, "policy_denied") >= 3
            && s["rules_allowed"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["policy"] == "backend/db-allow-web"))
    })?;
    assert!(
        s["ports"]["3"]["drops"]["policy_denied"].as_u64() >= Some(1),
        "cache's SYN: {s:#}"
    );
    let denied = s["policies_denied"].as_array().expect("list");
    assert!(
        denied.iter().any(|d| d["policy"] == "backend/db-allow-web"),
        "{s:#}"
    );
    assert!(
        denied.iter().any(|d| d["policy"] == "frontend/web-closed"),
        "{s:#}"
    );
    let rule = s["rules_allowed"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["policy"] == "backend/db-allow-web"))
        .expect("rule counter");
    assert_eq!(rule["connections"], 1, "{s:#}");
    assert!(
        rule["bytes"].as_u64() > Some(1 << 20),
        "both directions counted: {s:#}"
    );
    Ok(())
}

#[test]
fn replies_pass_but_the_reverse_connection_is_refused() -> anyhow::Result<()> {
    let node = node()?;
    let (web, db) = (node.pod("web"), node.pod("db"));
    let _db_srv = db.tcp_server(8080)?;
    let _web_srv = web.tcp_server(8080)?;
    // web's ingress is closed, yet the replies of web's own connection (SYN-ACK, the digest)
    // reach it: conntrack knows them.
    assert!(
        web.tcp_send(&db.ip, 8080, 256 << 10, 10.0)?.is_some(),
        "web -> db with replies"
    );
    // A new connection db -> web is refused.
    assert!(
        db.tcp_send(&web.ip, 8080, 1000, 2.0)?.is_none(),
        "db -> web refused"
    );
    let s = node.wait_stats("db's refused SYN", |s| {
        s["ports"]["2"]["drops"]["policy_denied"].as_u64() >= Some(1)
    })?;
    assert_eq!(drops(&s, "conntrack_invalid"), 0, "{s:#}");
    Ok(())
}
