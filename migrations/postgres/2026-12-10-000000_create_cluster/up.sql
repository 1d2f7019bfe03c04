-- One row per room that ever had a message: the room's lock and its
-- sequence. A batch takes each of its rooms' rows with an upsert, which
-- locks the row until commit, so two nodes storing into one room take
-- turns: ids (from one global sequence, taken under the lock) rise in
-- commit order within a room, and `seq` numbers the room's messages
-- 1, 2, 3, ... with no gap, so a node that sees seq 7 after 5 knows it
-- missed one. `last_millis` keeps timestamps rising with ids across nodes
-- whose clocks differ.
CREATE TABLE rooms (
    name TEXT PRIMARY KEY NOT NULL,
    last_seq BIGINT NOT NULL,
    last_millis BIGINT NOT NULL
);

-- Every chat message ever accepted, by every node. `id` is the protocol's
-- message id.
CREATE TABLE messages (
    id BIGSERIAL PRIMARY KEY NOT NULL,
    room TEXT NOT NULL,
    seq BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    text TEXT NOT NULL,
    -- milliseconds since the Unix epoch, UTC
    created_at BIGINT NOT NULL,
    UNIQUE (room, seq)
);
CREATE INDEX messages_room_id ON messages (room, id);

-- One row, rewritten by `/health` when nothing was stored in the last
-- second: a real write that fails when the database does not take writes.
CREATE TABLE write_check (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    checked_at BIGINT NOT NULL
);

-- The nodes serving, each beating every few seconds. A node whose beat is
-- older than NODE_TIMEOUT is removed by the others, and its presence with
-- it.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Who is in which room on which node: a row while a user has at least one
-- connection in the room on that node.
CREATE TABLE presence (
    node TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    room TEXT NOT NULL,
    user_name TEXT NOT NULL,
    PRIMARY KEY (node, room, user_name)
);
CREATE INDEX presence_room ON presence (room);
