"""What an admin may set on a channel, and how a change is recorded: validation, audited changes, the version
every process's cache compares (settings/cache.py).

Twilio's caps are defined here once and the bitrates once, beside the encoder that takes them (audio/transcode.py);
the migration that seeded the table keeps a frozen copy of the caps, as a migration must (it describes its own
day, not today's code).
"""

from __future__ import annotations

import json

from sqlalchemy import update

from ..audio.transcode import BITRATES_KBPS
from ..domain_errors import DomainError
from ..extensions import db
from ..models import CHANNELS, ChannelSettings, SettingsChange, SettingsVersion, utcnow
from ..transcripts.languages import LANGUAGE_CHOICES

__all__ = [
    "BITRATES_KBPS",
    "BOOLEAN_KEYS",
    "HARD_MAX_BYTES",
    "HARD_MAX_DURATION_S",
    "WRITABLE_KEYS",
    "update_settings",
    "validate_changes",
]
# Twilio's per-file limits (FACTS.md): an admin may lower a cap, never raise it past what the channel delivers.
HARD_MAX_BYTES = {
    "whatsapp": 16_777_216,
    "sms": 2_097_152,
    "webchat": 16_777_216,
    "messenger": 16_777_216,
    "other": 16_777_216,
}
HARD_MAX_DURATION_S = 4 * 3600
BOOLEAN_KEYS = ("sending_enabled", "normalize_inbound", "loudness_normalize", "transcribe")
TEXT_KEYS = ("transcribe_language",)
WRITABLE_KEYS = BOOLEAN_KEYS + ("max_bytes", "max_duration_s", "bitrate_kbps") + TEXT_KEYS


def validate_changes(channel: str, changes: object) -> dict[str, object]:
    if channel not in CHANNELS:
        raise DomainError("unknown_channel", f"no channel {channel!r}; channels are {', '.join(CHANNELS)}")
    if not isinstance(changes, dict):
        raise DomainError("bad_settings", f"send a JSON object with any of: {', '.join(WRITABLE_KEYS)}")
    unknown = sorted(set(changes) - set(WRITABLE_KEYS))
    if unknown:
        raise DomainError(
            "bad_settings", f"not writable: {', '.join(unknown)}; writable keys are {', '.join(WRITABLE_KEYS)}"
        )
    clean: dict[str, object] = {}
    for key, value in changes.items():
        if key in BOOLEAN_KEYS:
            if not isinstance(value, bool):
                raise DomainError("bad_settings", f"{key} must be true or false")
        elif key == "transcribe_language":
            value = value.strip().lower() if isinstance(value, str) else value
            if value not in LANGUAGE_CHOICES:
                raise DomainError(
                    "bad_settings",
                    'transcribe_language must be "auto" or a Whisper language code (en, es, fr, de, pt, …)',
                )
        else:
            if isinstance(value, bool) or not isinstance(value, int):
                raise DomainError("bad_settings", f"{key} must be a whole number")
            if key == "bitrate_kbps" and value not in BITRATES_KBPS:
                raise DomainError("bad_settings", f"bitrate_kbps must be one of {', '.join(map(str, BITRATES_KBPS))}")
            if key == "max_bytes" and not 1 <= value <= HARD_MAX_BYTES[channel]:
                raise DomainError(
                    "bad_settings",
                    f"max_bytes for {channel} must be between 1 and "
                    f"{HARD_MAX_BYTES[channel]:,} (Twilio's limit for the channel)",
                )
            if key == "max_duration_s" and not 1 <= value <= HARD_MAX_DURATION_S:
                raise DomainError("bad_settings", f"max_duration_s must be between 1 and {HARD_MAX_DURATION_S}")
        clean[key] = value
    return clean


def update_settings(channel: str, changes: object, actor: str) -> ChannelSettings:
    """Apply validated changes, record each changed key, bump the version. The caller commits."""
    clean = validate_changes(channel, changes)
    row = db.session.get(ChannelSettings, channel)
    if row is None:
        raise DomainError("settings_missing", f"no settings row for {channel}: run the migrations")
    changed = False
    for key, value in clean.items():
        old = getattr(row, key)
        if old == value:
            continue
        db.session.add(
            SettingsChange(
                channel=channel,
                key=key,
                old_value=json.dumps(old),
                new_value=json.dumps(value),
                changed_by=actor[:256],
                changed_at=utcnow(),
            )
        )
        setattr(row, key, value)
        changed = True
    if changed:
        row.updated_at = utcnow()
        row.updated_by = actor[:256]
        db.session.execute(
            update(SettingsVersion).where(SettingsVersion.id == 1).values(version=SettingsVersion.version + 1)
        )
    return row
