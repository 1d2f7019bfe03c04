-- Issue 12: the messages table becomes each room's log of changes. A row
-- is a chat, or an edit, delete or reaction of the chat `target`, with its
-- id from the same sequence, as it was broadcast. A chat row also keeps
-- its current state (`edited_text`, `edited_at`, `deleted`), updated in the
-- transaction that stores the change. A delete erases the chat's text and
-- its edits' text.
ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'chat';
ALTER TABLE messages ADD COLUMN target BIGINT;
ALTER TABLE messages ADD COLUMN reply_to BIGINT;
ALTER TABLE messages ADD COLUMN emoji TEXT;
ALTER TABLE messages ADD COLUMN reaction_on BOOLEAN;
ALTER TABLE messages ADD COLUMN idempotency_key TEXT;
ALTER TABLE messages ADD COLUMN edited_text TEXT;
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE messages ADD COLUMN deleted BOOLEAN NOT NULL DEFAULT 0;

-- History on join, REST and unread counts read a room's chats only.
CREATE INDEX messages_room_chats ON messages (room, id) WHERE kind = 'chat';
-- A resent chat finds its original by key.
CREATE INDEX messages_keys ON messages (room, user_name, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- A delete erases the text of its chat's edits.
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
