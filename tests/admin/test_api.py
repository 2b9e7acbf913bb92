"""Admin API: auth (none, agent, supervisor, admin token), CSRF for the page session, settings, audit, CSV."""

import csv
import io
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.helpers.agent_api import MESSAGE_KEYS, assert_timestamps_are_iso_with_a_zone, post_audio
from tests.helpers.audio_samples import make_audio
from tests.helpers.conversations import conversation_with_agent
from webhook_app.extensions import db
from webhook_app.web.flex_auth import REFUSED_TOKENS

ADMIN = "test-admin-token"


@pytest.fixture
def admin_app(app):
    app.config["ADMIN_TOKEN"] = ADMIN
    return app


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_auth_matrix(client, admin_app, sandbox):
    url = "/api/v1/admin/settings"
    assert client.get(url).status_code == 401
    assert client.get(url, headers=bearer("wrong")).status_code == 401
    agent = sandbox.issue_token("agent@example.com", roles=["agent"])
    response = client.get(url, headers=bearer(agent))
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "not_an_admin"
    supervisor = sandbox.issue_token("sup@example.com", roles=["supervisor"])
    assert client.get(url, headers=bearer(supervisor)).status_code == 200
    flex_admin = sandbox.issue_token("boss@example.com", roles=["admin"])
    assert client.get(url, headers=bearer(flex_admin)).status_code == 200
    assert client.get(url, headers=bearer(ADMIN)).status_code == 200


def test_settings_get_and_put(client, admin_app, sandbox):
    body = client.get("/api/v1/admin/settings", headers=bearer(ADMIN)).get_json()
    assert [s["channel"] for s in body["settings"]] == ["whatsapp", "sms", "webchat", "messenger", "other"]
    supervisor = sandbox.issue_token("sup@example.com", roles=["supervisor"])
    response = client.put(
        "/api/v1/admin/settings/sms", json={"max_duration_s": 300, "bitrate_kbps": 48}, headers=bearer(supervisor)
    )
    assert response.status_code == 200
    updated = response.get_json()
    assert (
        updated["max_duration_s"] == 300
        and updated["bitrate_kbps"] == 48
        and updated["updated_by"] == "sup@example.com"
    )
    assert set(updated) == {
        "channel",
        "sending_enabled",
        "max_bytes",
        "max_duration_s",
        "bitrate_kbps",
        "normalize_inbound",
        "loudness_normalize",
        "transcribe",
        "transcribe_language",
        "updated_at",
        "updated_by",
    }
    assert client.get("/api/v1/admin/settings/sms", headers=bearer(ADMIN)).get_json() == updated
    changes = client.get("/api/v1/admin/settings-changes", headers=bearer(ADMIN)).get_json()["changes"]
    assert {(c["key"], c["old_value"], c["new_value"]) for c in changes} == {
        ("max_duration_s", 900, 300),
        ("bitrate_kbps", 64, 48),
    }


def test_put_many_is_all_or_nothing(client, admin_app):
    response = client.put(
        "/api/v1/admin/settings",
        headers=bearer(ADMIN),
        json={"whatsapp": {"bitrate_kbps": 96}, "sms": {"max_bytes": 10**9}},
    )
    assert response.status_code == 400
    whatsapp = client.get("/api/v1/admin/settings/whatsapp", headers=bearer(ADMIN)).get_json()
    assert whatsapp["bitrate_kbps"] == 64


def test_invalid_put_is_400_and_unknown_channel_404(client, admin_app):
    bad = client.put("/api/v1/admin/settings/sms", json={"max_bytes": 3_000_000}, headers=bearer(ADMIN))
    assert bad.status_code == 400 and "2,097,152" in bad.get_json()["error"]["message"]
    assert client.put("/api/v1/admin/settings/sms", data="nope", headers=bearer(ADMIN)).status_code == 400
    assert client.get("/api/v1/admin/settings/fax", headers=bearer(ADMIN)).status_code == 404


def test_put_of_no_keys_changes_nothing_and_answers_the_whole_object(client, admin_app):
    before = client.get("/api/v1/admin/settings/sms", headers=bearer(ADMIN)).get_json()
    response = client.put("/api/v1/admin/settings/sms", json={}, headers=bearer(ADMIN))
    assert response.status_code == 200 and response.get_json() == before
    assert client.get("/api/v1/admin/settings-changes", headers=bearer(ADMIN)).get_json()["changes"] == []


def test_page_login_session_and_csrf(client, admin_app, sandbox):
    page = client.get("/admin")
    assert b'name="csrf_token"' in page.data
    csrf = page.data.split(b'name="csrf_token" value="')[1].split(b'"')[0].decode()
    assert client.post("/admin/login", data={"token": ADMIN, "csrf_token": "forged"}).status_code == 403
    agent = sandbox.issue_token("agent@example.com", roles=["agent"])
    refused = client.post("/admin/login", data={"token": agent, "csrf_token": csrf})
    assert refused.status_code == 403 and b"admin or supervisor is required" in refused.data
    assert client.post("/admin/login", data={"token": ADMIN, "csrf_token": csrf}).status_code == 302
    home = client.get("/admin")
    assert b"Signed in as admin-token" in home.data
    csrf = home.data.split(b'name="csrf-token" content="')[1].split(b'"')[0].decode()
    # The session cookie alone reads, but cannot change anything without the page's CSRF token.
    assert client.get("/api/v1/admin/settings").status_code == 200
    assert client.put("/api/v1/admin/settings/sms", json={"bitrate_kbps": 32}).status_code == 403
    ok = client.put("/api/v1/admin/settings/sms", json={"bitrate_kbps": 32}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and ok.get_json()["updated_by"] == "admin-token"
    client.post("/admin/logout", data={"csrf_token": csrf})
    assert client.get("/api/v1/admin/settings").status_code == 401


def login_page(client, token):
    page = client.get("/admin")
    csrf = page.data.split(b'name="csrf_token" value="')[1].split(b'"')[0].decode()
    return client.post("/admin/login", data={"token": token, "csrf_token": csrf})


def test_a_page_session_ends_with_the_flex_token_it_was_opened_with(client, admin_app, sandbox, monkeypatch):
    import time as clock

    supervisor = sandbox.issue_token("sup@example.com", roles=["supervisor"], ttl_s=60)
    assert login_page(client, supervisor).status_code == 302
    assert client.get("/api/v1/admin/settings").status_code == 200
    later = clock.time() + 61
    monkeypatch.setattr("webhook_app.admin.auth.time.time", lambda: later)
    assert client.get("/api/v1/admin/settings").status_code == 401
    assert b'name="csrf_token"' in client.get("/admin").data  # the login form again


def test_rotating_admin_token_ends_the_page_sessions_it_opened(client, admin_app):
    assert login_page(client, ADMIN).status_code == 302
    assert client.get("/api/v1/admin/settings").status_code == 200
    admin_app.config["ADMIN_TOKEN"] = "a-new-admin-token"
    assert client.get("/api/v1/admin/settings").status_code == 401


def test_a_csrf_value_that_is_not_ascii_is_refused_not_a_crash(client, admin_app):
    client.get("/admin")
    assert client.post("/admin/login", data={"token": ADMIN, "csrf_token": "é"}).status_code == 403


def test_admin_token_guesses_are_limited_and_past_the_limit_the_right_one_is_refused_too(client, admin_app):
    """Else one 200 among the 429s would still tell a guesser which guess was ADMIN_TOKEN."""
    url = "/api/v1/admin/settings"
    for number in range(REFUSED_TOKENS.limit):
        assert client.get(url, headers=bearer(f"guess-{number}")).status_code == 401
    response = client.get(url, headers=bearer(ADMIN))
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0  # 200 before
    assert login_page(client, ADMIN).status_code == 429  # the page's sign-in too
    elsewhere = client.get(url, headers=bearer(ADMIN), environ_base={"REMOTE_ADDR": "198.51.100.1"})
    assert elsewhere.status_code == 200  # other clients are not locked out


def test_audit_filters_pagination_and_csv(client, admin_app, sandbox, agent_token, tmp_path):
    whatsapp = conversation_with_agent(sandbox, "WA", "whatsapp")
    sms = conversation_with_agent(sandbox, "SMS", "sms")
    recording = make_audio(tmp_path / "rec.webm", "webm", seconds=1.0)
    junk = tmp_path / "junk.webm"
    junk.write_text("not audio")
    for conversation in (whatsapp, whatsapp, sms):
        assert post_audio(client, agent_token, conversation, recording).status_code == 201
    assert post_audio(client, agent_token, sms, junk).status_code == 400

    def audit(**params):
        response = client.get("/api/v1/admin/audit", query_string=params, headers=bearer(ADMIN))
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    everything = audit()
    assert everything["total"] == 4
    ids = [row["audit_id"] for row in everything["audio_messages"]]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert audit(channel="whatsapp")["total"] == 2
    (failed,) = audit(status="failed")["audio_messages"]
    assert failed["channel"] == "sms" and failed["error_code"] == "not_audio" and "error" in failed
    assert audit(conversation_sid=sms, status="ready")["total"] == 1
    assert audit(since="1h")["total"] == 4 and audit(until="2000-01-01")["total"] == 0
    # One instant, written with another offset, is the same window (SQLite compares stored UTC text).
    now = datetime.now(UTC)
    assert audit(since=(now - timedelta(minutes=30)).astimezone(timezone(timedelta(hours=5))).isoformat())["total"] == 4
    assert audit(since=(now + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=-5))).isoformat())["total"] == 0
    page2 = audit(per_page=3, page=2)
    assert len(page2["audio_messages"]) == 1 and page2["total"] == 4
    detail = client.get(f"/api/v1/admin/audit/{failed['audit_id']}", headers=bearer(ADMIN)).get_json()
    assert detail["author"] == "agent_40example_2Ecom" and detail["processing_ms"] is not None

    exported = client.get(
        "/api/v1/admin/audit", query_string={"format": "csv", "channel": "sms"}, headers=bearer(ADMIN)
    )
    assert exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [r["status"] for r in rows] == ["failed", "ready"] and {r["channel"] for r in rows} == {"sms"}


# What the audit API adds to the contract's audio-message shape, to explain a row (webhook_app/audit.py).
AUDIT_EXTRAS = {
    "author",
    "source",
    "filename",
    "error_code",
    "sha256",
    "truncated",
    "attempts",
    "started_at",
    "finished_at",
    "processing_ms",
    "transcode_ms",
}


def test_audit_rows_have_the_contract_shape(client, admin_app, sandbox, agent_token, tmp_path):
    conversation = conversation_with_agent(sandbox, "WA", "whatsapp")
    recording = make_audio(tmp_path / "rec.webm", "webm", seconds=1.0)
    assert post_audio(client, agent_token, conversation, recording).status_code == 201
    junk = tmp_path / "junk.webm"
    junk.write_text("not audio")
    assert post_audio(client, agent_token, conversation, junk).status_code == 400

    rows = client.get("/api/v1/admin/audit", headers=bearer(ADMIN)).get_json()["audio_messages"]
    by_status = {row["status"]: row for row in rows}
    assert set(by_status["ready"]) == MESSAGE_KEYS | AUDIT_EXTRAS | {"playback_url"}
    assert set(by_status["failed"]) == MESSAGE_KEYS | AUDIT_EXTRAS | {"error"}
    for row in rows:
        assert_timestamps_are_iso_with_a_zone(row)


def test_audit_rejects_bad_filters(client, admin_app):
    for params in (
        {"status": "done"},
        {"since": "yesterday"},
        {"direction": "sideways"},
        {"page": "x"},
        {"since": "100000000d"},
        {"since": "9999999999d"},
        {"since": "9999-12-31T23:59:59-01:00"},
        {"page": "100000000000000000000"},
        {"conversation_sid": "\x00"},
        {"conversation_sid": "CH1"},
    ):
        response = client.get("/api/v1/admin/audit", query_string=params, headers=bearer(ADMIN))
        assert response.status_code == 400, params
    csv_response = client.get("/api/v1/admin/audit?format=csv&since=bogus", headers=bearer(ADMIN))
    assert csv_response.status_code == 400


def test_csv_cells_a_spreadsheet_would_run_are_quoted(client, admin_app):
    from webhook_app.models import AudioMessage

    with admin_app.app_context():
        db.session.add(
            AudioMessage(
                direction="inbound",
                channel="webchat",
                status="failed",
                truncated=False,
                attempts=1,
                conversation_sid="CH" + "a" * 32,
                message_sid="IM" + "b" * 32,
                media_sid="ME" + "c" * 32,
                author='=HYPERLINK("http://x","y")',
                error="-1+1",
                error_code="not_audio",
            )
        )
        db.session.commit()
    exported = client.get("/api/v1/admin/audit?format=csv", headers=bearer(ADMIN))
    (row,) = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert row["author"] == '\'=HYPERLINK("http://x","y")' and row["error"] == "'-1+1"
    assert row["channel"] == "webchat"  # the others as they are


def test_cli_audit_export(runner, client, sandbox, agent_token, tmp_path):
    conversation = conversation_with_agent(sandbox, "WA", "whatsapp")
    recording = make_audio(tmp_path / "rec.webm", "webm", seconds=1.0)
    post_audio(client, agent_token, conversation, recording)
    out = tmp_path / "audit.csv"
    result = runner.invoke(args=["audit", "export", "--since", "1d", "--output", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 and rows[0]["direction"] == "outbound"
    assert runner.invoke(args=["audit", "export", "--since", "whenever"]).exit_code != 0
