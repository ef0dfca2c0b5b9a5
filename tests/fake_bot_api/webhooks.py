"""setWebhook, deleteWebhook, getWebhookInfo and the thread that delivers updates to a webhook."""

import http.client
import ipaddress
import random
import re
import time
from urllib.parse import urlsplit

from .polling import int_arg
from .rules import (
    BAD_WEBHOOK_URL,
    DEFAULT_MAX_CONNECTIONS,
    MAX_MAX_CONNECTIONS,
    MAX_SECRET_TOKEN,
    MAX_WEBHOOK_RETRY_AFTER,
    SECRET_CHARACTERS,
    SECRET_TOO_LONG,
    SET_WEBHOOK_SPACING,
    WEBHOOK_MAX_RESEND_TIMEOUT,
    WEBHOOK_SET,
    too_many_requests,
)
from .wire import ApiError, answer_error, connect_error, post_json


class WebhookMixin:
    """The webhook part of FakeBotAPI (state guarded by self._cond)."""

    def _init_webhooks(self, webhook_retry_seconds, webhook_timeout):
        # One second of the real server's waits between webhook deliveries lasts this long here.
        self.webhook_retry_seconds, self.webhook_timeout = webhook_retry_seconds, webhook_timeout
        self._webhook = None  # the setWebhook settings while a webhook is set
        self._webhook_error = None  # (unix time, message) of the last failed delivery
        self._next_set_webhook = float("-inf")  # Client's next_allowed_set_webhook_time_ (clock)
        self._retries = {}  # update_id -> {"delay", "fails", "wakeup"}: WebhookActor's Update
        self._delivery_sock = None  # the socket of a delivery in flight, for stop() to cut

    # ---- API methods ----
    def _set_webhook(self, p, files, url=None):
        """Client::process_set_webhook_query and do_set_webhook.

        A setWebhook with a URL at most once a second (else 429, retry after 1), counted before
        anything else is looked at. The same settings again (and no drop_pending_updates) change
        nothing but allowed_updates: "Webhook is already set", the last error kept. Otherwise a URL
        ends a waiting getUpdates (409 "terminated by setWebhook request"), the old webhook goes,
        drop_pending_updates empties the queue, and only then are the URL and the secret token
        checked: a refused setWebhook leaves no webhook at all. The stand-in takes plain http on any
        port (Telegram wants https on 443, 80, 88 or 8443 unless started with --local: WebhookActor
        ::start_up), so that tests can run a receiver on loopback."""
        url = (p.get("url") or "") if url is None else url
        with self._cond:
            now = self._mono()
            if url:
                if now < self._next_set_webhook:
                    raise ApiError(429, *too_many_requests(1))
                self._next_set_webhook = now + SET_WEBHOOK_SPACING
            new = _webhook_settings(p, files, url) if url else None
            drop = bool(p.get("drop_pending_updates"))
            if not drop and _same_webhook(self._webhook, new):
                self._set_allowed(p.get("allowed_updates"))
                return True
            if url:
                self._end_long_poll(WEBHOOK_SET)
            self._webhook, self._retries = None, {}
            self._webhook_error = None
            if drop:
                self._updates = []
            self._changed()  # wakes the delivery thread
            if url:
                _check_webhook(new)
                self._webhook = new
                self._set_allowed(p.get("allowed_updates"))
        return True

    def _delete_webhook(self, p, files):
        return self._set_webhook(p, files, url="")

    def _get_webhook_info(self, p, files):
        with self._cond:
            self._expire_updates()
            hook = self._webhook or {}
            info = {
                "url": hook.get("url", ""),
                "has_custom_certificate": bool(hook.get("has_custom_certificate")),
                "pending_update_count": len(self._updates),
            }
            if self._webhook_error:
                info["last_error_date"], info["last_error_message"] = self._webhook_error
            if hook:
                info["max_connections"] = hook["max_connections"]
                if hook.get("ip_address"):
                    info["ip_address"] = hook["ip_address"]
                if self._allowed is not None:
                    info["allowed_updates"] = sorted(self._allowed)
        return info

    # ---- delivery (a thread of its own) ----
    def _deliver_webhooks(self):
        """Post updates to the webhook until stop(): one at a time (a single connection, whatever
        max_connections says), each chat's in order, the chats independently."""
        while True:
            with self._cond:
                job = self._next_delivery()
            if job is None:
                return
            hook, record, started = job
            status, error, retry_after = self._post_update(hook, record["update"])
            with self._cond:
                self._delivered(hook, record, started, status, error, retry_after)

    def _next_delivery(self):
        """Wait (lock held) for an update due at the webhook: (hook, record, time), or None on stop().

        WebhookActor keeps a queue per chat (an update's webhook_queue_id; others get a queue each):
        a queue's first update waits for its retry while the other queues go on; the earliest due
        goes first."""
        while not self._stopping:
            self._expire_updates()
            if self._webhook is not None and self._updates:
                heads = {}
                for record in self._updates:
                    queue = record["queue"] if record["queue"] is not None else ("own", id(record))
                    heads.setdefault(queue, record)
                due = min(
                    (self._retries.get(r["update"]["update_id"], {}).get("wakeup", 0.0), n, r)
                    for n, r in enumerate(heads.values())
                )
                wait = due[0] - self._mono()
                if wait <= 0:
                    return self._webhook, due[2], time.time()
                self._cond.wait(wait)
            else:
                self._cond.wait()
        return None

    def _post_update(self, hook, update):
        """POST one update: (HTTP status or None, None on success or the error getWebhookInfo
        shows, the answer's Retry-After)."""
        if self._is_down():
            return None, "Connection timed out", None
        url = urlsplit(hook["url"])
        connection_class = (
            http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(url.hostname, url.port, timeout=self.webhook_timeout)
        try:
            connection.connect()
        except OSError as e:
            return None, connect_error(e), None
        try:
            if not self._track_delivery(connection.sock):
                return None, "Webhook connection closed", None
            status, reason, retry_after = post_json(connection, url, update, hook["secret_token"])
        except (OSError, http.client.HTTPException) as e:
            return None, answer_error(e), None
        finally:
            self._track_delivery(None)
            connection.close()
        if 200 <= status <= 299:  # WebhookActor::handle: only 2xx confirms an update
            return status, None, None
        return status, f"Wrong response from the webhook: {status} {reason}", retry_after

    def _track_delivery(self, sock):
        """Note the socket of the delivery in flight for stop() to cut; False when already stopping."""
        with self._cond:
            self._delivery_sock = sock
            return not (sock and self._stopping)

    def _delivered(self, hook, record, started, status, error, retry_after):
        """Record a delivery attempt (lock held): a success confirms the update; a failure delays it.

        WebhookActor::on_update_error: the first failure is retried at once, the next ones after
        2, 4, 8 ... s, each time at most a random 60..120 s; a Retry-After in the webhook's answer
        (td HttpQuery::get_retry_after, clamped to 0..3600 s) is the wait instead; an update whose
        next try would come after it expires is dropped. The stand-in's one deliberate deviation:
        its seconds last webhook_retry_seconds."""
        if self._stopping:
            return  # cut short by stop(): no attempt worth recording
        update_id = record["update"]["update_id"]
        self._calls.append(
            {
                "method": "webhookDelivery",
                "params": {"update_id": update_id, "url": hook["url"]},
                "time": started,
                "status": status,
                "error": error,
            }
        )
        if error is None:
            self._updates = [r for r in self._updates if r is not record]
            self._retries.pop(update_id, None)
        elif hook is self._webhook and any(r is record for r in self._updates):
            # (a replaced webhook's failures count for nothing)
            self._webhook_error = (int(time.time()), error)
            state = self._retries.setdefault(update_id, {"delay": 1, "fails": 0})
            delay, wait = next_retry(state["delay"], state["fails"], int_arg(retry_after, 0))
            if int(time.time()) + wait > record["expires"]:
                self._updates = [r for r in self._updates if r is not record]
                self._retries.pop(update_id, None)
            else:
                state.update(
                    delay=delay,
                    fails=state["fails"] + 1,
                    wakeup=self._mono() + wait * self.webhook_retry_seconds,
                )
        self._changed()

    def _stop_webhooks(self):
        """Called by stop() with the lock held: the socket of a delivery in flight, to cut."""
        delivering, self._delivery_sock = self._delivery_sock, None
        return delivering


def next_retry(delay, fails, retry_after, randint=random.randint):
    """WebhookActor::on_update_error for an update that failed `fails` times before, with the
    delay it has (1 at first) and the webhook's Retry-After (0: none): (its new delay, the seconds
    before its next try)."""
    wait = min(max(retry_after, 0), MAX_WEBHOOK_RETRY_AFTER)
    if wait == 0 and fails > 0:
        delay = min(randint(WEBHOOK_MAX_RESEND_TIMEOUT, WEBHOOK_MAX_RESEND_TIMEOUT * 2), delay * 2)
        wait = delay
    return delay, wait


def _webhook_settings(p, files, url):
    return {
        "url": url,
        "secret_token": p.get("secret_token") or "",
        "has_custom_certificate": "certificate" in files,
        # Client::get_webhook_max_connections: 40 unless given, 1..100
        "max_connections": min(
            max(int_arg(p.get("max_connections"), DEFAULT_MAX_CONNECTIONS), 1), MAX_MAX_CONNECTIONS
        ),
        "fixed_ip": p.get("ip_address") or None,  # Client::get_webhook_fix_ip_address
        "ip_address": p.get("ip_address") or None,  # what getWebhookInfo shows
    }


def _same_webhook(current, new):
    """process_set_webhook_query: the same URL, no certificate, the same max_connections, secret
    token and fixed IP address."""
    if current is None or new is None:
        return current is None and new is None
    keys = ("url", "max_connections", "secret_token", "fixed_ip")
    no_certificate = not current["has_custom_certificate"] and not new["has_custom_certificate"]
    return no_certificate and all(current[k] == new[k] for k in keys)


def _check_webhook(hook):
    """Client::do_set_webhook: the URL must parse; the secret token is 0..256 of A-Z a-z 0-9 _ -."""
    url = urlsplit(hook["url"])
    try:
        valid = url.scheme in ("http", "https") and url.hostname and url.port != 0  # .port checks the number
    except ValueError:
        valid = False
    if not valid:
        raise ApiError(400, BAD_WEBHOOK_URL)
    if len(hook["secret_token"]) > MAX_SECRET_TOKEN:
        raise ApiError(400, SECRET_TOO_LONG)
    if not re.fullmatch(r"[A-Za-z0-9_-]*", hook["secret_token"]):
        raise ApiError(400, SECRET_CHARACTERS)
    if hook["ip_address"] is None:
        hook["ip_address"] = _ip_literal(url.hostname)


def _ip_literal(host):
    """The host when it is an IP address (Telegram shows the address it resolved; we resolve nothing)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None
