"""Audio-message backend for Twilio Conversations and Flex."""

from __future__ import annotations

import os
import weakref
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import Config, default_database_url
from .runtime.startup import install_excepthook

# A bad setting ends `flask …` and `alembic …` with one line naming it, not a traceback (runtime/startup.py).
install_excepthook()

# The factory's helpers below import the app's modules when an app is built, not at the top of this module:
# `import webhook_app.<module>` (gunicorn's logger class in its master process, Alembic's env.py, scripts) must
# stay light, and gunicorn's gevent workers must patch the standard library before requests, redis and psycopg
# are imported.


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from .extensions import db  # the factory's import (see above)

    app = Flask(__name__, instance_relative_config=True)
    _configure(app, test_config)
    _init_extensions(app)
    _register_jobs(app)
    _register_blueprints(app)
    with app.app_context():
        _engines.update(db.engines.values())
    return app


def _configure(app: Flask, test_config: dict[str, Any] | None) -> None:
    from .admin.auth import AdminSessionInterface  # the factory's imports (see above)
    from .web.wrappers import Request

    app.request_class = Request
    app.session_interface = AdminSessionInterface()
    app.config.from_object(Config())
    if test_config:
        app.config.update(test_config)
    os.makedirs(app.instance_path, exist_ok=True)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = default_database_url()
    # Stale connections after a PostgreSQL restart are replaced instead of failing a webhook.
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True})
    if app.config["PROXY_FIX_HOPS"] > 0:
        hops = app.config["PROXY_FIX_HOPS"]
        # Heroku's router terminates TLS: without this, request.url says http:// and signatures never match.
        # Flask's documented way to wrap its WSGI app in middleware, though Flask types wsgi_app as a method.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )


def _init_extensions(app: Flask) -> None:
    from . import observability
    from .agent import access
    from .extensions import db
    from .jobs import queue, sweeper
    from .media import storage
    from .runtime.greenlets import install_gevent_wait, is_gevent_process
    from .sandbox import sandbox_for
    from .settings import cache as settings_cache
    from .twilio import client as twilio_client
    from .web import errors, flex_auth, ratelimit
    from .webhooks import conversations

    if is_gevent_process():
        # A greenlet waiting on PostgreSQL resumes as soon as it answers, not behind the hub's queue.
        install_gevent_wait()
    observability.init_app(app)
    db.init_app(app)
    errors.init_app(app)
    twilio_client.init_app(app, sandbox_for(app))
    queue.init_app(app)
    conversations.init_app(app)  # the webhooks' group commit
    storage.init_app(app)
    ratelimit.init_app(app)
    flex_auth.init_app(app)
    access.init_app(app)
    settings_cache.init_app(app)
    sweeper.init_app(app)


def _register_jobs(app: Flask) -> None:
    """What each flow hands to jobs/ (jobs/registry.py): its outbox, how its stuck work is taken back, its upkeep.
    Here, so that every process building the app (web, worker and its work horses, the CLI) knows them all."""
    from .inbound import dispatch as inbound_dispatch
    from .jobs import registry
    from .media import retention
    from .outbound import recovery as outbound_recovery
    from .transcripts import job as transcripts_job

    registry.init_app(app)
    inbound_dispatch.init_app(app)
    outbound_recovery.init_app(app)
    transcripts_job.init_app(app)
    registry.registry(app).add_upkeep("retention", retention.delete_expired_media)


def _register_blueprints(app: Flask) -> None:
    from . import cli
    from .admin import api as admin_api
    from .admin import views as admin_views
    from .agent import api as agent_api
    from .agent import console as agent_console
    from .media import playback
    from .sandbox import pages as sandbox_pages
    from .web import cors, headers, health
    from .webhooks import conversations

    for blueprint in (
        conversations.bp,
        agent_api.bp,
        playback.bp,
        health.bp,
        admin_api.bp,
        admin_views.bp,
        agent_console.bp,
        sandbox_pages.bp,
    ):
        app.register_blueprint(blueprint)
    headers.init_app(app)
    cors.init_app(app)
    cli.init_app(app)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: DBAPIConnection, connection_record: ConnectionPoolEntry) -> None:
    # Web threads and job threads share one SQLite file: WAL and a busy timeout avoid "database is locked".
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


# Engines of the apps built in this process; a forked child must not touch their connections (see below).
_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def _forget_inherited_connections() -> None:
    # RQ forks a work horse per job (and its scheduler) while the parent's relay and maintenance threads keep
    # using the pool. A child that touched an inherited connection, even for pool_pre_ping's SELECT 1, would
    # talk over the parent's socket and corrupt PostgreSQL's protocol state for both. SQLAlchemy's recipe for
    # os.fork(): the child gets a fresh, empty pool and leaves the parent's connections alone (close=False).
    for engine in list(_engines):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_connections)
