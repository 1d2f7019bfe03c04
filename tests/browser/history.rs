//! Reading back: older messages on scroll-up, and a marker instead of a jump
//! when something new arrives while the reader is scrolled up.

use serde_json::json;
use testkit::spawn_app;

use crate::driver::browser_or_skip;

/// Where the message pane is: `[scrollTop, at the bottom]`.
const POSITION: &str = "const s = document.getElementById('scroller');
    return [Math.round(s.scrollTop), s.scrollHeight - s.scrollTop - s.clientHeight < 5];";

/// True when the message pane is scrolled to the bottom.
const AT_BOTTOM: &str = "const s = document.getElementById('scroller');
    return s.scrollHeight - s.scrollTop - s.clientHeight < 5;";

#[actix_web::test]
async fn older_messages_load_on_scroll_up_and_new_ones_show_a_marker() {
    let Some(browser) =
        browser_or_skip("older_messages_load_on_scroll_up_and_new_ones_show_a_marker").await
    else {
        return;
    };
    let app = spawn_app().await;
    // 60 stored messages, more than the 50 a join brings (three connections,
    // so no burst goes past the rate limit).
    let all: Vec<String> = (0..60).map(|i| format!("story part {i}")).collect();
    for chunk in all.chunks(20) {
        let mut bob = app.connect("bob").await;
        bob.join("long").await;
        for text in chunk {
            bob.chat("long", text, "b").await;
        }
        for _ in chunk {
            bob.expect("chat").await;
        }
    }

    let page = browser.page().await;
    page.open(&app.url("/")).await;
    page.sign_in("alice").await;
    page.join("long").await;
    let newest: Vec<&str> = all[10..].iter().map(String::as_str).collect();
    page.wait_for_texts("the last 50 messages", &newest).await;
    let (_, at_bottom): (i64, bool) =
        serde_json::from_value(page.js(POSITION).await).expect("a position");
    assert!(at_bottom, "a join shows the newest messages");

    // Scrolling to the top brings the older ones, without a jump.
    page.js("document.getElementById('scroller').scrollTop = 0")
        .await;
    let every: Vec<&str> = all.iter().map(String::as_str).collect();
    page.wait_for_texts("all 60 messages after scrolling up", &every)
        .await;
    page.wait_for_value(
        "the start of the room",
        "const e = document.getElementById('older-status');
         return [e.hidden, e.textContent, document.getElementById('load-older').hidden];",
        json!([false, "This is the start of the room.", true]),
    )
    .await;
    let (top, _): (i64, bool) =
        serde_json::from_value(page.js(POSITION).await).expect("a position");
    assert!(
        top > 0,
        "the older messages were added above what the reader was looking at"
    );

    // Scrolled up, a new message does not move the pane: a marker appears.
    page.js("document.getElementById('scroller').scrollTop = 200")
        .await;
    let mut carol = app.connect("carol").await;
    carol.join("long").await;
    carol.chat("long", "the end", "c").await;
    page.wait_for(
        "the new message in the list",
        "return [...document.querySelectorAll('#messages .msg-text')].some(e => e.textContent === 'the end')",
    )
    .await;
    page.wait_for(
        "the new-messages marker",
        "return !document.getElementById('new-marker').hidden",
    )
    .await;
    assert_eq!(page.js(POSITION).await, json!([200, false]));

    // The marker takes the reader down; at the bottom, the pane follows.
    page.click("#new-marker").await;
    page.wait_for("the pane at the bottom", AT_BOTTOM).await;
    assert_eq!(
        page.js("return document.getElementById('new-marker').hidden")
            .await,
        json!(true)
    );
    carol.chat("long", "one more thing", "c2").await;
    page.wait_for(
        "the next message",
        "return [...document.querySelectorAll('#messages .msg-text')].pop().textContent === 'one more thing'",
    )
    .await;
    page.wait_for("the pane still at the bottom", AT_BOTTOM)
        .await;
    assert_eq!(
        page.js("return document.getElementById('new-marker').hidden")
            .await,
        json!(true)
    );

    page.close().await;
}
