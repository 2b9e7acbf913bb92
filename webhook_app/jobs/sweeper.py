"""Nothing lost: rows a crashed worker, a lost Redis or a dead request left behind are picked up again.

The sweeper runs in every worker (and in the web process with in-process jobs) every MAINTENANCE_INTERVAL_S,
and on demand as `flask --app webhook_app sweep`. Each step is one conditional UPDATE, so several sweepers on
several dynos never double-handle a row; a job enqueued twice is harmless because the job claims its row
atomically (jobs/claim.py). What each step takes back is its flow's to say: the flows register their steps
(jobs/registry.py), and a round runs them all, then the upkeep they registered (retention).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app

from ..extensions import db
from ..runtime import outages
from ..runtime.scratch import remove_dead_leftovers
from .registry import registry

log = logging.getLogger(__name__)


def sweep(now: datetime | None = None) -> dict[str, int]:
    """Run every flow's recovery step (jobs/registry.py) in one transaction, then enqueue what they took back;
    answer their counts."""
    config = current_app.config
    now = now or datetime.now(UTC)
    stuck_before = now - timedelta(seconds=config["SWEEP_STUCK_AFTER_S"])
    recovered = [step(now, stuck_before) for step in registry().recoveries.values()]
    db.session.commit()
    for each in recovered:
        each.hand_out()
    counts = {name: count for each in recovered for name, count in each.counts.items()}
    if any(counts.values()):
        log.warning("sweeper: %s", counts)
    return counts


def run_maintenance() -> None:
    """One round of periodic upkeep: sweep, then the registered upkeep (retention). A database outage is logged
    once (outages)."""
    remove_dead_leftovers()
    try:
        sweep()
        outages.DATABASE.reachable()
    except Exception as exc:  # noqa: BLE001 - a sweeper that dies silently is worse than one that logs and tries again
        db.session.rollback()
        outages.log_failure(log, exc, "sweep failed")
    try:
        for name, step in registry().upkeep.items():
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - one step's failure must not stop the next round's others
                db.session.rollback()
                outages.log_failure(log, exc, "%s failed", name)
    finally:
        db.session.remove()


def start_maintenance_thread(app: Flask) -> threading.Thread:
    """A daemon thread that runs maintenance now (so a restart picks up at once) and then periodically."""
    interval = app.config["MAINTENANCE_INTERVAL_S"]
    if interval <= 0:
        raise ValueError("MAINTENANCE_INTERVAL_S must be positive for a maintenance thread (0 turns it off)")
    stop = threading.Event()

    def loop() -> None:
        while True:
            with app.app_context():
                run_maintenance()
            if stop.wait(interval):
                return

    thread = threading.Thread(target=loop, name="maintenance", daemon=True)
    thread.stop = stop  # type: ignore[attr-defined]
    thread.start()
    return thread


def init_app(app: Flask) -> None:
    """With in-process jobs the web process is also the worker: it sweeps too, from its first request on.

    Not at create_app() time: CLI commands build the app as well and must not start background sweeps.
    """
    if app.config.get("REDIS_URL") or app.config["MAINTENANCE_INTERVAL_S"] <= 0:
        return
    started = threading.Lock()
    state: dict[str, threading.Thread | None] = {"thread": None}

    @app.before_request
    def _start_maintenance_once() -> None:
        if state["thread"] is None and started.acquire(blocking=False):
            state["thread"] = start_maintenance_thread(app)
