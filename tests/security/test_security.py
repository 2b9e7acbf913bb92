"""What an attacker with a phone number (or a web page of their own) tries: each test is one hole that was open.

Customer bytes served from the service's origin, memory taken by cheap requests, pages framed by other sites.
"""

import contextlib
import json
import os
import re
import socket
import subprocess
import sys

import pytest
import requests
from redis import exceptions as redis_errors
from sqlalchemy.exc import OperationalError

from tests.helpers.agent_api import listing, post_audio
from tests.helpers.audio_samples import make_audio, run_ffmpeg
from tests.helpers.conversations import another_agents_conversation, conversation_with_agent
from tests.helpers.processes import ROOT, SERVICE_VARIABLES, Processes, descendants, free_port, wait_until
from tests.helpers.service import audio_rows, deployed_service, migrate, record_calls, run_jobs, set_settings
from tests.helpers.webhooks import POST_EVENT, PRE_EVENT, load_fixture, on_message_add, post_webhook
from webhook_app.audio.bounded import reason
from webhook_app.audio.transcode import transcode_to_mp3
from webhook_app.config import Config
from webhook_app.media import storage
from webhook_app.media.storage import DATABASE_READ_BYTES
from webhook_app.runtime import outages
from webhook_app.runtime.scratch import remove_dead_leftovers, scratch_dir
from webhook_app.sandbox import Sandbox
from webhook_app.sandbox.demo import AGENT_IDENTITY
from webhook_app.web.flex_auth import REFUSED_TOKENS
from webhook_app.web.headers import BODY_IDLE_TIMEOUT_S

HTML = b"<!doctype html><html><body><script>fetch('/api/v1/admin/settings/whatsapp', {method: 'PUT'})</script>"


def served(client, token, conversation_sid, **headers):
    (message,) = listing(client, token, conversation_sid)
    assert message["status"] == "ready", message
    return client.get(message["playback_url"].replace("http://localhost", ""), headers=headers)


def test_html_labelled_as_audio_is_served_as_a_download_that_runs_nothing(deliver, client, app, agent_token, tmp_path):
    set_settings(app, "webchat", normalize_inbound=False)  # the customer's bytes are kept as sent
    page = tmp_path / "note.ogg"
    page.write_bytes(HTML)
    params, response = deliver(page, "audio/ogg, text/html", channel="webchat")
    assert response.status_code == 200
    run_jobs(app)

    media = served(client, agent_token, params["ConversationSid"])
    assert media.status_code == 200 and media.data == HTML
    assert media.headers["Content-Type"] == "application/octet-stream"  # never the customer's label
    assert media.headers["Content-Disposition"].startswith("attachment;")
    assert media.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in media.headers["Content-Security-Policy"]
    assert "default-src 'none'" in media.headers["Content-Security-Policy"]


def test_audio_kept_as_sent_is_served_by_what_its_bytes_are(deliver, client, app, agent_token, tmp_path):
    set_settings(app, "webchat", normalize_inbound=False)
    note = make_audio(tmp_path / "note.ogg", "whatsapp_ogg", seconds=1.0)
    params, _ = deliver(note, "audio/ogg; codecs=opus; x=" + "y" * 90, channel="webchat")  # 112 characters
    run_jobs(app)

    media = served(client, agent_token, params["ConversationSid"])
    assert media.status_code == 200
    assert media.headers["Content-Type"] == "audio/ogg"
    assert media.headers["Content-Disposition"].startswith("inline;")
    assert media.headers["X-Content-Type-Options"] == "nosniff"


def test_converted_mp3_carries_the_same_protections(deliver, client, app, agent_token, tmp_path):
    params, _ = deliver(make_audio(tmp_path / "n.ogg", "whatsapp_ogg", seconds=1.0), "audio/ogg", channel="whatsapp")
    run_jobs(app)
    media = served(client, agent_token, params["ConversationSid"])
    assert media.headers["Content-Type"] == "audio/mpeg"
    assert media.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in media.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/admin", "/agent"])
def test_pages_run_only_our_scripts_and_cannot_be_framed(client, path):
    page = client.get(path)
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["X-Frame-Options"] == "DENY"


@pytest.fixture
def large_stored_note(deliver, client, app, agent_token, tmp_path, monkeypatch):
    """A 3.2 MB WAV kept as sent (more than ten database reads), and a log of every read playback makes."""
    set_settings(app, "webchat", normalize_inbound=False)
    original = tmp_path / "long.wav"
    make_audio(original, "wav", seconds=100.0)
    params, _ = deliver(original, "audio/wav", channel="webchat")
    run_jobs(app)
    (message,) = listing(client, agent_token, params["ConversationSid"])
    reads = []
    real_read = storage.read_stored_slice

    def logged_read(engine, key, offset, length):
        data = real_read(engine, key, offset, length)
        reads.append((offset, len(data)))
        return data

    monkeypatch.setattr(storage, "read_stored_slice", logged_read)
    return original.read_bytes(), message["playback_url"].replace("http://localhost", ""), reads


def test_a_one_byte_range_reads_one_chunk_not_the_file(client, large_stored_note):
    original, url, reads = large_stored_note
    assert len(original) > 10 * DATABASE_READ_BYTES

    response = client.get(url, headers={"Range": "bytes=0-0"})
    assert response.status_code == 206 and response.data == original[:1]
    assert reads and sum(length for _, length in reads) <= DATABASE_READ_BYTES


def test_head_reads_no_more_than_the_first_chunk(client, large_stored_note):
    original, url, reads = large_stored_note
    response = client.head(url)
    assert response.status_code == 200 and int(response.headers["Content-Length"]) == len(original)
    assert reads and sum(length for _, length in reads) <= DATABASE_READ_BYTES


def test_ranges_and_whole_file_are_read_a_chunk_at_a_time(client, large_stored_note):
    original, url, reads = large_stored_note
    start = DATABASE_READ_BYTES - 10  # across a chunk boundary
    response = client.get(url, headers={"Range": f"bytes={start}-{start + 99}"})
    assert response.status_code == 206 and response.data == original[start : start + 100]

    reads.clear()
    whole = client.get(url)
    assert whole.status_code == 200 and whole.data == original
    assert reads and max(length for _, length in reads) <= DATABASE_READ_BYTES
    assert len(reads) <= len(original) // DATABASE_READ_BYTES + 2  # each chunk once, plus the sniff


SLOW_CLIENTS = 50
GUNICORN_CONF = str(ROOT / "gunicorn.conf.py")


def test_slow_clients_leave_webhooks_answered_on_the_one_machine_default(tmp_path):
    """gunicorn as the Procfile runs it on SQLite (gthread): fifty clients that announce a body and stall must not
    keep Twilio's webhooks waiting, and each stalled body ends in a 408 instead of holding a thread for good."""
    database_url = "sqlite:///" + str(tmp_path / "one-machine.db")
    migrate(database_url)
    sandbox = Sandbox(str(tmp_path / "sandbox.db"))
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
    env.update(
        DATABASE_URL=database_url,
        SANDBOX_DB=str(tmp_path / "sandbox.db"),
        SECRET_KEY="test-secret",
        LOG_LEVEL="WARNING",
        LOG_FORMAT="text",
    )
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    processes = Processes(env, tmp_path)
    stalled: list[socket.socket] = []
    try:
        processes.start(
            "web", [sys.executable, "-m", "gunicorn", "webhook_app:create_app()", "--bind", f"127.0.0.1:{port}"]
        )
        processes.wait_for_http(base_url + "/healthz", "gunicorn to answer /healthz")
        for _ in range(SLOW_CLIENTS):
            client = socket.create_connection(("127.0.0.1", port))
            client.sendall(
                b"POST " + POST_EVENT.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"X-Twilio-Signature: c2lnbmF0dXJl\r\n"  # signed: the body is read to check it
                b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nAc"
            )
            stalled.append(client)

        url = base_url + POST_EVENT
        for number in range(10):
            params = load_fixture(
                "onMessageAdded__text_only",
                account_sid=sandbox.account_sid,
                conversation_sid="CH" + "0" * 31 + str(number),
                message_sid="IM" + "1" * 32,
                chat_service_sid=sandbox.chat_service_sid,
                participant_sid="MB" + "2" * 32,
            )
            # Twilio gives up after 5 s; before the fix every one of these waited behind the stalled bodies.
            answer = requests.post(
                url, data=params, headers={"X-Twilio-Signature": sandbox.sign(url, params)}, timeout=5
            )
            assert answer.status_code == 200, answer.text

        stalled[0].settimeout(BODY_IDLE_TIMEOUT_S + 15)
        status_line = stalled[0].recv(4096).split(b"\r\n", 1)[0]
        assert b" 408 " in status_line, status_line
        processes.check_alive()
    finally:
        for client in stalled:
            client.close()
        processes.stop()


def test_a_decided_pre_event_rejection_stands_when_its_audit_cannot_be_written(
    client, app, sandbox, whatsapp, monkeypatch
):
    from webhook_app.webhooks import conversations

    def broken_audit(event, rejection):
        raise RuntimeError("database went away")

    monkeypatch.setattr(conversations, "audit_rejection", broken_audit)
    conversation, agent = whatsapp
    set_settings(app, "whatsapp", sending_enabled=False)
    response = post_webhook(client, sandbox, on_message_add(sandbox, conversation, participant_sid=agent), PRE_EVENT)
    assert response.status_code == 403  # it answered 200 {} (publish) before
    assert response.get_json()["error"]["code"] == "audio_not_allowed"


def test_control_characters_are_cleaned_from_pre_event_fields(client, app, sandbox, whatsapp):
    conversation, agent = whatsapp
    set_settings(app, "whatsapp", sending_enabled=False)
    params = on_message_add(sandbox, conversation, participant_sid=agent)
    params["Media"] = json.dumps(
        [
            {
                "Sid": "ME" + "1" * 32,
                "ContentType": "audio/mpeg\u0000\u0007",
                "Filename": "vo\u0000ice\n.mp3",
                "Size": 1000,
            }
        ]
    )
    response = post_webhook(client, sandbox, params, PRE_EVENT)
    assert response.status_code == 403
    (row,) = audio_rows(app)  # PostgreSQL refused the NUL: no row was stored
    assert (row.filename, row.content_type) == ("voice.mp3", "audio/mpeg")


def test_control_characters_are_cleaned_from_upload_names_and_types(client, app, sandbox, agent_token, tmp_path):
    conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
    sandbox.add_participant(conversation, identity="agent_40example_2Ecom", attributes='{"member_type": "agent"}')
    take = make_audio(tmp_path / "take.webm", "webm", seconds=1.0)
    response = post_audio(
        client, agent_token, conversation, take, content_type="audio/webm\x00\x1b", filename="my\x00take\x1b.webm"
    )
    assert response.status_code == 201, response.get_json()  # a 500 with no audit row on PostgreSQL before
    (row,) = audio_rows(app)
    assert row.filename == "mytake.webm" and "\x00" not in (row.content_type or "")


@pytest.mark.parametrize(
    "path,expected",
    [
        ("/api/v1/conversations/CH" + "a" * 32 + "%0A/audio", 400),  # a 201 with a 35-character SID before
        ("/api/v1/conversations/CH" + "a" * 32 + "%0A/audio-settings", 400),
        ("/agent/conversations/CH" + "a" * 32 + "%0A", 400),  # a control character: refused for any URL
    ],
)
def test_sids_with_a_trailing_newline_are_refused(client, agent_token, path, expected):
    response = client.get(path, headers={"Authorization": f"Bearer {agent_token}"})
    assert response.status_code == expected


def test_an_audit_id_past_32_bits_is_not_found(client, app):
    app.config["ADMIN_TOKEN"] = "admin-secret"
    response = client.get("/api/v1/admin/audit/2147483648", headers={"Authorization": "Bearer admin-secret"})
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def test_decode_errors_do_not_name_our_temporary_files():
    said = reason(
        [
            "[in#0 @ 0x5] Error opening input: Invalid argument",
            "Error opening input file file:/tmp/inbound-k2j4h1/source.",
        ]
    )
    assert "/tmp" not in said and "inbound-" not in said and "source" in said


@pytest.fixture
def iam_calls(app, monkeypatch):
    """Every token the service asks Twilio IAM about."""
    return record_calls(monkeypatch, app.extensions["twilio"], "validate_flex_token")


def test_a_refused_token_is_not_asked_about_twice(client, iam_calls):
    conversation_url = "/api/v1/conversations/CH" + "a" * 32 + "/audio"
    for _ in range(3):
        response = client.get(conversation_url, headers={"Authorization": "Bearer not-a-flex-token"})
        assert response.status_code == 401 and response.get_json()["error"]["code"] == "invalid_token"
    assert iam_calls == ["not-a-flex-token"]


def test_a_client_guessing_tokens_is_told_to_wait_and_costs_no_more_iam_calls(client, iam_calls):
    conversation_url = "/api/v1/conversations/CH" + "a" * 32 + "/audio"
    guesser = {"REMOTE_ADDR": "203.0.113.7"}
    for number in range(REFUSED_TOKENS.limit):
        response = client.get(
            conversation_url, headers={"Authorization": f"Bearer guess-{number}"}, environ_base=guesser
        )
        assert response.status_code == 401
    response = client.get(conversation_url, headers={"Authorization": "Bearer guess-next"}, environ_base=guesser)
    assert response.status_code == 429 and response.get_json()["error"]["code"] == "too_many_invalid_tokens"
    assert 0 < int(response.headers["Retry-After"]) <= REFUSED_TOKENS.window_s
    assert len(iam_calls) == REFUSED_TOKENS.limit  # 300 guesses were 300 IAM calls before

    other = client.get(
        conversation_url, headers={"Authorization": "Bearer another"}, environ_base={"REMOTE_ADDR": "198.51.100.1"}
    )
    assert other.status_code == 401  # one client's guessing does not lock out the others


def test_admin_sign_in_guesses_are_limited_too(client, iam_calls):
    for number in range(REFUSED_TOKENS.limit + 1):
        response = client.get("/api/v1/admin/audit", headers={"Authorization": f"Bearer admin-guess-{number}"})
    assert response.status_code == 429
    assert len(iam_calls) == REFUSED_TOKENS.limit


def guess(client, number: int, **headers):
    headers["Authorization"] = f"Bearer guess-{number}"
    return client.get("/api/v1/conversations/CH" + "a" * 32 + "/audio", headers=headers).status_code


def test_forwarded_for_is_not_believed_without_a_proxy_in_front(client, iam_calls):
    """The default trusts no proxy: 40 guesses, each from an address of its own in X-Forwarded-For, are one client."""
    answers = [guess(client, n, **{"X-Forwarded-For": f"198.51.100.{n}"}) for n in range(40)]
    limit = REFUSED_TOKENS.limit
    assert answers == [401] * limit + [429] * (40 - limit)  # 40 × 401 before
    assert len(iam_calls) == limit  # 40 IAM calls before


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(another_app):
    client = another_app(PROXY_FIX_HOPS=1).test_client()
    # The router appends the address it saw; what the client sent before it is the client's say.
    guesser = {"X-Forwarded-For": "10.9.9.9, 203.0.113.7"}
    assert {guess(client, n, **guesser) for n in range(REFUSED_TOKENS.limit)} == {401}
    assert guess(client, 99, **guesser) == 429
    assert guess(client, 100, **{"X-Forwarded-For": "10.9.9.9, 198.51.100.1"}) == 401


def test_web_processes_share_the_count_of_refused_tokens(app, another_app):
    """Two apps on one database (and Redis, when tests have it): two gunicorn workers' worth."""
    clients = [app.test_client(), another_app().test_client()]
    assert {guess(clients[n % 2], n) for n in range(REFUSED_TOKENS.limit)} == {401}
    assert [guess(one, 99) for one in clients] == [429, 429]  # each process allowed 10 before


def test_on_heroku_its_router_is_believed_unless_told_otherwise(monkeypatch, another_app, caplog):
    """Heroku (DYNO set) always has its router in front: believing no hop there would make every client the router,
    and one client's refused tokens would lock every agent out."""
    monkeypatch.setenv("DYNO", "web.1")
    assert Config().PROXY_FIX_HOPS == 1
    monkeypatch.setenv("PROXY_FIX_HOPS", "0")
    assert Config().PROXY_FIX_HOPS == 0
    another_app(PROXY_FIX_HOPS=0)
    assert "set PROXY_FIX_HOPS=1" in caplog.text


def test_valid_tokens_get_in_while_the_store_of_the_limits_is_down(client, app, sandbox, agent_token, monkeypatch):
    """The limits fail open: an outage of Redis (or the database) must not stop agents whose tokens are valid."""
    limiter = app.extensions["refusal_limits"]
    outage = (
        redis_errors.ConnectionError("connection refused")
        if limiter.dependency is outages.REDIS
        else OperationalError("SELECT", {}, Exception("connection refused"))
    )

    def down(*args):
        raise outage

    monkeypatch.setattr(limiter.hits, "times", down)
    monkeypatch.setattr(limiter.hits, "add", down)
    conversation = conversation_with_agent(sandbox, "Customer", "sms")
    try:
        assert guess(client, 1) == 401  # refused, not a 500
        bearer = {"Authorization": f"Bearer {agent_token}"}
        assert client.get(f"/api/v1/conversations/{conversation}/audio", headers=bearer).status_code == 200
        assert limiter.dependency.down  # logged once, as an outage
    finally:
        limiter.dependency.reachable()  # the process-wide outage state, for the next tests


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


def test_silence_costs_far_less_than_the_bitrate(tmp_path):
    silence = tmp_path / "silence.flac"
    run_ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "120", "-c:a", "flac", str(silence))
    result = transcode_to_mp3(str(silence), str(tmp_path / "out.mp3"), bitrate_kbps=64)
    full_bitrate_bytes = 120 * 64_000 / 8
    assert result.size_bytes < full_bitrate_bytes / 4  # CBR spent all of it: 960 KB from a 30 KB FLAC
    assert abs(result.duration_s - 120) < 0.5


def test_the_channels_duration_cap_binds_inbound_notes(deliver, app, client, agent_token, tmp_path):
    set_settings(app, "whatsapp", max_duration_s=2)  # INBOUND_MAX_DURATION_S is an hour
    params, _ = deliver(make_audio(tmp_path / "long.ogg", "whatsapp_ogg", seconds=5.0), "audio/ogg")
    run_jobs(app)
    (row,) = audio_rows(app)
    assert row.status == "ready" and row.truncated and abs(row.duration_s - 2.0) < 0.1


def sign_in_page(client, token) -> str:
    """Sign in on /admin with `token`; the page's CSRF token (from its hidden form field)."""
    page = client.get("/admin").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/admin/login", data={"token": token, "csrf_token": csrf})
    assert response.status_code == 302, response.get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin").get_data(as_text=True)).group(1)


def copy_session(source, target) -> None:
    cookie = source.get_cookie("session")
    target.set_cookie("session", cookie.value, domain=cookie.domain)


def test_signing_out_ends_a_copied_admin_session(app):
    app.config["ADMIN_TOKEN"] = "admin-secret"
    browser, thief = app.test_client(), app.test_client()
    csrf = sign_in_page(browser, "admin-secret")
    copy_session(browser, thief)
    assert thief.get("/api/v1/admin/settings").status_code == 200  # the copy works while the session is open

    browser.post("/admin/logout", data={"csrf_token": csrf})
    assert thief.get("/api/v1/admin/settings").status_code == 401  # it stayed valid for up to 12 h before
    assert "Sign in" in thief.get("/admin").get_data(as_text=True)


def test_sign_out_everywhere_ends_every_session_of_that_admin(app, sandbox):
    boss = sandbox.issue_token("boss@example.com", roles=["admin"])
    other_admin = sandbox.issue_token("other@example.com", roles=["supervisor"])
    laptop, phone, colleague = app.test_client(), app.test_client(), app.test_client()
    csrf = sign_in_page(laptop, boss)
    sign_in_page(phone, boss)
    sign_in_page(colleague, other_admin)

    laptop.post("/admin/logout", data={"csrf_token": csrf, "everywhere": "1"})
    assert phone.get("/api/v1/admin/settings").status_code == 401
    assert laptop.get("/api/v1/admin/settings").status_code == 401
    assert colleague.get("/api/v1/admin/settings").status_code == 200  # another admin's session is theirs


KILLED_JOB = """
import sys
from webhook_app.audio.ffmpeg import ffmpeg_binary
from webhook_app.audio.bounded import Bounds, run_ffmpeg
from webhook_app.runtime.scratch import scratch_dir

with scratch_dir("inbound") as workdir:
    open(workdir + "/source", "wb").write(b"a customer's original")
    print(workdir, flush=True)
    # -re: ffmpeg reads at the audio's own pace, so this one would run for ten minutes
    run_ffmpeg([ffmpeg_binary(), "-nostdin", "-re", "-f", "lavfi", "-i", "anullsrc=r=8000", "-t", "600", "-y",
                workdir + "/out.mp3"], Bounds(900))
"""


def test_a_killed_job_takes_its_ffmpeg_along_and_its_scratch_folder_is_removed_later():
    job = subprocess.Popen([sys.executable, "-c", KILLED_JOB], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        workdir = job.stdout.readline().strip()
        ffmpeg_pid = wait_until(lambda: next(iter(descendants(job.pid)), None), 10, "the job's ffmpeg to start")
        job.kill()  # SIGKILL: no finally, no cleanup
        job.wait(10)
        wait_until(
            lambda: not os.path.exists(f"/proc/{ffmpeg_pid}") or _zombie(ffmpeg_pid), 10, "ffmpeg to die with its job"
        )  # it ran on to the end, orphaned, before
        assert os.path.isdir(workdir)  # nothing removed it: the job was killed
    finally:
        job.kill()

    with scratch_dir("upload") as ours:  # a live process's folder is not a leftover
        assert remove_dead_leftovers(os.path.dirname(workdir)) >= 1
        assert not os.path.exists(workdir) and os.path.isdir(ours)


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    return True


# -- conversation access: agents reach the conversations they are in ------------------------------------------------


def assert_not_a_participant(response, conversation: str) -> None:
    assert response.status_code == 403, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "not_a_participant"
    assert AGENT_IDENTITY in error["message"] and conversation in error["message"]
    assert "supervisors and admins reach all" in error["message"]


def test_an_agent_reaches_no_conversation_they_are_not_a_participant_of(client, app, sandbox, agent_token, tmp_path):
    conversation = another_agents_conversation(sandbox)
    bearer = {"Authorization": f"Bearer {agent_token}"}
    take = make_audio(tmp_path / "take.webm", "webm", seconds=1.0)

    # Every one of these answered 200/201 to any valid token of the account before.
    assert_not_a_participant(client.get(f"/api/v1/conversations/{conversation}/audio", headers=bearer), conversation)
    assert_not_a_participant(post_audio(client, agent_token, conversation, take), conversation)
    assert_not_a_participant(
        client.get(f"/api/v1/conversations/{conversation}/audio-settings", headers=bearer), conversation
    )
    assert_not_a_participant(client.get(f"/agent/api/conversations/{conversation}", headers=bearer), conversation)
    assert_not_a_participant(
        client.post(f"/agent/api/conversations/{conversation}/simulate-voice-note", headers=bearer), conversation
    )
    assert audio_rows(app) == []  # refused before anything was sent or audited
    missing = "CH" + "0" * 32
    response = client.get(f"/api/v1/conversations/{missing}/audio", headers=bearer)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "conversation_not_found"


@pytest.mark.parametrize("role", ["supervisor", "admin"])
def test_supervisors_and_admins_reach_every_conversation(client, app, sandbox, agent_token, tmp_path, role):
    conversation = another_agents_conversation(sandbox)
    listing_url = f"/api/v1/conversations/{conversation}/audio"
    refused = client.get(listing_url, headers={"Authorization": f"Bearer {agent_token}"})
    assert_not_a_participant(refused, conversation)  # where an agent is refused, their lead is not:
    token = sandbox.issue_token("lead_40example_2Ecom", roles=[role])
    bearer = {"Authorization": f"Bearer {token}"}
    take = make_audio(tmp_path / "take.webm", "webm", seconds=1.0)
    assert post_audio(client, token, conversation, take).status_code == 201
    (message,) = listing(client, token, conversation)
    assert message["status"] == "ready"
    settings = client.get(f"/api/v1/conversations/{conversation}/audio-settings", headers=bearer)
    assert settings.status_code == 200 and settings.get_json()["channel"] == "whatsapp"
    details = client.get(f"/agent/api/conversations/{conversation}", headers=bearer)
    assert details.status_code == 200 and details.get_json()["sid"] == conversation


def test_an_agent_who_just_accepted_the_task_is_let_in_at_once_and_then_served_from_the_cache(
    client, app, sandbox, agent_token, monkeypatch
):
    conversation = another_agents_conversation(sandbox)
    url, bearer = f"/api/v1/conversations/{conversation}/audio", {"Authorization": f"Bearer {agent_token}"}
    assert_not_a_participant(client.get(url, headers=bearer), conversation)  # its participants are cached now

    sandbox.add_participant(conversation, identity=AGENT_IDENTITY, attributes='{"member_type": "agent"}')  # accepts
    calls = record_calls(monkeypatch, app.extensions["twilio"], "list_participants")
    assert client.get(url, headers=bearer).status_code == 200  # not refused until the cached list expires
    assert calls == [conversation]  # the one fresh read, which also refreshed the cache
    for _ in range(3):
        assert client.get(url, headers=bearer).status_code == 200
    assert calls == [conversation]  # the hot path asks Twilio nothing more


def test_the_console_lists_an_agent_only_their_conversations_and_a_supervisor_all(client, sandbox, agent_token):
    others = [another_agents_conversation(sandbox), sandbox.create_conversation("Nobody's yet", "sms")["sid"]]
    mine = conversation_with_agent(sandbox, "My customer", "webchat")
    supervisor = sandbox.issue_token("lead_40example_2Ecom", roles=["supervisor"])

    def listed(token: str) -> list[str]:
        response = client.get("/agent/api/conversations", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        return [c["sid"] for c in response.get_json()["conversations"]]

    assert listed(agent_token) == [mine]  # the account's every conversation before
    assert listed(supervisor) == [mine, *reversed(others)]
