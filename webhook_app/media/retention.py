"""Retention: after RETENTION_DAYS the audio itself is deleted; its audit row stays, marked `media_deleted_at`.

`delete_expired_media()` is safe to run often and from several processes at once: it works in batches, skips
rows another process has locked (PostgreSQL), treats an object that is already gone as deleted, and only marks a
row once its media is really gone (so a store outage just means the next run tries again). The periodic
maintenance round calls it; operators run `flask --app webhook_app retention run`.

Transcripts: their text and segments go with the audio (the row stays, `deleted_at` set, shown in the audit), unless
TRANSCRIPT_RETENTION_DAYS keeps the text longer; then it goes once the note is that old.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import ColumnElement, CursorResult, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..models import AudioMessage, Status, Transcript, utcnow
from .storage import MediaStore, media_store

log = logging.getLogger(__name__)

BATCH_SIZE = 100
MAX_PER_RUN = 2000  # one maintenance round stays short; the next round (or the CLI) does the rest
# A store down (S3 unreachable) fails every delete, each after the client's own retries (tens of seconds): the
# run stops after this many failures in a row rather than walk every expired row, holding its batch's row locks
# and the maintenance thread (the sweeper's) for hours. One object the store keeps refusing is skipped.
MAX_FAILURES_IN_A_ROW = 3

# Finished rows only: a failed outbound send can hold a stored MP3 too. Rows still in progress are left alone.
FINISHED = (Status.READY.value, Status.FAILED.value)


def retention_cutoff(now: datetime | None = None, days: int | None = None) -> datetime | None:
    """Media of rows created before this instant is expired; None when retention is off (RETENTION_DAYS=0)."""
    days = current_app.config.get("RETENTION_DAYS", 0) if days is None else days
    if not days or days <= 0:
        return None
    now = now or utcnow()
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now - timedelta(days=days)


def _expired(cutoff: datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        AudioMessage.status.in_(FINISHED),
        AudioMessage.media_key.is_not(None),
        AudioMessage.media_deleted_at.is_(None),
        AudioMessage.created_at < cutoff,
    )


def count_expired_media(now: datetime | None = None, days: int | None = None) -> int:
    cutoff = retention_cutoff(now, days)
    if cutoff is None:
        return 0
    return db.session.scalar(select(func.count()).select_from(AudioMessage).where(*_expired(cutoff))) or 0


def delete_expired_media(
    now: datetime | None = None,
    *,
    days: int | None = None,
    batch_size: int = BATCH_SIZE,
    limit: int | None = MAX_PER_RUN,
) -> int:
    """Delete the stored media of audio messages older than RETENTION_DAYS; answer how many were deleted.

    Each batch commits on its own. `limit` caps one call (None: until nothing is left).
    """
    return _delete_expired(now, days, batch_size, limit)[0]


def _delete_expired(now: datetime | None, days: int | None, batch_size: int, limit: int | None) -> tuple[int, int]:
    cutoff = retention_cutoff(now, days)
    if cutoff is None:
        return 0, 0
    store = media_store()
    deleted = failed = failures_in_a_row = 0
    last_id = 0
    while (limit is None or deleted < limit) and failures_in_a_row < MAX_FAILURES_IN_A_ROW:
        size = batch_size if limit is None else min(batch_size, limit - deleted)
        rows = _expired_batch(cutoff, last_id, size)
        if not rows:
            break
        for row in rows:
            last_id = row.id
            if not _delete_media(store, row):
                failed += 1
                failures_in_a_row += 1
                if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                    log.warning("retention: %d deletes failed in a row; stopping until the next run", failed)
                    break
                continue
            deleted += 1
            failures_in_a_row = 0
        if not current_app.config.get("TRANSCRIPT_RETENTION_DAYS"):
            delete_transcripts([row.id for row in rows if row.media_deleted_at is not None])
        db.session.commit()
    deleted_text = _delete_expired_transcripts(now)
    if deleted_text:
        log.info("retention: %d transcript(s) kept longer deleted", deleted_text)
    if deleted or failed:
        log.info(
            "retention: deleted the media of %d audio message(s) created before %s (%d failed)",
            deleted,
            cutoff.isoformat(),
            failed,
        )
    return deleted, failed


def _expired_batch(cutoff: datetime, after_id: int, size: int) -> Sequence[AudioMessage]:
    """The next `size` rows whose media has expired, by id after `after_id`, locked for this sweeper."""
    return db.session.scalars(
        select(AudioMessage)
        .where(AudioMessage.id > after_id, *_expired(cutoff))
        .order_by(AudioMessage.id)
        .limit(size)
        .with_for_update(skip_locked=True)  # PostgreSQL: two sweepers split the work; SQLite ignores it
    ).all()


def _delete_media(store: MediaStore, row: AudioMessage) -> bool:
    """Delete `row`'s stored media and mark it deleted; False (logged) when the store refused, to retry next run."""
    try:
        # _expired() selects only rows with a media_key. An object already gone counts as deleted.
        store.delete(cast(str, row.media_key))
    except SQLAlchemyError:
        raise  # the database store: the session is broken, the caller rolls back
    except Exception:  # noqa: BLE001 - S3 down or refusing: leave the row for the next run
        log.exception("retention: could not delete %s (audit %s); will retry", row.media_key, row.id)
        return False
    row.media_deleted_at = utcnow()
    return True


def delete_transcripts(audit_ids: list[int]) -> int:
    """Delete the text of these audio messages' transcripts (their rows stay, with `deleted_at`). The caller
    commits."""
    if not audit_ids:
        return 0
    now = utcnow()
    # An UPDATE answers a CursorResult (which has rowcount); Session.execute is typed with the base Result.
    result = cast(
        CursorResult[Any],
        db.session.execute(
            update(Transcript)
            .where(Transcript.audio_message_id.in_(audit_ids), Transcript.deleted_at.is_(None))
            .values(text=None, segments=None, deleted_at=now, updated_at=now)
        ),
    )
    return result.rowcount


def _delete_expired_transcripts(now: datetime | None) -> int:
    """With TRANSCRIPT_RETENTION_DAYS, text outlives its audio: deleted once it is that old and its audio is gone."""
    days = current_app.config.get("TRANSCRIPT_RETENTION_DAYS")
    if not days:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=days)
    ids = db.session.scalars(
        select(Transcript.audio_message_id)
        .join(AudioMessage, AudioMessage.id == Transcript.audio_message_id)
        .where(
            Transcript.deleted_at.is_(None),
            AudioMessage.media_deleted_at.is_not(None),
            AudioMessage.created_at < cutoff,
        )
        .limit(MAX_PER_RUN)
    ).all()
    count = delete_transcripts(list(ids))
    db.session.commit()
    return count


retention_cli = AppGroup("retention", help="Delete stored audio older than RETENTION_DAYS (audit rows stay).")


@retention_cli.command("run")
@click.option("--days", type=click.IntRange(min=1), help="Override RETENTION_DAYS for this run.")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--batch-size", type=click.IntRange(min=1), default=BATCH_SIZE, show_default=True)
def retention_run(days: int | None, dry_run: bool, batch_size: int) -> None:
    """Delete the media of every audio message older than the retention period, in batches."""
    cutoff = retention_cutoff(days=days)
    if cutoff is None:
        click.echo("RETENTION_DAYS is 0: media is kept forever; nothing deleted (use --days to run once).")
        return
    if dry_run:
        click.echo(
            f"would delete the media of {count_expired_media(days=days)} audio message(s) "
            f"created before {cutoff.isoformat()}"
        )
        return
    deleted, failed = _delete_expired(None, days, batch_size, None)
    click.echo(f"deleted the media of {deleted} audio message(s) created before {cutoff.isoformat()}")
    if failed:
        raise click.ClickException(f"the media of {failed} could not be deleted (see the log); run again later")
