"""What a new user meets first: the sandbox's way into /admin, and errors that say what the limit is."""

from __future__ import annotations

import io
import re

import pytest

from tests.helpers.audio_samples import make_audio
from tests.helpers.conversations import conversation_with_agent
from tests.helpers.service import deployed_service, run_jobs
from webhook_app.humanize import format_bytes
from webhook_app.sandbox import Sandbox

ADMIN = "first-run-admin-token"
SANDBOX_BUTTON = b"Sign in to the sandbox"


def csrf_of(page: bytes) -> str:
    return re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()


# -- sizes as people read them ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, text",
    [
        (42_336_078, "40.4 MB"),
        (33_554_432, "32 MB"),
        (104_857_600, "100 MB"),
        (10_000, "9.8 KB"),
        (1_024, "1 KB"),
        (900, "900 bytes"),
    ],
)
def test_sizes_read_in_the_admin_pages_units(size, text):
    assert format_bytes(size) == text


def test_an_audit_error_over_the_download_cap_names_both_sizes_in_megabytes(deliver, client, app, tmp_path):
    app.config["MEDIA_DOWNLOAD_MAX_BYTES"] = 1_048_576
    app.config["ADMIN_TOKEN"] = ADMIN
    source = make_audio(tmp_path / "long.wav", "wav", seconds=40.0)  # 16 kHz 16-bit mono: 1.28 MB
    params, response = deliver(source, "audio/wav")
    assert response.status_code == 200
    run_jobs(app)
    (row,) = client.get("/api/v1/admin/audit", headers={"Authorization": f"Bearer {ADMIN}"}).get_json()[
        "audio_messages"
    ]
    assert row["status"] == "failed"
    assert "media is 1.2 MB, over the 1 MB cap" in row["error"], row["error"]
    assert "bytes" not in row["error"]


# -- one error shape, naming the limit ------------------------------------------------------------------------


def test_an_upload_over_UPLOAD_MAX_BYTES_is_our_json_error_naming_the_limit(client, app, agent_token, sandbox):
    app.config["UPLOAD_MAX_BYTES"] = 2 * 1_048_576
    conversation = conversation_with_agent(sandbox, "Customer", "whatsapp")
    response = client.post(
        f"/api/v1/conversations/{conversation}/audio",
        headers={"Authorization": f"Bearer {agent_token}"},
        content_type="multipart/form-data",
        data={"audio": (io.BytesIO(b"\0" * (3 * 1_048_576)), "rec.webm", "audio/webm")},
    )
    assert response.status_code == 413
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"] == "the request body is over the 2 MB limit of this endpoint"


# -- the sandbox's way into /admin ------------------------------------------------------------------------------


def test_the_sandbox_sign_in_opens_an_admin_session_through_a_csrf_checked_post(client):
    page = client.get("/admin")
    assert SANDBOX_BUTTON in page.data
    forged = client.post("/admin/sandbox-login", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    assert client.get("/api/v1/admin/settings").status_code == 401  # still signed out

    signed_in = client.post("/admin/sandbox-login", data={"csrf_token": csrf_of(page.data)})
    assert signed_in.status_code == 302
    assert b"Signed in as admin@example.com" in client.get("/admin").data
    assert client.get("/api/v1/admin/settings").status_code == 200


def test_against_real_twilio_there_is_no_sandbox_sign_in(app, database_url, tmp_path):
    with deployed_service(Sandbox(str(tmp_path / "remote-twilio.db")), database_url) as service:
        client = service.test_client()
        page = client.get("/admin")
        assert page.status_code == 200 and b'name="token"' in page.data
        assert SANDBOX_BUTTON not in page.data
        answer = client.post("/admin/sandbox-login", data={"csrf_token": csrf_of(page.data)})
        assert answer.status_code == 404
        assert client.get("/api/v1/admin/settings").status_code == 401
