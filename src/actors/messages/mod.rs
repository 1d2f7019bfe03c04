//! The messages the session, the server and the rooms send each other, one
//! module per recipient: [`session`] holds what a `ChatSession` handles,
//! [`server`] what the `ChatServer` handles, [`room`] what a `RoomActor`
//! handles. Each message's doc says who sends it and why.
//!
//! They live here rather than beside their handlers because these actors
//! talk both ways: a session asks the server to join, the server tells the
//! session to go away; the server adds members to a room, the room tells the
//! server it dropped one. With each message beside its handler, every such
//! pair of modules would import each other. Here the actors import the
//! messages, and each other only one way (session → server → room); where a
//! message goes back the other way, the sender holds a `Recipient` of it, not
//! the other actor's address.

pub(crate) mod room;
pub(crate) mod server;
pub(crate) mod session;
