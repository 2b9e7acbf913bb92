"""Database models (SQLAlchemy 2, typed)."""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import Model


def utcnow() -> datetime:
    return datetime.now(UTC)


class Status(str, enum.Enum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    TRANSCODING = "transcoding"
    SENDING = "sending"
    READY = "ready"
    FAILED = "failed"


IN_PROGRESS = (Status.QUEUED.value, Status.DOWNLOADING.value, Status.TRANSCODING.value, Status.SENDING.value)

# A `queued` row no job has been enqueued for yet (migration 0006 spells the same predicate).
UNDISPATCHED = "status = 'queued' AND dispatched_at IS NULL"

CHANNELS = ("whatsapp", "sms", "webchat", "messenger", "other")


class AudioMessage(Model):
    """The audit row of one audio attachment, inbound or outbound."""

    __tablename__ = "audio_messages"
    # A webhook redelivered by Twilio (or by us) must not create a second row or a second transcode.
    __table_args__ = (
        UniqueConstraint("message_sid", "media_sid", name="uq_audio_messages_message_media"),
        # The relay's claim query: only rows waiting for it, so the index stays tiny however large the table grows.
        Index(
            "ix_audio_messages_undispatched", "id", postgresql_where=text(UNDISPATCHED), sqlite_where=text(UNDISPATCHED)
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    direction: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)

    account_sid: Mapped[str | None] = mapped_column(String(34))
    chat_service_sid: Mapped[str | None] = mapped_column(String(34))
    conversation_sid: Mapped[str] = mapped_column(String(34), index=True)
    message_sid: Mapped[str | None] = mapped_column(String(34))
    media_sid: Mapped[str | None] = mapped_column(String(34))
    author: Mapped[str | None] = mapped_column(String(256))
    source: Mapped[str | None] = mapped_column(String(32))

    content_type: Mapped[str | None] = mapped_column(String(128))
    filename: Mapped[str | None] = mapped_column(String(256))
    # A webhook's declared Size is only a claim (and files can exceed 2 GiB): 64-bit so no claim overflows.
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    mp3_size_bytes: Mapped[int | None] = mapped_column(Integer)
    mp3_sha256: Mapped[str | None] = mapped_column(String(64))
    duration_s: Mapped[float | None] = mapped_column(Float)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    media_key: Mapped[str | None] = mapped_column(String(128))
    # Retention deletes old MP3s; the audit row stays, marked with when its media went.
    media_deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Outbound only: "<agent identity>:<Idempotency-Key>", so a retried send returns the first answer.
    idempotency_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    transcode_ms: Mapped[int | None] = mapped_column(Integer)

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    processing_ms: Mapped[int | None] = mapped_column(Integer)
    # When the row was handed to the job queue. NULL on a `queued` row: the relay has not seen it yet (with RQ on
    # PostgreSQL, webhooks only commit rows; see jobs/relay.py).
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def mark(self, status: Status, error: str | None = None, error_code: str | None = None) -> None:
        self.status = status.value
        if status in (Status.DOWNLOADING, Status.SENDING) and self.started_at is None:
            self.started_at = utcnow()
        if status in (Status.READY, Status.FAILED):
            self.finished_at = utcnow()
            if self.started_at is not None:
                self.processing_ms = int((self.finished_at - _aware(self.started_at)).total_seconds() * 1000)
        if error is not None:
            self.error = error[:2000]
        if error_code is not None:
            self.error_code = error_code

    def to_dict(self, playback_url: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "audit_id": self.id,
            "direction": self.direction,
            "channel": self.channel,
            "conversation_sid": self.conversation_sid,
            "message_sid": self.message_sid,
            "media_sid": self.media_sid,
            "status": self.status,
            "content_type": self.content_type,
            "size_bytes": self.size_bytes,
            "mp3_size_bytes": self.mp3_size_bytes,
            "duration_s": round(self.duration_s, 3) if self.duration_s is not None else None,
            "created_at": iso_time(self.created_at),
            "updated_at": iso_time(self.updated_at),
        }
        if self.status == Status.READY.value and playback_url:
            out["playback_url"] = playback_url
        if self.status == Status.FAILED.value:
            out["error"] = self.error or "unknown error"
        return out


class TranscriptSegment(TypedDict):
    """One stretch of speech: seconds from the start of the file, and what was said."""

    start: float
    end: float
    text: str


class TranscriptView(TypedDict):
    """A transcript as the API shows it (Transcript.to_dict)."""

    status: str
    text: str
    language: str | None
    segments: list[TranscriptSegment]
    model: str | None
    error: NotRequired[str]  # failed
    deleted_at: NotRequired[str | None]  # retention deleted the text


class TranscriptStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    NO_SPEECH = "no_speech"
    FAILED = "failed"


class Transcript(Model):
    """What was said in one audio message (webhook_app/transcripts/). Searched by full text: PostgreSQL's GIN index
    on to_tsvector('simple', text), SQLite's FTS5 table `transcripts_fts` kept by triggers (migration 0010)."""

    __tablename__ = "transcripts"

    audio_message_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("audio_messages.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), index=True)
    text: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(8))
    segments: Mapped[list[TranscriptSegment] | None] = mapped_column(JSON)
    model: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Retention deleted the text (with the audio, or after TRANSCRIPT_RETENTION_DAYS); the row says when.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    def to_dict(self) -> TranscriptView:
        """The contract's `transcript`: {status, text, language, segments, model}, `error` when failed."""
        out: TranscriptView = {
            "status": self.status,
            "text": self.text or "",
            "language": self.language,
            "segments": self.segments or [],
            "model": self.model,
        }
        if self.status == TranscriptStatus.FAILED.value:
            out["error"] = self.error or "unknown error"
        if self.deleted_at is not None:
            out["deleted_at"] = iso_time(self.deleted_at)
        return out


# Full-text search over transcripts is built by migration 0010 with SQL these models do not describe: SQLite's FTS5
# table `transcripts_fts` (and its shadow tables transcripts_fts_data, _idx, _docsize, _config) and PostgreSQL's GIN
# expression index ix_transcripts_fts. Autogenerate's comparison leaves them out (migrations/env.py), or
# `alembic check` would ask to drop them.
FTS_OBJECTS = ("transcripts_fts", "ix_transcripts_fts")


def described_by_models(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's include_object: everything but the full-text objects."""
    return not (name or "").startswith(FTS_OBJECTS)


class StoredMedia(Model):
    """The embedded media store: MP3 bytes kept in the database (an S3 store can replace it)."""

    __tablename__ = "stored_media"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ChannelSettings(Model):
    """A channel's audio settings (settings/cache.py reads them, settings/rules.py changes them). Rows are created
    by a migration with Twilio's limits as defaults."""

    __tablename__ = "channel_settings"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    sending_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    max_bytes: Mapped[int] = mapped_column(Integer)
    max_duration_s: Mapped[int] = mapped_column(Integer, default=900)
    bitrate_kbps: Mapped[int] = mapped_column(Integer, default=64)
    normalize_inbound: Mapped[bool] = mapped_column(Boolean, default=True)
    loudness_normalize: Mapped[bool] = mapped_column(Boolean, default=False)
    # Transcripts are personal data an operator decides on: off unless turned on (the sandbox turns it on).
    transcribe: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    transcribe_language: Mapped[str] = mapped_column(String(8), default="auto", server_default="auto")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(256))


class SettingsChange(Model):
    """Every settings change is itself audited: who, when, which key, old and new value."""

    __tablename__ = "settings_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), index=True)
    key: Mapped[str] = mapped_column(String(32))
    old_value: Mapped[str | None] = mapped_column(Text)  # JSON
    new_value: Mapped[str | None] = mapped_column(Text)  # JSON
    changed_by: Mapped[str] = mapped_column(String(256))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "key": self.key,
            "old_value": json.loads(self.old_value) if self.old_value is not None else None,
            "new_value": json.loads(self.new_value) if self.new_value is not None else None,
            "changed_by": self.changed_by,
            "changed_at": iso_time(self.changed_at),
        }


class AdminSession(Model):
    """A signed-in /admin page, known to the server so that signing out ends it everywhere the cookie was copied.

    Keyed by the hash of the secret the cookie carries: the table alone opens no session.
    """

    __tablename__ = "admin_sessions"

    secret_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    identity: Mapped[str] = mapped_column(String(256), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RefusalHit(Model):
    """One refused attempt counted against a limit, for every process of the deployment (without Redis; see
    webhook_app/web/ratelimit.py). Keyed by digests: neither a client's address nor a token is stored."""

    __tablename__ = "refusal_hits"

    bucket: Mapped[str] = mapped_column(String(64), primary_key=True)
    member: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[float] = mapped_column(Float, index=True)


class SettingsVersion(Model):
    """One row, bumped on every settings change: processes compare it to reload their cached settings."""

    __tablename__ = "settings_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=1)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone=True columns.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return _aware(value).isoformat().replace("+00:00", "Z")
