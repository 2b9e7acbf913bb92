"""Conversations webhooks as Twilio sends them: the form fields, the signature, the post-event retries, and the
pre-event hook that may reject or change an agent's message. Every delivery is recorded in the store."""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Mapping
from typing import Any

import requests
from twilio.request_validator import RequestValidator

from .resources import MediaItem, PreEventDraft, WebhookDelivery
from .store import Store
from .wire import iso, webhook_date

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5.0  # Twilio gives every Conversations webhook 5 s
# Twilio retries a post-event hook (when the service asks for retries) on these answers and on a timeout.
WEBHOOK_RETRY_STATUSES = {429, 503, 504}
WEBHOOK_RETRY_DELAY_S = 0.2  # Twilio does not document its retry schedule; the sandbox keeps tests quick


def webhook_params(store: Store, conn: sqlite3.Connection, message: sqlite3.Row | Mapping[str, Any]) -> dict[str, str]:
    """onMessageAdded exactly as Twilio posts it: every value a string, absent values left out.

    `message`: a messages row, or a draft with the same fields (pre_event_params).
    """
    source = message["source"]
    params = {
        "AccountSid": store.account_sid,
        "EventType": "onMessageAdded",
        "Source": source,
        "ConversationSid": message["conversation_sid"],
        "MessageSid": message["sid"],
        "ChatServiceSid": store.chat_service_sid,
        "Index": str(message["idx"]),
        "DateCreated": webhook_date(message["date_created"]),
        "Author": message["author"],
        "Attributes": message["attributes"],
        "RetryCount": "0",
    }
    if source != "SDK":
        # The conversation's own messaging service (one created over REST may name another).
        params["MessagingServiceSid"] = (
            conn.execute(
                "SELECT messaging_service_sid FROM conversations WHERE sid = ?", (message["conversation_sid"],)
            ).fetchone()[0]
            or store.messaging_service_sid
        )
    else:
        params["ClientIdentity"] = message["author"]
    if message["participant_sid"]:
        params["ParticipantSid"] = message["participant_sid"]
    # Form encoding has no null: Twilio leaves out Body for a media-only message.
    if message["body"] is not None:
        params["Body"] = message["body"]
    if message["media"]:
        params["Media"] = _webhook_media(json.loads(message["media"]), source)
    return params


def _webhook_media(items: list[MediaItem], source: str) -> str:
    # Webhooks spell media keys in PascalCase, unlike REST's snake_case.
    if source == "SDK":
        # Twilio quirk (support article 50592895951387): an SDK message with several attachments
        # shows only one of them in the webhook; REST shows them all.
        items = items[:1]
    return json.dumps(
        [
            {
                "Sid": m["sid"],
                "ContentType": m["content_type"],
                "Filename": m["filename"],
                "Size": m["size"],
                "Category": m.get("category", "media"),
            }
            for m in items
        ]
    )


def pre_event_params(store: Store, draft: PreEventDraft) -> dict[str, str]:
    """onMessageAdd for a message not published yet: the post-event fields minus MessageSid and Index."""
    with store.connect() as conn:
        params = webhook_params(store, conn, {**draft, "sid": None, "idx": None})
    del params["MessageSid"], params["Index"]
    params["EventType"] = "onMessageAdd"
    return params


def pre_event_changes(answer: str) -> dict[str, Any]:
    """What a pre-event hook's 200 may change: `body`, `author` and `attributes` of a JSON object (`body` and
    `author` as the hook sent them: any JSON value)."""
    try:
        changes = json.loads(answer) if answer.strip() else {}
    except ValueError:
        return {}
    if not isinstance(changes, dict):
        return {}
    return {
        key: (json.dumps(value) if key == "attributes" and not isinstance(value, str) else value)
        for key, value in changes.items()
        if key in ("body", "author", "attributes")
    }


class WebhookSender:
    def __init__(self, store: Store):
        self.store = store
        self._threads: list[threading.Thread] = []

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        """X-Twilio-Signature for a form-encoded POST of `params` to `url`, as Twilio computes it."""
        signature: str = RequestValidator(self.store.auth_token).compute_signature(url, params)
        return signature

    def deliver(self, params: dict[str, str], url: str | None = None) -> int | None:
        """POST `params` signed and form-encoded to `url` (default: the post-event hook). Returns the last status.

        Never raises: like Twilio, a failed delivery is logged (and recorded) and then forgotten, after the
        retries the service asked for (post-event hook only): on a timeout, 429, 503 or 504, each retry with
        RetryCount one higher and signed again.
        """
        retries = 0
        if url is None:
            url = self.store.meta("post_webhook_url")
            retries = int(self.store.meta("post_webhook_retry_count") or 0)
        if not url:
            return None
        status: int | None = None
        for attempt in range(max(0, retries) + 1):  # a negative count is no retries, not no delivery
            if attempt:
                time.sleep(WEBHOOK_RETRY_DELAY_S)
                params = {**params, "RetryCount": str(attempt)}
            status, _, timed_out = self.post_signed(url, params)
            if not (status in WEBHOOK_RETRY_STATUSES or timed_out):
                break
        return status

    def post_signed(self, url: str, params: dict[str, str]) -> tuple[int | None, str, bool]:
        """One signed delivery, recorded: (status or None, response body, whether it timed out)."""
        headers = {
            "X-Twilio-Signature": self.sign(url, params),
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
            "User-Agent": "TwilioProxy/1.1",
        }
        status, body, error, timed_out = None, "", None, False
        try:
            response = requests.post(url, data=params, headers=headers, timeout=WEBHOOK_TIMEOUT_S)
            status, body = response.status_code, response.text
            if status >= 400:
                log.warning("sandbox webhook %s answered %d", url, status)
        except requests.RequestException as exc:
            timed_out = isinstance(exc, requests.Timeout)
            error = f"{type(exc).__name__}: {exc}"
            log.warning("sandbox webhook %s failed: %s", url, error)
        self._record(url, params, status, error)
        return status, body, timed_out

    def _record(self, url: str, params: dict[str, str], status: int | None, error: str | None) -> None:
        try:
            with self.store.tx() as conn:
                conn.execute(
                    "INSERT INTO webhook_deliveries (url, params, status, error, delivered_at) VALUES (?, ?, ?, ?, ?)",
                    (url, json.dumps(params), status, error, iso()),
                )
        except sqlite3.Error:
            log.exception("sandbox could not record a webhook delivery")

    def deliver_in_background(self, params: dict[str, str]) -> None:
        # Twilio fires post-event hooks after answering the REST call; a thread keeps a single-threaded
        # dev server that posts to itself from deadlocking.
        thread = threading.Thread(target=self.deliver, args=(params,), daemon=True, name="sandbox-webhook")
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def flush(self, timeout: float = WEBHOOK_TIMEOUT_S + 1) -> None:
        """Wait for webhook deliveries started by this process."""
        for thread in list(self._threads):
            thread.join(timeout)

    def deliveries(self) -> list[WebhookDelivery]:
        with self.store.connect() as conn:
            rows = conn.execute("SELECT * FROM webhook_deliveries ORDER BY id").fetchall()
        return [
            {"url": r["url"], "params": json.loads(r["params"]), "status": r["status"], "error": r["error"]}
            for r in rows
        ]
