//! `loadtest`: drives a running chatterbox server through the real protocol
//! and reports what its users would see: connect rate, acknowledged and
//! delivered messages, losses, duplicates and reorderings, delivery latency,
//! errors and disconnects. See docs/BENCHMARKS.md for how it is used.
//!
//! * `accounting`: chat texts that carry a sender and sequence number, frame
//!   reading, and the per-receiver loss / duplicate / order checks.
//! * `client`: one connection and the run's shared counters; connections
//!   are spread over the `--url`s round-robin.
//! * `wire`: the WebSocket client itself, which reads frames in place.
//! * `scenarios`: fanout, rooms, connect, churn and features, one task per
//!   connection.
//! * `features`: the features scenario's operations (edits, deletes,
//!   reactions, typing, read markers, keyed resends) and its checks.
//! * `report`: the summary table and the `--json` result.

mod accounting;
mod client;
mod features;
mod report;
mod scenarios;
mod wire;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{watch, Semaphore};

use crate::accounting::SenderId;
use crate::client::{histogram, Outcome, Phase, Shared};
use crate::report::{DatabaseUsage, Report, Samples, ServerUsage};
use crate::scenarios::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Scenario {
    /// One room, `--clients` members, `--senders` of them sending at a total
    /// of `--rate` messages/s: every member receives every message.
    Fanout,
    /// `--rooms` rooms of `--members` members each; every member sends
    /// (`--per-sender-rate`, default 1 msg/s).
    Rooms,
    /// Open `--clients` connections (at `--ramp`/s, or as fast as
    /// `--handshakes` parallel upgrades allow), hold them idle for
    /// `--duration`; with `--server-pid`, the server's memory per connection.
    Connect,
    /// `--clients` workers that each, over and over, connect, join one of
    /// `--rooms` rooms, send `--churn-messages` messages, wait for their
    /// echoes, leave and close.
    Churn,
    /// One room of `--clients` members (default 20), `--senders` of them
    /// (default 5) mixing keyed chats (some replies), edits and deletes of
    /// their own chats, reactions on and off, typing frames, read markers
    /// and resends of keyed chats at a total of `--rate` operations/s
    /// (default 50). Checks every change reaches every member once in id
    /// order, every resend gets the original id back, typing is forwarded
    /// to others only and never stored (a `since` replay at the end).
    Features,
}

/// Load tester for chatterbox: drives a running server over the real
/// WebSocket protocol and reports throughput, latency and correctness.
///
/// Start the server first (`cargo run --release`), then run this; for a
/// cluster, pass every node's `--url`. With no
/// flags it runs a small fanout (100 members, 10 senders, 50 msg/s, 10 s)
/// that the server's default limits allow. Exits 1 when a message is lost,
/// duplicated or reordered, the server drops a connection, or more
/// connections fail than `--max-connect-failures`.
///
/// Delivery latency runs from when each message was due by its sender's
/// schedule (start + (seq - 1) / rate), not from when it was written: a
/// sender held back by a slow server shows as latency, not as a silent gap.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, verbatim_doc_comment)]
struct Args {
    /// The server, as ws://HOST:PORT (the `/ws` path is added). Give
    /// several (repeat the flag, or separate them with commas) to load the
    /// nodes of a cluster: connection N goes to node N modulo their
    /// number, so a room's members, and its senders, are spread over the
    /// nodes (the first members of a room are its senders); the stored
    /// check asks every node.
    #[arg(
        long,
        env = "LOADTEST_URL",
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8080"
    )]
    url: Vec<String>,

    /// What to simulate.
    #[arg(long, short, value_enum, default_value_t = Scenario::Fanout)]
    scenario: Scenario,

    /// Connections. fanout: members of the room (default 100); connect:
    /// connections to hold (default 1000); churn: concurrent workers
    /// (default 50); features: members of the room (default 20). rooms
    /// uses --rooms x --members instead.
    #[arg(long, short)]
    clients: Option<usize>,

    /// rooms: number of rooms (default 20); churn: rooms the workers pick
    /// from (default 10).
    #[arg(long)]
    rooms: Option<usize>,

    /// rooms: members per room (default 10).
    #[arg(long)]
    members: Option<usize>,

    /// fanout: how many of the members send (default 10); features:
    /// (default 5).
    #[arg(long)]
    senders: Option<usize>,

    /// Total chat messages per second into the server, shared evenly by
    /// the senders (fanout default 50); features: operations per second
    /// of every kind together, typing included (default 50).
    #[arg(long, short, conflicts_with = "per_sender_rate")]
    rate: Option<f64>,

    /// Chat messages per second for each sender instead of a total
    /// (rooms default 1, churn default 2).
    #[arg(long)]
    per_sender_rate: Option<f64>,

    /// Bytes of text in each chat message (at least the stamp, ~20 bytes).
    #[arg(long, default_value_t = 64)]
    message_size: usize,

    /// How long senders send (connect: how long connections are held).
    /// Takes a unit: 500ms, 10s, 2m.
    #[arg(long, short, value_parser = parse_duration, default_value = "10s")]
    duration: Duration,

    /// New connections per second while setting up; 0 opens them as fast
    /// as --handshakes parallel upgrades allow.
    #[arg(long, default_value_t = 0.0)]
    ramp: f64,

    /// Connection upgrades (and joins) in flight at once.
    #[arg(long, default_value_t = 256)]
    handshakes: usize,

    /// Churn: messages each session sends before leaving.
    #[arg(long, default_value_t = 5)]
    churn_messages: usize,

    /// After sending stops, how long to wait for the last deliveries.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    drain_timeout: Duration,

    /// How long setup (connecting and joining) may take before the run
    /// goes on with the connections it has.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    setup_timeout: Duration,

    /// The server's process id (same machine): its resident memory and CPU
    /// time before and after, and (connect) bytes per connection. For a
    /// cluster, one per node (repeat the flag, or separate them with
    /// commas): the report gives each and their total.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,

    /// The database server's process id (PostgreSQL's postmaster, same
    /// machine): the CPU it and its child processes (one backend per
    /// connection) used, and its share of all the server side's CPU.
    #[arg(long)]
    db_pid: Option<u32>,

    /// The server's RATE_LIMIT (messages/s per connection), to warn when
    /// the scenario would be throttled: when one connection would send more
    /// than RATE_BURST + RATE_LIMIT x its sending time (--duration, or one
    /// churn session). The server's default is 10; pass what the server was
    /// started with. Throttling is also detected from `rate_limited` errors
    /// during the run.
    #[arg(long, default_value_t = 10.0)]
    server_rate_limit: f64,

    /// The server's RATE_BURST (default 20): what a connection may send at
    /// once before --server-rate-limit applies.
    #[arg(long, default_value_t = 20.0)]
    server_rate_burst: f64,

    /// Connections that may fail (to open, or to join) before the run
    /// counts as failed.
    #[arg(long, default_value_t = 0)]
    max_connect_failures: u64,

    /// fanout, rooms: every chat carries a `key` (k1, k2... per sender), to
    /// measure the server's idempotency lookups. features always does.
    #[arg(long)]
    keyed: bool,

    /// features: at most this many joins (pages of `MAX_HISTORY` changes)
    /// for the `since` replay at the end; the server's join budget
    /// (JOIN_RATE_BURST, default 100, two per page) bounds it too.
    #[arg(long, default_value_t = 40)]
    replay_pages: u64,

    /// Skip asking the REST API whether every acknowledged message is stored.
    #[arg(long)]
    no_store_check: bool,

    /// Bytes of read buffer per connection: bigger means fewer read calls
    /// under load. connect defaults to 4096 (idle connections).
    #[arg(long)]
    read_buffer: Option<usize>,

    /// The server's AUTH_SECRET, when it requires signed tokens: the load
    /// tester then mints an HS256 token for each simulated user and
    /// connects with `?token=`. Read from the environment when not given.
    #[arg(long, env = "AUTH_SECRET", hide_env_values = true)]
    auth_secret: Option<String>,

    /// Print only one JSON object with the result on stdout.
    #[arg(long)]
    json: bool,

    /// No live progress line.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    chatterbox::config::parse_duration(s)
        .ok_or_else(|| format!("{s:?} is not a duration like 500ms, 10s or 2m"))
}

/// The settings a scenario ends up with once defaults are filled in.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    scenario: Scenario,
    /// The nodes connections are spread over, in `--url` order.
    urls: Vec<String>,
    clients: usize,
    rooms: usize,
    members_per_room: usize,
    senders: usize,
    per_sender_rate: f64,
    total_rate: f64,
    message_size: usize,
    duration_s: f64,
    ramp_per_s: f64,
}

fn settings(args: &Args) -> Result<Settings, String> {
    let (clients, rooms, members, senders) = match args.scenario {
        Scenario::Fanout => {
            let clients = args.clients.unwrap_or(100);
            let senders = args.senders.unwrap_or(10).min(clients);
            (clients, 1, clients, senders)
        }
        Scenario::Rooms => {
            let rooms = args.rooms.unwrap_or(20);
            let members = args.members.unwrap_or(10);
            (rooms * members, rooms, members, rooms * members)
        }
        Scenario::Connect => (args.clients.unwrap_or(1000), 0, 0, 0),
        Scenario::Churn => {
            let clients = args.clients.unwrap_or(50);
            (clients, args.rooms.unwrap_or(10), 0, clients)
        }
        Scenario::Features => {
            let clients = args.clients.unwrap_or(20);
            let senders = args.senders.unwrap_or(5).min(clients);
            (clients, 1, clients, senders)
        }
    };
    if args.keyed && matches!(args.scenario, Scenario::Connect | Scenario::Churn) {
        return Err("--keyed is for the fanout and rooms scenarios".into());
    }
    if clients == 0 {
        return Err("there must be at least one client".into());
    }
    if args.scenario != Scenario::Connect && rooms == 0 {
        return Err("there must be at least one room".into());
    }
    let per_sender_rate = match (args.rate, args.per_sender_rate) {
        (_, Some(r)) => r,
        (Some(total), None) => total / senders.max(1) as f64,
        (None, None) => match args.scenario {
            Scenario::Fanout | Scenario::Features => 50.0 / senders.max(1) as f64,
            Scenario::Rooms => 1.0,
            Scenario::Churn => 2.0,
            Scenario::Connect => 0.0,
        },
    };
    // Every scenario but connect sends: a rate of 0 would mean a message
    // every 1000 s (and a sender that ignores --duration).
    if args.scenario != Scenario::Connect && !(per_sender_rate.is_finite() && per_sender_rate > 0.0)
    {
        return Err(format!(
            "the {:?} scenario sends: its rate (--rate or --per-sender-rate) must be a \
             positive number of messages per second, not {per_sender_rate}",
            args.scenario
        )
        .to_lowercase());
    }
    if !(args.ramp.is_finite() && args.ramp >= 0.0) {
        return Err("--ramp must be a non-negative number".into());
    }
    if !(1..=4096).contains(&args.message_size) {
        return Err("--message-size must be 1 to 4096 bytes".into());
    }
    let mut urls = Vec::with_capacity(args.url.len());
    for given in &args.url {
        let url = given
            .trim()
            .trim_end_matches('/')
            .trim_end_matches("/ws")
            .to_string();
        if !url.starts_with("ws://") || url.len() == "ws://".len() {
            return Err(format!(
                "--url must look like ws://HOST:PORT, not {given:?}"
            ));
        }
        if urls.contains(&url) {
            return Err(format!("--url {given:?} is given twice"));
        }
        urls.push(url);
    }
    if urls.is_empty() {
        return Err("--url needs at least one ws://HOST:PORT".into());
    }
    Ok(Settings {
        scenario: args.scenario,
        urls,
        clients,
        rooms,
        members_per_room: members,
        senders,
        per_sender_rate,
        total_rate: per_sender_rate * senders as f64,
        message_size: args.message_size,
        duration_s: args.duration.as_secs_f64(),
        ramp_per_s: args.ramp,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match settings(&args) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("loadtest: {why}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = runtime.block_on(run(&args, settings));
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("loadtest: cannot encode the result: {e}"),
        }
    } else {
        print!("{}", report.table());
    }
    // Do not wait for lingering close handshakes.
    runtime.shutdown_timeout(Duration::from_millis(100));
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A warning when the server's rate limit (a token bucket per connection,
/// `burst` tokens to start with, refilled at `limit`/s) will refuse some of
/// what each sending connection sends: more than `burst + limit x` the time
/// it sends for (`--duration`; churn: one session).
fn throttling(
    settings: &Settings,
    churn_messages: usize,
    limit: f64,
    burst: f64,
) -> Option<String> {
    if settings.senders == 0 || settings.per_sender_rate <= 0.0 {
        return None;
    }
    // A sender's first message goes at once, then one per period.
    let mut per_connection = (settings.per_sender_rate * settings.duration_s).floor() + 1.0;
    if settings.scenario == Scenario::Features {
        // Typing and read markers spend no chat tokens.
        per_connection = (per_connection * features::TOKEN_SHARE).ceil();
    }
    if settings.scenario == Scenario::Churn {
        // A connection lasts one session.
        per_connection = per_connection.min(churn_messages as f64);
    }
    // The time those take: the bucket refills meanwhile.
    let over_s = (per_connection - 1.0) / settings.per_sender_rate;
    let allowed = (burst + limit * over_s).floor().max(0.0);
    (per_connection > allowed).then(|| {
        format!(
            "each sender sends {:.1} msg/s, {per_connection:.0} messages per connection, but \
             the server allows {limit} msg/s per connection after a burst of {burst}, \
             {allowed:.0} in {over_s:.1} s: it will refuse the excess with rate_limited. Start \
             the server with RATE_LIMIT and RATE_BURST high enough and pass them as \
             --server-rate-limit/--server-rate-burst",
            settings.per_sender_rate
        )
    })
}

/// Raises the open-files limit to what `clients` connections need.
fn raise_nofile(clients: usize, warnings: &mut Vec<String>) {
    let wanted = clients as u64 + 64;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(got) if got >= wanted => {}
        Ok(got) => warnings.push(format!(
            "the open-files limit is {got}, below the {wanted} this run needs; \
             connections past it will fail (raise the hard limit: ulimit -Hn)"
        )),
        Err(e) => warnings.push(format!("cannot raise the open-files limit: {e}")),
    }
}

async fn run(args: &Args, settings: Settings) -> Report {
    let mut warnings = Vec::new();
    raise_nofile(settings.clients, &mut warnings);
    if let Some(warning) = throttling(
        &settings,
        args.churn_messages.max(1),
        args.server_rate_limit,
        args.server_rate_burst,
    ) {
        warnings.push(warning);
    }
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let read_buffer = args.read_buffer.unwrap_or(match settings.scenario {
        Scenario::Connect => 4096,
        _ => 64 * 1024,
    });
    let run_id = format!(
        "lt{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64 & 0xffff_ffff)
    );
    let shared = Arc::new(Shared {
        clock: Instant::now(),
        counters: Default::default(),
        latency: Mutex::new(histogram()),
        connect_latency: Mutex::new(histogram()),
        errors: Default::default(),
        closes: Default::default(),
        connect_errors: Default::default(),
        phase: phase_rx,
        base_urls: settings.urls.clone(),
        read_buffer: read_buffer.max(256),
        auth_secret: args.auth_secret.clone().filter(|s| !s.trim().is_empty()),
        features: (settings.scenario == Scenario::Features).then(|| features::Hub::new(&run_id)),
    });
    let plan = Arc::new(Plan {
        run: run_id,
        rooms: settings.rooms,
        members: settings.members_per_room,
        senders_per_room: match settings.scenario {
            Scenario::Fanout | Scenario::Features => settings.senders,
            _ => settings.members_per_room,
        },
        sender_rate: settings.per_sender_rate,
        message_size: settings.message_size,
        churn_messages: args.churn_messages.max(1),
        handshakes: Arc::new(Semaphore::new(args.handshakes.max(1))),
        keyed: args.keyed || settings.scenario == Scenario::Features,
        features: settings.scenario == Scenario::Features,
    });
    let before = Samples::take(&args.server_pid, args.db_pid);
    let bar = progress_bar(args);

    // Setup: start the connections at the ramp rate.
    let setup_started = Instant::now();
    let spawner = {
        let (shared, plan) = (shared.clone(), plan.clone());
        let (scenario, clients, ramp) = (settings.scenario, settings.clients, settings.ramp_per_s);
        tokio::spawn(async move {
            let mut tasks = Vec::with_capacity(clients);
            let mut phase = shared.phase.clone();
            for index in 0..clients {
                // Once setup is over (all settled, or timed out), open no
                // more: a connection opened mid-run is not a ready member.
                if *phase.borrow_and_update() != Phase::Setup {
                    break;
                }
                if ramp > 0.0 {
                    let at = setup_started + Duration::from_secs_f64(index as f64 / ramp);
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.into()) => {}
                        // The phase only moves on from Setup.
                        _ = phase.changed() => break,
                    }
                }
                let (shared, plan) = (shared.clone(), plan.clone());
                tasks.push(tokio::spawn(async move {
                    match scenario {
                        Scenario::Churn => scenarios::churner(shared, plan, index).await,
                        _ => scenarios::member(shared, plan, index).await,
                    }
                }));
            }
            tasks
        })
    };
    let c = &shared.counters;
    let setup_deadline = setup_started + args.setup_timeout;
    while (c.settled.load(Ordering::Relaxed) as usize) < settings.clients
        && Instant::now() < setup_deadline
    {
        tick(&bar, &shared, "setup").await;
    }
    let setup_s = setup_started.elapsed().as_secs_f64();
    if (c.settled.load(Ordering::Relaxed) as usize) < settings.clients {
        warnings.push(format!(
            "setup did not finish within {:?}; running with the connections ready",
            args.setup_timeout
        ));
    }
    // What opened during setup: connections still opening after it
    // (setup timed out) would inflate connections/s and bytes/connection.
    let opened_in_setup = c.connected.load(Ordering::Relaxed);
    let connect_window_s = (c.last_connected_us.load(Ordering::Relaxed) as f64 / 1e6
        - (setup_started - shared.clock).as_secs_f64())
    .max(1e-6);
    let connected = Samples::take(&args.server_pid, args.db_pid);

    // Send (connect: hold).
    let _ = phase_tx.send(Phase::Sending);
    let sending_started = Instant::now();
    let self_before = report::server_sample(std::process::id());
    let delivered_before = c.delivered.load(Ordering::Relaxed);
    while sending_started.elapsed() < args.duration {
        tick(&bar, &shared, "sending").await;
    }
    let sending_s = sending_started.elapsed().as_secs_f64();
    let delivered_while_sending = c.delivered.load(Ordering::Relaxed) - delivered_before;

    // Drain: wait for the echoes and deliveries still on their way.
    let _ = phase_tx.send(Phase::Draining);
    let drain_started = Instant::now();
    let members = settings.members_per_room.max(1) as u64;
    // Let every connection see the phase change before judging.
    tick(&bar, &shared, "draining").await;
    let mut settled_checks = 0;
    loop {
        let answered = c.acked.load(Ordering::Relaxed) + c.refused.load(Ordering::Relaxed);
        let all_answered = answered >= c.sent.load(Ordering::Relaxed);
        let all_delivered = settings.scenario == Scenario::Churn
            || c.delivered.load(Ordering::Relaxed) - delivered_before
                >= c.broadcasts.load(Ordering::Relaxed) * members;
        // Twice in a row, a quarter second apart, so nothing is in flight.
        settled_checks = if all_answered && all_delivered {
            settled_checks + 1
        } else {
            0
        };
        if settled_checks >= 2 || drain_started.elapsed() >= args.drain_timeout {
            break;
        }
        tick(&bar, &shared, "draining").await;
    }
    let drain_s = drain_started.elapsed().as_secs_f64();
    let after = Samples::take(&args.server_pid, args.db_pid);
    let self_after = report::server_sample(std::process::id());
    let delivered_while_measured = c.delivered.load(Ordering::Relaxed) - delivered_before;

    let _ = phase_tx.send(Phase::Done);
    bar.finish_and_clear();
    let (outcomes, unfinished) = collect(spawner, args.drain_timeout + COLLECT_MARGIN).await;

    // Features: read the room back with `since` and compare with what the
    // witness (the last member) received live.
    let replay = if settings.scenario == Scenario::Features {
        let user = format!("{}-replay", plan.run);
        let mut replay =
            features::replay(&shared, &user, &plan.room_name(0), args.replay_pages.max(1)).await;
        let witness = outcomes
            .iter()
            .filter(|o| o.ready)
            .find_map(|o| o.features.as_ref()?.witness_ids.as_deref());
        match witness {
            Some(live) => replay.compare(live),
            None => {
                replay
                    .error
                    .get_or_insert_with(|| "the witness member was not ready".into());
            }
        }
        Some(replay)
    } else {
        None
    };

    let stored = if args.no_store_check
        || matches!(settings.scenario, Scenario::Connect | Scenario::Churn)
    {
        None
    } else {
        Some(check_stored(&settings.urls, &plan, &outcomes).await)
    };

    let usage = |pids: Vec<u32>, pick: &dyn Fn(&Samples) -> Option<report::ServerSample>| {
        ServerUsage::new(
            pids,
            pick(&before),
            pick(&connected),
            pick(&after),
            opened_in_setup,
            setup_s,
            sending_s + drain_s,
        )
    };
    // Node `node`'s threads from one sample to the next, over `window_s`.
    let thread_cpu_between = |from: &Samples, to: &Samples, node: usize, window_s: f64| match (
        from.threads.get(node),
        to.threads.get(node),
    ) {
        (Some(from), Some(to)) => report::thread_cpu(from, to, window_s),
        _ => Vec::new(),
    };
    // While sending and draining, and while connecting.
    let threads = |node: usize| {
        (
            thread_cpu_between(&connected, &after, node, sending_s + drain_s),
            thread_cpu_between(&before, &connected, node, setup_s),
        )
    };
    let server = (!args.server_pid.is_empty()).then(|| {
        let total = usage(args.server_pid.clone(), &|s: &Samples| s.servers_total());
        // One node: its threads. Several: each node has its own below.
        if args.server_pid.len() == 1 {
            let (run, setup) = threads(0);
            total.with_threads(run, setup)
        } else {
            total
        }
    });
    // Per node, when there is more than one.
    let server_nodes: Vec<ServerUsage> = if args.server_pid.len() > 1 {
        (0..args.server_pid.len())
            .map(|i| {
                let (run, setup) = threads(i);
                usage(vec![args.server_pid[i]], &|s: &Samples| s.servers[i])
                    .with_threads(run, setup)
            })
            .collect()
    } else {
        Vec::new()
    };
    let database = args.db_pid.map(|pid| {
        DatabaseUsage::new(
            pid,
            &before,
            &connected,
            &after,
            setup_s,
            sending_s + drain_s,
        )
    });
    let timing = report::Timing {
        setup_s,
        connect_window_s,
        sending_s,
        drain_s,
        delivered_while_sending,
        opened_in_setup,
    };
    report::build(
        settings,
        args.max_connect_failures,
        &plan,
        outcomes,
        &shared,
        timing,
        stored,
        report::Usage {
            server,
            server_nodes,
            database,
            machine: report::MachineCpu::between(connected.machine, after.machine),
        },
        report::LoadtestCpu::new(
            report::CpuUse::between(self_before, self_after, sending_s + drain_s),
            delivered_while_measured,
        ),
        warnings,
        unfinished,
        replay,
    )
}

/// How much longer than `--drain-timeout` the connections may take to close
/// once the run is over (a close handshake waits at most 2 s).
const COLLECT_MARGIN: Duration = Duration::from_secs(5);

/// Collects what every connection task did, waiting at most `limit`: a task
/// still running then (stuck on a server that stopped answering) is aborted.
/// Aborted and panicked tasks are counted, not silently dropped.
async fn collect(
    spawner: tokio::task::JoinHandle<Vec<tokio::task::JoinHandle<Outcome>>>,
    limit: Duration,
) -> (Vec<Outcome>, report::Unfinished) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut unfinished = report::Unfinished {
        limit_s: limit.as_secs_f64(),
        ..Default::default()
    };
    let tasks = match tokio::time::timeout_at(deadline, spawner).await {
        Ok(Ok(tasks)) => tasks,
        Ok(Err(e)) => {
            unfinished
                .panics
                .push(format!("the spawner: {}", panic_message(e)));
            Vec::new()
        }
        Err(_) => {
            unfinished.spawner_stuck = true;
            Vec::new()
        }
    };
    let mut outcomes = Vec::with_capacity(tasks.len());
    for mut task in tasks {
        // Past the deadline, a finished task is still collected: the
        // timeout polls it once before giving up.
        match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok(outcome)) => outcomes.push(outcome),
            Ok(Err(e)) if e.is_panic() => unfinished.panics.push(panic_message(e)),
            Ok(Err(_)) => unfinished.aborted += 1,
            Err(_) => {
                task.abort();
                unfinished.aborted += 1;
            }
        }
    }
    (outcomes, unfinished)
}

fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Asks the REST API of every node how many messages each room stored and
/// compares with what its senders had acknowledged: in a cluster each node
/// must count every message, whichever node it was sent to.
async fn check_stored(urls: &[String], plan: &Plan, outcomes: &[Outcome]) -> report::Stored {
    let mut acked: HashMap<usize, u64> = HashMap::new();
    for o in outcomes {
        if o.sender.is_some() {
            *acked.entry(o.room).or_default() += o.acked;
        }
    }
    let mut stored = report::Stored {
        nodes_asked: urls.len(),
        ..Default::default()
    };
    for room in 0..plan.rooms {
        let expected = acked.get(&room).copied().unwrap_or(0);
        stored.expected += expected;
        // What the node that counts the fewest says.
        let mut fewest: Option<u64> = None;
        for url in urls {
            match report::stored_count(url, &plan.room_name(room)).await {
                Ok(found) => fewest = Some(fewest.map_or(found, |f| f.min(found))),
                // One room that cannot be checked does not stop the others.
                Err(e) => stored.error = Some(e),
            }
        }
        if let Some(found) = fewest {
            stored.found += found;
            if found < expected {
                stored.short_rooms += 1;
            }
        }
    }
    stored
}

fn progress_bar(args: &Args) -> ProgressBar {
    if args.quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>3} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar
}

/// Waits a quarter second and redraws the progress line with current rates.
async fn tick(bar: &ProgressBar, shared: &Shared, phase: &str) {
    let c = &shared.counters;
    let before = (
        c.sent.load(Ordering::Relaxed),
        c.delivered.load(Ordering::Relaxed),
        c.connected.load(Ordering::Relaxed),
    );
    let step = Duration::from_millis(250);
    tokio::time::sleep(step).await;
    let per_s = |now: u64, then: u64| (now.saturating_sub(then)) as f64 / step.as_secs_f64();
    bar.set_message(format!(
        "{phase}: {} open ({} failed), {:.0} conn/s | sent {} ({:.0}/s), acked {} | delivered {} ({:.0}/s) | dropped {}",
        c.open.load(Ordering::Relaxed),
        c.connect_failed.load(Ordering::Relaxed),
        per_s(c.connected.load(Ordering::Relaxed), before.2),
        c.sent.load(Ordering::Relaxed),
        per_s(c.sent.load(Ordering::Relaxed), before.0),
        c.acked.load(Ordering::Relaxed),
        c.delivered.load(Ordering::Relaxed),
        per_s(c.delivered.load(Ordering::Relaxed), before.1),
        c.dropped.load(Ordering::Relaxed),
    ));
    bar.tick();
}

/// Senders of a room (those ready when sending started) with what each had
/// acknowledged.
pub fn senders_by_room(outcomes: &[Outcome]) -> HashMap<usize, Vec<(SenderId, u64)>> {
    let mut by_room: HashMap<usize, Vec<(SenderId, u64)>> = HashMap::new();
    for o in outcomes {
        if let Some(sender) = o.sender {
            if o.ready {
                by_room.entry(o.room).or_default().push((sender, o.acked));
            }
        }
    }
    by_room
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_of(flags: &[&str]) -> Result<Settings, String> {
        let args = Args::parse_from(std::iter::once("loadtest").chain(flags.iter().copied()));
        settings(&args)
    }

    #[test]
    fn several_urls_come_repeated_or_separated_by_commas() {
        let urls = |flags: &[&str]| settings_of(flags).map(|s| s.urls);
        let three = vec![
            "ws://127.0.0.1:1".to_string(),
            "ws://127.0.0.1:2".to_string(),
            "ws://127.0.0.1:3".to_string(),
        ];
        assert_eq!(
            urls(&[
                "--url",
                "ws://127.0.0.1:1,ws://127.0.0.1:2/ws, ws://127.0.0.1:3/"
            ]),
            Ok(three.clone())
        );
        assert_eq!(
            urls(&[
                "--url=ws://127.0.0.1:1",
                "--url",
                "ws://127.0.0.1:2",
                "--url",
                "ws://127.0.0.1:3"
            ]),
            Ok(three)
        );
        let why = urls(&["--url", "ws://127.0.0.1:1,http://127.0.0.1:2"]).unwrap_err();
        assert!(why.contains("\"http://127.0.0.1:2\""), "{why}");
        let why = urls(&["--url", "ws://127.0.0.1:1,ws://127.0.0.1:1/ws"]).unwrap_err();
        assert!(why.contains("twice"), "{why}");
        assert!(urls(&["--url", "ws://127.0.0.1:1,"]).is_err());
    }

    #[test]
    fn scenarios_that_send_refuse_a_rate_that_is_not_positive() {
        for scenario in ["fanout", "rooms", "churn"] {
            for rate in ["--per-sender-rate=0", "--rate=0", "--rate=-1", "--rate=NaN"] {
                let why = settings_of(&["-s", scenario, rate]).expect_err("a rate of 0 is refused");
                assert!(why.contains("must be a positive number"), "{why}");
            }
            assert!(settings_of(&["-s", scenario, "--per-sender-rate", "0.5"]).is_ok());
        }
        // connect sends nothing: no rate to check.
        assert!(settings_of(&["-s", "connect"]).is_ok());
    }

    #[test]
    fn throttling_is_warned_about_when_a_connection_outruns_burst_plus_rate() {
        let warn = |flags: &[&str], limit, burst| {
            let args = Args::parse_from(std::iter::once("loadtest").chain(flags.iter().copied()));
            throttling(&settings(&args).unwrap(), args.churn_messages, limit, burst)
        };
        let rooms = ["-s", "rooms", "--per-sender-rate", "20"];
        // 21 messages in 1 s fit a burst of 20 plus 10/s.
        assert_eq!(
            warn(&[&rooms[..], &["-d", "1s"]].concat(), 10.0, 20.0),
            None
        );
        // 201 in 10 s do not: 20 + 10 x 10 = 120.
        let w = warn(&[&rooms[..], &["-d", "10s"]].concat(), 10.0, 20.0).unwrap();
        assert!(w.contains("201 messages per connection"), "{w}");
        assert!(w.contains("120 in 10.0 s"), "{w}");
        // A churn connection sends one session's messages, within the burst.
        let churn = [
            "-s",
            "churn",
            "--per-sender-rate",
            "100",
            "--churn-messages",
            "5",
        ];
        assert_eq!(warn(&churn, 10.0, 20.0), None);
        assert!(warn(&churn, 1.0, 2.0).is_some());
    }
}
