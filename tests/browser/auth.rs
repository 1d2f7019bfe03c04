//! The page with signed identities on: it takes the token from the URL
//! fragment, removes it from the address, shows the token's user and chats
//! as that user; a forged token is refused on the page.

use std::time::Duration;

use chatterbox::auth;
use serde_json::json;

use crate::driver::{browser_or_skip, ENTER};
use crate::helpers::{scrape, spawn_app_with, Client};

const SECRET: &str = "browser-test-secret-0123456789abcdef";

#[actix_web::test]
async fn with_auth_on_the_page_signs_in_with_a_token_from_the_fragment() {
    let Some(browser) =
        browser_or_skip("with_auth_on_the_page_signs_in_with_a_token_from_the_fragment").await
    else {
        return;
    };
    let app = spawn_app_with(|c| c.auth_secret = Some(SECRET.into())).await;
    let token =
        auth::mint(SECRET, &"alice".to_string(), Duration::from_secs(600)).expect("a token");

    let page = browser.page().await;
    page.open(&app.url(&format!("/#token={token}"))).await;
    page.wait_for(
        "the connection to open",
        "return document.getElementById('conn').dataset.state === 'online'",
    )
    .await;
    assert_eq!(
        page.js("return document.getElementById('me-name').textContent")
            .await,
        json!("alice")
    );
    // The token does not stay in the address bar (or in history).
    assert_eq!(
        page.js("return location.hash.includes('token')").await,
        json!(false)
    );

    // Another client, with its own token, hears alice under her signed name.
    let bob_token =
        auth::mint(SECRET, &"bob".to_string(), Duration::from_secs(600)).expect("a token");
    let mut bob = Client::connect_query(app.port, &format!("token={bob_token}")).await;
    page.join("signed").await;
    bob.join("signed").await;
    page.say("hello from a signed page").await;
    let chat = loop {
        let frame = bob.recv().await;
        if frame["type"] == "chat" {
            break frame;
        }
    };
    assert_eq!(chat["user"], "alice");
    assert_eq!(chat["text"], "hello from a signed page");
    page.close().await;

    // A token signed with another secret never gets a session.
    let forged = auth::mint(
        "not-the-secret",
        &"mallory".to_string(),
        Duration::from_secs(600),
    )
    .expect("a token");
    let page = browser.page().await;
    page.open(&app.url("/")).await;
    page.wait_for(
        "the token form",
        "return !document.getElementById('token-mode').hidden",
    )
    .await;
    page.type_into("#token-input", &format!("{forged}{ENTER}"))
        .await;
    page.wait_for(
        "a message that the token is refused",
        "const t = document.querySelector('#errors [data-code=refused]');
         return !!t && t.textContent.includes('token may be wrong');",
    )
    .await;
    assert_eq!(
        page.js("return document.getElementById('conn').dataset.state")
            .await
            .as_str()
            .map(|state| state != "online"),
        Some(true)
    );
    let metrics = scrape(app.port).await;
    assert!(
        metrics.get(
            "chatterbox_upgrades_refused_total",
            Some(("reason", "unauthorized"))
        ) >= 1.0
    );
    page.close().await;
}
