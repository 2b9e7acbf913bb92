"""Two configurations of the webhook server under the load bench's load, in paired rounds (not part of make bench).

    AB_B_LOG_FORMAT=text .venv/bin/python bench/ab_load.py
    AB_B_GUNICORN_CMD_ARGS="--workers 3" AB_ROUNDS=8 .venv/bin/python bench/ab_load.py

This machine's speed drifts by a quarter from minute to minute, more than most changes are worth, so two runs of
load_bench.py minutes apart cannot tell a 5 % change from the drift. Here servers A and B are up at once and get
the same kind of load (load_bench.py's signed onMessageAdded webhooks, a new row each, 50 connections, wrk or the
Python generator) in short alternating rounds, A B B A A B ..., and each pair of neighbouring rounds is compared:
throughput, the web processes' CPU per request (from /proc), p50 and p99. The medians of the paired ratios are the
answer; the spread of the ratios says whether it is one (the same server twice gave p99 medians of 0.86 and
pairs from 0.64 to 1.23: trust a p99 ratio when most pairs agree).

AB_A_<VAR> and AB_B_<VAR> set <VAR> in that server's environment (its gunicorn reads GUNICORN_CMD_ARGS, the app
its own variables); AB_A_NICE/AB_B_NICE run it under nice. AB_ROUNDS (6) pairs of AB_SECONDS (4) each, at most
AB_MAX_REQUESTS (4000 per second of load) webhooks per server. PostgreSQL and Redis as load_bench.py picks them.
The servers' logs are deleted after a clean run (AB_KEEP_LOGS=1 keeps them, to read the access logs' times).
"""

from __future__ import annotations

import os
import secrets
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _servers as servers  # noqa: E402
from _loadgen import Source, measure_round, run_load  # noqa: E402
from _webhooks import load_templates, load_webhooks, raw_request  # noqa: E402

from tests.helpers.processes import Processes, free_port  # noqa: E402
from webhook_app.sandbox import Sandbox  # noqa: E402

ROUNDS = int(os.environ.get("AB_ROUNDS", "6"))
SECONDS = float(os.environ.get("AB_SECONDS", "4"))
# Each server's own webhooks, never resent (a resent one is a duplicate: no row, a cheaper request): enough for
# every round at 4000 req/s, above what this machine serves.
MAX_REQUESTS = int(os.environ.get("AB_MAX_REQUESTS", str(int(4000 * (ROUNDS * SECONDS + 2)))))
LABELS = ("A", "B")


def main() -> int:
    workdir = tempfile.mkdtemp(prefix="ab-load-")
    database_url, redis_url, backends = servers.choose_backends(workdir)
    queue_name = f"ab-{secrets.token_hex(4)}"
    base = servers.service_env(workdir, database_url, redis_url, queue_name)
    engine = servers.prepare_database(base)
    sandbox = Sandbox(base["SANDBOX_DB"])
    templates = load_templates(sandbox)
    targets, all_processes = {}, []
    errors = None  # None until every round ran: an interrupted run keeps its logs
    overrides = {
        label: {k[len(f"AB_{label}_") :]: v for k, v in os.environ.items() if k.startswith(f"AB_{label}_")}
        for label in LABELS
    }
    print(
        f"A/B load: {backends}; {ROUNDS} pairs of {SECONDS:g} s rounds; A {overrides['A'] or 'as is'}, "
        f"B {overrides['B'] or 'as is'}"
    )
    try:
        for label in LABELS:
            env = dict(base, **{k: v for k, v in overrides[label].items() if k != "NICE"})
            port = free_port()
            requests = [
                raw_request(port, body, signature)
                for body, signature, _ in load_webhooks(sandbox, templates, MAX_REQUESTS, port)
            ]
            processes = Processes(env, workdir)
            all_processes.append(processes)
            name = f"web{label}"
            servers.start_web(
                processes, "webhook_app:create_app()", port, workdir, name, nice=int(overrides[label].get("NICE", "0"))
            )
            targets[label] = (port, Source(requests, MAX_REQUESTS, cycle=False), servers.access_log_path(workdir, name))
        for label, (port, source, _) in targets.items():
            run_load(port, source, 2, f"{label}-warmup", workdir)
        results = {label: [] for label in LABELS}
        for number in range(ROUNDS):
            for label in LABELS if number % 2 == 0 else LABELS[::-1]:
                port, source, access_log = targets[label]
                result = measure_round(port, source, SECONDS, f"{label}-{number}", workdir, access_log)
                row = (result.rps, result.server_cpu_us, result.ms(50), result.ms(99), result.error_count)
                results[label].append(row)
                print(
                    f"{label} round {number + 1}: {row[0]:6.0f} req/s  CPU {row[1]:5.0f} us/request  p50 {row[2]:6.1f}"
                    f" ms  p99 {row[3]:6.1f} ms  errors {row[4]}",
                    flush=True,
                )
        print()
        for index, name in ((0, "req/s"), (1, "CPU us/request"), (2, "p50 ms"), (3, "p99 ms")):
            ratios = [b[index] / a[index] for a, b in zip(results["A"], results["B"]) if a[index]]
            medians = [statistics.median(row[index] for row in results[label]) for label in LABELS]
            print(
                f"B/A {name:15} median {statistics.median(ratios):5.2f}  (pairs: "
                f"{', '.join(f'{r:.2f}' for r in ratios)});  A {medians[0]:.1f}, B {medians[1]:.1f}"
            )
        errors = sum(row[4] for label in LABELS for row in results[label])
        return 1 if errors else 0
    finally:
        for processes in all_processes:
            processes.stop()
        servers.cleanup(engine, sandbox.account_sid, redis_url, queue_name)
        # The servers' logs (access logs: tens of MB a run) stay only when something went wrong.
        if errors == 0 and not os.environ.get("AB_KEEP_LOGS"):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"server logs kept in {workdir}")


if __name__ == "__main__":
    sys.exit(main())
