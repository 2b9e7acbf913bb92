"""Outbound agent recordings: check, convert to MP3, enforce the channel's caps, upload to MCS, post the message."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from .audio.detect import is_audio, sniff_file
from .audio.transcode import AudioError, AudioTimeout, transcode_to_mp3
from .channels import channel_from_participants, is_agent_author
from .errors import ApiError
from .extensions import db
from .humanize import format_bytes
from .inbound import column_text, conversation_service_sid, parse_media, participant_cache
from .models import AudioMessage, Status, utcnow
from .observability import bind_audit_id
from .scratch import scratch_dir
from .settings import Policy, policy_for
from .storage import media_store
from .twilio.client import twilio_api
from .twilio.http import TwilioHttpError
from .twilio.sids import is_sid, sid_or_none

log = logging.getLogger(__name__)

# MCS garbage-collects media not attached to a message within 5 minutes: keep retrying well inside that.
ATTACH_WINDOW_S = 240
# Codes that mean Twilio refused before doing anything: a retry cannot double-send.
REJECTED_BEFORE_PROCESSING = {429, 503}
# Clips up to this long are also checked for digital silence (a muted microphone records zeros).
SILENCE_CHECK_MAX_S = 120
SILENCE_PROBE_S = 5
# The record panel stops a take just before the cap, but MediaRecorder delivers its last chunk a little after
# the stop: a clip stopped at the cap must not be refused for a fraction of a second.
DURATION_TOLERANCE_S = 0.5
# The idempotency_key column's width.
IDEMPOTENCY_KEY_MAX = 300

ERROR_STATUS = {
    "empty_audio": 400, "not_audio": 400, "silent_audio": 400, "sending_disabled": 403,
    "conversation_not_found": 404, "too_large": 413, "too_long": 413, "twilio_error": 502, "internal_error": 500,
    "conversion_timeout": 413,
}


@dataclass
class Upload:
    path: str
    filename: str | None
    content_type: str | None


def conversation_participants(conversation_sid: str, *, refresh: bool = False) -> list[dict]:
    """The conversation's participants, cached for a minute per process (`refresh`: ask Twilio now and re-cache);
    ApiError 404 when Twilio has no such conversation, 502 when it could not answer."""
    lookup = participant_cache.refresh if refresh else participant_cache.get
    try:
        return lookup(conversation_sid, twilio_api().list_participants)
    except TwilioHttpError as exc:
        if exc.status == 404:
            raise ApiError(404, "conversation_not_found", f"conversation {conversation_sid} does not exist") from exc
        raise ApiError(502, "twilio_error", f"could not read the conversation from Twilio: {exc}") from exc


def conversation_channel(conversation_sid: str) -> str:
    """The channel of a conversation, from its participants' messaging bindings (never from the browser)."""
    return channel_from_participants(conversation_participants(conversation_sid))


def effective_settings(conversation_sid: str) -> Policy:
    return policy_for(conversation_channel(conversation_sid))


def replay(row: AudioMessage) -> tuple[dict, int]:
    """The answer a finished attempt gave, for a request that repeats its Idempotency-Key."""
    if row.status == Status.READY.value:
        return sent_body(row), 201
    if row.status == Status.FAILED.value:
        code = row.error_code or "internal_error"
        raise ApiError(ERROR_STATUS.get(code, 500), code, row.error or "failed")
    raise ApiError(409, "idempotency_key_in_flight",
                   "a recording with this Idempotency-Key is still being sent; retry shortly",
                   headers={"Retry-After": "2"})


def sent_body(row: AudioMessage) -> dict:
    return {"audit_id": row.id, "message_sid": row.message_sid, "media_sid": row.media_sid,
            "duration_s": round(row.duration_s or 0.0, 3), "size_bytes": row.mp3_size_bytes,
            "content_type": "audio/mpeg"}


def start_attempt(conversation_sid: str, identity: str, upload: Upload,
                  idempotency_key: str | None) -> tuple[AudioMessage, bool]:
    """The audit row of this attempt, and whether it is new (False: the Idempotency-Key was seen before).

    The unique key column decides races: of two requests with one key, exactly one insert succeeds.
    """
    key = scoped_idempotency_key(identity, idempotency_key)
    row = AudioMessage(
        direction="outbound", channel="other", status=Status.QUEUED.value, conversation_sid=conversation_sid,
        author=column_text(identity, 256), source="agent-api", content_type=column_text(upload.content_type, 128),
        filename=column_text(upload.filename, 256), size_bytes=os.path.getsize(upload.path),
        idempotency_key=key, truncated=False, attempts=1, started_at=utcnow(),
    )
    for _ in range(2):
        db.session.add(row)
        try:
            db.session.commit()
            return row, True
        except IntegrityError:
            db.session.rollback()
        existing = db.session.scalar(select(AudioMessage).where(AudioMessage.idempotency_key == key))
        if existing is None:
            raise RuntimeError(f"idempotency key {key!r} conflicted, but no row holds it")
        if not _release_failed_key(existing):
            return existing, False
        # The earlier attempt failed before anything was posted: this one is a new attempt (the panel's "send
        # again" keeps its key); the failed row keeps its reason under a key of its own.
        row = _copy_of(row)  # the rolled-back insert's object left the session with the rollback
    return existing, False


def scoped_idempotency_key(identity: str, idempotency_key: str | None) -> str | None:
    """Keys are per agent. One too long for the column is hashed whole: cut, two keys could become one."""
    if not idempotency_key:
        return None
    key = f"{identity}:{idempotency_key}"
    if len(key) <= IDEMPOTENCY_KEY_MAX:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _release_failed_key(existing: AudioMessage) -> bool:
    """Move the key off a failed attempt that posted nothing, so the key can be tried again; one conditional
    UPDATE, so of two concurrent retries exactly one gets it. False: the attempt stands (in flight, sent, or
    another retry took the key)."""
    if existing.status != Status.FAILED.value or existing.message_sid is not None:
        return False
    released = db.session.execute(
        update(AudioMessage)
        .where(AudioMessage.id == existing.id, AudioMessage.status == Status.FAILED.value,
               AudioMessage.message_sid.is_(None), AudioMessage.idempotency_key == existing.idempotency_key)
        .values(idempotency_key=f"retried:{existing.id}")).rowcount
    db.session.commit()
    return released == 1


def _copy_of(row: AudioMessage) -> AudioMessage:
    columns = ("direction", "channel", "status", "conversation_sid", "author", "source", "content_type", "filename",
               "size_bytes", "idempotency_key", "truncated", "attempts", "started_at")
    return AudioMessage(**{name: getattr(row, name) for name in columns})


def send_agent_audio(conversation_sid: str, identity: str, upload: Upload,
                     idempotency_key: str | None = None) -> tuple[dict, int]:
    row, created = start_attempt(conversation_sid, identity, upload, idempotency_key)
    bind_audit_id(row.id)
    if not created:
        return replay(row)
    try:
        _send(row, upload)
    except ApiError as exc:
        # No rollback: what was measured before the refusal (duration, MP3 size) belongs in the audit row.
        row.mark(Status.FAILED, error=exc.message, error_code=exc.code)
        db.session.commit()
        log.warning("outbound audit %s (%s) failed: %s", row.id, identity, exc.message)
        raise
    except Exception as exc:  # noqa: BLE001 - every attempt ends in a state the audit shows
        db.session.rollback()
        log.exception("outbound audit %s failed unexpectedly", row.id)
        if row.message_sid:
            # Posted before the failure: the customer has it. Telling the agent it failed would only make them
            # record and send it again.
            row.error = None
            row.mark(Status.READY)
            db.session.commit()
            return sent_body(row), 201
        row.mark(Status.FAILED, error=f"internal error: {type(exc).__name__}: {exc}", error_code="internal_error")
        db.session.commit()
        raise ApiError(500, "internal_error", "the recording could not be sent; see the audit log") from exc
    return sent_body(row), 201


def _send(row: AudioMessage, upload: Upload) -> None:
    settings = effective_settings(row.conversation_sid)
    row.channel = settings.channel
    db.session.commit()
    if not settings.sending_enabled:
        raise ApiError(403, "sending_disabled", f"audio sending is disabled for the {settings.channel} channel")
    if row.size_bytes == 0:
        raise ApiError(400, "empty_audio", "the recording is empty (0 bytes)")
    if sniff_file(upload.path) is None:
        raise ApiError(400, "not_audio", "the upload is not audio we can decode (expected WebM, Ogg, MP4, WAV or MP3)")

    row.mark(Status.TRANSCODING)
    db.session.commit()
    with scratch_dir("outbound") as workdir:
        mp3_path = os.path.join(workdir, "voice-message.mp3")
        try:
            # Decode one second past the cap: enough to know the recording is too long, no more.
            result = transcode_to_mp3(upload.path, mp3_path, bitrate_kbps=settings.bitrate_kbps, mono=True,
                                      max_duration_s=settings.max_duration_s + 1,
                                      timeout_s=current_app.config["FFMPEG_TIMEOUT_S"])
        except AudioTimeout as exc:
            # Not undecodable (400): valid audio too long to convert within FFMPEG_TIMEOUT_S, which a duration cap
            # of hours allows. Too large to take, then; and an error line, since the operator may need to act.
            log.error("outbound audit %s: conversion timed out: %s", row.id, exc)
            timeout_s = current_app.config["FFMPEG_TIMEOUT_S"]
            raise ApiError(413, "conversion_timeout", f"converting the recording took longer than {timeout_s:g} s; "
                                                      "send a shorter one or ask an admin to lower the duration "
                                                      "cap") from exc
        except AudioError as exc:
            code = "empty_audio" if "zero-length" in str(exc) or "empty" in str(exc) else "not_audio"
            raise ApiError(400, code, str(exc)) from exc
        row.transcode_ms = int(result.elapsed_s * 1000)
        row.duration_s = result.duration_s
        row.mp3_size_bytes = result.size_bytes
        row.mp3_sha256 = result.sha256
        if result.duration_s > settings.max_duration_s + DURATION_TOLERANCE_S:
            raise ApiError(413, "too_long", f"the recording is longer than the {settings.channel} limit of "
                                            f"{_duration_text(settings.max_duration_s)}")
        if result.size_bytes > settings.max_bytes:
            raise ApiError(413, "too_large", f"the recording is {format_bytes(result.size_bytes)} as MP3; "
                                             f"{settings.channel} allows at most {format_bytes(settings.max_bytes)} "
                                             "per file")
        if result.duration_s <= SILENCE_CHECK_MAX_S and _is_digital_silence(mp3_path):
            raise ApiError(400, "silent_audio", "the recording is silent: is the microphone muted?")

        row.mark(Status.SENDING)
        db.session.commit()
        key = f"audio/{row.id}/{result.sha256[:16]}.mp3"
        media_store().put(key, mp3_path, "audio/mpeg", result.sha256)
        row.media_key = key
        db.session.commit()
        _upload_and_post(row, mp3_path)
    row.error = None
    row.mark(Status.READY)
    db.session.commit()
    log.info("outbound audit %s sent by %s on %s: %.1f s, %d bytes, message %s", row.id, row.author, row.channel,
             row.duration_s or 0, row.mp3_size_bytes or 0, row.message_sid)


def _upload_and_post(row: AudioMessage, mp3_path: str) -> None:
    api = twilio_api()
    try:
        if not row.chat_service_sid:
            row.chat_service_sid = conversation_service_sid(row.conversation_sid)
        with open(mp3_path, "rb") as handle:
            media = api.upload_media(row.chat_service_sid, handle, "audio/mpeg", f"voice-message-{row.id}.mp3")
    except TwilioHttpError as exc:
        raise ApiError(502, "twilio_error", f"uploading the MP3 to Twilio failed: {exc}") from exc
    row.media_sid = media["sid"]
    db.session.commit()
    row.message_sid = _create_message_within_window(row)
    # On its own: whatever fails from here on, the audit row must know the message is in the conversation.
    db.session.commit()


def _create_message_within_window(row: AudioMessage) -> str:
    """Attach the uploaded media before MCS garbage-collects it, without ever posting the message twice."""
    api = twilio_api()
    attributes = {"audio_audit_id": row.id}
    deadline = time.monotonic() + ATTACH_WINDOW_S
    delay = 0.5
    while True:
        try:
            message = api.create_message(row.conversation_sid, author=row.author or "agent", media_sid=row.media_sid,
                                         attributes=attributes)
            return message["sid"]
        except TwilioHttpError as exc:
            if exc.transient and exc.status not in REJECTED_BEFORE_PROCESSING:
                # A timeout or 5xx may have created the message anyway: look before sending again, and before
                # giving up (a "failed" the agent would send again).
                existing = _find_posted_message(row, attributes)
                if existing:
                    return existing
            if not exc.transient or time.monotonic() + delay > deadline:
                raise ApiError(502, "twilio_error", f"posting the message to the conversation failed: {exc}") from exc
            log.warning("outbound audit %s: message create failed (%s); retrying in %.1f s", row.id, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 15)


def _find_posted_message(row: AudioMessage, attributes: dict) -> str | None:
    try:
        messages = twilio_api().client.conversations.v1.conversations(row.conversation_sid).messages.list(
            order="desc", limit=20)
    except Exception:  # noqa: BLE001 - if we cannot look, retrying is still the best we can do
        return None
    for message in messages:
        try:
            posted = json.loads(message.attributes or "{}")
        except ValueError:
            continue
        # Other messages' attributes are anyone's JSON: "null" and "[]" are valid too.
        if isinstance(posted, dict) and posted.get("audio_audit_id") == attributes["audio_audit_id"]:
            return message.sid
    return None


def _is_digital_silence(mp3_path: str) -> bool:
    """pydub serves here: a muted microphone records exact zeros. The first seconds nearly always settle it;
    only a clip that starts in digital silence is decoded whole."""
    from pydub import AudioSegment

    if AudioSegment.from_file(mp3_path, format="mp3", duration=SILENCE_PROBE_S).max > 0:
        return False
    return AudioSegment.from_file(mp3_path, format="mp3").max == 0


def _duration_text(seconds: int) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes and rest else (f"{minutes} min" if minutes else f"{rest} s")


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
    participants = participant_cache.get(conversation_sid, twilio_api().list_participants)
    author = event.get("ClientIdentity") or event.get("Author")
    if not is_agent_author(participants, author=author, participant_sid=event.get("ParticipantSid"),
                           source=event.get("Source")):
        return None  # customers are never blocked
    policy = policy_for(channel_from_participants(participants, event.get("Source"), author))
    if not policy.sending_enabled:
        return Rejection(f"audio sending is disabled for the {policy.channel} channel", "sending_disabled",
                         policy.channel, audio, author)
    too_big = [m for m in audio if m.size is not None and m.size > policy.max_bytes]
    if not too_big:
        return None
    return Rejection(f"the audio file is {format_bytes(too_big[0].size)}; {policy.channel} allows at most "
                     f"{format_bytes(policy.max_bytes)} per file", "too_large", policy.channel, audio, author)


def audit_rejection(event: dict, rejection: Rejection) -> None:
    """One failed outbound row per rejected file (the caller commits)."""
    for item in rejection.audio:
        row = AudioMessage(direction="outbound", channel=rejection.channel, conversation_sid=event["ConversationSid"],
                           media_sid=item.sid, author=column_text(rejection.author, 256), source="pre-event",
                           content_type=column_text(item.content_type, 128), size_bytes=item.size,
                           filename=column_text(item.filename, 256), truncated=False, attempts=0,
                           status=Status.QUEUED.value,
                           chat_service_sid=sid_or_none(event.get("ChatServiceSid"), "IS"),
                           account_sid=sid_or_none(event.get("AccountSid"), "AC"))
        row.mark(Status.FAILED, error=f"rejected before publishing: {rejection.reason}", error_code=rejection.code)
        db.session.add(row)
    log.info("pre-event rejected agent audio in %s by %s: %s", event["ConversationSid"], rejection.author,
             rejection.reason)
