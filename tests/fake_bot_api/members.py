"""What members of a chat do beyond posting and pinning (chats.py): forwarding a message."""

import copy


class MembersMixin:
    """Part of FakeBotAPI (state guarded by self._cond), over ChatsMixin's messages."""

    def forward(self, user_id, from_chat_id, message_id, *, chat_id):
        """A member forwards a message (the bot's own, say) into `chat_id`: a new message from
        them, with the content as it was and forward_origin naming who wrote it (Client.cpp,
        JsonMessageOrigin: "user" with sender_user, or "channel" with the chat and message id)."""
        with self._cond:
            original = self._find(from_chat_id, message_id, "message to forward not found")
            fields = {k: copy.deepcopy(original[k]) for k in ("text", "document", "caption") if k in original}
            if "from" in original:
                origin = {"type": "user", "sender_user": original["from"], "date": original["date"]}
            else:
                origin = {
                    "type": "channel",
                    "chat": self._chat_object(from_chat_id),
                    "message_id": message_id,
                    "date": original["date"],
                }
        return self._incoming(user_id, chat_id, dict(fields, forward_origin=origin))

    def unpin_by_someone(self, chat_id, message_id):
        """An administrator of the chat unpins a message (no service message: Telegram makes
        none for an unpin)."""
        with self._cond:
            pins = self._pins.get(chat_id, [])
            pins[:] = [m for m in pins if m["message_id"] != message_id]
            self._changed()
