"""Background jobs: RQ queues on Redis when REDIS_URL is set, an in-process thread pool otherwise.

Jobs are enqueued by id; the job function builds (or reuses) an app context itself, so the same function
runs in a web process's thread pool, an RQ worker, or a test.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from flask import Flask, current_app, has_app_context

log = logging.getLogger(__name__)

JOB_TIMEOUT_S = 600
# In-process dedupe keys kept at most (one machine; Redis holds them when scaled out).
ONCE_KEYS_MAX = 100_000
ONCE_KEY_PREFIX = "webhook_app:once:"


class InProcessRunner:
    # The web process is the worker: it hands new rows to its own thread pool right after the commit.
    relays_new_rows = False

    def __init__(self, app: Flask, workers: int):
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._pending: set[Future] = set()
        self._lock = threading.Lock()
        self._once: dict[str, float] = {}

    def enqueue(self, name: str, *args) -> None:
        future = self.executor.submit(self._run, name, args)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def claim_once(self, key: str, ttl_s: int) -> bool:
        now = time.monotonic()
        with self._lock:
            # Keys go in with a constant TTL, so insertion order is expiry order: drop from the front.
            while self._once and (next(iter(self._once.values())) <= now or len(self._once) > ONCE_KEYS_MAX):
                del self._once[next(iter(self._once))]
            if self._once.get(key, 0) > now:
                return False
            self._once.pop(key, None)
            self._once[key] = now + ttl_s
            return True

    def release_once(self, key: str) -> None:
        with self._lock:
            self._once.pop(key, None)

    def enqueue_in(self, delay_s: float, name: str, *args) -> None:
        # A placeholder future keeps wait() honest about jobs that are scheduled but not yet submitted.
        placeholder: Future = Future()
        with self._lock:
            self._pending.add(placeholder)

        def fire() -> None:
            try:
                self.enqueue(name, *args)
            finally:
                placeholder.set_result(None)
                self._done(placeholder)

        timer = threading.Timer(max(0.0, delay_s), fire)
        timer.daemon = True
        timer.start()

    def _run(self, name: str, args: tuple) -> None:
        with self.app.app_context():
            try:
                run_job(name, *args)
            except Exception:  # noqa: BLE001 - a thread pool swallows errors silently; say what failed
                log.exception("job %s%r failed", name, args)

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def wait(self, timeout: float = 60) -> None:
        """Block until every job enqueued so far (and the jobs they enqueued) has finished."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return
            for future in pending:
                future.result(timeout=max(0.0, deadline - time.monotonic()))

    def depth(self) -> int:
        with self._lock:
            return len(self._pending)

    def describe(self) -> dict:
        return {"backend": "in-process", "pending": self.depth()}


class RqRunner:
    def __init__(self, redis_url: str, queue_name: str, relays_new_rows: bool = False, tls_verify: bool = True):
        from rq import Queue

        tls = {} if tls_verify or not redis_url.startswith("rediss://") else {"ssl_cert_reqs": None}
        self._redis_url = redis_url
        self._redis_options = dict(socket_connect_timeout=2, socket_timeout=5, **tls)
        self.redis = self.new_connection()
        self.queue = Queue(queue_name, connection=self.redis)
        # On PostgreSQL the workers' relays enqueue new rows (webhook_app.relay), not the web processes.
        self.relays_new_rows = relays_new_rows

    def new_connection(self):
        """A Redis client like `self.redis` with a connection pool of its own."""
        from redis import Redis

        return Redis.from_url(self._redis_url, **self._redis_options)

    def enqueue(self, name: str, *args) -> None:
        self.queue.enqueue("webhook_app.jobs.run_job", name, *args, job_timeout=JOB_TIMEOUT_S,
                           result_ttl=3600, failure_ttl=7 * 24 * 3600)

    def enqueue_many(self, calls: list[tuple[str, tuple]]) -> None:
        """Several jobs in one Redis round trip (the relay hands out hundreds at a time under load)."""
        from rq import Queue

        prepared = [Queue.prepare_data("webhook_app.jobs.run_job", args=(name, *args), timeout=JOB_TIMEOUT_S,
                                       result_ttl=3600, failure_ttl=7 * 24 * 3600) for name, args in calls]
        self.queue.enqueue_many(prepared)

    def claim_once(self, key: str, ttl_s: int) -> bool:
        # Shared by every web dyno: SET NX is atomic, so exactly one delivery wins.
        return bool(self.redis.set(ONCE_KEY_PREFIX + key, 1, nx=True, ex=ttl_s))

    def release_once(self, key: str) -> None:
        self.redis.delete(ONCE_KEY_PREFIX + key)

    def enqueue_in(self, delay_s: float, name: str, *args) -> None:
        from datetime import timedelta

        if delay_s <= 0:
            return self.enqueue(name, *args)
        # Needs a worker's scheduler (`flask worker` runs one, webhook_app.worker); the sweeper is the safety net.
        self.queue.enqueue_in(timedelta(seconds=delay_s), "webhook_app.jobs.run_job", name, *args,
                              job_timeout=JOB_TIMEOUT_S, result_ttl=3600, failure_ttl=7 * 24 * 3600)

    def wait(self, timeout: float = 60) -> None:
        """Tests: run everything queued in this process (a burst worker), including follow-up jobs, relaying
        new rows first as a worker's relay would (needs an app context)."""
        from rq import SimpleWorker

        from .relay import relay_all_waiting

        while True:
            relayed = relay_all_waiting() if self.relays_new_rows else 0
            if not relayed and not self.queue.count:
                return
            SimpleWorker([self.queue], connection=self.redis).work(burst=True)

    def depth(self) -> int:
        return self.queue.count

    def describe(self) -> dict:
        self.redis.ping()
        return {"backend": "rq", "queue": self.queue.name, "depth": self.queue.count}


def init_app(app: Flask) -> None:
    if app.config.get("REDIS_URL"):
        from sqlalchemy.engine import make_url

        on_postgres = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).get_backend_name() == "postgresql"
        runner = RqRunner(app.config["REDIS_URL"], app.config["RQ_QUEUE"], relays_new_rows=on_postgres,
                          tls_verify=app.config["REDIS_TLS_VERIFY"])
    else:
        runner = InProcessRunner(app, app.config["JOB_WORKERS"])
    app.extensions["jobs"] = runner


def runner():
    return current_app.extensions["jobs"]


def enqueue(name: str, *args) -> None:
    if name not in JOBS:
        raise KeyError(name)
    runner().enqueue(name, *args)


def relays_new_rows() -> bool:
    """Whether new `queued` rows wait for a worker's relay (RQ on PostgreSQL) instead of being enqueued by the
    process that stored them."""
    return runner().relays_new_rows


def enqueue_new_rows(audit_ids: list[int]) -> None:
    """After the commit: hand just-stored rows to the jobs, unless the relay does (it was woken by the commit).

    A queue that cannot be reached leaves the rows `queued` for the sweeper; the caller's answer does not change.
    """
    if relays_new_rows():
        return
    for audit_id in audit_ids:
        try:
            enqueue("normalize_inbound", audit_id)
        except Exception:  # noqa: BLE001 - Redis down: the row stays `queued`; the sweeper enqueues it later
            log.exception("could not enqueue audit %s; left queued for the sweeper", audit_id)


def enqueue_once(key: str, ttl_s: int, name: str, *args) -> bool:
    """Enqueue unless a job with this key was enqueued in the last `ttl_s` seconds (redelivered webhooks)."""
    if name not in JOBS:
        raise KeyError(name)
    jobs = runner()
    if not jobs.claim_once(key, ttl_s):
        return False
    try:
        jobs.enqueue(name, *args)
    except Exception:
        jobs.release_once(key)  # the next delivery (or the sweeper) must be able to try again
        raise
    return True


def enqueue_in(delay_s: float, name: str, *args) -> None:
    if name not in JOBS:
        raise KeyError(name)
    runner().enqueue_in(delay_s, name, *args)


_worker_app: Flask | None = None


@contextmanager
def job_app_context():
    """In a web process the job already runs inside an app context; an RQ worker builds its own app once."""
    global _worker_app
    if has_app_context():
        yield
        return
    if _worker_app is None:
        from . import create_app

        _worker_app = create_app()
    with _worker_app.app_context():
        yield


def run_job(name: str, *args):
    from .observability import bind_audit_id

    bind_audit_id(None)  # pool threads are reused: no tag from the previous job
    with job_app_context():
        from .extensions import db

        # RQ forks a work horse per job: it starts with an empty pool of its own
        # (webhook_app._forget_inherited_connections).
        try:
            return JOBS[name](*args)
        finally:
            db.session.remove()


def _normalize_inbound(audit_id: int, interrupted: dict | None = None):
    from .inbound import process_inbound

    return process_inbound(audit_id, interrupted)


def _expand_message(event: dict):
    from .inbound import expand_message

    enqueue_new_rows(expand_message(event))


JOBS = {
    "normalize_inbound": _normalize_inbound,
    "expand_message": _expand_message,
}
