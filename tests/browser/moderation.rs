//! A moderator acts from the page (issue 13): kick, mute, ban and unban a
//! member from the member list, a message's author or the room header,
//! and delete anyone's message; every action shows as a notice in the
//! room, live or after a rejoin; the target's page says why it lost the
//! room, refuses a banned join visibly and keeps a muted user's text. A
//! user who is not a moderator of the room sees none of the controls.

use std::time::Duration;

use chatterbox::auth::{self, Extra};
use chatterbox::permissions::ModClaim;
use serde_json::{json, Value};
use tempfile::TempDir;
use testkit::{spawn_app_in, spawn_app_with, Client, TestApp};

use crate::driver::{browser_or_skip, Browser, Page, ENTER, TAB};

const SECRET: &str = "browser-moderation-secret-0123456789abcdef";

/// A 10-minute token for `user`, a moderator of the rooms matching
/// `moderates` (none when empty).
fn token(user: &str, moderates: &[&str]) -> String {
    let moderator = (!moderates.is_empty())
        .then(|| serde_json::from_value::<ModClaim>(json!(moderates)).expect("room patterns"));
    let extra = Extra {
        moderator,
        rooms: None,
    };
    auth::mint_with(SECRET, &user.to_string(), Duration::from_secs(600), extra).expect("a token")
}

async fn app() -> TestApp {
    spawn_app_with(|c| c.auth_secret = Some(SECRET.into())).await
}

/// A page signed in with `token`, in `room` (shown).
async fn page_in(browser: &Browser, app: &TestApp, token: &str, room: &str) -> Page {
    let page = browser.page().await;
    page.open(&app.url(&format!("/#token={token}"))).await;
    page.wait_for(
        "the connection to open",
        "return document.getElementById('conn').dataset.state === 'online'",
    )
    .await;
    page.join(room).await;
    page
}

const NOTICES: &str = "return [...document.querySelectorAll('#messages li.notice .notice-text')]
   .map(e => e.textContent);";

/// Waits until the notices shown in the room are exactly `expected`.
async fn wait_for_notices(page: &Page, what: &str, expected: &[&str]) {
    page.wait_for_value(what, NOTICES, json!(expected)).await;
}

/// The text of the toast with `code` once shown, and whether it stays.
async fn toast(page: &Page, code: &str) -> (String, bool) {
    let found = page
        .wait_for(
            &format!("the {code} notice"),
            &format!(
                "const t = document.querySelector('#errors .toast[data-code=\"{code}\"]');
                 return t && [t.querySelector('.toast-text').textContent, t.dataset.sticky === 'true'];"
            ),
        )
        .await;
    serde_json::from_value(found).expect("a toast's text and stickiness")
}

/// The rooms listed under "Your rooms".
const JOINED: &str =
    "return [...document.querySelectorAll('#joined-rooms li')].map(li => li.dataset.room)";

async fn joined(page: &Page) -> Value {
    page.js(JOINED).await
}

/// How many moderator controls the page shows (member list, messages,
/// room header).
const MOD_CONTROLS: &str = "return document.querySelectorAll('#members .mod-btn').length
   + document.querySelectorAll('#messages li.msg:not(.own) [data-action=\"delete\"], \
       #messages [data-action=\"moderate\"]').length
   + (document.getElementById('moderate-room').hidden ? 0 : 1);";

/// Submits the moderation dialog with the action and reason it shows.
async fn submit_dialog(page: &Page) {
    page.click("#mod-submit").await;
}

async fn dialog_open(page: &Page) -> bool {
    page.js("return document.getElementById('moderate').open")
        .await
        .as_bool()
        .expect("a boolean")
}

#[actix_web::test]
async fn a_moderator_kicks_a_member_who_is_told_why_and_may_come_back_and_others_see_no_controls() {
    let Some(browser) = browser_or_skip(
        "a_moderator_kicks_a_member_who_is_told_why_and_may_come_back_and_others_see_no_controls",
    )
    .await
    else {
        return;
    };
    let app = app().await;
    let moderator = page_in(&browser, &app, &token("mod", &["lobby", "team-*"]), "lobby").await;
    let bob = page_in(&browser, &app, &token("bob", &[]), "lobby").await;
    moderator
        .wait_for_members("bob beside the moderator", &["bob", "mod"])
        .await;
    moderator.say("welcome").await;
    bob.say("hello").await;
    bob.wait_for_texts("both messages", &["welcome", "hello"])
        .await;
    moderator
        .wait_for_texts("both messages", &["welcome", "hello"])
        .await;

    // Bob moderates nothing: no control anywhere. The moderator has them
    // on bob (member and message) and in the header, none on itself.
    assert_eq!(
        bob.js(MOD_CONTROLS).await,
        json!(0),
        "bob sees no moderator controls"
    );
    assert_eq!(
        moderator.js(MOD_CONTROLS).await,
        json!(4),
        "moderate beside bob, delete and moderate on his message, the header's button"
    );
    assert_eq!(
        moderator
            .js("return document.querySelectorAll('#members li[data-user=\"mod\"] .mod-btn').length")
            .await,
        json!(0)
    );

    // Kick from the member list, with a reason.
    moderator
        .click("#members li[data-user='bob'] .mod-btn")
        .await;
    assert!(dialog_open(&moderator).await);
    assert_eq!(
        moderator
            .js("return document.getElementById('mod-submit').textContent")
            .await,
        json!("Kick bob")
    );
    moderator.type_into("#mod-reason", "calm down").await;
    submit_dialog(&moderator).await;

    let (text, stays) = toast(&bob, "removed-kick").await;
    assert_eq!(
        text,
        "You were kicked from lobby by mod: calm down. You may join it again."
    );
    assert!(stays, "the reason stays until dismissed");
    bob.wait_for_value("lobby gone from bob's rooms", JOINED, json!(["general"]))
        .await;
    wait_for_notices(
        &moderator,
        "the kick's notice",
        &["bob was kicked from the room by mod: calm down"],
    )
    .await;
    moderator
        .wait_for_members("bob out of the room", &["mod"])
        .await;
    assert!(!dialog_open(&moderator).await, "the dialog closed");

    // A kicked user may join again.
    bob.join("lobby").await;
    moderator
        .wait_for_members("bob back", &["bob", "mod"])
        .await;

    // Patterns count: `team-*` is moderated, `general` is not.
    moderator.join("team-red").await;
    bob.join("team-red").await;
    moderator
        .wait_for_value(
            "moderate beside bob in team-red",
            "return document.querySelectorAll('#members .mod-btn').length",
            json!(1),
        )
        .await;
    moderator
        .click("#joined-rooms li[data-room='general'] button")
        .await;
    moderator
        .wait_for_value("no moderator controls in general", MOD_CONTROLS, json!(0))
        .await;
    moderator.close().await;
    bob.close().await;
}

#[actix_web::test]
async fn a_ban_from_a_message_is_confirmed_refuses_the_join_visibly_and_is_lifted_from_the_header()
{
    let Some(browser) = browser_or_skip(
        "a_ban_from_a_message_is_confirmed_refuses_the_join_visibly_and_is_lifted_from_the_header",
    )
    .await
    else {
        return;
    };
    let app = app().await;
    let moderator = page_in(&browser, &app, &token("mod", &["lobby"]), "lobby").await;
    let bob = page_in(&browser, &app, &token("bob", &[]), "lobby").await;
    bob.say("buy cheap watches").await;
    let spam = moderator.message_id("buy cheap watches").await;

    // Ban from the message's author, until unbanned: asked once more.
    moderator.message_action(spam, "moderate").await;
    moderator
        .click("#mod-form input[name='mod-action'][value='ban']")
        .await;
    assert_eq!(
        moderator
            .js("const s = document.getElementById('mod-duration');
                 return [document.getElementById('mod-duration-row').hidden, s.selectedOptions[0].textContent]")
            .await,
        json!([false, "until unbanned"])
    );
    moderator.type_into("#mod-reason", "spam").await;
    submit_dialog(&moderator).await;
    let confirm = moderator
        .wait_for(
            "the ban's confirmation",
            "const c = document.getElementById('mod-confirm'); return !c.hidden && c.textContent",
        )
        .await;
    assert!(
        confirm
            .as_str()
            .is_some_and(|c| c.starts_with("Ban bob until unbanned?")),
        "{confirm}"
    );
    assert!(
        dialog_open(&moderator).await,
        "nothing sent before the confirmation"
    );
    moderator
        .wait_for_members("bob still in the room", &["bob", "mod"])
        .await;
    assert_eq!(
        moderator
            .js("return document.getElementById('mod-submit').textContent")
            .await,
        json!("Yes, ban bob")
    );
    submit_dialog(&moderator).await;

    let (text, stays) = toast(&bob, "removed-ban").await;
    assert_eq!(
        text,
        "You were banned from lobby by mod until a moderator lifts the ban: spam."
    );
    assert!(stays);
    wait_for_notices(
        &moderator,
        "the ban's notice",
        &["bob was banned from the room by mod until unbanned: spam"],
    )
    .await;
    moderator
        .wait_for_members("bob out of the room", &["mod"])
        .await;

    // Bob tries to join again: refused, said, and the room is not listed.
    bob.type_into("#join-input", &format!("lobby{ENTER}")).await;
    let (text, stays) = toast(&bob, "banned").await;
    assert_eq!(
        text,
        "Could not join lobby: You are banned from it until a moderator lifts the ban."
    );
    assert!(stays);
    assert_eq!(joined(&bob).await, json!(["general"]));

    // Unbanned from the room header (bob is not in the room any more).
    moderator.click("#moderate-room").await;
    moderator.type_into("#mod-user", "bob").await;
    moderator
        .click("#mod-form input[name='mod-action'][value='unban']")
        .await;
    assert_eq!(
        moderator
            .js("return [document.getElementById('mod-reason-row').hidden,
                         document.getElementById('mod-duration-row').hidden,
                         document.getElementById('mod-submit').textContent]")
            .await,
        json!([true, true, "Unban bob"])
    );
    submit_dialog(&moderator).await;
    wait_for_notices(
        &moderator,
        "the unban's notice",
        &[
            "bob was banned from the room by mod until unbanned: spam",
            "mod lifted bob's ban and mute",
        ],
    )
    .await;
    bob.join("lobby").await;
    moderator
        .wait_for_members("bob back", &["bob", "mod"])
        .await;
    moderator.close().await;
    bob.close().await;
}

#[actix_web::test]
async fn a_mute_made_from_the_keyboard_keeps_the_muted_users_text_and_says_until_when() {
    let Some(browser) = browser_or_skip(
        "a_mute_made_from_the_keyboard_keeps_the_muted_users_text_and_says_until_when",
    )
    .await
    else {
        return;
    };
    let app = app().await;
    let moderator = page_in(&browser, &app, &token("mod", &["lobby"]), "lobby").await;
    let bob = page_in(&browser, &app, &token("bob", &[]), "lobby").await;
    bob.say("first!").await;
    moderator.wait_for_texts("bob's message", &["first!"]).await;

    // From the keyboard: the message list, Tab through the message's
    // controls (Reply, React, Delete, Moderate), Enter opens the dialog on
    // its actions; arrow down to Mute, Tab to "For" (10 minutes), Tab to
    // the reason, Enter sends.
    moderator
        .js("document.getElementById('messages').focus()")
        .await;
    moderator.press(&format!("{TAB}{TAB}{TAB}{TAB}")).await;
    assert_eq!(
        moderator
            .js("return document.activeElement.dataset.action")
            .await,
        json!("moderate")
    );
    moderator.press(ENTER).await;
    moderator
        .wait_for_value(
            "the dialog's actions focused",
            "return document.getElementById('moderate').open && document.activeElement.value",
            json!("kick"),
        )
        .await;
    moderator.press("\u{E015}").await; // arrow down
    moderator.press(TAB).await;
    assert_eq!(
        moderator
            .js("return [document.activeElement.id, document.activeElement.selectedOptions[0].textContent]")
            .await,
        json!(["mod-duration", "10 minutes"])
    );
    moderator.press(TAB).await;
    moderator.press(&format!("flooding{ENTER}")).await;

    let until = moderator
        .wait_for(
            "the mute's notice",
            "const n = document.querySelector('#messages li.notice[data-kind=\"mute\"] .notice-text');
             return n && n.textContent",
        )
        .await;
    let until = until.as_str().expect("a notice").to_string();
    let time = until
        .strip_prefix("bob was muted by mod until ")
        .and_then(|rest| rest.strip_suffix(": flooding"))
        .unwrap_or_else(|| panic!("the notice says who, by whom, until when and why: {until}"))
        .to_string();
    assert!(
        !moderator
            .js("return document.getElementById('moderate').open")
            .await
            .as_bool()
            .unwrap_or(true),
        "the dialog closed"
    );
    assert_eq!(
        moderator
            .js("return document.activeElement.dataset.id")
            .await,
        json!(moderator.message_id("first!").await.to_string()),
        "the focus went back to the message"
    );
    wait_for_notices(
        &bob,
        "the mute's notice, to bob",
        &[&format!("You were muted by mod until {time}: flooding")],
    )
    .await;

    // Bob's chat is refused; his text comes back to the box, with why.
    bob.say("let me talk").await;
    let (text, _) = toast(&bob, "not_sent").await;
    assert_eq!(
        text,
        format!(
            "Not sent: You are muted in lobby until {time}. Your text is back in the message box."
        )
    );
    assert_eq!(
        bob.js("return document.getElementById('composer-input').value")
            .await,
        json!("let me talk")
    );
    bob.wait_for_texts("nothing sent", &["first!"]).await;
    moderator
        .wait_for_texts("nothing arrived", &["first!"])
        .await;
    moderator.close().await;
    bob.close().await;
}

#[actix_web::test]
async fn a_moderators_delete_from_the_page_removes_the_text_on_both_pages() {
    let Some(browser) =
        browser_or_skip("a_moderators_delete_from_the_page_removes_the_text_on_both_pages").await
    else {
        return;
    };
    let app = app().await;
    let moderator = page_in(&browser, &app, &token("mod", &["*"]), "lobby").await;
    let bob = page_in(&browser, &app, &token("bob", &[]), "lobby").await;
    bob.say("something rude").await;
    bob.say("sorry").await;
    let rude = moderator.message_id("something rude").await;
    moderator.message_action(rude, "delete").await;
    for (page, notice) in [
        (
            &moderator,
            "A message by bob was deleted by a moderator (mod)",
        ),
        (&bob, "Your message was deleted by a moderator (mod)"),
    ] {
        page.wait_for_texts("the text gone", &["message deleted", "sorry"])
            .await;
        wait_for_notices(page, "the delete's notice", &[notice]).await;
        assert_eq!(
            page.js("return document.getElementById('app').textContent.includes('something rude')")
                .await,
            json!(false)
        );
    }
    // The notice comes after the messages, in the room's order.
    assert_eq!(
        moderator
            .js("return [...document.querySelectorAll('#messages > li')].map(li => li.className.split(' ')[0])")
            .await,
        json!(["msg", "msg", "notice"])
    );
    moderator.close().await;
    bob.close().await;
}

#[actix_web::test]
async fn moderation_missed_while_away_shows_after_the_rejoin() {
    let Some(browser) =
        browser_or_skip("moderation_missed_while_away_shows_after_the_rejoin").await
    else {
        return;
    };
    let app = spawn_app_in(TempDir::new().expect("a temporary folder"), |c| {
        c.auth_secret = Some(SECRET.into());
    })
    .await;
    let port = app.port;
    let page = page_in(&browser, &app, &token("bob", &[]), "lobby").await;
    let mut carol = Client::connect_query(port, &format!("token={}", token("carol", &[]))).await;
    carol.join("lobby").await;
    carol.chat("lobby", "spam spam", "c").await;
    let spam = carol.expect("chat").await;
    page.wait_for_texts("carol's message", &["spam spam"]).await;
    drop(carol);

    // The server goes away; the page's next attempt is a while off.
    let dir = app.stop().await;
    page.wait_for(
        "the page to wait a few seconds before its next attempt",
        "const c = document.getElementById('conn');
         return c.dataset.state === 'reconnecting' && Number(c.dataset.retryAt) - Date.now() > 2500;",
    )
    .await;
    let app = spawn_app_in(dir, |c| {
        c.port = port;
        c.auth_secret = Some(SECRET.into());
    })
    .await;
    let mut moderator =
        Client::connect_query(port, &format!("token={}", token("mod", &["lobby"]))).await;
    moderator.join("lobby").await;
    moderator
        .send(json!({"type": "delete", "room": "lobby", "target": spam["id"], "ref": "d"}))
        .await;
    moderator.expect("moderation").await;
    moderator
        .send(json!({"type": "ban", "room": "lobby", "user": "carol", "seconds": 3600, "ref": "b"}))
        .await;
    let ban = moderator.expect("moderation").await;
    assert_eq!(
        page.js("return document.getElementById('conn').dataset.connects")
            .await,
        json!("1"),
        "the page was away while the moderator acted"
    );

    // Back: the rejoin's `since` replay brings both, in order.
    page.click("#retry-now").await;
    page.wait_for_texts("carol's message deleted", &["message deleted"])
        .await;
    // As the page writes a time (message-view.js formatTime).
    let until = page
        .js(&format!(
            "const d = new Date({});
             const time = d.toLocaleTimeString([], {{ hour: '2-digit', minute: '2-digit' }});
             return d.toDateString() === new Date().toDateString() ? time
               : `${{d.toLocaleDateString([], {{ month: 'short', day: 'numeric' }})}} ${{time}}`;",
            json!(ban["until"])
        ))
        .await;
    let until = until.as_str().expect("a time");
    wait_for_notices(
        &page,
        "the notices missed",
        &[
            "A message by carol was deleted by a moderator (mod)",
            &format!("carol was banned from the room by mod until {until}"),
        ],
    )
    .await;
    drop(app);
    page.close().await;
}
