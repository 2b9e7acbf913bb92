"""The pre-event (onMessageAdd): keep agent audio that the channel's settings forbid out of a conversation, audio
attached natively in Flex included, which never passes through the agent API."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from ..audio.detect import is_audio, sniff
from ..extensions import db
from ..humanize import format_bytes
from ..models import AudioMessage, Status
from ..settings.cache import all_settings, settings_for
from ..settings.channels import channel_from_participants, is_agent_author
from ..twilio.attachments import MediaItem, parse_media
from ..twilio.client import twilio_api
from ..twilio.sids import is_sid, sid_or_none
from ..untrusted_text import column_text

log = logging.getLogger(__name__)

# Twilio publishes the message unchanged when the pre-event takes over 5 s (error 50076). Reading what the
# attachments really are shares this budget (in parallel, each asked once), leaving the rest of the 5 s to the
# participants, the settings, the audit row and the network both ways.
HEAD_BUDGET_S = 2.0
HEAD_BYTES = 64  # sniff() reads the first 12 bytes; a few more cost nothing
MAX_HEAD_READS = 10  # parallel reads; an SDK message carries a handful of attachments at most


@dataclass
class Rejection:
    """The pre-event's decision to keep agent audio out of a conversation, and what its audit rows need."""

    reason: str
    code: str
    channel: str
    audio: list[MediaItem]
    author: str | None
    # Per media SID, why a file not labelled audio counts as audio: what its bytes are, or that they were unread.
    notes: dict[str, str] = field(default_factory=dict)


def pre_event_verdict(event: Mapping[str, str]) -> Rejection | None:
    """onMessageAdd: why agent audio the channel's settings forbid must not be published, or None to allow.

    This covers audio attached natively in Flex, which never passes through our upload API. A file counts as audio
    by its label or, when the label says otherwise and the settings would forbid it as audio, by its first bytes
    from MCS (`audio_among`). Nothing is written here: a decision must not depend on whether its audit can be
    stored (audit_rejection).
    """
    media = parse_media(event.get("Media"))
    conversation_sid = event.get("ConversationSid")
    if not media or not is_sid(conversation_sid, "CH") or not _may_be_forbidden(media):
        return None
    participants = twilio_api().participants(conversation_sid)
    author = event.get("ClientIdentity") or event.get("Author")
    if not is_agent_author(
        participants, author=author, participant_sid=event.get("ParticipantSid"), source=event.get("Source")
    ):
        return None  # customers are never blocked, and their files never read here
    settings = settings_for(channel_from_participants(participants, event.get("Source"), author))
    if settings.sending_enabled:
        covered = [m for m in media if m.size is not None and m.size > settings.max_bytes]
    else:
        covered = media
    audio, notes, unread = audio_among(event, covered)
    if not audio:
        return None
    if not settings.sending_enabled:
        reason, code = f"audio sending is disabled for the {settings.channel} channel", "sending_disabled"
    else:
        reason = (
            f"the audio file is {format_bytes(audio[0].size or 0)}; {settings.channel} allows at most "
            f"{format_bytes(settings.max_bytes)} per file"
        )
        code = "too_large"
    if all(item.sid in unread for item in audio):
        reason += "; the attached file could not be checked in time, so it may be audio: try again"
    return Rejection(reason, code, settings.channel, audio, author, notes)


def _may_be_forbidden(media: list[MediaItem]) -> bool:
    """Whether any channel's settings could forbid one of these files, judged from the cached settings before any
    Twilio call: while every channel sends, a message whose files are neither labelled audio nor over a cap (an
    image, a PDF) is allowed at once."""
    if any(is_audio(m.content_type, m.filename) for m in media):
        return True
    channels = all_settings()
    if any(not s.sending_enabled for s in channels):
        return True
    smallest_cap = min((s.max_bytes for s in channels), default=0)
    return any(m.size is not None and m.size > smallest_cap for m in media)


def audio_among(event: Mapping[str, str], items: list[MediaItem]) -> tuple[list[MediaItem], dict[str, str], set[str]]:
    """The files among `items` that count as audio, with a note per file decided by its bytes, and the SIDs of
    those whose bytes could not be read in time.

    A label is only what the sender's client said: Flex's attach button uploads whatever type the browser
    guessed (a recording renamed note.bin is application/octet-stream, WebM audio may say video/webm) and MCS
    keeps it unchecked. So a file not labelled audio is decided by its first bytes (sniff). A file whose bytes
    cannot be read within HEAD_BUDGET_S counts as audio: the channel's settings forbid audio here, and a
    published message cannot be taken back, while a rejected one can be sent again.
    """
    labelled = [m for m in items if is_audio(m.content_type, m.filename)]
    others = [m for m in items if not is_audio(m.content_type, m.filename)]
    if not others:
        return labelled, {}, set()
    heads = read_heads(event, others)
    audio, notes, unread = list(labelled), {}, set()
    for item in others:
        head = heads.get(item.sid)
        kind = sniff(head) if head is not None else None
        if head is None:
            notes[item.sid] = f"its first bytes could not be read from Twilio within {HEAD_BUDGET_S:g} s"
            unread.add(item.sid)
        elif kind is not None:
            notes[item.sid] = f"labelled {item.content_type or 'without a type'}, its bytes are {kind} audio"
        else:
            continue
        audio.append(item)
    return audio, notes, unread


def read_heads(event: Mapping[str, str], items: list[MediaItem]) -> dict[str, bytes]:
    """The first HEAD_BYTES of each media, by SID, read in parallel within HEAD_BUDGET_S all told; a media that
    could not be read in time (an error, a timeout, a stall) is left out."""
    api = twilio_api()
    conversation_sid = event["ConversationSid"]
    service_sid = sid_or_none(event.get("ChatServiceSid"), "IS")
    deadline = time.monotonic() + HEAD_BUDGET_S

    def read(media_sid: str) -> bytes:
        # Twilio's webhooks carry ChatServiceSid; without it, the conversation's service (cached) is asked first,
        # inside the same deadline.
        service = service_sid or api.conversation_service_sid(conversation_sid)
        if service is None:
            raise LookupError(f"conversation {conversation_sid} has no chat service")
        return api.media_head(service, media_sid, HEAD_BYTES, timeout_s=max(0.1, deadline - time.monotonic()))

    sids = list(dict.fromkeys(item.sid for item in items))
    # Threads, not the request's own: a stalled read is abandoned at the deadline (it ends at its socket timeout)
    # and the answer goes to Twilio in time, whatever MCS does. With gevent, these are greenlets.
    pool = ThreadPoolExecutor(max_workers=min(len(sids), MAX_HEAD_READS), thread_name_prefix="pre-event-media")
    try:
        futures = {pool.submit(read, sid): sid for sid in sids}
        done, _ = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    heads: dict[str, bytes] = {}
    for future, sid in futures.items():
        if future not in done:
            log.warning("pre-event: media %s was not read within %g s", sid, HEAD_BUDGET_S)
        elif future.exception() is not None:
            log.warning("pre-event: media %s could not be read: %s", sid, future.exception())
        else:
            heads[sid] = future.result()
    return heads


def audit_rejection(event: Mapping[str, str], rejection: Rejection) -> None:
    """One failed outbound row per rejected file (the caller commits). `content_type` stays what Twilio labelled
    the file with; the error says what its bytes are when they decided."""
    for item in rejection.audio:
        note = rejection.notes.get(item.sid)
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
        error = f"rejected before publishing: {rejection.reason}" + (f" ({column_text(note, 500)})" if note else "")
        row.mark(Status.FAILED, error=error, error_code=rejection.code)
        db.session.add(row)
    log.info(
        "pre-event rejected agent audio in %s by %s: %s", event["ConversationSid"], rejection.author, rejection.reason
    )
