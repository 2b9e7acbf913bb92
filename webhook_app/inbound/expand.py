"""Web chat (SDK) messages with several attachments show only one in their webhook: a job reads the message over
REST and records the others. The relay, the sweeper and the webhook ask for it once per message
(jobs.relay.enqueue_expand_once)."""

from __future__ import annotations

import logging

from flask import current_app

from ..extensions import db
from ..jobs import queue
from ..twilio.attachments import parse_media
from ..twilio.client import twilio_api
from ..twilio.http import TwilioHttpError
from .record import record_message_media

log = logging.getLogger(__name__)

RECOVER_WITH_BACKFILL = "`flask --app webhook_app backfill` records the attachments still missing"


@queue.job
def expand_message(event: dict) -> None:
    queue.enqueue_new_rows(record_other_attachments(event))


def record_other_attachments(event: dict) -> list[int]:
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


def _retry_expand_later(event: dict, exc: Exception) -> None:
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
