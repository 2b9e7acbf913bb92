"""How inbound rows reach their jobs when no request hands them over, and come back to them when a job was lost.

The jobs' own enqueueing is theirs (normalize.enqueue_new_rows after a commit, expand.enqueue_expand_once per web
chat message); this module is what inbound registers with jobs/ (jobs/registry.py, from create_app): its outbox,
whose new rows the relay hands to RQ on PostgreSQL (jobs/relay.py), and its recovery step, which the sweeper runs
(jobs/sweeper.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import ColumnElement, Row, or_, select, update

from ..extensions import db
from ..jobs import queue
from ..jobs.claim import give_up
from ..jobs.registry import Outbox, Recovered, registry
from ..jobs.relay import BATCH_ROWS
from ..models import AudioMessage, Status, utcnow
from ..runtime import outages
from .expand import expand_sdk_messages
from .normalize import WORKING, process_inbound

log = logging.getLogger(__name__)

# What the insert trigger of migration 0006 NOTIFYs when a statement inserts queued rows.
QUEUED_CHANNEL = "audio_messages_queued"

# What a row handed to the jobs must say for its SDK message to be expanded too (expand.expand_sdk_messages).
DISPATCHED_COLUMNS = (
    AudioMessage.id,
    AudioMessage.source,
    AudioMessage.account_sid,
    AudioMessage.chat_service_sid,
    AudioMessage.conversation_sid,
    AudioMessage.message_sid,
    AudioMessage.author,
)
DispatchedRow = Row[int, str | None, str | None, str | None, str, str | None, str | None]


def init_app(app: Flask) -> None:
    jobs = registry(app)
    jobs.add_outbox(Outbox(QUEUED_CHANNEL, relay_waiting_rows))
    jobs.add_recovery("inbound", take_back_orphans)


def processed_by_jobs() -> ColumnElement[bool]:
    """Rows that jobs process: those recorded from webhooks (an agent's native Flex audio too), not the agent
    API's uploads, which run inside their request."""
    return or_(AudioMessage.source.is_(None), AudioMessage.source.notin_(("agent-api", "pre-event")))


def relay_waiting_rows(limit: int = BATCH_ROWS) -> int:
    """Claim up to `limit` queued rows no job was enqueued for, enqueue their jobs; answer how many."""
    now = utcnow()
    waiting = (
        select(AudioMessage.id)
        .where(AudioMessage.status == Status.QUEUED.value, AudioMessage.dispatched_at.is_(None), processed_by_jobs())
        .order_by(AudioMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed: list[DispatchedRow] = list(
        db.session.execute(
            update(AudioMessage)
            .where(AudioMessage.id.in_(waiting))
            .values(dispatched_at=now)
            .returning(*DISPATCHED_COLUMNS)
        ).all()
    )
    db.session.commit()
    if not claimed:
        return 0
    claimed.sort(key=lambda row: row.id)
    try:
        # Expansion first: a worker that dies between the two leaves these rows claimed with no job, and the
        # sweeper, which hands them out again, expands them too (once per message). The other order would lose
        # the attachments the webhook did not show, since the jobs would finish the rows the sweeper looks for.
        expand_sdk_messages(claimed)
        queue.runner().enqueue_many([(queue.job_path(process_inbound), (row.id,)) for row in claimed])
    except Exception:
        # Give them back: the next round (here or on another worker) tries again; nothing waits for the sweeper.
        db.session.execute(
            update(AudioMessage)
            .where(AudioMessage.id.in_([row.id for row in claimed]), AudioMessage.dispatched_at == now)
            .values(dispatched_at=None)
        )
        db.session.commit()
        raise
    return len(claimed)


def take_back_orphans(now: datetime, stuck_before: datetime) -> Recovered:
    """Rows from webhooks whose job died mid-way or was lost: given up after JOB_MAX_ATTEMPTS, else queued again,
    and their jobs enqueued once the sweep has committed."""
    config = current_app.config
    max_attempts = config["JOB_MAX_ATTEMPTS"]
    from_webhook = processed_by_jobs()
    stuck = (from_webhook, AudioMessage.status.in_(WORKING), AudioMessage.updated_at < stuck_before)
    gave_up = give_up(
        AudioMessage,
        AudioMessage.id,
        stuck,
        max_attempts,
        Status.FAILED.value,
        now,
        f"the worker stopped mid-job {max_attempts} times; giving up",
    )
    revived: Sequence[DispatchedRow] = db.session.execute(
        update(AudioMessage)
        .where(*stuck)
        .values(
            status=Status.QUEUED.value,
            updated_at=now,
            dispatched_at=now,
            error="the worker stopped mid-job (crash or restart); retrying",
        )
        .returning(*DISPATCHED_COLUMNS)
    ).all()
    # Queued long ago and still queued: its job was lost (Redis down at enqueue time, a flushed queue, no relay
    # running). Enqueued here, so marked dispatched: a relay must not enqueue it a second time, nor expand its
    # SDK message, which the sweeper does instead.
    requeued: Sequence[DispatchedRow] = db.session.execute(
        update(AudioMessage)
        .where(
            from_webhook,
            AudioMessage.status == Status.QUEUED.value,
            AudioMessage.updated_at < now - timedelta(seconds=config["SWEEP_REQUEUE_AFTER_S"]),
        )
        .values(updated_at=now, dispatched_at=now)
        .returning(*DISPATCHED_COLUMNS)
    ).all()
    return Recovered(
        counts={"revived": len(revived), "requeued": len(requeued), "gave_up": len(gave_up)},
        hand_out=lambda: _hand_out([*revived, *requeued]),
    )


def _hand_out(rows: list[DispatchedRow]) -> None:
    try:
        # Before their own jobs, as the relay does: once those finish the rows, no later sweep would expand them.
        # Revived rows too: with in-process jobs, the crash that stopped their job took a pending expansion (and
        # its once-key) with it; with RQ the once-key makes this a no-op.
        expand_sdk_messages(rows)
    except Exception as exc:  # noqa: BLE001 - the rows stay queued; the next sweep expands and enqueues them
        outages.log_failure(log, exc, "sweeper could not enqueue expand_message; leaving %d rows queued", len(rows))
        return
    for audit_id in (row.id for row in rows):
        try:
            queue.enqueue(process_inbound, audit_id)
        except Exception as exc:  # noqa: BLE001 - still queued; the next sweep tries again
            outages.log_failure(log, exc, "sweeper could not enqueue audit %s", audit_id)
            break
