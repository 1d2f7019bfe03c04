-- Issue 12: the messages table becomes each room's log of changes. A row
-- is a chat, or an edit, delete or reaction of the chat `target`, with its
-- id and `seq` like any chat, as it was broadcast. A chat row also keeps
-- its current state (`edited_text`, `edited_at`, `deleted`), updated in the
-- transaction that stores the change, under the room's lock. A delete
-- erases the chat's text and its edits' text.
ALTER TABLE messages
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'chat',
    ADD COLUMN target BIGINT,
    ADD COLUMN reply_to BIGINT,
    ADD COLUMN emoji TEXT,
    ADD COLUMN reaction_on BOOLEAN,
    ADD COLUMN idempotency_key TEXT,
    ADD COLUMN edited_text TEXT,
    ADD COLUMN edited_at BIGINT,
    ADD COLUMN deleted BOOLEAN NOT NULL DEFAULT false;

CREATE INDEX messages_room_chats ON messages (room, id) WHERE kind = 'chat';
CREATE INDEX messages_keys ON messages (room, user_name, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_target ON messages (target) WHERE target IS NOT NULL;

-- The reactions on each chat now: one row per user per emoji.
CREATE TABLE reactions (
    message_id BIGINT NOT NULL,
    emoji TEXT NOT NULL,
    user_name TEXT NOT NULL,
    PRIMARY KEY (message_id, emoji, user_name)
);

-- How far each user has read each room; only ever moves forward.
CREATE TABLE read_markers (
    room TEXT NOT NULL,
    user_name TEXT NOT NULL,
    last_read BIGINT NOT NULL,
    PRIMARY KEY (room, user_name)
);
