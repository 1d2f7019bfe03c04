//! Two people chatting in two browser windows, and markup that must stay text.

use serde_json::json;
use testkit::spawn_app;

use crate::driver::{browser_or_skip, ENTER, RELEASE, SHIFT};

#[actix_web::test]
async fn two_users_see_each_others_messages_and_presence() {
    let Some(browser) = browser_or_skip("two_users_see_each_others_messages_and_presence").await
    else {
        return;
    };
    let app = spawn_app().await;
    let alice = browser.page().await;
    let bob = browser.page().await;
    alice.open(&app.url("/")).await;
    alice.sign_in("alice").await;
    bob.open(&app.url("/")).await;
    bob.sign_in("bob").await;

    alice.join("rust-meetup").await;
    bob.join("rust-meetup").await;
    alice
        .wait_for_members("bob in alice's member list", &["alice", "bob"])
        .await;
    bob.wait_for_members("alice in bob's member list", &["alice", "bob"])
        .await;

    // A conversation, with a third person on a plain WebSocket client.
    let hello = "Hi Bob! Are we still on for the meetup on Thursday?";
    alice.say(hello).await;
    bob.wait_for_texts("alice's message on bob's page", &[hello])
        .await;
    let reply = "Yes! I'll bring the slides about actix actors.";
    bob.say(reply).await;
    alice
        .wait_for_texts("bob's reply on alice's page", &[hello, reply])
        .await;

    let mut carol = app.connect("carol").await;
    carol.join("rust-meetup").await;
    alice
        .wait_for_members("carol arriving", &["alice", "bob", "carol"])
        .await;
    let ask = "Hey both, mind if I come along?";
    carol.chat("rust-meetup", ask, "c1").await;
    carol.expect("chat").await;
    let welcome = "Of course, the more the merrier.";
    alice.say(welcome).await;
    // Shift+Enter makes a new line; Enter sends both lines as one message.
    bob.type_into(
        "#composer-input",
        &format!(
            "Great. I'll book a bigger table{SHIFT}{ENTER}{RELEASE}at the usual place.{ENTER}"
        ),
    )
    .await;
    let table = "Great. I'll book a bigger table\nat the usual place.";
    alice
        .wait_for_texts("bob's two lines", &[hello, reply, ask, welcome, table])
        .await;
    let bring = "Perfect! Should I bring anything?";
    carol.chat("rust-meetup", bring, "c2").await;
    carol.expect("chat").await;
    let questions = "Just your questions about backpressure :)";
    alice.say(questions).await;
    let conversation = [hello, reply, ask, welcome, table, bring, questions];
    alice
        .wait_for_texts("the whole conversation on alice's page", &conversation)
        .await;
    bob.wait_for_texts("the whole conversation on bob's page", &conversation)
        .await;

    // Own messages are told apart from the others'.
    let own_flags = "return [...document.querySelectorAll('#messages li.msg')]
        .map(e => e.dataset.user + ':' + e.classList.contains('own'));";
    assert_eq!(
        alice.js(own_flags).await,
        json!([
            "alice:true",
            "bob:false",
            "carol:false",
            "alice:true",
            "bob:false",
            "carol:false",
            "alice:true"
        ])
    );
    assert_eq!(
        bob.js(own_flags).await,
        json!([
            "alice:false",
            "bob:true",
            "carol:false",
            "alice:false",
            "bob:true",
            "carol:false",
            "alice:false"
        ])
    );
    // Nothing is left pending once echoed, and each message has its time.
    assert_eq!(
        alice
            .js("return document.querySelectorAll('#messages li.pending').length")
            .await,
        json!(0)
    );
    assert_eq!(
        alice
            .js("return [...document.querySelectorAll('#messages time.msg-time')].every(t => /\\d/.test(t.textContent))")
            .await,
        json!(true)
    );

    // Something happens in another joined room: it shows as unread.
    let mut dave = app.connect("dave").await;
    dave.join("general").await;
    dave.chat("general", "Has anyone read the release notes yet?", "d1")
        .await;
    dave.expect("chat").await;
    alice
        .wait_for(
            "an unread count on general",
            "const b = document.querySelector('#joined-rooms li[data-room=\"general\"] .badge');
             return !!b && b.dataset.unread === '1';",
        )
        .await;
    // The room list (polled) shows the rooms with their user counts.
    alice
        .wait_for(
            "rust-meetup with 3 users and general with 3 in the room list",
            "const u = (r) => document.querySelector(`#room-list li[data-room=\"${r}\"]`)?.dataset.users;
             return u('rust-meetup') === '3' && u('general') === '3';",
        )
        .await;
    assert_eq!(
        alice
            .js("return document.getElementById('errors').children.length")
            .await,
        json!(0),
        "no error was shown"
    );

    // Bob leaves; alice sees him go, and the room leaves bob's list.
    bob.click("#leave-room").await;
    alice
        .wait_for_members("bob leaving", &["alice", "carol"])
        .await;
    bob.wait_for_value(
        "rust-meetup gone from bob's rooms",
        "return [...document.querySelectorAll('#joined-rooms li')].map(e => e.dataset.room);",
        json!(["general"]),
    )
    .await;

    alice.close().await;
    bob.close().await;
}

#[actix_web::test]
async fn markup_in_a_message_shows_as_text_and_runs_nothing() {
    let Some(browser) = browser_or_skip("markup_in_a_message_shows_as_text_and_runs_nothing").await
    else {
        return;
    };
    let app = spawn_app().await;
    let page = browser.page().await;
    page.open(&app.url("/")).await;
    page.sign_in("alice").await;
    page.join("xss").await;

    let mut mallory = app.connect("mallory").await;
    mallory.join("xss").await;
    let payload = "<img src=x onerror=alert(1)>";
    mallory.chat("xss", payload, "1").await;
    mallory.expect("chat").await;
    // Through the page's own sending path too (pending, then echoed).
    let own = "<b>bold?</b><script>alert(2)</script>";
    page.say(own).await;
    page.say("done").await;
    let expected = [payload, own, "done"];
    page.wait_for_texts("the markup shown as text", &expected)
        .await;

    let no_markup = "return {
        img: document.querySelectorAll('img').length,
        b: document.querySelectorAll('#messages b').length,
        script: document.querySelectorAll('#messages script').length,
        dialogs: window.__dialogs,
    };";
    let clean = json!({"img": 0, "b": 0, "script": 0, "dialogs": []});
    assert_eq!(page.js(no_markup).await, clean);
    assert!(
        page.client.get_alert_text().await.is_err(),
        "no alert is open"
    );

    // After a reload the same messages come from history: still text.
    page.open(&app.url("/")).await;
    page.wait_for_texts("the markup shown as text after a reload", &expected)
        .await;
    assert_eq!(page.js(no_markup).await, clean);
    assert!(
        page.client.get_alert_text().await.is_err(),
        "no alert is open"
    );

    page.close().await;
}

#[actix_web::test]
async fn leaving_is_clicked_once_and_leaving_every_room_survives_a_reload() {
    let Some(browser) =
        browser_or_skip("leaving_is_clicked_once_and_leaving_every_room_survives_a_reload").await
    else {
        return;
    };
    let app = spawn_app().await;
    let page = browser.page().await;
    page.open(&app.url("/")).await;
    page.sign_in("lee").await;
    page.join("brief").await;

    // A double click leaves once: no "You are not in that room." after it.
    page.js("const b = document.getElementById('leave-room'); b.click(); b.click();")
        .await;
    page.wait_for(
        "brief to be left",
        "return !document.querySelector('#joined-rooms li[data-room=\"brief\"]')
           && document.getElementById('current-room').textContent === '# general'",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        page.js("return document.getElementById('errors').textContent")
            .await,
        json!(""),
        "no error after a double click on Leave"
    );

    // Having left every room, a reload does not put the user back in general.
    page.click("#leave-room").await;
    page.wait_for_value(
        "no room left",
        "return document.getElementById('current-room').textContent",
        json!("No room"),
    )
    .await;
    page.client.refresh().await.expect("the page reloads");
    page.wait_for(
        "the connection to open after the reload",
        "return document.getElementById('conn').dataset.state === 'online'",
    )
    .await;
    assert_eq!(
        page.js(
            "return [document.querySelectorAll('#joined-rooms li').length,
                         document.getElementById('current-room').textContent]"
        )
        .await,
        json!([0, "No room"])
    );
    page.close().await;
}
