"""Settings that would open a deploy up: Twilio credentials without a public base URL, signatures for another
host, a sandbox listening beyond this machine, an open /metrics."""

import pytest

from tests.helpers.processes import GUNICORN_CONF
from tests.helpers.service import deployed_service
from webhook_app.config import Config
from webhook_app.sandbox import Sandbox


def test_twilio_credentials_need_the_public_base_url(monkeypatch):
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "token")
    monkeypatch.setenv("SECRET_KEY", "s3cret")
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    with pytest.raises(RuntimeError, match="PUBLIC_BASE_URL must be set"):
        Config()
    monkeypatch.setenv("PUBLIC_BASE_URL", "audio.example.com")
    with pytest.raises(RuntimeError, match="not an http"):
        Config()
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://audio.example.com/")
    assert Config().PUBLIC_BASE_URL == "https://audio.example.com"


def test_a_signature_made_for_another_host_is_refused_whatever_host_the_request_names(app, database_url, tmp_path):
    remote = Sandbox(str(tmp_path / "remote-twilio.db"))
    with deployed_service(remote, database_url, PUBLIC_BASE_URL="https://audio.example.com") as service:
        params = {"EventType": "onConversationUpdated", "AccountSid": remote.account_sid}
        forged_url = "https://attacker.example/twilio/conversations/post-event"
        response = service.test_client().post(
            "/twilio/conversations/post-event",
            data=params,
            base_url="https://attacker.example",
            headers={"X-Twilio-Signature": remote.sign(forged_url, params), "X-Forwarded-Host": "attacker.example"},
        )
        assert response.status_code == 403
        ours = "https://audio.example.com/twilio/conversations/post-event"
        response = service.test_client().post(
            "/twilio/conversations/post-event", data=params, headers={"X-Twilio-Signature": remote.sign(ours, params)}
        )
        assert response.status_code == 200


def test_the_sandbox_listens_on_this_machine_only_unless_told(monkeypatch):
    import runpy

    monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
    monkeypatch.delenv("HOST", raising=False)
    monkeypatch.setenv("PORT", "5123")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # the file sets it: undone after the test
    assert runpy.run_path(GUNICORN_CONF)["bind"] == "127.0.0.1:5123"
    monkeypatch.setenv("HOST", "0.0.0.0")
    assert runpy.run_path(GUNICORN_CONF)["bind"] == "0.0.0.0:5123"
    monkeypatch.delenv("HOST")
    # With credentials (and what start-up then requires: the file checks every setting before gunicorn binds).
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "t")
    monkeypatch.setenv("SECRET_KEY", "k")
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://audio.example.com")
    assert runpy.run_path(GUNICORN_CONF)["bind"] == "0.0.0.0:5123"


def test_an_open_metrics_endpoint_is_announced_at_start_up_with_twilio_credentials(database_url, caplog):
    from webhook_app import create_app

    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SECRET_KEY": "k",
        "TWILIO_SANDBOX": False,
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": "t",
        "PUBLIC_BASE_URL": "https://audio.example.com",
    }
    with caplog.at_level("WARNING", logger="webhook_app.observability"):
        create_app(config)
    assert any("METRICS_TOKEN is not set" in record.getMessage() for record in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="webhook_app.observability"):
        create_app({**config, "METRICS_TOKEN": "m"})
    assert not any("METRICS_TOKEN" in record.getMessage() for record in caplog.records)
