DROP TABLE moderation_audit;
DROP TABLE mutes;
DROP TABLE bans;
ALTER TABLE messages DROP COLUMN reason;
ALTER TABLE messages DROP COLUMN until_at;
ALTER TABLE messages DROP COLUMN subject;
ALTER TABLE messages DROP COLUMN action;
