"""The service under test, in-process: its rows, its jobs, its settings, the calls it makes; and the service served
over real HTTP (a threaded server, or a deploy that reaches the sandbox as real Twilio)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import func, select
from werkzeug.serving import make_server

from webhook_app import create_app
from webhook_app.extensions import db
from webhook_app.models import AudioMessage
from webhook_app.runtime.schema import alembic_config
from webhook_app.settings.rules import update_settings


def migrate(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


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


def set_settings(app, channel, **values):
    with app.app_context():
        update_settings(channel, values, actor="test")
        db.session.commit()


def a_second_from_now() -> datetime:
    """The sweeper's `now` for a test that has just set a SWEEP_*_AFTER_S to 0: strictly after every timestamp the
    test wrote, whatever the database's clock resolution, without sleeping."""
    return datetime.now(UTC) + timedelta(seconds=1)


def record_calls(monkeypatch, target, name: str) -> list:
    """The first argument of every call of `target.name` from now on (each call still goes through): what a test
    counts of the service's calls to Twilio."""
    calls = []
    original = getattr(target, name)
    monkeypatch.setattr(target, name, lambda first, *rest: calls.append(first) or original(first, *rest))
    return calls


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
