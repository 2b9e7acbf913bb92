"""The job relay: hands new `queued` rows to RQ (a transactional outbox).

With RQ on PostgreSQL a webhook only commits its rows; it never talks to Redis. Relays in the worker processes
enqueue the jobs. Why:
- The webhook's answer waits on one service, not two, and a Redis outage cannot touch it.
- A row can no longer be committed and then miss its job because the web process died between the commit and
  the enqueue (the sweeper used to find such rows minutes later).
- The web tier's CPU goes to answering Twilio: RQ's enqueue (a job hash and two round trips) cost more CPU than
  the INSERT and the COMMIT together.

Each worker process runs one relay thread. It LISTENs on the channel of each outbox a flow registered
(jobs/registry.py; inbound's `audio_messages_queued`, which a trigger of migration 0006 NOTIFYs when a statement
inserts queued rows, inbound/dispatch.py), so it wakes within milliseconds; it also looks every RELAY_POLL_S in
case a notification was missed (a dropped connection). An outbox's round claims rows with FOR UPDATE SKIP LOCKED,
so relays on several worker dynos never hand out the same row; a row whose jobs could not be enqueued (Redis
unreachable) is given back and tried again on the next round.
"""

from __future__ import annotations

import logging
import threading

import psycopg
from flask import Flask
from sqlalchemy.engine import make_url

from ..extensions import db
from ..runtime import outages
from .registry import registry

log = logging.getLogger(__name__)

# Rows an outbox's round claims at most; a longer backlog is relayed in several rounds.
BATCH_ROWS = 500


def relay_all_waiting() -> int:
    """Relay every registered outbox (jobs/registry.py) until nothing is waiting; answer how many rows went out."""
    total = 0
    for outbox in registry().outboxes.values():
        while True:
            count = outbox.relay_round(BATCH_ROWS)
            total += count
            if count < BATCH_ROWS:
                break
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
                    for channel in registry(app).outboxes:
                        listener.execute(f"LISTEN {channel}")
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
