//! Signed identities: with AUTH_SECRET set, `/ws` takes only a valid HS256
//! token, and says plainly why it refuses one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chatterbox::auth::{self, Claims};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use testkit::{scrape, spawn_app_with, Client, TestApp};

use crate::helpers::{refused_upgrade, CHATTERBOX};

const SECRET: &str = "integration-test-secret-0123456789abcdef";

async fn secured() -> TestApp {
    spawn_app_with(|c| c.auth_secret = Some(SECRET.into())).await
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

fn signed(claims: &serde_json::Value, algorithm: Algorithm, secret: &str) -> String {
    encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("the test token is signed")
}

#[actix_web::test]
async fn a_valid_token_connects_as_its_subject() {
    let app = secured().await;
    let token = auth::mint(SECRET, &"alice".to_string(), Duration::from_secs(60)).unwrap();
    let mut alice = Client::connect_query(app.port, &format!("token={token}")).await;
    alice.join("lobby").await;
    alice.chat("lobby", "signed in", "1").await;
    let echo = alice.expect("chat").await;
    assert_eq!(echo["user"], "alice");

    // Naming the same user beside the token is fine too.
    let mut again = Client::connect_query(app.port, &format!("user=alice&token={token}")).await;
    let (_, presence) = again.join("lobby").await;
    assert_eq!(presence["users"], json!(["alice"]));

    let (_, _, health) = app.get("/health").await;
    assert_eq!(health["auth"], "token");
}

#[actix_web::test]
async fn bad_tokens_are_refused_with_401_and_a_reason() {
    let app = secured().await;
    let expired = signed(
        &json!({"sub": "alice", "exp": now() - 3600}),
        Algorithm::HS256,
        SECRET,
    );
    let wrong_secret = signed(
        &json!({"sub": "alice", "exp": now() + 3600}),
        Algorithm::HS256,
        "another-secret",
    );
    let wrong_algorithm = signed(
        &json!({"sub": "alice", "exp": now() + 3600}),
        Algorithm::HS512,
        SECRET,
    );
    let no_expiry = signed(&json!({"sub": "alice"}), Algorithm::HS256, SECRET);
    let bad_name = signed(
        &json!({"sub": "a b", "exp": now() + 3600}),
        Algorithm::HS256,
        SECRET,
    );
    let not_yet = signed(
        &json!({"sub": "alice", "exp": now() + 7200, "nbf": now() + 3600}),
        Algorithm::HS256,
        SECRET,
    );
    let past_leeway = signed(
        &json!({"sub": "alice", "exp": now() - 45}),
        Algorithm::HS256,
        SECRET,
    );
    // {"alg":"none"} with {"sub":"alice","exp":4102444800} and no signature.
    let unsigned =
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.";
    let cases = [
        ("user=alice".to_string(), "required"),
        (format!("token={expired}"), "expired"),
        (format!("token={wrong_secret}"), "signature"),
        (format!("token={wrong_algorithm}"), "HS256"),
        (format!("token={no_expiry}"), "malformed"),
        (format!("token={bad_name}"), "user name"),
        (format!("token={unsigned}"), "malformed"),
        (format!("token={not_yet}"), "not valid yet"),
        (format!("token={past_leeway}"), "expired"),
        ("token=not-a-token".to_string(), "malformed"),
    ];
    let refusals = cases.len() as f64;
    for (query, reason) in cases {
        let (status, body) = refused_upgrade(app.port, &query).await;
        assert_eq!(status, 401, "{query}: {body}");
        let error = body["error"].as_str().expect("a JSON error");
        assert!(error.contains(reason), "{query}: {error}");
        // The token never comes back in the answer.
        if let Some(token) = query.strip_prefix("token=") {
            assert!(!error.contains(token), "{error}");
        }
    }
    let metrics = scrape(app.port).await;
    let unauthorized = ("reason", "unauthorized");
    assert_eq!(
        metrics.get("chatterbox_upgrades_refused_total", Some(unauthorized)),
        refusals
    );
    assert_eq!(metrics.value("chatterbox_connections_opened_total"), 0.0);
}

#[actix_web::test]
async fn a_token_within_the_clock_leeway_still_works() {
    let app = secured().await;
    let just_expired = signed(
        &json!({"sub": "alice", "exp": now() - 15}),
        Algorithm::HS256,
        SECRET,
    );
    let mut alice = Client::connect_query(app.port, &format!("token={just_expired}")).await;
    // Connected as the token's subject, not merely connected.
    let (_, presence) = alice.join("lobby").await;
    assert_eq!(presence["users"], json!(["alice"]));
    alice.chat("lobby", "still on time", "1").await;
    let echo = alice.expect("chat").await;
    assert_eq!(echo["user"], "alice");
}

#[actix_web::test]
async fn a_user_that_differs_from_the_token_is_refused_with_403() {
    let app = secured().await;
    let token = auth::mint(SECRET, &"alice".to_string(), Duration::from_secs(60)).unwrap();
    let (status, body) = refused_upgrade(app.port, &format!("user=mallory&token={token}")).await;
    assert_eq!(status, 403);
    assert!(
        body["error"].as_str().unwrap().contains("mallory"),
        "{body}"
    );
    let metrics = scrape(app.port).await;
    assert_eq!(
        metrics.get(
            "chatterbox_upgrades_refused_total",
            Some(("reason", "user_mismatch"))
        ),
        1.0
    );
}

#[actix_web::test]
async fn without_a_secret_names_are_trusted_and_health_says_so() {
    let app = spawn_app_with(|_| {}).await;
    let (_, _, health) = app.get("/health").await;
    assert_eq!(health["auth"], "none");
    // A token is not needed, and one that is present is not checked.
    let mut bob = Client::connect_query(app.port, "user=bob&token=whatever").await;
    // The name comes from `user`, as given; the stray token changes nothing.
    let (_, presence) = bob.join("lobby").await;
    assert_eq!(presence["users"], json!(["bob"]));
    bob.chat("lobby", "trusted", "1").await;
    let echo = bob.expect("chat").await;
    assert_eq!(echo["user"], "bob");
}

#[test]
fn claims_other_than_sub_and_exp_are_ignored() {
    let token = signed(
        &json!({"sub": "carol", "exp": now() + 60, "iss": "idp", "aud": "some-app", "roles": ["x"]}),
        Algorithm::HS256,
        SECRET,
    );
    let claims: Claims = auth::verify(SECRET, &token, Duration::from_secs(86400)).unwrap();
    assert_eq!(claims.sub, "carol");
}

fn token_command(env_secret: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chatterbox"));
    command
        .arg("token")
        .args(args)
        .env_remove("AUTH_SECRET")
        .env_remove("MAX_TOKEN_LIFETIME");
    if let Some(secret) = env_secret {
        command.env("AUTH_SECRET", secret);
    }
    command.output().expect("the binary runs")
}

#[test]
fn the_token_subcommand_mints_a_token_the_server_accepts() {
    let out = token_command(Some(SECRET), &["--user", "alice", "--ttl", "1h"]);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).expect("UTF-8");
    let claims =
        auth::verify(SECRET, token.trim(), Duration::from_secs(86400)).expect("a valid token");
    assert_eq!(claims.sub, "alice");
    let ttl = claims.exp as i64 - now() as i64;
    assert!(
        (3590..=3610).contains(&ttl),
        "exp is an hour away, not {ttl} s"
    );
}

#[test]
fn the_token_subcommand_explains_what_is_wrong() {
    let cases: [(Option<&str>, &[&str], &str); 3] = [
        (None, &["--user", "alice"], "AUTH_SECRET"),
        (Some(SECRET), &["--user", "no spaces"], "--user"),
        (Some(SECRET), &["--user", "alice", "--ttl", "soon"], "soon"),
    ];
    for (secret, args, needle) in cases {
        let out = token_command(secret, args);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(out.stdout.is_empty(), "no token printed for {args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn a_refusal_is_logged_with_its_reason_but_never_the_token() {
    let dir = tempfile::TempDir::new().unwrap();
    let server = testkit::ServerProcess::start(
        CHATTERBOX,
        &dir.path().join("chat.db"),
        &[("AUTH_SECRET", SECRET)],
    );
    let forged = signed(
        &json!({"sub": "alice", "exp": now() + 600}),
        Algorithm::HS256,
        "not-the-secret",
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (status, _) = runtime.block_on(refused_upgrade(server.port, &format!("token={forged}")));
    assert_eq!(status, 401);
    let line = std::iter::from_fn(|| server.log.recv_timeout(testkit::WAIT).ok())
        .find(|line| line.contains("refused /ws"))
        .expect("the refusal is logged");
    assert!(
        line.contains("127.0.0.1") && line.contains("signature"),
        "{line}"
    );
    let signature = forged.rsplit('.').next().unwrap();
    assert!(!line.contains(signature), "{line}");
}

#[test]
fn without_a_secret_the_start_up_log_says_names_are_not_verified() {
    let dir = tempfile::TempDir::new().unwrap();
    let server = testkit::ServerProcess::start(CHATTERBOX, &dir.path().join("chat.db"), &[]);
    let warned = std::iter::from_fn(|| server.log.recv_timeout(testkit::WAIT).ok())
        .take(20)
        .any(|line| line.contains("user names are not verified"));
    assert!(warned);
}

#[test]
fn an_auth_secret_of_only_white_space_stops_the_server_naming_the_variable() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chatterbox"))
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("DB_PATH", dir.path().join("chat.db"))
        .env("STATIC_DIR", testkit::static_dir())
        .env("RUST_LOG", "info")
        .env("AUTH_SECRET", "   ")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the server binary starts");
    let deadline = std::time::Instant::now() + testkit::WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be polled") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started with an AUTH_SECRET of spaces (authentication off)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{status:?}: {stderr}");
    assert!(
        stderr.contains("AUTH_SECRET") && stderr.contains("white space"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");
}

/// Opens `/ws?{query}` with `Authorization: {authorization}`: the client,
/// or the refusal's status and JSON body.
async fn connect_with_header(
    port: u16,
    query: &str,
    authorization: &str,
) -> Result<Client, (u16, serde_json::Value)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{port}/ws?{query}")
        .into_client_request()
        .expect("a request");
    request.headers_mut().insert(
        "Authorization",
        authorization.parse().expect("a header value"),
    );
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(Client { ws }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            let json = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
            Err((response.status().as_u16(), json))
        }
        Err(e) => panic!("the upgrade failed without an HTTP answer: {e}"),
    }
}

#[actix_web::test]
async fn a_bearer_header_is_accepted_like_the_token_parameter() {
    let app = secured().await;
    let alice = auth::mint(SECRET, &"alice".to_string(), Duration::from_secs(600)).unwrap();
    let mut client = connect_with_header(app.port, "", &format!("Bearer {alice}"))
        .await
        .expect("a Bearer token connects");
    client.join("lobby").await;
    client.chat("lobby", "by header", "1").await;
    assert_eq!(client.expect("chat").await["user"], "alice");
    // The scheme is case-insensitive, and the same token in both places is fine.
    connect_with_header(
        app.port,
        &format!("token={alice}"),
        &format!("bearer {alice}"),
    )
    .await
    .expect("the same token twice connects");

    let expired = signed(
        &json!({"sub": "alice", "exp": now() - 3600}),
        Algorithm::HS256,
        SECRET,
    );
    let forged = signed(
        &json!({"sub": "alice", "exp": now() + 600}),
        Algorithm::HS256,
        "another-secret",
    );
    let bob = auth::mint(SECRET, &"bob".to_string(), Duration::from_secs(600)).unwrap();
    let cases = [
        ("", format!("Bearer {expired}"), 401, "expired"),
        ("", format!("Bearer {forged}"), 401, "signature"),
        ("", "Bearer not-a-token".to_string(), 401, "malformed"),
        ("", format!("Basic {alice}"), 401, "Bearer"),
        ("", "Bearer ".to_string(), 401, "Bearer"),
        ("user=mallory", format!("Bearer {alice}"), 403, "mallory"),
        // Two different tokens: neither wins.
        (
            &*format!("token={alice}"),
            format!("Bearer {bob}"),
            400,
            "same token",
        ),
    ];
    for (query, authorization, status, reason) in &cases {
        let Err((got, body)) = connect_with_header(app.port, query, authorization).await else {
            panic!("{query} / {authorization}: accepted");
        };
        assert_eq!(got, *status, "{query} / {authorization}: {body}");
        let error = body["error"].as_str().expect("a JSON error");
        assert!(error.contains(reason), "{authorization}: {error}");
        assert!(
            !error.contains(&alice) && !error.contains(&expired),
            "{error}"
        );
    }
}

#[actix_web::test]
async fn a_token_living_longer_than_the_maximum_lifetime_is_refused() {
    // The default maximum is a day.
    let app = secured().await;
    let user = "alice".to_string();
    let week = auth::mint(SECRET, &user, Duration::from_secs(7 * 86400)).unwrap();
    let day = auth::mint(SECRET, &user, Duration::from_secs(86400)).unwrap();
    Client::connect_query(app.port, &format!("token={day}"))
        .await
        .join("lobby")
        .await;
    let (status, body) = refused_upgrade(app.port, &format!("token={week}")).await;
    assert_eq!(status, 401, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("MAX_TOKEN_LIFETIME") && error.contains("1d"),
        "{error}"
    );
    let Err((status, body)) = connect_with_header(app.port, "", &format!("Bearer {week}")).await
    else {
        panic!("a week-long Bearer token was accepted");
    };
    assert_eq!(status, 401, "{body}");

    // Configured shorter: an hour-long token is then too long.
    let strict = spawn_app_with(|c| {
        c.auth_secret = Some(SECRET.into());
        c.max_token_lifetime = Duration::from_secs(1800);
    })
    .await;
    let hour = auth::mint(SECRET, &user, Duration::from_secs(3600)).unwrap();
    let (status, body) = refused_upgrade(strict.port, &format!("token={hour}")).await;
    assert_eq!(status, 401);
    assert!(body["error"].as_str().unwrap().contains("30m"), "{body}");
}

#[test]
fn the_token_subcommand_refuses_a_ttl_past_the_maximum_lifetime() {
    let out = token_command(Some(SECRET), &["--user", "alice", "--ttl", "7d"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MAX_TOKEN_LIFETIME"), "{stderr}");

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chatterbox"));
    let out = command
        .args(["token", "--user", "alice", "--ttl", "7d"])
        .env("AUTH_SECRET", SECRET)
        .env("MAX_TOKEN_LIFETIME", "7d")
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap();
    let week = Duration::from_secs(7 * 86400);
    assert!(auth::verify(SECRET, token.trim(), week).is_ok());
}
