"""A channel's settings as every process reads them: plain data from a cache refreshed within seconds.

Every process (web threads, RQ workers) keeps the five channel rows in memory and compares one integer (the
settings version) with the database at most every SETTINGS_CHECK_INTERVAL_S; a change bumps the version, so it
takes effect everywhere without a restart and without a heavy query per request.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy import select

from ..domain_errors import DomainError
from ..extensions import db
from ..models import CHANNELS, ChannelSettings, SettingsVersion, iso_time


@dataclass(frozen=True)
class Settings:
    """A channel's settings as plain data, safe to share between threads and requests."""

    channel: str
    sending_enabled: bool
    max_bytes: int
    max_duration_s: int
    bitrate_kbps: int
    normalize_inbound: bool
    loudness_normalize: bool
    transcribe: bool
    transcribe_language: str
    updated_at: datetime | None
    updated_by: str | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["updated_at"] = iso_time(self.updated_at)
        return out

    @classmethod
    def from_row(cls, row: ChannelSettings) -> Settings:
        return cls(
            row.channel,
            row.sending_enabled,
            row.max_bytes,
            row.max_duration_s,
            row.bitrate_kbps,
            row.normalize_inbound,
            row.loudness_normalize,
            row.transcribe,
            row.transcribe_language,
            row.updated_at,
            row.updated_by,
        )


class SettingsCache:
    def __init__(self, check_interval_s: float) -> None:
        self.check_interval_s = check_interval_s
        self._lock = threading.Lock()
        self._version: int | None = None
        self._checked_at = 0.0
        self._settings: dict[str, Settings] = {}

    def get(self, channel: str) -> Settings:
        self._refresh_if_due()
        settings = self._settings.get(channel) or self._settings.get("other")
        if settings is None:
            raise DomainError("settings_missing", "channel settings are missing: run the migrations")
        return settings

    def all(self) -> list[Settings]:
        self._refresh_if_due()
        return [self._settings[c] for c in CHANNELS if c in self._settings]

    def invalidate(self) -> None:
        with self._lock:
            self._checked_at = 0.0
            self._version = None

    def _refresh_if_due(self) -> None:
        now = time.monotonic()
        if self._version is not None and now - self._checked_at < self.check_interval_s:
            return
        with self._lock:
            if self._version is not None and now - self._checked_at < self.check_interval_s:
                return
            version = db.session.scalar(select(SettingsVersion.version).where(SettingsVersion.id == 1))
            if version != self._version or not self._settings:
                rows = db.session.scalars(select(ChannelSettings))
                self._settings = {row.channel: Settings.from_row(row) for row in rows}
                self._version = version
            self._checked_at = now


def settings_for(channel: str) -> Settings:
    return _cache().get(channel)


def all_settings() -> list[Settings]:
    return _cache().all()


def _cache() -> SettingsCache:
    cache: SettingsCache = current_app.extensions["settings_cache"]
    return cache


def init_app(app: Flask) -> None:
    app.config.setdefault("SETTINGS_CHECK_INTERVAL_S", 2.0)
    app.extensions["settings_cache"] = SettingsCache(app.config["SETTINGS_CHECK_INTERVAL_S"])
