//! The result of a run: figures merged from every connection, the verdict
//! (what failed, what to watch), the summary table and the `--json` object.
//! Also the two ways the load tester looks at the server besides WebSocket:
//! `/proc/PID` for its memory and CPU, and the REST API for stored counts.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::accounting::{ChangeKind, Receipts, SenderId};
use crate::client::{Outcome, Shared};
use crate::features::{FeatureOutcome, Replay, Slot, Tally};
use crate::scenarios::Plan;
use crate::{senders_by_room, Scenario, Settings};

/// Where the time of a run went.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub setup_s: f64,
    /// From the first connection attempt to the last connection opened.
    pub connect_window_s: f64,
    pub sending_s: f64,
    pub drain_s: f64,
    /// Deliveries while senders were sending.
    #[serde(skip)]
    pub delivered_while_sending: u64,
    /// Connections opened by the end of setup.
    #[serde(skip)]
    pub opened_in_setup: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    /// Quantiles of a histogram in microseconds, as milliseconds.
    pub fn from_micros(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
        Latency {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Connections {
    pub attempted: u64,
    /// Opened by the end of setup (churn: during the whole run).
    pub opened: u64,
    pub failed: u64,
    /// Opened but could not join their room in time.
    pub join_failed: u64,
    /// Opened and joined before sending started: the members whose
    /// deliveries are checked (churn: workers whose first session joined).
    pub ready: u64,
    /// Of `--clients`, not ready when sending started (failed, join failed,
    /// late, or never started because setup timed out).
    pub not_ready: u64,
    /// Opened or joined only after setup ended (`--setup-timeout`): closed
    /// at once, not counted in `opened` nor expected to receive anything.
    pub late: u64,
    pub failure_reasons: BTreeMap<String, u64>,
    /// Connections opened per second during setup.
    pub per_s: f64,
    pub setup_s: f64,
    /// TCP connect + WebSocket upgrade.
    pub latency_ms: Latency,
    /// Ended by the server before the run ended.
    pub dropped_by_server: u64,
    /// Per node (`--url`, in order): where the connections went.
    pub by_node: Vec<NodeConnections>,
    /// Those, by close code (1006: no close frame).
    pub closes: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct NodeConnections {
    pub url: String,
    /// Connections (churn: workers) that opened at least once.
    pub opened: u64,
    /// Of those, ready when sending started.
    pub ready: u64,
    /// Ready ones that send (fanout, rooms) or churn.
    pub senders: u64,
}

#[derive(Debug, Serialize)]
pub struct Messages {
    pub sent: u64,
    /// Echoed to their sender (stored and broadcast).
    pub acked: u64,
    /// Answered with an `error` (see `errors`).
    pub refused: u64,
    /// Neither echoed nor refused by the end of the drain.
    pub unanswered: u64,
    pub sent_per_s: f64,
    pub stored: Option<Stored>,
}

#[derive(Debug, Default, Serialize)]
pub struct Stored {
    /// Acknowledged messages, which must all be stored.
    pub expected: u64,
    /// What the REST API counts in this run's rooms.
    pub found: u64,
    pub short_rooms: u64,
    pub error: Option<String>,
    /// Every node was asked about every room; `found` is, room by room,
    /// what the node that counted the fewest said.
    pub nodes_asked: usize,
}

#[derive(Debug, Serialize)]
pub struct Deliveries {
    /// Every member should get every acknowledged message of its room.
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// (receiver, sender) pairs where the receiver got all the sender's
    /// messages, but not all under the ids the sender's own copies came
    /// with: the nodes disagree on a message's id. 0 when ids are the same
    /// for everyone.
    pub mismatched_ids: u64,
    /// Deliveries per second while senders were sending (sustained rate).
    pub per_s: f64,
    /// From when each message was due by its sender's schedule (not when
    /// it was actually written) to each receiver, the sender's echo included.
    pub latency_ms: Latency,
}

/// Connection tasks that did not end normally once the run was over.
#[derive(Debug, Default, Serialize)]
pub struct Unfinished {
    /// Still running `limit_s` after the end of sending (stuck on a send or
    /// read the server never completed): aborted, their figures missing.
    pub aborted: u64,
    /// Tasks that panicked, with the panic's message.
    pub panics: Vec<String>,
    /// The task opening connections did not return.
    pub spawner_stuck: bool,
    pub limit_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Churn {
    pub sessions: u64,
    pub sessions_per_s: f64,
}

/// The server's resident memory and CPU time, read from `/proc`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ServerSample {
    pub rss_kb: u64,
    pub cpu_s: f64,
    /// Time its threads were runnable but waiting for a CPU (from
    /// `/proc/PID/task/*/schedstat`): how much a busy machine held it back.
    pub waited_s: f64,
}

#[derive(Debug, Serialize)]
pub struct ServerUsage {
    /// The processes these figures add up (one per node).
    pub pids: Vec<u32>,
    pub rss_before_kb: Option<u64>,
    pub rss_connected_kb: Option<u64>,
    pub rss_after_kb: Option<u64>,
    /// (RSS once connected - RSS before) / connections opened.
    pub bytes_per_connection: Option<f64>,
    /// CPU the server used from the start of sending to the end of the drain.
    pub cpu: Option<CpuUse>,
    /// CPU the server used while connections were opened (and joined).
    pub setup_cpu: Option<CpuUse>,
    /// `setup_cpu` per connection opened, in microseconds: the cost of one
    /// connect on the server, whatever else ran on the machine.
    pub cpu_us_per_connection: Option<f64>,
    /// `cpu` thread by thread, busiest first (one node's threads): whether
    /// one thread is the limit while the process as a whole is not.
    pub threads: Vec<ThreadCpu>,
    /// `setup_cpu` thread by thread, busiest first.
    pub setup_threads: Vec<ThreadCpu>,
}

impl ServerUsage {
    pub fn new(
        pids: Vec<u32>,
        before: Option<ServerSample>,
        connected: Option<ServerSample>,
        after: Option<ServerSample>,
        connections: u64,
        setup_s: f64,
        run_s: f64,
    ) -> ServerUsage {
        let per_conn = match (before, connected) {
            (Some(b), Some(c)) if connections > 0 => {
                Some((c.rss_kb as f64 - b.rss_kb as f64) * 1024.0 / connections as f64)
            }
            _ => None,
        };
        ServerUsage {
            pids,
            rss_before_kb: before.map(|s| s.rss_kb),
            rss_connected_kb: connected.map(|s| s.rss_kb),
            rss_after_kb: after.map(|s| s.rss_kb),
            bytes_per_connection: per_conn.map(f64::round),
            cpu: CpuUse::between(connected, after, run_s),
            setup_cpu: CpuUse::between(before, connected, setup_s),
            cpu_us_per_connection: match (before, connected) {
                (Some(b), Some(c)) if connections > 0 => {
                    Some(round1((c.cpu_s - b.cpu_s) * 1e6 / connections as f64))
                }
                _ => None,
            },
            threads: Vec::new(),
            setup_threads: Vec::new(),
        }
    }

    /// The same usage, with its per-thread breakdowns: while sending and
    /// draining, and while connecting.
    pub fn with_threads(
        self,
        threads: Vec<ThreadCpu>,
        setup_threads: Vec<ThreadCpu>,
    ) -> ServerUsage {
        ServerUsage {
            threads,
            setup_threads,
            ..self
        }
    }
}

/// The database server's CPU: its postmaster with every child process.
#[derive(Debug, Serialize)]
pub struct DatabaseUsage {
    pub pid: u32,
    /// From the start of sending to the end of the drain.
    pub cpu: Option<CpuUse>,
    /// While connections were opened (and joined).
    pub setup_cpu: Option<CpuUse>,
    /// `cpu` as a share of all the server side's CPU in that time (the
    /// database's and every `--server-pid`'s), in percent.
    pub share_percent: Option<f64>,
}

impl DatabaseUsage {
    pub fn new(
        pid: u32,
        before: &Samples,
        connected: &Samples,
        after: &Samples,
        setup_s: f64,
        run_s: f64,
    ) -> DatabaseUsage {
        let cpu = CpuUse::between(connected.database, after.database, run_s);
        let servers = CpuUse::between(connected.servers_total(), after.servers_total(), run_s);
        let share_percent = match (&cpu, &servers) {
            (Some(db), Some(sv)) if db.cpu_s + sv.cpu_s > 0.0 => {
                Some(round1(db.cpu_s / (db.cpu_s + sv.cpu_s) * 100.0))
            }
            _ => None,
        };
        DatabaseUsage {
            pid,
            cpu,
            setup_cpu: CpuUse::between(before.database, connected.database, setup_s),
            share_percent,
        }
    }
}

/// What `--server-pid` and `--db-pid` name, read at one moment.
pub struct Samples {
    /// Each server, in `--server-pid` order.
    pub servers: Vec<Option<ServerSample>>,
    /// Each server's threads, in the same order.
    pub threads: Vec<ThreadTicks>,
    /// The database's process tree.
    pub database: Option<ServerSample>,
    /// The whole machine (`/proc/stat`).
    pub machine: Option<MachineTicks>,
}

impl Samples {
    pub fn take(server_pids: &[u32], db_pid: Option<u32>) -> Samples {
        Samples {
            servers: server_pids.iter().map(|&pid| server_sample(pid)).collect(),
            threads: server_pids.iter().map(|&pid| thread_ticks(pid)).collect(),
            database: db_pid.and_then(tree_sample),
            machine: MachineTicks::read(),
        }
    }

    /// The servers added up, when every one could be read.
    pub fn servers_total(&self) -> Option<ServerSample> {
        self.servers
            .iter()
            .try_fold(None::<ServerSample>, |sum, sample| {
                let s = (*sample)?;
                Some(Some(match sum {
                    None => s,
                    Some(t) => ServerSample {
                        rss_kb: t.rss_kb + s.rss_kb,
                        cpu_s: t.cpu_s + s.cpu_s,
                        waited_s: t.waited_s + s.waited_s,
                    },
                }))
            })
            .flatten()
    }
}

/// Everything the load tester read of the server side by pid.
pub struct Usage {
    /// Every `--server-pid` added up.
    pub server: Option<ServerUsage>,
    /// Each `--server-pid`, when there are several.
    pub server_nodes: Vec<ServerUsage>,
    pub database: Option<DatabaseUsage>,
    pub machine: Option<MachineCpu>,
}

/// `/proc/stat` at one moment: the whole machine's CPU time in clock
/// ticks (its first line), split into busy, stolen and in all, and the
/// number of cores (its `cpuN` lines).
#[derive(Debug, Clone, Copy)]
pub struct MachineTicks {
    busy: u64,
    /// Time the hypervisor gave this machine's cores to someone else.
    steal: u64,
    total: u64,
    cores: usize,
}

impl MachineTicks {
    /// Reads `/proc/stat`; none where there is no such file.
    pub fn read() -> Option<MachineTicks> {
        MachineTicks::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// The first line is `cpu  user nice system idle iowait irq softirq
    /// steal ...`: idle and iowait are not busy, steal is counted apart,
    /// and guest time is already in user.
    fn parse(stat: &str) -> Option<MachineTicks> {
        let mut fields = stat.lines().next()?.split_whitespace();
        (fields.next()? == "cpu").then_some(())?;
        let ticks: Vec<u64> = fields
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let total: u64 = ticks.iter().sum();
        let idle = ticks.get(3)? + ticks.get(4)?;
        let steal = *ticks.get(7)?;
        let cores = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .count();
        Some(MachineTicks {
            busy: total - idle - steal,
            steal,
            total,
            cores: cores.max(1),
        })
    }
}

/// The whole machine's CPU between two samples: the server, the load
/// tester, the database and the kernel's network work that neither
/// process is charged for (loopback traffic is handled in softirqs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MachineCpu {
    /// Cores the kernel counts (whatever this process may run on).
    pub cores: usize,
    /// Busy time as a share of one core: at most `cores` × 100.
    pub busy_percent: f64,
    /// Time the hypervisor ran something else instead, the same way: on a
    /// shared host, CPU the machine wanted and did not get.
    pub steal_percent: f64,
}

impl MachineCpu {
    pub fn between(from: Option<MachineTicks>, to: Option<MachineTicks>) -> Option<MachineCpu> {
        let (from, to) = (from?, to?);
        let total = to.total.checked_sub(from.total)?;
        let busy = to.busy.checked_sub(from.busy)?;
        let steal = to.steal.checked_sub(from.steal)?;
        let share = |ticks: u64| round1(ticks as f64 / total as f64 * to.cores as f64 * 100.0);
        (total > 0).then(|| MachineCpu {
            cores: to.cores,
            busy_percent: share(busy),
            steal_percent: share(steal),
        })
    }
}

/// Clock ticks of `/proc/PID/stat` in seconds: USER_HZ is 100 on Linux for
/// every architecture this runs on.
fn ticks_to_s(ticks: u64) -> f64 {
    ticks as f64 / 100.0
}

/// Reads `/proc/PID/status` (VmRSS) and `/proc/PID/stat` (utime + stime).
pub fn server_sample(pid: u32) -> Option<ServerSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = Stat::read(pid)?;
    Some(ServerSample {
        rss_kb,
        cpu_s: ticks_to_s(stat.utime + stat.stime),
        waited_s: runqueue_wait_s(pid),
    })
}

/// The fields of `/proc/PID/stat` the load tester reads, in clock ticks.
struct Stat {
    ppid: u32,
    utime: u64,
    stime: u64,
    /// CPU of children that ended and were waited for.
    cutime: u64,
    cstime: u64,
}

impl Stat {
    fn read(pid: u32) -> Option<Stat> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Stat::parse(&stat).map(|(_, stat)| stat)
    }

    /// A `stat` line: the command name (between the parentheses) and the
    /// fields.
    fn parse(stat: &str) -> Option<(&str, Stat)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let name = stat.get(open + 1..close)?;
        // Fields after the command name (which may hold spaces), from field 3.
        let after = stat.get(close + 2..)?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |i: usize| fields.get(i)?.parse::<u64>().ok();
        Some((
            name,
            Stat {
                ppid: u32::try_from(field(1)?).ok()?,
                utime: field(11)?,
                stime: field(12)?,
                cutime: field(13)?,
                cstime: field(14)?,
            },
        ))
    }
}

/// `pid` and its children (PostgreSQL's postmaster and its backends and
/// helpers): their CPU, with that of children already ended (which the
/// postmaster has waited for), summed; RSS and waits of the live ones.
pub fn tree_sample(pid: u32) -> Option<ServerSample> {
    let root = Stat::read(pid)?;
    let mut ticks = root.utime + root.stime + root.cutime + root.cstime;
    let mut rss_kb = server_sample(pid).map_or(0, |s| s.rss_kb);
    let mut waited_s = runqueue_wait_s(pid);
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A child may end between the listing and the read: then its time
        // is in the parent's cutime next time, and skipped now.
        match Stat::read(child) {
            Some(stat) if stat.ppid == pid => {
                ticks += stat.utime + stat.stime + stat.cutime + stat.cstime;
                rss_kb += server_sample(child).map_or(0, |s| s.rss_kb);
                waited_s += runqueue_wait_s(child);
            }
            _ => {}
        }
    }
    Some(ServerSample {
        rss_kb,
        cpu_s: ticks_to_s(ticks),
        waited_s,
    })
}

/// One process's threads at one moment: thread id → (name, CPU ticks).
pub type ThreadTicks = BTreeMap<u32, (String, u64)>;

/// Reads `/proc/PID/task/*/stat`: every thread's name and CPU so far. A
/// thread that ends between the listing and the read is left out.
pub fn thread_ticks(pid: u32) -> ThreadTicks {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return ThreadTicks::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse::<u32>().ok()?;
            let line = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let (name, stat) = Stat::parse(&line)?;
            Some((tid, (name.to_owned(), stat.utime + stat.stime)))
        })
        .collect()
}

/// One thread's CPU between two samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadCpu {
    pub tid: u32,
    /// As `/proc/PID/task/TID/comm` has it (at most 15 bytes).
    pub name: String,
    pub cpu_s: f64,
    /// Of one core, over the window measured (the run, or the setup).
    pub cpu_percent: f64,
}

/// What each thread used from `from` to `to`, busiest first. A thread
/// started in between counts from zero; one that ended is not there.
pub fn thread_cpu(from: &ThreadTicks, to: &ThreadTicks, run_s: f64) -> Vec<ThreadCpu> {
    let mut threads: Vec<ThreadCpu> = to
        .iter()
        .map(|(&tid, (name, ticks))| {
            let before = from.get(&tid).map_or(0, |(_, t)| *t);
            let cpu_s = ticks_to_s(ticks.saturating_sub(before));
            ThreadCpu {
                tid,
                name: name.clone(),
                cpu_s: round3(cpu_s),
                cpu_percent: round1(cpu_s / run_s.max(1e-6) * 100.0),
            }
        })
        .collect();
    threads.sort_by(|a, b| b.cpu_s.total_cmp(&a.cpu_s).then(a.tid.cmp(&b.tid)));
    threads
}

/// The busiest threads for the human report: up to [`THREADS_SHOWN`] that
/// used at least 1 % of a core, then the rest added up.
fn threads_line(threads: &[ThreadCpu]) -> String {
    // Busiest first, so the ones under 1 % are at the end.
    let shown = threads
        .iter()
        .take(THREADS_SHOWN)
        .take_while(|t| t.cpu_percent >= 1.0)
        .count();
    let mut line: Vec<String> = threads[..shown]
        .iter()
        .map(|t| format!("{} {:.1}%", t.name, t.cpu_percent))
        .collect();
    let rest = &threads[shown..];
    if !rest.is_empty() {
        let percent: f64 = rest.iter().map(|t| t.cpu_percent).sum();
        line.push(format!("{} more {percent:.1}%", rest.len()));
    }
    line.join(", ")
}

/// Threads named one by one in the human report.
const THREADS_SHOWN: usize = 8;

/// Sum over the process's threads of the time spent waiting to run.
fn runqueue_wait_s(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let nanos: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    nanos as f64 / 1e9
}

/// CPU used and time spent waiting for a CPU between two samples.
#[derive(Debug, Serialize)]
pub struct CpuUse {
    pub cpu_s: f64,
    pub cpu_percent: f64,
    pub waited_for_cpu_s: f64,
}

/// The load tester's own CPU while sending and draining, and the
/// deliveries it received meanwhile.
pub struct LoadtestCpu {
    pub cpu: Option<CpuUse>,
    pub delivered: u64,
}

impl LoadtestCpu {
    pub fn new(cpu: Option<CpuUse>, delivered: u64) -> LoadtestCpu {
        LoadtestCpu { cpu, delivered }
    }

    /// Microseconds of CPU per delivery, to three decimals; none without
    /// deliveries to divide by.
    pub fn us_per_delivery(&self) -> Option<f64> {
        let cpu = self.cpu.as_ref()?;
        (self.delivered > 0).then(|| round3(cpu.cpu_s * 1e6 / self.delivered as f64))
    }
}

impl CpuUse {
    pub fn between(
        from: Option<ServerSample>,
        to: Option<ServerSample>,
        run_s: f64,
    ) -> Option<CpuUse> {
        let (from, to) = (from?, to?);
        let cpu_s = to.cpu_s - from.cpu_s;
        Some(CpuUse {
            cpu_s: round3(cpu_s),
            cpu_percent: round1(cpu_s / run_s.max(1e-6) * 100.0),
            waited_for_cpu_s: round3(to.waited_s - from.waited_s),
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `GET /api/rooms/{room}`: the room's stored count. ureq is blocking, so
/// the request runs on tokio's blocking pool.
pub async fn stored_count(ws_url: &str, room: &str) -> Result<u64, String> {
    let authority = ws_url.trim_start_matches("ws://");
    let url = format!("http://{authority}/api/rooms/{room}");
    let room = room.to_owned();
    tokio::task::spawn_blocking(move || fetch_stored_count(&url, &room))
        .await
        .map_err(|e| format!("REST: {e}"))?
}

fn fetch_stored_count(url: &str, room: &str) -> Result<u64, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let body = match agent.get(url).call() {
        Ok(response) => response.into_string().map_err(|e| format!("REST: {e}"))?,
        // A room that is not active and stored nothing is a 404: it stored 0.
        Err(ureq::Error::Status(404, _)) => return Ok(0),
        Err(ureq::Error::Status(status, _)) => {
            return Err(format!("REST: {url} answered {status}"))
        }
        Err(ureq::Error::Transport(e)) => return Err(format!("REST: {e}")),
    };
    let json: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("REST: body is not JSON: {e}"))?;
    json.get("messages")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| format!("REST: no message count for room {room}: {body}"))
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub passed: bool,
    /// Why the run failed (empty when it passed).
    pub failures: Vec<String>,
    pub warnings: Vec<String>,
    pub settings: Settings,
    pub timing: Timing,
    pub connections: Connections,
    pub messages: Messages,
    pub deliveries: Deliveries,
    /// `error` frames received, by code.
    pub errors: BTreeMap<String, u64>,
    pub churn: Option<Churn>,
    /// Every `--server-pid` added up.
    pub server: Option<ServerUsage>,
    /// Each `--server-pid`, when several were given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_nodes: Vec<ServerUsage>,
    /// `--db-pid`: the database server.
    pub database: Option<DatabaseUsage>,
    /// The whole machine while sending and draining: near `cores` × 100 %,
    /// the machine, not any one process or thread, is the limit.
    pub machine_cpu: Option<MachineCpu>,
    /// The load tester's own CPU while sending and draining: if it nears
    /// 100% of a core, the load tester, not the server, is the limit.
    pub loadtest_cpu: Option<CpuUse>,
    /// `loadtest_cpu` per delivery received in that time, in microseconds:
    /// what one delivery costs the load tester, whatever the rate (1 µs is
    /// a whole core at 1 M deliveries/s).
    pub loadtest_us_per_delivery: Option<f64>,
    /// Connection tasks aborted or panicked at the end.
    pub unfinished: Unfinished,
    /// The features scenario's own figures and checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
}

/// One kind of stored change in the features scenario.
#[derive(Debug, Serialize)]
pub struct KindFigures {
    pub sent: u64,
    /// Answered with the sender's copy (stored and broadcast).
    pub acked: u64,
    pub refused: u64,
    pub unanswered: u64,
    /// Every ready member should receive every acknowledged one.
    pub expected: u64,
    /// Received in order, each once.
    pub received: u64,
    pub lost: u64,
    /// From when it was due to the sender's own copy.
    pub echo_ms: Latency,
    /// From when it was due to each other member.
    pub delivery_ms: Latency,
}

#[derive(Debug, Serialize)]
pub struct Resends {
    /// Keyed chats sent again with their key.
    pub sent: u64,
    /// Answered with the original chat's id, as they must be.
    pub original_id: u64,
    /// Answered with a new id: stored twice.
    pub new_id: u64,
    pub refused: u64,
    pub unanswered: u64,
    pub echo_ms: Latency,
}

#[derive(Debug, Serialize)]
pub struct Reads {
    pub sent: u64,
    pub acked: u64,
    pub refused: u64,
    pub unanswered: u64,
    /// Acknowledged with a marker below the id sent.
    pub moved_back: u64,
    pub echo_ms: Latency,
}

#[derive(Debug, Serialize)]
pub struct Typing {
    pub sent: u64,
    /// Typing frames received, all members together.
    pub forwarded: u64,
    /// `forwarded` per second of sending (typing is sent only then).
    pub forwarded_per_s: f64,
    /// Received by a member naming its own user (must be none).
    pub from_self: u64,
    /// The most any one member may receive from one sender over the run:
    /// one per 2 s of sending, plus one.
    pub max_per_pair: u64,
    /// (sender, receiver) pairs that got more than that.
    pub over_throttle: u64,
}

#[derive(Debug, Serialize)]
pub struct Features {
    /// chat, edit, delete, reaction.
    pub kinds: BTreeMap<&'static str, KindFigures>,
    pub resends: Resends,
    pub reads: Reads,
    pub typing: Typing,
    /// Reactions answered with `id: 0` (the scenario never sends a no-op).
    pub reaction_noops: u64,
    /// Changes by this run's users that no sender had sent.
    pub unknown_changes: u64,
    pub replay: Option<Replay>,
}

/// The features figures, and their failures and warnings.
fn features_figures(
    outcomes: &[Outcome],
    shared: &Shared,
    timing: &Timing,
    chats: KindFigures,
    replay: Option<Replay>,
    failures: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<Features> {
    let hub = shared.features.as_ref()?;
    let of = |o: &Outcome| o.features.clone().unwrap_or_default();
    let all: Vec<(&Outcome, FeatureOutcome)> = outcomes.iter().map(|o| (o, of(o))).collect();
    let sum = |pick: &dyn Fn(&FeatureOutcome) -> u64| all.iter().map(|(_, f)| pick(f)).sum::<u64>();
    let sum_tally = |pick: &dyn Fn(&FeatureOutcome) -> Tally| Tally {
        sent: sum(&|f| pick(f).sent),
        acked: sum(&|f| pick(f).acked),
        refused: sum(&|f| pick(f).refused),
    };
    // The ready senders and what each had acknowledged, per kind.
    let senders: Vec<(SenderId, &FeatureOutcome)> = all
        .iter()
        .filter(|(o, _)| o.ready)
        .filter_map(|(o, f)| Some((o.sender?, f)))
        .collect();
    let mut kinds = BTreeMap::new();
    kinds.insert("chat", chats);
    let noops = sum(&|f| f.reaction_noops);
    for (name, kind) in [
        ("edit", ChangeKind::Edit),
        ("delete", ChangeKind::Delete),
        ("reaction", ChangeKind::Reaction),
    ] {
        let t = sum_tally(&|f| f.tally(kind));
        let (mut expected, mut received, mut lost) = (0, 0, 0);
        for (o, _) in all.iter().filter(|(o, _)| o.ready) {
            for (sender, f) in &senders {
                let acked = f.tally(kind).acked;
                let got = o
                    .receipts
                    .changes_in_order
                    .get(&(*sender, kind))
                    .copied()
                    .unwrap_or(0);
                expected += acked;
                received += got.min(acked);
                lost += acked.saturating_sub(got);
            }
        }
        let unanswered = t.sent.saturating_sub(
            t.acked
                + t.refused
                + if kind == ChangeKind::Reaction {
                    noops
                } else {
                    0
                },
        );
        if lost > 0 {
            failures.push(format!("{lost} {name} deliveries lost"));
        }
        if unanswered > 0 {
            failures.push(format!(
                "{unanswered} {name}s were neither echoed nor refused"
            ));
        }
        kinds.insert(
            name,
            KindFigures {
                sent: t.sent,
                acked: t.acked,
                refused: t.refused,
                unanswered,
                expected,
                received,
                lost,
                echo_ms: hub.latency(Slot::of(kind, true)),
                delivery_ms: hub.latency(Slot::of(kind, false)),
            },
        );
    }
    let r = sum_tally(&|f| f.resends);
    let resends = Resends {
        sent: r.sent,
        original_id: sum(&|f| f.resends_original),
        new_id: sum(&|f| f.resends_new_id),
        refused: r.refused,
        unanswered: r.sent.saturating_sub(r.acked + r.refused),
        echo_ms: hub.latency(Slot::ResendEcho),
    };
    if resends.new_id > 0 {
        failures.push(format!(
            "{} of {} resent keys came back with a new id (the chat was stored again)",
            resends.new_id, resends.sent
        ));
    }
    if resends.unanswered > 0 {
        failures.push(format!(
            "{} resends were never answered",
            resends.unanswered
        ));
    }
    if resends.sent == 0 {
        warnings.push("no keyed chat was resent: run longer or at a higher rate".into());
    }
    let m = sum_tally(&|f| f.reads);
    let reads = Reads {
        sent: m.sent,
        acked: m.acked,
        refused: m.refused,
        unanswered: m.sent.saturating_sub(m.acked + m.refused),
        moved_back: sum(&|f| f.reads_moved_back),
        echo_ms: hub.latency(Slot::ReadEcho),
    };
    if reads.moved_back > 0 {
        failures.push(format!(
            "{} read markers were acknowledged below the id sent",
            reads.moved_back
        ));
    }
    if reads.unanswered > 0 {
        failures.push(format!(
            "{} read markers were never acknowledged",
            reads.unanswered
        ));
    }
    let forwarded = hub.typing_forwarded.load(Ordering::Relaxed);
    let max_per_pair = (timing.sending_s / 2.0).floor() as u64 + 1;
    let over_throttle = all
        .iter()
        .flat_map(|(_, f)| f.typing_from.values())
        .filter(|&&n| n > max_per_pair)
        .count() as u64;
    let typing = Typing {
        sent: sum(&|f| f.typing_sent),
        forwarded,
        forwarded_per_s: round1(forwarded as f64 / timing.sending_s.max(1e-6)),
        from_self: sum(&|f| f.typing_from_self),
        max_per_pair,
        over_throttle,
    };
    if typing.from_self > 0 {
        failures.push(format!(
            "{} typing frames reached their own sender's user",
            typing.from_self
        ));
    }
    if typing.over_throttle > 0 {
        failures.push(format!(
            "{} (sender, receiver) pairs got more than {max_per_pair} typing frames \
             (one per 2 s of sending, plus one)",
            typing.over_throttle
        ));
    }
    let unknown_changes = sum(&|f| f.unknown_changes);
    if noops > 0 {
        failures.push(format!(
            "{noops} reactions were answered as changing nothing, though each was a change"
        ));
    }
    if unknown_changes > 0 {
        failures.push(format!(
            "{unknown_changes} edits, deletes or reactions by this run's users were never sent"
        ));
    }
    if let Some(replay) = &replay {
        if let Some(e) = &replay.error {
            failures.push(format!("the since replay could not be read: {e}"));
        }
        if replay.typing_items > 0 {
            failures.push(format!(
                "the since replay holds {} typing items (typing is never stored)",
                replay.typing_items
            ));
        }
        if replay.ref_items > 0 {
            failures.push(format!("{} replayed items carry a ref", replay.ref_items));
        }
        if replay.not_rising > 0 {
            failures.push(format!(
                "{} replayed items did not have an id above the one before",
                replay.not_rising
            ));
        }
        if replay.matches_live == Some(false) {
            failures.push(format!(
                "the since replay differs from what a member received live: {}",
                replay.difference.as_deref().unwrap_or("?")
            ));
        }
        if !replay.complete && replay.error.is_none() {
            warnings.push(format!(
                "the since replay stopped after {} pages ({} items) before the end; \
                 raise --replay-pages or the server's MAX_HISTORY",
                replay.pages, replay.items
            ));
        }
    }
    Some(Features {
        kinds,
        resends,
        reads,
        typing,
        reaction_noops: noops,
        unknown_changes,
        replay,
    })
}

#[allow(clippy::too_many_arguments)]
pub fn build(
    settings: Settings,
    max_connect_failures: u64,
    plan: &Plan,
    outcomes: Vec<Outcome>,
    shared: &Shared,
    timing: Timing,
    stored: Option<Stored>,
    usage: Usage,
    loadtest_cpu: LoadtestCpu,
    mut warnings: Vec<String>,
    unfinished: Unfinished,
    replay: Option<Replay>,
) -> Report {
    let c = &shared.counters;
    let tallies = |m: &std::sync::Mutex<BTreeMap<String, u64>>| {
        m.lock().unwrap_or_else(PoisonError::into_inner).clone()
    };
    let errors = tallies(&shared.errors);
    let mut failures = Vec::new();

    // Connections.
    let attempted = c.connect_attempts.load(Ordering::Relaxed);
    let opened = match settings.scenario {
        Scenario::Churn => c.connected.load(Ordering::Relaxed),
        _ => timing.opened_in_setup,
    };
    let failed = c.connect_failed.load(Ordering::Relaxed);
    let join_failed = c.join_failed.load(Ordering::Relaxed);
    let ready = c.ready.load(Ordering::Relaxed);
    let late = c.late.load(Ordering::Relaxed);
    let not_ready = (settings.clients as u64).saturating_sub(ready);
    // Churn opens connections all run long: any that fails to open or join.
    let failing = match settings.scenario {
        Scenario::Churn => failed + join_failed,
        _ => not_ready,
    };
    if failing > max_connect_failures {
        failures.push(format!(
            "{failing} of {} connections failed to open or join, or were not ready when \
             sending started (allowed: {max_connect_failures})",
            settings.clients
        ));
    }
    if late > 0 {
        warnings.push(format!(
            "{late} connections were ready only after setup ended (--setup-timeout): \
             closed unused, not counted as opened nor expected to receive"
        ));
    }
    if unfinished.aborted > 0 {
        failures.push(format!(
            "{} connection tasks were still running {:.0} s after sending stopped \
             (blocked on a server that stopped answering?) and were aborted; \
             their figures are missing",
            unfinished.aborted, unfinished.limit_s
        ));
    }
    if unfinished.spawner_stuck {
        failures.push("the task opening connections never returned".into());
    }
    for panic in &unfinished.panics {
        failures.push(format!("a connection task panicked: {panic}"));
    }
    let stalled = c.send_stalled.load(Ordering::Relaxed);
    if stalled > 0 {
        failures.push(format!(
            "{stalled} connections could not write a frame within {} s or before the run \
             ended (the server stopped reading?) and were given up",
            crate::client::SEND_TIMEOUT.as_secs()
        ));
    }
    let dropped = c.dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        failures.push(format!(
            "the server dropped {dropped} connections during the run"
        ));
    }
    let connections = Connections {
        attempted,
        opened,
        failed,
        join_failed,
        ready,
        not_ready,
        late,
        failure_reasons: tallies(&shared.connect_errors),
        per_s: round1(if settings.scenario == Scenario::Churn {
            opened as f64 / (timing.sending_s + timing.drain_s).max(1e-6)
        } else {
            opened as f64 / timing.connect_window_s
        }),
        setup_s: round1(timing.setup_s),
        latency_ms: Latency::from_micros(
            &shared
                .connect_latency
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        ),
        dropped_by_server: dropped,
        closes: tallies(&shared.closes),
        by_node: by_node(&settings.urls, &outcomes),
    };

    // Messages and deliveries.
    let sent: u64 = outcomes.iter().map(|o| o.sent).sum();
    let acked: u64 = outcomes.iter().map(|o| o.acked).sum();
    let refused: u64 = outcomes.iter().map(|o| o.refused).sum();
    let unanswered = sent.saturating_sub(acked + refused);
    if unanswered > 0 {
        failures.push(format!(
            "{unanswered} messages were neither echoed nor refused"
        ));
    }
    let (mut expected, mut lost) = expected_and_lost(&outcomes);
    let (mut received, mut duplicated, mut out_of_order) = (0, 0, 0);
    for o in &outcomes {
        received += o.receipts.delivered;
        duplicated += o.receipts.duplicated;
        out_of_order += o.receipts.out_of_order;
    }
    if settings.scenario == Scenario::Churn {
        // Churn checks each sender's own echoes; members come and go, so
        // what others should have heard is not tracked.
        expected = acked;
        lost = unanswered;
    }
    if lost > 0 && settings.scenario != Scenario::Churn {
        failures.push(format!("{lost} deliveries lost"));
    }
    if duplicated > 0 {
        failures.push(format!("{duplicated} deliveries duplicated"));
    }
    if out_of_order > 0 {
        failures.push(format!("{out_of_order} deliveries out of order"));
    }
    // Churn's members come and go: there is no one set to agree on.
    let mismatched_ids = match settings.scenario {
        Scenario::Churn | Scenario::Connect => 0,
        _ => mismatched_ids(&outcomes),
    };
    if mismatched_ids > 0 {
        failures.push(format!(
            "{mismatched_ids} receivers got some sender's messages under other ids than \
             the sender's own copies came with"
        ));
    }
    if let Some(stored) = &stored {
        match &stored.error {
            Some(e) => warnings.push(format!("could not check storage: {e}")),
            None if stored.found < stored.expected => failures.push(format!(
                "{} acknowledged messages are not stored ({} rooms short)",
                stored.expected - stored.found,
                stored.short_rooms
            )),
            None => {}
        }
    }
    if sent > 0 && acked == 0 {
        failures.push(format!(
            "the server acknowledged none of the {sent} messages sent"
        ));
    }
    if sent == 0 && settings.scenario != Scenario::Connect {
        failures.push("no message was sent (no senders, or none connected)".into());
    }
    for (code, n) in errors
        .iter()
        .filter(|(code, _)| code.as_str() != "rate_limited")
    {
        failures.push(format!("the server answered {n} frames with error {code}"));
    }
    if let Some(n) = errors.get("rate_limited") {
        warnings.push(format!(
            "{n} messages were refused with rate_limited: the server's RATE_LIMIT/RATE_BURST \
             throttled this scenario; raise them on the server for a throughput run"
        ));
    }
    if settings.scenario == Scenario::Churn && c.sessions.load(Ordering::Relaxed) == 0 {
        failures.push("no churn session completed".into());
    }
    let run_s = (timing.sending_s + timing.drain_s).max(1e-6);
    let deliveries = Deliveries {
        expected,
        received,
        lost,
        duplicated,
        out_of_order,
        mismatched_ids,
        per_s: round1(timing.delivered_while_sending as f64 / timing.sending_s.max(1e-6)),
        latency_ms: Latency::from_micros(
            &shared
                .latency
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        ),
    };
    let messages = Messages {
        sent,
        acked,
        refused,
        unanswered,
        sent_per_s: round1(sent as f64 / timing.sending_s.max(1e-6)),
        stored,
    };
    let churn = (settings.scenario == Scenario::Churn).then(|| Churn {
        sessions: c.sessions.load(Ordering::Relaxed),
        sessions_per_s: round1(c.sessions.load(Ordering::Relaxed) as f64 / run_s),
    });
    let features = features_figures(
        &outcomes,
        shared,
        &timing,
        KindFigures {
            sent,
            acked,
            refused,
            unanswered,
            expected: deliveries.expected,
            received: deliveries.expected - deliveries.lost,
            lost: deliveries.lost,
            echo_ms: shared
                .features
                .as_ref()
                .map(|h| h.latency(Slot::ChatEcho))
                .unwrap_or_default(),
            delivery_ms: shared
                .features
                .as_ref()
                .map(|h| h.latency(Slot::ChatDelivery))
                .unwrap_or_default(),
        },
        replay,
        &mut failures,
        &mut warnings,
    );
    let _ = plan;
    Report {
        passed: failures.is_empty(),
        failures,
        warnings,
        settings,
        timing,
        connections,
        messages,
        deliveries,
        errors,
        churn,
        server: usage.server,
        server_nodes: usage.server_nodes,
        database: usage.database,
        machine_cpu: usage.machine,
        loadtest_us_per_delivery: loadtest_cpu.us_per_delivery(),
        loadtest_cpu: loadtest_cpu.cpu,
        unfinished,
        features,
    }
}

/// Deliveries expected and lost (fanout, rooms): each member that was ready
/// (connected and joined) when sending started should receive every
/// acknowledged message of the ready senders of its room. A member that never
/// joined, or joined late, is expected to receive nothing.
pub fn expected_and_lost(outcomes: &[Outcome]) -> (u64, u64) {
    let by_room = senders_by_room(outcomes);
    let (mut expected, mut lost) = (0, 0);
    for o in outcomes.iter().filter(|o| o.ready) {
        if let Some(senders) = by_room.get(&o.room) {
            expected += senders.iter().map(|(_, acked)| acked).sum::<u64>();
            lost += o.receipts.lost(senders.iter().copied());
        }
    }
    (expected, lost)
}

/// (receiver, sender) pairs of a room where the receiver, ready when
/// sending started, got every message of the sender in order but not all
/// under the ids the sender's own copies (its echoes) came with. With
/// members on several nodes, that is the nodes disagreeing on an id.
pub fn mismatched_ids(outcomes: &[Outcome]) -> u64 {
    let own: HashMap<SenderId, &Receipts> = outcomes
        .iter()
        .filter(|o| o.ready)
        .filter_map(|o| Some((o.sender?, &o.receipts)))
        .collect();
    let by_room = senders_by_room(outcomes);
    let mut mismatched = 0;
    for o in outcomes.iter().filter(|o| o.ready) {
        let Some(senders) = by_room.get(&o.room) else {
            continue;
        };
        for &(sender, _) in senders {
            if o.sender == Some(sender) {
                continue;
            }
            let agrees = own
                .get(&sender)
                .and_then(|reference| o.receipts.same_ids(reference, sender));
            if agrees == Some(false) {
                mismatched += 1;
            }
        }
    }
    mismatched
}

/// Connections per node, from what each connection task reported.
fn by_node(urls: &[String], outcomes: &[Outcome]) -> Vec<NodeConnections> {
    let mut nodes: Vec<NodeConnections> = urls
        .iter()
        .map(|url| NodeConnections {
            url: url.clone(),
            opened: 0,
            ready: 0,
            senders: 0,
        })
        .collect();
    for o in outcomes {
        let Some(node) = nodes.get_mut(o.node) else {
            continue;
        };
        node.opened += u64::from(o.connected);
        node.ready += u64::from(o.ready);
        node.senders += u64::from(o.ready && o.sender.is_some());
    }
    nodes
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl Report {
    /// The human-readable summary.
    pub fn table(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let mut line = |k: &str, v: String| {
            let _ = writeln!(out, "  {k:<24} {v}");
        };
        line(
            "scenario",
            format!(
                "{:?} against {}: {} clients, {} rooms x {} members, {} senders at {:.1} msg/s each ({:.1} msg/s total), {} B texts, {:.1} s",
                s.scenario, s.urls.join(", "), s.clients, s.rooms, s.members_per_room, s.senders,
                s.per_sender_rate, s.total_rate, s.message_size, s.duration_s
            ),
        );
        let c = &self.connections;
        line(
            "connections",
            format!(
                "{} opened, {} failed, {} could not join, {} ready, {} late; {:.0}/s; upgrade p50 {} ms, p99 {} ms",
                c.opened, c.failed, c.join_failed, c.ready, c.late, c.per_s, c.latency_ms.p50, c.latency_ms.p99
            ),
        );
        for (why, n) in &c.failure_reasons {
            line("  failed", format!("{n} x {why}"));
        }
        if c.by_node.len() > 1 {
            for node in &c.by_node {
                line(
                    "  node",
                    format!(
                        "{}: {} opened, {} ready, {} of them sending",
                        node.url, node.opened, node.ready, node.senders
                    ),
                );
            }
        }
        line(
            "dropped by server",
            format!("{} {}", c.dropped_by_server, fmt_map(&c.closes)),
        );
        let m = &self.messages;
        line(
            "messages",
            format!(
                "{} sent ({:.1}/s), {} acked, {} refused, {} unanswered",
                m.sent, m.sent_per_s, m.acked, m.refused, m.unanswered
            ),
        );
        if let Some(st) = &m.stored {
            line(
                "stored",
                match &st.error {
                    Some(e) => format!("not checked: {e}"),
                    None => format!(
                        "{} of {} acknowledged (asked {} node{})",
                        st.found,
                        st.expected,
                        st.nodes_asked,
                        if st.nodes_asked == 1 { "" } else { "s" }
                    ),
                },
            );
        }
        let d = &self.deliveries;
        line(
            "deliveries",
            format!(
                "{} expected, {} received, {:.0}/s",
                d.expected, d.received, d.per_s
            ),
        );
        line(
            "lost / dup / reordered",
            format!("{} / {} / {}", d.lost, d.duplicated, d.out_of_order),
        );
        line(
            "ids differing",
            format!("{} (receiver, sender) pairs", d.mismatched_ids),
        );
        line(
            "latency (ms)",
            format!(
                "p50 {}  p95 {}  p99 {}  max {}  ({} samples)",
                d.latency_ms.p50,
                d.latency_ms.p95,
                d.latency_ms.p99,
                d.latency_ms.max,
                d.latency_ms.count
            ),
        );
        line("errors", fmt_map(&self.errors));
        if let Some(f) = &self.features {
            let ms = |l: &Latency| format!("p50 {} p99 {}", l.p50, l.p99);
            for (name, k) in &f.kinds {
                line(
                    &format!("  {name}"),
                    format!(
                        "{} sent, {} acked, {} refused; {} of {} delivered, {} lost; echo {} ms, delivery {} ms",
                        k.sent, k.acked, k.refused, k.received, k.expected, k.lost,
                        ms(&k.echo_ms), ms(&k.delivery_ms)
                    ),
                );
            }
            let r = &f.resends;
            line(
                "  resends",
                format!(
                    "{} sent: {} original id, {} new id, {} refused, {} unanswered; echo {} ms",
                    r.sent,
                    r.original_id,
                    r.new_id,
                    r.refused,
                    r.unanswered,
                    ms(&r.echo_ms)
                ),
            );
            let m = &f.reads;
            line(
                "  read markers",
                format!(
                    "{} sent, {} acked, {} moved back; echo {} ms",
                    m.sent,
                    m.acked,
                    m.moved_back,
                    ms(&m.echo_ms)
                ),
            );
            let t = &f.typing;
            line(
                "  typing",
                format!(
                    "{} sent, {} forwarded ({:.1}/s), {} to their own user, {} pairs over {} each",
                    t.sent,
                    t.forwarded,
                    t.forwarded_per_s,
                    t.from_self,
                    t.over_throttle,
                    t.max_per_pair
                ),
            );
            if let Some(rp) = &f.replay {
                line(
                    "  since replay",
                    format!(
                        "{} items in {} pages{}, {}; {} typing; same as live: {}",
                        rp.items,
                        rp.pages,
                        if rp.complete { "" } else { " (incomplete)" },
                        fmt_map(&rp.by_type),
                        rp.typing_items,
                        rp.matches_live.map_or("?".into(), |b| b.to_string())
                    ),
                );
            }
        }
        if let Some(ch) = &self.churn {
            line(
                "churn sessions",
                format!("{} ({:.1}/s)", ch.sessions, ch.sessions_per_s),
            );
        }
        if let Some(sv) = &self.server {
            let kb = |v: Option<u64>| v.map_or("?".into(), |v| format!("{v} kB"));
            line(
                "server RSS",
                format!(
                    "{} before, {} connected, {} after; {} bytes/connection",
                    kb(sv.rss_before_kb),
                    kb(sv.rss_connected_kb),
                    kb(sv.rss_after_kb),
                    sv.bytes_per_connection
                        .map_or("?".into(), |b| format!("{b:.0}"))
                ),
            );
            if let Some(cpu) = &sv.setup_cpu {
                line(
                    "server CPU, setup",
                    format!(
                        "{:.2} s, {} us per connection; {:.2} s waiting for a CPU",
                        cpu.cpu_s,
                        sv.cpu_us_per_connection
                            .map_or("?".into(), |u| format!("{u:.0}")),
                        cpu.waited_for_cpu_s
                    ),
                );
                if !sv.setup_threads.is_empty() {
                    line("  by thread", threads_line(&sv.setup_threads));
                }
            }
            if let Some(cpu) = &sv.cpu {
                line("server CPU", cpu.to_string());
            }
            if !sv.threads.is_empty() {
                line("  by thread", threads_line(&sv.threads));
            }
        }
        for (n, sv) in self.server_nodes.iter().enumerate() {
            if let Some(cpu) = &sv.cpu {
                let pid = sv.pids.first().copied().unwrap_or(0);
                line(&format!("  node {n} (pid {pid})"), cpu.to_string());
            }
            if !sv.threads.is_empty() {
                line("    by thread", threads_line(&sv.threads));
            }
        }
        if let Some(db) = &self.database {
            if let Some(cpu) = &db.cpu {
                line(
                    "database CPU",
                    format!(
                        "{cpu}; {} of the server side's",
                        db.share_percent.map_or("?".into(), |p| format!("{p}%"))
                    ),
                );
            }
        }
        if let Some(cpu) = &self.loadtest_cpu {
            line("loadtest CPU", cpu.to_string());
        }
        if let Some(m) = &self.machine_cpu {
            line(
                "machine CPU",
                format!(
                    "{:.1}% of {}% busy ({} cores), everything included; {:.1}% stolen by the hypervisor",
                    m.busy_percent,
                    m.cores * 100,
                    m.cores,
                    m.steal_percent
                ),
            );
        }
        if let Some(us) = self.loadtest_us_per_delivery {
            line(
                "loadtest per delivery",
                format!(
                    "{us} µs of CPU ({:.0}% of one core at 1 M deliveries/s)",
                    us * 100.0
                ),
            );
        }
        let mut text = String::from("chatterbox load test\n");
        text.push_str(&out);
        for w in &self.warnings {
            let _ = writeln!(text, "warning: {w}");
        }
        if self.passed {
            text.push_str("PASSED\n");
        } else {
            for f in &self.failures {
                let _ = writeln!(text, "FAILED: {f}");
            }
        }
        text
    }
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2} s ({}% of one core) while sending and draining; {:.2} s waiting for a CPU",
            self.cpu_s, self.cpu_percent, self.waited_for_cpu_s
        )
    }
}

fn fmt_map(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::{Receipts, Stamp};

    fn received(deliveries: &[(i64, u32, u64)]) -> Receipts {
        let mut r = Receipts::default();
        for &(id, sender, seq) in deliveries {
            r.record(
                id,
                Stamp {
                    sender,
                    seq,
                    due_us: 0,
                },
            );
        }
        r
    }

    #[test]
    fn a_stat_line_gives_its_name_even_with_spaces_and_parentheses() {
        let line = "4242 (actix-rt|system:0) (x) S 1 4242 4242 0 -1 4194368 100 0 0 0 \
                    250 75 3 4 20 0 9 0 1000 0 0";
        let (name, stat) = Stat::parse(line).expect("a stat line");
        assert_eq!(name, "actix-rt|system:0) (x");
        assert_eq!((stat.ppid, stat.utime, stat.stime), (1, 250, 75));
        assert_eq!((stat.cutime, stat.cstime), (3, 4));
    }

    #[test]
    fn the_machine_is_busy_except_when_idle_waiting_for_io_or_stolen() {
        let stat =
            |first: &str| format!("{first}\ncpu0 1 2 3 4 5 6 7 8\ncpu1 1 2 3 4 5 6 7 8\nintr 5\n");
        let from = MachineTicks::parse(&stat("cpu  100 0 50 800 50 0 0 0 0 0")).expect("parsed");
        let to =
            MachineTicks::parse(&stat("cpu  300 10 150 1300 100 5 35 100 0 0")).expect("parsed");
        assert_eq!(
            (from.busy, from.steal, from.total, from.cores),
            (150, 0, 1000, 2)
        );
        // In between: 350 busy and 100 stolen of 1000 ticks on 2 cores.
        let cpu = MachineCpu::between(Some(from), Some(to)).expect("cpu");
        assert_eq!(
            cpu,
            MachineCpu {
                cores: 2,
                busy_percent: 70.0,
                steal_percent: 20.0
            }
        );
        assert!(MachineTicks::parse("cpu0 1 2 3 4 5 6 7 8").is_none());
        assert!(MachineTicks::parse("cpu  1 2 x").is_none());
        assert!(MachineTicks::parse("").is_none());
    }

    #[test]
    fn threads_are_ranked_by_what_they_used_in_the_run() {
        let ticks = |list: &[(u32, &str, u64)]| -> ThreadTicks {
            list.iter()
                .map(|&(tid, name, t)| (tid, (name.to_string(), t)))
                .collect()
        };
        let from = ticks(&[
            (1, "chatterbox", 500),
            (2, "room-0", 100),
            (3, "room-1", 100),
        ]);
        // room-1 used more in the run though less in all; thread 4 is new;
        // thread 2 ended.
        let to = ticks(&[
            (1, "chatterbox", 520),
            (3, "room-1", 400),
            (4, "history-write", 50),
        ]);
        let threads = thread_cpu(&from, &to, 10.0);
        let got: Vec<(&str, f64, f64)> = threads
            .iter()
            .map(|t| (t.name.as_str(), t.cpu_s, t.cpu_percent))
            .collect();
        assert_eq!(
            got,
            [
                ("room-1", 3.0, 30.0),
                ("history-write", 0.5, 5.0),
                ("chatterbox", 0.2, 2.0)
            ]
        );
        assert_eq!(
            threads_line(&threads),
            "room-1 30.0%, history-write 5.0%, chatterbox 2.0%"
        );
    }

    #[test]
    fn the_report_names_the_busiest_threads_and_adds_up_the_rest() {
        let thread = |tid, percent: f64| ThreadCpu {
            tid,
            name: format!("t{tid}"),
            cpu_s: percent / 10.0,
            cpu_percent: percent,
        };
        // Nine over 1 % and two under: eight named, three added up.
        let mut threads: Vec<ThreadCpu> = (0..9).map(|i| thread(i, 50.0 - f64::from(i))).collect();
        threads.extend([thread(9, 0.5), thread(10, 0.25)]);
        let line = threads_line(&threads);
        assert!(line.starts_with("t0 50.0%, t1 49.0%, "), "{line}");
        assert!(line.ends_with("t7 43.0%, 3 more 42.8%"), "{line}");
        assert_eq!(threads_line(&[thread(0, 0.5)]), "1 more 0.5%");
    }

    #[test]
    fn members_not_ready_when_sending_started_are_expected_to_receive_nothing() {
        let member = |ready, sender, acked, receipts| Outcome {
            connected: true,
            ready,
            sender,
            room: 0,
            acked,
            sent: acked,
            receipts,
            ..Outcome::default()
        };
        let both = received(&[(1, 0, 1), (2, 0, 2), (3, 0, 3)]);
        let outcomes = vec![
            // The sender (ready): 3 acknowledged, its echoes received.
            member(true, Some(0), 3, both.clone()),
            // A ready receiver that got all three.
            member(true, None, 0, both),
            // Its join failed: connected, but never a member of the room.
            member(false, None, 0, Receipts::default()),
            // Joined late (after setup timed out): saw only the last one.
            member(false, None, 0, received(&[(3, 0, 3)])),
            // Another room's sender that never got ready: not expected anywhere.
            Outcome {
                room: 1,
                ..member(false, Some(9), 0, Receipts::default())
            },
        ];
        assert_eq!(expected_and_lost(&outcomes), (6, 0));

        // A ready member that missed one is a loss.
        let mut outcomes = outcomes;
        outcomes[1].receipts = received(&[(1, 0, 1), (3, 0, 3)]);
        assert_eq!(expected_and_lost(&outcomes), (6, 1));
    }

    #[test]
    fn a_receiver_that_got_a_message_under_another_id_is_a_mismatch() {
        let member = |node, sender, receipts| Outcome {
            connected: true,
            ready: true,
            sender,
            node,
            room: 0,
            acked: 2,
            sent: 2,
            receipts,
            ..Outcome::default()
        };
        // Senders 0 (node 0) and 1 (node 1); their echoes' ids are the
        // reference.
        let seen = received(&[(1, 0, 1), (2, 1, 1), (3, 0, 2), (4, 1, 2)]);
        let mut outcomes = vec![
            member(0, Some(0), seen.clone()),
            member(1, Some(1), seen.clone()),
            // A receiver on node 2 that saw the same ids.
            member(2, None, seen.clone()),
        ];
        assert_eq!(mismatched_ids(&outcomes), 0);
        // One that got sender 1's second message under id 5.
        outcomes.push(member(
            2,
            None,
            received(&[(1, 0, 1), (2, 1, 1), (3, 0, 2), (5, 1, 2)]),
        ));
        assert_eq!(mismatched_ids(&outcomes), 1);
        // One that lost it: a loss, which is no id to compare.
        outcomes.push(member(
            0,
            None,
            received(&[(1, 0, 1), (2, 1, 1), (3, 0, 2)]),
        ));
        assert_eq!(mismatched_ids(&outcomes), 1);
        assert_eq!(expected_and_lost(&outcomes).1, 1);

        let nodes = by_node(
            &[
                "ws://a".to_string(),
                "ws://b".to_string(),
                "ws://c".to_string(),
            ],
            &outcomes,
        );
        let per_node: Vec<(u64, u64)> = nodes.iter().map(|n| (n.ready, n.senders)).collect();
        assert_eq!(per_node, [(2, 1), (1, 1), (2, 0)]);
    }
}
