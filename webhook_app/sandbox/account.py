"""A local, faithful fake of the Twilio endpoints this service calls.

One SQLite file holds the whole fake account, so a web server, a CLI and a test can share it:
Conversations v1 (conversations.twilio.com), the Media Content Service (mcs.us1.twilio.com) and Flex token
validation (iam.twilio.com). All three are served by one WSGI app on one host; callers keep Twilio's paths
and swap only the base URL. Answers follow Twilio's wire shapes: the Conversations OpenAPI spec
(twilio/twilio-oai), MCS and IAM as seen in Twilio's docs and in public clients of those APIs.
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import hashlib
import hmac
import json
import logging
import random
import re
import secrets
import sqlite3
import threading
import time
from http import HTTPStatus
from typing import Iterator
from urllib.parse import urlencode

import requests
from flask import Flask, Response, jsonify, request
from twilio.request_validator import RequestValidator
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_options_header

log = logging.getLogger(__name__)

CONVERSATIONS_BASE = "https://conversations.twilio.com"
MCS_BASE = "https://mcs.us1.twilio.com"

# Real MCS accepts far more than any channel delivers (email allows 150 MB); channel limits are the caller's job.
MAX_MEDIA_BYTES = 150 * 1024 * 1024
TEMP_URL_TTL_S = 300  # MCS `content_direct_temporary` links live 300 s
WEBHOOK_TIMEOUT_S = 5.0  # Twilio gives every Conversations webhook 5 s
# Twilio retries a post-event hook (when the service asks for retries) on these answers and on a timeout.
WEBHOOK_RETRY_STATUSES = {429, 503, 504}
WEBHOOK_RETRY_DELAY_S = 0.2  # Twilio does not document its retry schedule; the sandbox keeps tests quick
MEDIA_GC_AFTER_S = 300  # MCS deletes media not attached to a message within 5 minutes
CONVERSATION_STATES = ("initializing", "inactive", "active", "closed")  # the spec's conversation_enum_state
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
MAX_PARTICIPANT_CONVERSATIONS_PAGE_SIZE = 50  # that list's own bound in the spec

CHANNELS = ("whatsapp", "sms", "webchat", "messenger")
# Webhook `Source` per customer channel; SDK is what Twilio sends for Conversations SDK (web chat) users.
SOURCE_BY_CHANNEL = {"whatsapp": "WHATSAPP", "sms": "SMS", "messenger": "MESSENGER", "webchat": "SDK"}
SOURCE_BY_BINDING = {"whatsapp": "WHATSAPP", "sms": "SMS", "messenger": "MESSENGER"}

# Twilio error codes used below. Where no Twilio document pins the code down, the comment says so.
ERR_INVALID_PARAMETER = 20001  # generic 400; Conversations' own code for each case is unconfirmed
ERR_AUTHENTICATE = 20003
ERR_NOT_FOUND = 20404
ERR_METHOD_NOT_ALLOWED = 20004
ERR_UNIQUE_NAME_TAKEN = 50353
ERR_BINDING_EXISTS = 50416
ERR_PARTICIPANT_EXISTS = 50433
ERR_INVALID_MEDIA_SID = 50510
ERR_INVALID_MEDIA_CONTENT_TYPE = 50511
ERR_MEDIA_TOO_LARGE = 50512
ERR_TOKEN_INVALID = 20101  # "Invalid Access Token"
ERR_TOKEN_EXPIRED = 20104  # "Access Token expired or expiration date invalid"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sid TEXT UNIQUE NOT NULL, unique_name TEXT UNIQUE, friendly_name TEXT, attributes TEXT NOT NULL,
    state TEXT NOT NULL, messaging_service_sid TEXT, date_created TEXT NOT NULL, date_updated TEXT NOT NULL,
    next_index INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS participants (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sid TEXT UNIQUE NOT NULL, conversation_sid TEXT NOT NULL, identity TEXT, messaging_binding TEXT,
    attributes TEXT NOT NULL, role_sid TEXT, is_customer INTEGER NOT NULL DEFAULT 0,
    date_created TEXT NOT NULL, date_updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sid TEXT UNIQUE NOT NULL, conversation_sid TEXT NOT NULL, idx INTEGER NOT NULL, author TEXT, body TEXT,
    attributes TEXT NOT NULL, participant_sid TEXT, media TEXT, source TEXT NOT NULL,
    date_created TEXT NOT NULL, date_updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS media (
    sid TEXT PRIMARY KEY, service_sid TEXT NOT NULL, content_type TEXT NOT NULL, filename TEXT,
    size INTEGER NOT NULL, author TEXT NOT NULL, message_sid TEXT, channel_sid TEXT, data BLOB NOT NULL,
    date_created TEXT NOT NULL, date_updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY, identity TEXT NOT NULL, realm_user_id TEXT NOT NULL, roles TEXT NOT NULL,
    worker_sid TEXT NOT NULL, flex_user_sid TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (sid TEXT PRIMARY KEY, secret TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path_regex TEXT NOT NULL, status INTEGER NOT NULL,
    remaining INTEGER NOT NULL, retry_after INTEGER);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, url TEXT NOT NULL, params TEXT NOT NULL, status INTEGER,
    error TEXT, delivered_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS participants_by_conversation ON participants (conversation_sid, seq);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_sid, idx);
"""


class TwilioError(Exception):
    """Answered as Twilio's error JSON: {"code", "message", "more_info", "status"}."""

    def __init__(self, status: int, code: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> Response:
        body = {"code": self.code, "message": self.message,
                "more_info": f"https://www.twilio.com/docs/errors/{self.code}", "status": self.status}
        resp = jsonify(body)
        resp.status_code = self.status
        resp.headers.update(self.headers)
        return resp


def _not_found(path: str) -> TwilioError:
    return TwilioError(404, ERR_NOT_FOUND, f"The requested resource {path} was not found")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _iso(ts: float | None = None) -> str:
    # Conversations renders dates to the second with a literal Z, e.g. "2015-12-16T22:18:37Z".
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if ts is None else ts))


def _iso_ms(ts: float) -> str:
    # IAM's `expiration` carries milliseconds ("2018-09-24T23:22:44.240Z" in the validator's README).
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def _age_s(rest_date: str) -> float:
    return time.time() - calendar.timegm(time.strptime(rest_date, "%Y-%m-%dT%H:%M:%SZ"))


def _garbage_collected(media_row) -> bool:
    return media_row["message_sid"] is None and _age_s(media_row["date_created"]) > MEDIA_GC_AFTER_S


def flex_realm_user_id(identity: str) -> str:
    """Flex escapes a user's name into its chat identity ("alice@example.com" -> "alice_40example_2Ecom"):
    each character outside [A-Za-z0-9] becomes _XX in hex. The token's realm_user_id keeps the name as it was."""
    return re.sub(r"_([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), identity)


def _check_state(state: str) -> None:
    if state not in CONVERSATION_STATES:
        raise TwilioError(400, ERR_INVALID_PARAMETER, f"Invalid State: {state}")


def _media_item(media_row) -> dict:
    """A message's media entry as REST renders it (webhooks rename the keys; see _webhook_params)."""
    return {"sid": media_row["sid"], "content_type": media_row["content_type"], "filename": media_row["filename"],
            "size": media_row["size"], "category": "media"}


def _webhook_date(rest_date: str) -> str:
    # Webhooks carry milliseconds ("...T09:14:07.000Z") where REST resources stop at the second.
    return re.sub(r"(T\d\d:\d\d:\d\d)Z$", r"\1.000Z", rest_date)


def _binding_type(address: str) -> str:
    prefix = address.split(":", 1)[0].lower() if ":" in address else ""
    return prefix if prefix in ("whatsapp", "messenger", "rcs") else "sms"


class Sandbox:
    """The fake account. Every public method and every HTTP request opens its own SQLite connection."""

    def __init__(self, db_path: str):
        self.db_path = db_path
        self._webhook_threads: list[threading.Thread] = []
        for attempt in range(50):
            try:
                with self._connect() as conn:
                    # WAL lets readers and one writer from several processes overlap; the mode sticks to the file.
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.executescript(_SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                # Switching a brand-new file to WAL while another process creates it does not wait on the busy
                # timeout: SQLite answers "database is locked" at once. Try again shortly.
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.05 + random.random() * 0.05)
        with self._tx() as conn:
            # INSERT OR IGNORE inside one write transaction: two processes creating the file at once agree.
            defaults = {
                "account_sid": _sid("AC"),
                "auth_token": secrets.token_hex(16),
                "chat_service_sid": _sid("IS"),
                "messaging_service_sid": _sid("MG"),
                "default_chat_role_sid": _sid("RL"),
                "flex_instance_sid": _sid("GO"),
            }
            conn.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", defaults.items())
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        self.account_sid: str = meta["account_sid"]
        self.auth_token: str = meta["auth_token"]
        self.chat_service_sid: str = meta["chat_service_sid"]
        self.messaging_service_sid: str = meta["messaging_service_sid"]
        self._default_chat_role_sid = meta["default_chat_role_sid"]
        self._flex_instance_sid = meta["flex_instance_sid"]

    # -- storage ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # Autocommit mode; writes take BEGIN IMMEDIATE themselves (see _tx) so the busy timeout applies up front.
        conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _meta(self, key: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else None

    # -- resources as Twilio renders them ---------------------------------------------------------------
    def _conversation_path(self, sid: str, scoped: bool) -> str:
        prefix = f"/v1/Services/{self.chat_service_sid}" if scoped else "/v1"
        return f"{prefix}/Conversations/{sid}"

    def _render_conversation(self, row: sqlite3.Row, scoped: bool = False) -> dict:
        url = CONVERSATIONS_BASE + self._conversation_path(row["sid"], scoped)
        return {
            "sid": row["sid"],
            "account_sid": self.account_sid,
            "chat_service_sid": self.chat_service_sid,
            "messaging_service_sid": row["messaging_service_sid"],
            "friendly_name": row["friendly_name"],
            "unique_name": row["unique_name"],
            "attributes": row["attributes"],
            "date_created": row["date_created"],
            "date_updated": row["date_updated"],
            "state": row["state"],
            "timers": {},
            "bindings": {},
            "url": url,
            "links": {
                "participants": f"{url}/Participants",
                "messages": f"{url}/Messages",
                "webhooks": f"{url}/Webhooks",
                "export": f"{url}/Export",
            },
        }

    def _render_participant(self, row: sqlite3.Row, scoped: bool = False) -> dict:
        resource = {
            "account_sid": self.account_sid,
            "conversation_sid": row["conversation_sid"],
            "sid": row["sid"],
            "identity": row["identity"],
            "attributes": row["attributes"],
            "messaging_binding": json.loads(row["messaging_binding"]) if row["messaging_binding"] else None,
            "role_sid": row["role_sid"],
            "date_created": row["date_created"],
            "date_updated": row["date_updated"],
            "url": (CONVERSATIONS_BASE + self._conversation_path(row["conversation_sid"], scoped)
                    + f"/Participants/{row['sid']}"),
            "last_read_message_index": None,
            "last_read_timestamp": None,
        }
        if scoped:  # only the service-scoped schema carries chat_service_sid
            resource["chat_service_sid"] = self.chat_service_sid
        return resource

    def _render_participant_conversation(self, row: sqlite3.Row, scoped: bool = False) -> dict:
        """One of a participant's conversations (`row`: a conversation with its participant_* columns)."""
        conversation_url = CONVERSATIONS_BASE + self._conversation_path(row["sid"], scoped)
        identity = row["participant_identity"]
        binding = row["participant_messaging_binding"]
        return {
            "account_sid": self.account_sid,
            "chat_service_sid": self.chat_service_sid,
            "participant_sid": row["participant_sid"],
            # Twilio makes a Conversation User for each chat identity; the sandbox has no Users, so one stable
            # made-up SID per identity stands in for it.
            "participant_user_sid": "US" + hashlib.sha256(f"{self.account_sid}:{identity}".encode()).hexdigest()[:32]
            if identity else None,
            "participant_identity": identity,
            "participant_messaging_binding": json.loads(binding) if binding else None,
            "conversation_sid": row["sid"],
            "conversation_unique_name": row["unique_name"],
            "conversation_friendly_name": row["friendly_name"],
            "conversation_attributes": row["attributes"],
            "conversation_date_created": row["date_created"],
            "conversation_date_updated": row["date_updated"],
            "conversation_created_by": None,  # the sandbox does not record who made a conversation
            "conversation_state": row["state"],
            "conversation_timers": {},
            "links": {
                "participant": f"{conversation_url}/Participants/{row['participant_sid']}",
                "conversation": conversation_url,
            },
        }

    def _render_message(self, row: sqlite3.Row, delivery: dict | None, scoped: bool = False) -> dict:
        url = (CONVERSATIONS_BASE + self._conversation_path(row["conversation_sid"], scoped)
               + f"/Messages/{row['sid']}")
        resource = {
            "sid": row["sid"],
            "account_sid": self.account_sid,
            "conversation_sid": row["conversation_sid"],
            "body": row["body"],
            "media": json.loads(row["media"]) if row["media"] else None,
            "author": row["author"],
            "participant_sid": row["participant_sid"],
            "attributes": row["attributes"],
            "date_created": row["date_created"],
            "date_updated": row["date_updated"],
            "index": row["idx"],
            "delivery": delivery,
            "content_sid": None,
            "url": url,
            "links": {"delivery_receipts": f"{url}/Receipts", "channel_metadata": f"{url}/ChannelMetadata"},
        }
        if scoped:
            resource["chat_service_sid"] = self.chat_service_sid
        return resource

    def _render_media(self, row: sqlite3.Row, host_url: str | None = None) -> dict:
        path = f"/v1/Services/{row['service_sid']}/Media/{row['sid']}"
        links = {"content": f"{path}/Content"}
        if host_url:
            # Real MCS hands out a pre-signed CDN link; ours points back at this host's /Content with a signed
            # expiring query, so whoever reached us through their own base URL can fetch it without auth.
            expires = int(time.time()) + TEMP_URL_TTL_S
            sig = self._temp_signature(row["sid"], expires)
            links["content_direct_temporary"] = (
                f"{host_url.rstrip('/')}{path}/Content?Expires={expires}&Signature={sig}")
        else:
            links["content_direct_temporary"] = None
        # MCS, unlike Conversations, answers relative `url`/`links.content` (seen in real responses).
        return {
            "sid": row["sid"],
            "account_sid": self.account_sid,
            "service_sid": row["service_sid"],
            "date_created": row["date_created"],
            "date_upload_updated": row["date_created"],
            "date_updated": row["date_updated"],
            "links": links,
            "size": row["size"],
            "content_type": row["content_type"],
            "filename": row["filename"],
            "author": row["author"],
            "category": "media",
            "message_sid": row["message_sid"],
            "channel_sid": row["channel_sid"],
            "url": path,
            "is_multipart_upstream": False,
        }

    def _temp_signature(self, media_sid: str, expires: int) -> str:
        mac = hmac.new(self.auth_token.encode(), f"{media_sid}:{expires}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")

    def _delivery(self, conn: sqlite3.Connection, conversation_sid: str) -> dict | None:
        # Twilio summarizes delivery to non-chat participants only; chat-only conversations get null.
        total = conn.execute(
            "SELECT COUNT(*) FROM participants WHERE conversation_sid = ? AND messaging_binding IS NOT NULL",
            (conversation_sid,)).fetchone()[0]
        if not total:
            return None
        return {"total": total, "sent": "all", "delivered": "all", "read": "none", "failed": "none",
                "undelivered": "none"}

    # -- core operations (shared by HTTP routes and Python helpers) -------------------------------------
    def _get_conversation(self, conn: sqlite3.Connection, sid_or_unique_name: str) -> sqlite3.Row | None:
        # Twilio lets a conversation's unique_name stand in for its sid in the URL.
        return conn.execute("SELECT * FROM conversations WHERE sid = ? OR unique_name = ?",
                            (sid_or_unique_name, sid_or_unique_name)).fetchone()

    def _insert_conversation(self, conn, *, friendly_name=None, unique_name=None, attributes=None,
                             state=None, messaging_service_sid=None, date_created=None) -> sqlite3.Row:
        if state is not None:
            _check_state(state)
        if unique_name and conn.execute("SELECT 1 FROM conversations WHERE unique_name = ?",
                                        (unique_name,)).fetchone():
            raise TwilioError(409, ERR_UNIQUE_NAME_TAKEN,
                              f"Conversation with provided unique name already exists: {unique_name}")
        now = _iso()
        sid = _sid("CH")
        conn.execute(
            "INSERT INTO conversations (sid, unique_name, friendly_name, attributes, state, messaging_service_sid,"
            " date_created, date_updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (sid, unique_name or None, friendly_name, attributes or "{}", state or "active",
             messaging_service_sid or self.messaging_service_sid, date_created or now, date_created or now))
        return conn.execute("SELECT * FROM conversations WHERE sid = ?", (sid,)).fetchone()

    def _insert_participant(self, conn, conversation_sid: str, *, identity=None, binding=None,
                            attributes=None, is_customer=False) -> sqlite3.Row:
        if not identity and not binding:
            raise TwilioError(400, ERR_INVALID_PARAMETER,
                              "Either Identity or MessagingBinding.Address must be provided")
        if identity and conn.execute("SELECT 1 FROM participants WHERE conversation_sid = ? AND identity = ?",
                                     (conversation_sid, identity)).fetchone():
            raise TwilioError(409, ERR_PARTICIPANT_EXISTS, "Participant already exists")
        if binding:
            for (existing,) in conn.execute("SELECT messaging_binding FROM participants WHERE conversation_sid = ?"
                                            " AND messaging_binding IS NOT NULL", (conversation_sid,)):
                if json.loads(existing).get("address") == binding.get("address"):
                    raise TwilioError(409, ERR_BINDING_EXISTS,
                                      "A binding for this participant and proxy address already exists"
                                      f" in Conversation {conversation_sid}")
        now = _iso()
        sid = _sid("MB")
        # Chat (SDK) participants get the service's default conversation role; SMS-like ones show none.
        role_sid = None if binding else self._default_chat_role_sid
        conn.execute(
            "INSERT INTO participants (sid, conversation_sid, identity, messaging_binding, attributes, role_sid,"
            " is_customer, date_created, date_updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (sid, conversation_sid, identity or None, json.dumps(binding) if binding else None,
             attributes or "{}", role_sid, int(is_customer), now, now))
        return conn.execute("SELECT * FROM participants WHERE sid = ?", (sid,)).fetchone()

    def _insert_message(self, conn, conversation_sid: str, *, author=None, body=None, attributes=None,
                        media_sid=None, source="API", date_created=None) -> sqlite3.Row:
        author = author or "system"  # Twilio's default author
        media = None
        if media_sid:
            media_row = conn.execute("SELECT * FROM media WHERE sid = ? AND service_sid = ?",
                                     (media_sid, self.chat_service_sid)).fetchone()
            if media_row is None or _garbage_collected(media_row):
                raise TwilioError(400, ERR_INVALID_MEDIA_SID, f"Invalid media SID: {media_sid}")
            media = [_media_item(media_row)]
        if body is None and media is None:
            raise TwilioError(400, ERR_INVALID_PARAMETER, "A message needs a Body or a MediaSid")
        participant_sid = None
        for row in conn.execute("SELECT sid, identity, messaging_binding FROM participants"
                                " WHERE conversation_sid = ? ORDER BY seq", (conversation_sid,)):
            address = json.loads(row["messaging_binding"]).get("address") if row["messaging_binding"] else None
            if author in (row["identity"], address):
                participant_sid = row["sid"]
                break
        index = conn.execute("SELECT next_index FROM conversations WHERE sid = ?", (conversation_sid,)).fetchone()[0]
        now = _iso()
        sid = _sid("IM")
        conn.execute("UPDATE conversations SET next_index = next_index + 1 WHERE sid = ?", (conversation_sid,))
        conn.execute(
            "INSERT INTO messages (sid, conversation_sid, idx, author, body, attributes, participant_sid, media,"
            " source, date_created, date_updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (sid, conversation_sid, index, author, body, attributes or "{}", participant_sid,
             json.dumps(media) if media else None, source, date_created or now, date_created or now))
        if media_sid:
            # Attaching is what saves MCS media from its 5-minute garbage collection; record where it went.
            conn.execute("UPDATE media SET message_sid = ?, channel_sid = ?, date_updated = ? WHERE sid = ?",
                         (sid, conversation_sid, now, media_sid))
        return conn.execute("SELECT * FROM messages WHERE sid = ?", (sid,)).fetchone()

    def _insert_media(self, conn, data: bytes, content_type: str, filename: str | None,
                      author: str = "system") -> sqlite3.Row:
        now = _iso()
        sid = _sid("ME")
        conn.execute(
            "INSERT INTO media (sid, service_sid, content_type, filename, size, author, data, date_created,"
            " date_updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (sid, self.chat_service_sid, content_type, filename, len(data), author, sqlite3.Binary(data), now, now))
        return conn.execute("SELECT * FROM media WHERE sid = ?", (sid,)).fetchone()

    def _webhook_params(self, conn, message: sqlite3.Row | dict) -> dict[str, str]:
        """onMessageAdded exactly as Twilio posts it: every value a string, absent values left out."""
        source = message["source"]
        params = {
            "AccountSid": self.account_sid,
            "EventType": "onMessageAdded",
            "Source": source,
            "ConversationSid": message["conversation_sid"],
            "MessageSid": message["sid"],
            "ChatServiceSid": self.chat_service_sid,
            "Index": str(message["idx"]),
            "DateCreated": _webhook_date(message["date_created"]),
            "Author": message["author"],
            "Attributes": message["attributes"],
            "RetryCount": "0",
        }
        if source != "SDK":
            # The conversation's own messaging service (one created over REST may name another).
            params["MessagingServiceSid"] = conn.execute(
                "SELECT messaging_service_sid FROM conversations WHERE sid = ?",
                (message["conversation_sid"],)).fetchone()[0] or self.messaging_service_sid
        else:
            params["ClientIdentity"] = message["author"]
        if message["participant_sid"]:
            params["ParticipantSid"] = message["participant_sid"]
        # Form encoding has no null: Twilio leaves out Body for a media-only message.
        if message["body"] is not None:
            params["Body"] = message["body"]
        if message["media"]:
            # Webhooks spell media keys in PascalCase, unlike REST's snake_case.
            items = json.loads(message["media"])
            if source == "SDK":
                # Twilio quirk (support article 50592895951387): an SDK message with several attachments
                # shows only one of them in the webhook; REST shows them all.
                items = items[:1]
            params["Media"] = json.dumps([
                {"Sid": m["sid"], "ContentType": m["content_type"], "Filename": m["filename"],
                 "Size": m["size"], "Category": m.get("category", "media")}
                for m in items])
        return params

    # -- Python helpers for demos and tests --------------------------------------------------------------
    def create_conversation(self, friendly_name: str, channel: str, customer_address: str | None = None) -> dict:
        """A conversation plus its customer participant, as an inbound contact on `channel` would create it."""
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}, not {channel!r}")
        digits = "".join(secrets.choice("0123456789") for _ in range(7))
        identity, binding = None, None
        if channel == "whatsapp":
            address = customer_address or f"whatsapp:+1555{digits}"
            if not address.startswith("whatsapp:"):
                address = f"whatsapp:{address}"
            binding = {"type": "whatsapp", "address": address, "proxy_address": "whatsapp:+14155238886"}
        elif channel == "sms":
            binding = {"type": "sms", "address": customer_address or f"+1555{digits}",
                       "proxy_address": "+14155550100"}
        elif channel == "messenger":
            address = customer_address or f"messenger:{secrets.randbelow(10**15) + 10**15}"
            binding = {"type": "messenger", "address": address, "proxy_address": "messenger:104522238812345"}
        else:
            identity = customer_address or f"webchat-guest-{secrets.token_hex(4)}"
        with self._tx() as conn:
            conversation = self._insert_conversation(conn, friendly_name=friendly_name)
            self._insert_participant(conn, conversation["sid"], identity=identity, binding=binding,
                                     is_customer=True)
        return self._render_conversation(conversation)

    def add_participant(self, conversation_sid: str, *, identity: str | None = None,
                        messaging_binding: dict | None = None, attributes: str = "{}") -> dict:
        """`messaging_binding`: {"address", "proxy_address"} (type is inferred from the address if absent)."""
        binding = None
        if messaging_binding:
            binding = {"type": messaging_binding.get("type") or _binding_type(messaging_binding["address"]),
                       "address": messaging_binding["address"],
                       "proxy_address": messaging_binding.get("proxy_address")}
        with self._tx() as conn:
            if self._get_conversation(conn, conversation_sid) is None:
                raise KeyError(conversation_sid)
            row = self._insert_participant(conn, conversation_sid, identity=identity, binding=binding,
                                           attributes=attributes)
        return self._render_participant(row)

    def customer_sends_media(self, conversation_sid: str, data: bytes, content_type: str, filename: str,
                             body: str | None = None, deliver: bool = False) -> dict[str, str]:
        """The customer sends a file (a voice note, say): MCS media + message; returns onMessageAdded params.

        With `deliver=True` the params are also posted, signed, to the configured post-event webhook.
        """
        with self._tx() as conn:
            conversation = self._get_conversation(conn, conversation_sid)
            if conversation is None:
                raise KeyError(conversation_sid)
            customer = self._customer(conn, conversation["sid"])
            if customer["messaging_binding"]:
                binding = json.loads(customer["messaging_binding"])
                author, source = binding["address"], SOURCE_BY_BINDING.get(binding["type"], "SMS")
            else:
                author, source = customer["identity"], "SDK"
            media = self._insert_media(conn, data, content_type, filename, author=author)
            message = self._insert_message(conn, conversation["sid"], author=author, body=body,
                                           media_sid=media["sid"], source=source)
            params = self._webhook_params(conn, message)
        if deliver:
            self.deliver_webhook(params)
        return params

    def agent_sends_media(self, conversation_sid: str, identity: str, data: bytes, content_type: str,
                          filename: str, body: str | None = None, deliver: bool = True) -> dict:
        """An agent sends a file from the Conversations SDK (Flex's own attach button), as Twilio handles it.

        The media goes to MCS first. With a pre-event hook configured, Twilio then posts `onMessageAdd` (the
        post-event fields minus MessageSid and Index): a 4xx/5xx answer rejects the message (nothing is
        published, and the media is left to MCS's garbage collection); a 200 with a JSON object may change
        `body`, `author` and `attributes`; no answer in time publishes it unchanged. Returns {"published",
        "pre_status", "message_sid", "params"} (`params`: the onMessageAdded that followed, or None).
        """
        with self._tx() as conn:
            conversation = self._get_conversation(conn, conversation_sid)
            if conversation is None:
                raise KeyError(conversation_sid)
            participant = conn.execute("SELECT sid FROM participants WHERE conversation_sid = ? AND identity = ?",
                                       (conversation["sid"], identity)).fetchone()
            if participant is None:
                raise LookupError(f"{identity} is not a participant of {conversation_sid}")
            media = self._insert_media(conn, data, content_type, filename, author=identity)
        message = {"author": identity, "body": body, "attributes": "{}"}
        pre_url, pre_status = self._meta("pre_webhook_url"), None
        if pre_url:
            # The message as it would be, minus what it does not have yet.
            draft = {"source": "SDK", "conversation_sid": conversation["sid"], "sid": None, "idx": None,
                     "date_created": _iso(), "author": identity, "attributes": "{}", "body": body,
                     "participant_sid": participant["sid"], "media": json.dumps([_media_item(media)])}
            with self._connect() as conn:
                pre_params = self._webhook_params(conn, draft)
            del pre_params["MessageSid"], pre_params["Index"]
            pre_params["EventType"] = "onMessageAdd"
            pre_status, answer, _ = self._post_signed(pre_url, pre_params)
            if pre_status is not None and pre_status >= 400:
                return {"published": False, "pre_status": pre_status, "message_sid": None, "params": None}
            message.update(self._pre_event_changes(answer) if pre_status == 200 else {})
        with self._tx() as conn:
            row = self._insert_message(conn, conversation["sid"], author=message["author"], body=message["body"],
                                       attributes=message["attributes"], media_sid=media["sid"], source="SDK")
            params = self._webhook_params(conn, row)
        if deliver:
            self.deliver_webhook(params)
        return {"published": True, "pre_status": pre_status, "message_sid": row["sid"], "params": params}

    @staticmethod
    def _pre_event_changes(answer: str) -> dict:
        try:
            changes = json.loads(answer) if answer.strip() else {}
        except ValueError:
            return {}
        if not isinstance(changes, dict):
            return {}
        return {key: (json.dumps(value) if key == "attributes" and not isinstance(value, str) else value)
                for key, value in changes.items() if key in ("body", "author", "attributes")}

    def _customer(self, conn, conversation_sid: str) -> sqlite3.Row:
        # Conversations made over REST have no marked customer: the first messaging-binding participant is.
        row = conn.execute(
            "SELECT * FROM participants WHERE conversation_sid = ?"
            " ORDER BY is_customer DESC, messaging_binding IS NULL, seq LIMIT 1", (conversation_sid,)).fetchone()
        if row is None:
            raise LookupError(f"conversation {conversation_sid} has no participant to act as the customer")
        return row

    def attach_media(self, conversation_sid: str, message_sid: str, media_sid: str) -> None:
        """Add one more attachment to a message, as the Conversations SDK can send several in one message."""
        with self._tx() as conn:
            message = conn.execute("SELECT media FROM messages WHERE sid = ? AND conversation_sid = ?",
                                   (message_sid, conversation_sid)).fetchone()
            media_row = conn.execute("SELECT * FROM media WHERE sid = ?", (media_sid,)).fetchone()
            if message is None or media_row is None:
                raise KeyError(message_sid if message is None else media_sid)
            items = json.loads(message["media"]) if message["media"] else []
            items.append(_media_item(media_row))
            conn.execute("UPDATE messages SET media = ? WHERE sid = ?", (json.dumps(items), message_sid))

    def webhook_params_for(self, conversation_sid: str, message_sid: str) -> dict[str, str]:
        with self._connect() as conn:
            message = conn.execute("SELECT * FROM messages WHERE sid = ? AND conversation_sid = ?",
                                   (message_sid, conversation_sid)).fetchone()
            if message is None:
                raise KeyError(message_sid)
            return self._webhook_params(conn, message)

    def sign(self, url: str, params: dict) -> str:
        """X-Twilio-Signature for a form-encoded POST of `params` to `url`, as Twilio computes it."""
        return RequestValidator(self.auth_token).compute_signature(url, params)

    def create_api_key(self) -> tuple[str, str]:
        """A standard API key (SID, secret) for REST calls, as the Console makes one. Its secret signs nothing:
        webhooks stay signed with the account's auth token."""
        sid, secret = _sid("SK"), secrets.token_urlsafe(24)
        with self._tx() as conn:
            conn.execute("INSERT INTO api_keys (sid, secret) VALUES (?, ?)", (sid, secret))
        return sid, secret

    def issue_token(self, identity: str, roles=("agent",), ttl_s: int = 3600,
                    realm_user_id: str | None = None) -> str:
        """An opaque Flex-like token (JWE-shaped: five base64url parts), valid for `ttl_s` (negative = expired)."""
        token = ".".join(base64.urlsafe_b64encode(secrets.token_bytes(n)).decode().rstrip("=")
                         for n in (48, 0, 12, 96, 16))
        with self._tx() as conn:
            # A Flex user keeps one TaskRouter worker across logins.
            known = conn.execute("SELECT worker_sid, flex_user_sid FROM tokens WHERE identity = ? LIMIT 1",
                                 (identity,)).fetchone()
            worker_sid, flex_user_sid = (known["worker_sid"], known["flex_user_sid"]) if known else (
                _sid("WK"), _sid("FU"))
            conn.execute(
                "INSERT INTO tokens (token, identity, realm_user_id, roles, worker_sid, flex_user_sid, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token, identity, realm_user_id or flex_realm_user_id(identity), json.dumps(list(roles)), worker_sid,
                 flex_user_sid, time.time() + ttl_s))
        return token

    def validate_token(self, token: str) -> dict:
        """The IAM Tokens/validate answer for `token` (always HTTP 200; `valid` says the verdict)."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM tokens WHERE token = ?", (token,)).fetchone()
        # Keys are always present; failures null them out (the shape public validator clients parse).
        result = {"valid": False, "code": ERR_TOKEN_INVALID, "message": "Invalid Access Token", "expiration": None,
                  "realm_user_id": None, "identity": None, "roles": None, "worker_sid": None,
                  "flex_instance_sid": None, "flex_user_sid": None}
        if row is None:
            return result
        if row["expires_at"] <= time.time():
            result.update(code=ERR_TOKEN_EXPIRED, message="Access Token expired or expiration date invalid")
            return result
        # Success carries code 0, not null (twilio-flex-token-validator's README).
        return {"valid": True, "code": 0, "message": None, "expiration": _iso_ms(row["expires_at"]),
                "realm_user_id": row["realm_user_id"], "identity": row["identity"],
                "roles": json.loads(row["roles"]), "worker_sid": row["worker_sid"],
                "flex_instance_sid": self._flex_instance_sid, "flex_user_sid": row["flex_user_sid"]}

    def media_bytes(self, media_sid: str) -> bytes:
        with self._connect() as conn:
            row = conn.execute("SELECT data FROM media WHERE sid = ?", (media_sid,)).fetchone()
        if row is None:
            raise KeyError(media_sid)
        return bytes(row["data"])

    def media_info(self, media_sid: str) -> dict:
        """The MCS JSON for `media_sid` (without a temporary link: that needs a request's host)."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM media WHERE sid = ?", (media_sid,)).fetchone()
        if row is None:
            raise KeyError(media_sid)
        return self._render_media(row)

    def list_messages(self, conversation_sid: str) -> list[dict]:
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM messages WHERE conversation_sid = ? ORDER BY idx",
                                (conversation_sid,)).fetchall()
            delivery = self._delivery(conn, conversation_sid)
        return [self._render_message(row, delivery) for row in rows]

    def list_participants(self, conversation_sid: str) -> list[dict]:
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM participants WHERE conversation_sid = ? ORDER BY seq",
                                (conversation_sid,)).fetchall()
        return [self._render_participant(row) for row in rows]

    # -- fault injection ---------------------------------------------------------------------------------
    def fail_next(self, path_regex: str, status: int, count: int = 1, retry_after: int | None = None) -> None:
        """The next `count` requests whose path matches `path_regex` (re.search) answer `status`."""
        re.compile(path_regex)  # fail here, not inside a request
        with self._tx() as conn:
            conn.execute("INSERT INTO faults (path_regex, status, remaining, retry_after) VALUES (?, ?, ?, ?)",
                         (path_regex, status, count, retry_after))

    def stall_next(self, path_regex: str, seconds: float, count: int = 1) -> None:
        """The next `count` matching requests hang for `seconds` before being answered normally (a slow MCS,
        so a test can kill a worker mid-download). Stored as a fault with status 0."""
        re.compile(path_regex)
        with self._tx() as conn:
            conn.execute("INSERT INTO faults (path_regex, status, remaining, retry_after) VALUES (?, 0, ?, ?)",
                         (path_regex, count, seconds))

    def pending_faults(self) -> int:
        """How many injected faults (failures or stalls) are still waiting for a request."""
        with self._connect() as conn:
            return conn.execute("SELECT COALESCE(SUM(remaining), 0) FROM faults").fetchone()[0]

    def _take_fault(self, path: str) -> TwilioError | None:
        with self._connect() as conn:
            if conn.execute("SELECT 1 FROM faults LIMIT 1").fetchone() is None:
                return None  # the common case needs no write lock
        with self._tx() as conn:
            for fault in conn.execute("SELECT * FROM faults WHERE remaining > 0 ORDER BY id").fetchall():
                if re.search(fault["path_regex"], path):
                    conn.execute("UPDATE faults SET remaining = remaining - 1 WHERE id = ?", (fault["id"],))
                    conn.execute("DELETE FROM faults WHERE remaining <= 0")
                    status = fault["status"]
                    if status == 0:
                        stall_s = float(fault["retry_after"] or 0)
                        break
                    headers = {"Retry-After": str(fault["retry_after"])} if fault["retry_after"] is not None else {}
                    # Twilio's HTTP-level errors use 20000 + status (20429 Too Many Requests, 20503, ...).
                    return TwilioError(status, 20000 + status, _reason(status), headers)
            else:
                return None
        time.sleep(stall_s)  # outside the transaction: other processes keep using the sandbox
        return None

    # -- webhooks ----------------------------------------------------------------------------------------
    def set_webhook(self, post_url: str | None, pre_url: str | None = None, post_retry_count: int = 0) -> None:
        """Service-level webhook URLs. The pre-event hook is called for agent sends (`agent_sends_media`);
        `post_retry_count` is the service's post_webhook_retry_count (Twilio's default: no retries)."""
        with self._tx() as conn:
            for key, value in (("post_webhook_url", post_url), ("pre_webhook_url", pre_url),
                               ("post_webhook_retry_count", str(post_retry_count) if post_retry_count else None)):
                conn.execute("DELETE FROM meta WHERE key = ?", (key,))
                if value:
                    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))

    @property
    def webhook_urls(self) -> dict[str, str | None]:
        return {"post_url": self._meta("post_webhook_url"), "pre_url": self._meta("pre_webhook_url")}

    def deliver_webhook(self, params: dict[str, str], url: str | None = None) -> int | None:
        """POST `params` signed and form-encoded to `url` (default: the post-event hook). Returns the last status.

        Never raises: like Twilio, a failed delivery is logged (and recorded) and then forgotten, after the
        retries the service asked for (post-event hook only): on a timeout, 429, 503 or 504, each retry with
        RetryCount one higher and signed again.
        """
        retries = 0
        if url is None:
            url = self._meta("post_webhook_url")
            retries = int(self._meta("post_webhook_retry_count") or 0)
        if not url:
            return None
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(WEBHOOK_RETRY_DELAY_S)
                params = {**params, "RetryCount": str(attempt)}
            status, _, timed_out = self._post_signed(url, params)
            if not (status in WEBHOOK_RETRY_STATUSES or timed_out):
                break
        return status

    def _post_signed(self, url: str, params: dict[str, str]) -> tuple[int | None, str, bool]:
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
        try:
            with self._tx() as conn:
                conn.execute("INSERT INTO webhook_deliveries (url, params, status, error, delivered_at)"
                             " VALUES (?, ?, ?, ?, ?)", (url, json.dumps(params), status, error, _iso()))
        except sqlite3.Error:
            log.exception("sandbox could not record a webhook delivery")
        return status, body, timed_out

    def _deliver_in_background(self, params: dict[str, str]) -> None:
        # Twilio fires post-event hooks after answering the REST call; a thread keeps a single-threaded
        # dev server that posts to itself from deadlocking.
        thread = threading.Thread(target=self.deliver_webhook, args=(params,), daemon=True,
                                  name="sandbox-webhook")
        self._webhook_threads = [t for t in self._webhook_threads if t.is_alive()] + [thread]
        thread.start()

    def flush_webhooks(self, timeout: float = WEBHOOK_TIMEOUT_S + 1) -> None:
        """Wait for webhook deliveries started by this process."""
        for thread in list(self._webhook_threads):
            thread.join(timeout)

    def webhook_deliveries(self) -> list[dict]:
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM webhook_deliveries ORDER BY id").fetchall()
        return [{"url": r["url"], "params": json.loads(r["params"]), "status": r["status"], "error": r["error"]}
                for r in rows]

    # -- HTTP ----------------------------------------------------------------------------------------------
    def wsgi_app(self) -> Flask:
        app = Flask(__name__)
        app.url_map.strict_slashes = False
        app.json.sort_keys = False  # keep Twilio's field order on the wire

        @app.errorhandler(TwilioError)
        def _twilio_error(exc: TwilioError):
            return exc.response()

        @app.errorhandler(HTTPException)
        def _http_error(exc: HTTPException):
            if exc.code == 404:
                return _not_found(request.path).response()
            if exc.code == 405:
                return TwilioError(405, ERR_METHOD_NOT_ALLOWED, "Method not allowed").response()
            return TwilioError(exc.code or 500, 20000 + (exc.code or 500), exc.description or exc.name).response()

        @app.before_request
        def _faults_then_auth():
            fault = self._take_fault(request.path)
            if fault is not None:
                raise fault
            if request.endpoint == "media_content" and self._temp_link_valid():
                if "Authorization" in request.headers:
                    # The real link is pre-signed object storage, which refuses a request that also carries
                    # basic auth ("Only one auth mechanism allowed"): downloads must send none.
                    return Response("<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed;"
                                    " only the X-Amz-Algorithm query parameter, Signature query string parameter"
                                    " or the Authorization header should be specified</Message></Error>",
                                    status=400, mimetype="application/xml")
                return None
            if not self._authorized(request.authorization, api_key_allowed=request.endpoint != "validate_token"):
                raise TwilioError(401, ERR_AUTHENTICATE, "Authenticate",
                                  {"WWW-Authenticate": 'Basic realm="Twilio API"'})
            return None

        self._add_conversation_routes(app)
        self._add_mcs_routes(app)
        self._add_iam_routes(app)
        return app

    def _authorized(self, auth, api_key_allowed: bool) -> bool:
        """HTTP basic auth with the account's SID and auth token, or (REST, not IAM: Twilio documents IAM's token
        validation with the account's credentials only) an API key's SID and secret."""
        if auth is None or auth.type != "basic":
            return False
        username, password = auth.username or "", auth.password or ""
        if hmac.compare_digest(username, self.account_sid):
            return hmac.compare_digest(password, self.auth_token)
        if not api_key_allowed or not username.startswith("SK"):
            return False
        with self._connect() as conn:
            row = conn.execute("SELECT secret FROM api_keys WHERE sid = ?", (username,)).fetchone()
        return row is not None and hmac.compare_digest(password, row["secret"])

    def _temp_link_valid(self) -> bool:
        media_sid = (request.view_args or {}).get("media_sid", "")
        expires, signature = request.args.get("Expires", ""), request.args.get("Signature", "")
        if not expires.isdigit() or not signature or int(expires) < time.time():
            return False
        return hmac.compare_digest(signature, self._temp_signature(media_sid, int(expires)))

    def _check_service(self, chat_service_sid: str | None) -> None:
        if chat_service_sid is not None and chat_service_sid != self.chat_service_sid:
            raise _not_found(request.path)

    def _conversation_or_404(self, conn, sid: str) -> sqlite3.Row:
        row = self._get_conversation(conn, sid)
        if row is None:
            raise _not_found(request.path)
        return row

    def _page(self, key: str, rows: list, render, path: str, extra_query: str = "",
              max_page_size: int = MAX_PAGE_SIZE) -> dict:
        """Twilio's list envelope. PageToken ("PT" + offset here) wins over Page, as in the real API."""
        try:
            page_size = int(request.args.get("PageSize", DEFAULT_PAGE_SIZE))
            page = int(request.args.get("Page", 0))
        except ValueError:
            page_size = page = -1
        # The spec's bounds (PageSize 1-100, Page >= 0): out of them is a bad request, not a quietly different page,
        # so a client asking for more than Twilio serves finds out here rather than in production.
        if not (1 <= page_size <= max_page_size and page >= 0):
            raise TwilioError(400, ERR_INVALID_PARAMETER, f"Invalid PageSize or Page (PageSize 1-{max_page_size})")
        token = request.args.get("PageToken", "")
        offset = int(token[2:]) if re.fullmatch(r"PT\d+", token) else page * page_size
        base = f"{CONVERSATIONS_BASE}{path}?{extra_query}PageSize={page_size}"

        def page_url(number: int, start: int | None) -> str:
            return f"{base}&Page={number}" + (f"&PageToken=PT{start}" if start is not None else "")

        has_next = offset + page_size < len(rows)
        return {
            key: [render(row) for row in rows[offset:offset + page_size]],
            "meta": {
                "page": page,
                "page_size": page_size,
                "first_page_url": page_url(0, None),
                "previous_page_url": page_url(page - 1, max(offset - page_size, 0)) if page > 0 else None,
                "url": page_url(page, None if page == 0 and not token else offset),
                "next_page_url": page_url(page + 1, offset + page_size) if has_next else None,
                "key": key,
            },
        }

    def _add_conversation_routes(self, app: Flask) -> None:
        def created(resource: dict):
            return jsonify(resource), 201

        def conversations(chat_service_sid=None):
            self._check_service(chat_service_sid)
            scoped = chat_service_sid is not None
            if request.method == "POST":
                f = request.form
                with self._tx() as conn:
                    row = self._insert_conversation(
                        conn, friendly_name=f.get("FriendlyName"), unique_name=f.get("UniqueName"),
                        attributes=f.get("Attributes"), state=f.get("State"),
                        messaging_service_sid=f.get("MessagingServiceSid"), date_created=f.get("DateCreated"))
                return created(self._render_conversation(row, scoped))
            with self._connect() as conn:
                rows = conn.execute("SELECT * FROM conversations ORDER BY seq").fetchall()
            state = request.args.get("State")
            if state:
                _check_state(state)
                rows = [r for r in rows if r["state"] == state]
            path = f"/v1/Services/{self.chat_service_sid}/Conversations" if scoped else "/v1/Conversations"
            # The page links keep the filter, or following next_page_url would list every state.
            return jsonify(self._page("conversations", rows, lambda r: self._render_conversation(r, scoped), path,
                                      extra_query=f"State={state}&" if state else ""))

        def conversation(sid, chat_service_sid=None):
            self._check_service(chat_service_sid)
            with self._connect() as conn:
                row = self._conversation_or_404(conn, sid)
            return jsonify(self._render_conversation(row, chat_service_sid is not None))

        def participants(conversation_sid, chat_service_sid=None):
            self._check_service(chat_service_sid)
            scoped = chat_service_sid is not None
            if request.method == "POST":
                f = request.form
                address = f.get("MessagingBinding.Address")
                binding = None
                if address:
                    binding = {"type": _binding_type(address), "address": address,
                               "proxy_address": f.get("MessagingBinding.ProxyAddress")}
                with self._tx() as conn:
                    conv = self._conversation_or_404(conn, conversation_sid)
                    row = self._insert_participant(conn, conv["sid"], identity=f.get("Identity"), binding=binding,
                                                   attributes=f.get("Attributes"))
                return created(self._render_participant(row, scoped))
            with self._connect() as conn:
                conv = self._conversation_or_404(conn, conversation_sid)
                rows = conn.execute("SELECT * FROM participants WHERE conversation_sid = ? ORDER BY seq",
                                    (conv["sid"],)).fetchall()
            path = self._conversation_path(conv["sid"], scoped) + "/Participants"
            return jsonify(self._page("participants", rows, lambda r: self._render_participant(r, scoped), path))

        def participant(conversation_sid, sid, chat_service_sid=None):
            self._check_service(chat_service_sid)
            with self._connect() as conn:
                conv = self._conversation_or_404(conn, conversation_sid)
                # Twilio also accepts the participant's identity in place of its MB sid.
                row = conn.execute("SELECT * FROM participants WHERE conversation_sid = ? AND (sid = ? OR"
                                   " identity = ?)", (conv["sid"], sid, sid)).fetchone()
            if row is None:
                raise _not_found(request.path)
            return jsonify(self._render_participant(row, chat_service_sid is not None))

        def messages(conversation_sid, chat_service_sid=None):
            self._check_service(chat_service_sid)
            scoped = chat_service_sid is not None
            if request.method == "POST":
                f = request.form
                with self._tx() as conn:
                    conv = self._conversation_or_404(conn, conversation_sid)
                    row = self._insert_message(
                        conn, conv["sid"], author=f.get("Author"), body=f.get("Body"),
                        attributes=f.get("Attributes"), media_sid=f.get("MediaSid"),
                        date_created=f.get("DateCreated"))
                    resource = self._render_message(row, self._delivery(conn, conv["sid"]), scoped)
                    params = self._webhook_params(conn, row)
                # REST-made messages stay silent unless the caller opts in (no echo of our own sends).
                if request.headers.get("X-Twilio-Webhook-Enabled", "").lower() == "true":
                    self._deliver_in_background(params)
                return created(resource)
            order = request.args.get("Order", "asc").lower()
            if order not in ("asc", "desc"):
                raise TwilioError(400, ERR_INVALID_PARAMETER, f"Invalid Order: {order}")
            with self._connect() as conn:
                conv = self._conversation_or_404(conn, conversation_sid)
                rows = conn.execute(f"SELECT * FROM messages WHERE conversation_sid = ? ORDER BY idx {order}",
                                    (conv["sid"],)).fetchall()
                delivery = self._delivery(conn, conv["sid"])
            path = self._conversation_path(conv["sid"], scoped) + "/Messages"
            extra = f"Order={order}&" if "Order" in request.args else ""
            return jsonify(self._page("messages", rows, lambda r: self._render_message(r, delivery, scoped),
                                      path, extra))

        def message(conversation_sid, sid, chat_service_sid=None):
            self._check_service(chat_service_sid)
            with self._connect() as conn:
                conv = self._conversation_or_404(conn, conversation_sid)
                row = conn.execute("SELECT * FROM messages WHERE conversation_sid = ? AND sid = ?",
                                   (conv["sid"], sid)).fetchone()
                if row is None:
                    raise _not_found(request.path)
                delivery = self._delivery(conn, conv["sid"])
            return jsonify(self._render_message(row, delivery, chat_service_sid is not None))

        def participant_conversations(chat_service_sid=None):
            self._check_service(chat_service_sid)
            scoped = chat_service_sid is not None
            identity, address = request.args.get("Identity"), request.args.get("Address")
            if bool(identity) == bool(address):
                raise TwilioError(400, ERR_INVALID_PARAMETER, "Either Identity or Address must be provided")
            with self._connect() as conn:
                rows = conn.execute(
                    "SELECT c.*, p.sid AS participant_sid, p.identity AS participant_identity,"
                    " p.messaging_binding AS participant_messaging_binding FROM participants p"
                    " JOIN conversations c ON c.sid = p.conversation_sid ORDER BY c.seq").fetchall()
            rows = [r for r in rows if (r["participant_identity"] == identity if identity else
                                        json.loads(r["participant_messaging_binding"] or "{}").get("address")
                                        == address)]
            path = (f"/v1/Services/{self.chat_service_sid}" if scoped else "/v1") + "/ParticipantConversations"
            query = urlencode({"Identity": identity} if identity else {"Address": address}) + "&"
            return jsonify(self._page("conversations", rows,
                                      lambda r: self._render_participant_conversation(r, scoped), path,
                                      extra_query=query, max_page_size=MAX_PARTICIPANT_CONVERSATIONS_PAGE_SIZE))

        routes = [
            ("/ParticipantConversations", participant_conversations, ["GET"]),
            ("/Conversations", conversations, ["GET", "POST"]),
            ("/Conversations/<sid>", conversation, ["GET"]),
            ("/Conversations/<conversation_sid>/Participants", participants, ["GET", "POST"]),
            ("/Conversations/<conversation_sid>/Participants/<sid>", participant, ["GET"]),
            ("/Conversations/<conversation_sid>/Messages", messages, ["GET", "POST"]),
            ("/Conversations/<conversation_sid>/Messages/<sid>", message, ["GET"]),
        ]
        for suffix, view, methods in routes:
            app.add_url_rule("/v1" + suffix, view.__name__, view, methods=methods)
            app.add_url_rule("/v1/Services/<chat_service_sid>" + suffix, "service_" + view.__name__, view,
                             methods=methods)

    def _add_mcs_routes(self, app: Flask) -> None:
        @app.post("/v1/Services/<chat_service_sid>/Media")
        def media_upload(chat_service_sid):
            self._check_service(chat_service_sid)
            if request.content_length is not None and request.content_length > MAX_MEDIA_BYTES:
                raise TwilioError(413, ERR_MEDIA_TOO_LARGE, "Media exceeds the maximum allowed size")
            data, content_type, filename = self._read_upload()
            if not data:
                raise TwilioError(400, ERR_INVALID_PARAMETER, "Media content is empty")
            if len(data) > MAX_MEDIA_BYTES:
                raise TwilioError(413, ERR_MEDIA_TOO_LARGE, "Media exceeds the maximum allowed size")
            if not content_type or "/" not in content_type:
                raise TwilioError(400, ERR_INVALID_MEDIA_CONTENT_TYPE, "Invalid media content type")
            with self._tx() as conn:
                row = self._insert_media(conn, data, content_type, filename)
            return jsonify(self._render_media(row, request.host_url)), 201

        @app.get("/v1/Services/<chat_service_sid>/Media/<media_sid>")
        def media_fetch(chat_service_sid, media_sid):
            return jsonify(self._render_media(self._media_or_404(chat_service_sid, media_sid), request.host_url))

        @app.get("/v1/Services/<chat_service_sid>/Media/<media_sid>/Content", endpoint="media_content")
        def media_content(chat_service_sid, media_sid):
            row = self._media_or_404(chat_service_sid, media_sid)
            return Response(bytes(row["data"]), status=200, headers={"Content-Type": row["content_type"]})

    def _media_or_404(self, chat_service_sid: str, media_sid: str) -> sqlite3.Row:
        self._check_service(chat_service_sid)
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM media WHERE sid = ? AND service_sid = ?",
                               (media_sid, chat_service_sid)).fetchone()
        if row is None or _garbage_collected(row):
            raise _not_found(request.path)
        return row

    @staticmethod
    def _read_upload() -> tuple[bytes, str, str | None]:
        """The bytes, media type and filename of an MCS upload, in any form clients send it.

        Twilio documents a raw body with the media type as Content-Type; public clients also send
        multipart/form-data (a "Media" file part, optional "FileName" field). The filename may come as a
        `Filename`/`FileName`/`filename` query parameter or a Content-Disposition header.
        """
        if request.mimetype == "multipart/form-data":
            upload = next(iter(request.files.values()), None)
            if upload is None:
                return b"", "", None
            filename = request.form.get("FileName") or request.form.get("Filename") or upload.filename or None
            return upload.read(), upload.content_type or "application/octet-stream", filename
        filename = (request.args.get("Filename") or request.args.get("FileName")
                    or request.args.get("filename"))
        if not filename and request.headers.get("Content-Disposition"):
            _, options = parse_options_header(request.headers["Content-Disposition"])
            filename = options.get("filename")
        return request.get_data(cache=False), request.headers.get("Content-Type", "").strip(), filename or None

    def _add_iam_routes(self, app: Flask) -> None:
        @app.post("/v1/Accounts/<account_sid>/Tokens/validate")
        def validate_token(account_sid):
            if account_sid != self.account_sid:
                raise _not_found(request.path)
            body = request.get_json(silent=True) or {}
            token = body.get("token") if isinstance(body, dict) else None
            token = token or request.form.get("token") or request.form.get("Token")
            if not token:
                raise TwilioError(400, ERR_INVALID_PARAMETER, "Missing required parameter token")
            return jsonify(self.validate_token(token))


def serve(argv: list[str] | None = None) -> None:
    """Serve the sandbox as a process of its own: a stand-in for Twilio's hosts that a deployed service reaches
    through TWILIO_API_BASE_URL, with the account's credentials printed for the service's environment."""
    import argparse

    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(prog="python -m webhook_app.sandbox", description=serve.__doc__)
    parser.add_argument("--db", default="instance/twilio-sandbox.db", help="the sandbox's state file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--post-webhook-url", help="where customer messages are posted (onMessageAdded)")
    parser.add_argument("--pre-webhook-url", help="where agent SDK sends are checked first (onMessageAdd)")
    args = parser.parse_args(argv)
    sandbox = Sandbox(args.db)
    if args.post_webhook_url or args.pre_webhook_url:
        sandbox.set_webhook(args.post_webhook_url, args.pre_webhook_url)
    print(f"TWILIO_ACCOUNT_SID={sandbox.account_sid}\nTWILIO_AUTH_TOKEN={sandbox.auth_token}\n"
          f"TWILIO_API_BASE_URL=http://{args.host}:{args.port}", flush=True)
    run_simple(args.host, args.port, sandbox.wsgi_app(), threaded=True)


if __name__ == "__main__":
    serve()
