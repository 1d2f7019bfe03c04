-- Issue 13: direct messages. A direct-message room's name is a hash of its
-- two users' names and cannot be turned back into them, so the pair is
-- stored when the room is first opened with `dm`: a room that starts
-- (after a restart, on another node) reads its pair from here, and a user's
-- direct messages are listed from here. `user_a` <= `user_b` (by bytes);
-- both are the same name for a user's room of one.
CREATE TABLE direct_rooms (
    room TEXT PRIMARY KEY NOT NULL,
    user_a TEXT NOT NULL,
    user_b TEXT NOT NULL,
    opened_at BIGINT NOT NULL
);
CREATE INDEX direct_rooms_user_a ON direct_rooms (user_a);
CREATE INDEX direct_rooms_user_b ON direct_rooms (user_b);
