"""A webhook's fields as the service reads them: pure functions, no database, no Twilio, no app context."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

from ..twilio.sids import is_sid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaItem:
    sid: str
    content_type: str | None
    filename: str | None
    size: int | None


def parse_media(raw) -> list[MediaItem]:
    """Media as Twilio spells it: `Sid`/`ContentType` in webhooks, `MediaSid` in Event Streams, `sid`/`content_type`
    in REST."""
    if isinstance(raw, str):
        if not raw.strip():
            return []
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes
            log.warning("webhook Media is not JSON we can read: %.200r", raw)
            return []
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        return []
    items = []
    for entry in raw:
        if not isinstance(entry, dict):
            continue
        sid = _first(entry, "Sid", "sid", "MediaSid", "media_sid")
        if not is_sid(sid, "ME"):
            if sid is not None:
                log.warning("webhook Media entry with a malformed media SID: %.100r", sid)
            continue
        items.append(
            MediaItem(
                sid=sid,
                content_type=_text(_first(entry, "ContentType", "content_type", "contentType", "Content-Type")),
                filename=_text(_first(entry, "Filename", "filename", "FileName")),
                size=_declared_size(_first(entry, "Size", "size")),
            )
        )
    return items


# C0 and C1 controls, DEL included. PostgreSQL's text types refuse NUL (the whole INSERT fails: the webhook, and
# every one sharing its commit, would be a 503), and the others have no business in a name or a type either: they
# end up in logs, CSV exports and the admin page.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def column_text(value: str | None, limit: int) -> str | None:
    """Free text from a customer or an agent (webhook fields, upload names and types) as a column takes it: no
    control characters and at most `limit` characters."""
    return CONTROL_CHARACTERS.sub("", value or "")[:limit] or None


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _declared_size(value) -> int | None:
    """A webhook's Size is informational (MCS metadata and the bytes that arrive decide), so garbage becomes None."""
    if isinstance(value, bool):
        return None
    # isdecimal, not isdigit: "²" is a digit that int() refuses.
    if isinstance(value, str) and value.isascii() and value.isdecimal() and len(value) <= 16:
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and 0 <= value < 2**53 else None


def _first(entry: dict, *keys):
    for key in keys:
        if entry.get(key) not in (None, ""):
            return entry[key]
    return None
