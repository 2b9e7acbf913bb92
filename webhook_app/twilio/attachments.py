"""A message's media (its attachments) as Twilio describes them, in webhooks, Event Streams and REST answers: pure
functions, no database, no Twilio call, no app context. Read by both flows: inbound (the rows to download) and
outbound's pre-event hook (the files an agent is about to publish)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from .sids import is_sid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaItem:
    sid: str
    content_type: str | None
    filename: str | None
    size: int | None


def parse_media(raw: object) -> list[MediaItem]:
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
        if not isinstance(sid, str) or not is_sid(sid, "ME"):
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


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _declared_size(value: object) -> int | None:
    """A webhook's Size is informational (MCS metadata and the bytes that arrive decide), so garbage becomes None."""
    if isinstance(value, bool):
        return None
    # isdecimal, not isdigit: "²" is a digit that int() refuses.
    if isinstance(value, str) and value.isascii() and value.isdecimal() and len(value) <= 16:
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and 0 <= value < 2**53 else None


def _first(entry: dict[str, object], *keys: str) -> object:
    for key in keys:
        if entry.get(key) not in (None, ""):
            return entry[key]
    return None
