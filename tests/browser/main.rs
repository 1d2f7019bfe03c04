//! End-to-end tests of the browser client: headless Chromium driven through
//! chromedriver against the real server on 127.0.0.1. Without a browser
//! installed they say they were skipped and pass, unless `CI` is set.

mod auth;
mod chat;
mod direct_messages;
mod driver;
mod features;
mod history;
mod layout;
mod moderation;
mod reconnect;
mod refresh;
mod validation;
