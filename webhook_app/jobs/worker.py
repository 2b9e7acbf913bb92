"""The worker process (`flask --app webhook_app worker`, the Procfile's `worker`): an RQ worker that outlives
Redis outages, with its relay, sweeper and scheduler threads.

RQ's own worker rides out a lost Redis only while it waits for a job. It exits when Redis is down as it starts,
when a job ends during an outage (the job's bookkeeping in Redis fails) and when its heartbeat during a long
job fails; its scheduler, a forked process, dies at the first connection error and is started again only at the
worker's next maintenance, ten minutes on. A platform restarts a crashed dyno with growing delays (Heroku: up to
20 minutes), and voice notes would wait as long. So this process never exits for an outage: a worker that lost
Redis is replaced, in the same process, by a new one as soon as Redis answers again, and the scheduler is a
thread that retries with backoff. Nothing is lost meanwhile: the rows in the database, not Redis, say what is
left to do (the relay and the sweeper hand it out again).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

from flask import Flask
from rq import Worker
from rq.scheduler import RQScheduler

from ..outages import MAX_BACKOFF_S, REDIS, backoff_s, is_redis_unreachable, log_failure
from ..scratch import remove_dead_leftovers
from . import queue
from .relay import relay_all_waiting, start_relay_thread
from .sweeper import start_maintenance_thread

log = logging.getLogger(__name__)

# A worker that ran this long before it stopped is replaced at once; one that stops sooner again and again
# (something other than an outage) is replaced with backoff rather than in a tight loop.
HEALTHY_RUN_S = 60


def run_worker(app: Flask, burst: bool = False) -> None:
    """Work the audio queue until SIGTERM (or, with `burst`, until it is empty)."""
    remove_dead_leftovers()  # what the jobs of this worker's previous life (or its killed work horses) left
    runner = queue.runner()
    if burst:
        if runner.relays_new_rows:
            relay_all_waiting()
        Worker(runner.queues, connection=runner.redis).work(burst=True, with_scheduler=True)
        return
    # Every worker relays new rows to the queue (webhooks only commit them), sweeps (stuck, lost and abandoned
    # rows) and applies retention, periodically.
    if runner.relays_new_rows:
        start_relay_thread(app)
    if app.config["MAINTENANCE_INTERVAL_S"] > 0:
        start_maintenance_thread(app)
    else:
        log.warning("MAINTENANCE_INTERVAL_S=0: this worker neither sweeps nor applies retention; run `flask --app "
                    "webhook_app sweep` and `flask --app webhook_app retention run` from a scheduler instead")
    stopping = threading.Event()
    scheduler = start_scheduler_thread(runner, stopping)
    try:
        supervise(runner, stopping)
    finally:
        stopping.set()
        scheduler.join(timeout=5)


def supervise(runner: queue.RqRunner, stopping: threading.Event) -> None:
    """Run RQ workers one after the other, each once Redis answers, until the process is asked to stop. The
    process keeps the app context: jobs reuse it instead of building their own app."""
    # The worker's own connection: RQ raises the socket timeout of the pool it is given to its 7-minute wait for
    # a job, and the relay and sweeper, enqueueing on the runner's, must keep failing fast if Redis stops
    # answering.
    connection = runner.new_connection()
    logging.getLogger("rq.worker").addFilter(RedisOutageFilter())
    quick_stops = 0
    _stop_on_signals(stopping)
    while wait_for_redis(connection, stopping):
        started = time.monotonic()
        worker = None
        try:
            # Playback's queue first: a transcription waits while a voice note is to be made playable.
            worker = OutageTolerantWorker([queue.name for queue in runner.queues], connection=connection,
                                          stopping=stopping)
            worker.work(with_scheduler=False)
        except Exception as exc:
            if not is_redis_unreachable(exc):
                raise
            # Met as the worker registers itself, or on its way out (RQ's teardown after a lost connection).
            REDIS.unreachable("RQ worker", exc)
        finally:
            _stop_on_signals(stopping)  # RQ's handlers belong to the worker that just stopped
            if worker is not None:
                _clean_up_after(worker)
        if stopping.is_set():
            return
        if REDIS.down:
            log.info("the RQ worker lost Redis; a new one starts when Redis answers")
            continue
        quick_stops = quick_stops + 1 if time.monotonic() - started < HEALTHY_RUN_S else 0
        delay = backoff_s(quick_stops) if quick_stops else 0
        log.warning("the RQ worker stopped (see above); starting a new one in %g s", delay)
        stopping.wait(delay)


def wait_for_redis(connection, stopping: threading.Event) -> bool:
    """Block until Redis answers (True) or the process is asked to stop (False)."""
    failures = 0
    while not stopping.is_set():
        try:
            connection.ping()
        except Exception as exc:
            if not is_redis_unreachable(exc):
                raise
            failures += 1
            REDIS.unreachable("RQ worker", exc)
            stopping.wait(backoff_s(failures))
        else:
            REDIS.reachable()
            return True
    return False


class OutageTolerantWorker(Worker):
    """RQ's forking worker, telling the process about a stop request and about Redis being back."""

    # RQ backs off to a minute between reconnection tries while it waits for a job: pick up within seconds.
    max_connection_wait_time = float(MAX_BACKOFF_S)

    def __init__(self, *args, stopping: threading.Event, **kwargs):
        super().__init__(*args, **kwargs)
        self.stopping = stopping

    def request_stop(self, signum, frame):
        # First, so the process stops even if RQ's warm shutdown fails to reach Redis.
        self.stopping.set()
        super().request_stop(signum, frame)

    def heartbeat(self, timeout=None, pipeline=None):
        super().heartbeat(timeout, pipeline)
        if pipeline is None:
            # RQ starts each try of its wait for a job with a heartbeat: the first to get through ends an outage.
            REDIS.reachable()


class RedisOutageFilter(logging.Filter):
    """RQ logs each reconnection try of a worker and of its pubsub thread as an ERROR, every 1-60 s for as long as
    Redis is gone, and the traceback of a worker that quits on a lost connection; the process logs the outage
    once instead (outages.REDIS), and its end."""

    RQ_RETRY_MESSAGES = ("could not connect to Redis instance", "Redis connection timeout")

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and is_redis_unreachable(exc):
            REDIS.unreachable("RQ worker", exc)
            return False
        if any(message in str(record.msg) for message in self.RQ_RETRY_MESSAGES):
            REDIS.unreachable("RQ worker", record.getMessage())
            return False
        return True


def _stop_on_signals(stopping: threading.Event) -> None:
    def request_stop(signum, frame):
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def _clean_up_after(worker: OutageTolerantWorker) -> None:
    """What a worker that lost Redis leaves behind, since its teardown failed with Redis: its pubsub thread,
    which would retry for ever, and the work horse of the job it was running."""
    if worker.pubsub_thread is not None:
        worker.pubsub_thread.stop()
    if worker.horse_pid:
        _wait_for_work_horse(worker.horse_pid)


def _wait_for_work_horse(pid: int) -> None:
    """The job goes on in its work horse without Redis (its row, not RQ, says how it ended): let it finish
    rather than start a second job beside it, as RQ's warm shutdown does."""
    log.warning("waiting for work horse %s to finish the job it was running when Redis went away", pid)
    deadline = time.monotonic() + queue.JOB_TIMEOUT_S + 60
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if finished:
            return
        time.sleep(0.5)
    # RQ's worker gives up on a horse this late too: the horse's own job timeout failed to stop it.
    log.error("work horse %s outlived its job timeout; killing it", pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # the horse leads its own process group (RQ calls setpgrp())
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def start_scheduler_thread(runner: queue.RqRunner, stopping: threading.Event) -> threading.Thread:
    """RQ's scheduler (it moves jobs enqueued with enqueue_in, the jobs' retries, to the queue when due) as a
    thread that retries with backoff when Redis is gone; RQ's own would die with the outage (module docstring)."""
    # Its own connection pool, made from the runner's settings.
    scheduler = RQScheduler([queue.name for queue in runner.queues], connection=runner.redis)

    def loop() -> None:
        failures = 0
        registered = False
        while not stopping.is_set():
            try:
                if not registered:
                    scheduler.register_birth()
                    registered = True
                if scheduler.should_reacquire_locks:
                    scheduler.acquire_locks()
                scheduler.heartbeat()
                scheduler.enqueue_scheduled_jobs()
            except Exception as exc:  # noqa: BLE001 - the scheduler must outlive whatever went wrong
                failures += 1
                registered = False  # a Redis that failed over without persistence has forgotten it
                log_failure(log, exc, "RQ scheduler round failed")
                stopping.wait(backoff_s(failures))
                continue
            failures = 0
            REDIS.reachable()
            stopping.wait(scheduler.interval)
        with contextlib.suppress(Exception):
            scheduler.stop()  # releases its locks: another worker's scheduler takes over now, not when they expire

    thread = threading.Thread(target=loop, name="scheduler", daemon=True)
    thread.start()
    return thread
