"""/metrics adds up what several processes counted: gunicorn's workers (gunicorn.conf.py gives them a folder of
their own) and RQ's work horses (one set of files per worker, not one per job)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.processes import ROOT, SERVICE_VARIABLES, Processes, RedisServer, descendants, free_port, wait_until
from webhook_app.observability.metrics import prepare_directory, process_metrics, writer_id


def samples_of(collector) -> dict:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.collect()
        for sample in family.samples
    }


def unrouted_404s(base_url: str) -> float:
    text = requests.get(base_url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_requests_total" and sample.labels == {
                "method": "GET",
                "endpoint": "unrouted",
                "status": "404",
            }:
                return sample.value
    return 0


def run_python(code: str, directory: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, check=True, timeout=60)


def test_the_counts_of_two_processes_are_summed(tmp_path):
    directory = tmp_path / "metrics"
    code = """
        import sys
        from webhook_app.observability.metrics import TRANSCODE_SECONDS
        from webhook_app.observability import count_request

        for _ in range({n}):
            count_request("POST", "conversations.post_event", 200, 0.004)
        TRANSCODE_SECONDS.labels("ok").observe({n})
    """
    run_python(code.format(n=3), directory)
    run_python(code.format(n=4), directory)
    assert len(list(directory.glob("counter_*.db"))) == 2  # one file per process
    samples = samples_of(process_metrics(str(directory)))
    labels = (("endpoint", "conversations.post_event"), ("method", "POST"), ("status", "200"))
    assert samples[("http_requests_total", labels)] == 7
    assert samples[("http_request_duration_seconds_count", (("endpoint", "conversations.post_event"),))] == 7
    assert samples[("audio_transcode_seconds_count", (("outcome", "ok"),))] == 2
    assert samples[("audio_transcode_seconds_sum", (("outcome", "ok"),))] == 7


@pytest.mark.slow
def test_gunicorn_workers_are_summed_and_dead_workers_still_count(app, tmp_path):
    """Two workers; both are then killed and replaced. A total above what the new workers served can only come
    from adding up every process's files, including those of workers that are gone (child_exit)."""
    env = {k: v for k, v in os.environ.items() if k not in (*SERVICE_VARIABLES, "PROMETHEUS_MULTIPROC_DIR")}
    env.update(
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        SANDBOX_DB=app.config["SANDBOX_DB"],
        SECRET_KEY="test-secret",
        WEB_CONCURRENCY="2",
        PORT=str(free_port()),
        TMPDIR=str(tmp_path),
    )
    processes = Processes(env, tmp_path)
    master = processes.start("web", [sys.executable, "-m", "gunicorn", "webhook_app:create_app()"])
    base_url = f"http://127.0.0.1:{env['PORT']}"
    directory = tmp_path / f"webhook_app-metrics-{master.pid}"
    try:
        processes.wait_for_http(base_url + "/healthz", "gunicorn to answer /healthz")
        for _ in range(20):
            assert requests.get(base_url + "/no/such/page", timeout=5).status_code == 404
        assert unrouted_404s(base_url) == 20
        first_workers = wait_until(
            lambda: len(descendants(master.pid)) == 2 and descendants(master.pid),
            30,
            "two gunicorn workers",
            processes.logs,
        )
        for pid in first_workers:
            os.kill(pid, signal.SIGKILL)

        def replaced():
            workers = descendants(master.pid)
            return len(workers) == 2 and not set(workers) & set(first_workers)

        wait_until(replaced, 30, "two new workers", processes.logs)
        processes.wait_for_http(base_url + "/healthz", "the new workers to answer")
        for _ in range(5):
            requests.get(base_url + "/no/such/page", timeout=5)
        assert unrouted_404s(base_url) == 25
        assert directory.is_dir()
    finally:
        processes.stop()
    assert not directory.exists(), "the master's metrics folder outlived it"


@pytest.mark.slow
def test_rq_work_horses_of_one_worker_share_one_set_of_files(tmp_path):
    """RQ forks a work horse per job; with a file set per horse pid, /metrics would read thousands of files."""
    if "TEST_REDIS_URL" in os.environ:
        redis_url, server = os.environ["TEST_REDIS_URL"], None
    elif os.path.exists("/usr/bin/redis-server"):
        server = RedisServer(tmp_path)
        server.start()
        redis_url = server.url
    else:
        pytest.skip("no Redis: neither TEST_REDIS_URL nor redis-server")
    directory = tmp_path / "metrics"
    queue = f"metrics-test-{os.getpid()}"
    try:
        run_python(
            f"""
            from redis import Redis
            from rq import Queue, Worker
            import webhook_app.observability.metrics

            connection = Redis.from_url({redis_url!r})
            queue = Queue({queue!r}, connection=connection)
            for seconds in (1, 2, 3):
                queue.enqueue("tests.observability.test_metrics_multiprocess.transcoded", seconds)
            Worker([queue], connection=connection).work(burst=True)
            assert queue.count == 0 and queue.failed_job_registry.count == 0
        """,
            directory,
        )
    finally:
        if server is not None:
            server.kill()
    files = sorted(path.name for path in directory.glob("histogram_*.db"))
    assert len(files) == 1 and files[0].endswith("-horses.db"), files
    samples = samples_of(process_metrics(str(directory)))
    assert samples[("audio_transcode_seconds_count", (("outcome", "ok"),))] == 3
    assert samples[("audio_transcode_seconds_sum", (("outcome", "ok"),))] == 6


def transcoded(seconds: float) -> None:
    """An RQ job (run in a work horse) that counts like a transcode."""
    from webhook_app.observability.metrics import TRANSCODE_SECONDS

    TRANSCODE_SECONDS.labels("ok").observe(seconds)


def test_a_new_run_drops_the_files_of_processes_that_are_gone(tmp_path):
    dead_pid = subprocess.Popen(["true"])
    dead_pid.wait()
    for name in (
        f"counter_{dead_pid.pid}.db",
        f"histogram_{dead_pid.pid}-horses.db",
        f"counter_{os.getpid()}.db",
        f"histogram_{os.getpid()}-horses.db",
    ):
        (tmp_path / name).write_bytes(b"")
    prepare_directory(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"counter_{os.getpid()}.db",
        f"histogram_{os.getpid()}-horses.db",
    ]


def test_a_process_writes_under_its_own_pid_outside_rq_jobs():
    assert writer_id() == os.getpid()
