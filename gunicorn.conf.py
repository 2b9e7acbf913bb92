"""gunicorn settings of the `web` process (Procfile). gunicorn reads ./gunicorn.conf.py by itself; command-line
options override it (the tests and benchmarks bind their own ports).

gevent, not threads (on PostgreSQL): a webhook is mostly waiting, on PostgreSQL's commit (shared with the webhooks
that arrive meanwhile: group commit), on Redis, on Twilio's API, and the CPU goes to the requests around those
waits. With OS threads (gthread) each wait and each hand-off between the group commit's leader and its followers is
a switch through the kernel and a contest for the GIL; greenlets switch in user space, so one process serves all its
connections and commits them in bigger batches. On the 2-core bench machine gthread x 8 acknowledged a third fewer
webhooks per second, at 0.38x the bare route against 0.52-0.64x (docs/benchmarks.md, "Load"). psycopg 3 waits
cooperatively (webhook_app/runtime/greenlets.py: the waiting greenlet resumes as soon as PostgreSQL answers); redis-py,
requests and boto3 ride on patched sockets; ffmpeg runs as a subprocess, which gevent waits for too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, cast

from webhook_app.config import env_int
from webhook_app.runtime.startup import checked_settings, exit_on_config_error

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter
    from gunicorn.glogging import Logger
    from gunicorn.http import Request
    from gunicorn.http.wsgi import Response
    from gunicorn.workers.base import Worker

# Every setting checked before the master binds or forks: a bad one ends it with one line naming the variable
# (webhook_app/runtime/startup.py), not a traceback per worker boot. Imports no prometheus_client
# (PROMETHEUS_MULTIPROC_DIR below must be set first).
service_config = checked_settings()

# Sandbox mode (no Twilio credentials) hands an agent token to whoever opens /agent: it listens on this machine
# only unless HOST says otherwise. With credentials, every interface (the platform's router connects from outside).
host = os.environ.get("HOST") or ("0.0.0.0" if os.environ.get("TWILIO_ACCOUNT_SID") else "127.0.0.1")
bind = f"{host}:{os.environ.get('PORT', '5000')}"
# One process per core: a process runs Python on one core at a time, and the dyno's cores are what it has.
with exit_on_config_error():
    workers = env_int("WEB_CONCURRENCY", 2, minimum=1)
if os.environ.get("DATABASE_URL", "").startswith("postgres"):
    worker_class = "gevent"

    def post_request(worker: Worker, req: Request, environ: MutableMapping[str, Any], resp: Response) -> None:
        # A greenlet only yields when it would block. On a saturated process, a keep-alive connection whose next
        # request is already in the socket buffer is served again and again while others wait (seconds at the
        # bench's p99 for a route that never waits). Yielding after each request lets the others take their turn.
        if worker.cfg.worker_class_str == "gevent":  # not when overridden on the command line
            import gevent

            gevent.sleep(0)

else:
    # SQLite, the one-machine default, waits for a lock inside C without yielding: under gevent that would stop
    # the very greenlet holding the lock. Threads there, in gthread's worker made to hand a thread only whole
    # requests: the main loop reads each head and body without blocking, against total deadlines, so clients that
    # send slowly wait in the loop (a 408 at their deadline), never in a thread that Twilio's webhooks need
    # (webhook_app/web/gunicorn_worker.py, webhook_app/web/slow_clients.py). SQLAlchemy's pool still bounds the database
    # connections.
    worker_class = "webhook_app.web.gunicorn_worker.BufferedRequestWorker"
    with exit_on_config_error():
        threads = env_int("WEB_THREADS", 64, minimum=1)

# Concurrent connections per process. Webhooks share one database connection per process (the group commit);
# other requests queue for Flask-SQLAlchemy's pool (5 + 10 overflow per process) rather than fail.
with exit_on_config_error():
    worker_connections = env_int("WEB_CONNECTIONS", 1000, minimum=1)
timeout = 30
accesslog = "-"
# One JSON line per request with the request id (LOG_FORMAT=text: gunicorn's own line);
# webhook_app/observability/access_log.py.
logger_class = "webhook_app.observability.access_log.JsonAccessLogger"


def post_worker_init(worker: Worker) -> None:
    # The app is loaded: its modules, routes, SQLAlchemy metadata and the rest live as long as the process.
    # Python's full (oldest-generation) collection walks every tracked object, and with all of these that took
    # 60-150 ms on the bench machine, every 10-20 s per process, during which all the process's connections
    # wait: the webhook's p99 was those pauses (docs/benchmarks.md, "Load"). Frozen, they are left out of every
    # collection, and a full collection walks only what the requests made since (under 2 ms). Collected first, so
    # that the start-up's own garbage is freed rather than kept for good.
    import gc

    gc.collect()
    gc.freeze()


# /metrics adds up what every worker counted (webhook_app/observability/metrics.py): each writes its counts to
# files in this folder, which must be in the environment before anything imports prometheus_client, the
# logger_class above included. The master's own folder unless the operator shares one with RQ workers on the
# same machine.
OWN_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if OWN_METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(tempfile.gettempdir(), f"webhook_app-metrics-{os.getpid()}")


def on_starting(server: Arbiter) -> None:
    # Once, in the master, before any worker is forked: the ffmpeg checked and logged, a SQLite file migrated (two
    # workers would otherwise race to). A bad ffmpeg ends the start-up with one line (webhook_app/runtime/startup.py).
    from webhook_app.config import default_database_url
    from webhook_app.runtime.startup import prepare_to_serve

    with exit_on_config_error():
        # The arbiter made its logger when it read this configuration, before any hook runs.
        prepare_to_serve(cast("Logger", server.log), service_config.SQLALCHEMY_DATABASE_URI or default_database_url())

    # Counts are per run: a folder left by an earlier master with this pid (a restarted container's pid 1) starts
    # empty; a shared one loses only the files of processes that are gone.
    from webhook_app.observability.metrics import prepare_directory

    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    if OWN_METRICS_DIR:
        shutil.rmtree(directory, ignore_errors=True)
    prepare_directory(directory)


def child_exit(server: Arbiter, worker: Worker) -> None:
    # A dead worker's counters still count (a total must not drop); its live gauges must not.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Arbiter) -> None:
    if OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
