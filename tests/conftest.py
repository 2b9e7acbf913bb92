"""Fixtures for every test folder (flaskr style: app, client, runner) plus the sandbox, a webhook checker (Zulip
style) and a customer delivering a file. Helpers that are not fixtures are in tests/helpers/.

Under pytest-xdist each worker process has a PostgreSQL database of its own (TEST_DATABASE_URL's name plus the
worker's id, created on its server) and its own RQ queue name, which also prefixes every Redis key the app writes
for the tests (the refusal limits), so workers share TEST_REDIS_URL's database without meeting."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, select, text, update
from sqlalchemy.engine import make_url

from tests.helpers.conversations import conversation_with_agent
from tests.helpers.service import count_rows, migrate, serving
from tests.helpers.webhooks import load_fixture, post_webhook
from webhook_app import create_app
from webhook_app.extensions import db
from webhook_app.models import (
    AudioMessage,
    ChannelSettings,
    RefusalHit,
    SettingsChange,
    SettingsVersion,
    StoredMedia,
    Transcript,
)
from webhook_app.sandbox.demo import AGENT_IDENTITY
from webhook_app.settings.rules import HARD_MAX_BYTES

DEFAULT_SETTINGS = {
    "sending_enabled": True,
    "max_duration_s": 900,
    "bitrate_kbps": 64,
    "normalize_inbound": True,
    "loudness_normalize": False,
    "transcribe": False,
    "transcribe_language": "auto",
}


BROWSER_TESTS = Path(__file__).resolve().parent / "browser"


def pytest_collection_modifyitems(items) -> None:
    """Every browser test is slow (each drives a real browser): marked here rather than in each of its files."""
    for item in items:
        if BROWSER_TESTS in item.path.parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    """TEST_DATABASE_URL (real PostgreSQL in CI) or a SQLite file; migrated once, from empty, to head."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        from webhook_app.config import normalize_database_url

        url = database_of_this_worker(normalize_database_url(url))
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    else:
        url = "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.db")
    migrate(url)
    return url


def database_of_this_worker(url: str) -> str:
    """`url` itself in a serial run; under pytest-xdist, a database of the worker's own beside it on the same server
    (test_gw0, test_gw1, ...), created when missing: each worker resets its database for every test."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    shared = make_url(url)
    own = shared.set(database=f"{shared.database}_{worker}")
    admin = create_engine(shared, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        if not connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": own.database}):
            connection.execute(text(f'CREATE DATABASE "{own.database}"'))
    admin.dispose()
    return own.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def queue_name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def app_config(database_url, queue_name, tmp_path) -> dict:
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": os.environ.get("TEST_REDIS_URL") or None,
        "RQ_QUEUE": queue_name,
        "SANDBOX_DB": str(tmp_path / "sandbox.db"),
        "SECRET_KEY": "test-secret",
        "SETTINGS_CHECK_INTERVAL_S": 0,  # tests change settings and expect them at once
        "JOB_RETRY_BASE_S": 0,  # job-level retries at once, so tests need not wait out a backoff
        "MAINTENANCE_INTERVAL_S": 0,  # tests sweep when they mean to, never a background thread
    }


@pytest.fixture
def another_app(app, app_config):
    """Builds more apps like `app`, on its database, Redis, queue and sandbox: another web process's worth (a
    second gunicorn worker), or the same service with other settings."""
    made = []

    def make(**config):
        made.append(create_app({**app_config, **config}))
        return made[-1]

    yield make
    for other in made:
        with other.app_context():
            other.extensions["jobs"].wait(timeout=60)
            db.session.remove()
            db.engine.dispose()  # see `app`


@pytest.fixture
def app(app_config, queue_name):
    app = create_app(app_config)
    with app.app_context():
        _reset_database()
        runner = app.extensions["jobs"]
        for queue in getattr(runner, "queues", ()):
            queue.empty()
        # The limits on refusals: each test starts with none counted.
        for key in runner.redis.scan_iter(f"{queue_name}:refusals:*") if app.config["REDIS_URL"] else ():
            runner.redis.delete(key)
    yield app
    with app.app_context():
        app.extensions["jobs"].wait(timeout=60)
        db.session.remove()
        # Each test's app has a pool of its own: closed now rather than whenever it is collected, so parallel runs
        # (and other suites on the same server) stay within PostgreSQL's max_connections.
        db.engine.dispose()


def _reset_database() -> None:
    db.session.execute(delete(Transcript))  # before its audio: SQLite does not cascade (foreign keys off)
    db.session.execute(delete(AudioMessage))
    db.session.execute(delete(StoredMedia))
    db.session.execute(delete(SettingsChange))
    db.session.execute(delete(RefusalHit))
    db.session.execute(update(SettingsVersion).values(version=SettingsVersion.version + 1))
    for row in db.session.scalars(select(ChannelSettings)):
        for key, value in DEFAULT_SETTINGS.items():
            setattr(row, key, value)
        row.max_bytes = HARD_MAX_BYTES[row.channel]  # the migration's defaults are Twilio's caps
        row.updated_by = "migration"
    db.session.commit()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def sandbox(app):
    return app.extensions["twilio"].sandbox


@pytest.fixture
def check_webhook(client, sandbox, app):
    """Post a fixture, signed as Twilio signs it; check the status and the audit rows it created."""

    def check(fixture: str, expected_status: int = 200, expected_rows: int | None = None, **values):
        params = load_fixture(fixture, **values)
        response = post_webhook(client, sandbox, params)
        assert response.status_code == expected_status, response.get_data(as_text=True)
        if expected_rows is not None:
            assert count_rows(app) == expected_rows
        return response

    return check


@pytest.fixture
def whatsapp(sandbox) -> tuple[str, str]:
    """A customer's WhatsApp conversation with an agent in it (agent@example.com): (its SID, the agent's
    participant SID), for webhooks about the agent's messages."""
    conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
    agent = sandbox.add_participant(conversation, identity="agent@example.com", attributes='{"member_type":"agent"}')
    return conversation, agent["sid"]


@pytest.fixture
def agent_token(sandbox) -> str:
    return sandbox.issue_token(AGENT_IDENTITY, roles=["agent"])


@pytest.fixture
def deliver(client, sandbox):
    """A customer sends a file on a channel: the sandbox stores it and we post its signed onMessageAdded. A new
    conversation has the agent of `agent_token` in it, so tests can list and answer its audio."""

    def send(path, content_type: str, channel: str = "whatsapp", conversation_sid: str | None = None):
        if conversation_sid is None:
            conversation_sid = conversation_with_agent(sandbox, "Customer", channel)
        data = Path(path).read_bytes()
        params = sandbox.customer_sends_media(conversation_sid, data, content_type, Path(path).name)
        response = post_webhook(client, sandbox, params)
        return params, response

    return send


@pytest.fixture
def live_server(app):
    """The test app (sandbox mode) over real HTTP, plus an RQ worker thread when the tests run with Redis."""
    stop = threading.Event()
    if app.config["REDIS_URL"]:
        threading.Thread(target=_rq_worker_loop, args=(app, stop), daemon=True).start()
    with serving(app) as url:
        yield url
    stop.set()


def _rq_worker_loop(app, stop):
    """With Redis the server only stores and enqueues: a worker thread plays the worker dyno (and its relay)."""
    from rq import SimpleWorker
    from rq.timeouts import TimerDeathPenalty

    class ThreadWorker(SimpleWorker):
        death_penalty_class = TimerDeathPenalty  # signals only work in the main thread

        def _install_signal_handlers(self):
            pass

    from webhook_app.jobs.relay import relay_all_waiting

    runner = app.extensions["jobs"]
    with app.app_context():
        while not stop.is_set():
            if runner.relays_new_rows:
                relay_all_waiting()
                db.session.remove()
            ThreadWorker(runner.queues, connection=runner.redis).work(burst=True)
            stop.wait(0.1)
