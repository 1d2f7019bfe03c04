-- One row, rewritten by `/health` when no chat was stored in the last
-- second: a real write (lock, log, fsync) that fails when the disk is full,
-- the file read-only or another process holds the lock.
CREATE TABLE write_check (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    -- milliseconds since the Unix epoch, UTC
    checked_at BIGINT NOT NULL
);
