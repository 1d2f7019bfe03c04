-- Issue 13: moderation. A moderator's kick, mute, ban, unban, or delete of
-- someone else's chat is a change of the room's log (kind 'moderation'),
-- in the room's order like a chat: `user_name` is the moderator (or
-- 'api'), `subject` the user it is about, `target` the chat of a delete.
ALTER TABLE messages
    ADD COLUMN action TEXT,
    ADD COLUMN subject TEXT,
    ADD COLUMN until_at BIGINT,
    ADD COLUMN reason TEXT;

-- Bans and mutes in force: a ban's `until_at` NULL means until unbanned.
CREATE TABLE bans (
    room TEXT NOT NULL,
    user_name TEXT NOT NULL,
    until_at BIGINT,
    PRIMARY KEY (room, user_name)
);
CREATE TABLE mutes (
    room TEXT NOT NULL,
    user_name TEXT NOT NULL,
    until_at BIGINT NOT NULL,
    PRIMARY KEY (room, user_name)
);

-- Who did what to whom and when, kept however the log is read.
CREATE TABLE moderation_audit (
    id BIGINT PRIMARY KEY NOT NULL,
    room TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    by_user TEXT NOT NULL,
    target BIGINT,
    until_at BIGINT,
    reason TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX moderation_audit_room ON moderation_audit (room, id);
