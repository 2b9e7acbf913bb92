"""End to end: signed webhook -> job -> MCS download -> MP3 -> agent list -> /media with ranges."""

import re

import pytest

from tests.helpers.agent_api import MESSAGE_KEYS, assert_timestamps_are_iso_with_a_zone, listing
from tests.helpers.audio_samples import KINDS, content_type, decoded_duration, make_audio
from tests.helpers.conversations import conversation_with_agent, web_chat_message_with_two_attachments
from tests.helpers.service import audio_rows, run_jobs
from tests.helpers.webhooks import post_webhook
from webhook_app.extensions import db
from webhook_app.models import AudioMessage


@pytest.mark.parametrize(
    "kind,channel",
    [
        ("whatsapp_ogg", "whatsapp"),
        ("amr", "sms"),
        ("3gp", "sms"),
        ("aac_mp4", "webchat"),
        ("webm", "webchat"),
        ("wav", "messenger"),
    ],
)
def test_customer_voice_note_is_served_as_mp3(deliver, client, app, agent_token, tmp_path, kind, channel):
    source = make_audio(tmp_path / f"voice{KINDS[kind][0]}", kind, seconds=5.0)
    params, response = deliver(source, content_type(kind), channel=channel)
    assert response.status_code == 200
    run_jobs(app)

    (message,) = listing(client, agent_token, params["ConversationSid"])
    assert message["status"] == "ready", message
    assert message["direction"] == "inbound" and message["channel"] == channel
    assert message["media_sid"] == re.search(r"ME[0-9a-f]{32}", params["Media"]).group(0)
    assert abs(message["duration_s"] - 5.0) < 0.1

    media = client.get(message["playback_url"].replace("http://localhost", ""))
    assert media.status_code == 200
    assert media.mimetype == "audio/mpeg"
    assert media.headers["Accept-Ranges"] == "bytes"
    assert media.headers["ETag"]
    assert int(media.headers["Content-Length"]) == message["mp3_size_bytes"]
    mp3 = tmp_path / "served.mp3"
    mp3.write_bytes(media.data)
    assert abs(decoded_duration(mp3) - decoded_duration(source)) < 0.1


def test_listed_messages_have_the_contract_shape(deliver, client, app, sandbox, agent_token, tmp_path):
    conversation = conversation_with_agent(sandbox, "Customer", "whatsapp")
    deliver(
        make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=1.0),
        "audio/ogg; codecs=opus",
        conversation_sid=conversation,
    )
    junk = tmp_path / "junk.ogg"
    junk.write_text("<html>not a voice note</html>\n" * 10)
    deliver(junk, "audio/ogg", conversation_sid=conversation)
    run_jobs(app)

    by_status = {message["status"]: message for message in listing(client, agent_token, conversation)}
    ready, failed = by_status["ready"], by_status["failed"]
    assert set(ready) == MESSAGE_KEYS | {"playback_url"}
    assert set(failed) == MESSAGE_KEYS | {"error"}
    for message in (ready, failed):
        assert_timestamps_are_iso_with_a_zone(message)


def test_playback_links_use_public_base_url(deliver, client, app, agent_token, tmp_path):
    params, _ = deliver(make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=1.0), "audio/ogg; codecs=opus")
    run_jobs(app)
    app.config["PUBLIC_BASE_URL"] = "https://audio.example.com"  # after the webhook: it also rebuilds signed URLs
    (message,) = listing(client, agent_token, params["ConversationSid"])
    assert message["playback_url"].startswith("https://audio.example.com/media/")
    media = client.get(message["playback_url"].removeprefix("https://audio.example.com"))
    assert media.status_code == 200 and media.mimetype == "audio/mpeg"


def test_playback_supports_ranges_and_etags(deliver, client, app, agent_token, tmp_path):
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=3.0)
    params, _ = deliver(source, "audio/ogg; codecs=opus")
    run_jobs(app)
    (message,) = listing(client, agent_token, params["ConversationSid"])
    path = message["playback_url"].replace("http://localhost", "")
    whole = client.get(path).data

    part = client.get(path, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    assert part.data == whole[100:200]
    tail = client.get(path, headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.data == whole[-50:]

    etag = client.get(path).headers["ETag"]
    assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
    past_the_end = client.get(path, headers={"Range": f"bytes={len(whole) + 10}-"})
    assert past_the_end.status_code == 416 and past_the_end.headers["Content-Range"] == f"bytes */{len(whole)}"
    # RFC 9110: a suffix longer than the file is the whole file; other units, several ranges or a malformed
    # header may be ignored (the whole file, 200), never refused.
    longer_suffix = client.get(path, headers={"Range": f"bytes=-{len(whole) * 2}"})
    assert longer_suffix.status_code == 206 and longer_suffix.data == whole
    for ignored in ("items=0-5", "bytes=0-1,5-6", "bytes=nonsense"):
        answer = client.get(path, headers={"Range": ignored})
        assert answer.status_code == 200 and answer.data == whole, ignored


def test_playback_links_are_signed_and_expire(deliver, client, app, agent_token, tmp_path, monkeypatch):
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=1.0)
    params, _ = deliver(source, "audio/ogg; codecs=opus")
    run_jobs(app)
    (message,) = listing(client, agent_token, params["ConversationSid"])
    path = message["playback_url"].replace("http://localhost", "")
    assert client.get(path[:-3] + "xyz").status_code == 403
    app.config["PLAYBACK_URL_TTL_S"] = -1
    expired = client.get(path)
    assert expired.status_code == 410
    assert expired.get_json()["error"]["code"] == "link_expired"


def test_listing_needs_a_valid_flex_token(client, sandbox):
    conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
    url = f"/api/v1/conversations/{conversation}/audio"
    assert client.get(url).status_code == 401
    response = client.get(url, headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"
    expired = sandbox.issue_token("agent@example.com", ttl_s=-10)
    assert client.get(url, headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    assert (
        client.get(
            "/api/v1/conversations/nope/audio", headers={"Authorization": f"Bearer {sandbox.issue_token('a')}"}
        ).status_code
        == 400
    )


@pytest.mark.parametrize(
    "iam_status, expected_status, expected_code",
    [
        (400, 401, "invalid_token"),  # a token IAM cannot parse: the agent must log in again
        (401, 503, "auth_unavailable"),  # our own credentials refused: not the agent's fault
        (503, 503, "auth_unavailable"),
    ],
)
def test_an_iam_error_is_told_apart_from_a_bad_token(
    client, app, sandbox, agent_token, iam_status, expected_status, expected_code
):
    app.extensions["twilio"].http.backoff_s = 0.01
    sandbox.fail_next(r"/Tokens/validate$", iam_status, count=app.extensions["twilio"].http.retries + 1)
    conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
    response = client.get(
        f"/api/v1/conversations/{conversation}/audio", headers={"Authorization": f"Bearer {agent_token}"}
    )
    assert response.status_code == expected_status
    assert response.get_json()["error"]["code"] == expected_code


def test_flex_token_is_validated_once_then_cached(client, app, sandbox, agent_token, monkeypatch):
    conversation = conversation_with_agent(sandbox, "Customer", "whatsapp")
    api = app.extensions["twilio"]
    calls = []
    original = api.validate_flex_token
    monkeypatch.setattr(api, "validate_flex_token", lambda token: calls.append(token) or original(token))
    for _ in range(5):
        listing(client, agent_token, conversation)
    assert len(calls) == 1


@pytest.mark.parametrize(
    "variant,reason",
    [
        ("empty", "empty"),
        ("text", "not decodable"),
        ("truncated_mp4", "not decodable"),
    ],
)
def test_bad_inputs_fail_with_a_reason(deliver, client, app, agent_token, tmp_path, variant, reason):
    path = tmp_path / "voice.ogg"
    if variant == "empty":
        path.write_bytes(b"")
    elif variant == "text":
        path.write_text("<html>not a voice note</html>\n" * 10)
    else:
        mp4 = make_audio(tmp_path / "v.m4a", "aac_mp4", seconds=3.0)
        data = open(mp4, "rb").read()
        path = tmp_path / "voice.m4a"
        path.write_bytes(data[: len(data) // 3])
    params, response = deliver(path, "audio/ogg")
    assert response.status_code == 200
    run_jobs(app)
    (message,) = listing(client, agent_token, params["ConversationSid"])
    assert message["status"] == "failed"
    assert reason in message["error"]
    assert "playback_url" not in message


def test_media_over_the_download_cap_fails_without_downloading(deliver, client, app, agent_token, tmp_path):
    app.config["MEDIA_DOWNLOAD_MAX_BYTES"] = 10_000
    source = make_audio(tmp_path / "long.wav", "wav", seconds=3.0)  # ~96 kB
    params, _ = deliver(source, "audio/wav")
    run_jobs(app)
    (message,) = listing(client, agent_token, params["ConversationSid"])
    assert message["status"] == "failed" and "over the 9.8 KB cap" in message["error"]


def test_transient_mcs_errors_are_retried(deliver, client, app, sandbox, agent_token, tmp_path):
    app.extensions["twilio"].http.backoff_s = 0.01
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=1.0)
    sandbox.fail_next(r"/Media/ME", 503, count=2)
    params, _ = deliver(source, "audio/ogg; codecs=opus")
    run_jobs(app)
    (message,) = listing(client, agent_token, params["ConversationSid"])
    assert message["status"] == "ready"


def test_persistent_mcs_errors_end_failed_with_the_reason(deliver, client, app, sandbox, agent_token, tmp_path):
    app.extensions["twilio"].http.backoff_s = 0.01
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=1.0)
    sandbox.fail_next(r"/Media/ME", 429, count=1000, retry_after=0)
    params, _ = deliver(source, "audio/ogg; codecs=opus")
    run_jobs(app)
    (row,) = audio_rows(app)
    assert row.status == "failed" and "429" in row.error
    assert row.attempts == app.config["JOB_MAX_ATTEMPTS"] and "after 5 attempt(s)" in row.error


def test_an_outage_longer_than_the_request_retries_is_outlived_by_job_retries(deliver, app, sandbox, tmp_path):
    http = app.extensions["twilio"].http
    http.backoff_s = 0.01
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=1.0)
    sandbox.fail_next(r"/Media/ME", 503, count=http.retries + 1)  # every in-request try of the first attempt
    deliver(source, "audio/ogg; codecs=opus")
    run_jobs(app)
    (row,) = audio_rows(app)
    assert row.status == "ready" and row.attempts == 2


def test_a_media_store_outage_is_outlived_by_job_retries(deliver, app, tmp_path, monkeypatch):
    """The store refusing a put (S3 down: botocore's connection errors are no Twilio error) is retried like
    Twilio's bad minutes, with the reason on the row meanwhile, not a voice note failed for good."""
    store = app.extensions["media_store"]
    real_put, refused = store.put, []

    def put_refused_once(*args, **kwargs):
        if not refused:
            refused.append(args[0])
            raise ConnectionError("Could not connect to the endpoint URL")
        return real_put(*args, **kwargs)

    monkeypatch.setattr(store, "put", put_refused_once)
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=1.0)
    deliver(source, "audio/ogg; codecs=opus")
    run_jobs(app)
    (row,) = audio_rows(app)
    assert refused and row.status == "ready" and row.attempts == 2


def test_an_unforeseen_error_ends_failed_with_its_reason_after_the_last_attempt(deliver, app, tmp_path, monkeypatch):
    store = app.extensions["media_store"]

    def put_broken(*args, **kwargs):
        raise RuntimeError("a bug in the store")

    monkeypatch.setattr(store, "put", put_broken)
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=1.0)
    deliver(source, "audio/ogg; codecs=opus")
    run_jobs(app)
    (row,) = audio_rows(app)
    max_attempts = app.config["JOB_MAX_ATTEMPTS"]
    assert row.status == "failed" and row.attempts == max_attempts
    assert row.error == f"internal error after {max_attempts} attempt(s): RuntimeError: a bug in the store"


def test_sdk_message_with_several_attachments_is_expanded_over_rest(client, app, sandbox, agent_token, tmp_path):
    """Webhooks show one attachment of an SDK message: the job reads the message to find the others."""
    conversation, params, _ = web_chat_message_with_two_attachments(app, sandbox, tmp_path)
    assert post_webhook(client, sandbox, params).status_code == 200
    run_jobs(app)
    run_jobs(app)
    messages = listing(client, agent_token, conversation)
    assert sorted(round(m["duration_s"]) for m in messages) == [1, 2]
    assert {m["status"] for m in messages} == {"ready"}


def test_reading_an_sdk_message_outlives_a_database_refusing_its_rows(
    client, app, sandbox, agent_token, tmp_path, monkeypatch
):
    from webhook_app.inbound import expand as inbound

    real_record, refused = inbound.record_message_media, []

    def refuse_once(*args, **kwargs):
        if not refused:
            refused.append(True)
            raise RuntimeError("the database went away")
        return real_record(*args, **kwargs)

    monkeypatch.setattr(inbound, "record_message_media", refuse_once)
    conversation, params, _ = web_chat_message_with_two_attachments(app, sandbox, tmp_path)
    assert post_webhook(client, sandbox, params).status_code == 200
    for _ in range(3):
        run_jobs(app)
    assert refused
    messages = listing(client, agent_token, conversation)
    assert sorted(round(m["duration_s"]) for m in messages) == [1, 2]
    assert {m["status"] for m in messages} == {"ready"}


def test_reading_an_sdk_message_outlives_an_outage_longer_than_the_request_retries(
    client, app, sandbox, agent_token, tmp_path
):
    """The expand job is enqueued once per message, so it must schedule its own next attempt, not just fail."""
    http = app.extensions["twilio"].http
    http.backoff_s = 0.01
    conversation, params, _ = web_chat_message_with_two_attachments(app, sandbox, tmp_path)
    # Every in-request try of the first attempt to read the message.
    sandbox.fail_next(rf"/Messages/{params['MessageSid']}$", 503, count=http.retries + 1)
    assert post_webhook(client, sandbox, params).status_code == 200
    for _ in range(3):
        run_jobs(app)
    assert sandbox.pending_faults() == 0
    messages = listing(client, agent_token, conversation)
    assert sorted(round(m["duration_s"]) for m in messages) == [1, 2]
    assert {m["status"] for m in messages} == {"ready"}


def test_redelivered_sdk_webhook_reads_the_message_once(client, app, sandbox, tmp_path, monkeypatch):
    """Twilio retries and backfill redeliver webhooks: each SDK message is expanded over REST once, not per delivery."""
    conversation = sandbox.create_conversation("Web visitor", "webchat")["sid"]
    note = make_audio(tmp_path / "a.webm", "webm", seconds=1.0)
    params = sandbox.customer_sends_media(conversation, open(note, "rb").read(), "audio/webm", "a.webm")
    http = app.extensions["twilio"].http
    message_reads = []
    original = http.request

    def spy(method, url, **kwargs):
        if method == "GET" and url.split("?")[0].endswith("/Messages/" + params["MessageSid"]):
            message_reads.append(url)
        return original(method, url, **kwargs)

    monkeypatch.setattr(http, "request", spy)
    for _ in range(3):
        assert post_webhook(client, sandbox, params).status_code == 200
        run_jobs(app)
    assert len(message_reads) == 1, message_reads
    (row,) = audio_rows(app)
    assert row.status == "ready" and row.attempts == 1


def test_a_row_naming_no_media_fails_at_once_with_the_reason(deliver, app, tmp_path):
    """Twilio's schema lets a media SID be null: such a row cannot be downloaded on any attempt, not retried."""
    deliver(make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=1.0), "audio/ogg; codecs=opus")
    with app.app_context():
        db.session.execute(db.update(AudioMessage).values(media_sid=None))
        db.session.commit()
    run_jobs(app)
    (row,) = audio_rows(app)
    assert row.status == "failed" and row.attempts == 1 and row.error.startswith("no media to download")
