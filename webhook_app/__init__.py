"""Audio-message backend for Twilio Conversations and Flex."""

from __future__ import annotations

import os

from flask import Flask
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import Config, default_database_url


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
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
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)

    from . import auth, errors, jobs, observability, settings, storage, sweeper
    from .audio.ffmpeg import configure_pydub
    from .extensions import db
    from .twilio import client as twilio_client

    observability.init_app(app)
    db.init_app(app)
    errors.init_app(app)
    twilio_client.init_app(app)
    jobs.init_app(app)
    storage.init_app(app)
    auth.init_app(app)
    settings.init_app(app)
    sweeper.init_app(app)
    configure_pydub()

    from . import health, playback
    from .admin import api as admin_api
    from .admin import views as admin_views
    from .agent import api as agent_api
    from .agent import console as agent_console
    from .webhooks import conversations

    app.register_blueprint(conversations.bp)
    app.register_blueprint(agent_api.bp)
    app.register_blueprint(playback.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(admin_api.bp)
    app.register_blueprint(admin_views.bp)
    app.register_blueprint(agent_console.bp)

    from . import cli

    cli.init_app(app)
    return app


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    # Web threads and job threads share one SQLite file: WAL and a busy timeout avoid "database is locked".
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


@event.listens_for(Engine, "connect")
def _remember_connecting_process(dbapi_connection, connection_record):
    connection_record.info["pid"] = os.getpid()


@event.listens_for(Engine, "checkout")
def _connection_from_another_process(dbapi_connection, connection_record, connection_proxy):
    # RQ forks a work horse per job: a pooled connection the parent (its sweeper thread) opened must never be
    # used by the child too, or both talk over one socket and PostgreSQL's protocol state is corrupted under load.
    # SQLAlchemy's recipe for os.fork(): forget it without closing it (the parent still owns it); the pool
    # then opens a fresh one.
    if connection_record.info.get("pid") != os.getpid():
        connection_record.dbapi_connection = connection_proxy.dbapi_connection = None
        raise exc.DisconnectionError(f"connection opened by process {connection_record.info.get('pid')}, "
                                     f"checked out in {os.getpid()}")
