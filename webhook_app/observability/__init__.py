"""JSON logs with a request id and an audit id, and Prometheus metrics for operators.

The package: this module (logging and the /metrics view), metrics (what each process counts) and access_log
(gunicorn's access log in the same JSON shape).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Protocol, TextIO

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from ..extensions import db
from ..models import AudioMessage
from ..web.errors import ApiError
from .metrics import HTTP_REQUESTS, HTTP_SECONDS, process_metrics

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
audit_id_var: ContextVar[int | None] = ContextVar("audit_id", default=None)
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

bp = Blueprint("observability", __name__)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.audit_id = audit_id_var.get()
        return True


class UtcTimestamps:
    """`2026-11-29T19:53:13.123Z` for a time.time() value. One strftime per second, not per line: a busy web
    process writes an access line for every webhook."""

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")

    def __call__(self, created: float) -> str:
        second = int(created)
        if self._second[0] != second:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{self._second[1]}.{int((created - second) * 1000):03d}Z"


# What this process is when it is not the one its command names (the worker's transcription process): every log
# line says so, since it writes to its worker's output.
_process_role: str | None = None


def set_process_role(role: str | None) -> None:
    global _process_role
    _process_role = role


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self.timestamp = UtcTimestamps()

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("request_id", "audit_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if _process_role:
            entry["process"] = _process_role
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = [
            f"{key}={getattr(record, key)}"
            for key in ("request_id", "audit_id")
            if getattr(record, key, None) is not None
        ]
        if _process_role:
            tags.append(f"process={_process_role}")
        return f"{line} [{' '.join(tags)}]" if tags else line


class ServiceLogHandler(logging.StreamHandler[TextIO]):
    """The root logger's handler that configure_logging installs, found again by its mark (not added twice)."""

    _webhook_app = True


def configure_logging(level_name: str, log_format: str) -> None:
    """Logs go to stdout (12-factor); one handler on the root logger, configured once per process."""
    level = getattr(logging, str(level_name).upper(), logging.INFO)
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_webhook_app", False)), None)
    if handler is None:
        handler = ServiceLogHandler(sys.stdout)
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root.setLevel(level)
    logging.getLogger("webhook_app").setLevel(level)


def init_app(app: Flask) -> None:
    configure_logging(app.config.get("LOG_LEVEL", "INFO"), app.config.get("LOG_FORMAT", "json"))

    @app.before_request
    def assign_request_id() -> None:
        # Heroku's router sends X-Request-Id; keep it so router and app logs line up.
        incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
        g.request_id = request_id = incoming if REQUEST_ID.fullmatch(incoming) else os.urandom(16).hex()
        g.context_tokens = (request_id_var.set(request_id), audit_id_var.set(None))
        g.request_started = time.perf_counter()

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers["X-Request-Id"] = g.request_id
            count_request(
                request.method, request.endpoint, response.status_code, time.perf_counter() - g.request_started
            )
        return response

    @app.teardown_request
    def reset_context(exc: BaseException | None) -> None:
        tokens = g.pop("context_tokens", None)
        if tokens is not None:
            request_id_var.reset(tokens[0])
            audit_id_var.reset(tokens[1])

    app.register_blueprint(bp)
    if not app.config.get("TWILIO_SANDBOX") and not app.config.get("METRICS_TOKEN"):
        logging.getLogger(__name__).warning(
            "METRICS_TOKEN is not set: /metrics (queue depth, audio counts by status and channel) is open to anyone "
            "who reaches this service; set METRICS_TOKEN to require 'Authorization: Bearer <token>'"
        )


# The labelled children, looked up once: the webhook's hot path pays a dict lookup, not prometheus_client's
# label validation, per request.
_request_counters: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def count_request(method: str, endpoint: str | None, status: int, seconds: float) -> None:
    # Unrouted requests (404s, scanners) share one endpoint label, so that no path a client makes up becomes a
    # series; methods other than the usual ones too.
    key = (method if method in HTTP_METHODS else "other", endpoint or "unrouted", status)
    children = _request_counters.get(key)
    if children is None:
        children = _request_counters.setdefault(
            key, (HTTP_REQUESTS.labels(key[0], key[1], str(status)), HTTP_SECONDS.labels(key[1]))
        )
    children[0].inc()
    children[1].observe(seconds)


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def bind_audit_id(audit_id: int | None) -> None:
    """Tag every following log line of this request or job with the audit row it is about."""
    audit_id_var.set(audit_id)


@bp.get("/metrics")
def metrics() -> Response:
    token = current_app.config.get("METRICS_TOKEN")
    if token:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), token.encode()):
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <METRICS_TOKEN>")
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    scrape = Scrape(process_metrics(), StateCollector(current_app.extensions["jobs"]))
    return Response(encode(scrape), headers={"Content-Type": content_type})


class Scrape:
    """One exposition out of several collectors (generate_latest asks only for collect())."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


class QueueDepths(Protocol):
    """What /metrics reads of the job queue (jobs.queue's runners)."""

    def depth(self) -> int: ...

    def transcripts_depth(self) -> int: ...


class StateCollector:
    """What the database and the queue hold, read at scrape time: the same figures whichever process answers, and
    they cover the processes that cannot be scraped (workers on other dynos)."""

    def __init__(self, jobs: QueueDepths) -> None:
        self.jobs = jobs

    def collect(self) -> Iterator[Metric]:
        messages = GaugeMetricFamily(
            "audio_messages",
            "Audio messages by direction, channel and status (all processes, from the database).",
            labels=["direction", "channel", "status"],
        )
        counts = db.session.execute(
            select(AudioMessage.direction, AudioMessage.channel, AudioMessage.status, func.count()).group_by(
                AudioMessage.direction, AudioMessage.channel, AudioMessage.status
            )
        )
        for direction, channel, status, count in counts:
            messages.add_metric([direction, channel, status], count)
        yield messages
        retried, processed_ms, processed = db.session.execute(
            select(
                func.coalesce(func.sum(AudioMessage.attempts - 1).filter(AudioMessage.attempts > 1), 0),
                func.coalesce(func.sum(AudioMessage.processing_ms), 0),
                func.count(AudioMessage.processing_ms),
            )
        ).one()
        yield CounterMetricFamily(
            "audio_job_retries",
            "Job attempts beyond the first (transient Twilio errors, revived crashes).",
            value=retried,
        )
        yield SummaryMetricFamily(
            "audio_processing_seconds",
            "Time from start to ready/failed of finished audio messages.",
            count_value=processed,
            sum_value=(processed_ms or 0) / 1000,  # coalesce()d: never None, though typed so
        )
        try:
            depth = self.jobs.depth()
            transcripts_depth = self.jobs.transcripts_depth()
        except Exception:  # noqa: BLE001 - metrics must answer even while Redis is down
            yield GaugeMetricFamily("audio_queue_up", "Whether the job queue answers.", value=0)
            return
        yield GaugeMetricFamily("audio_queue_up", "Whether the job queue answers.", value=1)
        yield GaugeMetricFamily("audio_queue_depth", "Jobs waiting in the queue.", value=depth)
        yield GaugeMetricFamily(
            "audio_transcripts_queue_depth",
            "Transcription jobs waiting in their queue (in process: waiting or running).",
            value=transcripts_depth,
        )
