"""The access log of the `web` process (gunicorn.conf.py's logger_class), from a real gunicorn."""

from __future__ import annotations

import json
import os
import sys

import pytest
import requests

from tests.helpers.processes import SERVICE_VARIABLES, Processes, free_port, wait_until


@pytest.fixture
def gunicorn(app, tmp_path):
    """Start `web` as the Procfile does (gunicorn.conf.py), one worker, with LOG_FORMAT as given."""
    processes = Processes({}, tmp_path)

    def start(log_format: str) -> tuple[str, callable]:
        env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
        env.update(
            DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
            SANDBOX_DB=app.config["SANDBOX_DB"],
            SECRET_KEY="test-secret",
            LOG_FORMAT=log_format,
            WEB_CONCURRENCY="1",
            PORT=str(free_port()),
        )
        processes.env = env
        processes.start(f"web-{log_format}", [sys.executable, "-m", "gunicorn", "webhook_app:create_app()"])
        base_url = f"http://127.0.0.1:{env['PORT']}"
        processes.wait_for_http(base_url + "/healthz", "gunicorn to answer /healthz")
        log_path = tmp_path / f"web-{log_format}.log"
        return base_url, lambda: log_path.read_text(errors="replace").splitlines()

    yield start
    processes.stop()


def access_lines(lines: list[str]) -> list[dict]:
    entries = []
    for line in lines:
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("logger") == "access":
                entries.append(entry)
    return entries


@pytest.mark.slow
def test_json_access_lines_carry_status_time_and_the_request_id(gunicorn):
    base_url, log_lines = gunicorn("json")
    forged = requests.post(
        base_url + "/twilio/conversations/post-event",
        data={"EventType": "onMessageAdded"},
        headers={"X-Twilio-Signature": "forged", "User-Agent": "TwilioProxy/1.1", "X-Request-Id": "router-id-123"},
        timeout=5,
    )
    assert forged.status_code == 403 and forged.headers["X-Request-Id"] == "router-id-123"
    playback = requests.get(base_url + "/media/secret-playback-token", timeout=5)
    assert playback.status_code in (403, 410)

    def logged():
        entries = access_lines(log_lines())
        return entries if len([e for e in entries if e["method"] != "GET" or "/media/" in e["path"]]) >= 2 else None

    entries = wait_until(logged, 10, "the access lines", lambda: "\n".join(log_lines()))
    webhook = next(e for e in entries if e["path"] == "/twilio/conversations/post-event")
    assert webhook["status"] == 403 and webhook["method"] == "POST"
    assert webhook["msg"] == "POST /twilio/conversations/post-event 403"
    assert webhook["request_id"] == "router-id-123"  # the router's id: router, app and access lines line up
    assert webhook["user_agent"] == "TwilioProxy/1.1" and webhook["remote_addr"] == "127.0.0.1"
    assert webhook["bytes"] == len(forged.content) and webhook["ms"] >= 0
    assert webhook["ts"].endswith("Z") and webhook["level"] == "info"
    media = next(e for e in entries if e["path"].startswith("/media/"))
    assert media["path"] == "/media/[redacted]" and media["status"] == playback.status_code
    assert "secret-playback-token" not in "\n".join(log_lines())
    health = next(e for e in entries if e["path"] == "/healthz")
    assert len(health["request_id"]) == 32  # none came in: the app's own


@pytest.mark.slow
def test_text_log_format_keeps_gunicorns_apache_line(gunicorn):
    base_url, log_lines = gunicorn("text")
    assert requests.get(base_url + "/healthz", timeout=5).status_code == 200
    line = wait_until(
        lambda: next((x for x in log_lines() if '"GET /healthz HTTP/1.1" 200' in x), None),
        10,
        "the access line",
        lambda: "\n".join(log_lines()),
    )
    assert not line.startswith("{")
    assert requests.get(base_url + "/media/secret-playback-token", timeout=5).status_code in (403, 410)
    wait_until(
        lambda: next((x for x in log_lines() if '"GET /media/[redacted] HTTP/1.1"' in x), None),
        10,
        "the playback line",
        lambda: "\n".join(log_lines()),
    )
    assert "secret-playback-token" not in "\n".join(log_lines())
