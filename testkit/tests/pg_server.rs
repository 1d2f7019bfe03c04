//! `PgServer`: real PostgreSQL servers from the machine's programs, started
//! side by side, reached over TCP, and gone after drop; what a killed test
//! run leaves is cleaned up by the next; without the programs a test is
//! skipped, or fails under CI.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use testkit::PgServer;

/// One of these tests at a time: any server's start sweeps what dead runs
/// left, and the test of that sweep must see a leftover before the next
/// start removes it.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Set in the environment of this executable started again as one of the
/// child runs below.
const AS_CHILD: &str = "TESTKIT_PG_CHILD";

/// `pg_isready` against 127.0.0.1:`port`: 0 accepting connections, 2 no
/// answer (see its manual).
fn pg_isready(port: u16) -> i32 {
    let bin = std::env::var_os("PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(testkit::DEBIAN_PG_BIN));
    Command::new(bin.join("pg_isready"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--timeout", "5", "--quiet"])
        .status()
        .expect("pg_isready runs")
        .code()
        .expect("pg_isready exits")
}

/// Whether nothing listens on 127.0.0.1:`port` any more.
fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// This test executable run again for only the ignored test `test`, with
/// `env`; stdout piped.
fn this_test_again(test: &str, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test executable"));
    command
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(AS_CHILD, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

#[test]
fn two_servers_start_side_by_side_answer_over_tcp_and_are_gone_after_drop() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let test = "two_servers_start_side_by_side_answer_over_tcp_and_are_gone_after_drop";
    let starting: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || PgServer::start_or_skip(test)))
        .collect();
    let servers: Vec<PgServer> = starting
        .into_iter()
        .filter_map(|t| t.join().expect("a server starts"))
        .collect();
    if servers.is_empty() {
        return; // skipped: no PostgreSQL here (and not CI)
    }
    let (a, b) = (&servers[0], &servers[1]);
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    for server in &servers {
        assert_eq!(pg_isready(server.port()), 0, "{} accepts", server.url());
        assert!(
            server.url().starts_with("postgres://postgres@127.0.0.1:"),
            "{}",
            server.url()
        );
        // The server behind the URL is this one, with its database.
        assert_eq!(
            server.psql("SELECT current_database() || ' ' || inet_server_port()"),
            format!("chatterbox {}", server.port())
        );
        // Only 127.0.0.1, and the unix socket in the server's own folder.
        assert_eq!(server.psql("SHOW listen_addresses"), "127.0.0.1");
        assert!(server
            .dir()
            .join(format!(".s.PGSQL.{}", server.port()))
            .exists());
        assert_eq!(server.psql("SHOW fsync"), "off");
    }
    // Two clusters, not one: a table made in one is not in the other.
    a.psql("CREATE TABLE only_in_a (id integer)");
    assert_eq!(
        b.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"),
        "0"
    );
    let url = b.create_database("another");
    assert!(url.ends_with(&format!(":{}/another", b.port())), "{url}");

    let gone: Vec<(u16, PathBuf)> = servers
        .iter()
        .map(|s| (s.port(), s.dir().to_path_buf()))
        .collect();
    drop(servers);
    for (port, dir) in gone {
        assert!(!dir.exists(), "{} is removed", dir.display());
        assert_eq!(pg_isready(port), 2, "nothing answers on port {port}");
        assert!(port_is_free(port), "port {port} is free");
    }
}

/// What the child run below prints before its server's port and folder.
const SERVER_IS: &str = "PgServer at";

/// A child run for the next test: starts a server, says where, and waits
/// to be killed.
#[test]
#[ignore = "run by a_server_left_by_a_killed_test_run_is_stopped_and_removed_by_the_next"]
fn a_test_run_that_gets_killed() {
    if std::env::var_os(AS_CHILD).is_none() {
        return;
    }
    let server = PgServer::start_or_skip("a_test_run_that_gets_killed").expect("PostgreSQL");
    // The harness has printed "test NAME ... " on this line already.
    println!("{SERVER_IS} {} {}", server.port(), server.dir().display());
    loop {
        std::thread::park();
    }
}

#[test]
fn a_server_left_by_a_killed_test_run_is_stopped_and_removed_by_the_next() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let test = "a_server_left_by_a_killed_test_run_is_stopped_and_removed_by_the_next";
    // Whether this machine can run one at all (and skip as it says if not).
    let Some(first) = PgServer::start_or_skip(test) else {
        return;
    };
    drop(first);

    let mut child = this_test_again("a_test_run_that_gets_killed", &[])
        .spawn()
        .expect("the child run starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| Some(line.split_once(SERVER_IS)?.1.to_string()))
        .expect("the child run says where its server is");
    let mut words = line.split_whitespace();
    let port: u16 = words.next().and_then(|p| p.parse().ok()).expect("a port");
    let dir = Path::new(words.next().expect("a folder")).to_path_buf();
    // kill -9: no drop runs, the server is left behind.
    child.kill().expect("the child run is killed");
    child.wait().expect("the child run is reaped");
    assert_eq!(
        pg_isready(port),
        0,
        "the killed run's server is left running"
    );
    assert!(dir.exists());

    let next = PgServer::start_or_skip(test).expect("PostgreSQL was there a moment ago");
    assert!(!dir.exists(), "the leftover {} is removed", dir.display());
    assert_eq!(pg_isready(port), 2, "the leftover server is stopped");
    assert_eq!(pg_isready(next.port()), 0);
}

/// A child run for the next test: asks for a server where there is none.
#[test]
#[ignore = "run by without_the_programs_a_test_is_skipped_but_fails_under_ci"]
fn a_test_run_without_postgres() {
    if std::env::var_os(AS_CHILD).is_none() {
        return;
    }
    assert!(PgServer::start_or_skip("a_test_run_without_postgres").is_none());
}

#[test]
fn without_the_programs_a_test_is_skipped_but_fails_under_ci() {
    let nowhere = tempfile::TempDir::new().unwrap();
    let bin = nowhere.path().to_str().unwrap();

    let skipped = this_test_again(
        "a_test_run_without_postgres",
        &[("PG_BIN", bin), ("CI", "")],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&skipped.stderr);
    assert!(skipped.status.success(), "{stderr}");
    assert!(
        stderr.contains("PostgreSQL test a_test_run_without_postgres SKIPPED"),
        "{stderr}"
    );
    assert!(stderr.contains(bin), "names the folder: {stderr}");
    assert!(stderr.contains("initdb"), "names what is missing: {stderr}");

    let failed = this_test_again(
        "a_test_run_without_postgres",
        &[("PG_BIN", bin), ("CI", "1")],
    )
    .output()
    .unwrap();
    let output = String::from_utf8_lossy(&failed.stdout) + String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{output}");
    assert!(
        output.contains("CI is set, so this test must run"),
        "{output}"
    );
}
