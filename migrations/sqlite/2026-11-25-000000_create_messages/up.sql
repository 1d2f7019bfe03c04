-- Every chat message ever accepted. `id` is the protocol's message id:
-- AUTOINCREMENT so an id is never reused, even after the newest row is deleted.
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    room TEXT NOT NULL,
    user_name TEXT NOT NULL,
    text TEXT NOT NULL,
    -- milliseconds since the Unix epoch, UTC
    created_at BIGINT NOT NULL
);

-- History on join, paging and recovery all read one room in id order.
CREATE INDEX messages_room_id ON messages (room, id);
