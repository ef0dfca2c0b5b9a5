"""The real Bot API server's rules that the stand-in follows: answers, limits and a few pure
functions, each with where it comes from.

Sources (read, not guessed): github:tdlib/telegram-bot-api, telegram-bot-api/Client.cpp, Client.h,
Query.cpp, WebhookActor.cpp (the server behind api.telegram.org); github:tdlib/td,
td/telegram/MessagesManager.cpp, DialogManager.cpp, MessageContent.cpp, OptionManager.cpp,
tddb/td/db/TQueue.cpp (the library it runs on). "Not in the source" marks a rule that Telegram's own
servers apply beyond both repositories, with what it rests on instead.
"""

import math

# ---- how TDLib's errors read in the Bot API ----


def bad_request(text):
    """Client.cpp, Client::fail_query_with_error: a TDLib error becomes "Bad Request: " and its
    text with the first letter lowered, unless the text reads like a constant (its second character
    "_" or upper case: "MEDIA_CAPTION_TOO_LONG" stays as it is)."""
    if len(text) >= 2 and (text[1] == "_" or "A" <= text[1] <= "Z"):
        return "Bad Request: " + text
    return "Bad Request: " + text[0].lower() + text[1:]


def too_many_requests(retry_after):
    """Query.cpp, Query::set_retry_after_error: every 429 the server makes reads so, with
    parameters.retry_after; a whole number of seconds, at least 1."""
    seconds = max(1, math.ceil(retry_after))
    return f"Too Many Requests: retry after {seconds}", {"retry_after": seconds}


# Client.cpp, Client::fail_query_with_error (TDLib's MESSAGE_NOT_MODIFIED)
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)

# ---- getUpdates (Client.cpp, Client::process_get_updates_query, do_get_updates, abort_long_poll,
# fail_query_conflict; Client.h) ----
OTHER_POLL = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)
WEBHOOK_SET = "Conflict: terminated by setWebhook request"
WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
    "the webhook first"
)
LONG_POLL_MAX_TIMEOUT = 50  # Client.h: getUpdates' timeout is clamped to 0..50 s
REPEAT_WINDOW = 3.0  # process_get_updates_query: the same offset again within 3 s waits >= 3 s
ONE_UPDATE_WINDOW = 0.5  # ... and within 0.5 s gets at most 1 update
CONFLICT_SPACING = 3.0  # fail_query_conflict: a 409 at most every 3 s; one due sooner waits 3 s
FUTURE_OFFSET_SLACK = 10  # TQueue.cpp, get: an offset more than 10 past the tail is "in the future"
UPDATE_LIFETIME = 86400  # Client::add_message_update: an update lives until its message's date + 1 day

# Client.h, DEFAULT_ALLOWED_UPDATE_TYPES: every kind but these three unless asked for by name
NOT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

# ---- setWebhook (Client::process_set_webhook_query, do_set_webhook, get_webhook_max_connections;
# WebhookActor.cpp, WebhookActor::on_update_error; WebhookActor.h) ----
SET_WEBHOOK_SPACING = 1.0  # a setWebhook with a URL at most once a second, else 429 retry after 1
BAD_WEBHOOK_URL = "Bad Request: invalid webhook URL specified"
SECRET_TOO_LONG = "Bad Request: secret token is too long"
SECRET_CHARACTERS = "Bad Request: secret token contains unallowed characters"
MAX_SECRET_TOKEN = 256  # td::is_base64url_characters: A-Z a-z 0-9 _ -
DEFAULT_MAX_CONNECTIONS, MAX_MAX_CONNECTIONS = 40, 100
WEBHOOK_MAX_RESEND_TIMEOUT = 60  # a failing update waits 2, 4, 8 ... s, at most random(60, 120)
MAX_WEBHOOK_RETRY_AFTER = 3600  # the webhook's own Retry-After, clamped to 0..3600 s

# ---- chats (Client.cpp, Client::check_chat_access, get_supergroup_chat_id; td DialogId.cpp) ----
SUPERGROUP_ID_BASE = -1_000_000_000_000  # a supergroup's or channel's chat id is this minus its id
UPGRADED = "Bad Request: group chat was upgraded to a supergroup chat"

# ---- messages (td MessagesManager.cpp, DialogManager.cpp, MessageContent.cpp) ----
MAX_TEXT = 4096  # OptionManager.cpp: message_text_length_max (ConfigManager clamps it to >= 4096)
MAX_CAPTION = 1024  # OptionManager.cpp: message_caption_length_max (clamped to >= 1024)
TEXT_TOO_LONG = bad_request("Message is too long")  # MessageContent.cpp, sending
CAPTION_TOO_LONG = bad_request("Message caption is too long")  # create_input_message_content
# an edit is checked by Telegram's server, whose error reaches the bot as it is
# (MessagesManager::edit_message_caption, EditMessageQuery::on_error; Client::fail_query_with_error)
EDITED_CAPTION_TOO_LONG = bad_request("MEDIA_CAPTION_TOO_LONG")
EDITED_TEXT_TOO_LONG = bad_request("MESSAGE_TOO_LONG")
CANT_EDIT = bad_request("Message can't be edited")  # MessagesManager::edit_message_text etc.
NO_TEXT_TO_EDIT = bad_request("There is no text in the message to edit")
NO_CAPTION_TO_EDIT = bad_request("There is no caption in the message to edit")
CANT_DELETE = bad_request("Message can't be deleted")  # MessagesManager::delete_messages
CANT_DELETE_FOR_EVERYONE = bad_request("Message can't be deleted for everyone")
# MessagesManager::can_revoke_message (DEFAULT_REVOKE_TIME_LIMIT for bots) and
# can_delete_channel_message ("bots can't delete messages older than 2 days")
BOT_DELETE_AGE = 2 * 86400
PIN_RIGHTS = bad_request("Not enough rights to manage pinned messages in the chat")  # can_pin_messages
SERVICE_PIN = bad_request("Service messages can't be pinned")  # MessagesManager::can_pin_message
UNPIN_NOT_FOUND = bad_request("Message to unpin not found")  # TdOnGetChatPinnedMessageToUnpinCallback
CHANNEL_RIGHTS = bad_request("Need administrator rights in the channel chat")  # can_send_message_to_dialog

# ---- files ----
MAX_DOWNLOAD = 20 << 20  # Client.h MAX_DOWNLOAD_FILE_SIZE; Client::do_get_file (lifted by --local)
FILE_TOO_BIG = "Bad Request: file is too big"
INVALID_FILE_ID = "Bad Request: invalid file_id"  # TdOnCheckRemoteFileIdCallback
# Not in the source: the 50 MB upload limit is api.telegram.org's, in front of the server. It
# answered application/json, 70 bytes, with HTTP 413 in 2020 (klappvisor/haskell-telegram-api#102),
# which is exactly {"ok":false,"error_code":413,"description":"Request Entity Too Large"}; a server
# of one's own without --local answers the same (tdlib/telegram-bot-api#720).
MAX_UPLOAD = 50 << 20
TOO_LARGE = "Request Entity Too Large"


def chat_kind(chat_id):
    """The type a chat id names (td DialogId::get_type; Client::get_supergroup_chat_id): positive:
    a private chat; down to -999999999999: a basic group; below -1000000000000: a supergroup (or a
    channel, which the id alone does not tell)."""
    if chat_id > 0:
        return "private"
    return "supergroup" if chat_id < SUPERGROUP_ID_BASE else "group"


def utf16_length(text):
    """Characters as Telegram's entity offsets count them: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2
