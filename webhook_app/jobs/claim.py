"""A job's claim on its row: one conditional UPDATE, so a job enqueued twice (a redelivered RQ job, the sweeper
racing a relay) does its work once.

Every job of the service keeps its progress in a row of its own (an audio message, a transcript) with a status, an
attempt count and timestamps; whoever moves that row from its waiting status to its working one owns the attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Result, update
from sqlalchemy.orm import InstrumentedAttribute

from ..extensions import db
from ..models import AudioMessage, Transcript


def claim(
    model: type[AudioMessage] | type[Transcript], row: ColumnElement[bool], waiting: str, working: str, now: datetime
) -> int | None:
    """Move the `row` of `model` from `waiting` to `working`, counting the attempt, and commit (with whatever the
    session already holds). Answers the attempt's number, None when the row was not `waiting` (someone else has
    it, or it is finished)."""
    attempt: int | None = db.session.execute(
        update(model)
        .where(row, model.status == waiting)
        .values(status=working, attempts=model.attempts + 1, started_at=now, updated_at=now)
        .returning(model.attempts)
    ).scalar()
    db.session.commit()
    return attempt


def give_up(
    model: type[AudioMessage] | type[Transcript],
    key: InstrumentedAttribute[int],
    stuck: tuple[ColumnElement[bool], ...],
    max_attempts: int,
    failed: str,
    now: datetime,
    error: str,
) -> Sequence[int]:
    """The sweeper's last word on `stuck` rows whose jobs have had `max_attempts` tries: `failed` with `error`,
    without committing (the sweep's transaction does). Answers their `key`s."""
    return db.session.scalars(
        update(model)
        .where(*stuck, model.attempts >= max_attempts)
        .values(status=failed, finished_at=now, updated_at=now, error=error)
        .returning(key)
    ).all()


def updated_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE executed through the session changed (its cursor's rowcount)."""
    return cast(CursorResult[Any], result).rowcount
