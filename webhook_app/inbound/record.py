"""The `queued` audit rows of a message's audio attachments: what a webhook, an expansion or a backfill stores."""

from __future__ import annotations

from ..audio.detect import is_audio
from ..extensions import db
from ..jobs import queue
from ..models import Status, utcnow
from ..settings.channels import channel_from_webhook
from ..twilio.attachments import MediaItem
from ..twilio.sids import sid_or_none
from ..untrusted_text import column_text
from ..webhooks.group_commit import insert_ignoring_duplicates


def audio_rows(event: dict, media: list[MediaItem]) -> list[dict]:
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


def record_message_media(event: dict, media: list[MediaItem]) -> list[int]:
    """Store one `queued` row per audio media of a message in the session; answer the ids of rows that are new.

    The unique (message_sid, media_sid) constraint makes redelivered messages (Twilio retries, our backfill)
    harmless: the insert does nothing and nothing is enqueued twice. Webhooks take the group-commit path
    (webhooks.group_commit) with the same rows and the same conflict rule.
    """
    statement = insert_ignoring_duplicates(db.session.get_bind().dialect.name)
    new_ids = []
    for row in audio_rows(event, media):
        inserted = db.session.execute(statement, row).first()
        if inserted is not None:
            new_ids.append(inserted.id)
    return new_ids
