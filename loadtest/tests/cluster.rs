//! The load tester against a cluster: three nodes, each the real server in
//! a process of its own, on one throwaway PostgreSQL (`testkit::PgServer`),
//! with the members of each room spread over the three. Skipped outside CI
//! when PostgreSQL's programs are missing, like every PostgreSQL test.

use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;
use testkit::{PgServer, ServerBinary, ServerProcess};

/// The nodes: this test executable run once more as [`chatterbox_server`]
/// (see `loadtest.rs`, which does the same for one node).
const SERVER: ServerBinary = ServerBinary::ThisTest("chatterbox_server");

/// The server process of the other tests; in a plain `cargo test --
/// --ignored` it has nothing to do.
#[test]
#[ignore = "the server process of the other tests (ServerProcess starts it)"]
fn chatterbox_server() {
    testkit::serve_if_started_as_server();
}

const NODES: [&str; 3] = ["a", "b", "c"];

/// Three nodes on `pg`, chat rate limits out of the way. Each keeps a
/// SQLite path of its own, which cluster mode ignores.
fn cluster(pg: &PgServer, dir: &TempDir) -> Vec<ServerProcess> {
    let url = pg.url();
    NODES
        .iter()
        .map(|id| {
            ServerProcess::start(
                SERVER,
                &dir.path().join(format!("{id}.db")),
                &[
                    ("DATABASE_URL", url.as_str()),
                    ("NODE_ID", id),
                    ("RATE_LIMIT", "1000000"),
                    ("RATE_BURST", "1000000"),
                ],
            )
        })
        .collect()
}

/// The postmaster's pid: the first line of the cluster's `postmaster.pid`.
fn postmaster_pid(pg: &PgServer) -> String {
    let text = std::fs::read_to_string(pg.dir().join("data").join("postmaster.pid"))
        .expect("the running server's postmaster.pid");
    text.lines().next().expect("a pid").trim().to_string()
}

/// Runs `loadtest --json` against every node of `nodes` (one comma-separated
/// `--url`), with each node's pid and the database's; its exit code and
/// result.
fn loadtest(nodes: &[ServerProcess], db_pid: &str, args: &[&str]) -> (i32, Value) {
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| format!("ws://127.0.0.1:{}", n.port))
        .collect();
    let pids: Vec<String> = nodes.iter().map(|n| n.child.id().to_string()).collect();
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .env_remove("AUTH_SECRET")
        .env_remove("LOADTEST_URL")
        .args(["--url", &urls.join(",")])
        // Repeated rather than comma-separated: both forms are taken.
        .args(pids.iter().flat_map(|pid| ["--server-pid", pid.as_str()]))
        .args(["--db-pid", db_pid])
        .args(["--server-rate-limit", "1000000"])
        .args(["--server-rate-burst", "1000000"])
        .args(["--json", "--quiet", "--setup-timeout", "30s"])
        .args(["--drain-timeout", "10s"])
        .args(args)
        .output()
        .expect("the loadtest binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "--json prints one JSON object ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), result)
}

/// The value of counter `name` in the `/metrics` of the node on `port`.
fn counter(port: u16, name: &str) -> f64 {
    let text = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .expect("/metrics answers")
        .into_string()
        .expect("/metrics is text");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .trim()
        .parse()
        .expect("a number")
}

/// Asserts a run passed every check with `members` members per room,
/// `per_node` of them on each node of which `senders_per_node` send.
fn assert_every_check_passed(
    result: &Value,
    code: i32,
    members: u64,
    per_node: u64,
    senders_per_node: u64,
) {
    assert_eq!(code, 0, "{result:#}");
    assert_eq!(result["passed"], true, "{result:#}");
    let sent = result["messages"]["sent"].as_u64().unwrap();
    assert!(sent > 0, "{result:#}");
    assert_eq!(
        result["messages"]["acked"].as_u64(),
        Some(sent),
        "{result:#}"
    );
    let deliveries = &result["deliveries"];
    // Every member, on whichever node, got every message once, in order,
    // under the same id as everyone else.
    assert_eq!(deliveries["expected"].as_u64(), Some(sent * members));
    assert_eq!(deliveries["received"], deliveries["expected"], "{result:#}");
    assert_eq!(deliveries["lost"], 0, "{result:#}");
    assert_eq!(deliveries["duplicated"], 0, "{result:#}");
    assert_eq!(deliveries["out_of_order"], 0, "{result:#}");
    assert_eq!(deliveries["mismatched_ids"], 0, "{result:#}");
    // Every node's REST API counts every message.
    let stored = &result["messages"]["stored"];
    assert_eq!(stored["nodes_asked"], 3, "{result:#}");
    assert_eq!(stored["found"].as_u64(), Some(sent), "{result:#}");
    assert!(stored["error"].is_null(), "{result:#}");
    let by_node = result["connections"]["by_node"].as_array().unwrap();
    assert_eq!(by_node.len(), 3, "{result:#}");
    for node in by_node {
        assert_eq!(node["ready"].as_u64(), Some(per_node), "{result:#}");
        assert_eq!(
            node["senders"].as_u64(),
            Some(senders_per_node),
            "{result:#}"
        );
    }
}

#[test]
fn members_spread_over_three_nodes_get_every_message_once_in_order_with_one_id() {
    let Some(pg) = PgServer::start_or_skip("loadtest against three nodes") else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let nodes = cluster(&pg, &dir);
    let db_pid = postmaster_pid(&pg);

    // One room of 12: 4 members on each node, 2 of them sending.
    let (code, result) = loadtest(
        &nodes,
        &db_pid,
        &[
            "--scenario",
            "fanout",
            "--clients",
            "12",
            "--senders",
            "6",
            "--rate",
            "60",
            "--duration",
            "2s",
        ],
    );
    assert_every_check_passed(&result, code, 12, 4, 2);
    // Each node's own count agrees: it served its share of the members and
    // took its senders' chats.
    for node in &nodes {
        assert_eq!(
            counter(node.port, "chatterbox_connections_opened_total"),
            4.0
        );
        assert!(counter(node.port, "chatterbox_messages_received_total") > 0.0);
        assert!(counter(node.port, "chatterbox_cluster_notifications_received_total") > 0.0);
    }
    // CPU per node and the database's.
    let server_nodes = result["server_nodes"].as_array().unwrap();
    assert_eq!(server_nodes.len(), 3, "{result:#}");
    for (node, usage) in nodes.iter().zip(server_nodes) {
        assert_eq!(usage["pids"], serde_json::json!([node.child.id()]));
        assert!(usage["cpu"]["cpu_s"].is_number(), "{result:#}");
    }
    assert_eq!(result["server"]["pids"].as_array().unwrap().len(), 3);
    let share = result["database"]["share_percent"].as_f64();
    assert!(
        share.is_some_and(|s| (0.0..=100.0).contains(&s)),
        "{result:#}"
    );

    // Many small rooms: each of 6 rooms has one member on each node, all
    // sending.
    let (code, result) = loadtest(
        &nodes,
        &db_pid,
        &[
            "--scenario",
            "rooms",
            "--rooms",
            "6",
            "--members",
            "3",
            "--per-sender-rate",
            "5",
            "--duration",
            "2s",
        ],
    );
    assert_every_check_passed(&result, code, 3, 6, 6);
}

#[test]
fn features_over_three_nodes_reach_every_member_once_in_order_and_replay_the_same() {
    let Some(pg) = PgServer::start_or_skip("loadtest features against three nodes") else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let nodes = cluster(&pg, &dir);
    let db_pid = postmaster_pid(&pg);

    // One room of 9: 3 members on each node, one of them sending. The
    // witness (the last member) is on node 2, the replay reads node 0.
    let (code, result) = loadtest(
        &nodes,
        &db_pid,
        &[
            "--scenario",
            "features",
            "--clients",
            "9",
            "--senders",
            "3",
            "--rate",
            "60",
            "--duration",
            "3s",
        ],
    );

    assert_eq!(code, 0, "{result:#}");
    assert_eq!(result["errors"], serde_json::json!({}), "{result:#}");
    let d = &result["deliveries"];
    assert_eq!(d["duplicated"], 0, "{result:#}");
    assert_eq!(d["out_of_order"], 0, "{result:#}");
    assert_eq!(d["mismatched_ids"], 0, "{result:#}");
    let f = &result["features"];
    for kind in ["chat", "edit", "delete", "reaction"] {
        let k = &f["kinds"][kind];
        let acked = k["acked"].as_u64().unwrap();
        assert!(acked > 0, "no {kind} acknowledged: {result:#}");
        assert_eq!(
            k["expected"].as_u64(),
            Some(acked * 9),
            "{kind}: {result:#}"
        );
        assert_eq!(k["lost"], 0, "{kind}: {result:#}");
    }
    let resends = &f["resends"];
    assert!(resends["sent"].as_u64().unwrap() > 0, "{result:#}");
    assert_eq!(resends["original_id"], resends["sent"], "{result:#}");
    // Typing crosses nodes: each of the 3 senders reaches the 8 others.
    assert!(
        f["typing"]["forwarded"].as_u64().unwrap() >= 3 * 8,
        "{result:#}"
    );
    assert_eq!(f["typing"]["from_self"], 0);
    let replay = &f["replay"];
    assert_eq!(replay["complete"], true, "{result:#}");
    assert_eq!(replay["matches_live"], true, "{result:#}");
    assert_eq!(replay["typing_items"], 0);
}
