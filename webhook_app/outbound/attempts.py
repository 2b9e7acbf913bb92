"""One agent send, one audit row: the row of an attempt, the Idempotency-Key that makes a retried request the same
attempt, and the answer a finished attempt gives again."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..domain_errors import DomainError
from ..extensions import db
from ..jobs.claim import updated_rows
from ..models import AudioMessage, Status, utcnow
from ..untrusted_text import column_text

# The idempotency_key column's width.
IDEMPOTENCY_KEY_MAX = 300


@dataclass
class Upload:
    path: str
    filename: str | None
    content_type: str | None


def replay(row: AudioMessage) -> tuple[dict[str, Any], int]:
    """The answer a finished attempt gave, for a request that repeats its Idempotency-Key."""
    if row.status == Status.READY.value:
        return sent_body(row), 201
    if row.status == Status.FAILED.value:
        # The failure as it was raised the first time: its code gives the same status again (web/errors.py).
        raise DomainError(row.error_code or "internal_error", row.error or "failed")
    raise DomainError(
        "idempotency_key_in_flight",
        "a recording with this Idempotency-Key is still being sent; retry shortly",
        retry_after_s=2,
    )


def sent_body(row: AudioMessage) -> dict[str, Any]:
    return {
        "audit_id": row.id,
        "message_sid": row.message_sid,
        "media_sid": row.media_sid,
        "duration_s": round(row.duration_s or 0.0, 3),
        "size_bytes": row.mp3_size_bytes,
        "content_type": "audio/mpeg",
    }


def start_attempt(
    conversation_sid: str, identity: str, upload: Upload, idempotency_key: str | None
) -> tuple[AudioMessage, bool]:
    """The audit row of this attempt, and whether it is new (False: the Idempotency-Key was seen before).

    The unique key column decides races: of two requests with one key, exactly one insert succeeds.
    """
    key = scoped_idempotency_key(identity, idempotency_key)
    row = AudioMessage(
        direction="outbound",
        channel="other",
        status=Status.QUEUED.value,
        conversation_sid=conversation_sid,
        author=column_text(identity, 256),
        source="agent-api",
        content_type=column_text(upload.content_type, 128),
        filename=column_text(upload.filename, 256),
        size_bytes=os.path.getsize(upload.path),
        idempotency_key=key,
        truncated=False,
        attempts=1,
        started_at=utcnow(),
    )
    for _ in range(2):
        db.session.add(row)
        try:
            db.session.commit()
            return row, True
        except IntegrityError:
            db.session.rollback()
        existing = _holder_of(key)
        if not _release_failed_key(existing):
            return existing, False
        # The earlier attempt failed before anything was posted: this one is a new attempt (the panel's "send
        # again" keeps its key); the failed row keeps its reason under a key of its own.
        row = _copy_of(row)  # the rolled-back insert's object left the session with the rollback
    return existing, False


def _holder_of(key: str | None) -> AudioMessage:
    """The attempt whose Idempotency-Key `key` made this one's insert conflict."""
    existing = db.session.scalar(select(AudioMessage).where(AudioMessage.idempotency_key == key))
    if existing is None:
        raise RuntimeError(f"idempotency key {key!r} conflicted, but no row holds it")
    return existing


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
    released = updated_rows(
        db.session.execute(
            update(AudioMessage)
            .where(
                AudioMessage.id == existing.id,
                AudioMessage.status == Status.FAILED.value,
                AudioMessage.message_sid.is_(None),
                AudioMessage.idempotency_key == existing.idempotency_key,
            )
            .values(idempotency_key=f"retried:{existing.id}")
        )
    )
    db.session.commit()
    return released == 1


def _copy_of(row: AudioMessage) -> AudioMessage:
    columns = (
        "direction",
        "channel",
        "status",
        "conversation_sid",
        "author",
        "source",
        "content_type",
        "filename",
        "size_bytes",
        "idempotency_key",
        "truncated",
        "attempts",
        "started_at",
    )
    return AudioMessage(**{name: getattr(row, name) for name in columns})
