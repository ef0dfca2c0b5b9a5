-- Each person's language (i18n.py): their own choice (/language, or the admin panel's 🌐), and
-- the language Telegram last reported for them, which counts while they chose none.
ALTER TABLE users ADD COLUMN language TEXT;           -- 'en' or 'fa'; NULL: not chosen
ALTER TABLE users ADD COLUMN telegram_language TEXT;  -- language_code of their last message
