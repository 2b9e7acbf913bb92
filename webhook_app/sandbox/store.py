"""The sandbox account's SQLite file: one file holds the whole fake account, so a web server, a CLI and a test (in
as many processes) can share it. Every call opens its own connection."""

from __future__ import annotations

import contextlib
import random
import secrets
import sqlite3
import time
from collections.abc import Iterator

from .wire import new_sid

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sid TEXT UNIQUE NOT NULL, unique_name TEXT UNIQUE, friendly_name TEXT, attributes TEXT NOT NULL,
    state TEXT NOT NULL, messaging_service_sid TEXT, date_created TEXT NOT NULL, date_updated TEXT NOT NULL,
    next_index INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS participants (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sid TEXT UNIQUE NOT NULL, conversation_sid TEXT NOT NULL, identity TEXT, messaging_binding TEXT,
    attributes TEXT NOT NULL, role_sid TEXT, is_customer INTEGER NOT NULL DEFAULT 0,
    date_created TEXT NOT NULL, date_updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sid TEXT UNIQUE NOT NULL, conversation_sid TEXT NOT NULL, idx INTEGER NOT NULL, author TEXT, body TEXT,
    attributes TEXT NOT NULL, participant_sid TEXT, media TEXT, source TEXT NOT NULL,
    date_created TEXT NOT NULL, date_updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS media (
    sid TEXT PRIMARY KEY, service_sid TEXT NOT NULL, content_type TEXT NOT NULL, filename TEXT,
    size INTEGER NOT NULL, author TEXT NOT NULL, message_sid TEXT, channel_sid TEXT, data BLOB NOT NULL,
    date_created TEXT NOT NULL, date_updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY, identity TEXT NOT NULL, realm_user_id TEXT NOT NULL, roles TEXT NOT NULL,
    worker_sid TEXT NOT NULL, flex_user_sid TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (sid TEXT PRIMARY KEY, secret TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path_regex TEXT NOT NULL, status INTEGER NOT NULL,
    remaining INTEGER NOT NULL, retry_after INTEGER);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, url TEXT NOT NULL, params TEXT NOT NULL, status INTEGER,
    error TEXT, delivered_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS participants_by_conversation ON participants (conversation_sid, seq);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_sid, idx);
"""


class Store:
    """The file and the account it holds (SIDs and auth token made once, at random, when the file is new)."""

    def __init__(self, db_path: str):
        self.db_path = db_path
        self._create_schema()
        with self.tx() as conn:
            # INSERT OR IGNORE inside one write transaction: two processes creating the file at once agree.
            defaults = {
                "account_sid": new_sid("AC"),
                "auth_token": secrets.token_hex(16),
                "chat_service_sid": new_sid("IS"),
                "messaging_service_sid": new_sid("MG"),
                "default_chat_role_sid": new_sid("RL"),
                "flex_instance_sid": new_sid("GO"),
            }
            conn.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", defaults.items())
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        self.account_sid: str = meta["account_sid"]
        self.auth_token: str = meta["auth_token"]
        self.chat_service_sid: str = meta["chat_service_sid"]
        self.messaging_service_sid: str = meta["messaging_service_sid"]
        self.default_chat_role_sid: str = meta["default_chat_role_sid"]
        self.flex_instance_sid: str = meta["flex_instance_sid"]

    def _create_schema(self) -> None:
        for attempt in range(50):
            try:
                with self.connect() as conn:
                    # WAL lets readers and one writer from several processes overlap; the mode sticks to the file.
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.executescript(SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                # Switching a brand-new file to WAL while another process creates it does not wait on the busy
                # timeout: SQLite answers "database is locked" at once. Try again shortly.
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.05 + random.random() * 0.05)

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        # Autocommit mode; writes take BEGIN IMMEDIATE themselves (see tx) so the busy timeout applies up front.
        conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def meta(self, key: str) -> str | None:
        with self.connect() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else None
