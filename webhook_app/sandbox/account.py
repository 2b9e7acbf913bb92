"""The fake account as Python: what the CLI, the agent console and tests do with the sandbox (a customer sends a
voice note, an agent sends from Flex, a token is issued, the next request fails), each step as Twilio takes it."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask

from . import controls, iam, records
from .app import create_sandbox_app
from .media import render_media
from .render import render_conversation, render_message, render_participant
from .resources import (
    AgentSend,
    ConversationResource,
    MediaResource,
    MessageResource,
    MessagingBinding,
    ParticipantResource,
    PreEventDraft,
    TokenValidation,
    WebhookDelivery,
)
from .store import Store
from .webhooks import WEBHOOK_TIMEOUT_S, WebhookSender, pre_event_changes, pre_event_params, webhook_params
from .wire import iso

CHANNELS = ("whatsapp", "sms", "webchat", "messenger")
# Webhook `Source` per customer messaging binding (a chat identity sends as SDK).
SOURCE_BY_BINDING = {"whatsapp": "WHATSAPP", "sms": "SMS", "messenger": "MESSENGER"}


def _customer_on(channel: str, customer_address: str | None) -> tuple[str | None, MessagingBinding | None]:
    """(identity, messaging binding) of a customer contacting the account on `channel`."""
    digits = "".join(secrets.choice("0123456789") for _ in range(7))
    if channel == "whatsapp":
        address = customer_address or f"whatsapp:+1555{digits}"
        if not address.startswith("whatsapp:"):
            address = f"whatsapp:{address}"
        return None, {"type": "whatsapp", "address": address, "proxy_address": "whatsapp:+14155238886"}
    if channel == "sms":
        return None, {"type": "sms", "address": customer_address or f"+1555{digits}", "proxy_address": "+14155550100"}
    if channel == "messenger":
        address = customer_address or f"messenger:{secrets.randbelow(10**15) + 10**15}"
        return None, {"type": "messenger", "address": address, "proxy_address": "messenger:104522238812345"}
    return customer_address or f"webchat-guest-{secrets.token_hex(4)}", None


class Sandbox:
    """The fake account. Every public method and every HTTP request opens its own SQLite connection."""

    def __init__(self, db_path: str):
        self.db_path = db_path
        self.store = Store(db_path)
        self.webhooks = WebhookSender(self.store)
        self.account_sid: str = self.store.account_sid
        self.auth_token: str = self.store.auth_token
        self.chat_service_sid: str = self.store.chat_service_sid
        self.messaging_service_sid: str = self.store.messaging_service_sid
        # Tests reach into the file directly (a conversation Twilio last updated long ago).
        self._connect, self._tx = self.store.connect, self.store.tx

    def wsgi_app(self) -> Flask:
        return create_sandbox_app(self)

    # -- customers and agents ----------------------------------------------------------------------------
    def create_conversation(
        self, friendly_name: str, channel: str, customer_address: str | None = None
    ) -> ConversationResource:
        """A conversation plus its customer participant, as an inbound contact on `channel` would create it."""
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}, not {channel!r}")
        identity, binding = _customer_on(channel, customer_address)
        with self.store.tx() as conn:
            conversation = records.insert_conversation(self.store, conn, friendly_name=friendly_name)
            records.insert_participant(
                self.store, conn, conversation["sid"], identity=identity, binding=binding, is_customer=True
            )
        return render_conversation(self.store, conversation)

    def add_participant(
        self,
        conversation_sid: str,
        *,
        identity: str | None = None,
        messaging_binding: Mapping[str, str] | None = None,
        attributes: str = "{}",
    ) -> ParticipantResource:
        """`messaging_binding`: {"address", "proxy_address"} (type is inferred from the address if absent)."""
        binding: MessagingBinding | None = None
        if messaging_binding:
            binding = {
                "type": messaging_binding.get("type") or records.binding_type(messaging_binding["address"]),
                "address": messaging_binding["address"],
                "proxy_address": messaging_binding.get("proxy_address"),
            }
        with self.store.tx() as conn:
            if records.get_conversation(conn, conversation_sid) is None:
                raise KeyError(conversation_sid)
            row = records.insert_participant(
                self.store, conn, conversation_sid, identity=identity, binding=binding, attributes=attributes
            )
        return render_participant(self.store, row)

    def customer_sends_media(
        self,
        conversation_sid: str,
        data: bytes,
        content_type: str,
        filename: str,
        body: str | None = None,
        deliver: bool = False,
    ) -> dict[str, str]:
        """The customer sends a file (a voice note, say): MCS media + message; returns onMessageAdded params.

        With `deliver=True` the params are also posted, signed, to the configured post-event webhook.
        """
        with self.store.tx() as conn:
            conversation = records.get_conversation(conn, conversation_sid)
            if conversation is None:
                raise KeyError(conversation_sid)
            customer = records.customer(conn, conversation["sid"])
            if customer["messaging_binding"]:
                binding = json.loads(customer["messaging_binding"])
                author, source = binding["address"], SOURCE_BY_BINDING.get(binding["type"], "SMS")
            else:
                author, source = customer["identity"], "SDK"
            media = records.insert_media(self.store, conn, data, content_type, filename, author=author)
            message = records.insert_message(
                self.store, conn, conversation["sid"], author=author, body=body, media_sid=media["sid"], source=source
            )
            params = webhook_params(self.store, conn, message)
        if deliver:
            self.deliver_webhook(params)
        return params

    def agent_sends_media(
        self,
        conversation_sid: str,
        identity: str,
        data: bytes,
        content_type: str,
        filename: str,
        body: str | None = None,
        deliver: bool = True,
    ) -> AgentSend:
        """An agent sends a file from the Conversations SDK (Flex's own attach button), as Twilio handles it.

        The media goes to MCS first. With a pre-event hook configured, Twilio then posts `onMessageAdd` (the
        post-event fields minus MessageSid and Index): a 4xx/5xx answer rejects the message (nothing is
        published, and the media is left to MCS's garbage collection); a 200 with a JSON object may change
        `body`, `author` and `attributes`; no answer in time publishes it unchanged. Returns {"published",
        "pre_status", "message_sid", "params"} (`params`: the onMessageAdded that followed, or None).
        """
        conversation, participant, media = self._agent_uploads(conversation_sid, identity, data, content_type, filename)
        pre_status, changes = self._pre_event_hook(conversation, participant, media, identity, body)
        if pre_status is not None and pre_status >= 400:
            return {"published": False, "pre_status": pre_status, "message_sid": None, "params": None}
        # The pre-event hook may replace these with any JSON values (pre_event_changes).
        message: dict[str, Any] = {"author": identity, "body": body, "attributes": "{}"}
        message.update(changes)
        with self.store.tx() as conn:
            row = records.insert_message(
                self.store,
                conn,
                conversation["sid"],
                author=message["author"],
                body=message["body"],
                attributes=message["attributes"],
                media_sid=media["sid"],
                source="SDK",
            )
            params = webhook_params(self.store, conn, row)
        if deliver:
            self.deliver_webhook(params)
        return {"published": True, "pre_status": pre_status, "message_sid": row["sid"], "params": params}

    def _pre_event_hook(
        self, conversation: sqlite3.Row, participant: sqlite3.Row, media: sqlite3.Row, identity: str, body: str | None
    ) -> tuple[int | None, dict[str, Any]]:
        """onMessageAdd to the pre-event hook, when one is configured: its status (None: no hook, or no answer in
        time) and the changes its 200 asks for."""
        pre_url = self.store.meta("pre_webhook_url")
        if not pre_url:
            return None, {}
        draft: PreEventDraft = {
            "source": "SDK",
            "conversation_sid": conversation["sid"],
            "date_created": iso(),
            "author": identity,
            "attributes": "{}",
            "body": body,
            "participant_sid": participant["sid"],
            "media": json.dumps([records.media_item(media)]),
        }
        pre_status, answer, _ = self.webhooks.post_signed(pre_url, pre_event_params(self.store, draft))
        return pre_status, (pre_event_changes(answer) if pre_status == 200 else {})

    def _agent_uploads(
        self, conversation_sid: str, identity: str, data: bytes, content_type: str, filename: str
    ) -> tuple[sqlite3.Row, sqlite3.Row, sqlite3.Row]:
        """The SDK's first step: the file goes to MCS, from a participant of the conversation."""
        with self.store.tx() as conn:
            conversation = records.get_conversation(conn, conversation_sid)
            if conversation is None:
                raise KeyError(conversation_sid)
            participant: sqlite3.Row | None = conn.execute(
                "SELECT sid FROM participants WHERE conversation_sid = ? AND identity = ?",
                (conversation["sid"], identity),
            ).fetchone()
            if participant is None:
                raise LookupError(f"{identity} is not a participant of {conversation_sid}")
            media = records.insert_media(self.store, conn, data, content_type, filename, author=identity)
        return conversation, participant, media

    def attach_media(self, conversation_sid: str, message_sid: str, media_sid: str) -> None:
        """Add one more attachment to a message, as the Conversations SDK can send several in one message."""
        with self.store.tx() as conn:
            message = conn.execute(
                "SELECT media FROM messages WHERE sid = ? AND conversation_sid = ?", (message_sid, conversation_sid)
            ).fetchone()
            media_row = conn.execute("SELECT * FROM media WHERE sid = ?", (media_sid,)).fetchone()
            if message is None or media_row is None:
                raise KeyError(message_sid if message is None else media_sid)
            items = json.loads(message["media"]) if message["media"] else []
            items.append(records.media_item(media_row))
            conn.execute("UPDATE messages SET media = ? WHERE sid = ?", (json.dumps(items), message_sid))

    # -- what the account holds --------------------------------------------------------------------------
    def webhook_params_for(self, conversation_sid: str, message_sid: str) -> dict[str, str]:
        with self.store.connect() as conn:
            message = conn.execute(
                "SELECT * FROM messages WHERE sid = ? AND conversation_sid = ?", (message_sid, conversation_sid)
            ).fetchone()
            if message is None:
                raise KeyError(message_sid)
            return webhook_params(self.store, conn, message)

    def media_bytes(self, media_sid: str) -> bytes:
        with self.store.connect() as conn:
            row = conn.execute("SELECT data FROM media WHERE sid = ?", (media_sid,)).fetchone()
        if row is None:
            raise KeyError(media_sid)
        return bytes(row["data"])

    def media_info(self, media_sid: str) -> MediaResource:
        """The MCS JSON for `media_sid` (without a temporary link: that needs a request's host)."""
        with self.store.connect() as conn:
            row = conn.execute("SELECT * FROM media WHERE sid = ?", (media_sid,)).fetchone()
        if row is None:
            raise KeyError(media_sid)
        return render_media(self.store, row)

    def list_messages(self, conversation_sid: str) -> list[MessageResource]:
        with self.store.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM messages WHERE conversation_sid = ? ORDER BY idx", (conversation_sid,)
            ).fetchall()
            delivery = records.delivery(conn, conversation_sid)
        return [render_message(self.store, row, delivery) for row in rows]

    def list_participants(self, conversation_sid: str) -> list[ParticipantResource]:
        with self.store.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM participants WHERE conversation_sid = ? ORDER BY seq", (conversation_sid,)
            ).fetchall()
        return [render_participant(self.store, row) for row in rows]

    # -- Flex tokens and API keys ------------------------------------------------------------------------
    def issue_token(
        self, identity: str, roles: Iterable[str] = ("agent",), ttl_s: int = 3600, realm_user_id: str | None = None
    ) -> str:
        """An opaque Flex-like token (JWE-shaped: five base64url parts), valid for `ttl_s` (negative = expired)."""
        return iam.issue_token(self.store, identity, roles, ttl_s, realm_user_id)

    def validate_token(self, token: str) -> TokenValidation:
        """The IAM Tokens/validate answer for `token` (always HTTP 200; `valid` says the verdict)."""
        return iam.validate_token(self.store, token)

    def create_api_key(self) -> tuple[str, str]:
        """A standard API key (SID, secret) for REST calls, as the Console makes one. Its secret signs nothing:
        webhooks stay signed with the account's auth token."""
        return controls.create_api_key(self.store)

    # -- test controls -----------------------------------------------------------------------------------
    def fail_next(self, path_regex: str, status: int, count: int = 1, retry_after: int | None = None) -> None:
        """The next `count` requests whose path matches `path_regex` (re.search) answer `status`."""
        controls.fail_next(self.store, path_regex, status, count, retry_after)

    def stall_next(self, path_regex: str, seconds: float, count: int = 1) -> None:
        """The next `count` matching requests hang for `seconds` before being answered normally (a slow MCS,
        so a test can kill a worker mid-download)."""
        controls.stall_next(self.store, path_regex, seconds, count)

    def pending_faults(self) -> int:
        """How many injected faults (failures or stalls) are still waiting for a request."""
        return controls.pending_faults(self.store)

    def set_webhook(self, post_url: str | None, pre_url: str | None = None, post_retry_count: int = 0) -> None:
        """Service-level webhook URLs. The pre-event hook is called for agent sends (`agent_sends_media`);
        `post_retry_count` is the service's post_webhook_retry_count (Twilio's default: no retries)."""
        controls.set_webhook(self.store, post_url, pre_url, post_retry_count)

    @property
    def webhook_urls(self) -> dict[str, str | None]:
        return {"post_url": self.store.meta("post_webhook_url"), "pre_url": self.store.meta("pre_webhook_url")}

    # -- webhooks ----------------------------------------------------------------------------------------
    def sign(self, url: str, params: Mapping[str, str]) -> str:
        """X-Twilio-Signature for a form-encoded POST of `params` to `url`, as Twilio computes it."""
        return self.webhooks.sign(url, params)

    def deliver_webhook(self, params: dict[str, str], url: str | None = None) -> int | None:
        """POST `params` signed to `url` (default: the post-event hook, with its retries); see WebhookSender."""
        return self.webhooks.deliver(params, url)

    def flush_webhooks(self, timeout: float = WEBHOOK_TIMEOUT_S + 1) -> None:
        """Wait for webhook deliveries started by this process."""
        self.webhooks.flush(timeout)

    def webhook_deliveries(self) -> list[WebhookDelivery]:
        return self.webhooks.deliveries()
