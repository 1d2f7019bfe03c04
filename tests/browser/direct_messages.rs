//! Direct messages on the page: "message" beside a member opens the DM,
//! listed under "Direct messages" by the other user's name, and kept
//! across a reload.

use std::time::Duration;

use chatterbox::auth;
use serde_json::json;
use testkit::{spawn_app_with, Client};

use crate::driver::browser_or_skip;

const SECRET: &str = "browser-dm-secret-0123456789abcdef";
const ALICE_BOB: &str = "dm-1cb15457d1ddab60";

#[actix_web::test]
async fn a_member_is_messaged_directly_and_the_dm_is_listed_by_name() {
    let Some(browser) =
        browser_or_skip("a_member_is_messaged_directly_and_the_dm_is_listed_by_name").await
    else {
        return;
    };
    let app = spawn_app_with(|c| c.auth_secret = Some(SECRET.into())).await;
    let mint = |user: &str| auth::mint(SECRET, &user.to_string(), Duration::from_secs(600));
    let token = mint("alice").expect("a token");
    let mut bob = Client::connect_query(app.port, &format!("token={}", mint("bob").unwrap())).await;
    bob.join("general").await;

    let page = browser.page().await;
    page.open(&app.url(&format!("/#token={token}"))).await;
    page.join("general").await;
    page.wait_for_members("bob beside alice", &["alice", "bob"])
        .await;
    page.click("#members li[data-user='bob'] .dm-btn").await;
    page.wait_for_value(
        "the DM shown under bob's name",
        "return document.getElementById('current-room').textContent",
        json!("@ bob"),
    )
    .await;
    page.wait_for_value(
        "the DM listed under Direct messages",
        "return [...document.querySelectorAll('#dm-rooms li')].map(li => [li.dataset.room, li.textContent.includes('@ bob')])",
        json!([[ALICE_BOB, true]]),
    )
    .await;
    page.say("psst").await;

    // Bob opens it from his side and finds the message.
    bob.send(json!({"type": "join", "dm": "alice"})).await;
    let history = loop {
        let frame = bob.recv().await;
        if frame["type"] == "history" {
            break frame;
        }
    };
    assert_eq!(history["room"], ALICE_BOB);
    assert_eq!(history["messages"][0]["text"], "psst");

    // After a reload the DM is there again, joined with `dm`, with its message.
    page.open(&app.url("/")).await;
    page.wait_for_value(
        "the DM rejoined",
        "return [...document.querySelectorAll('#dm-rooms li')].map(li => li.textContent.includes('joining'))",
        json!([false]),
    )
    .await;
    page.click("#dm-rooms li button").await;
    page.wait_for_texts("the DM's message", &["psst"]).await;
    page.close().await;
}
