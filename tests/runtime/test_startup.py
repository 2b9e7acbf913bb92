"""Start-up and /healthz (webhook_app/runtime/startup.py, schema.py, health.py): a process that cannot store or convert
refuses to start or answers /healthz 503, and a bad setting ends every entry point with one line naming it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from alembic import command
from alembic.script import ScriptDirectory

from tests.helpers.audio_samples import make_audio
from tests.helpers.processes import ROOT, SERVICE_VARIABLES, Processes, free_port
from webhook_app import create_app
from webhook_app.audio import ffmpeg
from webhook_app.runtime.schema import alembic_config, migrations_directory
from webhook_app.sandbox import Sandbox

ENTRY_POINTS = {
    "gunicorn": [sys.executable, "-m", "gunicorn", "webhook_app:create_app()"],  # Procfile `web`
    "flask worker": [sys.executable, "-m", "flask", "--app", "webhook_app", "worker"],  # Procfile `worker`
    "alembic": [sys.executable, "-m", "alembic", "upgrade", "head"],  # Procfile `release`, `make run`'s first step
}


def service_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """The developer's environment without the service's variables, on files of the test's own."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'service.db'}",
        SANDBOX_DB=str(tmp_path / "sandbox.db"),
        SECRET_KEY="test-secret",
        PORT=str(free_port()),
        REDIS_URL="redis://127.0.0.1:1/0",  # `worker` needs one; nothing listens there, nothing gets that far
        LOG_FORMAT="text",
    )
    return {**env, **values}


def run_to_exit(argv: list[str], env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a process that should refuse to start; one that serves instead is killed, with its workers."""
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{argv} still running after {timeout} s, it should have refused to start:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def assert_refused_in_one_line(done: subprocess.CompletedProcess, name: str, expected: str) -> None:
    """Exit status not 0, no traceback, and one line about `name`: "error: " then `expected` (its beginning)."""
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if name in line]
    assert len(lines) == 1 and lines[0].startswith(f"error: {expected}"), done.stderr


# Each entry point once, each variable once: every setting is checked by the one Config (tests/test_config.py
# has each message), and each entry point ends on any ConfigError the same way.
@pytest.mark.parametrize(
    "entry_point, name, value, expected",
    [
        ("gunicorn", "UPLOAD_MAX_BYTES", "100MB", "UPLOAD_MAX_BYTES='100MB' is not an integer (bytes, e.g. 104857600)"),
        ("alembic", "DATABASE_URL", "nonsense", "DATABASE_URL='nonsense' is not a database URL (expected postgres://"),
        ("flask worker", "REDIS_URL", "redis://127.0.0.1:6379/9x", "REDIS_URL='redis://127.0.0.1:6379/9x' is not a "),
        ("gunicorn", "WEB_THREADS", "many", "WEB_THREADS='many' is not an integer"),  # read by gunicorn.conf.py
    ],
)
def test_a_bad_setting_stops_each_entry_point_with_one_line_naming_it(tmp_path, entry_point, name, value, expected):
    done = run_to_exit(ENTRY_POINTS[entry_point], service_env(tmp_path, **{name: value}))
    assert_refused_in_one_line(done, name, expected)


@pytest.mark.parametrize("entry_point", ["gunicorn", "flask worker"])
def test_an_ffmpeg_that_is_not_there_stops_the_start_up_in_one_line(tmp_path, entry_point):
    done = run_to_exit(ENTRY_POINTS[entry_point], service_env(tmp_path, FFMPEG_BINARY="/opt/nope/ffmpeg"))
    assert_refused_in_one_line(
        done,
        "FFMPEG_BINARY",
        "FFMPEG_BINARY='/opt/nope/ffmpeg' is not an executable (the path of an ffmpeg, or unset: the one on PATH, "
        "else the imageio-ffmpeg wheel's)",
    )


@pytest.mark.slow
def test_web_alone_on_a_fresh_sqlite_file_migrates_it_and_takes_a_signed_webhook(tmp_path):
    """README: one machine needs nothing but `web`. gunicorn's master migrates the file before forking its two
    workers, logs the ffmpeg it checked, and /healthz says which ffmpeg and which schema."""
    env = service_env(tmp_path, WEB_CONCURRENCY="2")
    del env["REDIS_URL"]  # in-process jobs, as on one machine
    processes = Processes(env, tmp_path)
    base_url = f"http://127.0.0.1:{env['PORT']}"
    try:
        processes.start("web", ENTRY_POINTS["gunicorn"])
        processes.wait_for_http(base_url + "/healthz", "gunicorn to answer /healthz")
        health = requests.get(base_url + "/healthz", timeout=5).json()
        sandbox = Sandbox(env["SANDBOX_DB"])
        conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
        note = Path(make_audio(tmp_path / "note.ogg", "whatsapp_ogg", seconds=1.0)).read_bytes()
        params = sandbox.customer_sends_media(conversation, note, "audio/ogg", "note.ogg")
        url = base_url + "/twilio/conversations/post-event"
        webhook = requests.post(url, data=params, headers={"X-Twilio-Signature": sandbox.sign(url, params)}, timeout=10)
        log = (tmp_path / "web.log").read_text(errors="replace")
    finally:
        processes.stop()
    assert webhook.status_code == 200, (webhook.text, log[-3000:])
    (head,) = ScriptDirectory(str(migrations_directory())).get_heads()
    assert health["status"] == "ok" and health["schema"] == {"ok": True, "revision": head, "head": head}, health
    binary, version = ffmpeg.ffmpeg_in_use()  # the test's environment chooses as the service's did
    assert health["ffmpeg"] == {"ok": True, "path": binary, "version": version}
    assert f"ffmpeg: {binary} {version}" in log and f"migrated from nothing to {head}" in log, log[-3000:]


def test_healthz_is_503_while_the_schema_is_behind_the_code_and_200_once_migrated(tmp_path):
    """A server database is migrated by the release phase, not by `web`: until it is, /healthz names the missing
    revision with a 503, so a platform routes no webhook there; it recovers without a restart."""
    script = ScriptDirectory(str(migrations_directory()))
    head = script.get_current_head()
    previous = script.get_revision(head).down_revision
    url = f"sqlite:///{tmp_path / 'behind.db'}"
    command.upgrade(alembic_config(url), previous)
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url,
            "SANDBOX_DB": str(tmp_path / "sandbox.db"),
            "SECRET_KEY": "test-secret",
            "REDIS_URL": None,
            "MAINTENANCE_INTERVAL_S": 0,
        }
    )
    client = app.test_client()
    behind = client.get("/healthz")
    assert behind.status_code == 503, behind.get_json()
    assert behind.get_json()["status"] == "unfit"
    assert behind.get_json()["schema"] == {
        "ok": False,
        "revision": previous,
        "head": head,
        "error": f"the schema is at {previous}, this code needs {head}: run `alembic upgrade head`",
    }
    command.upgrade(alembic_config(url), "head")
    migrated = client.get("/healthz")
    assert migrated.status_code == 200 and migrated.get_json()["schema"]["ok"] is True


def test_healthz_is_503_naming_the_ffmpeg_when_it_does_not_run(client, monkeypatch):
    working = client.get("/healthz").get_json()["ffmpeg"]
    assert working == {"ok": True, "path": ffmpeg.ffmpeg_binary(), "version": working["version"]} and working["version"]
    monkeypatch.setattr(ffmpeg, "ffmpeg_binary", lambda: "/bin/false")  # there, but no ffmpeg
    broken = client.get("/healthz")
    assert broken.status_code == 503 and broken.get_json()["status"] == "unfit"
    assert broken.get_json()["ffmpeg"] == {
        "ok": False,
        "error": "/bin/false is not a working ffmpeg: `/bin/false -version` says 'exit status 1'",
    }
