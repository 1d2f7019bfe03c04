//! The page keeps a token connection past the token's expiry by fetching a
//! fresh token from TOKEN_REFRESH_URL and sending `refresh`; without such a
//! URL it tells the reader to sign in again, and says so when the server
//! closes the expired connection (4001).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chatterbox::auth;
use serde_json::json;
use testkit::spawn_app_with;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::driver::browser_or_skip;

const SECRET: &str = "browser-refresh-secret-0123456789abcdef";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// An integrator's token endpoint on another origin of 127.0.0.1: every GET
/// is answered with a fresh 10-minute token for `user`, with the CORS
/// headers a credentialed cross-origin fetch needs. Returns its port and
/// the number of requests it answered.
async fn token_endpoint(user: &'static str) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let port = listener.local_addr().expect("an address").port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 2048];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let request = String::from_utf8_lossy(&request).to_string();
            let origin = request
                .lines()
                .find_map(|l| {
                    l.strip_prefix("Origin: ")
                        .or_else(|| l.strip_prefix("origin: "))
                })
                .unwrap_or("null")
                .trim()
                .to_string();
            let token =
                auth::mint(SECRET, &user.to_string(), Duration::from_secs(600)).expect("a token");
            let body = json!({ "token": token }).to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                 Access-Control-Allow-Origin: {origin}\r\n\
                 Access-Control-Allow-Credentials: true\r\nCache-Control: no-store\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            count.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (port, served)
}

/// A token for `user` that expires `secs` from now.
///
/// The tests use 12 s: long enough for a loaded machine to open the page
/// and connect before the first token expires (6 s was not, in a full run
/// beside other builds), short enough to wait past.
const TOKEN_SECS: u64 = 12;

fn short_token(user: &str, secs: u64) -> (String, u64) {
    let token = auth::mint(SECRET, &user.to_string(), Duration::from_secs(secs)).expect("a token");
    (token, now() + secs)
}

async fn wait_past(exp: u64) {
    while now() <= exp + 1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_web::test]
async fn the_page_refreshes_its_token_and_stays_connected_past_its_expiry() {
    let Some(browser) =
        browser_or_skip("the_page_refreshes_its_token_and_stays_connected_past_its_expiry").await
    else {
        return;
    };
    let (endpoint, served) = token_endpoint("alice").await;
    let app = spawn_app_with(|c| {
        c.auth_secret = Some(SECRET.into());
        c.close_expired = true;
        c.token_refresh_url = Some(format!("http://127.0.0.1:{endpoint}/chat-token"));
    })
    .await;
    let (token, exp) = short_token("alice", TOKEN_SECS);
    let page = browser.page().await;
    page.open(&app.url(&format!("/#token={token}"))).await;
    page.wait_for(
        "the connection to open",
        "return document.getElementById('conn').dataset.state === 'online'",
    )
    .await;
    page.join("kept").await;

    wait_past(exp).await;
    assert!(
        served.load(Ordering::SeqCst) >= 1,
        "the page never asked for a token"
    );
    // Still the first connection: refreshed in place, never dropped.
    assert_eq!(
        page.js("const c = document.getElementById('conn').dataset; \
             return [c.state, c.connects]")
            .await,
        json!(["online", "1"])
    );
    page.say("after the first token expired").await;
    page.wait_for_texts("the chat to be echoed", &["after the first token expired"])
        .await;
    assert_eq!(
        page.js("return document.querySelectorAll('#errors [data-code^=\"token-\"]').length")
            .await,
        json!(0),
        "no sign-in warning while refresh works"
    );
    page.close().await;
}

#[actix_web::test]
async fn without_a_refresh_url_the_page_asks_to_sign_in_again() {
    let Some(browser) =
        browser_or_skip("without_a_refresh_url_the_page_asks_to_sign_in_again").await
    else {
        return;
    };
    let app = spawn_app_with(|c| {
        c.auth_secret = Some(SECRET.into());
        c.close_expired = true;
    })
    .await;
    let (token, _) = short_token("bob", TOKEN_SECS);
    let page = browser.page().await;
    page.open(&app.url(&format!("/#token={token}"))).await;
    page.wait_for(
        "the connection to open",
        "return document.getElementById('conn').dataset.state === 'online'",
    )
    .await;
    // Before the token runs out: a warning naming the time.
    let warning = page
        .wait_for(
            "the sign-in warning",
            "const t = document.querySelector('#errors [data-code=\"token-expiring\"]'); \
             return t && t.textContent",
        )
        .await;
    assert!(
        warning
            .as_str()
            .is_some_and(|w| w.contains("sign in again")),
        "{warning}"
    );
    // When the server closes the expired connection (4001): said, and no
    // retry loop with a token the server would refuse.
    let expired = page
        .wait_for(
            "the expired notice",
            "const t = document.querySelector('#errors [data-code=\"token-expired\"]'); \
             return t && t.textContent",
        )
        .await;
    assert!(
        expired.as_str().is_some_and(|w| w.contains("expired")),
        "{expired}"
    );
    assert_eq!(
        page.js("return document.getElementById('conn').dataset.state")
            .await,
        json!("offline")
    );
    page.close().await;
}
