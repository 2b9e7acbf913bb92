"""Fixtures (flaskr style: app, client, runner) plus the sandbox and a webhook helper (Zulip style)."""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from string import Template
from urllib.parse import parse_qsl

import pytest
from alembic import command
from sqlalchemy import create_engine, delete, func, select, text, update
from werkzeug.serving import make_server

from webhook_app import create_app

# The agent of `agent_token` is the console's: the escaped chat identity Flex gives both a token and a participant.
from webhook_app.agent.demo import AGENT_ATTRIBUTES, AGENT_IDENTITY
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
from webhook_app.runtime.schema import alembic_config  # test_migrations imports it from here
from webhook_app.settings.rules import HARD_MAX_BYTES

FIXTURES = Path(__file__).resolve().parent / "fixtures"
POST_EVENT = "/twilio/conversations/post-event"

DEFAULT_SETTINGS = {
    "sending_enabled": True,
    "max_duration_s": 900,
    "bitrate_kbps": 64,
    "normalize_inbound": True,
    "loudness_normalize": False,
    "transcribe": False,
    "transcribe_language": "auto",
}


def migrate(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    """TEST_DATABASE_URL (real PostgreSQL in CI) or a SQLite file; migrated once, from empty, to head."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        from webhook_app.config import normalize_database_url

        url = normalize_database_url(url)
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    else:
        url = "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.db")
    migrate(url)
    return url


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


def record_calls(monkeypatch, target, name: str) -> list:
    """The first argument of every call of `target.name` from now on (each call still goes through): what a test
    counts of the service's calls to Twilio."""
    calls = []
    original = getattr(target, name)
    monkeypatch.setattr(target, name, lambda first, *rest: calls.append(first) or original(first, *rest))
    return calls


def run_jobs(app) -> None:
    with app.app_context():
        app.extensions["jobs"].wait(timeout=120)


def audio_rows(app) -> list[AudioMessage]:
    with app.app_context():
        rows = list(db.session.scalars(select(AudioMessage).order_by(AudioMessage.id)))
        db.session.expunge_all()
        return rows


def count_rows(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AudioMessage))


def load_fixture(name: str, **values) -> dict[str, str]:
    """A webhook body as Twilio posts it (form-encoded), with $placeholders filled in."""
    raw = (FIXTURES / "webhooks" / f"{name}.txt").read_text().strip()
    return dict(parse_qsl(Template(raw).substitute(values), keep_blank_values=True))


def web_chat_message_with_two_attachments(app, sandbox, tmp_path) -> tuple[str, dict, str]:
    """A web chat (SDK) message with a 1 s and a 2 s voice note, of which its webhook shows only the first:
    (conversation SID, the webhook's params, the second attachment's media SID)."""
    from tests.helpers.audio_samples import make_audio

    conversation = conversation_with_agent(sandbox, "Web visitor", "webchat")
    first = make_audio(tmp_path / "a.webm", "webm", seconds=1.0)
    second = make_audio(tmp_path / "b.ogg", "whatsapp_ogg", seconds=2.0)
    params = sandbox.customer_sends_media(conversation, Path(first).read_bytes(), "audio/webm", "a.webm")
    extra = app.extensions["twilio"].upload_media(
        sandbox.chat_service_sid, Path(second).read_bytes(), "audio/ogg", "b.ogg"
    )
    sandbox.attach_media(conversation, params["MessageSid"], extra["sid"])
    return conversation, params, extra["sid"]


def hold_outbound_conversions(monkeypatch, release: threading.Event) -> threading.Event:
    """Agent uploads wait for `release` before they convert (a request caught mid-flight); the event answered is
    set when one has started waiting."""
    from webhook_app.outbound import convert as outbound

    entered = threading.Event()
    real_transcode = outbound.transcode_to_mp3

    def held_transcode(*args, **kwargs):
        entered.set()
        release.wait(30)
        return real_transcode(*args, **kwargs)

    monkeypatch.setattr(outbound, "transcode_to_mp3", held_transcode)
    return entered


def post_webhook(client, sandbox, params: dict, path: str = POST_EVENT, signature: str | None = None):
    url = "http://localhost" + path
    headers = {"X-Twilio-Signature": signature if signature is not None else sandbox.sign(url, params)}
    return client.post(path, data=params, headers=headers)


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
def agent_token(sandbox) -> str:
    return sandbox.issue_token(AGENT_IDENTITY, roles=["agent"])


def agent_accepts(sandbox, conversation_sid: str) -> str:
    """The agent of `agent_token` joins the conversation, as Flex adds them when they accept its task."""
    sandbox.add_participant(conversation_sid, identity=AGENT_IDENTITY, attributes=AGENT_ATTRIBUTES)
    return conversation_sid


def conversation_with_agent(sandbox, friendly_name: str, channel: str, customer_address: str | None = None) -> str:
    """A customer's conversation on `channel` whose task the agent of `agent_token` has accepted."""
    return agent_accepts(sandbox, sandbox.create_conversation(friendly_name, channel, customer_address)["sid"])


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


@contextlib.contextmanager
def serving(wsgi_app) -> Iterator[str]:
    """Any WSGI app over real HTTP on a free port, threaded, so a page, its XHRs and <audio> ranges overlap."""
    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


@contextlib.contextmanager
def deployed_service(remote, database_url: str, **config) -> Iterator:
    """The service with Twilio credentials (no in-process sandbox), talking real HTTP to the sandbox `remote` on a
    port of its own, reached through TWILIO_API_BASE_URL exactly as real Twilio would be."""
    with serving(remote.wsgi_app()) as twilio_url:
        service = create_app(
            {
                "TESTING": True,
                "SQLALCHEMY_DATABASE_URI": database_url,
                "SECRET_KEY": "test-secret",
                "TWILIO_SANDBOX": False,
                "TWILIO_ACCOUNT_SID": remote.account_sid,
                "TWILIO_AUTH_TOKEN": remote.auth_token,
                "TWILIO_API_BASE_URL": twilio_url,
                "MAINTENANCE_INTERVAL_S": 0,
                **config,
            }
        )
        assert service.extensions["twilio"].sandbox is None
        yield service
        with service.app_context():
            service.extensions["jobs"].wait(timeout=60)
            db.session.remove()


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
