"""The deploy check: the Procfile on the deploy install, as a platform runs it.

Run by .ci/run with the Python of a clean venv that has only `pip install -r requirements.txt` (no test extras, no
editable checkout on sys.path). It creates a database of its own on the PostgreSQL server of TEST_DATABASE_URL,
reached with a `postgres://` URL as Heroku sets it, uses Redis at TEST_REDIS_URL, serves the local Twilio sandbox as
a process of its own (the service reaches it through TWILIO_API_BASE_URL with real credentials, as it would reach
Twilio), then runs the Procfile's `release`, `web` and `worker` and carries one signed webhook through to an MP3
that plays. Exit 0 when everything held; otherwise the failing step and the processes' logs.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
NOTE_SECONDS = 4.0
READY_TIMEOUT_S = 90
AGENT_IDENTITY = "deploy-check-agent"


class CheckFailed(Exception):
    pass


def step(text: str) -> None:
    print(f"deploy check: {text}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise CheckFailed(f"timed out after {timeout:g} s waiting for {what}")


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.startswith("#"):
            entries[name.strip()] = command.strip()
    missing = {"release", "web", "worker"} - entries.keys()
    if missing:
        raise CheckFailed(f"Procfile has no {', '.join(sorted(missing))}")
    return entries


def fresh_database(server_url: str) -> str:
    """A new database on the test server, named for this check; answers its URL in Heroku's `postgres://` form."""
    parts = urlsplit(server_url)
    name = "deploy_check"
    admin_url = urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return urlunsplit(("postgres", parts.netloc, "/" + name, "", ""))


def ffmpeg() -> str:
    import shutil

    import imageio_ffmpeg

    return shutil.which("ffmpeg") or imageio_ffmpeg.get_ffmpeg_exe()


def voice_note(path: Path) -> bytes:
    """A WhatsApp-style Ogg/Opus note: a gliding tone with some noise, NOTE_SECONDS long."""
    graph = (
        f"sine=f=220:d={NOTE_SECONDS}:sample_rate=16000,volume=0.5[t];"
        f"anoisesrc=d={NOTE_SECONDS}:c=pink:a=0.05:r=16000[n];[t][n]amix=inputs=2"
    )
    subprocess.run(
        [
            ffmpeg(),
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-filter_complex",
            graph,
            "-ac",
            "1",
            "-c:a",
            "libopus",
            "-b:a",
            "24k",
            str(path),
        ],
        check=True,
    )
    return path.read_bytes()


def decoded_seconds(path: Path) -> float:
    done = subprocess.run(
        [ffmpeg(), "-nostdin", "-hide_banner", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise CheckFailed(f"the MP3 does not decode:\n{done.stderr[-2000:]}")
    hours, minutes, seconds = re.findall(r"time=(\d+):(\d+):(\d+\.\d+)", done.stderr)[-1]
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


class Processes:
    """The check's long-running processes, each in its own session with its output in a file."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: str, env: dict[str, str]) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")
        process = subprocess.Popen(
            ["bash", "-c", command], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.running[name] = process
        return process

    def check_alive(self) -> None:
        for name, process in self.running.items():
            if process.poll() is not None:
                raise CheckFailed(f"`{name}` exited with {process.returncode}")

    def stop(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def dump_logs(self) -> None:
        for log in sorted(self.folder.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()
            print(f"----- {log.name} (last 40 of {len(lines)} lines) -----")
            print("\n".join(lines[-40:]))


def run(folder: Path, processes: Processes) -> None:
    import webhook_app

    installed = Path(webhook_app.__file__).resolve()
    if ROOT in installed.parents:
        raise CheckFailed(f"webhook_app is imported from the checkout ({installed}), not from the deploy install")
    step(f"webhook_app installed at {installed.parent}")
    commands = procfile()
    database_url = fresh_database(os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    web_port, sandbox_port = free_port(), free_port()
    service_url = f"http://127.0.0.1:{web_port}"
    twilio_url = f"http://127.0.0.1:{sandbox_port}"

    base_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TWILIO_", "TEST_")) and key not in ("DATABASE_URL", "REDIS_URL", "PORT")
    }
    base_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base_env.get('PATH', '')}"
    sandbox_db = folder / "twilio-sandbox.db"
    processes.start(
        "sandbox",
        shlex.join(
            [
                sys.executable,
                "-m",
                "webhook_app.sandbox",
                "--db",
                str(sandbox_db),
                "--port",
                str(sandbox_port),
                "--post-webhook-url",
                f"{service_url}/twilio/conversations/post-event",
                "--pre-webhook-url",
                f"{service_url}/twilio/conversations/pre-event",
            ]
        ),
        base_env,
    )
    wait_for(lambda: _answers(twilio_url + "/v1/Conversations"), 30, "the sandbox to listen")
    processes.check_alive()

    from webhook_app.sandbox import Sandbox

    twilio = Sandbox(str(sandbox_db))
    service_env = {
        **base_env,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RQ_QUEUE": f"deploy-check-{secrets.token_hex(4)}",
        "PORT": str(web_port),
        "WEB_CONCURRENCY": "2",
        "SECRET_KEY": secrets.token_hex(32),
        "PUBLIC_BASE_URL": service_url,
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_API_BASE_URL": twilio_url,
        "LOG_FORMAT": "text",
    }

    step(f"release: {commands['release']}  (DATABASE_URL={database_url})")
    release = subprocess.run(
        ["bash", "-c", commands["release"]], cwd=ROOT, env=service_env, capture_output=True, text=True, timeout=300
    )
    if release.returncode != 0:
        raise CheckFailed(f"release exited with {release.returncode}:\n{release.stdout}{release.stderr}")
    step(f"web: {commands['web']}")
    processes.start("web", commands["web"], service_env)
    step(f"worker: {commands['worker']}")
    processes.start("worker", commands["worker"], service_env)

    def healthy():
        processes.check_alive()
        try:
            answer = requests.get(service_url + "/healthz", timeout=5)
        except requests.RequestException:
            return None
        return answer if answer.status_code == 200 else None

    health = wait_for(healthy, 60, "/healthz to answer 200").json()
    step(f"/healthz 200: {health}")
    if health.get("status") != "ok":
        raise CheckFailed(f"/healthz is not ok: {health}")

    conversation = twilio.create_conversation("Deploy check", "whatsapp", customer_address="whatsapp:+15550001111")
    # Agents reach only the conversations they are a participant of: Flex adds them when they accept the task.
    twilio.add_participant(conversation["sid"], identity=AGENT_IDENTITY)
    note = voice_note(folder / "note.ogg")
    params = twilio.customer_sends_media(conversation["sid"], note, "audio/ogg", "note.ogg")
    status = twilio.deliver_webhook(params)
    step(f"signed onMessageAdded for {params['MessageSid']} ({len(note)} bytes of Ogg/Opus) -> {status}")
    if status != 200:
        raise CheckFailed(f"the webhook was answered {status}")

    token = twilio.issue_token(AGENT_IDENTITY, roles=("agent",))
    listing_url = f"{service_url}/api/v1/conversations/{conversation['sid']}/audio"

    def ready():
        processes.check_alive()
        answer = requests.get(listing_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        answer.raise_for_status()
        messages = answer.json()["audio_messages"]
        if messages and messages[0]["status"] == "failed":
            raise CheckFailed(f"the note failed: {messages[0]}")
        return messages[0] if messages and messages[0]["status"] == "ready" else None

    message = wait_for(ready, READY_TIMEOUT_S, "the note to be ready")
    playback = requests.get(message["playback_url"], timeout=30)
    if playback.status_code != 200 or playback.headers.get("Content-Type") != "audio/mpeg":
        raise CheckFailed(f"playback answered {playback.status_code} {playback.headers.get('Content-Type')}")
    mp3 = folder / "note.mp3"
    mp3.write_bytes(playback.content)
    seconds = decoded_seconds(mp3)
    if abs(seconds - NOTE_SECONDS) > 0.25:
        raise CheckFailed(f"the MP3 plays {seconds:.2f} s, the note was {NOTE_SECONDS:.2f} s")
    step(
        f"ready: {message['duration_s']} s, {message['size_bytes']} -> {message['mp3_size_bytes']} bytes; "
        f"the MP3 ({len(playback.content)} bytes, audio/mpeg) decodes to {seconds:.2f} s"
    )
    processes.check_alive()


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
        return True
    except requests.RequestException:
        return False


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="deploy-check-") as scratch:
        folder = Path(scratch)
        processes = Processes(folder)
        try:
            run(folder, processes)
        except (CheckFailed, subprocess.SubprocessError, requests.RequestException, psycopg.Error) as exc:
            processes.stop()
            print(f"deploy check FAILED: {exc}", flush=True)
            processes.dump_logs()
            return 1
        processes.stop()
    print("deploy check passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
