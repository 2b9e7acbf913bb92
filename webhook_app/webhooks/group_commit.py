"""Group commit for webhook rows: the requests of one web process that store rows at the same moment share one
INSERT and one COMMIT.

Twilio may hear 200 only once the event is durable (503 otherwise, so a configured retry redelivers it), so
every webhook waits for a commit. A commit costs a round trip and a WAL flush whatever it carries, and the
pooled-connection, transaction and statement overhead around it cost more CPU than the row itself. So the first
request to arrive becomes the leader and commits the rows of every request that queued up meanwhile; when it
is done, the first request still waiting leads the next batch (leader/follower, the way PostgreSQL's own group
commit works). Alone, a webhook commits at once: there is no timer and no added latency.
"""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError

from ..extensions import db
from ..models import AudioMessage

# Rows per INSERT statement at most; a longer queue is committed in several batches.
MAX_BATCH_ROWS = 500


class StorageUnavailable(Exception):
    """The rows could not be committed (the database is down, restarting or refusing): answer 503."""


@dataclass(eq=False)
class _Pending:
    rows: list[dict]
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    new_ids: list[int] = field(default_factory=list)
    error: BaseException | None = None


class GroupCommitWriter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[_Pending] = []
        self._leader_active = False
        # Only the leader of the moment uses it. Kept open: a pool checkout with pool_pre_ping is a round trip
        # and, on a loaded web process, as much CPU as the INSERT.
        self._connection = None

    def insert(self, rows: list[dict]) -> list[int]:
        """Insert audit rows, ignoring (message_sid, media_sid) duplicates; answer the ids of the new ones, in
        the order of `rows`, once they are committed. Raises StorageUnavailable when they were not."""
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
            batch, size = [], 0
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
        owner: dict[tuple, _Pending] = {}
        rows = []
        for pending in batch:
            for row in pending.rows:
                key = (row["message_sid"], row["media_sid"])
                # A redelivery racing its original in one batch: the first stores it, as a unique index would.
                if key not in owner:
                    owner[key] = pending
                    rows.append(row)
        if not rows:
            return
        ids = {(message_sid, media_sid): id_ for id_, message_sid, media_sid in self._insert(rows)}
        for pending in batch:
            pending.new_ids = [
                ids[key]
                for key in ((r["message_sid"], r["media_sid"]) for r in pending.rows)
                if key in ids and owner[key] is pending
            ]

    def _insert(self, rows: list[dict]) -> list[tuple[int, str, str]]:
        """(id, message_sid, media_sid) of the rows that were new."""
        unknown = set().union(*rows).difference(WEBHOOK_COLUMNS)
        if unknown:
            raise ValueError(f"not webhook columns: {sorted(unknown)}")
        if db.engine.dialect.name == "postgresql":
            return self._insert_postgresql(rows)
        return self._insert_sqlalchemy(rows)

    def _insert_postgresql(self, rows: list[dict]) -> list[tuple[int, str, str]]:
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = db.engine.raw_connection()
                # One statement is its own transaction: BEGIN and COMMIT would be two more round trips.
                self._connection.driver_connection.autocommit = True
            connection = self._connection
            try:
                return connection.driver_connection.execute(JSON_INSERT, (json_rows(rows),)).fetchall()
            except psycopg.Error:
                if not connection.driver_connection.broken:
                    raise  # PostgreSQL refused the statement; the connection is fine (autocommit: nothing to undo)
                self._connection = None
                connection.invalidate()
                # A connection PostgreSQL dropped while it sat idle (a restart, a failover): once more on a new
                # one, as pool_pre_ping would have. Safe to repeat: duplicates are ignored, and if the lost
                # COMMIT did land, the rows exist and the relay or the sweeper enqueues them.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _insert_sqlalchemy(self, rows: list[dict]) -> list[tuple[int, str, str]]:
        connection = self._connection = self._connection or db.engine.connect()
        try:
            with connection.begin():
                return [
                    tuple(row) for row in connection.execute(insert_ignoring_duplicates(connection.dialect.name), rows)
                ]
        except DBAPIError:
            self._connection = None
            connection.close()
            raise


# The columns a webhook's rows carry (inbound.audio_rows); the others keep their defaults (NULL).
WEBHOOK_COLUMNS = (
    "direction",
    "channel",
    "status",
    "account_sid",
    "chat_service_sid",
    "conversation_sid",
    "message_sid",
    "media_sid",
    "author",
    "source",
    "content_type",
    "filename",
    "size_bytes",
    "truncated",
    "attempts",
    "created_at",
    "updated_at",
    "dispatched_at",
)

# The batch travels as one JSON array of row objects, turned back into rows of the table's own type by
# PostgreSQL. Its text never changes, whatever the batch size, so psycopg prepares it once per connection (a
# multi-VALUES INSERT is new text, parsed and planned again, for every batch size), and json.dumps in C costs a
# fraction of adapting a parameter per value.
# Rows go in message order: every web process has its own writer, and Twilio's redeliveries can reach two of them
# in opposite orders. In arrival order, each batch would hold one message's uncommitted index entry while waiting
# for the other's: a deadlock, which PostgreSQL breaks after deadlock_timeout (1 s) by failing one whole batch, a
# 503 for every webhook in it. In one order, the later batch waits for the earlier and skips its rows. A message's
# media keep the order they came in (their ids are the order agents see them), the same in every delivery.
JSON_INSERT = (
    f"INSERT INTO audio_messages ({', '.join(WEBHOOK_COLUMNS)})"
    f" SELECT {', '.join(WEBHOOK_COLUMNS)}"
    " FROM json_populate_recordset(NULL::audio_messages, %s::json) WITH ORDINALITY AS batch"
    " ORDER BY batch.message_sid, batch.ordinality"
    " ON CONFLICT (message_sid, media_sid) DO NOTHING RETURNING id, message_sid, media_sid"
)


def json_rows(rows: list[dict]) -> str:
    return json.dumps(rows, default=_isoformat)


def _isoformat(value):
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a column value")


@functools.cache
def insert_ignoring_duplicates(dialect: str):
    """INSERT ... ON CONFLICT DO NOTHING RETURNING, built once per dialect: building it per webhook cost more
    CPU than executing it. On the Table, not the mapped class: Core skips the ORM's bulk-insert bookkeeping.
    Executed with a list of rows, SQLAlchemy sends them as one multi-row INSERT ("insertmanyvalues")."""
    table = AudioMessage.__table__
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    return (
        insert(table)
        .on_conflict_do_nothing(index_elements=["message_sid", "media_sid"])
        .returning(table.c.id, table.c.message_sid, table.c.media_sid)
    )


def init_app(app) -> None:
    app.extensions["group_commit"] = GroupCommitWriter()
