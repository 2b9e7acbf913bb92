"""Operators' view: request ids, JSON logs tagged with the audit id, Prometheus metrics, health."""

import json
import logging

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.audio_samples import make_audio
from tests.helpers.service import run_jobs
from webhook_app.observability import ContextFilter, JsonFormatter, audit_id_var, request_id_var


def test_request_id_is_kept_from_the_router_or_made_up(client):
    assert client.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    made_up = client.get("/healthz").headers["X-Request-Id"]
    assert len(made_up) == 32
    forged = "<script>alert(1)</script>"
    assert client.get("/healthz", headers={"X-Request-Id": forged}).headers["X-Request-Id"] != forged


def test_log_lines_are_json_with_request_and_audit_ids():
    record = logging.LogRecord("webhook_app.inbound", logging.WARNING, __file__, 1, "audit %s failed", (7,), None)
    request_token, audit_token = request_id_var.set("req-1"), audit_id_var.set(7)
    try:
        ContextFilter().filter(record)
        entry = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(request_token)
        audit_id_var.reset(audit_token)
    assert entry["msg"] == "audit 7 failed" and entry["level"] == "warning"
    assert entry["request_id"] == "req-1" and entry["audit_id"] == 7 and entry["ts"].endswith("Z")


def test_job_logs_carry_the_audit_id(deliver, app, caplog, tmp_path):
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=1.0)
    caplog.set_level(logging.INFO, logger="webhook_app")
    caplog.handler.addFilter(ContextFilter())
    deliver(source, "audio/ogg; codecs=opus")
    run_jobs(app)
    ready = [r for r in caplog.records if "ready:" in r.getMessage()]
    assert ready and ready[0].audit_id is not None


def test_metrics_in_prometheus_text_format(client, app, deliver, tmp_path):
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=1.0)
    deliver(source, "audio/ogg; codecs=opus")
    bad = tmp_path / "bad.ogg"
    bad.write_text("nope")
    deliver(bad, "audio/ogg")
    run_jobs(app)
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    samples = scrape(response)
    assert samples[("audio_messages", (("channel", "whatsapp"), ("direction", "inbound"), ("status", "ready")))] == 1
    assert samples[("audio_messages", (("channel", "whatsapp"), ("direction", "inbound"), ("status", "failed")))] == 1
    assert samples[("audio_job_retries_total", ())] == 0 and ("audio_queue_depth", ()) in samples
    assert samples[("audio_processing_seconds_count", ())] == 2
    assert samples[("audio_queue_up", ())] == 1
    assert samples[("audio_transcripts_queue_depth", ())] == 0  # the transcripts lane, beside playback's


def scrape(response) -> dict:
    """{(sample name, sorted labels): value}, read by prometheus_client's own parser of the text format."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def test_metrics_count_requests_and_transcodes_of_this_process(client, app, deliver, tmp_path):
    before = scrape(client.get("/metrics"))
    deliver(make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=1.0), "audio/ogg; codecs=opus")
    run_jobs(app)
    client.get("/no/such/page")
    after = scrape(client.get("/metrics"))

    def grew(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("http_requests_total", method="GET", endpoint="observability.metrics", status="200") == 1
    assert grew("http_requests_total", method="GET", endpoint="unrouted", status="404") == 1
    assert grew("http_request_duration_seconds_count", endpoint="unrouted") == 1
    assert grew("audio_transcode_seconds_count", outcome="ok") == 1


def test_metrics_say_when_the_queue_does_not_answer(client, app):
    class Down:
        def depth(self):
            raise ConnectionError("Redis is down")

    app.extensions["jobs"], runner = Down(), app.extensions["jobs"]
    try:
        samples = scrape(client.get("/metrics"))
    finally:
        app.extensions["jobs"] = runner
    assert samples[("audio_queue_up", ())] == 0 and ("audio_queue_depth", ()) not in samples


def test_metrics_token_when_configured(client, app):
    app.config["METRICS_TOKEN"] = "scrape-me"
    refused = client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401  # in the one error shape, as every error (it was text/plain)
    assert refused.get_json()["error"]["code"] == "unauthorized"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200


def test_a_method_metrics_does_not_take_is_405_in_the_one_error_shape(client):
    response = client.post("/metrics")  # was werkzeug's HTML page
    assert response.status_code == 405 and response.headers["Allow"]
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_log_timestamps_are_utc_whatever_the_local_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "America/Sao_Paulo")
    time.tzset()
    try:
        record = logging.LogRecord("webhook_app", logging.INFO, __file__, 1, "hello", (), None)
        record.created, record.msecs = 1_764_381_600.25, 250.0  # 2025-11-29T02:00:00.250Z
        formatter = JsonFormatter()
        assert json.loads(formatter.format(record))["ts"] == "2025-11-29T02:00:00.250Z"
        record.created, record.msecs = 1_764_381_601.5, 500.0  # the next second is not the cached one
        assert json.loads(formatter.format(record))["ts"] == "2025-11-29T02:00:01.500Z"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
