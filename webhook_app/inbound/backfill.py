"""Backfill: Twilio does not retry post-event webhooks by default, so read recent messages over REST and record
the audio the service missed (a deploy, an outage, a misconfigured webhook). Idempotent: rows already recorded,
inbound or our own outbound, are left alone by the (message, media) unique key."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from ..extensions import db
from ..settings.channels import channel_from_address
from ..twilio.attachments import parse_media
from ..twilio.client import twilio_api
from .normalize import enqueue_new_rows
from .record import record_message_media

log = logging.getLogger(__name__)

SOURCE_BY_CHANNEL = {"whatsapp": "WHATSAPP", "sms": "SMS", "messenger": "MESSENGER"}


def backfill(since: datetime) -> dict[str, int]:
    api = twilio_api()
    counts = {"conversations": 0, "messages": 0, "new_rows": 0}
    for conversation in api.conversations():
        # Not filtered on date_updated: Twilio documents it as the resource's last update, not its last message's,
        # so the conversations that missed a webhook could be exactly the ones it skips. One page of messages per
        # open conversation settles it, newest first.
        sid = conversation["sid"]
        if conversation["state"] == "closed" or not sid:  # a sid Twilio's schema lets be null: nothing to list
            continue
        counts["conversations"] += 1
        for message in api.messages(sid, newest_first=True):
            if _aware(message["date_created"]) < since:
                break  # newest first: everything after this is older
            if not message["media"]:
                continue
            counts["messages"] += 1
            channel = channel_from_address(message["author"])
            event = {
                "AccountSid": message["account_sid"],
                "ChatServiceSid": conversation["chat_service_sid"],
                "ConversationSid": sid,
                "MessageSid": message["sid"],
                "Author": message["author"],
                "Source": SOURCE_BY_CHANNEL.get(channel or "", "SDK"),
            }
            new_ids = record_message_media(event, parse_media(message["media"]))
            db.session.commit()
            counts["new_rows"] += len(new_ids)
            enqueue_new_rows(new_ids)
    log.info("backfill since %s: %s", since.isoformat(), counts)
    return counts


def _aware(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
