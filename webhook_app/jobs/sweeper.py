"""Nothing lost: rows a crashed worker, a lost Redis or a dead request left behind are picked up again.

The sweeper runs in every worker (and in the web process with in-process jobs) every MAINTENANCE_INTERVAL_S,
and on demand as `flask --app webhook_app sweep`. Each step is one conditional UPDATE, so several sweepers on
several dynos never double-handle a row; a job enqueued twice is harmless because the job claims its row
atomically (`queued` -> `downloading`).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import update

from ..extensions import db
from ..models import AudioMessage, Status, Transcript, TranscriptStatus
from ..runtime import outages
from ..runtime.scratch import remove_dead_leftovers
from . import queue
from .relay import DISPATCHED_COLUMNS, NORMALIZE_INBOUND, expand_sdk_messages, processed_by_jobs

log = logging.getLogger(__name__)

WORKING = (Status.DOWNLOADING.value, Status.TRANSCODING.value)
OUTBOUND_UNFINISHED = (Status.QUEUED.value, Status.TRANSCODING.value, Status.SENDING.value)
# Retention is media's (media/retention.py); named by path, as the jobs are, so that jobs/ imports no flow.
RETENTION = "webhook_app.media.retention.delete_expired_media"
TRANSCRIBE = "webhook_app.transcripts.job.transcribe_audio"


def sweep(now: datetime | None = None) -> dict:
    config = current_app.config
    now = now or datetime.now(UTC)
    stuck_before = now - timedelta(seconds=config["SWEEP_STUCK_AFTER_S"])
    gave_up, revived, requeued = _take_back_orphans(now, stuck_before)
    abandoned, abandoned_after_sending = _close_abandoned_uploads(now, stuck_before)
    transcripts = _take_back_transcripts(now, stuck_before)
    db.session.commit()
    _hand_out([*revived, *requeued])
    _hand_out_transcripts([*transcripts["revived"], *transcripts["requeued"]])
    counts = {
        "revived": len(revived),
        "requeued": len(requeued),
        "gave_up": len(gave_up),
        "abandoned": len(abandoned) + len(abandoned_after_sending),
        **{f"transcripts_{name}": len(ids) for name, ids in transcripts.items()},
    }
    if any(counts.values()):
        log.warning("sweeper: %s", counts)
    if abandoned_after_sending:
        log.warning(
            "sweeper: agent sends %s were posted before their request ended; recorded ready", abandoned_after_sending
        )
    return counts


def _take_back_orphans(now: datetime, stuck_before: datetime) -> tuple[list, list, list]:
    """Rows from webhooks whose job died mid-way or was lost: given up after JOB_MAX_ATTEMPTS, else queued again
    (their ids; the rows revived and requeued, as the relay hands rows out)."""
    config = current_app.config
    requeue_before = now - timedelta(seconds=config["SWEEP_REQUEUE_AFTER_S"])
    max_attempts = config["JOB_MAX_ATTEMPTS"]
    from_webhook = processed_by_jobs()
    gave_up = (
        db.session.execute(
            update(AudioMessage)
            .where(
                from_webhook,
                AudioMessage.status.in_(WORKING),
                AudioMessage.updated_at < stuck_before,
                AudioMessage.attempts >= max_attempts,
            )
            .values(
                status=Status.FAILED.value,
                finished_at=now,
                updated_at=now,
                error=f"the worker stopped mid-job {max_attempts} times; giving up",
            )
            .returning(AudioMessage.id)
        )
        .scalars()
        .all()
    )
    revived = db.session.execute(
        update(AudioMessage)
        .where(from_webhook, AudioMessage.status.in_(WORKING), AudioMessage.updated_at < stuck_before)
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
    requeued = db.session.execute(
        update(AudioMessage)
        .where(from_webhook, AudioMessage.status == Status.QUEUED.value, AudioMessage.updated_at < requeue_before)
        .values(updated_at=now, dispatched_at=now)
        .returning(*DISPATCHED_COLUMNS)
    ).all()
    return gave_up, revived, requeued


def _take_back_transcripts(now: datetime, stuck_before: datetime) -> dict[str, list[int]]:
    """Transcripts as audio rows: `running` past SWEEP_STUCK_AFTER_S (the worker died mid-job) back to `queued`, or
    `failed` after JOB_MAX_ATTEMPTS; `queued` past SWEEP_REQUEUE_AFTER_S (the job was lost) enqueued again."""
    config = current_app.config
    max_attempts = config["JOB_MAX_ATTEMPTS"]
    running = (Transcript.status == TranscriptStatus.RUNNING.value, Transcript.updated_at < stuck_before)
    gave_up = (
        db.session.execute(
            update(Transcript)
            .where(*running, Transcript.attempts >= max_attempts)
            .values(
                status=TranscriptStatus.FAILED.value,
                finished_at=now,
                updated_at=now,
                error=f"the worker stopped mid-transcription {max_attempts} times; giving up",
            )
            .returning(Transcript.audio_message_id)
        )
        .scalars()
        .all()
    )
    revived = (
        db.session.execute(
            update(Transcript)
            .where(*running)
            .values(
                status=TranscriptStatus.QUEUED.value,
                updated_at=now,
                error="the worker stopped mid-transcription (crash or restart); retrying",
            )
            .returning(Transcript.audio_message_id)
        )
        .scalars()
        .all()
    )
    requeued = (
        db.session.execute(
            update(Transcript)
            .where(
                Transcript.status == TranscriptStatus.QUEUED.value,
                Transcript.updated_at < now - timedelta(seconds=config["SWEEP_REQUEUE_AFTER_S"]),
                Transcript.audio_message_id.not_in(revived or [0]),
            )
            .values(updated_at=now)
            .returning(Transcript.audio_message_id)
        )
        .scalars()
        .all()
    )
    return {"revived": list(revived), "requeued": list(requeued), "gave_up": list(gave_up)}


def _hand_out_transcripts(audit_ids: list[int]) -> None:
    for audit_id in audit_ids:
        try:
            queue.enqueue(TRANSCRIBE, audit_id, lane=queue.TRANSCRIPTS)
        except Exception as exc:  # noqa: BLE001 - still queued; the next sweep tries again
            outages.log_failure(log, exc, "sweeper could not enqueue the transcript of audit %s", audit_id)
            break


def _close_abandoned_uploads(now: datetime, stuck_before: datetime) -> tuple[list, list]:
    """An agent upload runs inside its request: if that died, nobody will finish it. Say so, and say it right: one
    whose message Twilio had already created (its SID is committed at once) was sent. Answers both lists of ids."""
    unfinished = (
        AudioMessage.source == "agent-api",
        AudioMessage.status.in_(OUTBOUND_UNFINISHED),
        AudioMessage.updated_at < stuck_before,
    )
    abandoned = (
        db.session.execute(
            update(AudioMessage)
            .where(*unfinished, AudioMessage.message_sid.is_(None))
            .values(
                status=Status.FAILED.value,
                finished_at=now,
                updated_at=now,
                error_code="interrupted",
                error="the upload request ended before the message was sent",
            )
            .returning(AudioMessage.id)
        )
        .scalars()
        .all()
    )
    sent = (
        db.session.execute(
            update(AudioMessage)
            .where(*unfinished, AudioMessage.message_sid.is_not(None))
            .values(status=Status.READY.value, finished_at=now, updated_at=now)
            .returning(AudioMessage.id)
        )
        .scalars()
        .all()
    )
    return abandoned, sent


def _hand_out(rows: list) -> None:
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
            queue.enqueue(NORMALIZE_INBOUND, audit_id)
        except Exception as exc:  # noqa: BLE001 - still queued; the next sweep tries again
            outages.log_failure(log, exc, "sweeper could not enqueue audit %s", audit_id)
            break


def run_maintenance() -> None:
    """One round of periodic upkeep: sweep, then retention. A database outage is logged once (outages)."""
    remove_dead_leftovers()
    try:
        sweep()
        outages.DATABASE.reachable()
    except Exception as exc:  # noqa: BLE001 - a sweeper that dies silently is worse than one that logs and tries again
        db.session.rollback()
        outages.log_failure(log, exc, "sweep failed")
    try:
        queue.resolve(RETENTION)()
    except Exception as exc:  # noqa: BLE001
        db.session.rollback()
        outages.log_failure(log, exc, "retention failed")
    finally:
        db.session.remove()


def start_maintenance_thread(app: Flask) -> threading.Thread:
    """A daemon thread that runs maintenance now (so a restart picks up at once) and then periodically."""
    interval = app.config["MAINTENANCE_INTERVAL_S"]
    if interval <= 0:
        raise ValueError("MAINTENANCE_INTERVAL_S must be positive for a maintenance thread (0 turns it off)")
    stop = threading.Event()

    def loop() -> None:
        while True:
            with app.app_context():
                run_maintenance()
            if stop.wait(interval):
                return

    thread = threading.Thread(target=loop, name="maintenance", daemon=True)
    thread.stop = stop  # type: ignore[attr-defined]
    thread.start()
    return thread


def init_app(app: Flask) -> None:
    """With in-process jobs the web process is also the worker: it sweeps too, from its first request on.

    Not at create_app() time: CLI commands build the app as well and must not start background sweeps.
    """
    if app.config.get("REDIS_URL") or app.config["MAINTENANCE_INTERVAL_S"] <= 0:
        return
    started = threading.Lock()
    state = {"thread": None}

    @app.before_request
    def _start_maintenance_once():
        if state["thread"] is None and started.acquire(blocking=False):
            state["thread"] = start_maintenance_thread(app)
