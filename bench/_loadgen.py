"""The load bench's measurement: closed-loop load over keep-alive connections (each connection sends its next request
as soon as the previous one is answered), by wrk when it is on PATH, else by the asyncio generator; a measured
round adds the server's CPU per request; targets measured side by side take turns, round by round.

Either generator shares the 2 cores with the servers, as any load generator on one machine does; the bare run pays
the same price, which the side-by-side ratio cancels. Every run is bounded in time and in requests, and all traffic
goes to 127.0.0.1.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field

import _asyncio_loadgen
from _servers import access_log_path, web_cpu_seconds
from _webhooks import HOST, PATH

CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
LOADGEN = os.environ.get("BENCH_LOADGEN", "auto").lower()
REQUEST_TIMEOUT_S = 10.0
# A round's list holds at most this many requests per second of the round (a bound above anything this machine
# serves: the bare route does ~5000/s, the webhook ~3000/s); a list that runs out fails the run rather than resend
# webhooks.
WRK_MAX_RATE = 6000
WRK_THREADS = 2
PERCENTILES = (50, 75, 90, 99)  # what wrk --latency reports; 100 stands for the maximum


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least `fraction` of the values at or below it."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass
class LoadResult:
    label: str
    completed: int = 0
    elapsed: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    percentiles_ms: dict[int, float] = field(default_factory=dict)  # wrk reports percentiles, not samples
    generator: str = ""
    generator_cpu: float | None = None  # CPU seconds wrk itself used: it shares the cores with the servers
    server_cpu_us: float | None = None  # the web processes' CPU per request, in measured rounds
    rounds: list[LoadResult] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values()) + sum(n for status, n in self.statuses.items() if status != 200)

    @property
    def rps(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0

    def ms(self, pct: int) -> float:
        return self.percentiles_ms.get(pct, float("nan"))


class Source:
    """The requests a target gets: each once in order (`cycle=False`: every webhook a new row, up to `limit`), or
    round and round (the bare route; redeliveries)."""

    def __init__(self, requests_: list[bytes], limit: int, cycle: bool):
        self.requests, self.limit, self.cycle = requests_, limit, cycle
        self.index = 0

    def next(self) -> bytes | None:
        if self.index >= self.limit or (not self.cycle and self.index >= len(self.requests)):
            return None
        request = self.requests[self.index % len(self.requests)]
        self.index += 1
        return request


def use_wrk() -> bool:
    if LOADGEN == "python":
        return False
    found = shutil.which("wrk") is not None
    if LOADGEN == "wrk" and not found:
        raise SystemExit("BENCH_LOADGEN=wrk but wrk is not on PATH")
    return found


def run_load(
    port: int, source: Source, seconds: float, label: str, workdir: str, stop: threading.Event | None = None
) -> LoadResult:
    """One run of closed-loop load; `stop` ends it early (the asyncio generator only: wrk runs its `seconds`)."""
    if use_wrk():
        return wrk_load(port, source, seconds, label, workdir)
    samples = _asyncio_loadgen.run(HOST, port, source, seconds, CONNECTIONS, REQUEST_TIMEOUT_S, stop)
    latencies = samples.latencies
    return LoadResult(
        label,
        completed=len(latencies),
        elapsed=samples.elapsed,
        statuses=samples.statuses,
        errors=samples.errors,
        generator=f"python asyncio, {CONNECTIONS} connections",
        percentiles_ms={
            **{pct: percentile(latencies, pct / 100) * 1000 for pct in PERCENTILES},
            100: max(latencies, default=float("nan")) * 1000,
        },
    )


def measure_round(port: int, source: Source, seconds: float, label: str, workdir: str, access_log: str) -> LoadResult:
    """One round, with the server's CPU per request (`server_cpu_us`): the same code on this machine costs more
    CPU per request in its slow phases."""
    cpu_before = web_cpu_seconds(access_log)
    result = run_load(port, source, seconds, label, workdir)
    result.server_cpu_us = (web_cpu_seconds(access_log) - cpu_before) / max(1, result.completed) * 1e6
    return result


def side_by_side(
    check_alive, targets: list[tuple[str, int, Source]], workdir: str, warmup_s: float, rounds: int, seconds: float
) -> dict[str, tuple[LoadResult, LoadResult]]:
    """Each target warmed up, then `rounds` rounds of `seconds` each, the targets in turn: this machine's speed
    drifts by a quarter from minute to minute, and alternating puts each target through the same drift.
    Answers {label: (warm-up, the rounds combined)}."""
    warmups = {label: run_load(port, source, warmup_s, f"{label}-warmup", workdir) for label, port, source in targets}
    measured: dict[str, list[LoadResult]] = {label: [] for label, _, _ in targets}
    for number in range(1, rounds + 1):
        for label, port, source in targets:
            measured[label].append(
                measure_round(port, source, seconds, f"{label}-{number}", workdir, access_log_path(workdir, label))
            )
            check_alive()
    return {label: (warmups[label], combine(label, measured[label])) for label, _, _ in targets}


def combine(label: str, rounds: list[LoadResult]) -> LoadResult:
    """All rounds as one: requests and time added up; latency percentiles the median round's, the maximum the
    largest."""
    result = LoadResult(label, rounds=rounds, generator=rounds[0].generator)
    for one in rounds:
        result.completed += one.completed
        result.elapsed += one.elapsed
        result.statuses.update(one.statuses)
        result.errors.update(one.errors)
    result.percentiles_ms = {
        pct: (max if pct == 100 else statistics.median)(one.ms(pct) for one in rounds)
        for pct in rounds[0].percentiles_ms
    }
    return result


# -- wrk ------------------------------------------------------------------------------------------------------

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


def wrk_load(port: int, source: Source, seconds: float, label: str, workdir: str) -> LoadResult:
    """wrk 4.x, time-bounded. Each thread's requests are a Lua table in a file of its own holding only its share
    of what the round can use: wrk starts thread 0 before it reads thread 1's script, and one table of every
    remaining webhook (over 100 MB), parsed there and kept in each thread's heap, is CPU the servers would not get.
    Its script reports the furthest request handed out, and the next run starts past it, so no webhook is sent
    twice (a round that runs out fails the run)."""
    wanted = source.requests
    if not source.cycle:
        wanted = source.requests[source.index : min(source.limit, source.index + int(seconds * WRK_MAX_RATE))]
        if not wanted:
            raise SystemExit(f"{label}: no webhook left to send (raise BENCH_MAX_REQUESTS / AB_MAX_REQUESTS)")
    path_pattern = os.path.join(workdir, f"requests-{label}-%d.lua")
    for thread in range(WRK_THREADS):
        with open(path_pattern % thread, "w") as handle:
            handle.write("return {\n")
            for request in wanted[thread::WRK_THREADS]:
                handle.write(_lua_string(request) + ",\n")
            handle.write("}\n")
    script = os.path.join(workdir, f"wrk-{label}.lua")
    with open(script, "w") as handle:
        handle.write(WRK_LUA % {"path_pattern": json.dumps(path_pattern), "threads": WRK_THREADS})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(
            [
                "wrk",
                "-t",
                str(WRK_THREADS),
                "-c",
                str(CONNECTIONS),
                "-d",
                f"{seconds:g}s",
                "--latency",
                "--timeout",
                f"{REQUEST_TIMEOUT_S:g}s",
                "-s",
                script,
                f"http://{HOST}:{port}{PATH}",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
    finally:
        for thread in range(WRK_THREADS):
            os.unlink(path_pattern % thread)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if " requests in " not in done.stdout:
        raise SystemExit(f"{label}: wrk did not run (exit {done.returncode}): {done.stderr or done.stdout}")
    result = _parse_wrk(label, done.stdout)
    result.generator_cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    furthest = re.search(r"furthest request: (-?\d+)", done.stdout)
    handed_out = int(furthest.group(1)) + 1 if furthest else result.completed
    if not source.cycle and handed_out > len(wanted):
        raise SystemExit(f"{label}: wrk ran through all {len(wanted)} webhooks of the round and resent some")
    source.index += handed_out
    return result


def _lua_string(request: bytes) -> str:
    return (
        '"'
        + request.decode("latin-1").replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r").replace("\n", "\\n")
        + '"'
    )


def _parse_wrk(label: str, out: str) -> LoadResult:
    result = LoadResult(label, generator=f"wrk, {WRK_THREADS} threads, {CONNECTIONS} connections")
    result.completed = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))
    elapsed = re.search(r"requests in ([\d.]+)(m?s|m)\b", out)
    result.elapsed = float(elapsed.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[elapsed.group(2)]
    to_ms = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
    for pct, number, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        result.percentiles_ms[int(pct)] = float(number) * to_ms[unit]
    maximum = re.search(r"^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out, re.M)
    if maximum:
        result.percentiles_ms[100] = float(maximum.group(1)) * to_ms[maximum.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result.statuses[200] = result.completed - (int(non2xx.group(1)) if non2xx else 0)
    if non2xx:
        result.statuses["non-2xx"] = int(non2xx.group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        for name, count in zip(("connect", "read", "write", "timeout"), map(int, errors.groups())):
            if count:
                result.errors[f"socket {name}"] = count
    return result
