//! Integration tests: the real server over 127.0.0.1, real WebSocket
//! clients, a real SQLite file in a temporary folder.

mod chat;
mod errors;
mod helpers;
mod history;
mod loadtest;
mod presence;
mod process;
mod rest;
