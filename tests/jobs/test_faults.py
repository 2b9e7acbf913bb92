"""Nothing lost under faults: killed workers, Redis down, PostgreSQL connections dropped or gone."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.helpers.audio_samples import make_audio
from tests.helpers.conversations import web_chat_message_with_two_attachments
from tests.helpers.processes import ROOT, kill_hard, wait_until
from tests.helpers.service import a_second_from_now, audio_rows, run_jobs
from tests.helpers.webhooks import load_fixture, post_webhook, sids
from tests.helpers.workers import start_worker, worker_env
from webhook_app.extensions import db
from webhook_app.jobs.sweeper import sweep

REAL_REDIS = os.environ.get("TEST_REDIS_URL")
REAL_POSTGRES = os.environ.get("TEST_DATABASE_URL")


def row_status(app):
    rows = audio_rows(app)
    return rows[0].status if rows else None


@pytest.mark.slow
@pytest.mark.skipif(not REAL_REDIS, reason="needs RQ workers on a real Redis (CI's second suite runs it)")
def test_worker_killed_mid_job_then_the_job_runs_again(deliver, app, sandbox, tmp_path):
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=2.0)
    sandbox.stall_next(r"/Content", 60)  # the first download hangs: the worker is mid-job when killed
    first = start_worker(app, tmp_path, JOB_RETRY_BASE_S=0, MAINTENANCE_INTERVAL_S=0)
    try:
        _, response = deliver(source, "audio/ogg; codecs=opus")
        assert response.status_code == 200
        wait_until(
            lambda: row_status(app) == "downloading" and sandbox.pending_faults() == 0,
            timeout=30,
            what="the worker to hang in its download",
        )
    finally:
        first.kill_hard()
    time.sleep(1.5)
    assert row_status(app) == "downloading"  # nobody is left to finish it

    second = start_worker(app, tmp_path, JOB_RETRY_BASE_S=0, SWEEP_STUCK_AFTER_S=1, MAINTENANCE_INTERVAL_S=1)
    try:
        wait_until(lambda: row_status(app) in ("ready", "failed"), timeout=60, what="the revived job")
    finally:
        second.kill_hard()
    (row,) = audio_rows(app)
    assert row.status == "ready", (row.error, second.logs())
    assert row.attempts == 2


def test_web_process_killed_mid_job_is_revived_by_the_sweeper(app, sandbox, tmp_path):
    """Embedded default: jobs run in the web process. Kill that process mid-job; a new one sweeps at start."""
    if app.config["REDIS_URL"]:
        pytest.skip("this is the in-process variant; the RQ variant is the test above")
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=2.0)
    conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
    params = sandbox.customer_sends_media(conversation, Path(source).read_bytes(), "audio/ogg", "voice.ogg")
    sandbox.stall_next(r"/Content", 60)
    script = textwrap.dedent(f"""
        from webhook_app import create_app
        app = create_app({{"SQLALCHEMY_DATABASE_URI": {app.config["SQLALCHEMY_DATABASE_URI"]!r},
                           "SANDBOX_DB": {app.config["SANDBOX_DB"]!r}, "SECRET_KEY": "test-secret"}})
        params = {params!r}
        url = "http://localhost/twilio/conversations/post-event"
        sandbox = app.extensions["twilio"].sandbox
        response = app.test_client().post("/twilio/conversations/post-event", data=params,
                                          headers={{"X-Twilio-Signature": sandbox.sign(url, params)}})
        print("webhook", response.status_code, flush=True)
        import time; time.sleep(120)
    """)
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=worker_env(app, REDIS_URL=""),
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: row_status(app) == "downloading" and sandbox.pending_faults() == 0,
            timeout=30,
            what="the in-process job to hang in its download",
        )
    finally:
        kill_hard(process)
    assert b"webhook 200" in process.stdout.read()
    app.config["SWEEP_STUCK_AFTER_S"] = 0
    with app.app_context():
        assert sweep()["revived"] == 1
    run_jobs(app)
    (row,) = audio_rows(app)
    assert row.status == "ready" and row.attempts == 2


def test_redis_unreachable_still_acknowledges_and_the_sweeper_enqueues_later(client, app, sandbox, tmp_path):
    from webhook_app.jobs.queue import RqRunner

    working = app.extensions["jobs"]
    app.extensions["jobs"] = RqRunner("redis://127.0.0.1:1/0", "unreachable")  # nothing listens on port 1
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=1.0)
    conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
    params = sandbox.customer_sends_media(conversation, Path(source).read_bytes(), "audio/ogg", "voice.ogg")
    response = post_webhook(client, sandbox, params)
    assert response.status_code == 200  # Twilio does not retry by default: never lose the event to a 5xx
    assert row_status(app) == "queued"
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json()["status"] == "degraded" and health.get_json()["queue"]["ok"] is False

    app.extensions["jobs"] = working  # Redis is back
    app.config["SWEEP_REQUEUE_AFTER_S"] = 0
    with app.app_context():
        assert sweep()["requeued"] == 1
    run_jobs(app)
    assert row_status(app) == "ready"


def test_a_web_chat_message_the_sweeper_requeues_still_gets_all_its_attachments(client, app, sandbox, tmp_path):
    """With RQ on PostgreSQL the relay expands SDK messages as it hands their rows out; a row that waited past
    SWEEP_REQUEUE_AFTER_S (workers down for a release, say) is handed out by the sweeper instead, and the
    attachments the webhook did not show must not be lost with the relay's turn."""
    if not app.extensions["jobs"].relays_new_rows:
        pytest.skip("the relay runs with RQ on PostgreSQL (CI's second suite); in-process, the web expands")
    _, params, extra_media = web_chat_message_with_two_attachments(app, sandbox, tmp_path)
    assert post_webhook(client, sandbox, params).status_code == 200
    (waiting,) = audio_rows(app)
    assert waiting.dispatched_at is None  # no relay ran: the workers are down

    app.config["SWEEP_REQUEUE_AFTER_S"] = 0
    with app.app_context():
        assert sweep()["requeued"] == 1
    run_jobs(app)
    run_jobs(app)
    rows = audio_rows(app)
    assert sorted(row.media_sid for row in rows) == sorted([waiting.media_sid, extra_media])
    assert {row.status for row in rows} == {"ready"}


class WorkerKilled(BaseException):
    """Stands in for SIGKILL inside the relay: nothing after it runs, no `except Exception` sees it."""


def test_a_relay_killed_between_its_two_enqueues_loses_no_attachment(client, app, sandbox, tmp_path, monkeypatch):
    """The relay enqueues a web chat message's expansion and its rows' jobs in two Redis calls. Killed after the
    first, whichever it is, the message must still end up with every attachment."""
    from webhook_app.inbound.dispatch import relay_waiting_rows
    from webhook_app.jobs.queue import RqRunner

    if not app.extensions["jobs"].relays_new_rows:
        pytest.skip("the relay runs with RQ on PostgreSQL (CI's second suite)")
    _, params, extra_media = web_chat_message_with_two_attachments(app, sandbox, tmp_path)
    assert post_webhook(client, sandbox, params).status_code == 200
    enqueued = []

    def enqueue_then_die(original):
        def call(self, *args, **kwargs):
            if enqueued:
                raise WorkerKilled()
            enqueued.append(args)
            return original(self, *args, **kwargs)

        return call

    with monkeypatch.context() as patch:
        patch.setattr(RqRunner, "enqueue", enqueue_then_die(RqRunner.enqueue))
        patch.setattr(RqRunner, "enqueue_many", enqueue_then_die(RqRunner.enqueue_many))
        with app.app_context(), pytest.raises(WorkerKilled):
            relay_waiting_rows()
    assert len(enqueued) == 1

    run_jobs(app)  # the worker restarts and runs what reached Redis
    app.config["SWEEP_REQUEUE_AFTER_S"] = 0
    with app.app_context():
        sweep(now=a_second_from_now())
    run_jobs(app)
    rows = audio_rows(app)
    assert len(rows) == 2 and extra_media in {row.media_sid for row in rows}
    assert {row.status for row in rows} == {"ready"}


def test_an_expansion_the_sweeper_cannot_enqueue_leaves_the_row_for_the_next_sweep(
    client, app, sandbox, tmp_path, monkeypatch
):
    from webhook_app.inbound.expand import expand_message
    from webhook_app.jobs.queue import RqRunner

    if not app.extensions["jobs"].relays_new_rows:
        pytest.skip("the relay runs with RQ on PostgreSQL (CI's second suite)")
    _, params, extra_media = web_chat_message_with_two_attachments(app, sandbox, tmp_path)
    assert post_webhook(client, sandbox, params).status_code == 200
    enqueue = RqRunner.enqueue

    def expansion_refused(self, name, *args):
        if name == expand_message.job_path:
            raise ConnectionError("Redis went away")
        return enqueue(self, name, *args)

    app.config["SWEEP_REQUEUE_AFTER_S"] = 0
    with monkeypatch.context() as patch, app.app_context():
        patch.setattr(RqRunner, "enqueue", expansion_refused)
        assert sweep()["requeued"] == 1
        assert app.extensions["jobs"].depth() == 0  # its own job waits for the expansion
    (waiting,) = audio_rows(app)
    assert waiting.status == "queued"

    with app.app_context():
        assert sweep(now=a_second_from_now())["requeued"] == 1
    run_jobs(app)
    rows = audio_rows(app)
    assert sorted(row.media_sid for row in rows) == sorted([waiting.media_sid, extra_media])
    assert {row.status for row in rows} == {"ready"}


def test_a_web_chat_message_whose_in_process_jobs_died_with_the_process_still_gets_all_its_attachments(
    client, app, sandbox, tmp_path, monkeypatch
):
    """In-process jobs live in the web process: a crash mid-job takes the pending expansion and its once-key
    with it, and the sweeper, reviving the row, must ask for the other attachments again."""
    from webhook_app.jobs.queue import InProcessRunner
    from webhook_app.models import AudioMessage

    runner = app.extensions["jobs"]
    if not isinstance(runner, InProcessRunner):
        pytest.skip("with RQ the jobs survive a web process's crash in Redis")
    _, params, extra_media = web_chat_message_with_two_attachments(app, sandbox, tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(InProcessRunner, "enqueue", lambda self, name, *args: None)  # accepted, then lost
        assert post_webhook(client, sandbox, params).status_code == 200
    runner._once.clear()  # the process that held the once-keys is gone
    with app.app_context():
        db.session.execute(AudioMessage.__table__.update().values(status="downloading"))
        db.session.commit()
    app.config["SWEEP_STUCK_AFTER_S"] = 0
    with app.app_context():
        assert sweep(now=a_second_from_now())["revived"] == 1
    run_jobs(app)
    run_jobs(app)
    rows = audio_rows(app)
    assert len(rows) == 2 and extra_media in {row.media_sid for row in rows}
    assert {row.status for row in rows} == {"ready"}


def test_sweeper_gives_up_after_max_attempts_and_fails_abandoned_uploads(app):
    from webhook_app.models import AudioMessage

    app.config["SWEEP_STUCK_AFTER_S"] = 0
    with app.app_context():
        db.session.add_all(
            [
                AudioMessage(
                    direction="inbound",
                    channel="sms",
                    status="transcoding",
                    conversation_sid="CH" + "1" * 32,
                    message_sid="IM" + "1" * 32,
                    media_sid="ME" + "1" * 32,
                    source="SMS",
                    truncated=False,
                    attempts=app.config["JOB_MAX_ATTEMPTS"],
                ),
                AudioMessage(
                    direction="outbound",
                    channel="sms",
                    status="sending",
                    conversation_sid="CH" + "1" * 32,
                    source="agent-api",
                    truncated=False,
                    attempts=1,
                ),
                # Its request died after Twilio created the message: the customer has it.
                AudioMessage(
                    direction="outbound",
                    channel="sms",
                    status="sending",
                    conversation_sid="CH" + "1" * 32,
                    source="agent-api",
                    truncated=False,
                    attempts=1,
                    message_sid="IM" + "2" * 32,
                ),
            ]
        )
        db.session.commit()
        counts = sweep(now=a_second_from_now())
    assert counts["gave_up"] == 1 and counts["abandoned"] == 2
    inbound, outbound, posted = audio_rows(app)
    assert inbound.status == "failed" and "giving up" in inbound.error
    assert outbound.status == "failed" and outbound.error_code == "interrupted"
    assert posted.status == "ready" and posted.error_code is None and posted.finished_at is not None


@pytest.mark.skipif(not REAL_POSTGRES, reason="needs a real PostgreSQL server (CI's second suite)")
def test_dropped_postgres_connections_are_replaced_by_the_pool(client, app, sandbox):
    """What a PostgreSQL restart looks like to the pool: every connection it holds is dead."""
    assert client.get("/healthz").status_code == 200
    with app.app_context():
        pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar()
        db.session.remove()
        from sqlalchemy import create_engine

        admin = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
        with admin.begin() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        admin.dispose()
        assert pid
    params = load_fixture("onMessageAdded__whatsapp_voice_note", **sids(sandbox, size="10"))
    assert post_webhook(client, sandbox, params).status_code == 200  # pool_pre_ping replaced the dead connection
    assert client.get("/healthz").status_code == 200


def test_database_down_means_503_and_nothing_half_stored(sandbox, tmp_path):
    from webhook_app import create_app

    down = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "connect_args": {"connect_timeout": 2}},
            "SANDBOX_DB": str(tmp_path / "sb.db"),
            "TESTING": True,
        }
    )
    client = down.test_client()
    sandbox_down = down.extensions["twilio"].sandbox
    params = load_fixture("onMessageAdded__whatsapp_voice_note", **sids(sandbox_down, size="10"))
    response = post_webhook(client, sandbox_down, params)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "storage_unavailable"
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json()["status"] == "degraded" and health.get_json()["database"]["ok"] is False


def test_maintenance_interval_zero_means_no_maintenance_thread_not_a_busy_loop(app):
    from webhook_app.jobs.sweeper import start_maintenance_thread

    app.config["MAINTENANCE_INTERVAL_S"] = 0
    with pytest.raises(ValueError, match="MAINTENANCE_INTERVAL_S"):
        start_maintenance_thread(app)


def test_a_web_chat_message_showing_no_audio_is_refused_while_its_expansion_cannot_be_queued(
    client, app, sandbox, tmp_path, monkeypatch
):
    """The webhook shows one attachment of an SDK message. If that one is an image, no row is stored, and only
    the expansion would find the voice note beside it: if it cannot be queued, a 200 would lose it."""
    from webhook_app.jobs import queue as jobs

    conversation = sandbox.create_conversation("Web visitor", "webchat")["sid"]
    params = sandbox.customer_sends_media(conversation, b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png", "a.png")
    voice = make_audio(tmp_path / "b.ogg", "whatsapp_ogg", seconds=1.0)
    extra = app.extensions["twilio"].upload_media(
        sandbox.chat_service_sid, Path(voice).read_bytes(), "audio/ogg", "b.ogg"
    )
    sandbox.attach_media(conversation, params["MessageSid"], extra["sid"])

    def queue_down(*args, **kwargs):
        raise ConnectionError("Redis is unreachable")

    with monkeypatch.context() as patch:
        patch.setattr(jobs, "enqueue_once", queue_down)
        refused = post_webhook(client, sandbox, params)
    assert refused.status_code == 503 and refused.get_json()["error"]["code"] == "queue_unavailable"
    assert audio_rows(app) == []

    assert post_webhook(client, sandbox, params).status_code == 200  # Twilio's retry, the queue back
    run_jobs(app)
    run_jobs(app)
    (row,) = audio_rows(app)
    assert row.media_sid == extra["sid"] and row.status == "ready"


def test_a_503_is_redelivered_by_twilios_retry_and_stored_once(app, sandbox, live_server, tmp_path, monkeypatch):
    """The contract's 503 exists for a service set up with post_webhook_retry_count: Twilio redelivers the
    event with RetryCount 1, and the voice note is stored and converted exactly once."""
    from webhook_app.webhooks.group_commit import StorageUnavailable

    group_commit = app.extensions["group_commit"]
    original_insert = group_commit.insert
    refused: list[int] = []

    def database_blip(rows):
        if not refused:
            refused.append(len(rows))
            raise StorageUnavailable("the database is restarting")
        return original_insert(rows)

    monkeypatch.setattr(group_commit, "insert", database_blip)
    sandbox.set_webhook(f"{live_server}/twilio/conversations/post-event", post_retry_count=2)
    conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
    voice = make_audio(tmp_path / "note.ogg", "whatsapp_ogg", seconds=1.0)
    params = sandbox.customer_sends_media(conversation, Path(voice).read_bytes(), "audio/ogg", "note.ogg", deliver=True)

    deliveries = sandbox.webhook_deliveries()
    assert [(d["status"], d["params"]["RetryCount"]) for d in deliveries] == [(503, "0"), (200, "1")]
    assert refused == [1]
    row = wait_until(
        lambda: next((r for r in audio_rows(app) if r.status in ("ready", "failed")), None),
        60,
        "the redelivered voice note to finish",
    )
    assert (row.status, row.message_sid) == ("ready", params["MessageSid"])
    assert len(audio_rows(app)) == 1
