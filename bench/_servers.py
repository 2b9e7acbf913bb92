"""The servers under load and what they store into: gunicorn as the Procfile runs it, PostgreSQL + Redis when they
answer (else SQLite + in-process jobs), the bench's own database, queue and sandbox, cleaned up after a run."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import requests  # noqa: E402
from _webhooks import HOST, PATH  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from tests.helpers.processes import Processes, wait_until  # noqa: E402 - the multi-process tests' helpers
from webhook_app.config import normalize_database_url  # noqa: E402

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test_load"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/2"
# Overrides of gunicorn.conf.py, for every server (unset: the Procfile's settings).
GUNICORN_OVERRIDES = [
    option
    for variable, flag in (
        ("BENCH_WEB_WORKERS", "--workers"),
        ("BENCH_WORKER_CLASS", "--worker-class"),
        ("BENCH_WEB_THREADS", "--threads"),
    )
    if os.environ.get(variable)
    for option in (flag, os.environ[variable])
]


def choose_backends(workdir: str) -> tuple[str, str | None, str]:
    """(database URL, Redis URL or None, what was chosen in words)."""
    database_url = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("BENCH_REDIS_URL") or DEFAULT_REDIS_URL
    notes = []
    if postgres_reachable(database_url):
        notes.append(f"PostgreSQL {database_url}")
    else:
        notes.append(f"SQLite (PostgreSQL {database_url} unreachable)")
        database_url = f"sqlite:///{workdir}/bench.db"
    if redis_reachable(redis_url):
        notes.append(f"RQ on Redis {redis_url}")
    else:
        notes.append(f"in-process jobs (Redis {redis_url} unreachable)")
        redis_url = None
    return database_url, redis_url, ", ".join(notes)


def postgres_reachable(url: str) -> bool:
    """The bench database answers, created on the server first if only it is missing (a fresh machine)."""
    import psycopg
    from psycopg import sql

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(plain, connect_timeout=2):
            return True
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            return False
    except Exception:  # noqa: BLE001 - unreachable or refused: fall back
        return False
    base, _, name = plain.rpartition("/")
    try:
        with psycopg.connect(f"{base}/postgres", connect_timeout=2, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name.split("?")[0])))
        return True
    except Exception:  # noqa: BLE001
        return False


def redis_reachable(url: str) -> bool:
    try:
        from redis import Redis

        client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
        return True
    except Exception:  # noqa: BLE001
        return False


def service_env(workdir: str, database_url: str, redis_url: str | None, queue_name: str) -> dict:
    """The servers' environment: this one without Twilio credentials or gunicorn overrides, on the bench's
    database, Redis, queue and sandbox."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "GUNICORN_"))}
    for key in ("REDIS_URL", "PUBLIC_BASE_URL", "LOG_LEVEL", "MEDIA_STORE", "WEB_CONCURRENCY"):
        env.pop(key, None)
    env.update(
        DATABASE_URL=database_url,
        RQ_QUEUE=queue_name,
        SANDBOX_DB=os.path.join(workdir, "sandbox.db"),
        SECRET_KEY="bench-secret",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def prepare_database(env: dict):
    """Migrate the bench's database and clean up after earlier runs; answer an engine on it."""
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    engine = create_engine(normalize_database_url(env["DATABASE_URL"]))
    # The bench's database is its own: rows an interrupted run (or anything else) left unfinished would be revived
    # by the workers' sweeper in the end-to-end phase and queue in front of the voice notes being measured.
    with engine.begin() as connection:
        stale = connection.execute(
            text(
                "UPDATE audio_messages SET status = 'failed', error = 'left unfinished before this bench run'"
                " WHERE status IN ('queued', 'downloading', 'transcoding', 'sending')"
            )
        ).rowcount
    if stale:
        print(f"closed {stale} unfinished rows left in the bench database by an earlier run")
    if engine.dialect.name == "postgresql":
        # Each run deletes its rows at the end. Where autovacuum is off (it is on this machine's server) their dead
        # tuples would pile up in the table and its unique index, and each run would insert into a bigger one.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE audio_messages"))
    return engine


def gunicorn_settings(env: dict) -> str:
    """What gunicorn.conf.py (read with the servers' environment) and the overrides amount to."""
    from unittest import mock

    from gunicorn.config import Config

    config = Config()
    with mock.patch.dict(os.environ, env, clear=True):
        settings = runpy.run_path(os.path.join(ROOT, "gunicorn.conf.py"))
    for name, value in settings.items():
        if name in config.settings:
            config.set(name, value)
    overrides = dict(zip(GUNICORN_OVERRIDES[::2], GUNICORN_OVERRIDES[1::2]))
    workers = overrides.get("--workers", config.workers)
    worker_class = overrides.get("--worker-class", config.worker_class_str)
    detail = (
        f"{overrides.get('--threads', config.threads)} threads"
        if worker_class == "gthread"
        else f"{config.worker_connections} connections"
        if worker_class == "gevent"
        else ""
    )
    return f"{workers} x {worker_class}" + (f", {detail} each" if detail else "") + f", timeout {config.timeout} s"


def access_log_path(workdir: str, name: str) -> str:
    return os.path.join(workdir, f"{name}-access.log")


def start_web(processes: Processes, app_spec: str, port: int, workdir: str, name: str, nice: int = 0) -> None:
    """gunicorn serving `app_spec` on `port` (bench/_bare_app.py's `_bare_app:app`, or the service), once it answers.
    Its access log (a file per server) names its processes, whose CPU web_cpu_seconds adds up."""
    bare = app_spec.startswith("_bare")
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        app_spec,
        "--config",
        os.path.join(ROOT, "gunicorn.conf.py"),
        *GUNICORN_OVERRIDES,
        "--bind",
        f"{HOST}:{port}",
        "--access-logfile",
        access_log_path(workdir, name),
        "--log-level",
        "warning",
        *(["--pythonpath", HERE] if bare else []),
    ]
    processes.start(name, (["nice", "-n", str(nice)] if nice else []) + argv)

    def answers():
        processes.check_alive()
        try:
            if bare:
                return requests.post(f"http://{HOST}:{port}{PATH}", timeout=1).status_code == 200
            return requests.get(f"http://{HOST}:{port}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(answers, 60, f"{name} to answer")


def web_cpu_seconds(access_log: str) -> float:
    """User + system CPU of the processes whose command line names this server's access log (its gunicorn)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if access_log.encode() not in handle.read():
                    continue
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / os.sysconf("SC_CLK_TCK")


def delete_queue(redis_url: str | None, queue_name: str) -> None:
    if redis_url:
        from redis import Redis
        from rq import Queue

        Queue(queue_name, connection=Redis.from_url(redis_url)).delete(delete_jobs=True)


def cleanup(engine, account_sid: str, redis_url: str | None, queue_name: str) -> None:
    """Delete this run's rows (and their stored MP3s) and its queue; nothing else is touched."""
    try:
        with engine.begin() as connection:
            ids = (
                connection.execute(
                    text("SELECT id FROM audio_messages WHERE account_sid = :a AND media_key IS NOT NULL"),
                    {"a": account_sid},
                )
                .scalars()
                .all()
            )
            for audit_id in ids:
                connection.execute(text("DELETE FROM stored_media WHERE key LIKE :k"), {"k": f"audio/{audit_id}/%"})
            connection.execute(text("DELETE FROM audio_messages WHERE account_sid = :a"), {"a": account_sid})
    except Exception as exc:  # noqa: BLE001 - report, do not hide the bench's own result
        print(f"cleanup of the bench rows failed: {exc}")
    try:
        delete_queue(redis_url, queue_name)
    except Exception as exc:  # noqa: BLE001
        print(f"cleanup of the bench queue failed: {exc}")
    engine.dispose()
