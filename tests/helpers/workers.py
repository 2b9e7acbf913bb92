"""The Procfile's `worker`, started as a real process on a test app's database, Redis, queue and sandbox."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.helpers.processes import Processes, service_env

WORKER = [sys.executable, "-m", "flask", "--app", "webhook_app", "worker"]


def worker_env(app, **overrides) -> dict:
    """The environment of a worker for `app`: none of the service's variables from the developer's shell, `app`'s
    stores and queue, plain-text INFO logs, then `overrides` (say MAINTENANCE_INTERVAL_S=1)."""
    values = dict(
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=app.config["REDIS_URL"] or "",
        RQ_QUEUE=app.config["RQ_QUEUE"],
        SANDBOX_DB=app.config["SANDBOX_DB"],
        SECRET_KEY="test-secret",
        LOG_LEVEL="INFO",
        LOG_FORMAT="text",
    )
    values.update({key: str(value) for key, value in overrides.items()})
    return service_env(**values)


def start_worker(app, log_dir: Path, **overrides) -> Processes:
    """One worker process (its log: `log_dir`/worker.log), to stop with Processes.stop() or kill_hard()."""
    processes = Processes(worker_env(app, **overrides), log_dir)
    processes.start("worker", WORKER)
    return processes
