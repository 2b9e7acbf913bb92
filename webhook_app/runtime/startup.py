"""What a process checks before it serves or works, and how a bad setting ends it: one line, exit status 1.

Entry points: gunicorn.conf.py (the settings when the master reads its configuration, `prepare_to_serve` in
`on_starting`, before any worker is forked), `flask --app webhook_app serve|worker` (cli.py), and everything that
imports the package (flask's other commands, alembic's env.py), whose uncaught ConfigError the hook below prints.
docs/architecture.md, "Configuration checks".
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from ..config import ConfigError

if TYPE_CHECKING:
    from ..config import Config
    from .schema import ProgressLog


def one_line(error: ConfigError) -> str:
    return f"error: {error}"


@contextlib.contextmanager
def exit_on_config_error() -> Iterator[None]:
    """A ConfigError inside ends the process with its one line on stderr and status 1. For gunicorn, which prints
    a traceback for an exception in its configuration file."""
    try:
        yield
    except ConfigError as error:
        sys.exit(one_line(error))


def checked_settings() -> Config:
    """Every setting read and checked (config.Config), or the process ends with one line."""
    from ..config import Config

    with exit_on_config_error():
        return Config()


def install_excepthook() -> None:
    """An uncaught ConfigError prints its one line instead of a traceback (Python then exits with status 1). The
    flask CLI builds the app inside click and alembic runs env.py inside its own command: neither leaves a place
    of ours to catch it, but both import this package first. Any other exception keeps its traceback."""
    previous = sys.excepthook
    if getattr(previous, "prints_config_errors", False):
        return
    sys.excepthook = ConfigErrorHook(previous)


class ConfigErrorHook:
    """sys.excepthook: a ConfigError as its one line, anything else to the hook it replaced."""

    prints_config_errors = True  # installed already: install_excepthook does not wrap it again

    def __init__(self, previous: Callable[[type[BaseException], BaseException, TracebackType | None], object]) -> None:
        self.previous = previous

    def __call__(self, kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
        if isinstance(value, ConfigError):
            print(one_line(value), file=sys.stderr, flush=True)
        else:
            self.previous(kind, value, traceback)


def prepare_to_serve(log: ProgressLog, database_url: str) -> None:
    """Before serving (gunicorn's master, `flask serve`) or working (`flask worker`): the ffmpeg this process will
    run is checked and logged (a ConfigError if it cannot run), and a SQLite file is migrated to head.

    SQLite only: the file is on this machine, so no release phase elsewhere can have migrated it, and "web alone"
    must work on a fresh one. A server database (PostgreSQL) is the release phase's to migrate; a process on one
    that is behind serves, and /healthz answers 503 naming the revisions until it is migrated (health.py)."""
    from ..audio.ffmpeg import ffmpeg_in_use
    from .schema import sqlite_file, upgrade_sqlite

    binary, version = ffmpeg_in_use()
    log.info("ffmpeg: %s %s", binary, version)
    if sqlite_file(database_url):
        upgrade_sqlite(database_url, log)
