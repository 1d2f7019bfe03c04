//! A server restart under an open page: the page reconnects by itself and
//! shows what it missed exactly once, in order.

use serde_json::json;
use tempfile::TempDir;
use testkit::{spawn_app, spawn_app_in};

use crate::driver::{browser_or_skip, ENTER};

/// A small join history, so the missed messages do not fit in the rejoin's
/// `history` and the page must page through the rest (`more`, then `after`).
const MAX_HISTORY: usize = 3;

/// How far ahead the page's next attempt must be before the server comes
/// back, so that the other client surely speaks while the page is away.
const RETRY_AHEAD_MS: u64 = 3000;

#[actix_web::test]
async fn page_reconnects_after_a_restart_and_shows_missed_messages_once_in_order() {
    let Some(browser) =
        browser_or_skip("page_reconnects_after_a_restart_and_shows_missed_messages_once_in_order")
            .await
    else {
        return;
    };
    let app = spawn_app_in(TempDir::new().expect("a temporary folder"), |c| {
        c.max_history = MAX_HISTORY;
    })
    .await;
    let port = app.port;
    let page = browser.page().await;
    page.open(&app.url("/")).await;
    page.sign_in("alice").await;
    page.join("ops").await;

    let mut bob = app.connect("bob").await;
    bob.join("ops").await;
    bob.chat("ops", "deploying now", "b0").await;
    bob.expect("chat").await;
    page.say("good luck").await;
    page.wait_for_texts(
        "the messages before the restart",
        &["deploying now", "good luck"],
    )
    .await;
    drop(bob);

    // The server goes away; the page notices and backs off.
    let dir = app.stop().await;
    page.wait_for(
        "the page to notice the connection is lost",
        "return document.getElementById('conn').dataset.state !== 'online'",
    )
    .await;
    // Sending now fails: the page says so and keeps the text.
    let typed = "typed while the server was away";
    page.say(typed).await;
    page.wait_for(
        "an error about the connection",
        "return !!document.querySelector('#errors .toast[data-code=\"offline\"]')",
    )
    .await;
    assert_eq!(
        page.js("return document.getElementById('composer-input').value")
            .await,
        json!(typed),
        "the message box keeps the text"
    );
    page.wait_for(
        "the page to be reconnecting, its next attempt a few seconds away",
        &format!(
            "const c = document.getElementById('conn');
             return c.dataset.state === 'reconnecting'
               && Number(c.dataset.retryAt) - Date.now() > {RETRY_AHEAD_MS};"
        ),
    )
    .await;
    let shown = page
        .js("return document.getElementById('conn-text').textContent")
        .await;
    assert!(
        shown.as_str().is_some_and(|s| s.contains("reconnecting")),
        "the page says it is reconnecting: {shown}"
    );

    // The server is back on the same port and file; someone talks while the
    // page is still waiting for its next attempt.
    let app = spawn_app_in(dir, |c| {
        c.port = port;
        c.max_history = MAX_HISTORY;
    })
    .await;
    let mut bob = app.connect("bob").await;
    bob.join("ops").await;
    let missed: Vec<String> = (1..=8).map(|i| format!("missed {i}")).collect();
    for (i, text) in missed.iter().enumerate() {
        bob.chat("ops", text, &i.to_string()).await;
    }
    for _ in &missed {
        bob.expect("chat").await;
    }
    assert_eq!(
        page.js("return document.getElementById('conn').dataset.connects")
            .await,
        json!("1"),
        "the page had not reconnected yet when the messages were sent"
    );

    // The page comes back by itself and shows everything once, in order.
    page.wait_for(
        "the page to reconnect",
        "const c = document.getElementById('conn');
         return c.dataset.state === 'online' && c.dataset.connects === '2';",
    )
    .await;
    let mut expected = vec!["deploying now", "good luck"];
    expected.extend(missed.iter().map(String::as_str));
    page.wait_for_texts("every missed message once, in order", &expected)
        .await;
    let ids = page
        .js("return [...document.querySelectorAll('#messages li.msg')].map(e => Number(e.dataset.id));")
        .await;
    let ids: Vec<i64> = serde_json::from_value(ids).expect("message ids");
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids shown strictly increasing, no pending left: {ids:?}"
    );
    page.wait_for_members("alice and bob after the rejoin", &["alice", "bob"])
        .await;

    // The kept text can be sent now: Enter in the message box.
    page.type_into("#composer-input", ENTER).await;
    let echo = loop {
        let frame = bob.recv().await;
        if frame["type"] == "chat" {
            break frame;
        }
    };
    assert_eq!(echo["text"], typed, "the kept message reaches bob");
    expected.push(typed);
    page.wait_for_texts("the kept message sent", &expected)
        .await;
    assert_eq!(
        page.js("return document.getElementById('composer-input').value")
            .await,
        json!("")
    );

    page.close().await;
}

#[actix_web::test]
async fn a_first_connection_that_never_opens_says_the_server_cannot_be_reached() {
    let Some(browser) =
        browser_or_skip("a_first_connection_that_never_opens_says_the_server_cannot_be_reached")
            .await
    else {
        return;
    };
    let app = spawn_app().await;
    let page = browser.page().await;
    page.open(&app.url("/")).await;
    page.wait_for_sign_in_form().await;
    // The server goes away before the first connection.
    let _dir = app.stop().await;
    page.type_into("#name-input", &format!("nell{ENTER}")).await;
    page.wait_for_value(
        "the status line",
        "const c = document.getElementById('conn');
         return c.dataset.state === 'reconnecting' && document.getElementById('conn-text').textContent;",
        json!("Cannot reach the server, retrying"),
    )
    .await;
    page.close().await;
}
