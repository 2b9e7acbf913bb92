"""Conversations resources as Twilio renders them (field order kept: the app does not sort JSON keys)."""

from __future__ import annotations

import hashlib
import json
import sqlite3

from .resources import (
    ConversationResource,
    DeliverySummary,
    MessageResource,
    ParticipantConversationResource,
    ParticipantResource,
)
from .store import Store
from .wire import CONVERSATIONS_BASE


def conversation_path(store: Store, sid: str, scoped: bool) -> str:
    prefix = f"/v1/Services/{store.chat_service_sid}" if scoped else "/v1"
    return f"{prefix}/Conversations/{sid}"


def render_conversation(store: Store, row: sqlite3.Row, scoped: bool = False) -> ConversationResource:
    url = CONVERSATIONS_BASE + conversation_path(store, row["sid"], scoped)
    return {
        "sid": row["sid"],
        "account_sid": store.account_sid,
        "chat_service_sid": store.chat_service_sid,
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


def render_participant(store: Store, row: sqlite3.Row, scoped: bool = False) -> ParticipantResource:
    resource: ParticipantResource = {
        "account_sid": store.account_sid,
        "conversation_sid": row["conversation_sid"],
        "sid": row["sid"],
        "identity": row["identity"],
        "attributes": row["attributes"],
        "messaging_binding": json.loads(row["messaging_binding"]) if row["messaging_binding"] else None,
        "role_sid": row["role_sid"],
        "date_created": row["date_created"],
        "date_updated": row["date_updated"],
        "url": (
            CONVERSATIONS_BASE
            + conversation_path(store, row["conversation_sid"], scoped)
            + f"/Participants/{row['sid']}"
        ),
        "last_read_message_index": None,
        "last_read_timestamp": None,
    }
    if scoped:  # only the service-scoped schema carries chat_service_sid
        resource["chat_service_sid"] = store.chat_service_sid
    return resource


def render_participant_conversation(
    store: Store, row: sqlite3.Row, scoped: bool = False
) -> ParticipantConversationResource:
    """One of a participant's conversations (`row`: a conversation with its participant_* columns)."""
    conversation_url = CONVERSATIONS_BASE + conversation_path(store, row["sid"], scoped)
    identity = row["participant_identity"]
    binding = row["participant_messaging_binding"]
    return {
        "account_sid": store.account_sid,
        "chat_service_sid": store.chat_service_sid,
        "participant_sid": row["participant_sid"],
        # Twilio makes a Conversation User for each chat identity; the sandbox has no Users, so one stable
        # made-up SID per identity stands in for it.
        "participant_user_sid": "US" + hashlib.sha256(f"{store.account_sid}:{identity}".encode()).hexdigest()[:32]
        if identity
        else None,
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


def render_message(
    store: Store, row: sqlite3.Row, delivery: DeliverySummary | None, scoped: bool = False
) -> MessageResource:
    url = CONVERSATIONS_BASE + conversation_path(store, row["conversation_sid"], scoped) + f"/Messages/{row['sid']}"
    resource: MessageResource = {
        "sid": row["sid"],
        "account_sid": store.account_sid,
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
        resource["chat_service_sid"] = store.chat_service_sid
    return resource
