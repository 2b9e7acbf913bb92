"""Real server processes for the multi-process tests and the load benchmark: started in their own sessions with
their output in files, checked, and stopped with everything they forked (RQ's work horses call setsid())."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONF = str(ROOT / "gunicorn.conf.py")  # the web process's settings, as the Procfile runs it
# Whatever the developer's shell has set must not leak into the processes under test.
SERVICE_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "RQ_QUEUE",
    "SANDBOX_DB",
    "SECRET_KEY",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_KEY_SID",
    "TWILIO_API_KEY_SECRET",
    "TWILIO_API_BASE_URL",
    "PUBLIC_BASE_URL",
    "WEB_CONCURRENCY",
    "PORT",
    "MEDIA_STORE",
    "GUNICORN_CMD_ARGS",
)


def service_env(**values: str) -> dict:
    """This environment without the service's variables (the developer's shell must not leak into the processes
    under test), plus `values`."""
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
    env.update(values)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, on_timeout=lambda: "", interval: float = 0.1):
    """Poll until `predicate()` is truthy (and answer it); fail saying what never happened, plus `on_timeout()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{on_timeout()}")


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), even those in their own session: RQ's work horses call setsid(),
    so killing the worker's process group does not reach them."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int, sig: int) -> None:
    """Signal a process, its process group and every descendant (a lost dyno takes its work horses along)."""
    for target in [pid, *descendants(pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def kill_hard(process: subprocess.Popen) -> None:
    """SIGKILL a process and all it forked, and reap it: no cleanup handler runs, as when a dyno is lost."""
    kill_tree(process.pid, signal.SIGKILL)
    process.wait(10)


class Processes:
    """The service's processes, each in its own process group, with their output in files."""

    def __init__(self, env: dict, log_dir: Path):
        self.env = env
        self.log_dir = Path(log_dir)
        self.started: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.started.append((name, process, log_path))
        return process

    def check_alive(self) -> None:
        for name, process, _ in self.started:
            assert process.poll() is None, f"{name} exited with {process.returncode}\n{self.logs()}"

    def wait_for_http(self, url: str, what: str, timeout: float = 60) -> None:
        """Poll `url` until it answers 200, failing with every process's log if a process exits or time runs out."""
        import requests

        def answers():
            self.check_alive()
            try:
                return requests.get(url, timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(answers, timeout, what, self.logs)

    def logs(self, tail: int = 4000) -> str:
        parts = []
        for name, process, log_path in self.started:
            text = log_path.read_text(errors="replace") if log_path.exists() else ""
            state = "running" if process.poll() is None else f"exited {process.returncode}"
            parts.append(f"----- {name} ({state}), last {tail} chars -----\n{text[-tail:]}")
        return "\n".join(parts)

    def kill_hard(self) -> None:
        """SIGKILL every process and all it forked: no cleanup handler runs, as when a dyno is lost."""
        for _, process, _ in self.started:
            kill_hard(process)

    def stop(self) -> None:
        # Taken first: once a worker exits, its work horses (own sessions, reparented) are no longer below it.
        below = [pid for _, process, _ in self.started for pid in descendants(process.pid)]
        for _, process, _ in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, process, _ in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for _, process, _ in self.started:
            # The tree: an RQ work horse or a gunicorn worker must not outlive its run.
            kill_tree(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
        self.started.clear()


REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """A redis-server of a test's own on a free port, without persistence: killed and started again, it comes back
    empty, as a Redis that fails over without persistence does."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = Path(log_dir) / f"redis-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_until(
            self.answers,
            10,
            f"redis-server to answer on port {self.port}",
            lambda: self.log_path.read_text(errors="replace")[-2000:],
        )

    def kill(self) -> None:
        """SIGKILL: connections drop at once and nothing is saved."""
        if self.process is not None:
            kill_tree(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def answers(self) -> bool:
        from redis import Redis
        from redis.exceptions import RedisError

        client = Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except RedisError:
            return False
        finally:
            client.close()
