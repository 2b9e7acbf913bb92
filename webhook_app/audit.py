"""The audit trail: "what audio was sent or received on this channel today, and what failed"."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select

from .domain_errors import DomainError
from .extensions import db
from .media.playback import playback_url
from .models import CHANNELS, AudioMessage, Status, Transcript, iso_time
from .transcripts.search import add_transcripts, match_of, matching, transcribing_channels, transcript_dict
from .twilio.sids import is_sid

DIRECTIONS = ("inbound", "outbound")
STATUSES = tuple(s.value for s in Status)
RELATIVE = re.compile(r"(\d+)\s*([smhdw])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_PAGE = 1_000_000
# A cell a spreadsheet would run as a formula: authors and error texts come from outside (an SMS author starts
# with "+", a web chat identity can be "=HYPERLINK(...)").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = (
    "audit_id",
    "created_at",
    "updated_at",
    "direction",
    "channel",
    "status",
    "conversation_sid",
    "message_sid",
    "media_sid",
    "author",
    "content_type",
    "size_bytes",
    "mp3_size_bytes",
    "duration_s",
    "transcode_ms",
    "processing_ms",
    "error_code",
    "error",
    "transcript_status",
    "transcript_text",
)


def parse_time(value: str, name: str) -> datetime:
    """ISO 8601 (`2026-11-25`, `2026-11-25T08:00:00Z`) or relative to now (`2h`, `30m`, `7d`)."""
    value = value.strip()
    try:
        match = RELATIVE.fullmatch(value)
        if match:
            return datetime.now(UTC) - timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # In UTC: SQLite compares the stored UTC text, so another offset would shift the window by that much.
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: "99999999d", or year 9999 moved past UTC
        raise DomainError(
            "bad_filter", f"{name}={value!r}: use ISO 8601 (2026-11-25T08:00:00Z) or 2h/30m/7d within years 1-9999"
        ) from None


def filtered_query(args: Mapping[str, str]) -> Select[AudioMessage]:
    query = select(AudioMessage)
    for name, allowed, column in (
        ("direction", DIRECTIONS, AudioMessage.direction),
        ("channel", CHANNELS, AudioMessage.channel),
        ("status", STATUSES, AudioMessage.status),
    ):
        value = (args.get(name) or "").strip()
        if value:
            if value not in allowed:
                raise DomainError("bad_filter", f"{name} must be one of {', '.join(allowed)}")
            query = query.where(column == value)
    conversation = (args.get("conversation_sid") or "").strip()
    if conversation:
        if not is_sid(conversation, "CH"):
            raise DomainError("bad_filter", "conversation_sid must be a conversation SID (CH followed by 32 hex)")
        query = query.where(AudioMessage.conversation_sid == conversation)
    if args.get("since"):
        query = query.where(AudioMessage.created_at >= parse_time(args["since"], "since"))
    if args.get("until"):
        query = query.where(AudioMessage.created_at < parse_time(args["until"], "until"))
    if (args.get("q") or "").strip():
        query = matching(query, args["q"])  # full text over transcripts
    return query


def spreadsheet_safe(value: object) -> object:
    """The CSV cell for `value`: empty for None, and text that a spreadsheet would evaluate prefixed with a
    quote (OWASP's advice for CSV injection), so it shows as typed."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def audit_dict(row: AudioMessage, with_playback: bool = True) -> dict[str, Any]:
    """The contract's audio-message shape, plus the details an admin needs to explain a row."""
    out = row.to_dict(playback_url(row) if with_playback else None)
    out.update(
        {
            "author": row.author,
            "source": row.source,
            "filename": row.filename,
            "error_code": row.error_code,
            "sha256": row.sha256,
            "truncated": row.truncated,
            "attempts": row.attempts,
            "started_at": iso_time(row.started_at),
            "finished_at": iso_time(row.finished_at),
            "processing_ms": row.processing_ms,
            "transcode_ms": row.transcode_ms,
        }
    )
    return out


def audit_page(args: Mapping[str, str]) -> dict[str, Any]:
    try:
        page = max(1, int(args.get("page", 1)))
        per_page = min(500, max(1, int(args.get("per_page", 50))))
    except ValueError:
        raise DomainError("bad_filter", "page and per_page must be whole numbers") from None
    if page > MAX_PAGE:  # the OFFSET must fit a 64-bit integer in the database
        raise DomainError("bad_filter", f"page must be at most {MAX_PAGE}")
    query = filtered_query(args)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = list(
        db.session.scalars(
            query.order_by(AudioMessage.created_at.desc(), AudioMessage.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    found = add_transcripts(rows, [audit_dict(row) for row in rows])
    q = (args.get("q") or "").strip()
    if q:
        for out in found:
            match = match_of((out.get("transcript") or {}).get("text"), q)
            if match is not None:
                out["match"] = match
    return {"audio_messages": found, "page": page, "per_page": per_page, "total": total}


def audit_csv(args: Mapping[str, str]) -> Iterator[str]:
    """Streamed, so an export of a busy month does not sit in memory."""
    query = (
        filtered_query(args)
        .add_columns(Transcript)
        .outerjoin(Transcript, Transcript.audio_message_id == AudioMessage.id)
        .order_by(AudioMessage.created_at.desc(), AudioMessage.id.desc())
    )
    transcribing = transcribing_channels()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row, transcript in db.session.execute(query.execution_options(yield_per=500)):
        data = audit_dict(row, with_playback=False)  # links expire; a CSV outlives them
        shown = transcript_dict(row, transcript, transcribing)
        data["transcript_status"], data["transcript_text"] = (shown["status"], shown["text"]) if shown else (None, None)
        writer.writerow([spreadsheet_safe(data.get(column)) for column in CSV_COLUMNS])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
