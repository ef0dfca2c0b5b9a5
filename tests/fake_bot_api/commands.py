"""The bot's command menu: setMyCommands, getMyCommands and deleteMyCommands, per scope and
language, as the real server keeps them.

Sources: github:tdlib/telegram-bot-api, telegram-bot-api/Client.cpp (get_bot_command_scope,
get_bot_commands, get_bot_command, check_bot_command_scope, process_*_my_commands_query,
TdOnGetMyCommandsCallback); github:tdlib/td, td/telegram/BotCommand.cpp (set_commands,
BotCommands::update_all_bot_commands), BotCommandScope.cpp (get_bot_command_scope), misc.cpp
(validate_bot_language_code). Every error is a TDLib error text made into "Bad Request: ..." by
Client::fail_query_with_error (rules.bad_request).
"""

import json
import re

from .rules import bad_request
from .wire import ApiError

MAX_COMMAND = 32  # BotCommand.cpp, set_commands: MAX_COMMAND_TEXT_LENGTH (utf8_length, after trim)
MAX_DESCRIPTION = 256  # ... MAX_COMMAND_DESCRIPTION_LENGTH (utf8_length, after trim)
# Not in the source: Telegram's servers check the command's letters and how many there are
# (core.telegram.org/bots/api#botcommand: "1-32 characters. Can contain only lowercase English
# letters, digits and underscores"; #setmycommands: "At most 100 commands can be specified"),
# answering with their constants, which Client.cpp passes on as they are.
COMMAND_LETTERS = re.compile(r"[a-z0-9_]+")
MAX_COMMANDS = 100
COMMAND_INVALID = bad_request("BOT_COMMAND_INVALID")
TOO_MANY = bad_request("BOT_COMMANDS_TOO_MUCH")
# Client::get_bot_command_scope: the types without a chat, and those with one
CHATLESS = ("default", "all_private_chats", "all_group_chats", "all_chat_administrators")
WITH_CHAT = ("chat", "chat_administrators", "chat_member")


class CommandsMixin:
    def _init_commands(self):
        self._menus = {}  # (scope key, language_code) -> [{"command", "description"}]

    def commands(self, scope=None, language_code=""):
        """The menu set for `scope` (a BotCommandScope dict; None: default) and language, as
        getMyCommands would answer: what was set for exactly that pair, no fallback."""
        with self._cond:
            key = self._scope_key(scope or {"type": "default"})
            return [dict(c) for c in self._menus.get((key, language_code), [])]

    def menus(self):
        """Every (scope key, language_code) with a menu set: ("default",) or ("chat", id) ..."""
        with self._cond:
            return sorted(self._menus, key=repr)

    # ---- the methods ----
    def _set_my_commands(self, p, files):
        commands = self._parsed_commands(p.get("commands"))
        with self._cond:
            key, language = self._scope_key(self._parsed_scope(p.get("scope"))), _language(p)
            if commands:
                self._menus[(key, language)] = commands
            else:  # update_all_bot_commands: an empty list removes the menu
                self._menus.pop((key, language), None)
            self._changed()
        return True

    def _get_my_commands(self, p, files):
        with self._cond:
            key, language = self._scope_key(self._parsed_scope(p.get("scope"))), _language(p)
            return [dict(c) for c in self._menus.get((key, language), [])]

    def _delete_my_commands(self, p, files):
        with self._cond:
            key, language = self._scope_key(self._parsed_scope(p.get("scope"))), _language(p)
            self._menus.pop((key, language), None)
            self._changed()
        return True

    # ---- parsing, as Client.cpp and TDLib check ----
    def _parsed_commands(self, value):
        """Client::get_bot_commands and td set_commands: a JSON array of BotCommand objects,
        each trimmed, a leading "/" dropped, 1-32 and 1-256 characters."""
        if value is None or value == "":
            return []
        if isinstance(value, str):
            raise ApiError(400, bad_request("Can't parse commands JSON object"))
        if not isinstance(value, list):
            raise ApiError(400, bad_request("Expected an Array of BotCommand"))
        commands = []
        for item in value:
            command, description = _command_fields(item)
            command = command.strip()
            command = command[1:] if command.startswith("/") else command
            if not command:
                raise ApiError(400, bad_request("Command must be non-empty"))
            if len(command) > MAX_COMMAND:
                raise ApiError(400, bad_request(f"Command length must not exceed {MAX_COMMAND}"))
            description = description.strip()
            if not description:
                raise ApiError(400, bad_request("Command description must be non-empty"))
            if len(description) > MAX_DESCRIPTION:
                raise ApiError(
                    400, bad_request(f"Command description length must not exceed {MAX_DESCRIPTION}")
                )
            if not COMMAND_LETTERS.fullmatch(command):
                raise ApiError(400, COMMAND_INVALID)
            commands.append({"command": command, "description": description})
        if len(commands) > MAX_COMMANDS:
            raise ApiError(400, TOO_MANY)
        return commands

    def _parsed_scope(self, value):
        """Client::get_bot_command_scope: absent is the default scope; else a JSON object."""
        if value is None or value == "":
            return {"type": "default"}
        if not isinstance(value, dict):
            raise ApiError(400, bad_request("Can't parse BotCommandScope JSON object"))
        return value

    def _scope_key(self, scope):
        """A scope's key, after Client::get_bot_command_scope and check_bot_command_scope (the
        chat must be known: "chat not found") and TDLib's BotCommandScope::get_bot_command_scope
        (which scopes a private chat or a channel takes)."""

        def refuse(why):
            return ApiError(400, bad_request(f"Can't parse BotCommandScope: {why}"))

        kind = _string_field(scope, "type", refuse)
        if kind in CHATLESS:
            return (kind,)
        if kind not in WITH_CHAT:
            raise refuse("Unsupported type specified")
        chat = _string_field(scope, "chat_id", refuse)
        if chat == "":
            raise refuse("Empty chat_id specified")
        chat_id = int(chat) if re.fullmatch(r"-?\d{1,19}", chat) else None
        key = [kind, chat_id]
        if kind == "chat_member":
            user_id = scope.get("user_id")
            if user_id is None:
                raise refuse('Can\'t find field "user_id"')
            if isinstance(user_id, str) and re.fullmatch(r"-?\d{1,19}", user_id):
                user_id = int(user_id)  # get_required_long_field reads a string's number too
            if not isinstance(user_id, int) or isinstance(user_id, bool):
                raise refuse('Field "user_id" must be a valid Number')
            if user_id <= 0:
                raise refuse("Invalid user_id specified")
            key.append(user_id)
        if chat_id is None:  # a @username the stand-in does not know: Client::check_chat
            raise ApiError(400, "Bad Request: chat not found")
        chat = self._chat_info(chat_id)
        if chat["kind"] == "private" and kind != "chat":
            raise ApiError(400, bad_request("Can't use specified scope in private chats"))
        if chat["kind"] == "channel":
            raise ApiError(400, bad_request("Can't change commands in channel chats"))
        return tuple(key)


def _command_fields(item):
    """Client::get_bot_command: an object with the string fields "command" and "description"."""

    def refuse(why):
        return ApiError(400, bad_request(f"Can't parse BotCommand: {why}"))

    if not isinstance(item, dict):
        raise refuse("expected an Object")
    return _string_field(item, "command", refuse), _string_field(item, "description", refuse)


def _string_field(item, name, refuse):
    """td JsonObject::get_required_string_field: a string, or a number as its text."""
    if name not in item:
        raise refuse(f'Can\'t find field "{name}"')
    value = item[name]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return json.dumps(value)
    if not isinstance(value, str):
        raise refuse(f'Field "{name}" must be of type String')
    return value


def _language(p):
    """td misc.cpp, validate_bot_language_code: empty (every language) or two letters a-z."""
    language = p.get("language_code") or ""
    if not isinstance(language, str) or not (
        language == ""
        or (len(language) == 2 and language.isascii() and language.isalpha() and language.islower())
    ):
        raise ApiError(400, bad_request("Invalid language code specified"))
    return language
