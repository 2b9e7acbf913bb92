"""Per-channel settings: validation, audited changes, cache refresh across processes, CLI."""

import json

import pytest

from webhook_app import create_app
from webhook_app.domain_errors import DomainError
from webhook_app.extensions import db
from webhook_app.models import SettingsChange
from webhook_app.settings import cache as settings_module
from webhook_app.settings.cache import settings_for
from webhook_app.settings.rules import update_settings, validate_changes
from webhook_app.web.errors import status_of


@pytest.mark.parametrize(
    "channel,changes,message",
    [
        ("sms", {"max_bytes": 2_097_153}, "between 1 and 2,097,152"),
        ("whatsapp", {"max_bytes": 0}, "between 1 and 16,777,216"),
        ("whatsapp", {"bitrate_kbps": 80}, "one of 32, 48, 64, 96, 128"),
        ("whatsapp", {"max_duration_s": -5}, "max_duration_s must be between 1"),
        ("whatsapp", {"max_duration_s": "60"}, "whole number"),
        ("whatsapp", {"sending_enabled": "no"}, "true or false"),
        ("whatsapp", {"channel": "sms"}, "not writable: channel"),
        ("whatsapp", [], "JSON object"),
    ],
)
def test_invalid_settings_are_refused_with_a_reason(app, channel, changes, message):
    with app.app_context(), pytest.raises(DomainError) as caught:
        validate_changes(channel, changes)
    assert status_of(caught.value) == 400 and message in caught.value.message


def test_unknown_channel_is_404(app):
    with app.app_context(), pytest.raises(DomainError) as caught:
        validate_changes("fax", {"sending_enabled": False})
    assert status_of(caught.value) == 404


def test_changes_are_audited_with_old_and_new_values(app):
    with app.app_context():
        update_settings("sms", {"bitrate_kbps": 32, "sending_enabled": True}, "alice")  # sending unchanged
        db.session.commit()
        (change,) = db.session.scalars(db.select(SettingsChange)).all()
        assert change.to_dict() | {"id": 0, "changed_at": None} == {
            "id": 0,
            "channel": "sms",
            "key": "bitrate_kbps",
            "old_value": 64,
            "new_value": 32,
            "changed_by": "alice",
            "changed_at": None,
        }
        assert settings_for("sms").bitrate_kbps == 32 and settings_for("sms").updated_by == "alice"


class FakeClock:
    """Stands in for time.monotonic in webhook_app.settings.cache: the test decides when the check interval is over."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def monotonic(self) -> float:
        return self.now


def test_a_change_reaches_another_process_within_the_check_interval(app, database_url, tmp_path, monkeypatch):
    """Two app instances sharing one database, as two dynos do: no restart, no per-request reload."""
    clock = FakeClock()
    # Only the settings module's clock: SettingsCache reads time.monotonic() there and nowhere else.
    monkeypatch.setattr(settings_module, "time", clock)
    other = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database_url,
            "SANDBOX_DB": str(tmp_path / "sb.db"),
            "SETTINGS_CHECK_INTERVAL_S": 0.5,
            "REDIS_URL": None,
        }
    )
    try:
        with other.app_context():
            assert settings_for("whatsapp").sending_enabled is True  # read from the database and cached at t=0
        with app.app_context():
            update_settings("whatsapp", {"sending_enabled": False}, "admin")
            db.session.commit()
        clock.now += 0.25
        with other.app_context():
            # Inside the interval the cache answers, however long the commit above took in real time.
            assert settings_for("whatsapp").sending_enabled is True
        clock.now += 0.5  # 0.75 s after the last check: past the interval
        with other.app_context():
            assert settings_for("whatsapp").sending_enabled is False
    finally:
        with other.app_context():
            db.engine.dispose()


def test_cli_show_and_set(runner, app):
    shown = json.loads(runner.invoke(args=["settings", "show", "sms"]).output)
    assert shown[0]["max_bytes"] == 2_097_152
    result = runner.invoke(args=["settings", "set", "sms", "max_duration_s", "120", "--by", "ops"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["max_duration_s"] == 120
    bad = runner.invoke(args=["settings", "set", "sms", "max_bytes", "99999999"])
    assert bad.exit_code != 0 and "2,097,152" in bad.output
    assert runner.invoke(args=["settings", "set", "sms", "sending_enabled", "maybe"]).exit_code != 0
    unknown = runner.invoke(args=["settings", "show", "fax"])
    assert unknown.exit_code != 0 and "whatsapp" in unknown.output  # not the `other` channel's settings
