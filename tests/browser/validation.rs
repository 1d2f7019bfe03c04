//! Names and rooms the protocol refuses are refused on the page, with a
//! message that says what is allowed.

use serde_json::json;
use testkit::{spawn_app, spawn_app_with};

use crate::driver::{browser_or_skip, ENTER};

/// Clears the field `css` (select all, delete) and types `keys`.
const CLEAR: &str = "\u{E009}a\u{E000}\u{E017}";

#[actix_web::test]
async fn names_and_rooms_the_protocol_refuses_are_refused_with_a_clear_message() {
    let Some(browser) =
        browser_or_skip("names_and_rooms_the_protocol_refuses_are_refused_with_a_clear_message")
            .await
    else {
        return;
    };
    let app = spawn_app().await;
    let page = browser.page().await;
    page.open(&app.url("/")).await;
    page.wait_for_sign_in_form().await;

    let name_error = "const e = document.getElementById('name-error');
        return !e.hidden && e.textContent;";
    let still_signed_out = "return !document.getElementById('login').hidden
        && document.getElementById('app').hidden
        && document.getElementById('conn').dataset.state === 'offline';";

    page.type_into("#name-input", &format!("alice smith{ENTER}"))
        .await;
    let message = page.wait_for("a message about the name", name_error).await;
    assert_eq!(
        message,
        json!("Names cannot contain a space. Use 1 to 32 letters (A-Z, a-z), digits, _ - or ."),
    );
    assert_eq!(page.js(still_signed_out).await, json!(true));

    page.type_into("#name-input", &format!("{CLEAR}{}{ENTER}", "a".repeat(33)))
        .await;
    page.wait_for_value(
        "a message about the name's length",
        name_error,
        json!("Names are at most 32 characters (this one has 33)."),
    )
    .await;
    assert_eq!(page.js(still_signed_out).await, json!(true));

    page.type_into("#name-input", &format!("{CLEAR}<alice>{ENTER}"))
        .await;
    page.wait_for_value(
        "a message about the character",
        name_error,
        json!("Names cannot contain \"<\". Use 1 to 32 letters (A-Z, a-z), digits, _ - or ."),
    )
    .await;
    assert_eq!(page.js(still_signed_out).await, json!(true));

    // A valid name goes through.
    page.type_into("#name-input", CLEAR).await;
    page.sign_in("alice.smith").await;

    let join_error = "const e = document.getElementById('join-error');
        return !e.hidden && e.textContent;";
    let joined =
        "return [...document.querySelectorAll('#joined-rooms li')].map(e => e.dataset.room);";

    page.type_into("#join-input", &format!("team chat{ENTER}"))
        .await;
    page.wait_for_value(
        "a message about the room name",
        join_error,
        json!("Room names cannot contain a space. Use 1 to 64 letters (A-Z, a-z), digits, _ or -"),
    )
    .await;
    assert_eq!(page.js(joined).await, json!(["general"]));

    page.type_into("#join-input", &format!("{CLEAR}team.chat{ENTER}"))
        .await;
    page.wait_for_value(
        "a message about the dot",
        join_error,
        json!("Room names cannot contain \".\". Use 1 to 64 letters (A-Z, a-z), digits, _ or -"),
    )
    .await;

    page.type_into("#join-input", &format!("{CLEAR}{}{ENTER}", "r".repeat(65)))
        .await;
    page.wait_for_value(
        "a message about the room name's length",
        join_error,
        json!("Room names are at most 64 characters (this one has 65)."),
    )
    .await;
    assert_eq!(page.js(joined).await, json!(["general"]));

    // Nothing refused reached the server.
    let (_, _, rooms) = app.get("/api/rooms").await;
    assert_eq!(rooms, json!({"rooms": [{"name": "general", "users": 1}]}));

    // A valid room is joined, and the message goes away.
    page.type_into("#join-input", CLEAR).await;
    page.join("team-chat").await;
    assert_eq!(page.js(join_error).await, json!(false));
    assert_eq!(page.js(joined).await, json!(["general", "team-chat"]));

    page.close().await;
}

#[actix_web::test]
async fn text_the_server_would_refuse_is_kept_on_the_page_and_not_sent() {
    let Some(browser) =
        browser_or_skip("text_the_server_would_refuse_is_kept_on_the_page_and_not_sent").await
    else {
        return;
    };
    let app = spawn_app().await;
    let page = browser.page().await;
    page.open(&app.url("/")).await;
    page.sign_in("una").await;
    page.join("edge").await;

    // Puts `value` (a JS expression) in the message box, presses Send and
    // answers [pending messages right after, the box's text === value].
    let attempt = |value: &str| {
        format!(
            "const v = {value};
             const box = document.getElementById('composer-input');
             box.value = v;
             document.getElementById('send').click();
             return [document.querySelectorAll('#messages li.pending').length, box.value === v];"
        )
    };

    // A lone surrogate (half an emoji): the server would answer bad_json
    // without a ref and the message would stay "sending…" forever.
    assert_eq!(
        page.js(&attempt("'half ' + String.fromCharCode(0xd83d)"))
            .await,
        json!([0, true]),
        "not sent, text kept"
    );
    page.wait_for(
        "a message about the broken character",
        "const t = document.querySelector('#errors [data-code=ill_formed]');
         return !!t && t.textContent.includes('broken character');",
    )
    .await;

    // Only Unicode White_Space (U+0085 and U+3000 among it): blank, not sent.
    assert_eq!(
        page.js(&attempt("'\\u0085\\u3000\\u2028 '")).await,
        json!([0, true]),
        "blank text is not sent"
    );

    // U+FEFF is not White_Space: the server accepts it, so the page sends it.
    assert_eq!(
        page.js(&attempt("'\\ufeff'")).await,
        json!([1, false]),
        "a zero-width no-break space is sent"
    );
    page.wait_for_texts("the U+FEFF message", &["\u{feff}"])
        .await;
    page.close().await;
}

#[actix_web::test]
async fn the_page_checks_length_against_the_servers_limit() {
    let Some(browser) = browser_or_skip("the_page_checks_length_against_the_servers_limit").await
    else {
        return;
    };
    let app = spawn_app_with(|c| c.max_message_len = 10).await;
    let page = browser.page().await;
    page.open(&app.url("/")).await;
    page.sign_in("ivo").await;
    page.join("short").await;

    // Puts `text` in the message box, presses Send and answers [pending
    // messages right after, the box still holds the text].
    let attempt = |text: &str| {
        format!(
            "const box = document.getElementById('composer-input');
             box.value = '{text}';
             document.getElementById('send').click();
             return [document.querySelectorAll('#messages li.pending').length,
                     box.value === '{text}'];"
        )
    };

    // 11 characters: over the server's 10, refused on the page with the
    // server's number, not sent, and the text stays in the box.
    assert_eq!(
        page.js(&attempt("elevenchars")).await,
        json!([0, true]),
        "11 characters are not sent"
    );
    page.wait_for(
        "a message naming the server's limit",
        "const t = document.querySelector('#errors [data-code=too_long]');
         return !!t && t.textContent.includes('at most 10 characters')
             && t.textContent.includes('this one has 11');",
    )
    .await;

    // 10 characters fit: sent, and the server echoes it.
    assert_eq!(
        page.js(&attempt("tenletters")).await,
        json!([1, false]),
        "10 characters are sent"
    );
    page.wait_for_texts("the 10-character message", &["tenletters"])
        .await;
    page.close().await;
}
