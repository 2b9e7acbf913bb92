"""What an attacker with a phone number (or a web page of their own) tries: each test is one hole that was open.

Customer bytes served from the service's origin, memory taken by cheap requests, pages framed by other sites.
"""

import os
import socket
import sys

import pytest
import requests

from tests.audio_samples import make_audio
from tests.conftest import POST_EVENT, load_fixture, migrate, run_jobs
from tests.processes import SERVICE_VARIABLES, Processes, free_port
from tests.test_inbound import listing
from tests.test_outbound import set_settings
from webhook_app import storage
from webhook_app.security import BODY_IDLE_TIMEOUT_S
from webhook_app.storage import DATABASE_READ_BYTES
from webhook_app.twilio.sandbox import Sandbox

HTML = b"<!doctype html><html><body><script>fetch('/api/v1/admin/settings/whatsapp', {method: 'PUT'})</script>"


def served(client, token, conversation_sid, **headers):
    (message,) = listing(client, token, conversation_sid)
    assert message["status"] == "ready", message
    return client.get(message["playback_url"].replace("http://localhost", ""), headers=headers)


def test_html_labelled_as_audio_is_served_as_a_download_that_runs_nothing(deliver, client, app, agent_token,
                                                                           tmp_path):
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
    assert response.status_code == 206 and response.data == original[start:start + 100]

    reads.clear()
    whole = client.get(url)
    assert whole.status_code == 200 and whole.data == original
    assert reads and max(length for _, length in reads) <= DATABASE_READ_BYTES
    assert len(reads) <= len(original) // DATABASE_READ_BYTES + 2  # each chunk once, plus the sniff


SLOW_CLIENTS = 50


def test_slow_clients_leave_webhooks_answered_on_the_one_machine_default(tmp_path):
    """gunicorn as the Procfile runs it on SQLite (gthread): fifty clients that announce a body and stall must not
    keep Twilio's webhooks waiting, and each stalled body ends in a 408 instead of holding a thread for good."""
    database_url = "sqlite:///" + str(tmp_path / "one-machine.db")
    migrate(database_url)
    sandbox = Sandbox(str(tmp_path / "sandbox.db"))
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
    env.update(DATABASE_URL=database_url, SANDBOX_DB=str(tmp_path / "sandbox.db"), SECRET_KEY="test-secret",
               LOG_LEVEL="WARNING", LOG_FORMAT="text")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    processes = Processes(env, tmp_path)
    stalled: list[socket.socket] = []
    try:
        processes.start("web", [sys.executable, "-m", "gunicorn", "webhook_app:create_app()",
                                "--bind", f"127.0.0.1:{port}"])
        processes.wait_for_http(base_url + "/healthz", "gunicorn to answer /healthz")
        for _ in range(SLOW_CLIENTS):
            client = socket.create_connection(("127.0.0.1", port))
            client.sendall(b"POST " + POST_EVENT.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"X-Twilio-Signature: c2lnbmF0dXJl\r\n"  # signed: the body is read to check it
                           b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nAc")
            stalled.append(client)

        url = base_url + POST_EVENT
        for number in range(10):
            params = load_fixture("onMessageAdded__text_only", account_sid=sandbox.account_sid,
                                  conversation_sid="CH" + "0" * 31 + str(number), message_sid="IM" + "1" * 32,
                                  chat_service_sid=sandbox.chat_service_sid, participant_sid="MB" + "2" * 32)
            # Twilio gives up after 5 s; before the fix every one of these waited behind the stalled bodies.
            answer = requests.post(url, data=params, headers={"X-Twilio-Signature": sandbox.sign(url, params)},
                                   timeout=5)
            assert answer.status_code == 200, answer.text

        stalled[0].settimeout(BODY_IDLE_TIMEOUT_S + 15)
        status_line = stalled[0].recv(4096).split(b"\r\n", 1)[0]
        assert b" 408 " in status_line, status_line
        processes.check_alive()
    finally:
        for client in stalled:
            client.close()
        processes.stop()
