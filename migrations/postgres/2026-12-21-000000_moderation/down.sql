DROP TABLE moderation_audit;
DROP TABLE mutes;
DROP TABLE bans;
ALTER TABLE messages
    DROP COLUMN reason,
    DROP COLUMN until_at,
    DROP COLUMN subject,
    DROP COLUMN action;
