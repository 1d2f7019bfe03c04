//! End-to-end tests of the browser client: headless Chromium driven through
//! chromedriver against the real server on 127.0.0.1. Without a browser
//! installed they say they were skipped and pass, unless `CI` is set.

mod auth;
mod chat;
mod driver;
// The server and WebSocket helpers of the API tests, shared rather than
// copied; not every helper is used here.
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
mod history;
mod layout;
mod reconnect;
mod validation;
