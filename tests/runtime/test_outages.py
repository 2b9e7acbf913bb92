"""Workers ride out Redis and PostgreSQL outages: the worker process never exits for one, and every voice note
acknowledged meanwhile ends `ready`, exactly once.

The Redis test runs a redis-server of its own, killed mid-run and started again empty (as a failover without
persistence leaves it), so it runs in both suites. The PostgreSQL test needs TEST_DATABASE_URL: it closes its
own database to new connections for a few seconds and drops every connection to it, which is what a restart
looks like to clients (the server is shared: nothing else is touched).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from tests.helpers.audio_samples import make_audio
from tests.helpers.processes import REDIS_SERVER, Processes, RedisServer, wait_until
from tests.helpers.service import audio_rows, run_jobs
from tests.helpers.webhooks import post_webhook
from tests.helpers.workers import WORKER, worker_env
from webhook_app import create_app
from webhook_app.extensions import db
from webhook_app.runtime.outages import MAX_BACKOFF_S

REAL_POSTGRES = os.environ.get("TEST_DATABASE_URL")

# Long enough that its transcode (a few seconds) is still running when Redis goes away.
LONG_NOTE_S = 300
# Short notes delivered while Redis is gone, and as many after it is back.
NOTES_PER_PHASE = 3
SETTLE_TIMEOUT_S = 120
# The download of the note whose job loses the database hangs this long, so the job is mid-download when it does.
DOWNLOAD_STALL_S = 3
OUTAGE_MARGIN_S = 3


@pytest.fixture
def redis_server(tmp_path):
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip(f"needs redis-server ({REDIS_SERVER})")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def web(app, redis_server):
    """The web side on the test's own Redis, driven through a test client, and a queue of its own."""
    service = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "REDIS_URL": redis_server.url,
            "RQ_QUEUE": f"outage-{uuid.uuid4().hex[:8]}",
            "SANDBOX_DB": app.config["SANDBOX_DB"],
            "SECRET_KEY": "test-secret",
            "SETTINGS_CHECK_INTERVAL_S": 0,
        }
    )
    yield service
    with service.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def workers(web, tmp_path):
    """Worker processes started as the Procfile's `worker`, with short maintenance and retry intervals, stopped with
    everything they forked."""
    env = worker_env(
        web,
        MAINTENANCE_INTERVAL_S=1,
        RELAY_POLL_S=1,
        JOB_RETRY_BASE_S=1,
        # The net for jobs an emptied Redis forgot: the sweeper enqueues rows still queued after this long.
        SWEEP_REQUEUE_AFTER_S=3,
    )
    processes = Processes(env, tmp_path)
    yield processes
    processes.stop()


def wait_for_a_registered_worker(web, processes: Processes) -> None:
    from rq import Worker

    runner = web.extensions["jobs"]

    def registered():
        processes.check_alive()
        return Worker.all(queue=runner.queue)

    wait_until(registered, 60, "an RQ worker to register", processes.logs)


def send(web, sample: Path) -> dict:
    """A customer's voice note on WhatsApp, its webhook acknowledged (200)."""
    sandbox = web.extensions["twilio"].sandbox
    conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
    params = sandbox.customer_sends_media(conversation, sample.read_bytes(), "audio/ogg", sample.name)
    response = post_webhook(web.test_client(), sandbox, params)
    assert response.status_code == 200, response.get_data(as_text=True)
    return params


def row_of(app, params: dict):
    return next((row for row in audio_rows(app) if row.message_sid == params["MessageSid"]), None)


def describe(rows) -> str:
    return "; ".join(f"{row.id} {row.status} attempts={row.attempts} error={row.error!r}" for row in rows)


@pytest.mark.slow
def test_the_worker_rides_out_redis_going_away_and_coming_back_empty(app, web, redis_server, workers, tmp_path):
    long_sample = Path(make_audio(tmp_path / "long.ogg", "whatsapp_ogg", seconds=LONG_NOTE_S))
    short_sample = Path(make_audio(tmp_path / "short.ogg", "whatsapp_ogg", seconds=1.0))
    first = workers.start("worker1", WORKER)
    wait_for_a_registered_worker(web, workers)

    long_note = send(web, long_sample)
    wait_until(
        lambda: getattr(row_of(app, long_note), "status", None) == "transcoding",
        60,
        "the long note to be transcoding",
        workers.logs,
    )
    redis_server.kill()
    sent = [long_note] + [send(web, short_sample) for _ in range(NOTES_PER_PHASE)]
    # A platform restarts a worker that exits, and one started while Redis is still down must not exit again.
    second = workers.start("worker2", WORKER)
    # The long note's job ends during the outage: its work horse finishes the row, then fails to tell Redis.
    wait_until(
        lambda: getattr(row_of(app, long_note), "status", None) in ("ready", "failed"),
        60,
        "the long note to finish in its work horse while Redis is down",
        workers.logs,
    )
    time.sleep(3)  # the workers meet the outage: the first as its job ends, the second as it starts
    workers.check_alive()

    redis_server.start()  # empty: the queue, the scheduled jobs and the workers' registrations are gone
    sent += [send(web, short_sample) for _ in range(NOTES_PER_PHASE)]

    def settled():
        workers.check_alive()
        rows = audio_rows(app)
        return rows if len(rows) >= len(sent) and all(row.status in ("ready", "failed") for row in rows) else None

    rows = wait_until(
        settled,
        SETTLE_TIMEOUT_S,
        "every acknowledged voice note to end ready or failed",
        lambda: describe(audio_rows(app)) + "\n" + workers.logs(),
    )
    context = f"{describe(rows)}\n{workers.logs()}"
    assert sorted(row.message_sid for row in rows) == sorted(params["MessageSid"] for params in sent), context
    assert {row.status for row in rows} == {"ready"}, context
    assert [row.attempts for row in rows] == [1] * len(rows), f"a voice note worked on twice: {context}"
    assert first.poll() is None and second.poll() is None, context  # the same processes, never restarted

    def own_log(name: str) -> str:
        log = (tmp_path / f"{name}.log").read_text(errors="replace")
        # The worker's own lines: its transcription process logs the outage on its own, tagged.
        return "\n".join(line for line in log.splitlines() if "process=transcriber" not in line)

    for name in ("worker1", "worker2"):
        # The end is logged when one of the worker's loops next gets through, each waiting out its backoff (up to
        # MAX_BACKOFF_S): the other worker may have made every note ready before then.
        wait_until(
            lambda name=name: "Redis is reachable again" in own_log(name),
            MAX_BACKOFF_S + 15,
            f"{name} to log the outage's end",
            lambda name=name: own_log(name)[-6000:],
        )
        log = own_log(name)
        assert log.count("Redis is unreachable") == 1, f"{name} logged the outage not exactly once:\n{log[-6000:]}"
        assert log.count("Redis is reachable again") == 1, f"{name} logged its end not exactly once:\n{log[-6000:]}"


@contextlib.contextmanager
def database_closed(url: str):
    """PostgreSQL restarting, as its clients see it: every connection to the database dropped, and new ones
    refused until it is open again. Done from the server's maintenance database: PostgreSQL will not let a
    connection close its own database."""
    name = make_url(url).database
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            try:
                connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            except ProgrammingError as exc:
                pytest.skip(f"the test's database role may not close its database to connections: {exc.orig}")
            try:
                connection.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"), {"name": name}
                )
                yield
            finally:
                connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    finally:
        admin.dispose()


@pytest.mark.slow
@pytest.mark.skipif(not REAL_POSTGRES, reason="needs TEST_DATABASE_URL (PostgreSQL) to take it away from a worker")
def test_a_job_that_loses_postgresql_mid_download_is_retried_within_seconds(app, web, workers, tmp_path):
    sample = Path(make_audio(tmp_path / "note.ogg", "whatsapp_ogg", seconds=2.0))
    sandbox = web.extensions["twilio"].sandbox
    worker = workers.start("worker", WORKER)
    wait_for_a_registered_worker(web, workers)
    sandbox.stall_next(r"/Content", DOWNLOAD_STALL_S)

    note = send(web, sample)
    wait_until(
        lambda: getattr(row_of(app, note), "status", None) == "downloading" and not sandbox.pending_faults(),
        30,
        "the job to hang in its download",
        workers.logs,
    )
    # Closed for longer than the download has left: the job ends its download while the database is gone, and
    # cannot put its row back either.
    with database_closed(app.config["SQLALCHEMY_DATABASE_URI"]):
        time.sleep(DOWNLOAD_STALL_S + OUTAGE_MARGIN_S)

    # Within a minute, not SWEEP_STUCK_AFTER_S (15 minutes) as when the row stayed `downloading`.
    row = wait_until(
        lambda: (lambda row: row if row and row.status in ("ready", "failed") else None)(row_of(app, note)),
        60,
        "the voice note whose job lost the database to be retried",
        lambda: describe(audio_rows(app)) + "\n" + workers.logs(),
    )
    context = f"{describe([row])}\n{workers.logs()}"
    assert row.status == "ready" and row.error is None, context
    assert row.attempts == 2, context  # the attempt the outage cut off, and its retry
    assert worker.poll() is None, context
    assert "database is unreachable" in (tmp_path / "worker.log").read_text(errors="replace"), context


def test_a_job_cut_off_by_a_database_outage_is_taken_over_by_its_retry(deliver, app, tmp_path, monkeypatch, caplog):
    """In both suites: the database goes away mid-job, and stays away while the job tries to put its row back and
    while the first retry tries to take the row; the next retry takes the row over from the cut-off attempt."""
    from webhook_app.inbound import normalize as inbound
    from webhook_app.jobs import queue as jobs

    refusals = {"left": 0, "cut_off": False}
    in_a_job = threading.local()  # only the jobs lose the database: the test's own reads and the relay do not
    process, run_job = inbound._process, jobs.run_job

    def cut_off_once(row):
        if refusals["cut_off"]:
            return process(row)
        refusals.update(cut_off=True, left=2)  # the attempt's reload of its row, then the first retry's claim
        raise OperationalError(
            "UPDATE audio_messages", {}, Exception("terminating connection due to administrator command")
        )

    def run_job_marked(name, *args):
        in_a_job.active = True
        try:
            return run_job(name, *args)
        finally:
            in_a_job.active = False

    def refuse_while_down(connection, cursor, statement, parameters, context, executemany):
        if refusals["left"] and getattr(in_a_job, "active", False):
            refusals["left"] -= 1
            raise OperationalError(statement, parameters, Exception("the database system is starting up"))

    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=1.0)
    with app.app_context():
        engine = db.engine
    monkeypatch.setattr(inbound, "_process", cut_off_once)
    monkeypatch.setattr(jobs, "run_job", run_job_marked)
    event.listen(engine, "before_cursor_execute", refuse_while_down)
    try:
        with caplog.at_level(logging.WARNING, logger="webhook_app.inbound"):
            assert deliver(source, "audio/ogg")[1].status_code == 200
            run_jobs(app)
    finally:
        event.remove(engine, "before_cursor_execute", refuse_while_down)
    (row,) = audio_rows(app)
    assert (row.status, row.attempts, row.error) == ("ready", 2, None), (
        f"the row of the attempt the outage cut off: {describe([row])}\n{caplog.text}"
    )
    assert caplog.text.count("the database is unreachable") == 2, caplog.text
