"""The Procfile's worker on real Redis runs transcription in a long-lived, non-forking process of its own
(jobs/worker.py): the model is loaded once for many notes, a killed transcription process is replaced and its
note transcribed again, and playback's queue never waits behind a transcription.

Needs TEST_REDIS_URL (skipped otherwise, as the other Redis-only tests), the transcribe extra and espeak-ng.
"""

from __future__ import annotations

import os
import re
import signal
import time
import uuid

import pytest
from sqlalchemy import select

from tests.helpers.audio_samples import make_audio
from tests.helpers.processes import Processes, wait_until
from tests.helpers.service import audio_rows, set_settings
from tests.helpers.speech_samples import concatenate, normalize, require_espeak, require_transcribe_extra, speak
from tests.helpers.webhooks import post_webhook
from tests.helpers.workers import start_worker
from webhook_app import create_app
from webhook_app.extensions import db
from webhook_app.models import Transcript

REAL_REDIS = os.environ.get("TEST_REDIS_URL")
pytestmark = pytest.mark.skipif(not REAL_REDIS, reason="needs TEST_REDIS_URL (Redis) for the Procfile's worker")

SENTENCE = "Hi, this is Maria. My account number is 4 7 2 9 1 5. Could you call me back this afternoon?"
LOADS = re.compile(r"transcript of audit (\d+) \w+: .*\(process (\d+), model loads (\d+)\)")
SETTLE_S = 180


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, str]:
    require_espeak()
    require_transcribe_extra()
    folder = tmp_path_factory.mktemp("speech")
    sentence = speak(folder / "sentence", SENTENCE, kind="whatsapp_ogg", pad_s=1.0)
    # About 70 s of speech: seconds of transcription, against about a second to make a short note playable.
    long = concatenate(folder / "long", [sentence] * 9, kind="whatsapp_ogg")
    return {"sentence": sentence, "long": long, "short": make_audio(folder / "short.amr", "amr", seconds=2.0)}


@pytest.fixture
def web(app):
    """The web side on TEST_REDIS_URL with a queue of its own, driven through a test client."""
    service = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "REDIS_URL": REAL_REDIS,
            "RQ_QUEUE": f"tw-{uuid.uuid4().hex[:8]}",
            "SANDBOX_DB": app.config["SANDBOX_DB"],
            "SECRET_KEY": "test-secret",
            "SETTINGS_CHECK_INTERVAL_S": 0,
        }
    )
    yield service
    runner = service.extensions["jobs"]
    for queue in runner.queues:
        queue.delete(delete_jobs=True)
    with service.app_context():
        db.session.remove()
        db.engine.dispose()


def start_transcribing_worker(web, tmp_path, **env_overrides) -> Processes:
    """The Procfile's worker with short maintenance and retry intervals, on the bundled model."""
    return start_worker(
        web,
        tmp_path,
        MAINTENANCE_INTERVAL_S=1,
        RELAY_POLL_S=1,
        JOB_RETRY_BASE_S=1,
        HF_HUB_OFFLINE=1,
        **env_overrides,
    )


def rq_workers(web, processes: Processes):
    """(the workers on the audio queue, the workers on the transcripts queue), once both have registered."""
    from rq import Worker

    runner = web.extensions["jobs"]
    found = {}

    def registered():
        processes.check_alive()
        found["audio"] = Worker.all(queue=runner.queue)
        found["transcripts"] = Worker.all(queue=runner.transcripts_queue)
        return found["audio"] and found["transcripts"]

    wait_until(registered, 90, "the worker and its transcription process to register", processes.logs)
    return found["audio"], found["transcripts"]


def send(web, sample: str, channel: str = "whatsapp", content_type: str = "audio/ogg") -> str:
    sandbox = web.extensions["twilio"].sandbox
    conversation = sandbox.create_conversation("Customer", channel)["sid"]
    with open(sample, "rb") as handle:
        params = sandbox.customer_sends_media(conversation, handle.read(), content_type, os.path.basename(sample))
    response = post_webhook(web.test_client(), sandbox, params)
    assert response.status_code == 200, response.get_data(as_text=True)
    return params["MessageSid"]


def row_of(web, message_sid: str):
    return next((row for row in audio_rows(web) if row.message_sid == message_sid), None)


def transcript_of(web, message_sid: str) -> Transcript | None:
    row = row_of(web, message_sid)
    if row is None:
        return None
    with web.app_context():
        transcript = db.session.scalar(select(Transcript).where(Transcript.audio_message_id == row.id))
        db.session.expunge_all()
        return transcript


def wait_for_transcript(web, processes, message_sid: str, statuses=("done",), timeout=SETTLE_S) -> Transcript:
    def settled():
        processes.check_alive()
        transcript = transcript_of(web, message_sid)
        return transcript if transcript is not None and transcript.status in statuses else None

    return wait_until(
        settled, timeout, f"the transcript of {message_sid} to be {'/'.join(statuses)}", processes.logs, interval=0.2
    )


@pytest.mark.slow
def test_the_procfile_worker_loads_the_model_once_for_many_notes(web, clips, tmp_path):
    set_settings(web, "whatsapp", transcribe=True)
    processes = start_transcribing_worker(web, tmp_path)
    try:
        audio, transcripts = rq_workers(web, processes)
        worker_pid = processes.started[0][1].pid
        # Two processes: the Procfile's worker on playback's queue only, its transcription process on the other.
        assert [w.pid for w in audio] == [worker_pid] and [w.pid for w in transcripts] != [worker_pid]
        assert [q.name for q in audio[0].queues] == [web.extensions["jobs"].queue.name]
        assert [q.name for q in transcripts[0].queues] == [web.extensions["jobs"].transcripts_queue.name]
        first, second = send(web, clips["sentence"]), send(web, clips["sentence"])
        for sid in (first, second):
            transcript = wait_for_transcript(web, processes, sid)
            assert "472915" in normalize(transcript.text), transcript.text
        lines = LOADS.findall(processes.logs(tail=10**6))
        assert len(lines) == 2, processes.logs()
        # The same process transcribed both, having loaded the model once; not the worker itself.
        assert {(pid, loads) for _, pid, loads in lines} == {(str(transcripts[0].pid), "1")}, lines
    finally:
        processes.stop()


@pytest.mark.slow
def test_playback_is_not_delayed_by_a_long_transcription(web, clips, tmp_path):
    set_settings(web, "whatsapp", transcribe=True)
    set_settings(web, "sms", transcribe=False)
    processes = start_transcribing_worker(web, tmp_path)
    try:
        rq_workers(web, processes)
        long = send(web, clips["long"])
        wait_for_transcript(web, processes, long, statuses=("running",))
        short = send(web, clips["short"], channel="sms", content_type="audio/amr")

        def short_ready():
            processes.check_alive()
            row = row_of(web, short)
            return row is not None and row.status == "ready"

        wait_until(short_ready, 60, "the short note to be ready", processes.logs, interval=0.2)
        # Playable while the long note's transcription still runs on the other process.
        assert transcript_of(web, long).status == "running"
        assert wait_for_transcript(web, processes, long).status == "done"
    finally:
        processes.stop()


@pytest.mark.slow
def test_a_killed_transcription_process_is_replaced_and_the_note_transcribed(web, clips, tmp_path):
    set_settings(web, "whatsapp", transcribe=True)
    # The sweeper takes back a transcript left `running` this long (the note takes longer to kill than that).
    processes = start_transcribing_worker(web, tmp_path, SWEEP_STUCK_AFTER_S="15")
    try:
        _, (transcriber,) = rq_workers(web, processes)
        sid = send(web, clips["long"])
        wait_for_transcript(web, processes, sid, statuses=("running",))
        os.kill(transcriber.pid, signal.SIGKILL)
        killed_at = time.monotonic()

        def replaced():
            from rq import Worker

            processes.check_alive()
            alive = [w for w in Worker.all(queue=web.extensions["jobs"].transcripts_queue) if w.pid != transcriber.pid]
            return alive

        wait_until(replaced, 60, "a new transcription process", processes.logs)
        assert time.monotonic() - killed_at < 60
        transcript = wait_for_transcript(web, processes, sid)
        assert transcript.attempts >= 2 and "472915" in normalize(transcript.text)
        assert "transcription process" in processes.logs(tail=10**6)
    finally:
        processes.stop()
