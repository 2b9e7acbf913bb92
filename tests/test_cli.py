"""The sandbox CLI a new user runs first: a real server thread, a real signed webhook over HTTP."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import flask.cli
import pytest
import requests
from sqlalchemy import select

from tests.helpers.audio_samples import decoded_duration, make_audio
from tests.helpers.service import count_rows, deployed_service
from webhook_app.extensions import db
from webhook_app.models import SettingsChange
from webhook_app.sandbox import Sandbox
from webhook_app.settings.cache import all_settings
from webhook_app.twilio.client import twilio_api

REPO = Path(__file__).resolve().parents[1]


def test_send_audio_delivers_a_playable_mp3(runner, live_server, tmp_path, app):
    source = make_audio(tmp_path / "hello.amr", "amr", seconds=4.0)
    result = runner.invoke(args=["sandbox", "send-audio", "--channel", "sms", "--server", live_server, source])
    assert result.exit_code == 0, result.output
    assert "webhook -> 200" in result.output
    url = result.output.split("play:")[1].strip()
    response = requests.get(url, headers={"Range": "bytes=0-"}, timeout=10)
    assert response.status_code == 206 and response.headers["Content-Type"] == "audio/mpeg"
    mp3 = tmp_path / "out.mp3"
    mp3.write_bytes(response.content)
    assert abs(decoded_duration(mp3) - 4.0) < 0.1


def test_send_audio_without_a_file_uses_the_spoken_demo_note(runner, live_server):
    result = runner.invoke(args=["sandbox", "send-audio", "--server", live_server])
    assert result.exit_code == 0, result.output
    assert "ready: 5.0" in result.output


def test_send_audio_reports_a_failed_transcode(runner, live_server, tmp_path):
    bogus = tmp_path / "note.ogg"
    bogus.write_text("not audio\n" * 50)
    result = runner.invoke(args=["sandbox", "send-audio", "--server", live_server, str(bogus)])
    assert result.exit_code != 0
    assert "not decodable" in result.output


def test_token_command_issues_tokens_the_api_accepts(runner, client, sandbox):
    token = runner.invoke(args=["sandbox", "token", "--identity", "bob", "--role", "supervisor"]).output.strip()
    conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
    response = client.get(f"/api/v1/conversations/{conversation}/audio", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_healthz_reports_database_and_queue(client, app):
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok" and body["database"]["ok"]
    expected = "rq" if app.config["REDIS_URL"] else "in-process"
    assert body["queue"]["backend"] == expected


def test_send_audio_says_at_once_that_a_file_that_is_not_audio_was_ignored(runner, live_server, tmp_path, app):
    notes = tmp_path / "notes.txt"
    notes.write_text("call the customer back on Monday\n")
    started = time.monotonic()
    result = runner.invoke(args=["sandbox", "send-audio", "--server", live_server, str(notes)])
    assert time.monotonic() - started < 10, "it waited for a conversion that never comes"
    assert result.exit_code == 1, result.output
    assert "webhook -> 200" in result.output
    assert "the service ignored notes.txt as not audio (text/plain)" in result.output
    assert "not ready" not in result.output
    assert count_rows(app) == 0  # the service's own record agrees: nothing to convert


def test_send_audio_without_a_running_service_says_how_to_start_it(runner, app):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = runner.invoke(args=["sandbox", "send-audio", "--server", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: no service answers at http://127.0.0.1:{port}/healthz: start it with `make run` in another "
        "terminal (or point --server at it)"
    ]
    # Nothing went into the sandbox for a service that would never hear of it.
    with app.app_context():
        assert twilio_api().client.conversations.v1.conversations.list() == []


@pytest.fixture
def served(monkeypatch):
    """What `flask serve` hands to werkzeug, without serving."""
    calls = []
    monkeypatch.setattr(flask.cli, "run_simple", lambda host, port, app, **options: calls.append((host, port, app)))
    return calls


def test_serve_prints_the_console_and_admin_urls_with_the_sandbox_sign_in(runner, app, served):
    result = runner.invoke(args=["serve", "--port", "5123"])
    assert result.exit_code == 0, result.output
    assert "Agent console: http://127.0.0.1:5123/agent\n" in result.output
    assert 'Admin:         http://127.0.0.1:5123/admin   (sandbox: press "Sign in to the sandbox")\n' in result.output
    assert served == [("127.0.0.1", 5123, app)]
    with app.app_context():  # the sandbox turned transcription on (the extra is installed here), audited
        assert all(settings.transcribe for settings in all_settings())
        assert {
            c.changed_by for c in db.session.scalars(select(SettingsChange).where(SettingsChange.key == "transcribe"))
        } == {"sandbox"}


def test_serve_outside_the_sandbox_names_the_real_ways_in(app, database_url, tmp_path, served):
    with deployed_service(Sandbox(str(tmp_path / "remote-twilio.db")), database_url) as service:
        output = service.test_cli_runner().invoke(args=["serve"]).output
    assert "Admin:         http://127.0.0.1:5000/admin   (sign in with ADMIN_TOKEN" in output
    assert "sandbox" not in output
    with app.app_context():  # outside the sandbox transcription stays off until an admin turns it on
        assert not any(settings.transcribe for settings in all_settings())


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
@pytest.mark.parametrize("port, expected", [("5123", "5123"), (None, "5000")])
def test_make_run_serves_on_PORT_else_5000(port, expected):
    # Not as a sub-make of `make test` (MAKEFLAGS, MAKELEVEL): it would announce its directory after the recipe.
    environment = {
        name: value for name, value in os.environ.items() if name not in ("PORT", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    }
    if port:
        environment["PORT"] = port
    # --always-make: print every recipe (a fresh machine's), run none of them.
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "--dry-run", "--always-make", "run"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert dry_run.stdout.splitlines()[-1].endswith(f"flask --app webhook_app serve --host 127.0.0.1 --port {expected}")
