//! Integration tests: the real server over 127.0.0.1, real WebSocket
//! clients, a real SQLite file in a temporary folder.

mod auth;
mod caps;
mod chat;
mod errors;
mod frozen;
mod helpers;
mod history;
mod loadtest;
mod metrics;
mod presence;
mod process;
mod rest;
