"""What each flow hands to jobs/: how its stuck or lost work is taken back (the sweeper runs these steps), the
outboxes whose new rows the relay hands to RQ, the upkeep of a maintenance round, and the lanes whose jobs run in
a process of their own.

jobs/ imports no flow (tests/test_architecture.py): the flows register here instead, from create_app
(webhook_app/__init__.py). Every process that runs jobs or sweeps builds the app first (web processes, `flask
worker` and the work horses it forks, `flask sweep`, an RQ job that builds its own app in jobs/queue.py), so each of
them knows every flow's steps. The registry is the app's, like its runner: two apps in one process (tests) never
see each other's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from flask import Flask, current_app


@dataclass(frozen=True)
class Recovered:
    """What a recovery step took back: its counts (the sweeper's answer and log line, by name) and what to enqueue
    once the sweep's transaction is committed (a job must find its row as the sweep left it)."""

    counts: dict[str, int]
    hand_out: Callable[[], None]


class Recovery(Protocol):
    def __call__(self, now: datetime, stuck_before: datetime) -> Recovered:
        """Inside the sweep's transaction: take back the flow's rows whose work stopped before `stuck_before` (a
        worker killed mid-job) or was lost (a job Redis forgot), with conditional UPDATEs only, so that sweepers on
        several dynos never handle a row twice. Commits nothing."""
        ...


@dataclass(frozen=True)
class Outbox:
    """Rows a flow commits without enqueueing their jobs (RQ on PostgreSQL): the relay LISTENs on `channel`, which
    an insert trigger NOTIFYs, and runs `relay_round(limit)`, which claims at most `limit` waiting rows, enqueues
    their jobs and answers how many it claimed."""

    channel: str
    relay_round: Callable[[int], int]


@dataclass
class JobRegistry:
    recoveries: dict[str, Recovery] = field(default_factory=dict)
    outboxes: dict[str, Outbox] = field(default_factory=dict)
    # A maintenance round's work after the sweep (retention), by name; each step's failure is logged on its own.
    upkeep: dict[str, Callable[[], object]] = field(default_factory=dict)
    # Lanes whose jobs a worker hands to a process of their own, and the test of whether this machine should.
    separate_lanes: dict[str, Callable[[], bool]] = field(default_factory=dict)

    def add_recovery(self, name: str, step: Recovery) -> None:
        self.recoveries[name] = step

    def add_outbox(self, outbox: Outbox) -> None:
        self.outboxes[outbox.channel] = outbox

    def add_upkeep(self, name: str, step: Callable[[], object]) -> None:
        self.upkeep[name] = step

    def run_lane_apart(self, lane: str, when: Callable[[], bool]) -> None:
        self.separate_lanes[lane] = when

    def runs_apart(self, lane: str) -> bool:
        """Whether a worker here hands `lane` to a process of its own (jobs/worker.py)."""
        when = self.separate_lanes.get(lane)
        return when is not None and when()


def init_app(app: Flask) -> None:
    app.extensions["job_registry"] = JobRegistry()


def registry(app: Flask | None = None) -> JobRegistry:
    """The registry of `app`, by default the current app's."""
    found: JobRegistry = (app or current_app).extensions["job_registry"]
    return found
