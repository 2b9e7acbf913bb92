"""Transcripts in the product (webhook_app/transcripts/job.py, search.py): a voice note's MP3 becomes text on the
transcripts lane after it is `ready`, shown in the agent list and the admin audit, searched with `q=`.

Real ffmpeg, espeak-ng speech (tests/speech_samples.py) and the engine with the bundled tiny.en model, offline.
SQLite and in-process jobs by default; PostgreSQL and RQ when TEST_DATABASE_URL / TEST_REDIS_URL are set.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from tests.helpers.agent_api import post_audio
from tests.helpers.conversations import conversation_with_agent
from tests.helpers.processes import ROOT, kill_tree, wait_until
from tests.helpers.service import a_second_from_now, run_jobs, set_settings
from tests.helpers.speech_samples import normalize, not_speech, require_espeak, require_transcribe_extra, speak
from tests.helpers.webhooks import post_webhook
from tests.helpers.workers import start_worker
from webhook_app.extensions import db
from webhook_app.jobs.sweeper import sweep
from webhook_app.media.retention import delete_expired_media
from webhook_app.models import AudioMessage, SettingsChange, Transcript
from webhook_app.sandbox.transcripts import turn_on_in_sandbox
from webhook_app.transcripts import job as transcripts_job
from webhook_app.transcripts.languages import WHISPER_LANGUAGES

SENTENCE = "Hi, this is Maria. My account number is 4 7 2 9 1 5. Could you call me back this afternoon?"
ADMIN = "test-admin-token"
ADMIN_NAME = "admin-token"  # the actor a change through ADMIN_TOKEN is audited as
ODD_QUERIES = [
    '"',
    '""',
    "'",
    "(",
    ")",
    "(maria",
    "account)",
    "*",
    "acc*",
    "NEAR",
    "NEAR(account maria)",
    "account NEAR maria",
    "AND",
    "OR",
    "NOT",
    "-",
    "- account",
    "account -maria",
    "^maria",
    "maria:",
    "text:maria",
    "{maria}",
    "[x]",
    "ünïcödé",
    "日本語",
    "emoji 😀",
    "a\x00b",
    "%",
    "_",
    "\\",
    "'; drop",
    "café",
    "x" * 199,
]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, str]:
    """Made once per module: a spoken English note (Opus, as WhatsApp sends it) and 4 s of silence."""
    require_espeak()
    require_transcribe_extra()
    folder = tmp_path_factory.mktemp("speech")
    return {
        "sentence": speak(folder / "sentence", SENTENCE, kind="whatsapp_ogg", pad_s=1.0),
        "silence": not_speech(folder / "silence", "silence", seconds=4.0, kind="whatsapp_ogg"),
    }


@pytest.fixture
def admin(app):
    app.config["ADMIN_TOKEN"] = ADMIN
    return {"Authorization": f"Bearer {ADMIN}"}


def listing(client, token, conversation_sid) -> list[dict]:
    response = client.get(
        f"/api/v1/conversations/{conversation_sid}/audio", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["audio_messages"]


def transcripts(app) -> list[Transcript]:
    with app.app_context():
        rows = list(db.session.scalars(select(Transcript).order_by(Transcript.audio_message_id)))
        db.session.expunge_all()
        return rows


def lose_transcription_jobs(monkeypatch) -> None:
    """Transcription jobs are accepted, then lost (a flushed queue, a process gone)."""
    from webhook_app.transcripts import job

    monkeypatch.setattr(job, "enqueue_transcript", lambda audit_id: None)


def send_note(deliver, app, path, channel="whatsapp") -> str:
    params, response = deliver(path, "audio/ogg", channel=channel)
    assert response.status_code == 200
    run_jobs(app)
    return params["ConversationSid"]


def test_a_spoken_sentence_is_transcribed_end_to_end(client, app, deliver, agent_token, admin, clips):
    set_settings(app, "whatsapp", transcribe=True)
    conversation = send_note(deliver, app, clips["sentence"])
    (message,) = listing(client, agent_token, conversation)
    assert message["status"] == "ready"
    transcript = message["transcript"]
    assert transcript["status"] == "done", transcript
    words = normalize(transcript["text"])
    assert "472915" in words, transcript["text"]  # the account number, however Whisper groups its digits
    assert "call me back" in " ".join(words) and "maria" in words, transcript["text"]
    assert transcript["language"] == "en" and transcript["model"] == "tiny.en"
    assert transcript["segments"] and set(transcript["segments"][0]) == {"start", "end", "text"}
    assert 0 <= transcript["segments"][0]["start"] < transcript["segments"][-1]["end"] <= message["duration_s"] + 0.5
    assert "error" not in transcript

    audit = client.get("/api/v1/admin/audit", headers=admin).get_json()["audio_messages"]
    assert audit[0]["transcript"] == transcript
    assert (
        client.get(f"/api/v1/admin/audit/{message['audit_id']}", headers=admin).get_json()["transcript"] == transcript
    )
    exported = list(
        csv.DictReader(io.StringIO(client.get("/api/v1/admin/audit?format=csv", headers=admin).get_data(as_text=True)))
    )
    assert exported[0]["transcript_status"] == "done" and exported[0]["transcript_text"] == transcript["text"]


def test_silence_gives_no_speech(client, app, deliver, agent_token, clips):
    set_settings(app, "whatsapp", transcribe=True)
    conversation = send_note(deliver, app, clips["silence"])
    (message,) = listing(client, agent_token, conversation)
    assert message["transcript"]["status"] == "no_speech"
    assert message["transcript"]["text"] == "" and message["transcript"]["segments"] == []


def test_the_setting_turns_transcripts_on_and_off_per_channel(client, app, deliver, agent_token, admin, clips):
    changed = client.put(
        "/api/v1/admin/settings/whatsapp", headers=admin, json={"transcribe": True, "transcribe_language": "EN"}
    ).get_json()
    assert changed["transcribe"] is True and changed["transcribe_language"] == "en"
    whatsapp = send_note(deliver, app, clips["silence"], "whatsapp")
    sms = send_note(deliver, app, clips["silence"], "sms")
    assert listing(client, agent_token, whatsapp)[0]["transcript"]["status"] == "no_speech"
    assert "transcript" not in listing(client, agent_token, sms)[0]  # off: absent, not null

    client.put("/api/v1/admin/settings/whatsapp", headers=admin, json={"transcribe": False})
    later = send_note(deliver, app, clips["silence"], "whatsapp")
    assert "transcript" not in listing(client, agent_token, later)[0]
    assert listing(client, agent_token, whatsapp)[0]["transcript"]["status"] == "no_speech"  # its row stays
    assert len(transcripts(app)) == 1

    changes = client.get("/api/v1/admin/settings-changes?channel=whatsapp", headers=admin).get_json()["changes"]
    assert {(c["key"], c["new_value"], c["changed_by"]) for c in changes} == {
        ("transcribe", True, ADMIN_NAME),
        ("transcribe_language", "en", ADMIN_NAME),
        ("transcribe", False, ADMIN_NAME),
    }
    for language in ("english", "xx", "", 5, None):
        response = client.put("/api/v1/admin/settings/whatsapp", headers=admin, json={"transcribe_language": language})
        assert response.status_code == 400, language
    assert client.put("/api/v1/admin/settings/sms", headers=admin, json={"transcribe": "yes"}).status_code == 400
    listed = client.get("/api/v1/admin/settings", headers=admin).get_json()
    assert listed["transcription"]["installed"] is True
    assert all({"transcribe", "transcribe_language"} <= set(s) for s in listed["settings"])


def test_an_agent_recording_is_transcribed_too(client, app, sandbox, agent_token, clips):
    set_settings(app, "whatsapp", transcribe=True)
    conversation = conversation_with_agent(sandbox, "Customer", "whatsapp")
    response = post_audio(client, agent_token, conversation, clips["sentence"], content_type="audio/ogg")
    assert response.status_code == 201, response.get_data(as_text=True)
    run_jobs(app)
    (message,) = listing(client, agent_token, conversation)
    assert message["direction"] == "outbound"
    assert "472915" in normalize(message["transcript"]["text"])


def test_the_sandbox_s_simulated_voice_note_is_speech(client, app, sandbox, agent_token):
    """The console's "Simulate customer voice note" sends the spoken demo note, so a newcomer reads words."""
    require_transcribe_extra()
    set_settings(app, "webchat", transcribe=True)
    conversation = conversation_with_agent(sandbox, "Customer", "webchat")
    response = client.post(
        f"/agent/api/conversations/{conversation}/simulate-voice-note",
        headers={"Authorization": f"Bearer {agent_token}"},
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    run_jobs(app)
    (message,) = listing(client, agent_token, conversation)
    assert message["status"] == "ready" and message["duration_s"] == pytest.approx(5.0, abs=0.1)
    assert message["transcript"]["status"] == "done", message["transcript"]
    assert "call me back" in " ".join(normalize(message["transcript"]["text"])), message["transcript"]["text"]


def test_search_finds_a_note_by_a_word_it_contains(client, app, deliver, admin, clips):
    set_settings(app, "whatsapp", transcribe=True)
    send_note(deliver, app, clips["sentence"])
    send_note(deliver, app, clips["silence"])
    found = client.get("/api/v1/admin/audit?q=afternoon", headers=admin).get_json()
    assert found["total"] == 1
    (row,) = found["audio_messages"]
    match = row["match"]
    assert [match["snippet"][start:end].lower() for start, end in match["highlights"]] == ["afternoon"]
    assert "<" not in match["snippet"]
    both = client.get("/api/v1/admin/audit", headers=admin, query_string={"q": "MARIA afternoon"}).get_json()
    assert both["total"] == 1 and len(both["audio_messages"][0]["match"]["highlights"]) >= 2
    assert client.get("/api/v1/admin/audit?q=refund", headers=admin).get_json()["total"] == 0
    exported = client.get("/api/v1/admin/audit?format=csv&q=afternoon", headers=admin).get_data(as_text=True)
    assert len(list(csv.DictReader(io.StringIO(exported)))) == 1


def test_odd_search_text_never_fails_the_server(client, app, deliver, admin, clips):
    set_settings(app, "whatsapp", transcribe=True)
    send_note(deliver, app, clips["silence"])
    with app.app_context():  # a transcript with words to match against, without another run of the model
        db.session.execute(
            update(Transcript).values(status="done", text='NEAR the café (account) "quoted" 日本語 ünïcödé')
        )
        db.session.commit()
    for q in ODD_QUERIES:
        response = client.get("/api/v1/admin/audit", headers=admin, query_string={"q": q})
        assert response.status_code in (200, 400), (q, response.status_code, response.get_data(as_text=True))
        if response.status_code == 400:
            # Control characters are refused for every URL before a view runs (bad_request); the rest by the search.
            expected = "bad_request" if any(ord(c) < 32 or ord(c) == 127 for c in q) else "bad_filter"
            assert response.get_json()["error"]["code"] == expected, q
        csv_response = client.get("/api/v1/admin/audit", headers=admin, query_string={"q": q, "format": "csv"})
        csv_response.get_data()  # the streamed body read to its end
        assert csv_response.status_code == response.status_code, q
    assert client.get("/api/v1/admin/audit", headers=admin, query_string={"q": "x" * 201}).status_code == 400
    near = client.get("/api/v1/admin/audit", headers=admin, query_string={"q": "NEAR(café"}).get_json()
    assert near["total"] == 1 and near["audio_messages"][0]["match"]["highlights"]


def test_redeliveries_and_duplicate_jobs_transcribe_once(client, app, sandbox, deliver, clips, monkeypatch):
    set_settings(app, "whatsapp", transcribe=True)
    calls = []
    real = transcripts_job.transcribe

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(transcripts_job, "transcribe", counted)
    params, _ = deliver(clips["silence"], "audio/ogg")
    for _ in range(2):
        assert post_webhook(client, sandbox, params).status_code == 200  # Twilio's retries
    run_jobs(app)
    (transcript,) = transcripts(app)
    with app.app_context():
        for _ in range(2):  # the job enqueued twice more (a redelivered RQ job, a sweeper's race)
            transcripts_job.enqueue_transcript(transcript.audio_message_id)
    run_jobs(app)
    assert len(calls) == 1
    (transcript,) = transcripts(app)
    assert transcript.status == "no_speech" and transcript.attempts == 1


@pytest.mark.slow
def test_a_killed_transcription_job_is_retried(app, deliver, clips, monkeypatch, tmp_path):
    """SIGKILL the process mid-transcription (its row stays `running`); the sweeper puts it back and it runs again."""
    set_settings(app, "whatsapp", transcribe=True)
    lose_transcription_jobs(monkeypatch)  # the job goes to the process killed below
    send_note(deliver, app, clips["sentence"])
    (transcript,) = transcripts(app)
    assert transcript.status == "queued"
    script = textwrap.dedent(f"""
        import time
        from webhook_app import create_app
        from webhook_app.transcripts import job
        app = create_app({{"SQLALCHEMY_DATABASE_URI": {app.config["SQLALCHEMY_DATABASE_URI"]!r},
                           "SANDBOX_DB": {app.config["SANDBOX_DB"]!r}, "SECRET_KEY": "test-secret"}})
        job.transcribe = lambda *args, **kwargs: time.sleep(120)  # stands in for a long note
        with app.app_context():
            job.transcribe_audio({transcript.audio_message_id})
    """)
    env = dict(os.environ, REDIS_URL="", MAINTENANCE_INTERVAL_S="0")
    env.pop("TWILIO_ACCOUNT_SID", None)
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "job.log").open("wb"),
        start_new_session=True,
    )
    try:
        wait_until(lambda: transcripts(app)[0].status == "running", timeout=60, what="the job to start")
    finally:
        kill_tree(process.pid, 9)
        process.wait(10)
    assert transcripts(app)[0].status == "running"  # nobody is left to finish it
    monkeypatch.undo()
    app.config["SWEEP_STUCK_AFTER_S"] = 0
    with app.app_context():
        assert sweep(now=a_second_from_now())["transcripts_revived"] == 1
    run_jobs(app)
    (transcript,) = transcripts(app)
    assert transcript.status == "done" and transcript.attempts == 2
    assert "472915" in normalize(transcript.text)


def test_the_sweeper_enqueues_a_lost_job_and_gives_up_after_the_attempts(app, deliver, clips, monkeypatch):
    set_settings(app, "whatsapp", transcribe=True)
    with monkeypatch.context() as patch:
        lose_transcription_jobs(patch)
        send_note(deliver, app, clips["silence"])
    app.config["SWEEP_REQUEUE_AFTER_S"] = 0
    with app.app_context():
        assert sweep(now=a_second_from_now())["transcripts_requeued"] == 1
    run_jobs(app)
    assert transcripts(app)[0].status == "no_speech"

    with app.app_context():  # a transcript its workers kept dying on
        db.session.execute(update(Transcript).values(status="running", attempts=app.config["JOB_MAX_ATTEMPTS"]))
        db.session.commit()
    app.config["SWEEP_STUCK_AFTER_S"] = 0
    with app.app_context():
        assert sweep(now=a_second_from_now())["transcripts_gave_up"] == 1
    (transcript,) = transcripts(app)
    assert transcript.status == "failed" and "giving up" in transcript.error


def test_without_the_extra_the_transcript_fails_and_the_message_does_not(
    client, app, deliver, agent_token, clips, monkeypatch
):
    set_settings(app, "whatsapp", transcribe=True)
    monkeypatch.setattr(transcripts_job, "installed", lambda: False)
    conversation = send_note(deliver, app, clips["silence"])
    (message,) = listing(client, agent_token, conversation)
    assert message["status"] == "ready" and "playback_url" in message
    assert message["transcript"]["status"] == "failed"
    assert message["transcript"]["error"].startswith("transcription is not installed")


def test_a_language_the_model_lacks_fails_with_the_reason(client, app, deliver, agent_token, clips):
    set_settings(app, "whatsapp", transcribe=True, transcribe_language="es")
    conversation = send_note(deliver, app, clips["silence"])
    transcript = listing(client, agent_token, conversation)[0]["transcript"]
    assert transcript["status"] == "failed" and "English only" in transcript["error"]


@pytest.mark.slow
def test_retention_deletes_the_text_with_the_audio_unless_kept_longer(client, app, deliver, admin, clips):
    set_settings(app, "whatsapp", transcribe=True)
    send_note(deliver, app, clips["sentence"])
    send_note(deliver, app, clips["sentence"])
    first, second = transcripts(app)
    app.config["RETENTION_DAYS"] = 1
    with app.app_context():
        db.session.execute(
            update(AudioMessage)
            .where(AudioMessage.id == first.audio_message_id)
            .values(created_at=datetime.now(UTC) - timedelta(days=2))
        )
        db.session.commit()
        app.config["TRANSCRIPT_RETENTION_DAYS"] = 30  # kept longer: the audio goes, the text stays
        assert delete_expired_media() == 1
    assert transcripts(app)[0].text and transcripts(app)[0].deleted_at is None
    assert client.get("/api/v1/admin/audit?q=afternoon", headers=admin).get_json()["total"] == 2
    with app.app_context():
        app.config["TRANSCRIPT_RETENTION_DAYS"] = None  # with the audio: deleted at the next run
        db.session.execute(update(AudioMessage).values(media_deleted_at=None))
        db.session.commit()
        assert delete_expired_media() == 1
    deleted, kept = transcripts(app)
    assert deleted.text is None and deleted.segments is None and deleted.deleted_at is not None
    assert kept.text and kept.deleted_at is None
    shown = client.get(f"/api/v1/admin/audit/{deleted.audio_message_id}", headers=admin).get_json()["transcript"]
    assert shown["text"] == "" and shown["deleted_at"]
    assert client.get("/api/v1/admin/audit?q=afternoon", headers=admin).get_json()["total"] == 1


def test_the_sandbox_turns_transcription_on_once_audited(app):
    with app.app_context():
        assert len(turn_on_in_sandbox()) == 5
        changes = list(db.session.scalars(select(SettingsChange).where(SettingsChange.key == "transcribe")))
        assert {c.changed_by for c in changes} == {"sandbox"} and len(changes) == 5
    set_settings(app, "sms", transcribe=False)
    with app.app_context():
        assert turn_on_in_sandbox() == []  # already decided: left as set
        from webhook_app.settings.cache import settings_for

        assert not settings_for("sms").transcribe and settings_for("whatsapp").transcribe


def test_the_language_list_is_whispers():
    require_transcribe_extra()
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    assert set(WHISPER_LANGUAGES) == set(_LANGUAGE_CODES)


def test_a_match_says_where_the_words_are_in_javascript_offsets():
    from webhook_app.transcripts.search import match_of

    text = "Hola 😀 café, call me back about the CAFÉ order. " + "filler words " * 30 + "café again"
    match = match_of(text, "café")
    snippet = match["snippet"].encode("utf-16-le")
    marked = [snippet[2 * start : 2 * end].decode("utf-16-le") for start, end in match["highlights"]]
    assert marked == ["café", "CAFÉ"]  # the one past the snippet is not listed
    assert match["snippet"].endswith("…") and not match["snippet"].startswith("…")
    far = match_of("word " * 40 + "needle here", "needle")
    assert far["snippet"].startswith("…") and far["snippet"][slice(*far["highlights"][0])] == "needle"
    assert match_of("nothing to see", "needle") is None and match_of(None, "x") is None


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("TEST_REDIS_URL"), reason="needs the RQ worker on a real Redis")
def test_the_procfile_worker_takes_transcripts_after_the_audio(app, deliver, clips, tmp_path):
    """`flask worker` takes RQ_QUEUE and, in its transcription process (a non-forking worker that loads the model
    once), <RQ_QUEUE>-transcripts (tests/transcripts/test_worker.py: the model loaded once, a killed process)."""
    set_settings(app, "whatsapp", transcribe=True)
    runner = app.extensions["jobs"]
    assert [queue.name for queue in runner.queues] == [app.config["RQ_QUEUE"], app.config["RQ_QUEUE"] + "-transcripts"]
    _, response = deliver(clips["silence"], "audio/ogg")
    assert response.status_code == 200
    worker = start_worker(app, tmp_path, JOB_RETRY_BASE_S=0, MAINTENANCE_INTERVAL_S=0)
    try:
        wait_until(
            lambda: [t.status for t in transcripts(app)] == ["no_speech"], timeout=120, what="the worker to transcribe"
        )
    finally:
        worker.kill_hard()
    assert not any(queue.count for queue in runner.queues)


def test_in_a_gevent_process_the_model_runs_beside_the_event_loop_not_on_it():
    """In-process jobs beside gunicorn's gevent workers: a second of C (as CTranslate2's) must not stop the
    process's other greenlets (its requests)."""
    script = textwrap.dedent("""
        from gevent import monkey; monkey.patch_all()
        import ctypes, time, gevent
        from webhook_app.transcripts.job import off_the_event_loop
        ticks = []
        def ticker():
            for _ in range(20):
                ticks.append(time.monotonic()); gevent.sleep(0.05)
        greenlet = gevent.spawn(ticker)
        assert off_the_event_loop(lambda seconds: ctypes.CDLL(None).usleep(int(seconds * 1e6)) or "done", 1.0) == "done"
        greenlet.join()
        print(max(b - a for a, b in zip(ticks, ticks[1:])))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) < 0.5  # the ticker went on while the call blocked its thread for a second


def test_backfill_transcribes_missed_notes_and_earlier_notes_of_channels_turned_on(
    runner, app, client, sandbox, deliver, agent_token, clips
):
    """A note from before `transcribe` was on gets its transcript from `backfill`; one the webhook missed is recorded
    and transcribed like any; a second backfill queues nothing again."""
    earlier = send_note(deliver, app, clips["silence"])  # transcribe off: no transcript
    assert "transcript" not in listing(client, agent_token, earlier)[0]
    set_settings(app, "whatsapp", transcribe=True)
    missed = conversation_with_agent(sandbox, "Customer", "whatsapp")
    with open(clips["silence"], "rb") as handle:
        sandbox.customer_sends_media(missed, handle.read(), "audio/ogg", "note.ogg")  # the webhook never arrived
    result = runner.invoke(args=["backfill", "--since", "1h"])
    assert result.exit_code == 0, result.output
    assert "recorded 1 missed" in result.output and "queued 1 transcript(s)" in result.output
    run_jobs(app)
    for conversation in (earlier, missed):
        assert listing(client, agent_token, conversation)[0]["transcript"]["status"] == "no_speech"
    assert "queued 0 transcript(s)" in runner.invoke(args=["backfill", "--since", "1h"]).output


def test_an_unforeseen_error_is_retried_and_a_job_timeout_is_not(app, deliver, clips, monkeypatch):
    from rq.timeouts import JobTimeoutException

    set_settings(app, "whatsapp", transcribe=True)
    failures = [RuntimeError("the store hiccuped")]
    real = transcripts_job.transcribe

    def flaky(*args, **kwargs):
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(transcripts_job, "transcribe", flaky)
    send_note(deliver, app, clips["silence"])
    (transcript,) = transcripts(app)
    assert transcript.status == "no_speech" and transcript.attempts == 2  # retried once, then transcribed

    failures.append(JobTimeoutException("Task exceeded maximum timeout value (600 seconds)"))
    send_note(deliver, app, clips["silence"])
    timed_out = transcripts(app)[1]
    assert timed_out.status == "failed" and timed_out.attempts == 1 and "maximum timeout" in timed_out.error
