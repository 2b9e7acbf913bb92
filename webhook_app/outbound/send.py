"""The agent API's send: an agent's recording becomes an MP3 in the conversation, or a refusal with its reason.

In: the upload and the conversation. Out: the audit row `ready` with the message and media SIDs (201), or `failed`
with the reason the agent is told (DomainError).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..audio.detect import sniff_file
from ..domain_errors import DomainError
from ..extensions import db
from ..media.storage import media_store
from ..models import AudioMessage, Status
from ..observability import bind_audit_id
from ..runtime.scratch import scratch_dir
from ..settings.channels import conversation_settings
from ..transcripts.job import commit_ready
from .attempts import Upload, replay, sent_body, start_attempt
from .convert import check_caps, convert
from .post import upload_and_post

log = logging.getLogger(__name__)


def send_agent_audio(
    conversation_sid: str, identity: str, upload: Upload, idempotency_key: str | None = None
) -> tuple[dict[str, Any], int]:
    row, created = start_attempt(conversation_sid, identity, upload, idempotency_key)
    bind_audit_id(row.id)
    if not created:
        return replay(row)
    try:
        _send(row, upload)
    except DomainError as exc:
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
        raise DomainError("internal_error", "the recording could not be sent; see the audit log") from exc
    return sent_body(row), 201


def _send(row: AudioMessage, upload: Upload) -> None:
    settings = conversation_settings(row.conversation_sid)
    row.channel = settings.channel
    db.session.commit()
    if not settings.sending_enabled:
        raise DomainError("sending_disabled", f"audio sending is disabled for the {settings.channel} channel")
    if row.size_bytes == 0:
        raise DomainError("empty_audio", "the recording is empty (0 bytes)")
    if sniff_file(upload.path) is None:
        raise DomainError("not_audio", "the upload is not audio we can decode (expected WebM, Ogg, MP4, WAV or MP3)")

    row.mark(Status.TRANSCODING)
    db.session.commit()
    with scratch_dir("outbound") as workdir:
        result = convert(upload.path, os.path.join(workdir, "voice-message.mp3"), settings, row.id)
        row.transcode_ms = int(result.elapsed_s * 1000)
        row.duration_s = result.duration_s
        row.mp3_size_bytes = result.size_bytes
        row.mp3_sha256 = result.sha256
        check_caps(result, settings)

        row.mark(Status.SENDING)
        db.session.commit()
        key = f"audio/{row.id}/{result.sha256[:16]}.mp3"
        media_store().put(key, result.path, "audio/mpeg", result.sha256)
        row.media_key = key
        db.session.commit()
        upload_and_post(row, result.path)
    row.error = None
    row.mark(Status.READY)
    commit_ready(row, settings.transcribe)
    log.info(
        "outbound audit %s sent by %s on %s: %.1f s, %d bytes, message %s",
        row.id,
        row.author,
        row.channel,
        row.duration_s or 0,
        row.mp3_size_bytes or 0,
        row.message_sid,
    )
