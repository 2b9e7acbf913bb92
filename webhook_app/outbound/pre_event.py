"""The pre-event (onMessageAdd): keep agent audio that the channel's settings forbid out of a conversation, audio
attached natively in Flex included, which never passes through the agent API."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..audio.detect import is_audio
from ..extensions import db
from ..humanize import format_bytes
from ..inbound.events import column_text, parse_media
from ..models import AudioMessage, Status
from ..settings.cache import settings_for
from ..settings.channels import channel_from_participants, is_agent_author
from ..twilio.client import twilio_api
from ..twilio.sids import is_sid, sid_or_none

log = logging.getLogger(__name__)


@dataclass
class Rejection:
    """The pre-event's decision to keep agent audio out of a conversation, and what its audit rows need."""

    reason: str
    code: str
    channel: str
    audio: list
    author: str | None


def pre_event_verdict(event: dict) -> Rejection | None:
    """onMessageAdd: why agent audio the channel's settings forbid must not be published, or None to allow.

    This covers audio attached natively in Flex, which never passes through our upload API. Twilio publishes the
    message unchanged if we take more than 5 s, so everything here is cached. Nothing is written here: a decision
    must not depend on whether its audit can be stored (audit_rejection).
    """
    audio = [m for m in parse_media(event.get("Media")) if is_audio(m.content_type, m.filename)]
    conversation_sid = event.get("ConversationSid")
    if not audio or not is_sid(conversation_sid, "CH"):
        return None
    participants = twilio_api().participants(conversation_sid)
    author = event.get("ClientIdentity") or event.get("Author")
    if not is_agent_author(
        participants, author=author, participant_sid=event.get("ParticipantSid"), source=event.get("Source")
    ):
        return None  # customers are never blocked
    settings = settings_for(channel_from_participants(participants, event.get("Source"), author))
    if not settings.sending_enabled:
        return Rejection(
            f"audio sending is disabled for the {settings.channel} channel",
            "sending_disabled",
            settings.channel,
            audio,
            author,
        )
    too_big = [m for m in audio if m.size is not None and m.size > settings.max_bytes]
    if not too_big:
        return None
    return Rejection(
        f"the audio file is {format_bytes(too_big[0].size)}; {settings.channel} allows at most "
        f"{format_bytes(settings.max_bytes)} per file",
        "too_large",
        settings.channel,
        audio,
        author,
    )


def audit_rejection(event: dict, rejection: Rejection) -> None:
    """One failed outbound row per rejected file (the caller commits)."""
    for item in rejection.audio:
        row = AudioMessage(
            direction="outbound",
            channel=rejection.channel,
            conversation_sid=event["ConversationSid"],
            media_sid=item.sid,
            author=column_text(rejection.author, 256),
            source="pre-event",
            content_type=column_text(item.content_type, 128),
            size_bytes=item.size,
            filename=column_text(item.filename, 256),
            truncated=False,
            attempts=0,
            status=Status.QUEUED.value,
            chat_service_sid=sid_or_none(event.get("ChatServiceSid"), "IS"),
            account_sid=sid_or_none(event.get("AccountSid"), "AC"),
        )
        row.mark(Status.FAILED, error=f"rejected before publishing: {rejection.reason}", error_code=rejection.code)
        db.session.add(row)
    log.info(
        "pre-event rejected agent audio in %s by %s: %s", event["ConversationSid"], rejection.author, rejection.reason
    )
