//! A throwaway PostgreSQL server for one test, from the programs of
//! Debian's `postgresql` package: a cluster made by `initdb` in a temporary
//! folder, started by `pg_ctl` on a free port of 127.0.0.1 (its unix socket
//! in that folder too), with one database; stopped and removed on drop.
//!
//! `initdb` and the server refuse to run as root, and CI runs the tests as
//! root: then they run as the `postgres` system user (through `runuser`),
//! which the package creates, and the folder belongs to that user. The
//! clients (`createdb`, `psql`) connect over TCP with trust authentication
//! and need no particular user.
//!
//! A test run that is killed leaves its servers running (`pg_ctl` detaches
//! them) and their folders behind. Each folder names the process that made
//! it, so the next [`PgServer::start`] stops the servers of processes that
//! are gone and removes their folders.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use tempfile::TempDir;

use crate::{free_port, skip_unless_ci};

/// Where Debian's `postgresql` package puts the server's programs.
pub const DEBIAN_PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The variable that names another folder of PostgreSQL programs.
pub const PG_BIN_VARIABLE: &str = "PG_BIN";

/// The programs a [`PgServer`] runs: the server's and the clients'.
const PROGRAMS: [&str; 5] = ["initdb", "pg_ctl", "postgres", "createdb", "psql"];

/// Every server's folder, in the system's temporary folder, starts with
/// this: how a later run finds what a killed one left.
const DIR_PREFIX: &str = "chatterbox-pg-";

/// The file in a server's folder that names the process that owns it.
const OWNER_FILE: &str = "owner";

/// A folder without an owner file younger than this is being set up by a
/// live process right now, not left behind.
const SETUP_GRACE: Duration = Duration::from_secs(60);

/// The system user that runs the server when the tests run as root.
const SYSTEM_USER: &str = "postgres";

/// The superuser `initdb` creates, whatever user runs it.
pub const SUPERUSER: &str = "postgres";

/// The database every server starts with.
pub const DATABASE: &str = "chatterbox";

/// How many free ports to try when another process takes the first one
/// between [`free_port`] and the server's bind.
const PORT_ATTEMPTS: usize = 5;

/// How long `pg_ctl` waits for the server to start or stop (seconds).
/// Generous: the machine is small and shared with compilers.
const PG_CTL_TIMEOUT: &str = "60";

/// Where the server's programs are, and who runs them.
#[derive(Debug, Clone)]
struct Programs {
    bin: PathBuf,
    /// The user the server-side programs run as (through `runuser`), when
    /// the tests run as root; otherwise the tests' own.
    run_as: Option<&'static str>,
}

impl Programs {
    /// `$PG_BIN` or Debian's folder, with every program in it; as root,
    /// also a working `runuser -u postgres`. Says what is missing.
    fn locate() -> Result<Programs, String> {
        let bin = std::env::var_os(PG_BIN_VARIABLE)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEBIAN_PG_BIN));
        let missing: Vec<&str> = PROGRAMS
            .into_iter()
            .filter(|program| !bin.join(program).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "no PostgreSQL programs {} in {} (${PG_BIN_VARIABLE} names another folder)",
                missing.join(", "),
                bin.display()
            ));
        }
        let run_as = rustix::process::geteuid().is_root().then_some(SYSTEM_USER);
        if let Some(user) = run_as {
            let works = Command::new("runuser")
                .args(["-u", user, "--", "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if !works {
                return Err(format!(
                    "running as root, PostgreSQL must run as the user {user}, and `runuser -u {user}` fails"
                ));
            }
        }
        Ok(Programs { bin, run_as })
    }

    /// `program` (initdb, pg_ctl), to run in `dir` as [`Programs::run_as`].
    fn server_side(&self, dir: &Path, program: &str) -> Command {
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(self.bin.join(program));
                command
            }
            None => Command::new(self.bin.join(program)),
        };
        isolate(&mut command, dir);
        command
    }

    /// A client program (createdb, psql), to run in `dir` as the tests' own
    /// user.
    fn client(&self, dir: &Path, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        isolate(&mut command, dir);
        command
    }
}

/// Runs `command` in `dir` (which the server's user can enter) with
/// nothing from the environment that could point it at another server.
fn isolate(command: &mut Command, dir: &Path) {
    command.current_dir(dir).stdin(Stdio::null());
    for variable in [
        "PGDATA",
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGOPTIONS",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGPASSFILE",
    ] {
        command.env_remove(variable);
    }
}

/// Runs `command`; its output if it succeeded, else a message with its
/// stderr.
fn run(mut command: Command) -> Result<Output, String> {
    let output = command
        .output()
        .map_err(|e| format!("{command:?} does not start: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{command:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// What `postgresql.conf` gets on top of `initdb`'s defaults.
fn settings(socket_dir: &Path) -> String {
    let socket_dir = socket_dir.display().to_string().replace('\'', "''");
    format!(
        "
# chatterbox testkit: a throwaway server for one test.
listen_addresses = '127.0.0.1'
unix_socket_directories = '{socket_dir}'
# Nothing here has to survive a crash of the machine, so nothing waits for
# the disk: a test's server is as fast as memory allows.
fsync = off
synchronous_commit = off
full_page_writes = off
# Several may run at once on a small machine.
shared_buffers = 32MB
"
    )
}

/// A PostgreSQL server of its own for a test, on 127.0.0.1; stopped and
/// its folder removed on drop. Authentication is `trust`: anyone on this
/// machine may connect, which is fine for a server that holds test data
/// for seconds and listens on no outside address.
pub struct PgServer {
    programs: Programs,
    port: u16,
    /// The cluster (`data/`), the server's log and its unix socket.
    dir: TempDir,
}

impl PgServer {
    /// Starts a server for `test`, or explains why the test is skipped.
    ///
    /// Without PostgreSQL's programs the test passes after saying so on
    /// stderr, unless the `CI` variable is set: there it is a failure.
    ///
    /// Takes about two seconds (mostly `initdb`) and blocks: an async test
    /// may call it as it is (it is set-up) or through `spawn_blocking`.
    pub fn start_or_skip(test: &str) -> Option<PgServer> {
        match Programs::locate() {
            Ok(programs) => Some(PgServer::start(programs)),
            Err(why) => {
                skip_unless_ci(
                    &format!("PostgreSQL test {test}"),
                    &why,
                    "install the postgresql package to run it",
                );
                None
            }
        }
    }

    /// Stops what killed test runs left, then makes and starts a cluster
    /// with the database [`DATABASE`].
    fn start(programs: Programs) -> PgServer {
        sweep_leftovers(&programs);
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .expect("a temporary folder for PostgreSQL");
        // Only the server's user enters it (the socket is in it too).
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
            .expect("the folder is made private");
        fs::write(dir.path().join(OWNER_FILE), this_process()).expect("the owner file is written");
        if let Some(user) = programs.run_as {
            let mut chown = Command::new("chown");
            chown.arg(format!("{user}:")).arg(dir.path());
            run(chown).unwrap_or_else(|e| panic!("the folder is handed to {user}: {e}"));
        }
        let mut server = PgServer {
            programs,
            port: 0,
            dir,
        };
        server.init();
        server.start_on_a_free_port();
        server.create_database(DATABASE);
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// `initdb`, with trust authentication for a superuser `postgres`, and
    /// no waiting for the disk (`--no-sync`).
    fn init(&self) {
        let mut initdb = self.programs.server_side(self.dir.path(), "initdb");
        initdb
            .arg("--pgdata")
            .arg(self.data())
            .args(["--username", SUPERUSER, "--auth", "trust"])
            .args(["--encoding", "UTF8", "--locale", "C"])
            .args(["--no-sync", "--no-instructions"]);
        run(initdb).unwrap_or_else(|e| panic!("initdb makes the cluster: {e}"));
        let config = self.data().join("postgresql.conf");
        let mut text = fs::read_to_string(&config).expect("initdb wrote postgresql.conf");
        text.push_str(&settings(self.dir.path()));
        // Written in place: the file keeps its owner, the server's user.
        fs::write(&config, text).expect("postgresql.conf is written");
    }

    /// `pg_ctl start` on a free port, and on another if something took
    /// that one first.
    fn start_on_a_free_port(&mut self) {
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            // A fresh log for each attempt, so an old failure is not read
            // as this one's.
            let _ = fs::remove_file(self.log_file());
            match run(self.pg_ctl_start(port)) {
                Ok(_) => {
                    self.port = port;
                    return;
                }
                Err(e) => {
                    let log = fs::read_to_string(self.log_file()).unwrap_or_default();
                    let port_taken =
                        log.contains("could not bind") || log.contains("Address already in use");
                    if !port_taken || attempt == PORT_ATTEMPTS {
                        panic!("PostgreSQL starts on port {port}: {e}\nits log:\n{log}");
                    }
                }
            }
        }
    }

    /// Stops the server (`pg_ctl stop -m fast`: connections are cut), as
    /// a database restart or crash does to its clients.
    pub fn stop(&self) {
        stop(&self.programs, &self.data(), "fast");
    }

    /// Starts the server again after [`PgServer::stop`], on the same port.
    pub fn start_again(&self) {
        run(self.pg_ctl_start(self.port))
            .unwrap_or_else(|e| panic!("PostgreSQL starts again on {}: {e}", self.port));
    }

    /// `pg_ctl start` of this cluster on `port`, waiting until it serves.
    fn pg_ctl_start(&self, port: u16) -> Command {
        let mut pg_ctl = self.programs.server_side(self.dir.path(), "pg_ctl");
        pg_ctl
            .arg("start")
            .arg("--pgdata")
            .arg(self.data())
            .arg("--log")
            .arg(self.log_file())
            .args(["--wait", "--timeout", PG_CTL_TIMEOUT])
            .arg("-o")
            .arg(format!("-p {port}"));
        pg_ctl
    }

    /// The port on 127.0.0.1 the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's folder: its cluster, log and unix socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL of the database the server starts with, [`DATABASE`].
    pub fn url(&self) -> String {
        self.url_of(DATABASE)
    }

    /// The URL of `database` on this server: TCP to 127.0.0.1, the
    /// superuser, no password (trust authentication).
    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates `database` (a plain name); returns its URL.
    pub fn create_database(&self, database: &str) -> String {
        let mut createdb = self.programs.client(self.dir.path(), "createdb");
        createdb
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--username", SUPERUSER, "--no-password"])
            .arg(database);
        run(createdb).unwrap_or_else(|e| panic!("createdb makes {database}: {e}"));
        self.url_of(database)
    }

    /// Runs `sql` with `psql` on the database [`DATABASE`] over TCP; its
    /// output, unaligned with no headers (`psql -At`). Fails on an error.
    pub fn psql(&self, sql: &str) -> String {
        let mut psql = self.programs.client(self.dir.path(), "psql");
        psql.args([
            "--no-psqlrc",
            "--no-password",
            "--tuples-only",
            "--no-align",
        ])
        .args(["--set", "ON_ERROR_STOP=1", "--command", sql])
        .arg(self.url());
        let output = run(psql).unwrap_or_else(|e| panic!("psql runs {sql:?}: {e}"));
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_string()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Whenever a server runs, even one whose start failed half-way (a
        // `pg_ctl` that timed out leaves it starting).
        stop(&self.programs, &self.data(), "fast");
        // The folder goes with `self.dir`; root may remove the files of the
        // server's user.
    }
}

/// Stops the server of the cluster in `data`, if one runs: `pg_ctl stop
/// -m mode`, and SIGKILL if that does not work, so that no server outlives
/// its folder.
fn stop(programs: &Programs, data: &Path, mode: &str) {
    let Some(pid) = postmaster(data) else {
        return;
    };
    let folder = data.parent().unwrap_or(data);
    let mut pg_ctl = programs.server_side(folder, "pg_ctl");
    pg_ctl.arg("stop").arg("--pgdata").arg(data).args([
        "--mode",
        mode,
        "--wait",
        "--timeout",
        PG_CTL_TIMEOUT,
    ]);
    if run(pg_ctl).is_err() && postmaster(data) == Some(pid) {
        // Its own processes end when it does.
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// The running server of the cluster in `data`: the pid on the first line
/// of its `postmaster.pid`, if that process works in `data` (the server
/// makes the cluster its working directory). A pid file a server left
/// when it died may name an unrelated process by now, which is not one to
/// signal.
fn postmaster(data: &Path) -> Option<rustix::process::Pid> {
    let text = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    (cwd == fs::canonicalize(data).ok()?).then_some(())?;
    rustix::process::Pid::from_raw(pid)
}

/// This process as the owner file names it: its pid and its start time
/// (clock ticks after boot), so that a reused pid is not taken for it.
fn this_process() -> String {
    let pid = std::process::id();
    let started = start_time(pid).expect("/proc/self/stat is readable");
    format!("{pid} {started}")
}

/// The start time of process `pid` from `/proc/PID/stat`, or `None` when
/// there is no such process (or it is a zombie: it has ended).
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses (which may hold anything):
    // the state (field 3), ..., the start time (field 22).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether the process an owner file names still runs.
fn owner_alive(owner: &str) -> bool {
    let mut parts = owner.split_whitespace();
    let pid = parts.next().and_then(|p| p.parse().ok());
    let started = parts.next().and_then(|s| s.parse().ok());
    match (pid, started) {
        (Some(pid), Some(started)) => start_time(pid) == Some(started),
        // Unreadable: not one of ours, so not ours to remove either.
        _ => true,
    }
}

/// Stops the servers of test runs whose process is gone, and removes their
/// folders. Folders of live processes (this one's other tests, other runs
/// going on at the same time) are left alone.
fn sweep_leftovers(programs: &Programs) {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        match fs::read_to_string(dir.join(OWNER_FILE)) {
            Ok(owner) if owner_alive(&owner) => continue,
            Ok(_) => {}
            // Unreadable: another user's folder, not ours to touch.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => continue,
            Err(_) => {
                let young = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|modified| SystemTime::now().duration_since(modified).ok())
                    .map_or(true, |age| age < SETUP_GRACE);
                if young {
                    continue;
                }
            }
        }
        stop(programs, &dir.join("data"), "immediate");
        let _ = fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_gone_or_reused_pid_is_not() {
        assert!(owner_alive(&this_process()));
        let pid = std::process::id();
        let started = start_time(pid).unwrap();
        // The same pid with another start time: the pid was reused.
        assert!(!owner_alive(&format!("{pid} {}", started + 1)));
        // A pid above the kernel's limit (4194304) never runs.
        assert!(!owner_alive("4194305 1"));
    }

    #[test]
    fn an_owner_file_that_is_not_ours_counts_as_alive() {
        assert!(owner_alive(""));
        assert!(owner_alive("not a pid"));
    }

    #[test]
    fn a_pid_file_that_names_a_process_working_elsewhere_names_no_server() {
        let data = TempDir::new().unwrap();
        // This test's own process, which runs but not in that folder: what
        // a stale pid file may name after its pid was reused.
        fs::write(
            data.path().join("postmaster.pid"),
            format!("{}\n{}\n", std::process::id(), data.path().display()),
        )
        .unwrap();
        assert_eq!(postmaster(data.path()), None);
        assert_eq!(postmaster(&data.path().join("missing")), None);
    }

    #[test]
    fn a_quote_in_the_socket_folder_is_escaped() {
        let text = settings(Path::new("/tmp/it's"));
        assert!(
            text.contains("unix_socket_directories = '/tmp/it''s'"),
            "{text}"
        );
    }
}
