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

/// What `#dm-rooms` lists: each entry's label and unread count ("" when none).
const DM_LIST: &str = "return [...document.querySelectorAll('#dm-rooms li')].map(li => \
     [li.querySelector('.room-name').textContent, li.querySelector('.badge')?.dataset.unread ?? ''])";

#[actix_web::test]
async fn the_page_lists_the_dms_others_opened_at_sign_in_and_live() {
    let Some(browser) =
        browser_or_skip("the_page_lists_the_dms_others_opened_at_sign_in_and_live").await
    else {
        return;
    };
    let app = spawn_app_with(|c| c.auth_secret = Some(SECRET.into())).await;
    let mint = |user: &str| auth::mint(SECRET, &user.to_string(), Duration::from_secs(600));
    let connect = |user: &str| {
        let query = format!("token={}", mint(user).unwrap());
        async move { Client::connect_query(app.port, &query).await }
    };
    // Alice opens a DM with bob and writes before bob has ever signed in.
    let mut alice = connect("alice").await;
    alice.send(json!({"type": "join", "dm": "bob"})).await;
    alice.expect("history").await;
    alice.expect("presence").await;
    alice.chat(ALICE_BOB, "are you around?", "1").await;
    alice.expect("chat").await;

    let page = browser.page().await;
    page.open(&app.url(&format!("/#token={}", mint("bob").unwrap())))
        .await;
    page.wait_for_value(
        "alice's DM listed at sign-in, one unread",
        DM_LIST,
        json!([["@ alice", "1"]]),
    )
    .await;

    // While bob is signed in: another chat of alice's counts up, and a DM
    // carol opens appears.
    alice.chat(ALICE_BOB, "hello?", "2").await;
    alice.expect("chat").await;
    page.wait_for_value("the notice counted", DM_LIST, json!([["@ alice", "2"]]))
        .await;
    let mut carol = connect("carol").await;
    carol.send(json!({"type": "join", "dm": "bob"})).await;
    let room = carol.expect("history").await["room"].clone();
    carol.expect("presence").await;
    carol
        .chat(room.as_str().unwrap(), "hi bob, carol here", "1")
        .await;
    carol.expect("chat").await;
    page.wait_for_value(
        "carol's new DM listed live",
        DM_LIST,
        json!([["@ alice", "2"], ["@ carol", "1"]]),
    )
    .await;

    // A click joins it with `dm`: both chats are there, and alice hears bob.
    page.click("#dm-rooms li[data-room='dm-1cb15457d1ddab60'] button")
        .await;
    page.wait_for_texts("alice's chats", &["are you around?", "hello?"])
        .await;
    let joined = alice.expect("join").await;
    assert_eq!(joined["user"], "bob");
    page.wait_for_value(
        "one entry per DM, the joined one read",
        DM_LIST,
        json!([["@ alice", ""], ["@ carol", "1"]]),
    )
    .await;
    page.close().await;
}
