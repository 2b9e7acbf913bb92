"""Redis and the database going away for a while: what counts as that, and logging it once.

A worker's loops (the RQ worker, its relay, sweeper and scheduler threads) retry with backoff when Redis or the
database is unreachable, for as long as it takes; none exits for it. Each of them failing every few seconds
would write hundreds of identical tracebacks during a failover, so the process logs an outage when the first
loop notices it and its end when a loop next gets through; other failures are logged every time.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from redis import exceptions as redis_errors
from sqlalchemy import exc as sqlalchemy_errors

from .retry import RetryPolicy

log = logging.getLogger(__name__)

# Longest wait between two tries of a loop whose dependency is down: a worker picks up within this long of the
# outage's end.
MAX_BACKOFF_S = 30


# 1, 2, 4 … MAX_BACKOFF_S seconds after the first, second, third … failure in a row: the service's one retry policy
# (retry.py), without jitter, since a worker's loops wait on a shared dependency rather than compete for one.
LOOP_BACKOFF = RetryPolicy(base_s=1.0, max_delay_s=MAX_BACKOFF_S, jitter=False)


class Dependency:
    """One service this process needs; remembers whether it is known to be down, so each outage is logged twice
    (begin, end) whichever loops notice it."""

    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self._down_since: float | None = None

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def unreachable(self, noticed_by: str, exc: BaseException | str) -> None:
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        log.error(
            "%s is unreachable (%s: %s); waiting for it with backoff (logged again when it is back)",
            self.name,
            noticed_by,
            describe(exc),
        )

    def reachable(self) -> None:
        if self._down_since is None:  # the common case, without the lock: loops call this after every success
            return
        with self._lock:
            if self._down_since is None:
                return
            seconds, self._down_since = time.monotonic() - self._down_since, None
        log.warning("%s is reachable again after %.1f s", self.name, seconds)


REDIS = Dependency("Redis")
DATABASE = Dependency("the database")


def describe(exc: BaseException | str) -> str:
    """One line for a log or a row: SQLAlchemy's own text adds the statement and a link to its docs."""
    if isinstance(exc, str):
        return exc
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""]
    return f"{type(exc).__name__}: {text[0]}"[:300]


def is_redis_unreachable(exc: BaseException) -> bool:
    # ReadOnlyError: a failover left clients on the old primary, now a replica, until they reconnect.
    return isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ReadOnlyError))


def is_database_unreachable(exc: BaseException) -> bool:
    """The database refused or dropped the connection (a restart, a failover, a terminated backend), as opposed
    to refusing a statement."""
    if isinstance(
        exc,
        (
            sqlalchemy_errors.OperationalError,
            sqlalchemy_errors.InterfaceError,
            psycopg.OperationalError,
            psycopg.InterfaceError,
        ),
    ):
        return True
    return isinstance(exc, sqlalchemy_errors.DBAPIError) and exc.connection_invalidated


def dependency_of(exc: BaseException) -> Dependency | None:
    if is_redis_unreachable(exc):
        return REDIS
    if is_database_unreachable(exc):
        return DATABASE
    return None


def log_failure(logger: logging.Logger, exc: BaseException, what: str, *args: object) -> None:
    """A background loop's failure: an unreachable Redis or database once per outage, anything else every time
    with its traceback."""
    dependency = dependency_of(exc)
    if dependency is None:
        logger.error(what, *args, exc_info=exc)
    else:
        dependency.unreachable(what % args if args else what, exc)
