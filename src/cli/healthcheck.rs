//! `chatterbox healthcheck`: Docker's HEALTHCHECK, so the image needs no curl.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;

/// How long the whole probe may take: inside Docker's `--timeout=5s`, so a
/// server that does not answer is reported by the probe itself.
const TIMEOUT: Duration = Duration::from_secs(3);

/// One request to the local server: exit 0 when `/health` answers 200.
pub fn healthcheck() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A server bound to every address is reached on loopback.
    let host = match config.host {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]),
        ip => ip,
    };
    match probe(SocketAddr::new(host, config.port)) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("unhealthy: /health answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The status code of `GET /health`, redirects not followed. ureq (plain
/// HTTP only, its TLS left out) is the one HTTP client of the project: the
/// load tester uses it too, and it adds no other crate to the server's build.
fn probe(addr: SocketAddr) -> Result<u16, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(TIMEOUT)
        .redirects(0)
        .build();
    match agent.get(&format!("http://{addr}/health")).call() {
        Ok(response) => Ok(response.status()),
        Err(ureq::Error::Status(status, _)) => Ok(status),
        Err(ureq::Error::Transport(e)) => Err(e.to_string()),
    }
}
