"""Inbound customer audio: record it from the webhook (fast), then download, normalize and store it (job)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import select, update

from .audio.detect import base_type, is_audio
from .audio.transcode import AudioError, transcode_to_mp3
from .channels import TtlCache, channel_from_participants, channel_from_webhook, is_agent_author
from .extensions import db
from .models import AudioMessage, Status, utcnow
from .observability import bind_audit_id
from .outages import describe, is_database_unreachable
from .scratch import scratch_dir
from .security import media_type_of_file
from .settings import policy_for
from .storage import media_store
from .sweeper import WORKING
from .twilio.client import twilio_api
from .twilio.http import TooLarge, TwilioHttpError
from .twilio.sids import is_sid, sid_or_none

log = logging.getLogger(__name__)

# Twilio's retries of one webhook span minutes; a day covers a backfill run too.
EXPAND_ONCE_TTL_S = 24 * 3600

participant_cache = TtlCache()
# A conversation never moves to another Conversations service.
service_sid_cache = TtlCache(ttl_s=3600)


@dataclass(frozen=True)
class MediaItem:
    sid: str
    content_type: str | None
    filename: str | None
    size: int | None


def conversation_service_sid(conversation_sid: str) -> str:
    return service_sid_cache.get(conversation_sid,
                                 lambda sid: twilio_api().fetch_conversation(sid)["chat_service_sid"])


def parse_media(raw) -> list[MediaItem]:
    """Media as Twilio spells it: `Sid`/`ContentType` in webhooks, `MediaSid` in Event Streams, `sid`/`content_type` in REST."""
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
        if not is_sid(sid, "ME"):
            if sid is not None:
                log.warning("webhook Media entry with a malformed media SID: %.100r", sid)
            continue
        items.append(MediaItem(
            sid=sid,
            content_type=_text(_first(entry, "ContentType", "content_type", "contentType", "Content-Type")),
            filename=_text(_first(entry, "Filename", "filename", "FileName")),
            size=_declared_size(_first(entry, "Size", "size")),
        ))
    return items


# C0 and C1 controls, DEL included. PostgreSQL's text types refuse NUL (the whole INSERT fails: the webhook, and
# every one sharing its commit, would be a 503), and the others have no business in a name or a type either: they
# end up in logs, CSV exports and the admin page.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def column_text(value: str | None, limit: int) -> str | None:
    """Free text from a customer or an agent (webhook fields, upload names and types) as a column takes it: no
    control characters and at most `limit` characters."""
    return CONTROL_CHARACTERS.sub("", value or "")[:limit] or None


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _declared_size(value) -> int | None:
    """A webhook's Size is informational (MCS metadata and the bytes that arrive decide), so garbage becomes None."""
    if isinstance(value, bool):
        return None
    # isdecimal, not isdigit: "²" is a digit that int() refuses.
    if isinstance(value, str) and value.isascii() and value.isdecimal() and len(value) <= 16:
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and 0 <= value < 2**53 else None


def _first(entry: dict, *keys):
    for key in keys:
        if entry.get(key) not in (None, ""):
            return entry[key]
    return None


def audio_rows(event: dict, media: list[MediaItem]) -> list[dict]:
    """The `queued` audit rows (column values) of a message's audio media; other media are not ours."""
    from . import jobs

    source = event.get("Source")
    author = event.get("Author")
    now = utcnow()
    # With the relay, rows wait for it (dispatched_at NULL); otherwise the caller enqueues them itself.
    dispatched_at = None if jobs.relays_new_rows() else now
    rows = []
    for item in media:
        if not is_audio(item.content_type, item.filename):
            continue
        rows.append(dict(
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
        ))
    return rows


def record_message_media(event: dict, media: list[MediaItem]) -> list[int]:
    """Store one `queued` row per audio media of a message in the session; answer the ids of rows that are new.

    The unique (message_sid, media_sid) constraint makes redelivered messages (Twilio retries, our backfill)
    harmless: the insert does nothing and nothing is enqueued twice. Webhooks take the group-commit path
    (webhooks.group_commit) with the same rows and the same conflict rule.
    """
    from .webhooks.group_commit import insert_ignoring_duplicates

    statement = insert_ignoring_duplicates(db.session.get_bind().dialect.name)
    new_ids = []
    for row in audio_rows(event, media):
        inserted = db.session.execute(statement, row).first()
        if inserted is not None:
            new_ids.append(inserted.id)
    return new_ids


# -- the job -----------------------------------------------------------------------------------------

def process_inbound(audit_id: int, interrupted: dict | None = None) -> str:
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


def _claim(audit_id: int, interrupted: dict | None) -> int | None:
    """Take the row for a new attempt (`queued` -> `downloading`); answer the attempt's number, None when the row is
    not there to take."""
    now = utcnow()
    if interrupted and interrupted["attempt"] is not None:
        _take_over_from_interrupted_attempt(audit_id, interrupted, now)
    attempt = db.session.execute(
        update(AudioMessage)
        .where(AudioMessage.id == audit_id, AudioMessage.status == Status.QUEUED.value)
        .values(status=Status.DOWNLOADING.value, attempts=AudioMessage.attempts + 1, started_at=now, updated_at=now)
        .returning(AudioMessage.attempts)).scalar()
    db.session.commit()
    return attempt


def _take_over_from_interrupted_attempt(audit_id: int, interrupted: dict, now: datetime) -> None:
    """Put back the row of an attempt that lost the database mid-job, as it would have done itself: it still says
    `downloading` or `transcoding`. Only the job that attempt scheduled knows it is over; matching its number
    leaves alone a row that anyone else has taken since (the sweeper, another job: either changes the count or
    the status)."""
    attempt = interrupted["attempt"]
    reason = f"attempt {attempt} was cut off by a database outage ({interrupted['error']})"
    if attempt >= current_app.config["JOB_MAX_ATTEMPTS"]:
        outcome = dict(status=Status.FAILED.value, finished_at=now,
                       error=f"{reason}; giving up after {attempt} attempt(s)")
    else:
        outcome = dict(status=Status.QUEUED.value, error=f"{reason}; retried")
    db.session.execute(
        update(AudioMessage)
        .where(AudioMessage.id == audit_id, AudioMessage.status.in_(WORKING), AudioMessage.attempts == attempt)
        .values(updated_at=now, **outcome))


def _process_and_record_outcome(row: AudioMessage, attempt: int) -> str:
    audit_id = row.id
    try:
        _process(row)
    except (AudioError, TooLarge) as exc:
        _fail(row, str(exc))
    except TwilioHttpError as exc:
        if exc.transient and row.attempts < current_app.config["JOB_MAX_ATTEMPTS"]:
            _retry_later(row, exc)
        else:
            _fail(row, f"Twilio request failed after {row.attempts} attempt(s): {exc}")
    except Exception as exc:  # noqa: BLE001 - a job must end in a state an operator can see
        log.exception("inbound audit %s failed unexpectedly", audit_id)
        db.session.rollback()
        row = db.session.get(AudioMessage, audit_id)  # the database gone: process_inbound schedules the retry
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
    from rq.timeouts import JobTimeoutException

    return isinstance(exc, JobTimeoutException)


def _process(row: AudioMessage) -> None:
    config = current_app.config
    api = twilio_api()
    participants = participant_cache.get(row.conversation_sid, api.list_participants)
    row.channel = channel_from_participants(participants, row.source, row.author)
    if is_agent_author(participants, author=row.author, participant_sid=None, source=row.source):
        row.direction = "outbound"  # an agent attached audio natively in Flex: audit it, normalize it too
    if not row.chat_service_sid:
        row.chat_service_sid = conversation_service_sid(row.conversation_sid)
    settings = policy_for(row.channel)
    db.session.commit()

    with scratch_dir("inbound") as workdir:
        source_path = os.path.join(workdir, "source")
        with open(source_path, "wb") as handle:
            meta = api.download_media(row.chat_service_sid, row.media_sid, handle, config["MEDIA_DOWNLOAD_MAX_BYTES"])
        row.size_bytes = os.path.getsize(source_path)
        row.content_type = row.content_type or meta.get("content_type")
        row.sha256 = _sha256(source_path)
        row.mark(Status.TRANSCODING)
        db.session.commit()

        if not settings.normalize_inbound:
            # The admin chose to keep customer audio as sent: store and serve the original bytes.
            key = f"audio/{row.id}/original"
            # Stored (and later served) as what the bytes are: the customer's label could say text/html.
            media_store().put(key, source_path, media_type_of_file(source_path), row.sha256)
            row.media_key = key
            row.mark(Status.READY)
            db.session.commit()
            return
        result = transcode_to_mp3(
            source_path, os.path.join(workdir, "out.mp3"),
            bitrate_kbps=settings.bitrate_kbps,
            loudness=settings.loudness_normalize,
            # The channel's own duration cap binds customers too: a tiny file of silence must not become hours.
            max_duration_s=min(config["INBOUND_MAX_DURATION_S"], settings.max_duration_s),
            timeout_s=config["FFMPEG_TIMEOUT_S"],
        )
        key = f"audio/{row.id}/{result.sha256[:16]}.mp3"
        media_store().put(key, result.path, "audio/mpeg", result.sha256)
    row.media_key = key
    row.transcode_ms = int(result.elapsed_s * 1000)
    row.mp3_size_bytes = result.size_bytes
    row.mp3_sha256 = result.sha256
    row.duration_s = result.duration_s
    row.truncated = result.truncated
    row.error = None
    row.mark(Status.READY)
    db.session.commit()
    log.info("inbound audit %s ready: %s %.2f s, %d -> %d bytes in %d ms", row.id, row.channel, result.duration_s,
             row.size_bytes or 0, result.size_bytes, row.processing_ms or 0)


def _retry_later(row: AudioMessage, exc: Exception) -> None:
    """Twilio (timeouts, 429, 5xx) or the media store is having a bad minute: put the row back and try again
    later."""
    from . import jobs

    delay = _retry_delay(exc, row.attempts)
    detail = exc if isinstance(exc, TwilioHttpError) else f"internal error: {type(exc).__name__}: {exc}"
    row.status = Status.QUEUED.value
    row.error = f"attempt {row.attempts} failed, retrying in {delay:g} s: {detail}"[:2000]
    db.session.commit()
    log.warning("inbound audit %s: %s", row.id, row.error)
    try:
        jobs.enqueue_in(delay, "normalize_inbound", row.id)
    except Exception:  # noqa: BLE001 - the sweeper re-enqueues rows left queued
        log.exception("could not schedule the retry of audit %s; the sweeper will", row.id)


def _retry_when_the_database_returns(audit_id: int, attempt: int | None, exc: Exception,
                                     interrupted: dict | None) -> None:
    """The database went away (a restart, a failover) and the row cannot say so now: schedule the retry where it
    survives the outage (RQ's scheduler on Redis, the in-process runner's timer), with the attempt's number so that
    the retry can take the row over (_take_over_from_interrupted_attempt). A retry that finds the database still
    gone schedules the next, with backoff, up to JOB_MAX_ATTEMPTS times; after that, or with Redis gone too, the
    sweeper picks the row up once the database is back (SWEEP_STUCK_AFTER_S, SWEEP_REQUEUE_AFTER_S)."""
    from . import jobs

    waits = (interrupted["waits"] if interrupted else 0) + 1
    if waits > current_app.config["JOB_MAX_ATTEMPTS"]:
        log.error("inbound audit %s: the database is still unreachable after %d retries (%s); the sweeper takes the "
                  "row up once it is back", audit_id, waits - 1, describe(exc))
        return
    delay = _retry_delay(exc, waits)
    log.warning("inbound audit %s: the database is unreachable (%s); retrying in %g s", audit_id, describe(exc), delay)
    retry = {"attempt": attempt, "error": describe(exc), "waits": waits}
    try:
        jobs.enqueue_in(delay, "normalize_inbound", audit_id, retry)
    except Exception:  # noqa: BLE001 - Redis gone too: the sweeper is the net
        log.exception("could not schedule the retry of audit %s either; the sweeper takes the row up once the "
                      "database is back", audit_id)


def _retry_delay(exc: Exception, attempt: int) -> float:
    """Seconds before attempt `attempt` + 1: Twilio's Retry-After when it sent one, else exponential backoff."""
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        return retry_after
    return min(300, current_app.config["JOB_RETRY_BASE_S"] * 2 ** (attempt - 1))


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


def enqueue_expand_once(event: dict) -> None:
    """Webhooks show one attachment of an SDK message even when it carries several: read the message over REST,
    once per message, so a redelivery (Twilio retry, backfill) never queues another read in front of real work."""
    from . import jobs

    keys = ("AccountSid", "ChatServiceSid", "ConversationSid", "MessageSid", "Author", "Source")
    fields = {key: event[key] for key in keys if event.get(key) is not None}
    jobs.enqueue_once(f"expand:{fields['MessageSid']}", EXPAND_ONCE_TTL_S, "expand_message", fields)


def expand_message(event: dict) -> list[int]:
    """SDK messages with several attachments show only one in the webhook: read the message over REST."""
    try:
        message = twilio_api().fetch_message(event["ConversationSid"], event["MessageSid"])
    except TwilioHttpError as exc:
        if exc.transient:
            _retry_expand_later(event, exc)
            return []
        # Deleted since (or never readable with our credentials): the attachment the webhook showed is stored.
        log.warning("could not read message %s to expand its media: %s", event["MessageSid"], exc)
        return []
    try:
        new_ids = record_message_media(event, parse_media(message["media"]))
        db.session.commit()
    except Exception as exc:  # noqa: BLE001 - the database's bad moment: the once-key keeps everyone else out
        db.session.rollback()
        _retry_expand_later(event, exc)
        return []
    return new_ids


RECOVER_WITH_BACKFILL = "`flask --app webhook_app backfill` records the attachments still missing"


def _retry_expand_later(event: dict, exc: Exception) -> None:
    """Twilio's bad minute outlasted the request's own retries, or the database refused the rows. The job is
    enqueued once per message (a key that also keeps redeliveries out), so it schedules its own next attempt
    rather than fail and lose the attachments."""
    from . import jobs

    attempt = int(event.get("_attempt", 1))
    if attempt >= current_app.config["JOB_MAX_ATTEMPTS"]:
        log.error("could not read message %s to expand its media after %d attempts (%s); %s", event["MessageSid"],
                  attempt, exc, RECOVER_WITH_BACKFILL)
        return
    delay = _retry_delay(exc, attempt)
    log.warning("could not read message %s to expand its media (attempt %d): %s; retrying in %g s",
                event["MessageSid"], attempt, exc, delay)
    try:
        jobs.enqueue_in(delay, "expand_message", {**event, "_attempt": attempt + 1})
    except Exception:  # noqa: BLE001 - Redis down too: say what is missing and how to recover it
        log.exception("could not schedule the next read of message %s; %s", event["MessageSid"],
                      RECOVER_WITH_BACKFILL)


def queued_rows(limit: int = 100) -> list[AudioMessage]:
    return list(db.session.scalars(select(AudioMessage).where(AudioMessage.status == Status.QUEUED.value)
                                   .order_by(AudioMessage.id).limit(limit)))
