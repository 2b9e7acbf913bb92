"""Test controls: what a test or a demo sets on the fake account that Twilio's Console (or bad luck) would set on a
real one: injected failures and stalls, the service's webhook URLs, API keys."""

from __future__ import annotations

import re
import secrets
import time

from .store import Store
from .wire import TwilioError, http_error, new_sid


def fail_next(store: Store, path_regex: str, status: int, count: int = 1, retry_after: int | None = None) -> None:
    re.compile(path_regex)  # fail here, not inside a request
    with store.tx() as conn:
        conn.execute(
            "INSERT INTO faults (path_regex, status, remaining, retry_after) VALUES (?, ?, ?, ?)",
            (path_regex, status, count, retry_after),
        )


def stall_next(store: Store, path_regex: str, seconds: float, count: int = 1) -> None:
    # A stall is stored as a fault with status 0, its seconds in retry_after.
    re.compile(path_regex)
    with store.tx() as conn:
        conn.execute(
            "INSERT INTO faults (path_regex, status, remaining, retry_after) VALUES (?, 0, ?, ?)",
            (path_regex, count, seconds),
        )


def pending_faults(store: Store) -> int:
    with store.connect() as conn:
        pending: int = conn.execute("SELECT COALESCE(SUM(remaining), 0) FROM faults").fetchone()[0]
    return pending


def take_fault(store: Store, path: str) -> TwilioError | None:
    """The error a request to `path` answers instead, if an injected fault matches it (a stall sleeps here)."""
    with store.connect() as conn:
        if conn.execute("SELECT 1 FROM faults LIMIT 1").fetchone() is None:
            return None  # the common case needs no write lock
    with store.tx() as conn:
        for fault in conn.execute("SELECT * FROM faults WHERE remaining > 0 ORDER BY id").fetchall():
            if re.search(fault["path_regex"], path):
                conn.execute("UPDATE faults SET remaining = remaining - 1 WHERE id = ?", (fault["id"],))
                conn.execute("DELETE FROM faults WHERE remaining <= 0")
                status = fault["status"]
                if status == 0:
                    stall_s = float(fault["retry_after"] or 0)
                    break
                headers = {"Retry-After": str(fault["retry_after"])} if fault["retry_after"] is not None else {}
                return http_error(status, headers=headers)
        else:
            return None
    time.sleep(stall_s)  # outside the transaction: other processes keep using the sandbox
    return None


def set_webhook(store: Store, post_url: str | None, pre_url: str | None = None, post_retry_count: int = 0) -> None:
    with store.tx() as conn:
        for key, value in (
            ("post_webhook_url", post_url),
            ("pre_webhook_url", pre_url),
            ("post_webhook_retry_count", str(post_retry_count) if post_retry_count else None),
        ):
            conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            if value:
                conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))


def create_api_key(store: Store) -> tuple[str, str]:
    sid, secret = new_sid("SK"), secrets.token_urlsafe(24)
    with store.tx() as conn:
        conn.execute("INSERT INTO api_keys (sid, secret) VALUES (?, ?)", (sid, secret))
    return sid, secret
