//! The chat features in the page (issue 12), each seen by another person:
//! editing and deleting one's own messages, reactions, replies, the typing
//! line, unread counts and the "new messages" line across a reload, and a
//! message whose echo never came sent again after the connection came back,
//! shown exactly once to everybody.

use std::time::Duration;

use serde_json::{json, Value};
use tempfile::TempDir;
use testkit::{spawn_app, spawn_app_in, spawn_app_with, Client};

use crate::driver::{
    browser_or_skip, Browser, Page, ARROW_UP, CONTROL, ENTER, ESCAPE, RELEASE, SHIFT, TAB,
};

/// The reactions under message `id`: "emoji count who mine" each.
fn reactions_of(id: i64) -> String {
    format!(
        "return [...document.querySelectorAll('#messages li[data-id=\"{id}\"] .reactions .reaction')]
           .map(b => `${{b.dataset.emoji}} ${{b.dataset.count}} ${{b.title}}${{b.classList.contains('mine') ? ' mine' : ''}}`);"
    )
}

/// Chat frames that `client` receives within `quiet`, skipping others.
async fn chats_within(client: &mut Client, quiet: Duration) -> Vec<Value> {
    let mut chats = Vec::new();
    let deadline = tokio::time::Instant::now() + quiet;
    while let Ok(frame) = tokio::time::timeout_at(deadline, client.recv()).await {
        if frame["type"] == "chat" {
            chats.push(frame);
        }
    }
    chats
}

/// The next chat frame `client` receives (other frames skipped).
async fn next_chat(client: &mut Client) -> Value {
    loop {
        let frame = client.recv().await;
        if frame["type"] == "chat" {
            return frame;
        }
    }
}

/// How many stored chats of `room` have `text` (REST, the server's view).
async fn stored_count(app_port: u16, room: &str, text: &str) -> usize {
    let (status, _, body) =
        testkit::get_json(app_port, &format!("/api/rooms/{room}/messages?limit=200")).await;
    assert_eq!(status, 200, "{body}");
    body["messages"]
        .as_array()
        .expect("a list of messages")
        .iter()
        .filter(|m| m["text"] == text)
        .count()
}

async fn signed_in(browser: &Browser, url: &str, user: &str, room: &str) -> Page {
    let page = browser.page().await;
    page.open(url).await;
    page.sign_in(user).await;
    page.join(room).await;
    page
}

#[actix_web::test]
async fn an_edit_and_a_delete_of_ones_own_message_show_on_the_other_page_and_after_a_reload() {
    let Some(browser) = browser_or_skip(
        "an_edit_and_a_delete_of_ones_own_message_show_on_the_other_page_and_after_a_reload",
    )
    .await
    else {
        return;
    };
    let app = spawn_app().await;
    let alice = signed_in(&browser, &app.url("/"), "alice", "edits").await;
    let bob = signed_in(&browser, &app.url("/"), "bob", "edits").await;
    alice.say("helo everyone").await;
    alice.say("wrong room, sorry").await;
    bob.wait_for_texts(
        "alice's two messages",
        &["helo everyone", "wrong room, sorry"],
    )
    .await;
    let typo = alice.message_id("helo everyone").await;
    let wrong = alice.message_id("wrong room, sorry").await;

    // Only one's own messages can be edited or deleted.
    assert_eq!(
        bob.js("return document.querySelectorAll('#messages [data-action=\"edit\"], #messages [data-action=\"delete\"]').length")
            .await,
        json!(0),
        "bob has no edit or delete control on alice's messages"
    );

    // An edit started and cancelled with Escape leaves the draft as it was.
    alice.type_into("#composer-input", "a draft").await;
    alice.message_action(typo, "edit").await;
    alice
        .wait_for_value(
            "the box holding the text to edit",
            "return document.getElementById('composer-mode').dataset.kind === 'edit'
               && document.getElementById('composer-input').value",
            json!("helo everyone"),
        )
        .await;
    alice.type_into("#composer-input", ESCAPE).await;
    alice
        .wait_for_value(
            "the edit cancelled, the draft back",
            "return document.getElementById('composer-mode').hidden
               && document.getElementById('composer-input').value",
            json!("a draft"),
        )
        .await;

    // The edit for real: select all, type the new text, Enter.
    alice.message_action(typo, "edit").await;
    alice
        .type_into(
            "#composer-input",
            &format!("{CONTROL}a{RELEASE}hello everyone{ENTER}"),
        )
        .await;
    bob.wait_for_texts(
        "the edited text on bob's page",
        &["hello everyone", "wrong room, sorry"],
    )
    .await;
    let edited = format!(
        "return document.querySelector('#messages li[data-id=\"{typo}\"] .edited')?.textContent ?? null"
    );
    let mark = bob
        .wait_for("the (edited) mark on bob's page", &edited)
        .await;
    assert!(
        mark.as_str()
            .is_some_and(|m| m.starts_with("(edited ") && m.chars().any(|c| c.is_ascii_digit())),
        "the mark says edited, with the time: {mark}"
    );
    assert_eq!(
        alice
            .js("return document.getElementById('composer-input').value")
            .await,
        json!("a draft"),
        "the draft is back in alice's box after the edit"
    );

    // The delete: a placeholder in place, on both pages.
    alice.message_action(wrong, "delete").await;
    bob.wait_for_texts(
        "the deleted message on bob's page",
        &["hello everyone", "message deleted"],
    )
    .await;
    alice
        .wait_for_texts(
            "the deleted message on alice's page",
            &["hello everyone", "message deleted"],
        )
        .await;
    assert_eq!(
        bob.js(&format!(
            "return document.querySelector('#messages li[data-id=\"{wrong}\"]').dataset.deleted"
        ))
        .await,
        json!("true")
    );

    // A fresh page shows the messages in their current state.
    bob.open(&app.url("/")).await;
    bob.wait_for_texts(
        "the current state after bob's reload",
        &["hello everyone", "message deleted"],
    )
    .await;
    bob.wait_for("the (edited) mark after the reload", &edited)
        .await;
    assert_eq!(
        alice
            .js("return document.getElementById('errors').children.length")
            .await,
        json!(0),
        "no error was shown"
    );
    alice.close().await;
    bob.close().await;
}

#[actix_web::test]
async fn reactions_toggle_and_count_across_two_users() {
    let Some(browser) = browser_or_skip("reactions_toggle_and_count_across_two_users").await else {
        return;
    };
    let app = spawn_app().await;
    let alice = signed_in(&browser, &app.url("/"), "alice", "lunch").await;
    let bob = signed_in(&browser, &app.url("/"), "bob", "lunch").await;
    alice.say("lunch at noon?").await;
    bob.wait_for_texts("alice's question", &["lunch at noon?"])
        .await;
    let id = bob.message_id("lunch at noon?").await;
    let reactions = reactions_of(id);

    // Bob picks 👍 from the picker.
    bob.message_action(id, "react").await;
    bob.click(&format!(
        "#messages li[data-id=\"{id}\"] .react-picker [data-emoji=\"👍\"]"
    ))
    .await;
    alice
        .wait_for_value("bob's 👍 on alice's page", &reactions, json!(["👍 1 bob"]))
        .await;
    bob.wait_for_value(
        "bob's own 👍, highlighted",
        &reactions,
        json!(["👍 1 bob mine"]),
    )
    .await;

    // Alice adds hers by clicking the reaction.
    let chip = format!("#messages li[data-id=\"{id}\"] .reactions [data-emoji=\"👍\"]");
    alice.click(&chip).await;
    bob.wait_for_value(
        "two 👍 on bob's page",
        &reactions,
        json!(["👍 2 alice, bob mine"]),
    )
    .await;
    alice
        .wait_for_value(
            "two 👍 on alice's page",
            &reactions,
            json!(["👍 2 alice, bob mine"]),
        )
        .await;

    // Bob takes his back; then alice hers: the reaction is gone.
    bob.click(&chip).await;
    alice
        .wait_for_value(
            "bob's 👍 taken back",
            &reactions,
            json!(["👍 1 alice mine"]),
        )
        .await;
    bob.wait_for_value(
        "bob's 👍 taken back, on his page",
        &reactions,
        json!(["👍 1 alice"]),
    )
    .await;
    alice.click(&chip).await;
    bob.wait_for_value("no reaction left", &reactions, json!([]))
        .await;
    alice
        .wait_for_value("no reaction left", &reactions, json!([]))
        .await;
    alice.close().await;
    bob.close().await;
}

/// The quote above the reply `id`: "user: text", or its text alone.
fn quote_of(id: i64) -> String {
    format!(
        "const q = document.querySelector('#messages li[data-id=\"{id}\"] .quote');
         if (!q) return null;
         const u = q.querySelector('.quote-user');
         return (u ? u.textContent + ': ' : '') + q.querySelector('.quote-text').textContent;"
    )
}

#[actix_web::test]
async fn a_reply_shows_a_quote_of_the_message_it_answers() {
    let Some(browser) = browser_or_skip("a_reply_shows_a_quote_of_the_message_it_answers").await
    else {
        return;
    };
    // A short join history, so that a later page does not have the
    // original loaded at first.
    let app = spawn_app_with(|c| c.max_history = 2).await;
    let alice = signed_in(&browser, &app.url("/"), "alice", "keys").await;
    let bob = signed_in(&browser, &app.url("/"), "bob", "keys").await;
    bob.say("who has the keys to the van?").await;
    alice
        .wait_for_texts("bob's question", &["who has the keys to the van?"])
        .await;
    let question = alice.message_id("who has the keys to the van?").await;

    // A reply begun and cancelled with Escape, then a reply sent.
    alice.message_action(question, "reply").await;
    alice
        .wait_for_value(
            "the box saying what it replies to",
            "const m = document.getElementById('composer-mode');
             return !m.hidden && m.dataset.kind === 'reply' && m.textContent.includes('Replying to bob');",
            json!(true),
        )
        .await;
    alice.type_into("#composer-input", ESCAPE).await;
    alice
        .wait_for(
            "the reply cancelled",
            "return document.getElementById('composer-mode').hidden",
        )
        .await;
    alice.message_action(question, "reply").await;
    alice.say("I do, they are on my desk").await;
    bob.wait_for_texts(
        "alice's reply on bob's page",
        &["who has the keys to the van?", "I do, they are on my desk"],
    )
    .await;
    let reply = bob.message_id("I do, they are on my desk").await;
    bob.wait_for_value(
        "the quote of bob's question above the reply",
        &quote_of(reply),
        json!("bob: who has the keys to the van?"),
    )
    .await;
    assert_eq!(
        alice
            .js("return document.getElementById('composer-mode').hidden")
            .await,
        json!(true),
        "sending ends the reply"
    );

    // Two more messages: a new page's join history has the reply but not
    // the question, and says so; loading older messages fills the quote in.
    bob.say("great, thanks").await;
    bob.wait_for_texts(
        "bob's thanks",
        &[
            "who has the keys to the van?",
            "I do, they are on my desk",
            "great, thanks",
        ],
    )
    .await;
    let carol = signed_in(&browser, &app.url("/"), "carol", "keys").await;
    carol
        .wait_for_texts(
            "the last two messages",
            &["I do, they are on my desk", "great, thanks"],
        )
        .await;
    carol
        .wait_for_value(
            "a quote of a message not loaded",
            &quote_of(reply),
            json!("an earlier message"),
        )
        .await;
    carol.click("#load-older").await;
    carol
        .wait_for_value(
            "the quote filled in once the question is loaded",
            &quote_of(reply),
            json!("bob: who has the keys to the van?"),
        )
        .await;

    // The question deleted: the quote says so.
    bob.message_action(
        bob.message_id("who has the keys to the van?").await,
        "delete",
    )
    .await;
    alice
        .wait_for_value(
            "the quote of a deleted message",
            &quote_of(reply),
            json!("bob: deleted"),
        )
        .await;
    carol
        .wait_for_value(
            "the quote of a deleted message",
            &quote_of(reply),
            json!("bob: deleted"),
        )
        .await;
    alice.close().await;
    bob.close().await;
    carol.close().await;
}

const TYPING: &str = "return document.getElementById('typing').textContent;";

#[actix_web::test]
async fn the_typing_line_shows_on_the_other_page_and_goes_away() {
    let Some(browser) =
        browser_or_skip("the_typing_line_shows_on_the_other_page_and_goes_away").await
    else {
        return;
    };
    let app = spawn_app().await;
    let alice = signed_in(&browser, &app.url("/"), "alice", "office").await;
    let bob = signed_in(&browser, &app.url("/"), "bob", "office").await;

    // Alice types and stops: bob sees it, then after a few seconds not.
    alice.type_into("#composer-input", "hmm").await;
    bob.wait_for_value(
        "alice typing, on bob's page",
        TYPING,
        json!("alice is typing…"),
    )
    .await;
    assert_eq!(
        alice.js(TYPING).await,
        json!(""),
        "nobody types on alice's page"
    );
    let shown = std::time::Instant::now();
    bob.wait_for_value("the typing line gone", TYPING, json!(""))
        .await;
    let lasted = shown.elapsed();
    assert!(
        lasted >= Duration::from_millis(1500),
        "the line stayed a few seconds, not {lasted:?}"
    );

    // Two people typing (carol on a plain client).
    let mut carol = app.connect("carol").await;
    carol.join("office").await;
    tokio::time::sleep(Duration::from_millis(2100)).await; // past alice's 2 s throttle
    alice.type_into("#composer-input", " let me think").await;
    carol
        .send(json!({"type": "typing", "room": "office"}))
        .await;
    bob.wait_for_value(
        "two people typing",
        TYPING,
        json!("alice and carol are typing…"),
    )
    .await;

    // Carol's message ends her typing line at once (well before 3 s).
    carol.chat("office", "coffee anyone?", "c1").await;
    bob.wait_for_texts("carol's message", &["coffee anyone?"])
        .await;
    assert_eq!(
        bob.js(TYPING).await,
        json!("alice is typing…"),
        "carol's line went with her message"
    );
    alice.close().await;
    bob.close().await;
}

/// The unread badge of `room` in the joined-room list ("0" when none).
fn unread_of(room: &str) -> String {
    format!(
        "return document.querySelector('#joined-rooms li[data-room=\"{room}\"] .badge')?.dataset.unread ?? '0';"
    )
}

/// The text of the message just below the "new messages" line, or null.
const AFTER_DIVIDER: &str = "const d = document.querySelector('#messages li.new-divider');
    return d ? d.nextElementSibling.querySelector('.msg-text').textContent : null;";

#[actix_web::test]
async fn unread_counts_and_the_new_messages_line_survive_a_reload_and_follow_other_tabs() {
    let Some(browser) = browser_or_skip(
        "unread_counts_and_the_new_messages_line_survive_a_reload_and_follow_other_tabs",
    )
    .await
    else {
        return;
    };
    let app = spawn_app().await;
    let alice = signed_in(&browser, &app.url("/"), "alice", "news").await;
    let mut bob = app.connect("bob").await;
    bob.join("news").await;
    bob.chat("news", "read this one", "b1").await;
    alice
        .wait_for_texts("bob's first message", &["read this one"])
        .await;
    // Alice looks elsewhere; bob goes on in news.
    alice.join("elsewhere").await;
    for (i, text) in ["first unread", "second unread"].iter().enumerate() {
        bob.chat("news", text, &format!("b{}", i + 2)).await;
    }
    alice
        .wait_for_value("two unread in news", &unread_of("news"), json!("2"))
        .await;

    // After a reload the count comes from the server, and a third arrives.
    alice.open(&app.url("/")).await;
    alice
        .wait_for_value(
            "two unread in news after the reload",
            &unread_of("news"),
            json!("2"),
        )
        .await;
    bob.chat("news", "third unread", "b4").await;
    alice
        .wait_for_value("three unread", &unread_of("news"), json!("3"))
        .await;
    assert_eq!(
        alice.js("return document.title").await,
        json!("(3) chatterbox")
    );

    // Alice opens news: the line sits above the first unread, the count goes.
    alice
        .click("#joined-rooms li[data-room=\"news\"] button")
        .await;
    alice
        .wait_for_value(
            "the new-messages line above the first unread",
            AFTER_DIVIDER,
            json!("first unread"),
        )
        .await;
    alice
        .wait_for_value("no unread left", &unread_of("news"), json!("0"))
        .await;

    // Alice looks elsewhere again. Another tab of hers opens news (reading
    // it) and goes elsewhere too; bob writes once more: one unread on both.
    alice
        .click("#joined-rooms li[data-room=\"elsewhere\"] button")
        .await;
    let tab = browser.page().await;
    tab.open(&app.url("/")).await;
    tab.sign_in("alice").await;
    tab.join("news").await;
    tab.join("elsewhere").await;
    tab.wait_for_value(
        "nothing unread in news in the other tab",
        &unread_of("news"),
        json!("0"),
    )
    .await;
    bob.chat("news", "one more", "b5").await;
    tab.wait_for_value(
        "one unread in the other tab",
        &unread_of("news"),
        json!("1"),
    )
    .await;
    alice
        .wait_for_value("one unread on alice's page", &unread_of("news"), json!("1"))
        .await;
    // Alice reads news on her first page: the other tab's count clears.
    alice
        .click("#joined-rooms li[data-room=\"news\"] button")
        .await;
    alice
        .wait_for_value("no unread left", &unread_of("news"), json!("0"))
        .await;
    tab.wait_for_value(
        "the other tab cleared by alice's read",
        &unread_of("news"),
        json!("0"),
    )
    .await;
    alice.close().await;
    tab.close().await;
}

/// Makes the page's socket swallow every frame it sends, as a network
/// that has silently gone away would.
const SWALLOW_SENDS: &str = "window.__realSend = WebSocket.prototype.send;
    WebSocket.prototype.send = function () {};";

const RESTORE_SENDS: &str = "WebSocket.prototype.send = window.__realSend;";

/// True once the page shows no pending message.
const NOTHING_PENDING: &str =
    "return document.querySelectorAll('#messages li.pending').length === 0;";

#[actix_web::test]
async fn a_message_sent_into_a_dead_connection_reaches_everybody_once_after_a_restart() {
    let Some(browser) = browser_or_skip(
        "a_message_sent_into_a_dead_connection_reaches_everybody_once_after_a_restart",
    )
    .await
    else {
        return;
    };
    let app = spawn_app_in(TempDir::new().expect("a temporary folder"), |_| {}).await;
    let port = app.port;
    let alice = signed_in(&browser, &app.url("/"), "alice", "ops").await;
    alice.say("before the outage").await;
    alice
        .wait_for_texts("the first message", &["before the outage"])
        .await;

    // The network swallows what alice sends: her message stays pending.
    alice.js(SWALLOW_SENDS).await;
    let lost = "sent while the server was going away";
    alice.say(lost).await;
    alice
        .wait_for_value(
            "the message pending",
            "return [...document.querySelectorAll('#messages li.pending .msg-text')].map(e => e.textContent);",
            json!([lost]),
        )
        .await;

    // The server restarts; the page's frames go out again.
    let dir = app.stop().await;
    alice
        .wait_for(
            "the page to notice",
            "return document.getElementById('conn').dataset.state !== 'online'",
        )
        .await;
    alice.js(RESTORE_SENDS).await;
    let app = spawn_app_in(dir, |c| c.port = port).await;
    let mut bob = app.connect("bob").await;
    bob.join("ops").await;
    alice
        .js("const b = document.getElementById('retry-now'); if (!b.hidden) b.click();")
        .await;

    // The page reconnects and sends it again by itself: once, for everybody.
    let chat = next_chat(&mut bob).await;
    assert_eq!(chat["text"], lost);
    assert!(
        chats_within(&mut bob, Duration::from_secs(1))
            .await
            .is_empty(),
        "bob gets the message once"
    );
    alice
        .wait_for_texts(
            "the message once on alice's page",
            &["before the outage", lost],
        )
        .await;
    alice.wait_for("nothing pending", NOTHING_PENDING).await;
    assert_eq!(stored_count(port, "ops", lost).await, 1, "stored once");
    assert_eq!(
        alice
            .js("return document.getElementById('composer-input').value")
            .await,
        json!(""),
        "the text did not come back into the box"
    );
    alice.close().await;
}

#[actix_web::test]
async fn a_message_whose_echo_was_lost_is_sent_again_and_shown_once() {
    let Some(browser) =
        browser_or_skip("a_message_whose_echo_was_lost_is_sent_again_and_shown_once").await
    else {
        return;
    };
    let app = spawn_app().await;
    let alice = signed_in(&browser, &app.url("/"), "alice", "ops").await;
    let mut bob = app.connect("bob").await;
    bob.join("ops").await;

    // The connection is cut right after alice's chat went out, before its
    // echo; new connections are held until bob has the message, so the
    // server surely stored it before the page sends it again.
    alice
        .js("const Real = WebSocket;
             const realSend = Real.prototype.send;
             window.__hold = true;
             Real.prototype.send = function (data) {
               realSend.call(this, data);
               if (String(data).includes('\"type\":\"chat\"')) {
                 Real.prototype.send = realSend;
                 this.close();
               }
             };
             function Held(url) {
               if (window.__hold) throw new Error('held by the test');
               return new Real(url);
             }
             Object.assign(Held, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
             window.WebSocket = Held;")
        .await;
    let text = "the echo of this one is lost";
    alice.say(text).await;
    let chat = next_chat(&mut bob).await;
    assert_eq!(chat["text"], text, "the server stored and broadcast it");
    alice
        .wait_for(
            "the page to notice the cut",
            "return document.getElementById('conn').dataset.state !== 'online'",
        )
        .await;
    alice.js("window.__hold = false;").await;
    alice.click("#retry-now").await;
    alice
        .wait_for(
            "the page to reconnect",
            "const c = document.getElementById('conn'); return c.dataset.state === 'online' && c.dataset.connects === '2';",
        )
        .await;

    // Sent again with its key: the server answers with the original.
    alice.wait_for("nothing pending", NOTHING_PENDING).await;
    alice.wait_for_texts("the message once", &[text]).await;
    assert_eq!(
        alice.message_id(text).await,
        chat["id"].as_i64().expect("an id")
    );
    assert!(
        chats_within(&mut bob, Duration::from_secs(1))
            .await
            .is_empty(),
        "bob gets the message once"
    );
    assert_eq!(stored_count(app.port, "ops", text).await, 1, "stored once");
    alice.close().await;
}

#[actix_web::test]
async fn a_message_pending_at_a_reload_is_sent_after_it_once() {
    let Some(browser) =
        browser_or_skip("a_message_pending_at_a_reload_is_sent_after_it_once").await
    else {
        return;
    };
    let app = spawn_app().await;
    let alice = signed_in(&browser, &app.url("/"), "alice", "ops").await;
    let mut bob = app.connect("bob").await;
    bob.join("ops").await;
    alice.js(SWALLOW_SENDS).await;
    let text = "typed just before the reload";
    alice.say(text).await;
    alice
        .wait_for(
            "the message pending",
            "return document.querySelectorAll('#messages li.pending').length === 1",
        )
        .await;
    // A reload (the tab's sessionStorage stays): the page sends it again.
    alice.open(&app.url("/")).await;
    let chat = next_chat(&mut bob).await;
    assert_eq!(chat["text"], text);
    alice
        .wait_for_texts("the message once after the reload", &[text])
        .await;
    alice.wait_for("nothing pending", NOTHING_PENDING).await;
    assert!(
        chats_within(&mut bob, Duration::from_secs(1))
            .await
            .is_empty(),
        "bob gets the message once"
    );
    alice.close().await;
}

/// Where the features-together test saves a screenshot of alice's page,
/// when set (the README's picture; see the README for the command).
const SCREENSHOT_VAR: &str = "CHATTERBOX_SCREENSHOT";

#[actix_web::test]
async fn a_reply_reactions_an_edit_typing_and_an_unread_count_show_together() {
    let Some(browser) =
        browser_or_skip("a_reply_reactions_an_edit_typing_and_an_unread_count_show_together").await
    else {
        return;
    };
    let app = spawn_app().await;
    let room = "rust-meetup";
    let alice = signed_in(&browser, &app.url("/"), "alice", room).await;
    let bob = signed_in(&browser, &app.url("/"), "bob", room).await;
    let mut carol = app.connect("carol").await;
    carol.join(room).await;
    let mut dave = app.connect("dave").await;
    dave.join("general").await;

    let question = "Who is bringing the slides on Thursday?";
    bob.say(question).await;
    let asked = alice.message_id(question).await;
    alice.message_action(asked, "reply").await;
    alice.say("I will, they are nearly done").await;
    let answer = bob.message_id("I will, they are nearly done").await;
    carol
        .chat(room, "Great, I'll bring the snacks then", "c1")
        .await;
    alice
        .wait_for_texts(
            "the conversation",
            &[
                question,
                "I will, they are nearly done",
                "Great, I'll bring the snacks then",
            ],
        )
        .await;

    // Reactions from bob (the picker) and carol (a plain client).
    bob.message_action(answer, "react").await;
    bob.click(&format!(
        "#messages li[data-id=\"{answer}\"] .react-picker [data-emoji=\"🎉\"]"
    ))
    .await;
    carol
        .send(json!({"type": "react", "room": room, "target": answer, "emoji": "🎉"}))
        .await;
    carol
        .send(json!({"type": "react", "room": room, "target": answer, "emoji": "👍"}))
        .await;
    alice
        .wait_for_value(
            "the reactions on alice's answer",
            &reactions_of(answer),
            json!(["🎉 2 bob, carol", "👍 1 carol"]),
        )
        .await;

    // Alice corrects herself.
    alice.message_action(answer, "edit").await;
    alice
        .type_into(
            "#composer-input",
            &format!("{CONTROL}a{RELEASE}I will, and they are done!{ENTER}"),
        )
        .await;
    bob.wait_for_texts(
        "the edit on bob's page",
        &[
            question,
            "I will, and they are done!",
            "Great, I'll bring the snacks then",
        ],
    )
    .await;
    bob.wait_for_value(
        "the quote above the reply",
        &quote_of(answer),
        json!(format!("bob: {question}")),
    )
    .await;

    // Elsewhere, dave asks something; here, bob starts typing.
    dave.chat("general", "Has anyone read the release notes yet?", "d1")
        .await;
    alice
        .wait_for_value("one unread in general", &unread_of("general"), json!("1"))
        .await;
    // Past the server's 2 s typing throttle since bob last typed.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    bob.type_into("#composer-input", "Perfect, see you").await;
    alice
        .wait_for_value("bob typing", TYPING, json!("bob is typing…"))
        .await;
    assert_eq!(
        alice
            .js(&format!(
                "return document.querySelector('#messages li[data-id=\"{answer}\"] .edited') !== null"
            ))
            .await,
        json!(true),
        "the edit is marked"
    );
    if let Some(path) = std::env::var_os(SCREENSHOT_VAR) {
        // The pointer off the messages, so no message shows its controls.
        alice.click("#current-room").await;
        let png = alice.client.screenshot().await.expect("a screenshot");
        std::fs::write(&path, png).expect("the screenshot is written");
    }
    alice.close().await;
    bob.close().await;
}

#[actix_web::test]
async fn edits_deletes_and_reactions_made_while_the_page_was_away_show_after_it_reconnects() {
    let Some(browser) = browser_or_skip(
        "edits_deletes_and_reactions_made_while_the_page_was_away_show_after_it_reconnects",
    )
    .await
    else {
        return;
    };
    // A short history, so that the rejoin's `history` holds only part of
    // what changed and the page must fetch the rest over REST.
    let app = spawn_app_with(|c| c.max_history = 3).await;
    let alice = signed_in(&browser, &app.url("/"), "alice", "recap").await;
    let mut bob = app.connect("bob").await;
    bob.join("recap").await;
    let mut ids = Vec::new();
    for (i, text) in ["one", "two", "three", "four"].iter().enumerate() {
        bob.chat("recap", text, &format!("c{i}")).await;
        ids.push(next_chat(&mut bob).await["id"].as_i64().expect("an id"));
    }
    alice
        .wait_for_texts("bob's four messages", &["one", "two", "three", "four"])
        .await;

    // The page's connection drops (its next frame closes it) and new ones
    // are held, so that bob changes things while the page is away.
    alice
        .js("const Real = WebSocket;
             const realSend = Real.prototype.send;
             window.__hold = true;
             Real.prototype.send = function () { Real.prototype.send = realSend; this.close(); };
             function Held(url) {
               if (window.__hold) throw new Error('held by the test');
               return new Real(url);
             }
             Object.assign(Held, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
             window.WebSocket = Held;")
        .await;
    alice.type_into("#composer-input", "x").await; // a typing frame: the cut
    alice
        .wait_for(
            "the page to notice the cut",
            "return document.getElementById('conn').dataset.state !== 'online'",
        )
        .await;
    let changes = [
        json!({"type": "edit", "room": "recap", "target": ids[0], "text": "one (fixed)", "ref": "e1"}),
        json!({"type": "delete", "room": "recap", "target": ids[1], "ref": "d1"}),
        json!({"type": "react", "room": "recap", "target": ids[2], "emoji": "👍", "ref": "r1"}),
        json!({"type": "react", "room": "recap", "target": ids[3], "emoji": "🎉", "ref": "r2"}),
        json!({"type": "chat", "room": "recap", "text": "five", "ref": "c5"}),
        json!({"type": "edit", "room": "recap", "target": ids[3], "text": "four (fixed)", "ref": "e2"}),
    ];
    for change in changes {
        let reference = change["ref"].clone();
        bob.send(change).await;
        loop {
            let frame = bob.recv().await;
            assert_ne!(frame["type"], "error", "{frame}");
            if frame["ref"] == reference {
                break;
            }
        }
    }

    alice.js("window.__hold = false;").await;
    alice.click("#retry-now").await;
    alice
        .wait_for_texts(
            "every change applied once the page is back",
            &[
                "one (fixed)",
                "message deleted",
                "three",
                "four (fixed)",
                "five",
            ],
        )
        .await;
    alice
        .wait_for_value(
            "the 👍 on three",
            &reactions_of(ids[2]),
            json!(["👍 1 bob"]),
        )
        .await;
    alice
        .wait_for_value("the 🎉 on four", &reactions_of(ids[3]), json!(["🎉 1 bob"]))
        .await;
    let edited = "return [...document.querySelectorAll('#messages li.msg[data-id]')]
        .map(li => li.querySelector('.edited') !== null);";
    assert_eq!(
        alice.js(edited).await,
        json!([true, false, false, true, false]),
        "one and four are marked edited"
    );
    alice.close().await;
}

#[actix_web::test]
async fn the_message_controls_can_be_reached_from_the_keyboard() {
    let Some(browser) =
        browser_or_skip("the_message_controls_can_be_reached_from_the_keyboard").await
    else {
        return;
    };
    let app = spawn_app().await;
    let alice = signed_in(&browser, &app.url("/"), "alice", "keys").await;
    alice.say("first").await;
    alice.say("second").await;
    alice
        .wait_for_texts("both messages", &["first", "second"])
        .await;
    let first = alice.message_id("first").await;
    let second = alice.message_id("second").await;
    let focused = "const a = document.activeElement;
        return a.closest('li.msg') ? [Number(a.closest('li.msg').dataset.id), a.dataset.action ?? null] : a.id;";

    // Shift+Tab from the message box lands on the newest message.
    alice
        .type_into("#composer-input", &format!("{SHIFT}{TAB}{RELEASE}"))
        .await;
    alice
        .wait_for_value("the newest message focused", focused, json!([second, null]))
        .await;
    // Up to the one before, then Tab into its controls: Reply, React, Edit.
    alice.press(ARROW_UP).await;
    alice
        .wait_for_value("the first message focused", focused, json!([first, null]))
        .await;
    alice.press(TAB).await;
    alice
        .wait_for_value(
            "its Reply control focused",
            focused,
            json!([first, "reply"]),
        )
        .await;
    alice.press(&format!("{TAB}{TAB}")).await;
    alice
        .wait_for_value("its Edit control focused", focused, json!([first, "edit"]))
        .await;
    alice.press(ENTER).await;
    alice
        .wait_for_value(
            "the box editing the first message",
            "return document.getElementById('composer-mode').dataset.kind === 'edit'
               && document.getElementById('composer-input').value",
            json!("first"),
        )
        .await;
    alice.close().await;
}
