//! fluxgate on a real three-master Redis Cluster started by the test.

use crate::common::redis::RedisServer;
use crate::common::*;
use crate::require_redis;
use fluxgate::clock::monotonic_now;
use serde_json::json;
use std::time::Duration;

fn cluster() -> Vec<RedisServer> {
    let nodes: Vec<RedisServer> = (0..3)
        .map(|_| {
            RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ])
        })
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let out = std::process::Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cluster create failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let deadline = monotonic_now() + Duration::from_secs(20);
    while !nodes
        .iter()
        .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    {
        assert!(monotonic_now() < deadline, "cluster never became ok");
        std::thread::sleep(Duration::from_millis(50));
    }
    nodes
}

fn config(nodes: &[RedisServer]) -> String {
    let urls: Vec<String> = nodes.iter().map(|n| format!("\"{}\"", n.url())).collect();
    format!(
        "\n[sessions]\nstore = \"redis\"\ncache_ttl = \"1h\"\n[redis]\ncluster = true\nurls = [{}]\ncommand_timeout = \"1s\"\n",
        urls.join(", ")
    )
}

#[test]
fn sessions_spread_over_a_three_master_cluster_and_revocations_reach_every_instance() {
    require_redis!();
    let nodes = cluster();
    let up = Upstream::start();
    let a = Fluxgate::start(up.addr, &config(&nodes));
    let b = Fluxgate::start(up.addr, &config(&nodes));
    let deadline = monotonic_now() + Duration::from_secs(10);
    while a.metric("fluxgate_invalidation_subscribed") != 1.0
        || b.metric("fluxgate_invalidation_subscribed") != 1.0
    {
        assert!(monotonic_now() < deadline, "instances never subscribed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sessions: Vec<(String, String)> = (0..24)
        .map(|i| a.create_session(json!({"user_id": format!("{}", 700 + i % 3)})))
        .collect();
    for (tok, _) in &sessions {
        assert_eq!(
            b.send(&Req::get("/x").header("authorization", tok)).status,
            200
        );
    }
    let holding = nodes
        .iter()
        .filter(|n| n.cli(&["DBSIZE"]).trim().parse::<u64>().unwrap_or(0) > 0)
        .count();
    assert!(
        holding >= 2,
        "keys should spread over the masters, found on {holding}"
    );
    // Revoke one through A: B (subscribed to a seed node) hears it across the cluster bus.
    let (tok, sid) = &sessions[0];
    assert_eq!(
        a.admin("DELETE", &format!("/v1/sessions/{sid}"), None)
            .status,
        200
    );
    let req = Req::get("/x").header("authorization", tok);
    let deadline = monotonic_now() + Duration::from_secs(5);
    while b.send(&req).status != 401 {
        assert!(
            monotonic_now() < deadline,
            "B never heard of the revocation"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Logout everywhere for a user whose sessions live in several slots.
    let list = a.admin("GET", "/v1/users/701/sessions", None).json();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 8);
    assert_eq!(
        a.admin("DELETE", "/v1/users/701/sessions", None).json()["revoked"],
        8
    );
    for (i, (tok, _)) in sessions.iter().enumerate() {
        let expect = if i % 3 == 1 || i == 0 { 401 } else { 200 };
        let req = Req::get("/x").header("authorization", tok);
        let deadline = monotonic_now() + Duration::from_secs(5);
        while b.send(&req).status != expect {
            assert!(
                monotonic_now() < deadline,
                "session {i} should answer {expect}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
