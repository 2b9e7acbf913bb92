"""Transcripts as the APIs show them, and the admin audit's full-text search over them (`q=`).

PostgreSQL: `websearch_to_tsquery('simple', q)` (it never refuses its input) against the GIN index on
to_tsvector('simple', coalesce(text, '')) (migration 0010 spells the same expression, which the planner must see to
use the index). SQLite: FTS5 MATCH against `transcripts_fts`, with each word of `q` quoted as an FTS5 string, so no
input is FTS5 syntax (NEAR, AND, *, parentheses, a lone quote are plain text). Either way a word matches a word of
the transcript, case-insensitively.

The match shown with a result is computed here from the text (the same on both databases): a snippet around the
first matching word and the [start, end) offsets of each matching word in it, in UTF-16 code units as JavaScript
indexes strings, never HTML (the page marks them up).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Integer, Select, TextualSelect, column, select, text

from ..domain_errors import DomainError
from ..extensions import db
from ..models import AudioMessage, Status, Transcript, TranscriptStatus, TranscriptView
from ..settings.cache import all_settings

WORD = re.compile(r"\w+")
MAX_QUERY_CHARS = 200
SNIPPET_CHARS = 160
SNIPPET_BEFORE = 50
ELLIPSIS = "…"
PG_MATCH = text("to_tsvector('simple', coalesce(transcripts.text, '')) @@ websearch_to_tsquery('simple', :q)")
SQLITE_MATCH = text("SELECT rowid FROM transcripts_fts WHERE transcripts_fts MATCH :q")


def query_words(q: str) -> list[str]:
    """The words of a search, as the transcript's words are compared: lowercased (casefolded)."""
    return [word.casefold() for word in WORD.findall(q)]


def clean_query(q: str) -> str:
    q = q.replace("\x00", " ").strip()  # PostgreSQL refuses NUL in text
    if len(q) > MAX_QUERY_CHARS:
        raise DomainError("bad_filter", f"q must be at most {MAX_QUERY_CHARS} characters")
    if not query_words(q):
        raise DomainError("bad_filter", "q must contain at least one word (letters or digits)")
    return q


def matching(query: Select[AudioMessage], q: str) -> Select[AudioMessage]:
    """`query` (over AudioMessage) limited to audio whose transcript matches `q`."""
    q = clean_query(q)
    ids: Select[int] | TextualSelect
    if db.engine.dialect.name == "postgresql":
        ids = select(Transcript.audio_message_id).where(PG_MATCH.bindparams(q=q))
    else:
        fts = " ".join('"' + word.replace('"', '""') + '"' for word in query_words(q))
        ids = SQLITE_MATCH.bindparams(q=fts).columns(column("rowid", Integer))
    return query.where(AudioMessage.id.in_(ids))


def match_of(transcript_text: str | None, q: str) -> dict[str, Any] | None:
    """{"snippet": text around the first matching word, "highlights": [[start, end], …] in the snippet}."""
    if not transcript_text:
        return None
    wanted = set(query_words(q))
    spans = [(m.start(), m.end()) for m in WORD.finditer(transcript_text) if m.group().casefold() in wanted]
    if not spans:
        return None
    start = max(0, spans[0][0] - SNIPPET_BEFORE)
    if start:  # from the start of a word
        space = transcript_text.rfind(" ", 0, start)
        start = space + 1 if space >= 0 and start - space < 20 else start
    end = min(len(transcript_text), start + SNIPPET_CHARS)
    prefix = ELLIPSIS if start else ""
    snippet = prefix + transcript_text[start:end] + (ELLIPSIS if end < len(transcript_text) else "")
    shift = len(prefix) - start
    return {
        "snippet": snippet,
        "highlights": [
            [utf16_offset(snippet, s + shift), utf16_offset(snippet, e + shift)]
            for s, e in spans
            if s >= start and e <= end
        ],
    }


def utf16_offset(value: str, index: int) -> int:
    """A string index as JavaScript counts it (UTF-16 code units: an emoji is two), for the page's slice()."""
    return len(value[:index].encode("utf-16-le")) // 2


def transcripts_of(rows: list[AudioMessage]) -> dict[int, Transcript]:
    ids = [row.id for row in rows]
    if not ids:
        return {}
    return {
        t.audio_message_id: t
        for t in db.session.scalars(select(Transcript).where(Transcript.audio_message_id.in_(ids)))
    }


def transcript_dict(row: AudioMessage, transcript: Transcript | None, transcribing: set[str]) -> TranscriptView | None:
    """The `transcript` of an audio message: its row's, else `queued` for audio still on its way on a channel that
    transcribes; None (left out) otherwise."""
    if transcript is not None:
        return transcript.to_dict()
    if row.channel in transcribing and row.status not in (Status.READY.value, Status.FAILED.value):
        return {"status": TranscriptStatus.QUEUED.value, "text": "", "language": None, "segments": [], "model": None}
    return None


def transcribing_channels() -> set[str]:
    return {settings.channel for settings in all_settings() if settings.transcribe}


def add_transcripts(rows: list[AudioMessage], dicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each audio message's dict with its `transcript`, when there is one to show (one query for all)."""
    found = transcripts_of(rows)
    transcribing = transcribing_channels()
    for row, out in zip(rows, dicts):
        shown = transcript_dict(row, found.get(row.id), transcribing)
        if shown is not None:
            out["transcript"] = shown
    return dicts
