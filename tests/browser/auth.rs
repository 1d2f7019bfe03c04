//! The page with signed identities on: it takes the token from the URL
//! fragment, removes it from the address, shows the token's user and chats
//! as that user; a forged token is refused on the page.

use std::time::Duration;

use chatterbox::auth;
use serde_json::json;
use testkit::{scrape, spawn_app_with, Client};

use crate::driver::{browser_or_skip, ENTER};

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
    // The refusal stays said (not a passing toast) while the page retries.
    let refusal_shown = "return !!document.querySelector('#errors [data-code=refused]')
         && document.getElementById('conn-text').textContent.includes('refuses this token');";
    page.wait_for("the status line to say the token is refused", refusal_shown)
        .await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        page.js(refusal_shown).await,
        json!(true),
        "the refusal is still shown after 7 s"
    );
    let metrics = scrape(app.port).await;
    assert!(
        metrics.get(
            "chatterbox_upgrades_refused_total",
            Some(("reason", "unauthorized"))
        ) >= 1.0
    );
    // Signing out takes the refusal away.
    page.click("#logout").await;
    page.wait_for(
        "the refusal to go with the sign-out",
        "return !document.querySelector('#errors [data-code=refused]')
           && !document.getElementById('login').hidden",
    )
    .await;

    // A token without an expiry time (the server requires `exp`) is refused
    // on the page, with a reason, before any connection is tried.
    page.type_into("#token-input", &format!("{NO_EXP}{ENTER}"))
        .await;
    page.wait_for(
        "the missing expiry to be explained",
        "const e = document.getElementById('name-error');
         return !e.hidden && e.textContent.includes('no expiry time');",
    )
    .await;
    assert_eq!(
        page.js("return document.getElementById('app').hidden")
            .await,
        json!(true)
    );
    page.close().await;
}

/// A JWT whose payload is `{"sub":"bob"}`: no `exp`.
const NO_EXP: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl";

/// The switch-user dialog is open and asks about `from` and `to`.
const ASKING: &str = "const d = document.getElementById('switch-user');
     return d.open ? document.getElementById('switch-text').textContent : false;";

#[actix_web::test]
async fn a_token_link_for_another_user_asks_before_switching() {
    let Some(browser) =
        browser_or_skip("a_token_link_for_another_user_asks_before_switching").await
    else {
        return;
    };
    let app = spawn_app_with(|c| c.auth_secret = Some(SECRET.into())).await;
    let mint = |user: &str, ttl: u64| {
        auth::mint(SECRET, &user.to_string(), Duration::from_secs(ttl)).expect("a token")
    };
    let online = "return document.getElementById('conn').dataset.state === 'online'";
    let me = "return document.getElementById('me-name').textContent";
    let saved = "return sessionStorage.getItem('chatterbox.token')";

    // Signed in as alice, a link with bob's token is opened in the same tab.
    let page = browser.page().await;
    let alice = mint("alice", 600);
    page.open(&app.url(&format!("/#token={alice}"))).await;
    page.wait_for("alice's connection to open", online).await;
    let connects = "return document.getElementById('conn').dataset.connects";
    let alice_connects = page.js(connects).await;
    page.client
        .goto(&app.url(&format!("/#token={}", mint("bob", 600))))
        .await
        .expect("the fragment changes");
    let question = page.wait_for("the page to ask", ASKING).await;
    let question = question.as_str().unwrap_or_default();
    assert!(
        question.contains("bob") && question.contains("alice"),
        "{question}"
    );
    assert_eq!(
        page.js(me).await,
        json!("alice"),
        "nothing changes while asking"
    );
    assert_eq!(
        page.js("return location.hash.includes('token')").await,
        json!(false),
        "the token leaves the address bar at once"
    );
    // Declining keeps alice, her token and her connection.
    page.click("#switch-keep").await;
    page.wait_for_value(
        "the dialog to close",
        "return document.getElementById('switch-user').open",
        json!(false),
    )
    .await;
    assert_eq!(page.js(me).await, json!("alice"));
    assert_eq!(page.js(saved).await, json!(alice));
    assert_eq!(page.js(online).await, json!(true));
    assert_eq!(
        page.js(connects).await,
        alice_connects,
        "alice was not reconnected"
    );

    // Alice's own fresh token replaces the old one without a question.
    let fresh = mint("alice", 900);
    page.client
        .goto(&app.url(&format!("/#token={fresh}")))
        .await
        .expect("the fragment changes");
    page.wait_for_value("the fresh token to be kept", saved, json!(fresh))
        .await;
    assert_eq!(
        page.js(ASKING).await,
        json!(false),
        "no question for the same user"
    );
    assert_eq!(page.js(me).await, json!("alice"));

    // Reloaded with a link for carol (the tab's token is alice's): asked too.
    page.client
        .goto(&app.url(&format!("/?again#token={}", mint("carol", 600))))
        .await
        .expect("the page loads");
    let question = page.wait_for("the page to ask on load", ASKING).await;
    assert!(
        question.as_str().unwrap_or_default().contains("carol"),
        "{question}"
    );
    assert_eq!(page.js(me).await, json!("alice"));
    page.click("#switch-keep").await;
    page.wait_for("alice's connection to open again", online)
        .await;
    assert_eq!(page.js(me).await, json!("alice"));

    // Accepting switches.
    page.client
        .goto(&app.url(&format!("/?again#token={}", mint("bob", 600))))
        .await
        .expect("the fragment changes");
    page.wait_for("the page to ask again", ASKING).await;
    page.click("#switch-accept").await;
    page.wait_for_value("bob to be signed in", me, json!("bob"))
        .await;
    page.wait_for("bob's connection to open", online).await;
    assert_eq!(
        page.js("return location.hash.includes('token')").await,
        json!(false),
        "bob's token is taken out of the address bar"
    );
    assert_eq!(
        page.js(saved)
            .await
            .as_str()
            .map(|t| t != alice && t != fresh),
        Some(true)
    );
    // The server sees bob, not alice.
    page.join("swapped").await;
    page.wait_for_members("bob alone in the room", &["bob"])
        .await;
    page.close().await;

    // At the sign-in form, a token link signs in too.
    let page = browser.page().await;
    page.open(&app.url("/")).await;
    page.wait_for(
        "the token form",
        "return !document.getElementById('token-mode').hidden",
    )
    .await;
    page.client
        .goto(&app.url(&format!("/#token={}", mint("carol", 600))))
        .await
        .expect("the fragment changes");
    page.wait_for("carol's connection to open", online).await;
    assert_eq!(page.js(ASKING).await, json!(false), "nobody to ask about");
    assert_eq!(page.js(me).await, json!("carol"));
    assert_eq!(
        page.js("return location.hash.includes('token')").await,
        json!(false)
    );
    page.close().await;
}
