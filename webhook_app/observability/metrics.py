"""The Prometheus metrics each process counts, defined once, and how /metrics adds the processes up.

One process (`flask serve`, `make run`, the tests) counts in memory. Several processes serving one /metrics
(gunicorn's workers, and RQ workers on the same machine) count in files in `PROMETHEUS_MULTIPROC_DIR`, which must be
set before this module is first imported: gunicorn.conf.py sets it for its workers, and /metrics sums the files of
every process that wrote there. What the database or the queue knows (messages by status, queue depth) is not counted
here but read at scrape time (observability.StateCollector), so it is the same whichever process answers.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re

from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from ..runtime.scratch import process_running

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None

_IMPORTED_BY = os.getpid()


def writer_id() -> int | str:
    """Whose files this process writes. RQ forks a work horse per job: files per horse pid would pile up by the
    thousand (and /metrics reads every one). A worker runs one job at a time, and the one that lost Redis waits for
    its horse (jobs/worker.py), so all the horses of one worker can take turns on one set of files."""
    pid = os.getpid()
    if pid == _IMPORTED_BY:
        return pid
    # Only a forked process gets here: the transcode module (imported by scripts and web processes) need not load
    # RQ and redis-py for the rare case.
    from rq import get_current_job

    if get_current_job() is not None:
        return f"{os.getppid()}-horses"
    return pid


if MULTIPROC_DIR:
    os.makedirs(MULTIPROC_DIR, exist_ok=True)  # an RQ worker may start before the web process made it
    # prometheus_client chose os.getpid as the writer at import; the same value class with our writer instead.
    values.ValueClass = values.MultiProcessValue(process_identifier=writer_id)

# Not prometheus_client's global registry: that one also carries the process and platform collectors, which in
# multi-process mode would describe only the process that answers the scrape.
REGISTRY = CollectorRegistry()

HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by method, Flask endpoint and status code.",
    ["method", "endpoint", "status"],
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time from request start to response, by Flask endpoint.",
    ["endpoint"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TRANSCODE_SECONDS = Histogram(
    "audio_transcode_seconds",
    "Wall time per transcode to MP3, by outcome (ok, not_audio, timeout, error).",
    ["outcome"],
    registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)


def process_metrics(path: str | None = MULTIPROC_DIR) -> Collector:
    """What the processes counted: the sum over `path`'s files in multi-process mode, else this process's own."""
    if path:
        return MultiProcessCollector(None, path=path)
    return REGISTRY


WRITER_FILE = re.compile(r"_(\d+)(?:-horses)?\.db$")


def prepare_directory(path: str) -> None:
    """Create the directory, and remove the files of processes that are gone (a previous run's): their counts
    belong to a run that ended. Files of live processes stay, such as those of a worker sharing the directory."""
    os.makedirs(path, exist_ok=True)
    for name in glob.glob(os.path.join(path, "*.db")):
        match = WRITER_FILE.search(name)
        if match and not process_running(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)
