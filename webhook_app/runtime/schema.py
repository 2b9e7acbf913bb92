"""The database schema against the code: the revisions of migrations/ (Alembic) and the one a database is at.

/healthz compares them on every call, and start-up migrates a SQLite file
to head (startup.py). docs/architecture.md, "Migrations", says who migrates what.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import Connection


class ProgressLog(Protocol):
    """Where start-up says what it did: a logging.Logger, or gunicorn's logger in its master."""

    def info(self, msg: str, *args: Any) -> None: ...


PACKAGE_PARENT = Path(__file__).resolve().parent.parent
# Alembic announces each of its plugins at INFO as it loads them: six lines in the middle of the service's log at its
# first /healthz.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def migrations_directory() -> Path:
    """migrations/ beside alembic.ini: in the working directory, as `alembic upgrade head` (the release phase) finds
    it, else beside the package (an editable checkout run from elsewhere). A deploy install has the package in
    site-packages and the app's files in the working directory."""
    for root in (Path.cwd(), PACKAGE_PARENT):
        if (root / "alembic.ini").is_file() and (root / "migrations" / "env.py").is_file():
            return root / "migrations"
    raise RuntimeError(f"no migrations/ beside an alembic.ini in {Path.cwd()} or {PACKAGE_PARENT}")


def alembic_config(url: str) -> AlembicConfig:
    """Alembic's configuration for `url`, the project's alembic.ini without its logging (the caller's stays)."""
    from alembic.config import Config as AlembicConfig

    directory = migrations_directory()
    config = AlembicConfig(str(directory.parent / "alembic.ini"))
    config.set_main_option("script_location", str(directory))
    config.attributes["database_url"] = url
    config.attributes["skip_logging"] = True
    return config


@functools.lru_cache(maxsize=1)
def code_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """(the heads of migrations/, every revision it knows), read once per process: the files do not change under
    a running process, and /healthz asks on every call."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(migrations_directory()))
    return frozenset(script.get_heads()), frozenset(r.revision for r in script.walk_revisions())


def database_revisions(connection: Connection) -> frozenset[str]:
    """The revisions the database is at, none when it has no alembic_version table (never migrated). Two short
    queries; raises when the database does not answer. (Alembic's MigrationContext would log two lines a call.)"""
    from sqlalchemy import inspect, text

    if not inspect(connection).has_table("alembic_version"):
        return frozenset()
    return frozenset(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


def schema_status(revisions: frozenset[str]) -> dict[str, Any]:
    """/healthz's `schema` check. Behind the code (a revision it knows, or none) is not ok: the code's queries
    would fail. Ahead (a revision it does not know) is ok: a later release migrated it, and migrations add before
    they remove, so the code still running keeps working until it is replaced."""
    heads, known = code_revisions()
    status: dict[str, Any] = {
        "ok": True,
        "revision": ", ".join(sorted(revisions)) or None,
        "head": ", ".join(sorted(heads)),
    }
    if revisions == heads:
        return status
    if revisions - known:
        return {**status, "note": "newer than this code's migrations"}
    return {
        **status,
        "ok": False,
        "error": f"the schema is at {status['revision'] or 'no revision'}, this code needs {status['head']}: "
        "run `alembic upgrade head`",
    }


def sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


def upgrade_sqlite(url: str, log: ProgressLog) -> None:
    """Migrate a SQLite file to head, one process at a time: gunicorn's master, `flask serve` and `flask worker`
    may start together on one machine, and two upgrades at once would both create the same tables."""
    from alembic import command
    from sqlalchemy import create_engine, pool

    path = sqlite_file(url)
    if path is None:
        raise ValueError(f"not a SQLite file: {url}")
    heads, _ = code_revisions()
    with open(f"{path}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        engine = create_engine(url, poolclass=pool.NullPool)
        with engine.connect() as connection:
            before = database_revisions(connection)
        engine.dispose()
        if before == heads:
            log.info("database: %s is at %s", os.path.basename(path), ", ".join(sorted(heads)))
            return
        command.upgrade(alembic_config(url), "head")
    log.info(
        "database: %s migrated from %s to %s",
        os.path.basename(path),
        ", ".join(sorted(before)) or "nothing",
        ", ".join(sorted(heads)),
    )
