"""The `queued` audit rows of a message's audio attachments: what a webhook, an expansion or a backfill stores."""

from __future__ import annotations

import functools
from typing import Any, cast

from sqlalchemy import Executable, Table
from sqlalchemy.dialects import postgresql, sqlite

from ..audio.detect import is_audio
from ..extensions import db
from ..jobs import queue
from ..models import AudioMessage, Status, utcnow
from ..settings.channels import channel_from_webhook
from ..twilio.attachments import MediaItem
from ..twilio.sids import sid_or_none
from ..untrusted_text import column_text

# A message's attachment is stored once (the table's unique constraint): redeliveries insert nothing.
KEY = ("message_sid", "media_sid")


def audio_rows(event: dict[str, Any], media: list[MediaItem]) -> list[dict[str, Any]]:
    """The `queued` audit rows (column values) of a message's audio media; other media are not ours."""
    source = event.get("Source")
    author = event.get("Author")
    now = utcnow()
    # With the relay, rows wait for it (dispatched_at NULL); otherwise the caller enqueues them itself.
    dispatched_at = None if queue.relays_new_rows() else now
    rows = []
    for item in media:
        if not is_audio(item.content_type, item.filename):
            continue
        rows.append(
            dict(
                direction="inbound",
                channel=channel_from_webhook(source, author),
                status=Status.QUEUED.value,
                account_sid=sid_or_none(event.get("AccountSid"), "AC"),
                chat_service_sid=sid_or_none(event.get("ChatServiceSid"), "IS"),
                conversation_sid=event["ConversationSid"],
                message_sid=event["MessageSid"],
                media_sid=item.sid,
                author=column_text(author, 256),
                source=column_text(source, 32),
                content_type=column_text(item.content_type, 128),
                filename=column_text(item.filename, 256),
                size_bytes=item.size,
                truncated=False,
                attempts=0,
                created_at=now,
                updated_at=now,
                dispatched_at=dispatched_at,
            )
        )
    return rows


def record_message_media(event: dict[str, Any], media: list[MediaItem]) -> list[int]:
    """Store one `queued` row per audio media of a message in the session; answer the ids of rows that are new.

    The unique (message_sid, media_sid) constraint makes redelivered messages (Twilio retries, our backfill)
    harmless: the insert does nothing and nothing is enqueued twice. Webhooks take the group-commit path
    (webhooks/group_commit.py, with KEY and JSON_INSERT below) with the same rows and the same conflict rule.
    """
    statement = insert_ignoring_duplicates(db.session.get_bind().dialect.name)
    new_ids = []
    for row in audio_rows(event, media):
        inserted = db.session.execute(statement, row).first()
        if inserted is not None:
            new_ids.append(inserted.id)
    return new_ids


# The columns of the rows audio_rows makes; the others keep their defaults (NULL).
COLUMNS = (
    "direction",
    "channel",
    "status",
    "account_sid",
    "chat_service_sid",
    "conversation_sid",
    "message_sid",
    "media_sid",
    "author",
    "source",
    "content_type",
    "filename",
    "size_bytes",
    "truncated",
    "attempts",
    "created_at",
    "updated_at",
    "dispatched_at",
)

# The webhooks' group commit (webhooks/group_commit.py) sends a batch as one JSON array of row objects, turned
# back into rows of the table's own type by PostgreSQL. Its text never changes, whatever the batch size, so psycopg
# prepares it once per connection (a multi-VALUES INSERT is new text, parsed and planned again, for every batch
# size), and json.dumps in C costs a fraction of adapting a parameter per value.
# Rows go in message order: every web process has its own writer, and Twilio's redeliveries can reach two of them
# in opposite orders. In arrival order, each batch would hold one message's uncommitted index entry while waiting
# for the other's: a deadlock, which PostgreSQL breaks after deadlock_timeout (1 s) by failing one whole batch, a
# 503 for every webhook in it. In one order, the later batch waits for the earlier and skips its rows. A message's
# media keep the order they came in (their ids are the order agents see them), the same in every delivery.
JSON_INSERT = (
    f"INSERT INTO audio_messages ({', '.join(COLUMNS)})"
    f" SELECT {', '.join(COLUMNS)}"
    " FROM json_populate_recordset(NULL::audio_messages, %s::json) WITH ORDINALITY AS batch"
    " ORDER BY batch.message_sid, batch.ordinality"
    " ON CONFLICT (message_sid, media_sid) DO NOTHING RETURNING id, message_sid, media_sid"
)


@functools.cache
def insert_ignoring_duplicates(dialect: str) -> Executable:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING, built once per dialect: building it per webhook cost more
    CPU than executing it. On the Table, not the mapped class: Core skips the ORM's bulk-insert bookkeeping.
    Executed with a list of rows, SQLAlchemy sends them as one multi-row INSERT ("insertmanyvalues")."""
    table = cast(Table, AudioMessage.__table__)  # declarative's __table__ is a Table; its annotation says FromClause
    returned = (table.c.id, table.c.message_sid, table.c.media_sid)
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=KEY).returning(*returned)
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=KEY).returning(*returned)
    raise KeyError(f"no INSERT ignoring duplicates for {dialect}")
