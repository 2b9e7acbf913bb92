"""The account's resources as rows: conversations, participants, messages and MCS media, written with the rules
Twilio enforces (unique names, one participant per identity or address, media that MCS has not collected)."""

from __future__ import annotations

import json
import sqlite3

from .resources import DeliverySummary, MediaItem, MessagingBinding
from .store import Store
from .wire import (
    ERR_BINDING_EXISTS,
    ERR_INVALID_MEDIA_SID,
    ERR_INVALID_PARAMETER,
    ERR_PARTICIPANT_EXISTS,
    ERR_UNIQUE_NAME_TAKEN,
    TwilioError,
    age_s,
    iso,
    new_sid,
)

CONVERSATION_STATES = ("initializing", "inactive", "active", "closed")  # the spec's conversation_enum_state
MEDIA_GC_AFTER_S = 300  # MCS deletes media not attached to a message within 5 minutes


def check_state(state: str) -> None:
    if state not in CONVERSATION_STATES:
        raise TwilioError(400, ERR_INVALID_PARAMETER, f"Invalid State: {state}")


def binding_type(address: str) -> str:
    prefix = address.split(":", 1)[0].lower() if ":" in address else ""
    return prefix if prefix in ("whatsapp", "messenger", "rcs") else "sms"


def garbage_collected(media_row: sqlite3.Row) -> bool:
    return media_row["message_sid"] is None and age_s(media_row["date_created"]) > MEDIA_GC_AFTER_S


def media_item(media_row: sqlite3.Row) -> MediaItem:
    """A message's media entry as REST renders it (webhooks rename the keys; see webhooks.webhook_params)."""
    return {
        "sid": media_row["sid"],
        "content_type": media_row["content_type"],
        "filename": media_row["filename"],
        "size": media_row["size"],
        "category": "media",
    }


def get_conversation(conn: sqlite3.Connection, sid_or_unique_name: str) -> sqlite3.Row | None:
    # Twilio lets a conversation's unique_name stand in for its sid in the URL.
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM conversations WHERE sid = ? OR unique_name = ?", (sid_or_unique_name, sid_or_unique_name)
    ).fetchone()
    return row


def customer(conn: sqlite3.Connection, conversation_sid: str) -> sqlite3.Row:
    # Conversations made over REST have no marked customer: the first messaging-binding participant is.
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM participants WHERE conversation_sid = ?"
        " ORDER BY is_customer DESC, messaging_binding IS NULL, seq LIMIT 1",
        (conversation_sid,),
    ).fetchone()
    if row is None:
        raise LookupError(f"conversation {conversation_sid} has no participant to act as the customer")
    return row


def delivery(conn: sqlite3.Connection, conversation_sid: str) -> DeliverySummary | None:
    # Twilio summarizes delivery to non-chat participants only; chat-only conversations get null.
    total: int = conn.execute(
        "SELECT COUNT(*) FROM participants WHERE conversation_sid = ? AND messaging_binding IS NOT NULL",
        (conversation_sid,),
    ).fetchone()[0]
    if not total:
        return None
    return {"total": total, "sent": "all", "delivered": "all", "read": "none", "failed": "none", "undelivered": "none"}


def insert_conversation(
    store: Store,
    conn: sqlite3.Connection,
    *,
    friendly_name: str | None = None,
    unique_name: str | None = None,
    attributes: str | None = None,
    state: str | None = None,
    messaging_service_sid: str | None = None,
    date_created: str | None = None,
) -> sqlite3.Row:
    if state is not None:
        check_state(state)
    if unique_name and conn.execute("SELECT 1 FROM conversations WHERE unique_name = ?", (unique_name,)).fetchone():
        raise TwilioError(
            409, ERR_UNIQUE_NAME_TAKEN, f"Conversation with provided unique name already exists: {unique_name}"
        )
    now = iso()
    sid = new_sid("CH")
    conn.execute(
        "INSERT INTO conversations (sid, unique_name, friendly_name, attributes, state, messaging_service_sid,"
        " date_created, date_updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            sid,
            unique_name or None,
            friendly_name,
            attributes or "{}",
            state or "active",
            messaging_service_sid or store.messaging_service_sid,
            date_created or now,
            date_created or now,
        ),
    )
    row: sqlite3.Row = conn.execute("SELECT * FROM conversations WHERE sid = ?", (sid,)).fetchone()
    return row


def insert_participant(
    store: Store,
    conn: sqlite3.Connection,
    conversation_sid: str,
    *,
    identity: str | None = None,
    binding: MessagingBinding | None = None,
    attributes: str | None = None,
    is_customer: bool = False,
) -> sqlite3.Row:
    _check_new_participant(conn, conversation_sid, identity, binding)
    now = iso()
    sid = new_sid("MB")
    # Chat (SDK) participants get the service's default conversation role; SMS-like ones show none.
    role_sid = None if binding else store.default_chat_role_sid
    conn.execute(
        "INSERT INTO participants (sid, conversation_sid, identity, messaging_binding, attributes, role_sid,"
        " is_customer, date_created, date_updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            sid,
            conversation_sid,
            identity or None,
            json.dumps(binding) if binding else None,
            attributes or "{}",
            role_sid,
            int(is_customer),
            now,
            now,
        ),
    )
    row: sqlite3.Row = conn.execute("SELECT * FROM participants WHERE sid = ?", (sid,)).fetchone()
    return row


def _check_new_participant(
    conn: sqlite3.Connection, conversation_sid: str, identity: str | None, binding: MessagingBinding | None
) -> None:
    """Twilio's 400 for a participant that is nobody, and its 409s for one the conversation already has (the same
    identity, or a binding to the same address)."""
    if not identity and not binding:
        raise TwilioError(400, ERR_INVALID_PARAMETER, "Either Identity or MessagingBinding.Address must be provided")
    if (
        identity
        and conn.execute(
            "SELECT 1 FROM participants WHERE conversation_sid = ? AND identity = ?", (conversation_sid, identity)
        ).fetchone()
    ):
        raise TwilioError(409, ERR_PARTICIPANT_EXISTS, "Participant already exists")
    if binding:
        for (existing,) in conn.execute(
            "SELECT messaging_binding FROM participants WHERE conversation_sid = ? AND messaging_binding IS NOT NULL",
            (conversation_sid,),
        ):
            if json.loads(existing).get("address") == binding.get("address"):
                raise TwilioError(
                    409,
                    ERR_BINDING_EXISTS,
                    "A binding for this participant and proxy address already exists"
                    f" in Conversation {conversation_sid}",
                )


def _attachable_media(store: Store, conn: sqlite3.Connection, media_sid: str | None) -> list[MediaItem] | None:
    if not media_sid:
        return None
    media_row = conn.execute(
        "SELECT * FROM media WHERE sid = ? AND service_sid = ?", (media_sid, store.chat_service_sid)
    ).fetchone()
    if media_row is None or garbage_collected(media_row):
        raise TwilioError(400, ERR_INVALID_MEDIA_SID, f"Invalid media SID: {media_sid}")
    return [media_item(media_row)]


def _author_participant_sid(conn: sqlite3.Connection, conversation_sid: str, author: str) -> str | None:
    for row in conn.execute(
        "SELECT sid, identity, messaging_binding FROM participants WHERE conversation_sid = ? ORDER BY seq",
        (conversation_sid,),
    ):
        address = json.loads(row["messaging_binding"]).get("address") if row["messaging_binding"] else None
        if author in (row["identity"], address):
            sid: str = row["sid"]
            return sid
    return None


def insert_message(
    store: Store,
    conn: sqlite3.Connection,
    conversation_sid: str,
    *,
    author: str | None = None,
    body: str | None = None,
    attributes: str | None = None,
    media_sid: str | None = None,
    source: str = "API",
    date_created: str | None = None,
) -> sqlite3.Row:
    author = author or "system"  # Twilio's default author
    media = _attachable_media(store, conn, media_sid)
    if body is None and media is None:
        raise TwilioError(400, ERR_INVALID_PARAMETER, "A message needs a Body or a MediaSid")
    participant_sid = _author_participant_sid(conn, conversation_sid, author)
    index: int = conn.execute("SELECT next_index FROM conversations WHERE sid = ?", (conversation_sid,)).fetchone()[0]
    now = iso()
    sid = new_sid("IM")
    conn.execute("UPDATE conversations SET next_index = next_index + 1 WHERE sid = ?", (conversation_sid,))
    conn.execute(
        "INSERT INTO messages (sid, conversation_sid, idx, author, body, attributes, participant_sid, media,"
        " source, date_created, date_updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            sid,
            conversation_sid,
            index,
            author,
            body,
            attributes or "{}",
            participant_sid,
            json.dumps(media) if media else None,
            source,
            date_created or now,
            date_created or now,
        ),
    )
    if media_sid:
        # Attaching is what saves MCS media from its 5-minute garbage collection; record where it went.
        conn.execute(
            "UPDATE media SET message_sid = ?, channel_sid = ?, date_updated = ? WHERE sid = ?",
            (sid, conversation_sid, now, media_sid),
        )
    row: sqlite3.Row = conn.execute("SELECT * FROM messages WHERE sid = ?", (sid,)).fetchone()
    return row


def insert_media(
    store: Store, conn: sqlite3.Connection, data: bytes, content_type: str, filename: str | None, author: str = "system"
) -> sqlite3.Row:
    now = iso()
    sid = new_sid("ME")
    conn.execute(
        "INSERT INTO media (sid, service_sid, content_type, filename, size, author, data, date_created,"
        " date_updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (sid, store.chat_service_sid, content_type, filename, len(data), author, sqlite3.Binary(data), now, now),
    )
    row: sqlite3.Row = conn.execute("SELECT * FROM media WHERE sid = ?", (sid,)).fetchone()
    return row
