"""Limits on refused attempts, counted once for the whole deployment: in Redis when REDIS_URL is set, else in the
database (one SQLite file shared by a machine's processes, or PostgreSQL shared by every dyno).

A limit counts distinct refused things (tokens, conversations) per key (a client, an agent) over a sliding window;
the same thing refused again only refreshes its time. Keys and things are stored as digests: hostile bytes never
reach a Redis key or a row, and a table of refusals holds no addresses or tokens.

When the store cannot be reached the limits are not applied (fail open) until it answers again: a Redis or
database outage must not stop agents whose tokens are valid, and each refused attempt still costs the client a
round trip to Twilio, which keeps its own limits. The outage is logged once, and its end.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from flask import Flask, current_app
from redis import Redis
from redis import exceptions as redis_errors
from sqlalchemy import delete, select
from sqlalchemy import exc as sqlalchemy_errors
from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db
from ..models import RefusalHit
from ..runtime import outages
from .errors import ApiError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Rows older than the longest window are only history: the database store deletes them as it writes.
MAX_WINDOW_S = 3600
# After the store failed, this process does not ask it again for a while: a request must not wait out a
# connection timeout each time during an outage.
RETRY_STORE_AFTER_S = 5.0


@dataclass(frozen=True)
class Limit:
    name: str
    limit: int
    window_s: int
    code: str  # the 429's error code
    what: str  # the 429's message: "{limit} … in {minutes} minutes …"

    def __post_init__(self) -> None:
        assert 0 < self.window_s <= MAX_WINDOW_S

    def bucket(self, key: str) -> str:
        return f"{self.name}:{digest(key)}"


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def enforce(limit: Limit, key: str) -> None:
    """Return when `key` is under `limit`; else ApiError 429 with Retry-After (in the one error shape)."""
    wait_s = current_app.extensions["refusal_limits"].wait_s(limit, key)
    if wait_s <= 0:
        return
    retry_after = max(1, math.ceil(wait_s))
    log.warning(
        "%s: %r reached %d in %d s; refused without asking Twilio", limit.name, key, limit.limit, limit.window_s
    )
    raise ApiError(
        429,
        limit.code,
        f"{limit.what.format(limit=limit.limit, minutes=f'{limit.window_s / 60:g}')}; try again in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


def record(limit: Limit, key: str, refused: str) -> None:
    """Count `refused` (a token, a conversation) against `key`."""
    current_app.extensions["refusal_limits"].record(limit, key, refused)


def wait_for(times: list[float], limit: int, window_s: float, now: float) -> float:
    """Seconds until fewer than `limit` of the refusal `times` (ascending, all within the window) remain in it."""
    if len(times) < limit:
        return 0.0
    return times[len(times) - limit] + window_s - now


class RefusalHits(Protocol):
    """Where refusals are counted: Redis (RedisHits) or the database (DatabaseHits)."""

    def times(self, bucket: str, since: float) -> list[float]:
        """When the bucket's refusals since `since` happened, ascending (older ones may be dropped)."""

    def add(self, bucket: str, member: str, at: float, window_s: int) -> None:
        """Count `member` in the bucket at `at` (once: a member counted again moves to `at`)."""


class Limiter:
    def __init__(self, hits: RefusalHits, dependency: outages.Dependency) -> None:
        self.hits = hits
        self.dependency = dependency
        self._skip_until = 0.0

    def wait_s(self, limit: Limit, key: str) -> float:
        now = time.time()
        times = self._guarded(lambda: self.hits.times(limit.bucket(key), now - limit.window_s)) or []
        return wait_for(times, limit.limit, limit.window_s, now)

    def record(self, limit: Limit, key: str, refused: str) -> None:
        self._guarded(lambda: self.hits.add(limit.bucket(key), digest(refused), time.time(), limit.window_s))

    def _guarded(self, call: Callable[[], T]) -> T | None:
        """`call()`, or None (the limit not applied) when the store failed now or a moment ago."""
        if time.monotonic() < self._skip_until:
            return None
        try:
            result = call()
        except (redis_errors.RedisError, sqlalchemy_errors.SQLAlchemyError) as exc:
            self._skip_until = time.monotonic() + RETRY_STORE_AFTER_S
            outages.log_failure(log, exc, "refusal limits not applied: their store failed")
            return None
        self.dependency.reachable()
        return result


class RedisHits:
    """A sorted set per bucket: refused things scored by when."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis, self.prefix = redis, prefix

    def times(self, bucket: str, since: float) -> list[float]:
        pipe = self.redis.pipeline()
        pipe.zremrangebyscore(self.prefix + bucket, "-inf", since)
        pipe.zrange(self.prefix + bucket, 0, -1, withscores=True)
        return [score for _, score in pipe.execute()[1]]

    def add(self, bucket: str, member: str, at: float, window_s: int) -> None:
        pipe = self.redis.pipeline()
        pipe.zadd(self.prefix + bucket, {member: at})
        pipe.expire(self.prefix + bucket, window_s + 1)
        pipe.execute()


class DatabaseHits:
    """Rows of refusal_hits, on a connection of their own: never part of the request's transaction."""

    def times(self, bucket: str, since: float) -> list[float]:
        query = select(RefusalHit.at).where(RefusalHit.bucket == bucket, RefusalHit.at > since).order_by(RefusalHit.at)
        with db.engine.connect() as connection:
            return list(connection.scalars(query))

    def add(self, bucket: str, member: str, at: float, window_s: int) -> None:
        inserts: dict[str, Callable[[type[RefusalHit]], postgresql.Insert | sqlite.Insert]] = {
            "postgresql": postgresql.insert,
            "sqlite": sqlite.insert,
        }
        insert = inserts[db.engine.dialect.name]
        upsert = insert(RefusalHit).values(bucket=bucket, member=member, at=at)
        with db.engine.begin() as connection:
            connection.execute(delete(RefusalHit).where(RefusalHit.at < at - MAX_WINDOW_S))
            connection.execute(upsert.on_conflict_do_update(index_elements=["bucket", "member"], set_={"at": at}))


def init_app(app: Flask) -> None:
    if app.config.get("REDIS_URL"):
        # Named after the queue: deployments (and test runs) sharing one Redis keep their counts apart.
        hits = RedisHits(app.extensions["jobs"].redis, f"{app.config['RQ_QUEUE']}:refusals:")
        app.extensions["refusal_limits"] = Limiter(hits, outages.REDIS)
    else:
        app.extensions["refusal_limits"] = Limiter(DatabaseHits(), outages.DATABASE)
