-- Small facts the bot must remember across restarts, as key/value pairs.
-- 'offsite_paused': why backups are kept from leaving the machine (an empty database must never
-- bury a real off-site backup); removed by a restore or an admin's /start_fresh.
CREATE TABLE bot_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
