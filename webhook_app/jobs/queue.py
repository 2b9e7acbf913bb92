"""Background jobs: RQ queues on Redis when REDIS_URL is set, an in-process thread pool otherwise.

A job is a function marked `@job`, enqueued by its dotted path as RQ names jobs
(`enqueue(process_inbound, audit_id)` or `enqueue("webhook_app.inbound.normalize.process_inbound", audit_id)`),
with ids, never rows, as arguments. The job builds (or reuses) an app context itself, so the same function runs in
a web process's thread pool, an RQ worker, or a test. Nothing in jobs/ imports a flow: the flows enqueue their own
jobs, and register with jobs/registry.py what the relay and the sweeper hand out for them.

Both runners answer to one protocol, JobRunner: what the flows, the relay, the sweeper, /healthz and /metrics may
ask of whichever runs here.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Protocol, cast

from flask import Flask, current_app, has_app_context
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy.engine import make_url

from ..extensions import db
from ..observability import bind_audit_id
from ..runtime.cache import ExpiringCache
from ..runtime.retry import RetryPolicy
from .relay import relay_all_waiting

log = logging.getLogger(__name__)

JOB_TIMEOUT_S = 600
# In-process dedupe keys kept at most (one machine; Redis holds them when scaled out).
ONCE_KEYS_MAX = 100_000
ONCE_KEY_PREFIX = "webhook_app:once:"
RQ_OPTIONS = dict(job_timeout=JOB_TIMEOUT_S, result_ttl=3600, failure_ttl=7 * 24 * 3600)

Job = Callable[..., Any] | str  # a function marked @job, or its dotted path
Call = tuple[str, tuple[Any, ...]]  # a job's dotted path and its arguments
# Transcription runs on a lane of its own (an RQ queue `<RQ_QUEUE>-transcripts`, or one in-process thread), so a
# minute of speech to text never stands between a voice note and its playback.
TRANSCRIPTS = "transcripts"


class JobFunction(Protocol):
    """A function marked @job: callable as itself, named by its dotted path, the function itself behind it."""

    job_path: str
    __wrapped__: Callable[..., Any]

    def __call__(self, *args: Any) -> Any: ...


def job(fn: Callable[..., Any]) -> JobFunction:
    """Mark `fn` as a background job. Called (by a runner, or directly) it runs inside an app context of its own
    when there is none, without a previous job's audit id in its log lines, and gives its session back after."""

    @functools.wraps(fn)
    def run(*args: Any) -> Any:
        return run_job(fn, *args)  # looked up per call: tests wrap run_job

    marked = cast(JobFunction, run)  # functools.wraps set __wrapped__; the path is set here
    marked.job_path = f"{fn.__module__}.{fn.__qualname__}"
    return marked


def job_path(target: Job) -> str:
    if isinstance(target, str):
        return target
    path = getattr(target, "job_path", None)
    if not isinstance(path, str):
        raise TypeError(f"{target!r} is not a job: mark it with @webhook_app.jobs.queue.job")
    return path


def resolve(target: Job) -> Callable[..., Any]:
    """The function itself behind a job or its dotted path (importing its module, as an RQ worker does)."""
    if isinstance(target, str):
        module, _, name = target.rpartition(".")
        target = cast(Callable[..., Any], getattr(importlib.import_module(module), name))
    found: Callable[..., Any] = getattr(target, "__wrapped__", target)
    return found


class JobRunner(Protocol):
    """What a runner of jobs does, in-process (SQLite's default) or on RQ (REDIS_URL)."""

    # Whether new `queued` rows wait for a worker's relay (RQ on PostgreSQL) instead of being enqueued by the
    # process that stored them.
    relays_new_rows: bool

    def enqueue(self, path: str, *args: Any, lane: str | None = None) -> None: ...

    def enqueue_in(self, delay_s: float, path: str, *args: Any, lane: str | None = None) -> None: ...

    def enqueue_many(self, calls: list[Call]) -> None: ...

    def claim_once(self, key: str, ttl_s: int) -> bool:
        """Whether this key was free (and is now taken for `ttl_s` seconds): one job per redelivered event."""
        ...

    def release_once(self, key: str) -> None: ...

    def wait(self, timeout: float = 60) -> None:
        """Tests: until every job enqueued so far, and those they enqueued, has run."""
        ...

    def depth(self) -> int: ...

    def transcripts_depth(self) -> int: ...

    def describe(self) -> dict[str, Any]:
        """/healthz's `queue`: raises when the queue cannot be reached."""
        ...


class InProcessRunner:
    # The web process is the worker: it hands new rows to its own thread pool right after the commit.
    relays_new_rows = False

    def __init__(self, app: Flask, workers: int):
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        # One thread: a model's CPU threads (TRANSCRIBE_THREADS) are the parallelism, and playback's jobs keep theirs.
        self.transcripts_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transcribe")
        self._pending: set[Future[None]] = set()
        self._transcripts_pending: set[Future[None]] = set()  # those of _pending on the transcripts lane
        self._lock = threading.Lock()
        self._once = ExpiringCache(max_entries=ONCE_KEYS_MAX)

    def enqueue(self, path: str, *args: Any, lane: str | None = None) -> None:
        executor = self.transcripts_executor if lane == TRANSCRIPTS else self.executor
        future = executor.submit(self._run, path, args)
        with self._lock:
            self._pending.add(future)
            if lane == TRANSCRIPTS:
                self._transcripts_pending.add(future)
        future.add_done_callback(self._done)

    def enqueue_many(self, calls: list[Call]) -> None:
        for path, args in calls:
            self.enqueue(path, *args)

    def claim_once(self, key: str, ttl_s: int) -> bool:
        return self._once.add(key, True, ttl_s)

    def release_once(self, key: str) -> None:
        self._once.discard(key)

    def enqueue_in(self, delay_s: float, path: str, *args: Any, lane: str | None = None) -> None:
        # A placeholder future keeps wait() honest about jobs that are scheduled but not yet submitted.
        placeholder: Future[None] = Future()
        with self._lock:
            self._pending.add(placeholder)

        def fire() -> None:
            try:
                self.enqueue(path, *args, **_lane(lane))
            finally:
                placeholder.set_result(None)
                self._done(placeholder)

        timer = threading.Timer(max(0.0, delay_s), fire)
        timer.daemon = True
        timer.start()

    def _run(self, path: str, args: tuple[Any, ...]) -> None:
        with self.app.app_context():
            try:
                run_job(path, *args)
            except Exception:  # noqa: BLE001 - a thread pool swallows errors silently; say what failed
                log.exception("job %s%r failed", path, args)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)
            self._transcripts_pending.discard(future)

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

    def transcripts_depth(self) -> int:
        """Transcription jobs not yet finished (waiting or running on the lane's one thread)."""
        with self._lock:
            return len(self._transcripts_pending)

    def describe(self) -> dict[str, Any]:
        return {"backend": "in-process", "pending": self.depth()}


class RqRunner:
    def __init__(self, redis_url: str, queue_name: str, relays_new_rows: bool = False, tls_verify: bool = True) -> None:
        tls: dict[str, Any] = {} if tls_verify or not redis_url.startswith("rediss://") else {"ssl_cert_reqs": None}
        self._redis_url = redis_url
        self._redis_options: dict[str, Any] = dict(socket_connect_timeout=2, socket_timeout=5, **tls)
        self.redis = self.new_connection()
        self.queue = Queue(queue_name, connection=self.redis)
        self.transcripts_queue = Queue(f"{queue_name}-{TRANSCRIPTS}", connection=self.redis)
        # On PostgreSQL the workers' relays enqueue new rows (jobs/relay.py), not the web processes.
        self.relays_new_rows = relays_new_rows

    def new_connection(self) -> Redis:
        """A Redis client like `self.redis` with a connection pool of its own."""
        return Redis.from_url(self._redis_url, **self._redis_options)

    @property
    def queues(self) -> list[Queue]:
        """What a worker listens on, in order: playback's jobs first, then transcription."""
        return [self.queue, self.transcripts_queue]

    def _queue(self, lane: str | None) -> Queue:
        return self.transcripts_queue if lane == TRANSCRIPTS else self.queue

    def enqueue(self, path: str, *args: Any, lane: str | None = None) -> None:
        self._queue(lane).enqueue(path, *args, **RQ_OPTIONS)

    def enqueue_many(self, calls: list[Call]) -> None:
        """Several jobs in one Redis round trip (the relay hands out hundreds at a time under load)."""
        prepared = [
            Queue.prepare_data(
                path,
                args=args,
                timeout=JOB_TIMEOUT_S,
                result_ttl=RQ_OPTIONS["result_ttl"],
                failure_ttl=RQ_OPTIONS["failure_ttl"],
            )
            for path, args in calls
        ]
        self.queue.enqueue_many(prepared)

    def claim_once(self, key: str, ttl_s: int) -> bool:
        # Shared by every web dyno: SET NX is atomic, so exactly one delivery wins.
        return bool(self.redis.set(ONCE_KEY_PREFIX + key, 1, nx=True, ex=ttl_s))

    def release_once(self, key: str) -> None:
        self.redis.delete(ONCE_KEY_PREFIX + key)

    def enqueue_in(self, delay_s: float, path: str, *args: Any, lane: str | None = None) -> None:
        if delay_s <= 0:
            return self.enqueue(path, *args, **_lane(lane))
        # Needs a worker's scheduler (`flask worker` runs one, jobs/worker.py); the sweeper is the safety net.
        self._queue(lane).enqueue_in(timedelta(seconds=delay_s), path, *args, **RQ_OPTIONS)

    def wait(self, timeout: float = 60) -> None:
        """Tests: run everything queued in this process (a burst worker), including follow-up jobs, relaying
        new rows first as a worker's relay would (needs an app context)."""
        while True:
            relayed = relay_all_waiting() if self.relays_new_rows else 0
            if not relayed and not any(queue.count for queue in self.queues):
                return
            SimpleWorker(self.queues, connection=self.redis).work(burst=True)

    def depth(self) -> int:
        return self.queue.count

    def transcripts_depth(self) -> int:
        return self.transcripts_queue.count

    def describe(self) -> dict[str, Any]:
        self.redis.ping()
        return {"backend": "rq", "queue": self.queue.name, "depth": self.queue.count}


def init_app(app: Flask) -> None:
    runner: JobRunner
    if app.config.get("REDIS_URL"):
        on_postgres = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).get_backend_name() == "postgresql"
        runner = RqRunner(
            app.config["REDIS_URL"],
            app.config["RQ_QUEUE"],
            relays_new_rows=on_postgres,
            tls_verify=app.config["REDIS_TLS_VERIFY"],
        )
    else:
        runner = InProcessRunner(app, app.config["JOB_WORKERS"])
    app.extensions["jobs"] = runner


def runner() -> JobRunner:
    found: JobRunner = current_app.extensions["jobs"]
    return found


def rq_runner() -> RqRunner:
    """The runner of a process that works RQ's queues (`flask worker`: REDIS_URL is set, cli.py checks)."""
    found = runner()
    if not isinstance(found, RqRunner):
        raise RuntimeError("REDIS_URL is not set: jobs run inside the web process, not on RQ")
    return found


def enqueue(target: Job, *args: Any, lane: str | None = None) -> None:
    runner().enqueue(job_path(target), *args, **_lane(lane))


def relays_new_rows() -> bool:
    """Whether new `queued` rows wait for a worker's relay (RQ on PostgreSQL) instead of being enqueued by the
    process that stored them."""
    return runner().relays_new_rows


def enqueue_once(key: str, ttl_s: int, target: Job, *args: Any) -> bool:
    """Enqueue unless a job with this key was enqueued in the last `ttl_s` seconds (redelivered webhooks)."""
    jobs = runner()
    if not jobs.claim_once(key, ttl_s):
        return False
    try:
        jobs.enqueue(job_path(target), *args)
    except Exception:
        jobs.release_once(key)  # the next delivery (or the sweeper) must be able to try again
        raise
    return True


def enqueue_in(delay_s: float, target: Job, *args: Any, lane: str | None = None) -> None:
    runner().enqueue_in(delay_s, job_path(target), *args, **_lane(lane))


def _lane(lane: str | None) -> dict[str, str]:
    # Playback's lane is the default, and named by no argument at all (tests stand in runners' enqueue(path, *args)).
    return {"lane": lane} if lane else {}


def retry_delay(exc: Exception, attempt: int) -> float:
    """Seconds before a job's attempt `attempt` + 1: Twilio's Retry-After when it sent one, else exponential
    backoff from JOB_RETRY_BASE_S, at most five minutes (the job is not holding anything while it waits)."""
    policy = RetryPolicy(
        base_s=current_app.config["JOB_RETRY_BASE_S"], max_delay_s=300, max_retry_after_s=None, jitter=False
    )
    return policy.delay(attempt, getattr(exc, "retry_after", None))


_worker_app: Flask | None = None


@contextmanager
def job_app_context() -> Iterator[None]:
    """In a web process the job already runs inside an app context; an RQ worker builds its own app once."""
    global _worker_app
    if has_app_context():
        yield
        return
    if _worker_app is None:
        from .. import create_app  # the app factory imports every module, this one included

        _worker_app = create_app()
    with _worker_app.app_context():
        yield


def run_job(target: Job, *args: Any) -> Any:
    """Run a job (a function marked @job, or its dotted path) with its arguments, as a runner does."""
    fn = resolve(target)
    bind_audit_id(None)  # pool threads are reused: no tag from the previous job
    with job_app_context():
        # RQ forks a work horse per job: it starts with an empty pool of its own
        # (webhook_app._forget_inherited_connections).
        try:
            return fn(*args)
        finally:
            db.session.remove()
