//! The page on a phone-sized screen: nothing wider than the screen, and the
//! room list reachable through its drawer.

use serde_json::json;

use crate::driver::browser_or_skip;
use crate::helpers::spawn_app;

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
