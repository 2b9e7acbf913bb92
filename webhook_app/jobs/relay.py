"""The job relay: hands new `queued` rows to RQ (a transactional outbox).

With RQ on PostgreSQL a webhook only commits its rows; it never talks to Redis. Relays in the worker processes
enqueue the jobs. Why:
- The webhook's answer waits on one service, not two, and a Redis outage cannot touch it.
- A row can no longer be committed and then miss its job because the web process died between the commit and
  the enqueue (the sweeper used to find such rows minutes later).
- The web tier's CPU goes to answering Twilio: RQ's enqueue (a job hash and two round trips) cost more CPU than
  the INSERT and the COMMIT together.

Each worker process runs one relay thread. It LISTENs on `audio_messages_queued`, which a trigger (migration
0006) NOTIFYs when a statement inserts queued rows, so it wakes within milliseconds; it also looks every
RELAY_POLL_S in case a notification was missed (a dropped connection). It claims rows with
FOR UPDATE SKIP LOCKED, so relays on several worker dynos never hand out the same row. A row whose jobs could
not be enqueued (Redis unreachable) is given back and tried again on the next round.
"""

from __future__ import annotations

import logging
import threading

import psycopg
from flask import Flask, current_app
from sqlalchemy import or_, select, update
from sqlalchemy.engine import make_url

from ..extensions import db
from ..models import AudioMessage, Status, utcnow
from ..runtime import outages

log = logging.getLogger(__name__)

# The jobs handed out here and by the sweeper, named by path as RQ names them: jobs/ imports no flow.
NORMALIZE_INBOUND = "webhook_app.inbound.normalize.process_inbound"
EXPAND_MESSAGE = "webhook_app.inbound.expand.expand_message"
# Twilio's retries of one webhook span minutes; a day covers a backfill run too.
EXPAND_ONCE_TTL_S = 24 * 3600

CHANNEL = "audio_messages_queued"
# Rows claimed per round; a longer backlog is relayed in several rounds.
BATCH_ROWS = 500


def processed_by_jobs():
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
    claimed = db.session.execute(
        update(AudioMessage)
        .where(AudioMessage.id.in_(waiting))
        .values(dispatched_at=now)
        .returning(*DISPATCHED_COLUMNS)
    ).all()
    db.session.commit()
    if not claimed:
        return 0
    claimed.sort(key=lambda row: row.id)
    try:
        # Expansion first: a worker that dies between the two leaves these rows claimed with no job, and the
        # sweeper, which hands them out again, expands them too (once per message). The other order would lose
        # the attachments the webhook did not show, since the jobs would finish the rows the sweeper looks for.
        expand_sdk_messages(claimed)
        current_app.extensions["jobs"].enqueue_many([(NORMALIZE_INBOUND, (row.id,)) for row in claimed])
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


# What a row handed to the jobs must say for its SDK message to be expanded too (expand_sdk_messages).
DISPATCHED_COLUMNS = (
    AudioMessage.id,
    AudioMessage.source,
    AudioMessage.account_sid,
    AudioMessage.chat_service_sid,
    AudioMessage.conversation_sid,
    AudioMessage.message_sid,
    AudioMessage.author,
)


def expand_sdk_messages(rows) -> None:
    """Enqueue the expand_message job (once per message) of the web chat (SDK) messages among `rows`: their
    webhook showed one attachment, the job reads the others over REST. Whoever hands rows to the jobs (the relay,
    the sweeper) calls this before it enqueues their own jobs, and gives the rows back if it raises: a message
    already expanded keeps its once-key, so the next try skips it."""
    sdk_messages = {row.message_sid: row for row in rows if (row.source or "").upper() == "SDK"}
    for message_sid, row in sdk_messages.items():
        enqueue_expand_once(
            {
                "AccountSid": row.account_sid,
                "ChatServiceSid": row.chat_service_sid,
                "ConversationSid": row.conversation_sid,
                "MessageSid": message_sid,
                "Author": row.author,
                "Source": row.source,
            }
        )


def enqueue_expand_once(event: dict) -> None:
    """Webhooks show one attachment of an SDK message even when it carries several: read the message over REST,
    once per message, so a redelivery (Twilio retry, backfill) never queues another read in front of real work."""
    keys = ("AccountSid", "ChatServiceSid", "ConversationSid", "MessageSid", "Author", "Source")
    fields = {key: event[key] for key in keys if event.get(key) is not None}
    enqueue_once(f"expand:{fields['MessageSid']}", EXPAND_ONCE_TTL_S, EXPAND_MESSAGE, fields)


def enqueue_once(key: str, ttl_s: int, path: str, *args) -> bool:
    """Enqueue unless a job with this key was enqueued in the last `ttl_s` seconds (redelivered webhooks)."""
    jobs = current_app.extensions["jobs"]
    if not jobs.claim_once(key, ttl_s):
        return False
    try:
        jobs.enqueue(path, *args)
    except Exception:
        jobs.release_once(key)  # the next delivery (or the sweeper) must be able to try again
        raise
    return True


def relay_all_waiting() -> int:
    """Relay until nothing is waiting; answer how many rows went out."""
    total = 0
    while True:
        count = relay_waiting_rows()
        total += count
        if count < BATCH_ROWS:
            return total


def start_relay_thread(app: Flask) -> threading.Thread:
    """A daemon thread that relays at once (rows a restart left waiting), then on every NOTIFY and every
    RELAY_POLL_S; errors are retried with backoff, never fatal, and an outage of Redis or PostgreSQL is logged
    once (webhook_app.runtime.outages)."""
    poll_s = app.config["RELAY_POLL_S"]
    stop = threading.Event()
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(drivername="postgresql")

    def loop() -> None:
        failures = 0
        while not stop.is_set():
            try:
                with psycopg.connect(
                    url.render_as_string(hide_password=False), autocommit=True, connect_timeout=5
                ) as listener:
                    listener.execute(f"LISTEN {CHANNEL}")
                    outages.DATABASE.reachable()
                    while not stop.is_set():
                        delay = poll_s
                        try:
                            with app.app_context():
                                try:
                                    relayed = relay_all_waiting()
                                finally:
                                    db.session.remove()
                            outages.DATABASE.reachable()
                            if relayed:
                                outages.REDIS.reachable()
                                log.debug("relayed %d new rows", relayed)
                            failures = 0
                        except Exception as exc:  # noqa: BLE001 - Redis or PostgreSQL down: rows stay waiting
                            failures += 1
                            delay = outages.LOOP_BACKOFF.delay(failures)
                            outages.log_failure(log, exc, "relay round failed; next one in %d s", delay)
                        for _ in listener.notifies(timeout=delay, stop_after=1):
                            pass
            except Exception as exc:  # noqa: BLE001 - the LISTEN connection dropped: reconnect with backoff
                failures += 1
                outages.log_failure(log, exc, "relay lost its PostgreSQL connection; reconnecting")
                stop.wait(outages.LOOP_BACKOFF.delay(failures))

    thread = threading.Thread(target=loop, name="relay", daemon=True)
    thread.stop = stop  # type: ignore[attr-defined]
    thread.start()
    return thread
