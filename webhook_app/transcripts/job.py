"""The transcription job: a `ready` audio message's MP3 to text, on the transcripts lane (jobs/queue.py).

In: an audit id whose transcript row is `queued` (commit_ready, written in the transaction that made the audio
`ready`). Out: the transcript `done` or `no_speech`, or `failed` with its reason; never a crashed worker. The row is
claimed with one conditional UPDATE (`queued` -> `running`), so a job enqueued twice (a redelivery, the sweeper)
transcribes once. A worker killed mid-job leaves the row `running`: the sweeper puts it back (take_back_transcripts,
the step this module registers with jobs/registry.py).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from flask import Flask, current_app
from rq.timeouts import JobTimeoutException
from sqlalchemy import select, update

from ..extensions import db
from ..jobs import queue
from ..jobs.claim import claim, give_up, updated_rows
from ..jobs.registry import Recovered, registry
from ..media.storage import media_store
from ..models import AudioMessage, Status, Transcript, TranscriptStatus, utcnow
from ..observability import bind_audit_id
from ..runtime import outages
from ..runtime.greenlets import is_gevent_process
from ..runtime.scratch import scratch_dir
from ..settings.cache import Settings, all_settings, settings_for
from .engine import INSTALL_HINT, TranscriptionError, TranscriptionUnavailable, load_count, transcribe
from .engine import Transcript as TranscriptResult  # what the model heard; models.Transcript is its row

log = logging.getLogger(__name__)

NOT_INSTALLED = f"transcription is not installed ({INSTALL_HINT})"
T = TypeVar("T")


def installed() -> bool:
    """Whether this process has the `transcribe` extra (faster-whisper); the model itself is checked when loaded."""
    return importlib.util.find_spec("faster_whisper") is not None


def init_app(app: Flask) -> None:
    """What transcription hands to jobs/ (jobs/registry.py): its lane, worked by a process of its own where the
    model can load (jobs/worker.py), and its recovery step for the sweeper."""
    jobs = registry(app)
    jobs.run_lane_apart(queue.TRANSCRIPTS, installed)
    jobs.add_recovery("transcripts", take_back_transcripts)


def commit_ready(row: AudioMessage, transcribes: bool) -> None:
    """Commit `row`, just marked `ready` (by the inbound job or the agent API's send), with its transcript row
    `queued` in the same transaction when its channel transcribes; then hand the transcript to its lane. Playback
    never waits: the row is committed `ready` before the transcription is even enqueued."""
    queued = _queue_transcript(row, transcribes)
    db.session.commit()
    if queued:
        enqueue_transcript(row.id)


def _queue_transcript(row: AudioMessage, transcribes: bool) -> bool:
    """Before the commit that makes `row` ready: its transcript row, `queued`, when its channel transcribes. Answers
    whether one was added."""
    if not transcribes or db.session.get(Transcript, row.id) is not None:
        return False
    now = utcnow()
    db.session.add(
        Transcript(
            audio_message_id=row.id, status=TranscriptStatus.QUEUED.value, attempts=0, created_at=now, updated_at=now
        )
    )
    return True


def enqueue_transcript(audit_id: int) -> None:
    """After the commit: hand the transcript to the transcripts lane. A queue that cannot be reached leaves it
    `queued` for the sweeper."""
    try:
        queue.enqueue(transcribe_audio, audit_id, lane=queue.TRANSCRIPTS)
    except Exception:  # noqa: BLE001 - Redis down: the sweeper enqueues it later
        log.exception("could not enqueue the transcript of audit %s; left queued for the sweeper", audit_id)


def queue_missing_transcripts(since: datetime) -> int:
    """Backfill: `ready` audio since `since` on channels that transcribe now, without a transcript (made before the
    channel's `transcribe` was turned on), queued and enqueued. Answers how many."""
    channels = [settings.channel for settings in all_settings() if settings.transcribe]
    if not channels:
        return 0
    ids = db.session.scalars(
        select(AudioMessage.id)
        .outerjoin(Transcript, Transcript.audio_message_id == AudioMessage.id)
        .where(
            Transcript.audio_message_id.is_(None),
            AudioMessage.status == Status.READY.value,
            AudioMessage.channel.in_(channels),
            AudioMessage.media_key.is_not(None),
            AudioMessage.media_deleted_at.is_(None),
            AudioMessage.created_at >= since,
        )
    ).all()
    now = utcnow()
    db.session.add_all(
        Transcript(
            audio_message_id=audit_id, status=TranscriptStatus.QUEUED.value, attempts=0, created_at=now, updated_at=now
        )
        for audit_id in ids
    )
    db.session.commit()
    for audit_id in ids:
        enqueue_transcript(audit_id)
    return len(ids)


@queue.job
def transcribe_audio(audit_id: int) -> str:
    """Transcribe one audio message's MP3; always ends `done`, `no_speech` or `failed` (or back to `queued` for a
    retry)."""
    bind_audit_id(audit_id)
    attempt = claim(
        Transcript,
        Transcript.audio_message_id == audit_id,
        TranscriptStatus.QUEUED.value,
        TranscriptStatus.RUNNING.value,
        utcnow(),
    )
    if attempt is None:
        log.info("transcript of audit %s is not queued: skipping (a duplicate job)", audit_id)
        return "skipped"
    transcript = db.session.get_one(Transcript, audit_id)  # claimed just now: it is there
    try:
        return _transcribe_and_record(transcript)
    except Exception as exc:  # noqa: BLE001 - a job must end in a state an operator can see, never crash the worker
        log.exception("transcript of audit %s failed unexpectedly", audit_id)
        db.session.rollback()
        return _retry_or_fail(audit_id, attempt, exc)


def _transcribe_and_record(transcript: Transcript) -> str:
    row = db.session.get(AudioMessage, transcript.audio_message_id)
    if row is None or row.status != Status.READY.value or not row.media_key or row.media_deleted_at is not None:
        return _finish_failed(transcript, "the audio is not available (not ready, or deleted)")
    if not installed():
        return _finish_failed(transcript, NOT_INSTALLED)
    settings = settings_for(row.channel)
    stored = media_store().get(row.media_key)
    if stored is None:
        return _finish_failed(transcript, "the audio is gone from the media store")
    db.session.commit()  # no transaction held open while the model runs
    with scratch_dir("transcribe") as workdir:
        path = os.path.join(workdir, "audio.mp3")
        with open(path, "wb") as handle:
            handle.write(stored.data)
        del stored
        try:
            result = _run_model(path, settings)
        except TranscriptionUnavailable as exc:
            return _finish_failed(transcript, NOT_INSTALLED if not installed() else str(exc))
        except TranscriptionError as exc:  # undecodable, a language the model lacks
            return _finish_failed(transcript, str(exc))
    return _finish_transcribed(transcript, row.id, result)


def _run_model(path: str, settings: Settings) -> TranscriptResult:
    """The model on the file at `path`, as the app is configured and the channel's settings ask."""
    config = current_app.config
    return off_the_event_loop(
        transcribe,
        path,
        language=settings.transcribe_language,
        model=config["TRANSCRIBE_MODEL"],
        threads=config["TRANSCRIBE_THREADS"],
        compute_type=config["TRANSCRIBE_COMPUTE_TYPE"],
        beam_size=config["TRANSCRIBE_BEAM_SIZE"],
        # Stored media is our MP3, already cut, or an original kept as sent, which is cut here the same way.
        max_s=min(config["INBOUND_MAX_DURATION_S"], settings.max_duration_s),
        timeout_s=config["FFMPEG_TIMEOUT_S"],
        memory_mb=config["FFMPEG_MAX_MEMORY_MB"],
    )


def _finish_transcribed(transcript: Transcript, audit_id: int, result: TranscriptResult) -> str:
    transcript.status = result.status
    transcript.text = result.text
    transcript.language = result.language
    transcript.segments = result.segments
    transcript.model = result.model
    transcript.error = None
    transcript.finished_at = transcript.updated_at = utcnow()
    db.session.commit()
    log.info(
        "transcript of audit %s %s: %.1f s of audio, %.1f s of speech, %d characters (process %d, model loads %d)",
        audit_id,
        result.status,
        result.duration_s,
        result.speech_s,
        len(result.text),
        os.getpid(),
        load_count(),
    )
    return result.status


def off_the_event_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs), in a real thread when this is a gevent process (in-process jobs beside gunicorn's gevent
    workers on PostgreSQL): there a pool "thread" is a greenlet, and seconds of CTranslate2 in C would stop every
    request of the process. gevent's pool of OS threads runs it while the greenlet waits cooperatively."""
    if not is_gevent_process():
        return fn(*args, **kwargs)
    import gevent  # only in gevent processes

    result: T = gevent.get_hub().threadpool.apply(fn, args, kwargs)
    return result


def _finish_failed(transcript: Transcript, reason: str) -> str:
    transcript.status = TranscriptStatus.FAILED.value
    transcript.error = reason[:2000]
    transcript.finished_at = transcript.updated_at = utcnow()
    db.session.commit()
    log.warning("transcript of audit %s failed: %s", transcript.audio_message_id, reason)
    return transcript.status


def _retry_or_fail(audit_id: int, attempt: int, exc: Exception) -> str:
    """The unforeseen (the media store down, a bug): back to `queued` and retried later, up to JOB_MAX_ATTEMPTS,
    then `failed` with the reason. Only if the row is still this attempt's."""
    now = utcnow()
    detail = f"{type(exc).__name__}: {exc}"
    # A job that ran out of time (RQ's job timeout) would only run out again.
    give_up = attempt >= current_app.config["JOB_MAX_ATTEMPTS"] or isinstance(exc, JobTimeoutException)
    status = TranscriptStatus.FAILED.value if give_up else TranscriptStatus.QUEUED.value
    outcome: dict[str, object] = (
        dict(finished_at=now, error=f"internal error after {attempt} attempt(s): {detail}"[:2000])
        if give_up
        else dict(error=f"attempt {attempt} failed, retrying: {detail}"[:2000])
    )
    taken = updated_rows(
        db.session.execute(
            update(Transcript)
            .where(
                Transcript.audio_message_id == audit_id,
                Transcript.status == TranscriptStatus.RUNNING.value,
                Transcript.attempts == attempt,
            )
            .values(status=status, updated_at=now, **outcome)
        )
    )
    db.session.commit()
    if taken and not give_up:
        try:
            queue.enqueue_in(queue.retry_delay(exc, attempt), transcribe_audio, audit_id, lane=queue.TRANSCRIPTS)
        except Exception:  # noqa: BLE001 - the sweeper re-enqueues rows left queued
            log.exception("could not schedule the retry of the transcript of audit %s; the sweeper will", audit_id)
    return status


def take_back_transcripts(now: datetime, stuck_before: datetime) -> Recovered:
    """The sweeper's step, transcripts as audio rows: `running` past SWEEP_STUCK_AFTER_S (the worker died mid-job)
    back to `queued`, or `failed` after JOB_MAX_ATTEMPTS; `queued` past SWEEP_REQUEUE_AFTER_S (the job was lost)
    enqueued again."""
    config = current_app.config
    max_attempts = config["JOB_MAX_ATTEMPTS"]
    running = (Transcript.status == TranscriptStatus.RUNNING.value, Transcript.updated_at < stuck_before)
    gave_up = give_up(
        Transcript,
        Transcript.audio_message_id,
        running,
        max_attempts,
        TranscriptStatus.FAILED.value,
        now,
        f"the worker stopped mid-transcription {max_attempts} times; giving up",
    )
    revived = db.session.scalars(
        update(Transcript)
        .where(*running)
        .values(
            status=TranscriptStatus.QUEUED.value,
            updated_at=now,
            error="the worker stopped mid-transcription (crash or restart); retrying",
        )
        .returning(Transcript.audio_message_id)
    ).all()
    requeued = db.session.scalars(
        update(Transcript)
        .where(
            Transcript.status == TranscriptStatus.QUEUED.value,
            Transcript.updated_at < now - timedelta(seconds=config["SWEEP_REQUEUE_AFTER_S"]),
            Transcript.audio_message_id.not_in(revived or [0]),
        )
        .values(updated_at=now)
        .returning(Transcript.audio_message_id)
    ).all()
    counts = {"revived": len(revived), "requeued": len(requeued), "gave_up": len(gave_up)}
    return Recovered(
        counts={f"transcripts_{name}": count for name, count in counts.items()},
        hand_out=lambda: _hand_out([*revived, *requeued]),
    )


def _hand_out(audit_ids: list[int]) -> None:
    for audit_id in audit_ids:
        try:
            queue.enqueue(transcribe_audio, audit_id, lane=queue.TRANSCRIPTS)
        except Exception as exc:  # noqa: BLE001 - still queued; the next sweep tries again
            outages.log_failure(log, exc, "sweeper could not enqueue the transcript of audit %s", audit_id)
            break
