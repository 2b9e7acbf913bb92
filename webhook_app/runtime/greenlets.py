"""psycopg's waits on a gevent web process (gunicorn.conf.py's gevent workers on PostgreSQL).

psycopg cooperates with gevent through the patched `select.poll`: a poll object whose watcher, when PostgreSQL
answers, sets an Event, and the Event wakes the waiting greenlet through the hub's callback queue, behind every
greenlet already queued there. On a loaded web process that queue is a few milliseconds of other requests' work,
and the waiting greenlet is usually the group commit's leader, whose commit every webhook in the batch (and the
next batch) waits for: the p99 of the webhook acknowledgement went from 60 to 46 ms when the leader was switched
to directly (docs/benchmarks.md, "Load"). So the wait here starts a top-priority watcher on the connection's socket
whose callback switches straight back to the waiting greenlet.

Installed by create_app() when gevent has patched the process (`is_gevent_process`); without gevent, psycopg
keeps its own wait, which blocks the thread as it should.
"""

from __future__ import annotations

import sys
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg import errors
from psycopg.abc import PQGen

from .compat import Ready, Wait, WaitTimeout, check_fd_closed, install_psycopg_wait

if TYPE_CHECKING:
    from gevent.hub import Hub, Waiter

# libev's and libuv's READ and WRITE, as gevent exposes them, have selectors' values, which psycopg's Wait and
# Ready use too.
_READ, _WRITE = 1, 2
_TIMED_OUT = object()
RV = TypeVar("RV")


def is_gevent_process() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("socket") and monkey.is_module_patched("select"))


def install_gevent_wait() -> None:
    """Make psycopg's connections wait with `wait_gevent` (Connection.wait looks `waiting.wait` up per call)."""
    install_psycopg_wait(wait_gevent)


def wait_gevent(gen: PQGen[RV], fileno: int, interval: float = 0.0, timeout: float | None = None) -> RV:
    """psycopg's wait-function protocol (waiting.wait_poll's): drive `gen`, waiting for the socket state it asks
    for; `timeout` raises psycopg's _WaitTimeout. `interval` is for noticing Ctrl-C in a blocked thread, which a
    greenlet is not, so it is not used."""
    from gevent.hub import get_hub  # gevent only where it runs: this is called in gevent processes alone

    hub = get_hub()
    deadline = None if timeout is None else monotonic() + timeout
    try:
        wanted = next(gen)
        while True:
            remaining = None if deadline is None else max(0.0, deadline - monotonic())
            wanted = gen.send(_ready(hub, fileno, wanted, remaining))
            if deadline is not None and monotonic() >= deadline:
                raise WaitTimeout("wait timeout expired")
    except StopIteration as done:
        result: RV = done.value
        return result


def _ready(hub: Hub, fileno: int, wanted: Wait | int, seconds: float | None) -> Ready:
    from gevent.hub import Waiter  # as above

    loop = hub.loop
    watcher = loop.io(fileno, int(wanted))
    # libev's priorities, which gevent's loop has and types-gevent's description of loops leaves out.
    watcher.priority = loop.MAXPRI  # type: ignore[attr-defined]
    waiter: Waiter[Any] = Waiter(hub)
    watcher.start(waiter.switch, pass_events=True)
    timer = None
    if seconds is not None:
        timer = loop.timer(seconds)
        timer.start(waiter.switch, _TIMED_OUT)
    try:
        events = waiter.get()
    finally:
        watcher.close()
        if timer is not None:
            timer.close()
    if events is _TIMED_OUT:
        return Ready.NONE
    ready = Ready(events & (_READ | _WRITE))
    if not ready:
        # Neither readable nor writable, yet woken: the socket is gone (libev's EV_ERROR). As wait_poll does.
        check_fd_closed(fileno)
        raise errors.OperationalError("connection socket closed")
    return ready
