//! Integration tests: the real server over 127.0.0.1, real WebSocket
//! clients, a real SQLite file in a temporary folder.

mod auth;
mod caps;
mod chat;
mod cluster;
mod database_files;
mod direct_messages;
mod errors;
mod features;
mod frozen;
mod healthcheck;
mod helpers;
mod history;
mod join_rate;
mod metrics;
mod moderation;
mod overload;
mod presence;
mod process;
mod refresh;
mod rest;
mod server_api;
mod static_files;
mod webhooks;
