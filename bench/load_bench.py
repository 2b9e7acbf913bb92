"""Load benchmark (make bench): webhook acknowledgement under 50 concurrent connections, then end to end.

What runs
  Both targets are served by the same gunicorn command line (gunicorn.conf.py, the Procfile's `web`) on this
  machine, and get the same request bytes over 50 keep-alive connections (closed loop: each connection sends its
  next request as soon as the previous one is answered). Both servers are up at once and loaded in turn: a warm-up
  each, then BENCH_ROUNDS rounds of BENCH_SECONDS per target, alternating, because this machine's speed drifts by
  a quarter from minute to minute and each target must go through the same drift. Throughput is all rounds'
  requests over all rounds' time; p50/p99 are the median round's (wrk reports percentiles, not samples):
    bare     bench/_bare_app.py: a Flask route on the same URL that only answers 200 (the ceiling of
             Flask + gunicorn + the load generator on this machine);
    webhook  the service (`webhook_app:create_app()`), production defaults (INFO JSON logs to stdout, access log
             on as in gunicorn.conf.py), on PostgreSQL + Redis (BENCH_DATABASE_URL / BENCH_REDIS_URL, default the
             local `test_load` database and Redis db 2 when they answer), else SQLite + in-process jobs.
  Each webhook is a realistic onMessageAdded: the form fields the sandbox (Twilio's shape) posts, signed with the
  sandbox account's auth token, one audio media, a unique MessageSid and MediaSid, so every request creates one
  row (and, once relayed, one job; two for web chat, whose SDK messages also get an `expand_message` job); the mix is
  WhatsApp, SMS and web chat in turn. The bench checks that rows created == webhooks acknowledged.

Gunicorn settings
  gunicorn.conf.py, the Procfile's, read with the servers' environment: 2 gevent workers on PostgreSQL (one process
  per core; gevent because a webhook mostly waits on PostgreSQL's commit, and greenlets switch in user space where
  threads switch through the kernel and contend for the GIL: the file says more), 2 x 8 threads on the SQLite
  fallback. Override with BENCH_WEB_WORKERS, BENCH_WORKER_CLASS and BENCH_WEB_THREADS (for gthread) to compare;
  an override applies to both targets.

Where the load webhooks' jobs go (honest figures)
  Acknowledgement phase: with Redis, no RQ worker runs, so the measurement is the web tier alone, as on a web
  dyno (workers live on other dynos). On PostgreSQL the web tier only commits rows (the workers' relays enqueue
  them), so the rows wait in the table and are closed afterwards; on SQLite it enqueues the jobs itself and they
  wait in Redis. With in-process jobs the web processes are the workers, so the load's jobs run there during the
  measurement; their media SIDs do not exist, so each fails fast with a 404 reason (the cheapest job there is:
  the embedded figures are a best case).
  End-to-end phase: the same load keeps running, but as redeliveries of the acknowledgement phase's webhooks
  (what Twilio's retries look like): same bytes, same signature check, parsing and INSERT ... ON CONFLICT on the
  same table and commit, only no new row and no job. Unique load webhooks would put thousands of jobs (hundreds
  per second, far more than 2 workers can take) in front of the 20 real voice notes, and the figure would then be
  the length of that backlog, not the service's latency. Pointing them at one real tiny media would be the same
  backlog with ffmpeg runs. So the 20 real 60 s Ogg/Opus voice notes (16 kHz, held in the sandbox's MCS, sent one
  per BENCH_E2E_INTERVAL_S) compete with a saturated web tier for the 2 cores, PostgreSQL and Redis, and with
  each other for the 2 RQ workers, which is what the end-to-end target is about.

Load generator
  `wrk` when it is on PATH (BENCH_LOADGEN=wrk|python forces one; this script never installs anything), with a
  Lua script that hands out the pre-built requests; otherwise a Python asyncio generator (one protocol object per
  connection, requests pre-built and pre-signed, so it spends a few tens of microseconds per request). Either
  shares the 2 cores with the server, as any load generator on one machine does; the bare run pays the same
  price, which the side-by-side ratio cancels. Latency = request written -> response fully read, per request.
  Every phase is bounded in time (BENCH_SECONDS) and in requests (BENCH_MAX_REQUESTS), and all traffic goes to
  127.0.0.1. wrk's threads each take every second request of the round's list, each from a file of its own that
  holds only its share of what a round can use (WRK_MAX_RATE per second): wrk starts thread 0 before it reads
  thread 1's script, and a Lua table of every remaining webhook (over 100 MB) parsed there, and kept in each
  thread's heap, is CPU the servers would not get. At the end of a run its script reports the furthest request
  handed out, and the next run starts past it, so no webhook is sent twice (a round that runs out fails the run).
  Each round's line shows the CPU wrk itself used, and the target's web processes' CPU per request (the same code
  costs more in this machine's slow phases).

Targets: webhook throughput >= 0.5 x bare, webhook p99 <= 50 ms, zero errors (non-200 answers,
connection errors, timeouts, or a row missing for an acknowledged webhook); end to end p95 <= 2 s (webhook
sent -> row `ready`). Exit status 1 when one is missed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
import os
import re
import resource
import runpy
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import timezone
from urllib.parse import urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import requests  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from tests.processes import Processes, free_port, wait_until  # noqa: E402 - the multi-process tests' helpers
from webhook_app.audio.ffmpeg import ffmpeg_binary  # noqa: E402
from webhook_app.config import normalize_database_url  # noqa: E402
from webhook_app.sandbox import Sandbox  # noqa: E402

CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WARMUP_S = float(os.environ.get("BENCH_WARMUP_S", "2"))
MAX_REQUESTS = int(os.environ.get("BENCH_MAX_REQUESTS", "80000"))
# Overrides of gunicorn.conf.py, for both targets (unset: the Procfile's settings).
GUNICORN_OVERRIDES = [option for variable, flag in (("BENCH_WEB_WORKERS", "--workers"),
                                                   ("BENCH_WORKER_CLASS", "--worker-class"),
                                                   ("BENCH_WEB_THREADS", "--threads"))
                      if os.environ.get(variable) for option in (flag, os.environ[variable])]
E2E_NOTES = int(os.environ.get("BENCH_E2E_NOTES", "20"))
E2E_INTERVAL_S = float(os.environ.get("BENCH_E2E_INTERVAL_S", "1.0"))
E2E_TIMEOUT_S = float(os.environ.get("BENCH_E2E_TIMEOUT_S", "120"))
E2E_NOTE_S = 60
# One machine stands in for separate web and worker dynos: a positive value runs the end-to-end phase's web tier
# under `nice`, so the RQ workers get CPU first, as they would on their own dynos (0: same priority, the default).
E2E_WEB_NICE = int(os.environ.get("BENCH_E2E_WEB_NICE", "0"))
LOADGEN = os.environ.get("BENCH_LOADGEN", "auto").lower()
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test_load"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/2"
HOST = "127.0.0.1"
PATH = "/twilio/conversations/post-event"
REQUEST_TIMEOUT_S = 10.0
RQ_WORKERS = 2

TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
TARGET_E2E_P95_S = 2.0


# -- small helpers ------------------------------------------------------------------------------------

def web_cpu_seconds(access_log: str) -> float:
    """User + system CPU of the processes whose command line names this server's access log (its gunicorn)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if access_log.encode() not in handle.read():
                    continue
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least `fraction` of the values at or below it."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def postgres_reachable(url: str) -> bool:
    """The bench database answers, created on the server first if only it is missing (a fresh machine)."""
    import psycopg
    from psycopg import sql

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(plain, connect_timeout=2):
            return True
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            return False
    except Exception:  # noqa: BLE001 - unreachable or refused: fall back
        return False
    base, _, name = plain.rpartition("/")
    try:
        with psycopg.connect(f"{base}/postgres", connect_timeout=2, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name.split("?")[0])))
        return True
    except Exception:  # noqa: BLE001
        return False


def redis_reachable(url: str) -> bool:
    try:
        from redis import Redis

        client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
        return True
    except Exception:  # noqa: BLE001
        return False


def gunicorn_argv(app_spec: str, port: int, access_log: str, extra: list[str] = ()) -> list[str]:
    return [sys.executable, "-m", "gunicorn", app_spec, "--config", os.path.join(ROOT, "gunicorn.conf.py"),
            *GUNICORN_OVERRIDES, "--bind", f"{HOST}:{port}", "--access-logfile", access_log, "--log-level", "warning",
            *extra]


def gunicorn_settings(env: dict) -> str:
    """What gunicorn.conf.py (read with the servers' environment) and the overrides amount to."""
    from unittest import mock

    from gunicorn.config import Config

    config = Config()
    with mock.patch.dict(os.environ, env, clear=True):
        settings = runpy.run_path(os.path.join(ROOT, "gunicorn.conf.py"))
    for name, value in settings.items():
        if name in config.settings:
            config.set(name, value)
    overrides = dict(zip(GUNICORN_OVERRIDES[::2], GUNICORN_OVERRIDES[1::2]))
    workers = overrides.get("--workers", config.workers)
    worker_class = overrides.get("--worker-class", config.worker_class_str)
    detail = (f"{overrides.get('--threads', config.threads)} threads" if worker_class == "gthread"
              else f"{config.worker_connections} connections" if worker_class == "gevent" else "")
    return f"{workers} x {worker_class}" + (f", {detail} each" if detail else "") + f", timeout {config.timeout} s"



# -- the webhooks ------------------------------------------------------------------------------------

class Signer:
    """X-Twilio-Signature as twilio's RequestValidator computes it (URL + sorted key/value pairs, HMAC-SHA1),
    without its per-call overhead; checked against the sandbox's own signing before use."""

    def __init__(self, auth_token: str, url: str):
        self.key, self.url = auth_token.encode(), url

    def sign(self, params: dict[str, str]) -> str:
        payload = self.url + "".join(name + params[name] for name in sorted(params))
        return base64.b64encode(hmac.new(self.key, payload.encode(), hashlib.sha1).digest()).decode()


def raw_request(port: int, body: bytes, signature: str) -> bytes:
    head = (f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: TwilioProxy/1.1\r\n"
            f"Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\nX-Twilio-Signature: {signature}\r\n"
            f"I-Twilio-Idempotency-Token: {secrets.token_hex(16)}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def load_webhooks(sandbox: Sandbox, templates: list[dict], count: int, port: int) -> list[tuple[bytes, str, str]]:
    """`count` signed onMessageAdded bodies (body, signature, MessageSid), each one audio media with a unique
    MessageSid and MediaSid."""
    signer = Signer(sandbox.auth_token, f"http://{HOST}:{port}{PATH}")
    sample = dict(templates[0])
    assert signer.sign(sample) == sandbox.sign(signer.url, sample), "signer disagrees with the sandbox"
    webhooks = []
    for number in range(count):
        params = dict(templates[number % len(templates)])
        params["MessageSid"] = "IM" + secrets.token_hex(16)
        params["Index"] = str(1000 + number)
        media = json.loads(params["Media"])
        media[0]["Sid"] = "ME" + secrets.token_hex(16)
        params["Media"] = json.dumps(media)
        webhooks.append((urlencode(params).encode(), signer.sign(params), params["MessageSid"]))
    return webhooks


# -- load generators -----------------------------------------------------------------------------------

class LoadResult:
    def __init__(self, label: str):
        self.label = label
        self.latencies: list[float] = []
        self.statuses: Counter = Counter()
        self.errors: Counter = Counter()
        self.elapsed = 0.0
        self.generator = ""
        # CPU seconds the load generator itself used (wrk only): it shares the 2 cores with the servers.
        self.generator_cpu: float | None = None

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values()) + sum(n for status, n in self.statuses.items() if status != 200)

    @property
    def rps(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0

    def ms(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1000


class _Source:
    def __init__(self, requests_: list[bytes], limit: int, cycle: bool):
        self.requests, self.limit, self.cycle = requests_, limit, cycle
        self.index = 0

    def next(self) -> bytes | None:
        if self.index >= self.limit or (not self.cycle and self.index >= len(self.requests)):
            return None
        request = self.requests[self.index % len(self.requests)]
        self.index += 1
        return request


class _Connection(asyncio.Protocol):
    def __init__(self, run: "_PythonRun"):
        self.run = run
        self.transport = None
        self.buffer = bytearray()
        self.sent_at: float | None = None
        self.expected: int | None = None
        self.close_after = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.send_next()

    def send_next(self) -> None:
        request = self.run.next_request()
        if request is None:
            self.transport.close()
            return
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.expected is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            self.status = int(head[9:12])
            length = re.search(r"(?im)^content-length:\s*(\d+)", head)
            if length is None:
                self.run.result.errors["response without Content-Length"] += 1
                self.sent_at = None
                self.transport.close()
                return
            self.close_after = re.search(r"(?im)^connection:\s*close", head) is not None
            self.expected = end + 4 + int(length.group(1))
        if len(self.buffer) < self.expected:
            return
        latency = time.perf_counter() - self.sent_at
        self.sent_at = None
        del self.buffer[:self.expected]
        self.expected = None
        self.run.record(self.status, latency)
        if self.close_after:
            self.transport.close()
        else:
            self.send_next()

    def connection_lost(self, exc) -> None:
        if self.sent_at is not None:
            self.run.result.errors[f"connection lost: {type(exc).__name__ if exc else 'closed by server'}"] += 1
            self.sent_at = None
        self.run.connection_closed(self)


class _PythonRun:
    def __init__(self, port: int, source: _Source, seconds: float, stop: threading.Event | None, label: str):
        self.port, self.source, self.seconds, self.stop = port, source, seconds, stop
        self.result = LoadResult(label)
        self.result.generator = f"python asyncio, {CONNECTIONS} connections"
        self.loop = asyncio.get_event_loop()
        self.open: set[_Connection] = set()
        self.finished = self.loop.create_future()
        self.stopping = False

    def next_request(self) -> bytes | None:
        if (self.stopping or time.perf_counter() >= self.deadline
                or (self.stop is not None and self.stop.is_set())):
            self.stopping = True
            return None
        return self.source.next()

    def record(self, status: int, latency: float) -> None:
        self.result.statuses[status] += 1
        self.result.latencies.append(latency)
        self.last_done = time.perf_counter()

    def connection_closed(self, connection: _Connection) -> None:
        self.open.discard(connection)
        if not self.stopping and time.perf_counter() < self.deadline and self.source.index < self.source.limit:
            self.loop.create_task(self.connect())  # the server closed a keep-alive connection: open another
        elif not self.open and not self.finished.done():
            self.finished.set_result(None)

    async def connect(self) -> None:
        try:
            _, protocol = await self.loop.create_connection(lambda: _Connection(self), HOST, self.port)
            self.open.add(protocol)
        except OSError as exc:
            self.result.errors[f"connect: {type(exc).__name__}"] += 1
            if not self.open and not self.finished.done():
                self.finished.set_result(None)

    async def main(self) -> LoadResult:
        self.started = self.last_done = time.perf_counter()
        self.deadline = self.started + self.seconds
        await asyncio.gather(*(self.connect() for _ in range(CONNECTIONS)))
        try:
            await asyncio.wait_for(asyncio.shield(self.finished), self.seconds + REQUEST_TIMEOUT_S + 5)
        except asyncio.TimeoutError:
            pass
        for connection in list(self.open):
            if connection.sent_at is not None:
                self.result.errors["timeout"] += 1
                connection.sent_at = None
            connection.transport.abort()
        self.result.elapsed = max(self.last_done - self.started, 1e-9)
        return self.result


def python_load(port: int, source: _Source, seconds: float, label: str,
                stop: threading.Event | None = None) -> LoadResult:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_PythonRun(port, source, seconds, stop, label).main())
    finally:
        loop.close()


WRK_LUA = r"""
-- Each thread reads its own share of the requests in init(), which wrk runs in the main thread before starting
-- that thread: thread 1's file is read while thread 0 already sends, so the files are kept to what a round uses.
local threads, started, all = %(threads)d, 0, {}
function setup(thread) thread:set("tid", started); table.insert(all, thread); started = started + 1 end
function init(args)
  requests = dofile(string.format(%(path_pattern)s, tid))
  count = #requests
  n = tid
end
-- Thread t hands out requests t, t + threads, ... of the round's list (its own file holds exactly those).
function request()
  local r = requests[((n - tid) / threads) %% count + 1]
  n = n + threads
  return r
end
-- The next run must start past the furthest request handed out.
function done(summary, latency, requests)
  local furthest = -1
  for _, thread in ipairs(all) do furthest = math.max(furthest, thread:get("n") - threads) end
  io.write(string.format("furthest request: %%d\n", furthest))
end
"""
# A round's list holds at most this many requests per second of the round (a bound above anything this machine
# serves: the bare route does ~5000/s, the webhook ~3000/s); a list that runs out fails the run rather than resend
# webhooks.
WRK_MAX_RATE = 6000


def lua_string(request: bytes) -> str:
    return ('"' + request.decode("latin-1").replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r")
            .replace("\n", "\\n") + '"')


def wrk_load(port: int, source: _Source, seconds: float, label: str, workdir: str) -> LoadResult:
    """wrk 4.x: time-bounded; each thread's requests are a Lua table in a file of their own."""
    result = LoadResult(label)
    threads = 2
    if source.cycle:
        wanted = source.requests
    else:
        wanted = source.requests[source.index:min(source.limit, source.index + int(seconds * WRK_MAX_RATE))]
        if not wanted:
            raise SystemExit(f"{label}: no webhook left to send (raise BENCH_MAX_REQUESTS / AB_MAX_REQUESTS)")
    path_pattern = os.path.join(workdir, f"requests-{label}-%d.lua")
    for thread in range(threads):
        with open(path_pattern % thread, "w") as handle:
            handle.write("return {\n")
            for request in wanted[thread::threads]:
                handle.write(lua_string(request) + ",\n")
            handle.write("}\n")
    script = os.path.join(workdir, f"wrk-{label}.lua")
    with open(script, "w") as handle:
        handle.write(WRK_LUA % {"path_pattern": json.dumps(path_pattern), "threads": threads})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(["wrk", "-t", str(threads), "-c", str(CONNECTIONS), "-d", f"{seconds:g}s", "--latency",
                               "--timeout", f"{REQUEST_TIMEOUT_S:g}s", "-s", script, f"http://{HOST}:{port}{PATH}"],
                              capture_output=True, text=True, timeout=seconds + 60)
    finally:
        for thread in range(threads):
            os.unlink(path_pattern % thread)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result.generator_cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    out = done.stdout
    result.generator = f"wrk, {threads} threads, {CONNECTIONS} connections"
    total = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))
    elapsed = re.search(r"requests in ([\d.]+)(m?s|m)\b", out)
    value, unit = float(elapsed.group(1)), elapsed.group(2)
    result.elapsed = value * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]
    # wrk reports percentiles, not samples: keep them as the latency figures.
    result.wrk_percentiles = {}
    to_ms = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
    for pct, number, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        result.wrk_percentiles[int(pct)] = float(number) * to_ms[unit]
    maximum = re.search(r"^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out, re.M)
    if maximum:
        result.wrk_percentiles[100] = float(maximum.group(1)) * to_ms[maximum.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result.latencies = [0.0] * total
    result.statuses[200] = total - (int(non2xx.group(1)) if non2xx else 0)
    if non2xx:
        result.statuses["non-2xx"] = int(non2xx.group(1))
    if errors:
        for name, count in zip(("connect", "read", "write", "timeout"), map(int, errors.groups())):
            if count:
                result.errors[f"socket {name}"] = count
    furthest = re.search(r"furthest request: (-?\d+)", out)
    handed_out = int(furthest.group(1)) + 1 if furthest else total
    if not source.cycle and handed_out > len(wanted):
        raise SystemExit(f"{label}: wrk ran through all {len(wanted)} webhooks of the round and resent some")
    source.index += handed_out
    result.raw = out
    return result


def run_load(port: int, source: _Source, seconds: float, label: str, workdir: str,
             stop: threading.Event | None = None) -> LoadResult:
    if use_wrk():
        return wrk_load(port, source, seconds, label, workdir)
    return python_load(port, source, seconds, label, stop)


def use_wrk() -> bool:
    if LOADGEN == "python":
        return False
    found = shutil.which("wrk") is not None
    if LOADGEN == "wrk" and not found:
        raise SystemExit("BENCH_LOADGEN=wrk but wrk is not on PATH")
    return found


def p(result: LoadResult, fraction: float) -> float:
    percentiles = getattr(result, "wrk_percentiles", None)
    if percentiles is not None:
        return percentiles.get(int(round(fraction * 100)), float("nan"))
    return result.ms(fraction)


# -- the bench ------------------------------------------------------------------------------------------

def make_voice_note(path: str, seconds: int) -> None:
    graph = (f"sine=f=220:d={seconds}:sample_rate=16000,volume=0.4[t];"
             f"anoisesrc=d={seconds}:c=pink:a=0.08:r=16000[n];[t][n]amix=inputs=2")
    subprocess.run([ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-filter_complex", graph,
                    "-ac", "1", "-ar", "16000", "-c:a", "libopus", "-b:a", "24k", "-f", "ogg", path], check=True)


def choose_backends(workdir: str) -> tuple[str, str | None, str]:
    database_url = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("BENCH_REDIS_URL") or DEFAULT_REDIS_URL
    notes = []
    if postgres_reachable(database_url):
        notes.append(f"PostgreSQL {database_url}")
    else:
        notes.append(f"SQLite (PostgreSQL {database_url} unreachable)")
        database_url = f"sqlite:///{workdir}/bench.db"
    if redis_reachable(redis_url):
        notes.append(f"RQ on Redis {redis_url}")
    else:
        notes.append(f"in-process jobs (Redis {redis_url} unreachable)")
        redis_url = None
    return database_url, redis_url, ", ".join(notes)


def access_log_path(workdir: str, name: str) -> str:
    return os.path.join(workdir, f"{name}-access.log")


def start_web(processes: Processes, app_spec: str, port: int, workdir: str, name: str, nice: int = 0) -> None:
    argv = gunicorn_argv(app_spec, port, access_log_path(workdir, name),
                         ["--pythonpath", HERE] if app_spec.startswith("_bare") else [])
    processes.start(name, (["nice", "-n", str(nice)] if nice else []) + argv)

    def answers():
        processes.check_alive()
        try:
            if app_spec.startswith("_bare"):
                return requests.post(f"http://{HOST}:{port}{PATH}", timeout=1).status_code == 200
            return requests.get(f"http://{HOST}:{port}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(answers, 60, f"{name} to answer")


def run_measured(port: int, source: _Source, seconds: float, label: str, workdir: str,
                 access_log: str) -> LoadResult:
    """One round, with the server's CPU per request (`server_cpu_us`): the same code on this machine costs more
    CPU per request in its slow phases."""
    cpu_before = web_cpu_seconds(access_log)
    result = run_load(port, source, seconds, label, workdir)
    result.server_cpu_us = (web_cpu_seconds(access_log) - cpu_before) / max(1, result.completed) * 1e6
    return result


def side_by_side(processes: Processes, targets: list[tuple[str, int, _Source]], workdir: str) -> list[LoadResult]:
    """Each target warmed up, then BENCH_ROUNDS rounds of BENCH_SECONDS each, the targets in turn: this machine's
    speed drifts by a quarter from minute to minute, and alternating puts each target through the same drift."""
    warmups = {label: run_load(port, source, WARMUP_S, f"{label}-warmup", workdir) for label, port, source in targets}
    rounds: dict[str, list[LoadResult]] = {label: [] for label, _, _ in targets}
    for number in range(1, ROUNDS + 1):
        for label, port, source in targets:
            rounds[label].append(run_measured(port, source, SECONDS, f"{label}-{number}", workdir,
                                              access_log_path(workdir, label)))
            processes.check_alive()
    combined = [combine(label, rounds[label]) for label, _, _ in targets]
    for result in combined:
        result.warmup = warmups[result.label]
    return combined


def combine(label: str, rounds: list[LoadResult]) -> LoadResult:
    """All rounds as one: requests and time added up; latency percentiles the median round's (wrk reports
    percentiles, not samples) or, from the Python generator, over every sample."""
    result = LoadResult(label)
    result.rounds = rounds
    result.generator = rounds[0].generator
    result.elapsed = sum(r.elapsed for r in rounds)
    for r in rounds:
        result.latencies += r.latencies
        result.statuses.update(r.statuses)
        result.errors.update(r.errors)
    if all(hasattr(r, "wrk_percentiles") for r in rounds):
        result.wrk_percentiles = {pct: (max if pct == 100 else statistics.median)(
                                      r.wrk_percentiles.get(pct, float("nan")) for r in rounds)
                                  for pct in rounds[0].wrk_percentiles}
    return result


def service_env(workdir: str, database_url: str, redis_url: str | None, queue_name: str) -> dict:
    """The servers' environment: this one without Twilio credentials or gunicorn overrides, on the bench's
    database, Redis, queue and sandbox."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "GUNICORN_"))}
    for key in ("REDIS_URL", "PUBLIC_BASE_URL", "LOG_LEVEL", "MEDIA_STORE", "WEB_CONCURRENCY"):
        env.pop(key, None)
    env.update(DATABASE_URL=database_url, RQ_QUEUE=queue_name, SANDBOX_DB=os.path.join(workdir, "sandbox.db"),
               SECRET_KEY="bench-secret")
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def prepare_database(env: dict):
    """Migrate the bench's database and clean up after earlier runs; answer an engine on it."""
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    engine = create_engine(normalize_database_url(env["DATABASE_URL"]))
    # The bench's database is its own: rows an interrupted run (or anything else) left unfinished would be revived
    # by the workers' sweeper in the end-to-end phase and queue in front of the voice notes being measured.
    with engine.begin() as connection:
        stale = connection.execute(text(
            "UPDATE audio_messages SET status = 'failed', error = 'left unfinished before this bench run'"
            " WHERE status IN ('queued', 'downloading', 'transcoding', 'sending')")).rowcount
    if stale:
        print(f"closed {stale} unfinished rows left in the bench database by an earlier run")
    if engine.dialect.name == "postgresql":
        # Each run deletes its rows at the end. Where autovacuum is off (it is on this machine's server) their dead
        # tuples would pile up in the table and its unique index, and each run would insert into a bigger one.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE audio_messages"))
    return engine


def load_templates(sandbox: Sandbox) -> list[dict]:
    """A WhatsApp, an SMS and a web chat conversation, each with its customer; real webhook fields as templates."""
    templates = []
    with tempfile.NamedTemporaryFile(suffix=".ogg") as tiny:
        make_voice_note(tiny.name, 1)
        tiny_bytes = open(tiny.name, "rb").read()
    for channel in ("whatsapp", "sms", "webchat"):
        conversation = sandbox.create_conversation(f"Bench {channel} customer", channel)["sid"]
        templates.append(sandbox.customer_sends_media(conversation, tiny_bytes, "audio/ogg", "voice.ogg"))
    return templates


def main() -> int:
    failures: list[str] = []
    workdir = tempfile.mkdtemp(prefix="load-bench-")
    database_url, redis_url, backends = choose_backends(workdir)
    queue_name = f"bench-{secrets.token_hex(4)}"
    env = service_env(workdir, database_url, redis_url, queue_name)
    engine = prepare_database(env)
    sandbox = Sandbox(env["SANDBOX_DB"])
    processes = Processes(env, workdir)
    port_bare, port_hook = free_port(), free_port()
    generator = "wrk" if use_wrk() else "python asyncio"

    print(f"load bench: {CONNECTIONS} connections, {WARMUP_S:g} s warm-up + {ROUNDS} rounds of {SECONDS:g} s per "
          f"target, in turn; at most {MAX_REQUESTS} webhooks; generator: {generator}; {os.cpu_count()} CPUs")
    overrides = " + " + " ".join(GUNICORN_OVERRIDES) if GUNICORN_OVERRIDES else ""
    print(f"gunicorn (both targets): gunicorn.conf.py{overrides} = {gunicorn_settings(env)}; access log to a file")
    print(f"webhook target: {backends}; app logs at INFO (production default)")
    if E2E_WEB_NICE:
        print(f"end-to-end phase: web tier under nice -n {E2E_WEB_NICE} (workers first, as on their own dynos)")
    try:
        templates = load_templates(sandbox)
        started = time.perf_counter()
        webhooks = load_webhooks(sandbox, templates, MAX_REQUESTS, port_hook)
        print(f"pre-built {len(webhooks)} signed webhooks ({len(webhooks[0][0])} byte bodies, whatsapp/sms/webchat "
              f"in turn) in {time.perf_counter() - started:.1f} s\n")

        # 1. and 2. in turn: bare Flask gets the same bytes (only Host differs) and may cycle through a part of
        # them; the webhook gets each once, a new row each. No RQ worker runs (the web tier alone).
        bare_requests = [raw_request(port_bare, body, signature) for body, signature, _ in webhooks[:20000]]
        hook_requests = [raw_request(port_hook, body, signature) for body, signature, _ in webhooks]
        start_web(processes, "_bare_app:app", port_bare, workdir, "bare")
        start_web(processes, "webhook_app:create_app()", port_hook, workdir, "webhook")
        source = _Source(hook_requests, MAX_REQUESTS, cycle=False)
        bare, hook = side_by_side(processes, [("bare", port_bare, _Source(bare_requests, 10**9, cycle=True)),
                                              ("webhook", port_hook, source)], workdir)
        sent = source.index
        processes.stop()
        del bare_requests
        account = sandbox.account_sid
        with engine.begin() as connection:
            stored = set(connection.execute(text("SELECT message_sid FROM audio_messages WHERE account_sid = :a"),
                                            {"a": account}).scalars())
            rows = len(stored)
            # Nobody will ever process the load's rows (their media does not exist): close them.
            connection.execute(text("UPDATE audio_messages SET status = 'failed', error = 'bench load'"
                                    " WHERE account_sid = :a AND status NOT IN ('ready', 'failed')"), {"a": account})
        if redis_url:
            from redis import Redis
            from rq import Queue

            redis = Redis.from_url(redis_url)
            depth = Queue(queue_name, connection=redis).count
            Queue(queue_name, connection=redis).delete(delete_jobs=True)
        else:
            depth = None

        # 3. end to end: 20 real voice notes while the load (redeliveries) keeps the web tier saturated.
        # Only webhooks that were stored: wrk's threads do not send a clean prefix of the list, and a webhook never
        # delivered would be a new row (and a job) in the end-to-end phase, not a redelivery.
        redeliveries = [request for request, (_, _, message_sid) in zip(hook_requests, webhooks)
                        if message_sid in stored]
        e2e = (end_to_end(processes, sandbox, engine, env, redis_url, port_hook, redeliveries, workdir)
               if E2E_NOTES else None)
    finally:
        processes.stop()
        cleanup(engine, sandbox.account_sid, redis_url, queue_name)

    print_load_table(bare, hook, e2e["load"] if e2e else None)
    ratio = hook.rps / bare.rps if bare.rps else 0.0
    print(f"\nwebhook / bare throughput: {ratio:.2f} (target >= {TARGET_RATIO})")
    acknowledged = hook.statuses.get(200, 0) + hook.warmup.statuses.get(200, 0)
    print(f"webhook rows created: {rows} for {acknowledged} webhooks acknowledged (warm-up + measured; a few more "
          f"may have been in flight when the load stopped)"
          + (f"; {depth} jobs were waiting in Redis (no worker ran; on PostgreSQL the relays enqueue, not the web)"
             if depth is not None else ""))
    if e2e:
        print_e2e(e2e)
    else:
        print("\nend to end: skipped (BENCH_E2E_NOTES=0); its target is not checked in this run")

    if ratio < TARGET_RATIO:
        failures.append(f"webhook throughput {hook.rps:.0f}/s is {ratio:.2f} x bare ({bare.rps:.0f}/s) < "
                        f"{TARGET_RATIO}")
    if p(hook, 0.99) > TARGET_P99_MS:
        failures.append(f"webhook p99 {p(hook, 0.99):.1f} ms > {TARGET_P99_MS:g} ms")
    for result in (bare, hook, e2e["load"] if e2e else None):
        if result and result.error_count:
            failures.append(f"{result.label}: {result.error_count} errors {dict(result.errors)} "
                            f"statuses {dict(result.statuses)}")
    if rows < acknowledged or (rows != sent and not use_wrk()):
        failures.append(f"{acknowledged} webhooks acknowledged ({sent} sent) but {rows} rows stored")
    if e2e and (e2e["p95"] is None or e2e["p95"] > TARGET_E2E_P95_S):
        failures.append(f"end-to-end p95 {e2e['p95']} s > {TARGET_E2E_P95_S:g} s")
    if e2e and e2e["not_ready"]:
        failures.append(f"{e2e['not_ready']} voice note(s) not ready: {e2e['errors']}")
    print()
    for failure in failures:
        print("TARGET MISSED:", failure)
    print("all targets met" if not failures else f"{len(failures)} target(s) missed")
    if failures:
        print(f"server logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failures else 0


def end_to_end(processes, sandbox, engine, env, redis_url, port, redeliveries, workdir) -> dict:
    note_path = os.path.join(workdir, "note-60s.ogg")
    make_voice_note(note_path, E2E_NOTE_S)
    note = open(note_path, "rb").read()
    conversations = [sandbox.create_conversation(f"E2E customer {i}", "whatsapp")["sid"] for i in range(5)]
    notes = [sandbox.customer_sends_media(conversations[i % 5], note, "audio/ogg", f"voice-{i}.ogg")
             for i in range(E2E_NOTES)]
    url = f"http://{HOST}:{port}{PATH}"

    start_web(processes, "webhook_app:create_app()", port, workdir, "webhook-e2e", nice=E2E_WEB_NICE)
    if redis_url:
        for number in range(RQ_WORKERS):
            processes.start(f"rq-worker{number + 1}", [sys.executable, "-m", "flask", "--app", "webhook_app",
                                                         "worker"])
        from redis import Redis
        from rq import Queue, Worker

        redis = Redis.from_url(redis_url)
        queue = Queue(env["RQ_QUEUE"], connection=redis)
        wait_until(lambda: processes.check_alive() or len(Worker.all(queue=queue)) >= RQ_WORKERS, 60,
                   "the RQ workers to register")
    run_load(port, _Source(redeliveries, 10**9, cycle=True), 1.0, "e2e-warmup", workdir)  # warm the workers up

    stop = threading.Event()
    sent_at: dict[str, float] = {}
    acks: list[tuple[int, float]] = []

    def send_notes() -> None:
        session = requests.Session()
        begin = time.time() + 1.0  # the load is running by then
        for i, params in enumerate(notes):
            time.sleep(max(0.0, begin + i * E2E_INTERVAL_S - time.time()))
            sent_at[params["MessageSid"]] = time.time()
            try:
                response = session.post(url, data=params, timeout=10,
                                        headers={"X-Twilio-Signature": sandbox.sign(url, params)})
                acks.append((response.status_code, time.time() - sent_at[params["MessageSid"]]))
            except requests.RequestException as exc:
                acks.append((0, float("nan")))
                print(f"voice note webhook failed: {exc}")
        deadline = time.monotonic() + E2E_TIMEOUT_S
        while time.monotonic() < deadline:
            if len(finished_rows()) == len(notes):
                break
            time.sleep(0.2)
        stop.set()

    def finished_rows() -> list:
        with engine.connect() as connection:
            return connection.execute(text(
                "SELECT message_sid, status, error, created_at, started_at, finished_at, processing_ms, transcode_ms"
                " FROM audio_messages WHERE message_sid IN :sids AND status IN ('ready', 'failed')")
                .bindparams(__import__("sqlalchemy").bindparam("sids", expanding=True)),
                {"sids": [n["MessageSid"] for n in notes]}).all()

    sender = threading.Thread(target=send_notes, name="voice-notes", daemon=True)
    sender.start()
    max_load_s = 1.0 + E2E_NOTES * E2E_INTERVAL_S + E2E_TIMEOUT_S
    if use_wrk():
        load_s = 1.0 + E2E_NOTES * E2E_INTERVAL_S + 10
        load = wrk_load(port, _Source(redeliveries, 10**9, cycle=True), load_s, "e2e-load", workdir)
    else:
        load = python_load(port, _Source(redeliveries, 10**9, cycle=True), max_load_s, "e2e-load", stop)
    load_ended = time.time()
    sender.join(E2E_TIMEOUT_S + 5)
    processes.check_alive()
    rows = finished_rows()

    def epoch(value) -> float:
        if isinstance(value, str):
            from datetime import datetime

            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()

    per_note = []
    for row in rows:
        if row.status != "ready":
            continue
        sent = sent_at[row.message_sid]
        per_note.append({
            "total": epoch(row.finished_at) - sent,
            "wait": epoch(row.started_at) - epoch(row.created_at) if row.started_at else float("nan"),
            "processing": (row.processing_ms or 0) / 1000,
            "transcode": (row.transcode_ms or 0) / 1000,
            "after_load": epoch(row.finished_at) > load_ended,
        })
    totals = [n["total"] for n in per_note]
    errors = [row.error for row in rows if row.status != "ready"]
    return {
        "load": load, "notes": per_note,
        "jobs": f"{RQ_WORKERS} RQ workers" if redis_url else "in-process threads (JOB_WORKERS per web process)",
        "acks": acks, "errors": errors,
        "not_ready": len(notes) - len(per_note),
        "p50": percentile(totals, 0.5) if totals else None,
        "p95": percentile(totals, 0.95) if len(totals) == len(notes) else None,
        "max": max(totals) if totals else None,
    }


def print_load_table(bare: LoadResult, hook: LoadResult, e2e_load: LoadResult | None) -> None:
    print(f"\n{'target':34} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7}")
    print("-" * 88)
    for label, result in (("bare Flask (200 only)", bare), ("webhook (new row + job each)", hook),
                          ("webhook redeliveries, during e2e", e2e_load)):
        if result is None:
            continue
        maximum = max(result.latencies) * 1000 if result.latencies and not hasattr(result, "wrk_percentiles") \
            else getattr(result, "wrk_percentiles", {}).get(100, float("nan"))
        print(f"{label:34} {result.completed:9d} {result.rps:8.0f} {p(result, 0.5):8.1f} {p(result, 0.99):8.1f} "
              f"{maximum:8.1f} {result.error_count:7d}")
        for number, one in enumerate(getattr(result, "rounds", []), 1):
            generator_cpu = f"  wrk CPU {one.generator_cpu:.1f} s" if one.generator_cpu is not None else ""
            server_cpu = f"  server CPU {one.server_cpu_us:.0f} us/request" if hasattr(one, "server_cpu_us") else ""
            print(f"{'  round ' + str(number):34} {one.completed:9d} {one.rps:8.0f} {p(one, 0.5):8.1f} "
                  f"{p(one, 0.99):8.1f} {'':8} {one.error_count:7d}{server_cpu}{generator_cpu}")
    ratios = [h.rps / b.rps for b, h in zip(getattr(bare, "rounds", []), getattr(hook, "rounds", [])) if b.rps]
    if ratios:
        print(f"webhook / bare by round: {', '.join(f'{r:.2f}' for r in ratios)}")
    print(f"(generator: {hook.generator}; closed loop: each connection sends its next request when answered; "
          f"{ROUNDS} rounds per target, in turn; p50/p99 of the median round, max of all)")


def print_e2e(e2e: dict) -> None:
    notes = e2e["notes"]
    print(f"\nend to end under load: {E2E_NOTES} voice notes of {E2E_NOTE_S} s (Ogg/Opus 16 kHz), one every "
          f"{E2E_INTERVAL_S:g} s, jobs on {e2e['jobs']}; webhook sent -> row ready:")
    if notes:
        for key, label in (("total", "sent -> ready"), ("wait", "queued -> claimed"),
                           ("processing", "claimed -> ready"), ("transcode", "ffmpeg alone")):
            values = [n[key] for n in notes if n[key] == n[key]]
            print(f"  {label:18} p50 {percentile(values, 0.5):6.2f} s  p95 {percentile(values, 0.95):6.2f} s  "
                  f"max {max(values):6.2f} s")
    acks = [latency for status, latency in e2e["acks"] if status == 200]
    print(f"  voice-note webhooks answered 200: {len(acks)}/{E2E_NOTES}"
          + (f", ack p50 {percentile(acks, 0.5) * 1000:.0f} ms, max {max(acks) * 1000:.0f} ms" if acks else ""))
    late = sum(1 for n in notes if n["after_load"])
    if late:
        print(f"  {late} note(s) finished after the load had stopped")
    p95 = e2e["p95"]
    print(f"  end-to-end p95: {'n/a' if p95 is None else f'{p95:.2f} s'} (target <= {TARGET_E2E_P95_S:g} s)")


def cleanup(engine, account_sid: str, redis_url: str | None, queue_name: str) -> None:
    """Delete this run's rows (and their stored MP3s) and its queue; nothing else is touched."""
    try:
        with engine.begin() as connection:
            ids = connection.execute(text("SELECT id FROM audio_messages WHERE account_sid = :a AND media_key IS NOT"
                                          " NULL"), {"a": account_sid}).scalars().all()
            for audit_id in ids:
                connection.execute(text("DELETE FROM stored_media WHERE key LIKE :k"), {"k": f"audio/{audit_id}/%"})
            connection.execute(text("DELETE FROM audio_messages WHERE account_sid = :a"), {"a": account_sid})
    except Exception as exc:  # noqa: BLE001 - report, do not hide the bench's own result
        print(f"cleanup of the bench rows failed: {exc}")
    if redis_url:
        try:
            from redis import Redis
            from rq import Queue

            Queue(queue_name, connection=Redis.from_url(redis_url)).delete(delete_jobs=True)
        except Exception as exc:  # noqa: BLE001
            print(f"cleanup of the bench queue failed: {exc}")
    engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
