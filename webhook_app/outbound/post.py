"""Put an agent's MP3 into the conversation: upload it to MCS, then post the message that carries it, never twice."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from ..domain_errors import DomainError
from ..extensions import db
from ..models import AudioMessage
from ..runtime.retry import RetryPolicy
from ..twilio.client import twilio_api
from ..twilio.http import TwilioHttpError

log = logging.getLogger(__name__)

# MCS garbage-collects media not attached to a message within 5 minutes: keep retrying well inside that.
ATTACH_WINDOW_S = 240
# Codes that mean Twilio refused before doing anything: a retry cannot double-send.
REJECTED_BEFORE_PROCESSING = {429, 503}
# Beyond the request's own retries (twilio/http.py), which a message create does not get: it is not idempotent.
CREATE_RETRY = RetryPolicy(base_s=0.5, max_delay_s=15)


def upload_and_post(row: AudioMessage, mp3_path: str) -> None:
    api = twilio_api()
    try:
        if not row.chat_service_sid:
            row.chat_service_sid = api.conversation_service_sid(row.conversation_sid)
        service_sid = row.chat_service_sid
        if service_sid is None:
            raise DomainError(
                "twilio_error", "uploading the MP3 to Twilio failed: the conversation has no chat service"
            )
        with open(mp3_path, "rb") as handle:
            media = api.upload_media(service_sid, handle, "audio/mpeg", f"voice-message-{row.id}.mp3")
    except TwilioHttpError as exc:
        raise DomainError("twilio_error", f"uploading the MP3 to Twilio failed: {exc}") from exc
    media_sid: str = media["sid"]
    row.media_sid = media_sid
    db.session.commit()
    row.message_sid = _create_message_within_window(row, media_sid)
    # On its own: whatever fails from here on, the audit row must know the message is in the conversation.
    db.session.commit()


def _create_message_within_window(row: AudioMessage, media_sid: str) -> str | None:
    """Attach the uploaded media before MCS garbage-collects it, without ever posting the message twice."""
    api = twilio_api()
    attributes = {"audio_audit_id": row.id}
    deadline = time.monotonic() + ATTACH_WINDOW_S
    retry = 0
    while True:
        try:
            message = api.create_message(
                row.conversation_sid, author=row.author or "agent", media_sid=media_sid, attributes=attributes
            )
            return message["sid"]
        except TwilioHttpError as exc:
            if exc.transient and exc.status not in REJECTED_BEFORE_PROCESSING:
                # A timeout or 5xx may have created the message anyway: look before sending again, and before
                # giving up (a "failed" the agent would send again).
                existing = _find_posted_message(row, attributes)
                if existing:
                    return existing
            retry += 1
            delay = CREATE_RETRY.delay(retry)
            if not exc.transient or time.monotonic() + delay > deadline:
                raise DomainError("twilio_error", f"posting the message to the conversation failed: {exc}") from exc
            log.warning("outbound audit %s: message create failed (%s); retrying in %.1f s", row.id, exc, delay)
            time.sleep(delay)


def _find_posted_message(row: AudioMessage, attributes: dict[str, Any]) -> str | None:
    try:
        messages = list(twilio_api().messages(row.conversation_sid, newest_first=True, limit=20))
    except Exception:  # noqa: BLE001 - if we cannot look, retrying is still the best we can do
        return None
    for message in messages:
        try:
            posted = json.loads(message["attributes"] or "{}")
        except ValueError:
            continue
        # Other messages' attributes are anyone's JSON: "null" and "[]" are valid too.
        if isinstance(posted, dict) and posted.get("audio_audit_id") == attributes["audio_audit_id"]:
            return message["sid"]
    return None
