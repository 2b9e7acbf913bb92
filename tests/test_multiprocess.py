"""Several processes at once, as deployed: 2 gunicorn web workers and 2 RQ workers on PostgreSQL and Redis.

200 customer voice notes reach the service over HTTP concurrently, a third of them delivered twice (Twilio
retries, interleaved with and sometimes racing the first delivery). Every one must end `ready`, exactly once:
one row per (message, media), one attempt each, every webhook answered 200.
"""

from __future__ import annotations

import os
import random
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.helpers.audio_samples import KINDS, content_type, make_audio
from tests.helpers.processes import SERVICE_VARIABLES, Processes, free_port, wait_until
from tests.helpers.service import audio_rows
from webhook_app.sandbox import Sandbox

REAL_POSTGRES = os.environ.get("TEST_DATABASE_URL")
REAL_REDIS = os.environ.get("TEST_REDIS_URL")

pytestmark = pytest.mark.skipif(
    not (REAL_POSTGRES and REAL_REDIS),
    reason="needs TEST_DATABASE_URL (PostgreSQL) and TEST_REDIS_URL (Redis) for real multi-process runs "
    "(CI's second suite runs it)",
)

NOTES = 200
DUPLICATED = NOTES // 3
DELIVERY_THREADS = 32
SETTLE_TIMEOUT_S = 180
TERMINAL = ("ready", "failed")
# (channel, sample kind) per conversation: a handful of conversations across the customer channels.
CONVERSATIONS = [
    ("whatsapp", "whatsapp_ogg"),
    ("whatsapp", "whatsapp_ogg"),
    ("sms", "amr"),
    ("sms", "amr"),
    ("webchat", "whatsapp_ogg"),
    ("webchat", "whatsapp_ogg"),
]


@pytest.fixture
def service(app, tmp_path):
    """2 gunicorn web workers and 2 RQ workers on the session's migrated database, a fresh queue, one sandbox."""
    from redis import Redis
    from rq import Queue, Worker

    queue_name = f"mp-{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    env.update(
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=REAL_REDIS,
        RQ_QUEUE=queue_name,
        SANDBOX_DB=app.config["SANDBOX_DB"],
        SECRET_KEY="test-secret",
        LOG_LEVEL="WARNING",
        LOG_FORMAT="text",
    )
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    processes = Processes(env, tmp_path)
    redis = Redis.from_url(REAL_REDIS)
    queue = Queue(queue_name, connection=redis)
    try:
        processes.start(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "webhook_app:create_app()",
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{port}",
                "--timeout",
                "60",
            ],
        )
        for number in (1, 2):
            processes.start(f"worker{number}", [sys.executable, "-m", "flask", "--app", "webhook_app", "worker"])

        processes.wait_for_http(base_url + "/healthz", "gunicorn to answer /healthz")

        def workers_ready():
            processes.check_alive()
            return len(Worker.all(queue=queue)) >= 2

        wait_until(workers_ready, 60, "both RQ workers to register", processes.logs)
        yield {"base_url": base_url, "processes": processes, "queue": queue}
    finally:
        processes.stop()
        try:
            queue.delete(delete_jobs=True)
        except Exception:  # noqa: BLE001 - cleanup only
            pass
        redis.close()


@pytest.mark.slow
def test_200_voice_notes_with_redeliveries_across_web_and_rq_workers(app, service, tmp_path):
    processes: Processes = service["processes"]
    sandbox = Sandbox(app.config["SANDBOX_DB"])
    url = service["base_url"] + "/twilio/conversations/post-event"

    samples = {
        kind: Path(make_audio(tmp_path / f"note{KINDS[kind][0]}", kind, seconds=1.0)).read_bytes()
        for kind in {kind for _, kind in CONVERSATIONS}
    }
    conversations = [
        (sandbox.create_conversation(f"Customer {i} ({channel})", channel)["sid"], channel, kind)
        for i, (channel, kind) in enumerate(CONVERSATIONS)
    ]
    notes = []  # (params, expected channel)
    for i in range(NOTES):
        conversation_sid, channel, kind = conversations[i % len(conversations)]
        params = sandbox.customer_sends_media(
            conversation_sid, samples[kind], content_type(kind), f"voice-{i}{KINDS[kind][0]}"
        )
        notes.append((params, channel))

    # A third delivered twice: half of those back to back (racing the first delivery), half anywhere later.
    rng = random.Random(5)
    twice = set(rng.sample(range(NOTES), DUPLICATED))
    units = [[i, i] if i in twice and i % 2 else [i] for i in range(NOTES)]
    rng.shuffle(units)
    deliveries = [i for unit in units for i in unit]
    for i in sorted(twice):
        if i % 2 == 0:
            deliveries.insert(rng.randrange(deliveries.index(i) + 1, len(deliveries) + 1), i)
    assert len(deliveries) == NOTES + DUPLICATED

    signatures = [sandbox.sign(url, params) for params, _ in notes]

    def deliver(i: int) -> tuple[int, int, str]:
        params = notes[i][0]
        try:
            response = requests.post(url, data=params, headers={"X-Twilio-Signature": signatures[i]}, timeout=30)
        except requests.RequestException as exc:
            return i, 0, f"{type(exc).__name__}: {exc}"
        return i, response.status_code, response.text[:300]

    with ThreadPoolExecutor(max_workers=DELIVERY_THREADS) as pool:
        answers = list(pool.map(deliver, deliveries))
    bad = [answer for answer in answers if answer[1] != 200]
    assert not bad, f"{len(bad)} webhook(s) not answered 200, e.g. {bad[:5]}\n{processes.logs()}"

    def describe(rows) -> str:
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        stuck = [
            (row.id, row.status, row.source, row.dispatched_at, row.attempts, row.error)
            for row in rows
            if row.status not in TERMINAL
        ]
        return f"{len(rows)} rows by status {counts}; queue depth {service['queue'].count}; unfinished {stuck[:10]}"

    def settled():
        processes.check_alive()
        rows = audio_rows(app)
        return rows if len(rows) >= NOTES and all(row.status in TERMINAL for row in rows) else None

    rows = wait_until(
        settled,
        SETTLE_TIMEOUT_S,
        "every row to end ready or failed",
        lambda: describe(audio_rows(app)) + "\n" + processes.logs(),
        interval=0.5,
    )

    context = f"{describe(rows)}\n{processes.logs()}"
    assert len(rows) == NOTES, context
    keys = {(row.message_sid, row.media_sid) for row in rows}
    expected = {(params["MessageSid"], json_media_sid(params)) for params, _ in notes}
    assert keys == expected, context
    failed = [(row.id, row.error) for row in rows if row.status != "ready"]
    assert not failed, f"{len(failed)} not ready, e.g. {failed[:5]}\n{context}"
    repeated = [(row.id, row.attempts) for row in rows if row.attempts != 1]
    assert not repeated, f"rows worked on more than once (duplicate work): {repeated[:10]}\n{context}"
    channel_by_message = {params["MessageSid"]: channel for params, channel in notes}
    wrong_channel = [
        (row.id, row.channel, channel_by_message[row.message_sid])
        for row in rows
        if row.channel != channel_by_message[row.message_sid]
    ]
    assert not wrong_channel, f"{wrong_channel[:10]}\n{context}"
    assert all(row.mp3_size_bytes and row.duration_s and abs(row.duration_s - 1.0) < 0.2 for row in rows), context
    processes.check_alive()


def json_media_sid(params: dict) -> str:
    import json

    (media,) = json.loads(params["Media"])
    return media["Sid"]
