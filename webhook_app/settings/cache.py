"""Per-channel audio policy: validation, audited changes, and a cache every process refreshes within seconds.

Every process (web threads, RQ workers) keeps the five channel rows in memory and compares one integer (the
settings version) with the database at most every SETTINGS_CHECK_INTERVAL_S; a change bumps the version, so it
takes effect everywhere without a restart and without a heavy query per request.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime

from flask import Flask, current_app
from sqlalchemy import select, update

from .errors import ApiError
from .extensions import db
from .models import CHANNELS, ChannelSettings, SettingsChange, SettingsVersion, _iso, utcnow

BITRATES_KBPS = (32, 48, 64, 96, 128)
# Twilio's per-file limits (FACTS.md): an admin may lower a cap, never raise it past what the channel delivers.
HARD_MAX_BYTES = {"whatsapp": 16_777_216, "sms": 2_097_152, "webchat": 16_777_216, "messenger": 16_777_216,
                  "other": 16_777_216}
HARD_MAX_DURATION_S = 4 * 3600
BOOLEAN_KEYS = ("sending_enabled", "normalize_inbound", "loudness_normalize")
WRITABLE_KEYS = BOOLEAN_KEYS + ("max_bytes", "max_duration_s", "bitrate_kbps")


@dataclass(frozen=True)
class Policy:
    """A channel's settings as plain data, safe to share between threads and requests."""

    channel: str
    sending_enabled: bool
    max_bytes: int
    max_duration_s: int
    bitrate_kbps: int
    normalize_inbound: bool
    loudness_normalize: bool
    updated_at: datetime | None
    updated_by: str | None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["updated_at"] = _iso(self.updated_at)
        return out

    @classmethod
    def from_row(cls, row: ChannelSettings) -> "Policy":
        return cls(row.channel, row.sending_enabled, row.max_bytes, row.max_duration_s, row.bitrate_kbps,
                   row.normalize_inbound, row.loudness_normalize, row.updated_at, row.updated_by)


class SettingsCache:
    def __init__(self, check_interval_s: float):
        self.check_interval_s = check_interval_s
        self._lock = threading.Lock()
        self._version: int | None = None
        self._checked_at = 0.0
        self._policies: dict[str, Policy] = {}

    def get(self, channel: str) -> Policy:
        self._refresh_if_due()
        policy = self._policies.get(channel) or self._policies.get("other")
        if policy is None:
            raise ApiError(500, "settings_missing", "channel settings are missing: run the migrations")
        return policy

    def all(self) -> list[Policy]:
        self._refresh_if_due()
        return [self._policies[c] for c in CHANNELS if c in self._policies]

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
            if version != self._version or not self._policies:
                rows = db.session.scalars(select(ChannelSettings))
                self._policies = {row.channel: Policy.from_row(row) for row in rows}
                self._version = version
            self._checked_at = now


def policy_for(channel: str) -> Policy:
    return current_app.extensions["settings_cache"].get(channel)


def all_policies() -> list[Policy]:
    return current_app.extensions["settings_cache"].all()


def validate_changes(channel: str, changes) -> dict:
    if channel not in CHANNELS:
        raise ApiError(404, "unknown_channel", f"no channel {channel!r}; channels are {', '.join(CHANNELS)}")
    if not isinstance(changes, dict):
        raise ApiError(400, "bad_settings", f"send a JSON object with any of: {', '.join(WRITABLE_KEYS)}")
    unknown = sorted(set(changes) - set(WRITABLE_KEYS))
    if unknown:
        raise ApiError(400, "bad_settings", f"not writable: {', '.join(unknown)}; writable keys are "
                                            f"{', '.join(WRITABLE_KEYS)}")
    clean = {}
    for key, value in changes.items():
        if key in BOOLEAN_KEYS:
            if not isinstance(value, bool):
                raise ApiError(400, "bad_settings", f"{key} must be true or false")
        else:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ApiError(400, "bad_settings", f"{key} must be a whole number")
            if key == "bitrate_kbps" and value not in BITRATES_KBPS:
                raise ApiError(400, "bad_settings", f"bitrate_kbps must be one of {', '.join(map(str, BITRATES_KBPS))}")
            if key == "max_bytes" and not 1 <= value <= HARD_MAX_BYTES[channel]:
                raise ApiError(400, "bad_settings", f"max_bytes for {channel} must be between 1 and "
                                                    f"{HARD_MAX_BYTES[channel]:,} (Twilio's limit for the channel)")
            if key == "max_duration_s" and not 1 <= value <= HARD_MAX_DURATION_S:
                raise ApiError(400, "bad_settings", f"max_duration_s must be between 1 and {HARD_MAX_DURATION_S}")
        clean[key] = value
    return clean


def update_settings(channel: str, changes: dict, actor: str) -> ChannelSettings:
    """Apply validated changes, record each changed key, bump the version. The caller commits."""
    clean = validate_changes(channel, changes)
    row = db.session.get(ChannelSettings, channel)
    if row is None:
        raise ApiError(500, "settings_missing", f"no settings row for {channel}: run the migrations")
    changed = False
    for key, value in clean.items():
        old = getattr(row, key)
        if old == value:
            continue
        db.session.add(SettingsChange(channel=channel, key=key, old_value=json.dumps(old),
                                      new_value=json.dumps(value), changed_by=actor[:256], changed_at=utcnow()))
        setattr(row, key, value)
        changed = True
    if changed:
        row.updated_at = utcnow()
        row.updated_by = actor[:256]
        db.session.execute(update(SettingsVersion).where(SettingsVersion.id == 1)
                           .values(version=SettingsVersion.version + 1))
    return row


def init_app(app: Flask) -> None:
    app.config.setdefault("SETTINGS_CHECK_INTERVAL_S", 2.0)
    app.extensions["settings_cache"] = SettingsCache(app.config["SETTINGS_CHECK_INTERVAL_S"])
