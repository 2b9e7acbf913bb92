"""The agent API called by the record panel and players in Flex (cross-origin, Flex token auth)."""

from __future__ import annotations

import os

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from ..extensions import db
from ..media.playback import playback_url
from ..models import AudioMessage
from ..outbound.attempts import Upload
from ..outbound.send import send_agent_audio
from ..runtime.scratch import scratch_dir
from ..settings.channels import conversation_settings
from ..transcripts.search import add_transcripts
from ..web.errors import ApiError
from .access import conversation_access_required

# Cross-origin (Flex's origins, preflights): webhook_app/web/cors.py.
bp = Blueprint("agent_api", __name__, url_prefix="/api/v1")


@bp.get("/conversations/<conversation_sid>/audio")
@conversation_access_required
def list_audio(conversation_sid: str) -> ResponseReturnValue:
    rows = list(
        db.session.scalars(
            select(AudioMessage)
            .where(AudioMessage.conversation_sid == conversation_sid)
            .order_by(AudioMessage.created_at, AudioMessage.id)
        )
    )
    return jsonify({"audio_messages": add_transcripts(rows, [row.to_dict(playback_url(row)) for row in rows])})


@bp.post("/conversations/<conversation_sid>/audio")
@conversation_access_required
def send_audio(conversation_sid: str) -> ResponseReturnValue:
    # Werkzeug answers 413 from Content-Length before reading, and stops a longer stream at this ceiling.
    request.max_content_length = current_app.config["UPLOAD_MAX_BYTES"]
    audio = request.files.get("audio")
    if audio is None:
        raise ApiError(400, "missing_audio", "send the recording as multipart/form-data field 'audio'")
    idempotency_key = request.headers.get("Idempotency-Key", "").strip() or None
    if idempotency_key and len(idempotency_key) > 200:
        raise ApiError(400, "bad_idempotency_key", "Idempotency-Key must be at most 200 characters")
    if idempotency_key and not (idempotency_key.isascii() and idempotency_key.isprintable()):
        # It is stored and compared in a column: PostgreSQL refuses NUL in text (a 500), and a header carries
        # anything else but ASCII as latin-1 mojibake.
        raise ApiError(400, "bad_idempotency_key", "Idempotency-Key must be printable ASCII")
    with scratch_dir("upload") as workdir:
        path = os.path.join(workdir, "upload")
        audio.save(path)
        upload = Upload(path=path, filename=audio.filename, content_type=audio.mimetype)
        body, status = send_agent_audio(conversation_sid, g.flex_user.identity, upload, idempotency_key)
    return jsonify(body), status


# The SQLite default's web worker buffers a body before the view runs; it takes more than a webhook's 1 MiB only
# for views that say so (web/gunicorn_worker.py reads this attribute; a function's attributes are its __dict__,
# which mypy lets us write where `send_audio.takes_uploads = True` is unknown to it).
send_audio.__dict__["takes_uploads"] = True


@bp.get("/conversations/<conversation_sid>/audio-settings")
@conversation_access_required
def audio_settings(conversation_sid: str) -> ResponseReturnValue:
    """What the record panel needs: may this agent send audio here, and within which caps."""
    settings = conversation_settings(conversation_sid)
    return jsonify(
        {
            key: settings.to_dict()[key]
            for key in ("channel", "sending_enabled", "max_bytes", "max_duration_s", "bitrate_kbps")
        }
    )
