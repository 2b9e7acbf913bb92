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

Transcription has a process of its own. RQ's worker forks a work horse per job, so a model loaded in a job would be
loaded again for every note (0.3-1 s, ~250 MB) and CTranslate2 does not survive a fork of a process that holds one
(transcripts/engine.py). Where the transcription extra is installed, this worker therefore starts a child,
`flask worker --transcripts-only`, by a clean exec (never a fork of a process holding a model): a non-forking RQ
SimpleWorker on the transcripts queue only, which loads the model on its first note and keeps it. The worker
listens on the audio queue only, restarts the child with backoff if it dies, passes SIGTERM on to it and stops it
with itself; the kernel kills the child if the worker is SIGKILLed (PR_SET_PDEATHSIG). The child rides out Redis
outages as this worker does (the same supervise loop). Its job timeout is RQ's SIGALRM in the main thread: Python
handles the signal between CTranslate2's calls, each one window of at most 30 s of audio (a few seconds of CPU), so
a runaway note stops within seconds of its timeout (measured: 1.2 s late), and the model stays usable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType
from typing import Any

from flask import Flask
from redis import Redis
from redis.client import Pipeline
from rq import Queue, SimpleWorker, Worker
from rq.scheduler import RQScheduler
from rq.worker.base import BaseWorker

from ..audio.ffmpeg import die_with_parent
from ..observability import set_process_role
from ..runtime.outages import LOOP_BACKOFF, MAX_BACKOFF_S, REDIS, is_redis_unreachable, log_failure
from ..runtime.scratch import remove_dead_leftovers
from . import queue
from .registry import registry
from .relay import relay_all_waiting, start_relay_thread
from .sweeper import start_maintenance_thread

log = logging.getLogger(__name__)

# A worker that ran this long before it stopped is replaced at once; one that stops sooner again and again
# (something other than an outage) is replaced with backoff rather than in a tight loop.
HEALTHY_RUN_S = 60
# How long a stopping worker gives its transcription process to finish its note (a platform's stop timeout is
# about 30 s: Heroku's); a note cut short stays `running` and the sweeper hands it out again.
TRANSCRIBER_STOP_S = 20
TRANSCRIBER_ARGV = [sys.executable, "-m", "flask", "--app", "webhook_app", "worker", "--transcripts-only"]


def run_worker(app: Flask, burst: bool = False, transcripts_only: bool = False) -> None:
    """Work the audio queue until SIGTERM (or, with `burst`, until it is empty); with the transcription extra
    installed, beside a transcription process of its own (module docstring). `transcripts_only`: be that process
    (a non-forking worker on the transcripts queue, no relay, sweeper or scheduler)."""
    runner = queue.rq_runner()
    if transcripts_only:
        set_process_role("transcriber")  # its lines go to its worker's output: tagged `process=transcriber`
        stopping = threading.Event()
        supervise(runner, stopping, [runner.transcripts_queue], OutageTolerantSimpleWorker)
        return
    remove_dead_leftovers()  # what the jobs of this worker's previous life (or its killed work horses) left
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
        log.warning(
            "MAINTENANCE_INTERVAL_S=0: this worker neither sweeps nor applies retention; run `flask --app "
            "webhook_app sweep` and `flask --app webhook_app retention run` from a scheduler instead"
        )
    stopping = threading.Event()
    scheduler = start_scheduler_thread(runner, stopping)  # for both queues (a transcript's retries too)
    # Where the extra is installed (transcripts/job.py registers when); without it the worker takes the transcripts
    # queue itself (its jobs end `failed`, "not installed", at once).
    transcribes_apart = registry(app).runs_apart(queue.TRANSCRIPTS)
    transcriber = start_transcriber_thread(stopping) if transcribes_apart else None
    try:
        supervise(runner, stopping, [runner.queue] if transcriber else runner.queues)
    finally:
        stopping.set()
        scheduler.join(timeout=5)
        if transcriber is not None:
            transcriber.join(timeout=TRANSCRIBER_STOP_S + 10)


def start_transcriber_thread(stopping: threading.Event) -> threading.Thread:
    """The transcription process (`flask worker --transcripts-only`), started by exec, restarted with backoff when
    it exits, and stopped (SIGTERM, then SIGKILL after TRANSCRIBER_STOP_S) once `stopping` is set."""

    def loop() -> None:
        quick_exits = 0
        while not stopping.is_set():
            started = time.monotonic()
            try:
                # A clean exec of a new interpreter (no model is ever loaded here, and none would be inherited);
                # the kernel kills it when this process dies, SIGKILL included (PR_SET_PDEATHSIG: in fact when this
                # thread ends, which it does only after the child has stopped).
                child = subprocess.Popen(TRANSCRIBER_ARGV, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
            except OSError:
                log.exception("could not start the transcription process")
                child = None
            if child is not None:
                log.info("transcription process %s started", child.pid)
                while child.poll() is None and not stopping.wait(0.5):
                    pass
                if child.poll() is None:  # stopping: let it finish its note, within the platform's patience
                    _stop_child(child)
                    return
                log.warning("transcription process %s exited with %s", child.pid, child.returncode)
            quick_exits = quick_exits + 1 if time.monotonic() - started < HEALTHY_RUN_S else 0
            delay = LOOP_BACKOFF.delay(quick_exits) if quick_exits else 0
            log.warning("starting a new transcription process in %g s", delay)
            stopping.wait(delay)

    thread = threading.Thread(target=loop, name="transcriber", daemon=True)
    thread.start()
    return thread


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGTERM)  # RQ's warm shutdown: the note in hand is finished first
    try:
        child.wait(TRANSCRIBER_STOP_S)
    except subprocess.TimeoutExpired:
        log.warning(
            "transcription process %s still busy after %s s; killing it (its note is handed out again)",
            child.pid,
            TRANSCRIBER_STOP_S,
        )
        child.kill()
        child.wait()


def supervise(
    runner: queue.RqRunner,
    stopping: threading.Event,
    queues: list[Queue] | None = None,
    worker_class: type[OutageTolerance] | None = None,
) -> None:
    """Run RQ workers (`worker_class`, by default the forking OutageTolerantWorker) on `queues` (by default all
    the runner's), one after the other, each once Redis answers, until the process is asked to stop. The process
    keeps the app context: jobs reuse it instead of building their own app."""
    queues = runner.queues if queues is None else queues
    worker_class = worker_class or OutageTolerantWorker
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
            worker = worker_class([queue.name for queue in queues], connection=connection, stopping=stopping)
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
        delay = LOOP_BACKOFF.delay(quick_stops) if quick_stops else 0
        log.warning("the RQ worker stopped (see above); starting a new one in %g s", delay)
        stopping.wait(delay)


def wait_for_redis(connection: Redis, stopping: threading.Event) -> bool:
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
            stopping.wait(LOOP_BACKOFF.delay(failures))
        else:
            REDIS.reachable()
            return True
    return False


class OutageTolerance(BaseWorker):
    """Mixed into RQ's workers (before Worker or SimpleWorker, which both derive from BaseWorker, so that theirs is
    the job execution): telling the process about a stop request and about Redis being back."""

    # RQ backs off to a minute between reconnection tries while it waits for a job: pick up within seconds.
    max_connection_wait_time = float(MAX_BACKOFF_S)

    def __init__(self, *args: Any, stopping: threading.Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopping = stopping

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        # First, so the process stops even if RQ's warm shutdown fails to reach Redis.
        self.stopping.set()
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]  # rq leaves it unannotated

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        super().heartbeat(timeout, pipeline)
        if pipeline is None:
            # RQ starts each try of its wait for a job with a heartbeat: the first to get through ends an outage.
            REDIS.reachable()


class OutageTolerantWorker(OutageTolerance, Worker):
    """RQ's forking worker (a work horse per job): the audio queue."""


class OutageTolerantSimpleWorker(OutageTolerance, SimpleWorker):
    """RQ's non-forking worker: the transcription process, whose jobs share the model it loaded once."""


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
    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def _clean_up_after(worker: OutageTolerance) -> None:
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
                # rq's RQScheduler is not annotated (rq 2's scheduler.py): its calls are untyped to mypy.
                if scheduler.should_reacquire_locks:
                    scheduler.acquire_locks()  # type: ignore[no-untyped-call]
                scheduler.heartbeat()  # type: ignore[no-untyped-call]
                scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
            except Exception as exc:  # noqa: BLE001 - the scheduler must outlive whatever went wrong
                failures += 1
                registered = False  # a Redis that failed over without persistence has forgotten it
                log_failure(log, exc, "RQ scheduler round failed")
                stopping.wait(LOOP_BACKOFF.delay(failures))
                continue
            failures = 0
            REDIS.reachable()
            stopping.wait(scheduler.interval)
        with contextlib.suppress(Exception):
            scheduler.stop()  # type: ignore[no-untyped-call]  # releases its locks: another worker's scheduler takes over now, not when they expire

    thread = threading.Thread(target=loop, name="scheduler", daemon=True)
    thread.start()
    return thread
