//! The page on a phone-sized screen: nothing wider than the screen, and the
//! room list reachable through its drawer.

use serde_json::json;
use testkit::spawn_app;

use crate::driver::{browser_or_skip, ENTER};

/// True when nothing on the page is wider than the window.
const FITS: &str = "return document.documentElement.scrollWidth <= window.innerWidth;";

#[actix_web::test]
async fn on_a_phone_sized_screen_the_page_fits_and_rooms_are_in_a_drawer() {
    let Some(browser) =
        browser_or_skip("on_a_phone_sized_screen_the_page_fits_and_rooms_are_in_a_drawer").await
    else {
        return;
    };
    let app = spawn_app().await;
    let page = browser.page().await;
    page.set_viewport(390, 844).await;
    page.open(&app.url("/")).await;
    assert_eq!(page.js("return window.innerWidth").await, json!(390));
    page.sign_in("pat").await;
    assert_eq!(page.js(FITS).await, json!(true), "the chat fits the screen");

    // The room list is out of the way (and out of the tab order) until asked for.
    let sidebar_visible =
        "return getComputedStyle(document.getElementById('sidebar')).visibility === 'visible'
        && document.getElementById('sidebar').getBoundingClientRect().left >= 0;";
    assert_eq!(page.js(sidebar_visible).await, json!(false));
    page.click("#toggle-rooms").await;
    page.wait_for("the rooms drawer to open", sidebar_visible)
        .await;
    page.join("on-the-go").await;
    page.wait_for(
        "the drawer to close after choosing a room",
        "return getComputedStyle(document.getElementById('sidebar')).visibility === 'hidden'",
    )
    .await;

    // A long message wraps inside the screen.
    let long = "a fairly long message typed on a small screen, which has to wrap \
                over several lines without pushing anything sideways";
    page.say(long).await;
    page.wait_for_texts("the message", &[long]).await;
    assert_eq!(page.js(FITS).await, json!(true), "the long message fits");
    assert_eq!(
        page.js(
            "const r = document.querySelector('#messages li.msg[data-id] .bubble').getBoundingClientRect();
             return r.left >= 0 && r.right <= window.innerWidth;"
        )
        .await,
        json!(true),
        "the message bubble is on screen"
    );

    page.close().await;
}

#[actix_web::test]
async fn on_a_375px_screen_long_names_are_cut_and_toasts_leave_the_composer_free() {
    let Some(browser) =
        browser_or_skip("on_a_375px_screen_long_names_are_cut_and_toasts_leave_the_composer_free")
            .await
    else {
        return;
    };
    let app = spawn_app().await;
    let page = browser.page().await;
    page.set_viewport(375, 700).await;
    page.open(&app.url("/")).await;
    assert_eq!(page.js("return window.innerWidth").await, json!(375));
    let name = "abcdefghijklmnopqrstuvwxyz012345";
    assert_eq!(name.len(), 32);
    page.sign_in(name).await;
    assert_eq!(
        page.js(FITS).await,
        json!(true),
        "a 32-character name does not widen the page"
    );
    let on_screen = |css: &str| {
        format!(
            "const r = document.querySelector('{css}').getBoundingClientRect();
             return r.width > 0 && r.left >= 0 && r.right <= window.innerWidth;"
        )
    };
    for css in ["#toggle-members", "#logout", "#toggle-rooms"] {
        assert_eq!(
            page.js(&on_screen(css)).await,
            json!(true),
            "{css} is on screen"
        );
    }
    assert_eq!(
        page.js("return document.getElementById('me-name').title")
            .await,
        json!(name),
        "the full name is in the title"
    );

    // An error toast does not cover the Send button, and a click dismisses it.
    page.js(
        "document.getElementById('composer-input').value = 'x'.repeat(4097);
         document.getElementById('send').click();",
    )
    .await;
    page.wait_for(
        "the too-long toast",
        "return !!document.querySelector('#errors [data-code=too_long]')",
    )
    .await;
    assert_eq!(
        page.js(
            "const t = document.querySelector('#errors [data-code=too_long]').getBoundingClientRect();
             const c = document.getElementById('composer').getBoundingClientRect();
             return t.bottom <= c.top || t.top >= c.bottom;"
        )
        .await,
        json!(true),
        "the toast is clear of the composer"
    );
    page.click("#errors [data-code=too_long]").await;
    page.wait_for(
        "the toast to be dismissed",
        "return !document.querySelector('#errors [data-code=too_long]')",
    )
    .await;
    assert_eq!(page.js(FITS).await, json!(true));
    page.js("document.getElementById('composer-input').value = ''")
        .await;

    // A 64-character room name keeps the message box's placeholder on one line.
    let room = "r".repeat(64);
    page.click("#toggle-rooms").await;
    page.wait_for(
        "the rooms drawer to open",
        "return getComputedStyle(document.getElementById('sidebar')).visibility === 'visible'",
    )
    .await;
    page.join(&room).await;
    let placeholder = page
        .js("return document.getElementById('composer-input').placeholder")
        .await;
    let placeholder = placeholder.as_str().expect("a placeholder");
    assert!(
        placeholder.starts_with("Message # rrr") && placeholder.ends_with('…'),
        "the placeholder is cut short: {placeholder}"
    );
    assert_eq!(
        page.js("const b = document.getElementById('composer-input');
             return b.scrollHeight <= b.clientHeight + 1;")
            .await,
        json!(true),
        "the placeholder takes one line"
    );
    assert_eq!(page.js(FITS).await, json!(true));
    page.close().await;
}

#[actix_web::test]
async fn opening_a_drawer_with_the_keyboard_moves_focus_into_it_and_keeps_it_there() {
    let Some(browser) = browser_or_skip(
        "opening_a_drawer_with_the_keyboard_moves_focus_into_it_and_keeps_it_there",
    )
    .await
    else {
        return;
    };
    let app = spawn_app().await;
    let page = browser.page().await;
    page.set_viewport(390, 844).await;
    page.open(&app.url("/")).await;
    page.sign_in("kay").await;

    let focus_in = |id: &str| {
        format!("return document.getElementById('{id}').contains(document.activeElement);")
    };
    page.type_into("#toggle-rooms", ENTER).await;
    page.wait_for("focus in the rooms drawer", &focus_in("sidebar"))
        .await;
    // Nothing behind the drawer can take focus while it is open.
    assert_eq!(
        page.js("return document.getElementById('chat').inert
                  && document.querySelector('.topbar').inert
                  && !document.getElementById('sidebar').inert")
            .await,
        json!(true),
        "the page behind the drawer is inert"
    );
    page.type_into("#join-input", "\u{E004}").await; // Tab
    assert_eq!(page.js(&focus_in("sidebar")).await, json!(true));

    // Escape closes it and gives focus back to its button.
    page.type_into("#join-input", "\u{E00C}").await; // Escape
    page.wait_for(
        "focus back on the Rooms button",
        "return document.activeElement === document.getElementById('toggle-rooms')
           && !document.getElementById('chat').inert",
    )
    .await;

    // The member drawer too.
    page.type_into("#toggle-members", ENTER).await;
    page.wait_for("focus in the member drawer", &focus_in("member-panel"))
        .await;
    page.close().await;
}
