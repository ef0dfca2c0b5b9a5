-- Who was active on which day, and how much: what the 📊 chart and 👥 Users read once the
-- detailed tracking rows (kept TRACKING_RETENTION_HOURS) are gone. Days are UTC dates.
-- Kept ACTIVITY_DAYS (tasks.py) by the hourly cleanup.
CREATE TABLE daily_activity (
    day     TEXT NOT NULL,                       -- 'YYYY-MM-DD'
    user_id INTEGER NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    actions INTEGER NOT NULL,
    PRIMARY KEY (day, user_id)
) WITHOUT ROWID;

-- The users list's "newest": first_seen is read newest first.
CREATE INDEX users_first_seen ON users (first_seen);

-- What the tracking rows still hold (the last TRACKING_RETENTION_HOURS): the screens are not
-- empty on the day this migration runs.
INSERT INTO daily_activity (day, user_id, actions)
    SELECT substr(created_at, 1, 10), user_id, count(*) FROM tracking GROUP BY 1, 2;
