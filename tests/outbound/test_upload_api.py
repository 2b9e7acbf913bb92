"""The upload API: every answer in the contract, with real browser-format recordings made by ffmpeg."""

import threading

import pytest

from tests.helpers.agent_api import post_audio
from tests.helpers.audio_samples import KINDS, decoded_duration, make_audio, run_ffmpeg
from tests.helpers.conversations import conversation_with_agent
from tests.helpers.service import audio_rows, hold_outbound_conversions, set_settings

BROWSER_FORMATS = {  # what each browser's MediaRecorder produces, plus WAV and MP3 uploads
    "webm": "audio/webm;codecs=opus",  # Chromium
    "whatsapp_ogg": "audio/ogg;codecs=opus",  # Firefox
    "aac_mp4": "audio/mp4",  # Safari
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
}


@pytest.fixture
def conversation(sandbox):
    return conversation_with_agent(sandbox, "Customer", "whatsapp")


@pytest.mark.parametrize("kind", sorted(BROWSER_FORMATS))
def test_recording_is_sent_as_mp3(client, app, sandbox, agent_token, conversation, tmp_path, kind):
    source = make_audio(tmp_path / f"rec{KINDS[kind][0]}", kind, seconds=3.0)
    # Browsers often mislabel: the service decides from the bytes, so a wrong label changes nothing.
    response = post_audio(client, agent_token, conversation, source, content_type="application/octet-stream")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["content_type"] == "audio/mpeg" and abs(body["duration_s"] - 3.0) < 0.1

    (message,) = [m for m in sandbox.list_messages(conversation) if m["sid"] == body["message_sid"]]
    assert message["author"] == "agent_40example_2Ecom"
    (media,) = message["media"]
    assert media["sid"] == body["media_sid"] and media["content_type"] == "audio/mpeg"
    assert media["filename"].endswith(".mp3") and media["size"] == body["size_bytes"]
    sent = tmp_path / "sent.mp3"
    sent.write_bytes(sandbox.media_bytes(media["sid"]))
    assert abs(decoded_duration(sent) - 3.0) < 0.1

    (row,) = audio_rows(app)
    assert (row.direction, row.channel, row.status, row.author) == (
        "outbound",
        "whatsapp",
        "ready",
        "agent_40example_2Ecom",
    )
    assert row.transcode_ms is not None and row.processing_ms is not None and row.size_bytes > 0


def test_sent_recording_is_listed_with_a_player(client, agent_token, conversation, tmp_path):
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=2.0)
    assert post_audio(client, agent_token, conversation, source).status_code == 201
    listing = client.get(
        f"/api/v1/conversations/{conversation}/audio", headers={"Authorization": f"Bearer {agent_token}"}
    ).get_json()["audio_messages"]
    (message,) = listing
    assert message["direction"] == "outbound" and message["playback_url"]


@pytest.mark.parametrize(
    "variant,code",
    [("text", "not_audio"), ("empty", "empty_audio"), ("truncated_mp4", "not_audio"), ("silence", "silent_audio")],
)
def test_bad_recordings_are_400_with_a_reason(client, app, agent_token, conversation, tmp_path, variant, code):
    path = tmp_path / "rec.webm"
    if variant == "text":
        path.write_text("hello " * 100)
    elif variant == "empty":
        path.write_bytes(b"")
    elif variant == "truncated_mp4":
        full = make_audio(tmp_path / "full.m4a", "aac_mp4", seconds=3.0)
        data = open(full, "rb").read()
        path.write_bytes(data[: len(data) // 3])
    else:
        run_ffmpeg(
            "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "2", "-c:a", "libopus", "-f", "webm", str(path)
        )
    response = post_audio(client, agent_token, conversation, path)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == code
    (row,) = audio_rows(app)
    assert row.status == "failed" and row.error_code == code and row.error


def test_missing_field_is_400(client, agent_token, conversation):
    response = client.post(
        f"/api/v1/conversations/{conversation}/audio",
        data={"other": "x"},
        headers={"Authorization": f"Bearer {agent_token}"},
    )
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "missing_audio"


def test_bad_or_missing_token_is_401(client, app, conversation, tmp_path):
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=1.0)
    assert post_audio(client, "forged", conversation, source).status_code == 401
    response = client.post(f"/api/v1/conversations/{conversation}/audio", data={})
    assert response.status_code == 401
    assert audio_rows(app) == []


def test_sending_disabled_is_403_and_audited(client, app, sandbox, agent_token, conversation, tmp_path):
    set_settings(app, "whatsapp", sending_enabled=False)
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=1.0)
    response = post_audio(client, agent_token, conversation, source)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "sending_disabled"
    assert sandbox.list_messages(conversation) == []
    (row,) = audio_rows(app)
    assert row.status == "failed" and row.error_code == "sending_disabled"


def test_the_channel_comes_from_the_conversation_not_the_browser(client, app, sandbox, agent_token, tmp_path):
    sms = conversation_with_agent(sandbox, "SMS customer", "sms")
    set_settings(app, "sms", max_bytes=5_000)
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=3.0)
    response = post_audio(client, agent_token, sms, source, filename="whatsapp.webm")
    assert response.status_code == 413
    assert "sms allows at most" in response.get_json()["error"]["message"]


def test_over_the_size_cap_is_413_stating_the_limit(client, app, sandbox, agent_token, conversation, tmp_path):
    set_settings(app, "whatsapp", max_bytes=10_000)
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=3.0)
    response = post_audio(client, agent_token, conversation, source)
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "too_large" and "whatsapp allows at most 9.8 KB per file" in error["message"]
    assert sandbox.list_messages(conversation) == []
    (row,) = audio_rows(app)
    assert row.mp3_size_bytes > 10_000 and row.status == "failed"


def test_over_the_duration_cap_is_413_stating_the_limit(client, app, sandbox, agent_token, conversation, tmp_path):
    set_settings(app, "whatsapp", max_duration_s=2)
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=4.0)
    response = post_audio(client, agent_token, conversation, source)
    assert response.status_code == 413
    assert response.get_json()["error"] == {
        "code": "too_long",
        "message": "the recording is longer than the whatsapp limit of 2 s",
    }
    assert sandbox.list_messages(conversation) == []


def test_upload_over_the_ceiling_is_413_before_reading(client, app, agent_token, conversation, tmp_path):
    app.config["UPLOAD_MAX_BYTES"] = 1_000
    source = make_audio(tmp_path / "rec.wav", "wav", seconds=1.0)
    response = post_audio(client, agent_token, conversation, source)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "request_entity_too_large"


def error_code(response) -> str:
    """The code of the service's one error shape (README, HTTP API), {"error": {"code", "message"}}, checked to be
    just that."""
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return body["error"]["code"]


def test_unknown_conversation_is_404(client, agent_token, tmp_path):
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=1.0)
    response = post_audio(client, agent_token, "CH" + "0" * 32, source)
    assert response.status_code == 404 and error_code(response) == "conversation_not_found"


def test_a_conversation_sid_that_is_not_one_is_400(client, agent_token, tmp_path):
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=1.0)
    response = post_audio(client, agent_token, "CH123", source)
    assert response.status_code == 400 and error_code(response) == "bad_conversation_sid"


def test_same_idempotency_key_sends_exactly_once(client, sandbox, agent_token, conversation, tmp_path):
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=1.0)
    first = post_audio(client, agent_token, conversation, source, key="rec-1")
    again = post_audio(client, agent_token, conversation, source, key="rec-1")
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert len(sandbox.list_messages(conversation)) == 1
    other = post_audio(client, agent_token, conversation, source, key="rec-2")
    assert other.status_code == 201 and len(sandbox.list_messages(conversation)) == 2


def test_same_key_while_the_first_is_running_is_409(
    client, app, sandbox, agent_token, conversation, tmp_path, monkeypatch
):
    release = threading.Event()
    entered = hold_outbound_conversions(monkeypatch, release)
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=1.0)
    results = {}
    worker = threading.Thread(
        target=lambda: results.setdefault(
            "first", post_audio(app.test_client(), agent_token, conversation, source, key="k")
        )
    )
    worker.start()
    assert entered.wait(30)
    second = post_audio(client, agent_token, conversation, source, key="k")
    assert second.status_code == 409
    assert second.get_json()["error"]["code"] == "idempotency_key_in_flight"
    release.set()
    worker.join(30)
    assert results["first"].status_code == 201
    assert len(sandbox.list_messages(conversation)) == 1


def test_uploads_beyond_the_processs_conversion_slots_are_503_busy_and_can_be_sent_again(
    client, app, sandbox, agent_token, conversation, tmp_path, monkeypatch
):
    """One token holder cannot run more ffmpegs in a web process than CONVERSIONS_PER_PROCESS."""
    from webhook_app.outbound import convert

    app.config["CONVERSIONS_PER_PROCESS"] = 1
    monkeypatch.setattr(convert, "SLOT_WAIT_S", 0.2)
    release = threading.Event()
    entered = hold_outbound_conversions(monkeypatch, release)
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=1.0)
    results = {}
    first = threading.Thread(
        target=lambda: results.setdefault("first", post_audio(app.test_client(), agent_token, conversation, source))
    )
    first.start()
    assert entered.wait(30)
    busy = post_audio(client, agent_token, conversation, source, key="second")
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "2"
    assert busy.get_json()["error"]["code"] == "busy"
    assert audio_rows(app)[-1].error_code == "busy"  # the refusal is audited
    release.set()
    first.join(30)
    assert results["first"].status_code == 201
    assert post_audio(client, agent_token, conversation, source, key="second").status_code == 201
    assert len(sandbox.list_messages(conversation)) == 2


def test_transient_twilio_errors_on_message_create_are_retried_once_sent(
    client, app, sandbox, agent_token, conversation, tmp_path
):
    sandbox.fail_next(r"/Conversations/CH[0-9a-f]+/Messages$", 503, count=2)
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=1.0)
    response = post_audio(client, agent_token, conversation, source)
    assert response.status_code == 201, response.get_json()
    assert len(sandbox.list_messages(conversation)) == 1


def test_a_failure_after_the_message_was_posted_is_not_reported_as_unsent(
    client, app, sandbox, agent_token, conversation, tmp_path, monkeypatch
):
    """The agent would record and send it again: once the message is in the conversation, the answer is 201."""
    from webhook_app.models import AudioMessage

    real_mark, broken = AudioMessage.mark, []

    def mark_failing_once_at_ready(row, status, **kwargs):
        if status.value == "ready" and not broken:
            broken.append(row.id)
            raise RuntimeError("the database went away")
        return real_mark(row, status, **kwargs)

    monkeypatch.setattr(AudioMessage, "mark", mark_failing_once_at_ready)
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=1.0)
    response = post_audio(client, agent_token, conversation, source)
    assert broken and response.status_code == 201, response.get_json()
    (posted,) = sandbox.list_messages(conversation)
    (row,) = audio_rows(app)
    assert row.status == "ready" and row.message_sid == posted["sid"] == response.get_json()["message_sid"]


def test_permanent_twilio_error_is_502_and_audited(client, app, sandbox, agent_token, conversation, tmp_path):
    sandbox.fail_next(r"/Conversations/CH[0-9a-f]+/Messages$", 400)
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=1.0)
    response = post_audio(client, agent_token, conversation, source)
    assert response.status_code == 502
    (row,) = audio_rows(app)
    assert row.status == "failed" and row.error_code == "twilio_error" and row.media_sid


def test_audio_settings_for_the_record_panel(client, app, sandbox, agent_token):
    sms = conversation_with_agent(sandbox, "SMS customer", "sms")
    response = client.get(
        f"/api/v1/conversations/{sms}/audio-settings", headers={"Authorization": f"Bearer {agent_token}"}
    )
    assert response.get_json() == {
        "channel": "sms",
        "sending_enabled": True,
        "max_bytes": 2_097_152,
        "max_duration_s": 900,
        "bitrate_kbps": 64,
    }


def test_cors_preflight_for_flex_origins_only(client, conversation):
    url = f"/api/v1/conversations/{conversation}/audio"
    allowed = client.options(
        url,
        headers={
            "Origin": "https://flex.twilio.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Idempotency-Key",
        },
    )
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://flex.twilio.com"
    assert "Idempotency-Key" in allowed.headers["Access-Control-Allow-Headers"]
    other = client.options(url, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_a_failed_send_can_be_sent_again_under_its_key(client, app, sandbox, agent_token, conversation, tmp_path):
    """The panel keeps a recording's key for "send it again": a failure that posted nothing must not be replayed
    forever, and the failed attempt keeps its own audit row and reason."""
    sandbox.fail_next(r"/Conversations/CH[0-9a-f]+/Messages$", 400)
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=1.0)
    assert post_audio(client, agent_token, conversation, source, key="rec-1").status_code == 502
    again = post_audio(client, agent_token, conversation, source, key="rec-1")
    assert again.status_code == 201, again.get_json()
    assert post_audio(client, agent_token, conversation, source, key="rec-1").get_json() == again.get_json()
    assert len(sandbox.list_messages(conversation)) == 1
    failed, sent = audio_rows(app)
    assert failed.status == "failed" and failed.error_code == "twilio_error"
    assert sent.status == "ready" and sent.id == again.get_json()["audit_id"]


def test_a_recording_the_panel_stopped_at_the_cap_is_sent(client, app, sandbox, agent_token, conversation, tmp_path):
    """MediaRecorder hands over its last chunk a little after the panel's stop: a fraction of a second over the
    cap is the panel's own stop, not a longer recording."""
    set_settings(app, "whatsapp", max_duration_s=2)
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=2.3)
    response = post_audio(client, agent_token, conversation, source)
    assert response.status_code == 201, response.get_json()
    assert 2.2 <= response.get_json()["duration_s"] <= 2.5


def test_a_create_that_timed_out_at_the_deadline_is_looked_up_before_failing(
    client, app, sandbox, agent_token, conversation, tmp_path, monkeypatch
):
    from webhook_app.outbound import post as outbound
    from webhook_app.twilio.http import TwilioHttpError

    api = app.extensions["twilio"]
    real_create = api.create_message

    def created_but_answer_lost(*args, **kwargs):
        real_create(*args, **kwargs)
        raise TwilioHttpError("POST .../Messages -> read timed out", None, transient=True)

    monkeypatch.setattr(api, "create_message", created_but_answer_lost)
    monkeypatch.setattr(outbound, "ATTACH_WINDOW_S", 0)  # no time left for another try
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=1.0)
    response = post_audio(client, agent_token, conversation, source)
    assert response.status_code == 201, response.get_json()
    (posted,) = sandbox.list_messages(conversation)
    assert response.get_json()["message_sid"] == posted["sid"]


def test_messages_with_any_json_attributes_do_not_stop_the_look_up(
    client, app, sandbox, agent_token, conversation, tmp_path, monkeypatch
):
    from webhook_app.twilio.http import TwilioHttpError

    api = app.extensions["twilio"]
    real_create, calls = api.create_message, []

    def first_answer_lost(*args, **kwargs):
        message = real_create(*args, **kwargs)
        calls.append(message)
        if len(calls) == 1:
            # The customer answers at once: the look-up meets their messages before ours.
            for attributes in ("null", "[]", "7"):  # valid JSON, which is all Twilio checks
                api.client.conversations.v1.conversations(conversation).messages.create(
                    author="customer", body="hello", attributes=attributes
                )
            raise TwilioHttpError("POST .../Messages -> 500", 500, transient=True)
        return message

    monkeypatch.setattr(api, "create_message", first_answer_lost)
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=1.0)
    response = post_audio(client, agent_token, conversation, source)
    assert response.status_code == 201, response.get_json()
    assert len(calls) == 1  # found, not posted again
    assert len([m for m in sandbox.list_messages(conversation) if m.get("media")]) == 1


def test_long_identities_and_keys_do_not_collide(app):
    from webhook_app.outbound.attempts import IDEMPOTENCY_KEY_MAX, scoped_idempotency_key

    identity = "agent-" + "x" * 290
    first = scoped_idempotency_key(identity, "recording-1")
    second = scoped_idempotency_key(identity, "recording-2")
    assert first != second and len(first) <= IDEMPOTENCY_KEY_MAX and len(second) <= IDEMPOTENCY_KEY_MAX
    assert scoped_idempotency_key("a@example.com", "k") == "a@example.com:k"  # short keys keep their form
