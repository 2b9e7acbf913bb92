"""The inbound job: download a customer's voice note from MCS, normalize it to MP3 and store it.

In: an audit row's id (`queued`). Out: the row `ready` with its MP3 in the media store, or `failed` with a reason;
a transient failure puts it back in the queue for a later attempt.
"""

from __future__ import annotations

import hashlib
import logging
import os
from datetime import datetime
from typing import TypedDict

from flask import current_app
from rq.timeouts import JobTimeoutException
from sqlalchemy import update

from ..audio.transcode import AudioError, TranscodeResult, transcode_to_mp3
from ..extensions import db
from ..jobs import queue
from ..jobs.claim import claim
from ..media.storage import media_store
from ..models import AudioMessage, Status, utcnow
from ..observability import bind_audit_id
from ..runtime.outages import describe, is_database_unreachable
from ..runtime.scratch import scratch_dir
from ..settings.cache import Settings, settings_for
from ..settings.channels import channel_from_participants, is_agent_author
from ..transcripts.job import commit_ready
from ..twilio.client import TwilioApi, twilio_api
from ..twilio.http import TooLarge, TwilioHttpError
from ..web.headers import media_type_of_file

log = logging.getLogger(__name__)


class Interrupted(TypedDict):
    """What the retry of an attempt that lost the database carries (_retry_when_the_database_returns)."""

    attempt: int | None  # its number; None if it never took the row
    error: str  # what it met
    waits: int  # retries so far


# A row its job is working on: a worker killed here leaves it so until the sweeper takes it back (dispatch.py).
WORKING = (Status.DOWNLOADING.value, Status.TRANSCODING.value)


class Undownloadable(Exception):
    """A row that names no media Twilio could serve: failed at once, since no retry can change it."""


def enqueue_new_rows(audit_ids: list[int]) -> None:
    """After the commit: hand just-stored rows to their job, unless the relay does (it was woken by the commit).

    A queue that cannot be reached leaves the rows `queued` for the sweeper; the caller's answer does not change.
    """
    if queue.relays_new_rows():
        return
    for audit_id in audit_ids:
        try:
            queue.enqueue(process_inbound, audit_id)
        except Exception:  # noqa: BLE001 - Redis down: the row stays `queued`; the sweeper enqueues it later
            log.exception("could not enqueue audit %s; left queued for the sweeper", audit_id)


@queue.job
def process_inbound(audit_id: int, interrupted: Interrupted | None = None) -> str:
    """Download, normalize and store one inbound audio; always ends `ready` or `failed` with a reason.

    `interrupted` comes with the retry of an attempt that lost the database (_retry_when_the_database_returns):
    {"attempt": its number, None if it never took the row; "error": what it met; "waits": retries so far}.
    """
    bind_audit_id(audit_id)
    attempt = None
    try:
        attempt = _claim(audit_id, interrupted)
        row = db.session.get(AudioMessage, audit_id)
    except Exception as exc:
        if not is_database_unreachable(exc):
            raise
        if attempt is None and interrupted:
            attempt = interrupted["attempt"]  # its row is still to be taken over
        _retry_when_the_database_returns(audit_id, attempt, exc, interrupted)
        return "retrying"
    if row is None:
        log.warning("inbound job for unknown audit row %s", audit_id)
        return "missing"
    if attempt is None:
        # Someone else has it, or it is finished: a duplicate enqueue must not transcode twice.
        log.info("audit %s is %s, not queued: skipping", audit_id, row.status)
        return row.status
    try:
        return _process_and_record_outcome(row, attempt)
    except Exception as exc:
        if not is_database_unreachable(exc):
            raise
        _retry_when_the_database_returns(audit_id, attempt, exc, None)
        return "retrying"


def _claim(audit_id: int, interrupted: Interrupted | None) -> int | None:
    """Take the row for a new attempt (`queued` -> `downloading`); answer the attempt's number, None when the row is
    not there to take."""
    now = utcnow()
    if interrupted and interrupted["attempt"] is not None:
        _take_over_from_interrupted_attempt(audit_id, interrupted, now)
    return claim(AudioMessage, AudioMessage.id == audit_id, Status.QUEUED.value, Status.DOWNLOADING.value, now)


def _take_over_from_interrupted_attempt(audit_id: int, interrupted: Interrupted, now: datetime) -> None:
    """Put back the row of an attempt that lost the database mid-job, as it would have done itself: it still says
    `downloading` or `transcoding`. Only the job that attempt scheduled knows it is over; matching its number
    leaves alone a row that anyone else has taken since (the sweeper, another job: either changes the count or
    the status)."""
    attempt = interrupted["attempt"]
    reason = f"attempt {attempt} was cut off by a database outage ({interrupted['error']})"
    if attempt >= current_app.config["JOB_MAX_ATTEMPTS"]:
        outcome = dict(
            status=Status.FAILED.value, finished_at=now, error=f"{reason}; giving up after {attempt} attempt(s)"
        )
    else:
        outcome = dict(status=Status.QUEUED.value, error=f"{reason}; retried")
    db.session.execute(
        update(AudioMessage)
        .where(AudioMessage.id == audit_id, AudioMessage.status.in_(WORKING), AudioMessage.attempts == attempt)
        .values(updated_at=now, **outcome)
    )


def _process_and_record_outcome(row: AudioMessage, attempt: int) -> str:
    audit_id = row.id
    try:
        _process(row)
    except (AudioError, TooLarge, Undownloadable) as exc:
        _fail(row, str(exc))
    except TwilioHttpError as exc:
        if exc.transient and row.attempts < current_app.config["JOB_MAX_ATTEMPTS"]:
            _retry_later(row, exc)
        else:
            _fail(row, f"Twilio request failed after {row.attempts} attempt(s): {exc}")
    except Exception as exc:  # noqa: BLE001 - a job must end in a state an operator can see
        log.exception("inbound audit %s failed unexpectedly", audit_id)
        db.session.rollback()
        row = db.session.get_one(AudioMessage, audit_id)  # the database gone: process_inbound schedules the retry
        if row.status not in WORKING or row.attempts != attempt:
            # A connection lost on its way back from a COMMIT: the row may have been finished after all.
            log.warning("inbound audit %s is %s after attempt %s failed; leaving it", audit_id, row.status, attempt)
            return row.status
        # The media store down (S3 refusing a put) must not fail every voice note of the outage: the unforeseen
        # gets the same bounded retries as Twilio's bad minutes, and a bug still ends `failed` with its reason. A
        # job that ran out of time would only run out again.
        if row.attempts < current_app.config["JOB_MAX_ATTEMPTS"] and not _is_job_timeout(exc):
            _retry_later(row, exc)
        else:
            _fail(row, f"internal error after {row.attempts} attempt(s): {type(exc).__name__}: {exc}")
    return row.status


def _is_job_timeout(exc: BaseException) -> bool:
    return isinstance(exc, JobTimeoutException)


def _process(row: AudioMessage) -> None:
    api = twilio_api()
    chat_service_sid, media_sid, settings = _channel_and_media(row, api)
    with scratch_dir("inbound") as workdir:
        source_path, sha256 = _download(row, api, chat_service_sid, media_sid, workdir)
        if not settings.normalize_inbound:
            _keep_as_sent(row, source_path, sha256, settings.transcribe)
            return
        key, result = _normalize_and_store(row, source_path, workdir, settings)
    _record_ready(row, key, result, settings.transcribe)


def _channel_and_media(row: AudioMessage, api: TwilioApi) -> tuple[str, str, Settings]:
    """Who sent `row` and on which channel (committed); answers where its file is (chat service, media) and the
    channel's settings."""
    participants = api.participants(row.conversation_sid)
    row.channel = channel_from_participants(participants, row.source, row.author)
    if is_agent_author(participants, author=row.author, participant_sid=None, source=row.source):
        row.direction = "outbound"  # an agent attached audio natively in Flex: audit it, normalize it too
    chat_service_sid = row.chat_service_sid = row.chat_service_sid or api.conversation_service_sid(row.conversation_sid)
    settings = settings_for(row.channel)
    db.session.commit()
    if not chat_service_sid or not row.media_sid:
        # Twilio's schema lets both be null; MCS cannot be asked for a file without them, now or on a retry.
        raise Undownloadable(f"no media to download (chat service {chat_service_sid}, media {row.media_sid})")
    return chat_service_sid, row.media_sid, settings


def _download(
    row: AudioMessage, api: TwilioApi, chat_service_sid: str, media_sid: str, workdir: str
) -> tuple[str, str]:
    """The customer's file from MCS into `workdir`, the row `transcoding` (committed); answers its path and
    SHA-256."""
    source_path = os.path.join(workdir, "source")
    with open(source_path, "wb") as handle:
        meta = api.download_media(chat_service_sid, media_sid, handle, current_app.config["MEDIA_DOWNLOAD_MAX_BYTES"])
    row.size_bytes = os.path.getsize(source_path)
    row.content_type = row.content_type or meta.get("content_type")
    row.sha256 = sha256 = _sha256(source_path)
    row.mark(Status.TRANSCODING)
    db.session.commit()
    return source_path, sha256


def _normalize_and_store(
    row: AudioMessage, source_path: str, workdir: str, settings: Settings
) -> tuple[str, TranscodeResult]:
    """The file as the channel's MP3, in the media store; answers its key and the transcode's result."""
    config = current_app.config
    result = transcode_to_mp3(
        source_path,
        os.path.join(workdir, "out.mp3"),
        bitrate_kbps=settings.bitrate_kbps,
        loudness=settings.loudness_normalize,
        # The channel's own duration cap binds customers too: a tiny file of silence must not become hours.
        max_duration_s=min(config["INBOUND_MAX_DURATION_S"], settings.max_duration_s),
        timeout_s=config["FFMPEG_TIMEOUT_S"],
        memory_mb=config["FFMPEG_MAX_MEMORY_MB"],
    )
    key = f"audio/{row.id}/{result.sha256[:16]}.mp3"
    media_store().put(key, result.path, "audio/mpeg", result.sha256)
    return key, result


def _record_ready(row: AudioMessage, key: str, result: TranscodeResult, transcribes: bool) -> None:
    """The MP3 and what its transcode measured on the row, committed `ready` (its transcript queued with it)."""
    row.media_key = key
    row.transcode_ms = int(result.elapsed_s * 1000)
    row.mp3_size_bytes = result.size_bytes
    row.mp3_sha256 = result.sha256
    row.duration_s = result.duration_s
    row.truncated = result.truncated
    row.error = None
    row.mark(Status.READY)
    commit_ready(row, transcribes)
    log.info(
        "inbound audit %s ready: %s %.2f s, %d -> %d bytes in %d ms",
        row.id,
        row.channel,
        result.duration_s,
        row.size_bytes or 0,
        result.size_bytes,
        row.processing_ms or 0,
    )


def _keep_as_sent(row: AudioMessage, source_path: str, sha256: str, transcribes: bool) -> None:
    """The admin chose to keep customer audio as sent: store and serve the original bytes."""
    key = f"audio/{row.id}/original"
    # Stored (and later served) as what the bytes are: the customer's label could say text/html.
    media_store().put(key, source_path, media_type_of_file(source_path), sha256)
    row.media_key = key
    row.mark(Status.READY)
    commit_ready(row, transcribes)


def _retry_later(row: AudioMessage, exc: Exception) -> None:
    """Twilio (timeouts, 429, 5xx) or the media store is having a bad minute: put the row back and try again
    later."""
    delay = queue.retry_delay(exc, row.attempts)
    detail = exc if isinstance(exc, TwilioHttpError) else f"internal error: {type(exc).__name__}: {exc}"
    row.status = Status.QUEUED.value
    row.error = f"attempt {row.attempts} failed, retrying in {delay:g} s: {detail}"[:2000]
    db.session.commit()
    log.warning("inbound audit %s: %s", row.id, row.error)
    try:
        queue.enqueue_in(delay, process_inbound, row.id)
    except Exception:  # noqa: BLE001 - the sweeper re-enqueues rows left queued
        log.exception("could not schedule the retry of audit %s; the sweeper will", row.id)


def _retry_when_the_database_returns(
    audit_id: int, attempt: int | None, exc: Exception, interrupted: Interrupted | None
) -> None:
    """The database went away (a restart, a failover) and the row cannot say so now: schedule the retry where it
    survives the outage (RQ's scheduler on Redis, the in-process runner's timer), with the attempt's number so that
    the retry can take the row over (_take_over_from_interrupted_attempt). A retry that finds the database still
    gone schedules the next, with backoff, up to JOB_MAX_ATTEMPTS times; after that, or with Redis gone too, the
    sweeper picks the row up once the database is back (SWEEP_STUCK_AFTER_S, SWEEP_REQUEUE_AFTER_S)."""
    waits = (interrupted["waits"] if interrupted else 0) + 1
    if waits > current_app.config["JOB_MAX_ATTEMPTS"]:
        log.error(
            "inbound audit %s: the database is still unreachable after %d retries (%s); the sweeper takes the "
            "row up once it is back",
            audit_id,
            waits - 1,
            describe(exc),
        )
        return
    delay = queue.retry_delay(exc, waits)
    log.warning("inbound audit %s: the database is unreachable (%s); retrying in %g s", audit_id, describe(exc), delay)
    retry: Interrupted = {"attempt": attempt, "error": describe(exc), "waits": waits}
    try:
        queue.enqueue_in(delay, process_inbound, audit_id, retry)
    except Exception:  # noqa: BLE001 - Redis gone too: the sweeper is the net
        log.exception(
            "could not schedule the retry of audit %s either; the sweeper takes the row up once the database is back",
            audit_id,
        )


def _fail(row: AudioMessage, reason: str) -> None:
    row.mark(Status.FAILED, error=reason)
    db.session.commit()
    log.warning("inbound audit %s failed: %s", row.id, reason)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
