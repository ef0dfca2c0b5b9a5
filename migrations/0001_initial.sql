-- Users and their activity. Times are UTC text, 'YYYY-MM-DD HH:MM:SS'.
-- Migrations run inside a transaction the runner opens: no BEGIN or COMMIT here.
-- A released migration never changes: a restore checks each backup's schema against what these
-- files make (database.expected_schema), comments and spacing aside. Add a new file instead.

CREATE TABLE users (
    user_id        INTEGER PRIMARY KEY,          -- the Telegram user id
    username       TEXT,
    first_name     TEXT,
    first_seen     TEXT NOT NULL,
    last_seen      TEXT NOT NULL,
    blocked_until  TEXT,                         -- NULL: not blocked
    block_reason   TEXT,
    block_notified INTEGER NOT NULL DEFAULT 0    -- 1 once the user was told of the current block
);

-- Only blocked users are indexed: auto-unblock looks at them every minute.
CREATE INDEX users_blocked_until ON users (blocked_until) WHERE blocked_until IS NOT NULL;

-- One row per user action; cleaned up after TRACKING_RETENTION_HOURS.
CREATE TABLE tracking (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    chat_id    INTEGER NOT NULL,
    kind       TEXT NOT NULL,                    -- 'message' for now
    created_at TEXT NOT NULL
);

CREATE INDEX tracking_created_at ON tracking (created_at);             -- the hourly cleanup
CREATE INDEX tracking_user_recent ON tracking (user_id, kind, created_at); -- the flood window
