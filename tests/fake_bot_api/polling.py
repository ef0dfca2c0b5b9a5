"""The update queue, getUpdates and the stand-in's clock."""

import copy
import json
import math
import re
import time

from .rules import (
    CONFLICT_SPACING,
    FUTURE_OFFSET_SLACK,
    LONG_POLL_MAX_TIMEOUT,
    NOT_BY_DEFAULT,
    ONE_UPDATE_WINDOW,
    OTHER_POLL,
    REPEAT_WINDOW,
    UPDATE_LIFETIME,
    WEBHOOK_ACTIVE,
)
from .wire import ApiError, HangUp

# Client::get_update_type_name: the kinds allowed_updates may name
UPDATE_KINDS = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "custom_event",
        "custom_query",
        "shipping_query",
        "pre_checkout_query",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
        "message_reaction",
        "message_reaction_count",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "purchased_paid_media",
        "managed_bot",
        "guest_message",
    }
)


def int_arg(value, default):
    """Client.cpp, get_integer_arg: absent or empty gives the default; text that is no number, 0."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return int(value)
    match = re.match(r"\s*[-+]?\d+", str(value))
    return int(match.group()) if match else 0


class UpdatesMixin:
    """The getUpdates part of FakeBotAPI (state guarded by self._cond)."""

    def _init_updates(self):
        self._updates = []  # pending: {"update", "expires" (unix time), "queue" (chat id or None)}
        self._next_update_id = 1
        self._allowed = None  # the kinds asked for by name; None: every kind but NOT_BY_DEFAULT
        self._skew = 0.0  # seconds advance_time() moved the clock on
        self._poll_ticket = 0  # numbers getUpdates calls
        self._poll = None  # the getUpdates call now waiting for updates (Client's long_poll_query_)
        self._previous_poll = (-1, float("-inf"))  # (offset, clock) of the last getUpdates call
        self._next_conflict = float("-inf")  # fail_query_conflict's next_get_updates_conflict_time_

    # ---- the clock ----
    def advance_time(self, seconds):
        """Move the stand-in's clock on: every message gets older by `seconds` (its date and
        edit_date, as the bot sees them; the 48-hour rules with them), so do the pending updates
        (an update older than a day is dropped), and every wait measured on the clock (a long
        poll's timeout, flood(), setWebhook's second, getUpdates' 3 s, 409 spacing, webhook
        retries) is that much nearer its end. Dates move by whole seconds."""
        with self._cond:
            before = self._skew
            self._skew += seconds
            shift = math.floor(self._skew) - math.floor(before)
            for message in self._by_id.values():
                _age(message, shift)
            for record in self._updates:
                _age(record["update"], shift)
                record["expires"] -= shift
            self._expire_updates()
            self._changed()

    def _mono(self):
        """The stand-in's clock for waits and intervals: monotonic, moved on by advance_time()."""
        return time.monotonic() + self._skew

    # ---- the queue ----
    def _wants(self, kind):
        return kind not in NOT_BY_DEFAULT if self._allowed is None else kind in self._allowed

    def _set_allowed(self, value):
        """Client::update_allowed_update_types and get_allowed_update_types: allowed_updates, when
        given (getUpdates or setWebhook), is kept until given again; [] or only unknown names mean
        the default; anything but a list of strings changes nothing."""
        if value is None or value == "":
            return
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return
        if not isinstance(value, list) or not all(isinstance(kind, str) for kind in value):
            return
        kinds = {kind.lower() for kind in value} & UPDATE_KINDS
        self._allowed = kinds or None

    def _queue_update(self, kind, payload, queue, date):
        """Client::add_update_impl: an update of a kind not allowed is never made (updates made
        before allowed_updates changed stay); Client::add_message_update: one about a message lives
        until the message's date (or edit_date) + 1 day. `queue`: the chat, whose updates a webhook
        gets one at a time (webhook_queue_id)."""
        if not self._wants(kind):
            return None
        update = {"update_id": self._next_update_id, kind: payload}
        self._next_update_id += 1
        self._updates.append({"update": update, "expires": date + UPDATE_LIFETIME, "queue": queue})
        self._changed()
        return update

    def _expire_updates(self):
        """TQueue.cpp: an event whose expires_at has passed is dropped when met."""
        now = int(time.time())
        kept = [r for r in self._updates if r["expires"] >= now]
        if len(kept) != len(self._updates):
            self._updates = kept
            self._changed()

    def _take_updates(self, offset, limit):
        """Client::do_get_updates on TQueue: a negative offset keeps only the last -offset
        updates; 0 reads from the oldest; an offset confirms (forgets) every update below it,
        unless it is more than 10 past the newest id (TQueue: "in the future"; read from the oldest,
        nothing confirmed). Returns (the offset read from, up to `limit` updates)."""
        self._expire_updates()
        if offset < 0:
            del self._updates[: max(0, len(self._updates) + offset)]
        head = self._updates[0]["update"]["update_id"] if self._updates else self._next_update_id
        if offset <= 0 or offset > self._next_update_id + FUTURE_OFFSET_SLACK:
            offset = head
        else:
            self._updates = [r for r in self._updates if r["update"]["update_id"] >= offset]
        ready = [r["update"] for r in self._updates if r["update"]["update_id"] >= offset]
        return offset, copy.deepcopy(ready[:limit])

    # ---- getUpdates ----
    def _get_updates(self, p, files):
        """Client::process_get_updates_query and do_get_updates.

        A call that finds updates, or has timeout 0, answers at once and leaves a waiting long poll
        alone. A long poll (timeout > 0) that finds nothing ends the one waiting before it with 409
        (abort_long_poll) and waits in its place. The same offset as the previous call within 3 s
        raises the timeout to 3 s; within 0.5 s the limit falls to 1."""
        with self._cond:
            if self._webhook is not None:
                self._fail_conflict(WEBHOOK_ACTIVE)
            offset = int_arg(p.get("offset"), 0)
            limit = min(max(int_arg(p.get("limit"), 100), 1), 100)
            timeout = min(max(int_arg(p.get("timeout"), 0), 0), LONG_POLL_MAX_TIMEOUT)
            self._set_allowed(p.get("allowed_updates"))
            now = self._mono()
            previous_offset, previous_start = self._previous_poll
            if offset == previous_offset and timeout < 3 and now < previous_start + REPEAT_WINDOW:
                timeout = 3
            if offset == previous_offset and now < previous_start + ONE_UPDATE_WINDOW:
                limit = 1
            self._previous_poll = (offset, now)
            self._poll_ticket += 1
            offset, ready = self._take_updates(offset, limit)
            if timeout == 0 or ready:
                return ready
            self._end_long_poll(OTHER_POLL)
            poll = {"ticket": self._poll_ticket, "offset": offset, "limit": limit, "deadline": now + timeout}
            poll["end"] = None
            self._poll = poll
            self._changed()
            try:
                return self._long_poll(poll)
            finally:
                if self._poll is poll:
                    self._poll = None
                    self._changed()

    def _long_poll(self, poll):
        """Wait (lock held) for updates until the timeout, or until something ends this poll."""
        while True:
            if poll["end"] is not None:
                code, description, at = poll["end"]
                if self._mono() >= at or self._stopping:
                    raise ApiError(code, description)
                self._cond.wait(at - self._mono())
                continue
            if self._outage:
                raise HangUp()
            if self._stopping:
                return []
            self._expire_updates()
            ready = [r["update"] for r in self._updates if r["update"]["update_id"] >= poll["offset"]]
            remaining = poll["deadline"] - self._mono()
            if ready or remaining <= 0:
                return copy.deepcopy(ready[: poll["limit"]])
            self._cond.wait(remaining)

    def _end_long_poll(self, message):
        """Client::abort_long_poll: the waiting getUpdates answers 409 (fail_query_conflict)."""
        poll, self._poll = self._poll, None
        if poll is not None:
            poll["end"] = (409, message, self._conflict_time())
            self._changed()

    def _conflict_time(self):
        """Client::fail_query_conflict: a 409 goes out at once when none went out in the last 3 s
        (and starts 3 s more); otherwise it waits 3 s (without moving that window)."""
        now = self._mono()
        if now >= self._next_conflict:
            self._next_conflict = now + CONFLICT_SPACING
            return now
        return now + CONFLICT_SPACING

    def _fail_conflict(self, message):
        """Answer this call 409 per fail_query_conflict (lock held; waits when it must)."""
        at = self._conflict_time()
        while self._mono() < at and not self._stopping:
            self._cond.wait(at - self._mono())
        raise ApiError(409, message)

    def wait_for_long_poll(self, timeout=10.0, *, after=0):
        """Block until a getUpdates call is waiting for updates; returns its ticket (a number
        that grows with every getUpdates call). `after`: a ticket; wait for a newer call."""

        def waiting():
            with self._cond:
                return self._poll["ticket"] if self._poll and self._poll["ticket"] > after else None

        return self.wait_for(waiting, timeout, f"a getUpdates call (after #{after}) waiting for updates")

    def pending_updates(self):
        """The updates Telegram still holds for the bot (not confirmed, not expired)."""
        with self._cond:
            self._expire_updates()
            return [copy.deepcopy(r["update"]) for r in self._updates]


def _age(value, seconds):
    """Make a message (and the messages inside it) `seconds` older."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("date", "edit_date") and isinstance(item, int):
                value[key] = item - seconds
            else:
                _age(item, seconds)
    elif isinstance(value, list):
        for item in value:
            _age(item, seconds)
