"""Web chat (SDK) messages with several attachments show only one in their webhook: a job reads the message over
REST and records the others. The webhook, the relay and the sweeper (dispatch.py) ask for it once per message
(enqueue_expand_once, expand_sdk_messages)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from flask import current_app

from ..extensions import db
from ..jobs import queue
from ..twilio.attachments import parse_media
from ..twilio.client import twilio_api
from ..twilio.http import TwilioHttpError
from .normalize import enqueue_new_rows
from .record import record_message_media

log = logging.getLogger(__name__)

RECOVER_WITH_BACKFILL = "`flask --app webhook_app backfill` records the attachments still missing"
# Twilio's retries of one webhook span minutes; a day covers a backfill run too.
EXPAND_ONCE_TTL_S = 24 * 3600
# The event fields the job reads (and its key), as a webhook names them.
EVENT_FIELDS = ("AccountSid", "ChatServiceSid", "ConversationSid", "MessageSid", "Author", "Source")


class MessageRow(Protocol):
    """What a stored row says of its message: enough to read the message again (inbound/dispatch.py's columns)."""

    source: str | None
    account_sid: str | None
    chat_service_sid: str | None
    conversation_sid: str
    message_sid: str | None
    author: str | None


@queue.job
def expand_message(event: dict[str, Any]) -> None:
    enqueue_new_rows(record_other_attachments(event))


def enqueue_expand_once(event: dict[str, Any]) -> None:
    """Webhooks show one attachment of an SDK message even when it carries several: read the message over REST,
    once per message, so a redelivery (Twilio retry, backfill) never queues another read in front of real work."""
    fields = {key: event[key] for key in EVENT_FIELDS if event.get(key) is not None}
    queue.enqueue_once(f"expand:{fields['MessageSid']}", EXPAND_ONCE_TTL_S, expand_message, fields)


def expand_sdk_messages(rows: Sequence[MessageRow]) -> None:
    """Enqueue the expand_message job (once per message) of the web chat (SDK) messages among `rows`: their
    webhook showed one attachment, the job reads the others over REST. Whoever hands rows to the jobs (the relay,
    the sweeper) calls this before it enqueues their own jobs, and gives the rows back if it raises: a message
    already expanded keeps its once-key, so the next try skips it."""
    sdk_messages = {row.message_sid: row for row in rows if (row.source or "").upper() == "SDK"}
    for message_sid, row in sdk_messages.items():
        enqueue_expand_once(
            {
                "AccountSid": row.account_sid,
                "ChatServiceSid": row.chat_service_sid,
                "ConversationSid": row.conversation_sid,
                "MessageSid": message_sid,
                "Author": row.author,
                "Source": row.source,
            }
        )


def record_other_attachments(event: dict[str, Any]) -> list[int]:
    """Read the message over REST and store its audio attachments the webhook did not show; answer the new rows'
    ids."""
    try:
        message = twilio_api().fetch_message(event["ConversationSid"], event["MessageSid"])
    except TwilioHttpError as exc:
        if exc.transient:
            _retry_expand_later(event, exc)
            return []
        # Deleted since (or never readable with our credentials): the attachment the webhook showed is stored.
        log.warning("could not read message %s to expand its media: %s", event["MessageSid"], exc)
        return []
    try:
        new_ids = record_message_media(event, parse_media(message["media"]))
        db.session.commit()
    except Exception as exc:  # noqa: BLE001 - the database's bad moment: the once-key keeps everyone else out
        db.session.rollback()
        _retry_expand_later(event, exc)
        return []
    return new_ids


def _retry_expand_later(event: dict[str, Any], exc: Exception) -> None:
    """Twilio's bad minute outlasted the request's own retries, or the database refused the rows. The job is
    enqueued once per message (a key that also keeps redeliveries out), so it schedules its own next attempt
    rather than fail and lose the attachments."""
    attempt = int(event.get("_attempt", 1))
    if attempt >= current_app.config["JOB_MAX_ATTEMPTS"]:
        log.error(
            "could not read message %s to expand its media after %d attempts (%s); %s",
            event["MessageSid"],
            attempt,
            exc,
            RECOVER_WITH_BACKFILL,
        )
        return
    delay = queue.retry_delay(exc, attempt)
    log.warning(
        "could not read message %s to expand its media (attempt %d): %s; retrying in %g s",
        event["MessageSid"],
        attempt,
        exc,
        delay,
    )
    try:
        queue.enqueue_in(delay, expand_message, {**event, "_attempt": attempt + 1})
    except Exception:  # noqa: BLE001 - Redis down too: say what is missing and how to recover it
        log.exception("could not schedule the next read of message %s; %s", event["MessageSid"], RECOVER_WITH_BACKFILL)
