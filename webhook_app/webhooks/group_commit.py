"""Group commit: the requests of one web process that store rows at the same moment share one INSERT and one
COMMIT. The writer is generic: what it inserts (columns, unique key, statements) is a BatchInsert its owner
describes; webhooks/conversations.py gives it inbound's audio rows (inbound/record.py).

Twilio may hear 200 only once the event is durable (503 otherwise, so a configured retry redelivers it), so
every webhook waits for a commit. A commit costs a round trip and a WAL flush whatever it carries, and the
pooled-connection, transaction and statement overhead around it cost more CPU than the row itself. So the first
request to arrive becomes the leader and commits the rows of every request that queued up meanwhile; when it
is done, the first request still waiting leads the next batch (leader/follower, the way PostgreSQL's own group
commit works). Alone, a webhook commits at once: there is no timer and no added latency.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import psycopg
from sqlalchemy import Connection, Executable, PoolProxiedConnection
from sqlalchemy.exc import DataError, DBAPIError

from ..extensions import db

# Rows per INSERT statement at most; a longer queue is committed in several batches.
MAX_BATCH_ROWS = 500


class StorageUnavailable(Exception):
    """The rows could not be committed (the database is down, restarting or refusing): answer 503."""


Row = dict[str, Any]  # a row's column values
Inserted = tuple[Any, ...]  # what an INSERT returns of a new row: its id, then its key's values


@dataclass(frozen=True)
class BatchInsert:
    """What a writer inserts, ignoring rows whose unique `key` is already stored: rows of these `columns` only;
    on PostgreSQL `json_statement`, which takes the whole batch as one JSON array (one statement text whatever the
    batch size: psycopg prepares it once per connection); elsewhere `statement(dialect)`, executed with the list of
    rows. Both return (id, *key) of each new row."""

    columns: tuple[str, ...]
    key: tuple[str, ...]
    json_statement: str
    statement: Callable[[str], Executable]


@dataclass(eq=False)
class _Pending:
    rows: list[Row]
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    new_ids: list[int] = field(default_factory=list)
    error: BaseException | None = None


class GroupCommitWriter:
    def __init__(self, batch: BatchInsert) -> None:
        self.batch = batch
        self._lock = threading.Lock()
        self._waiting: list[_Pending] = []
        self._leader_active = False
        # Only the leader of the moment uses one. Kept open: a pool checkout with pool_pre_ping is a round trip
        # and, on a loaded web process, as much CPU as the INSERT.
        self._raw_connection: PoolProxiedConnection | None = None  # PostgreSQL's, in autocommit
        self._connection: Connection | None = None  # other databases'

    def insert(self, rows: list[Row]) -> list[int]:
        """Insert rows, ignoring those whose key is already stored; answer the ids of the new ones, in the order of
        `rows`, once they are committed. Raises StorageUnavailable when they were not."""
        pending = _Pending(rows)
        with self._lock:
            self._waiting.append(pending)
            lead = not self._leader_active
            self._leader_active = True
        if not lead:
            pending.done.wait()
            lead = pending.lead
        if lead:
            self._lead()
        if pending.error is not None:
            raise StorageUnavailable(f"{type(pending.error).__name__}: {pending.error}") from pending.error
        return pending.new_ids

    def _lead(self) -> None:
        with self._lock:
            batch: list[_Pending] = []
            size = 0
            while self._waiting and (not batch or size + len(self._waiting[0].rows) <= MAX_BATCH_ROWS):
                batch.append(self._waiting.pop(0))
                size += len(batch[-1].rows)
        try:
            self._commit_isolating(batch)
        except BaseException as exc:  # noqa: BLE001 - whatever stopped the commit, no follower may answer 200
            for pending in batch:
                pending.error = exc
        finally:
            with self._lock:
                if self._waiting:
                    successor = self._waiting[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._leader_active = False
            for pending in batch:
                pending.done.set()

    def _commit_isolating(self, batch: list[_Pending]) -> None:
        """Commit the batch; if PostgreSQL refused a value in it, commit each caller's rows alone, so the one
        webhook with the bad row gets its 503 and the others sharing its commit their 200."""
        try:
            self._commit(batch)
        except (psycopg.DataError, DataError, ValueError):
            if len(batch) == 1:
                raise
            for pending in batch:
                try:
                    self._commit([pending])
                except Exception as exc:  # noqa: BLE001 - this caller's own rows: its own 503
                    pending.error = exc

    def _commit(self, batch: list[_Pending]) -> None:
        owner: dict[tuple[Any, ...], _Pending] = {}
        rows = []
        for pending in batch:
            for row in pending.rows:
                key = self._key(row)
                # A redelivery racing its original in one batch: the first stores it, as a unique index would.
                if key not in owner:
                    owner[key] = pending
                    rows.append(row)
        if not rows:
            return
        ids = {tuple(inserted[1:]): inserted[0] for inserted in self._insert(rows)}
        for pending in batch:
            pending.new_ids = [ids[key] for key in map(self._key, pending.rows) if key in ids and owner[key] is pending]

    def _key(self, row: Row) -> tuple[Any, ...]:
        return tuple(row[column] for column in self.batch.key)

    def _insert(self, rows: list[Row]) -> list[Inserted]:
        """(id, *key) of the rows that were new."""
        unknown = set().union(*rows).difference(self.batch.columns)
        if unknown:
            raise ValueError(f"not columns of the batch: {sorted(unknown)}")
        if db.engine.dialect.name == "postgresql":
            return self._insert_postgresql(rows)
        return self._insert_sqlalchemy(rows)

    def _insert_postgresql(self, rows: list[Row]) -> list[Inserted]:
        for attempt in (1, 2):
            fresh = self._raw_connection is None
            connection = self._raw_connection = self._raw_connection or db.engine.raw_connection()
            driver = cast("psycopg.Connection[Inserted]", connection.driver_connection)  # PostgreSQL's driver: psycopg
            if fresh:
                # One statement is its own transaction: BEGIN and COMMIT would be two more round trips.
                driver.autocommit = True
            try:
                return driver.execute(self.batch.json_statement, (json_rows(rows),)).fetchall()
            except psycopg.Error:
                if not driver.broken:
                    raise  # PostgreSQL refused the statement; the connection is fine (autocommit: nothing to undo)
                self._raw_connection = None
                connection.invalidate()
                # A connection PostgreSQL dropped while it sat idle (a restart, a failover): once more on a new
                # one, as pool_pre_ping would have. Safe to repeat: duplicates are ignored, and if the lost
                # COMMIT did land, the rows exist and the relay or the sweeper enqueues them.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _insert_sqlalchemy(self, rows: list[Row]) -> list[Inserted]:
        connection = self._connection = self._connection or db.engine.connect()
        try:
            with connection.begin():
                return [tuple(row) for row in connection.execute(self.batch.statement(connection.dialect.name), rows)]
        except DBAPIError:
            self._connection = None
            connection.close()
            raise


def json_rows(rows: list[Row]) -> str:
    return json.dumps(rows, default=_isoformat)


def _isoformat(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a column value")
