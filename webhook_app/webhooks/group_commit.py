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
import threading
from dataclasses import dataclass, field

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

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
        self._connection: Connection | None = None

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
            self._commit(batch)
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
        inserted = self._insert(rows)
        ids = {(row.message_sid, row.media_sid): row.id for row in inserted}
        for pending in batch:
            pending.new_ids = [ids[key] for key in ((r["message_sid"], r["media_sid"]) for r in pending.rows)
                               if key in ids and owner[key] is pending]

    def _insert(self, rows: list[dict]) -> list:
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = db.engine.connect()
            connection = self._connection
            try:
                with connection.begin():
                    return connection.execute(insert_ignoring_duplicates(connection.dialect.name), rows).all()
            except DBAPIError as exc:
                self._connection = None
                connection.close()
                # A connection PostgreSQL dropped while it sat idle (a restart, a failover): once more on a new
                # one, as pool_pre_ping would have. Safe to repeat: duplicates are ignored, and if the lost
                # COMMIT did land, the rows exist and the relay or the sweeper enqueues them.
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")


@functools.cache
def insert_ignoring_duplicates(dialect: str):
    """INSERT ... ON CONFLICT DO NOTHING RETURNING, built once per dialect: building it per webhook cost more
    CPU than executing it. On the Table, not the mapped class: Core skips the ORM's bulk-insert bookkeeping.
    Executed with a list of rows, SQLAlchemy sends them as one multi-row INSERT ("insertmanyvalues")."""
    table = AudioMessage.__table__
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    return (insert(table)
            .on_conflict_do_nothing(index_elements=["message_sid", "media_sid"])
            .returning(table.c.id, table.c.message_sid, table.c.media_sid))


def init_app(app) -> None:
    app.extensions["group_commit"] = GroupCommitWriter()
