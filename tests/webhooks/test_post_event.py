"""Post-event webhook: signature, media spellings, idempotency, fast acknowledgement."""

from sqlalchemy.exc import OperationalError

from tests.helpers.audio_samples import make_audio
from tests.helpers.service import audio_rows, count_rows, run_jobs
from tests.helpers.webhooks import POST_EVENT, load_fixture, post_webhook, sids
from webhook_app.extensions import db


def test_whatsapp_voice_note_creates_one_queued_row(check_webhook, sandbox, app):
    response = check_webhook("onMessageAdded__whatsapp_voice_note", expected_rows=1, **sids(sandbox))
    assert len(response.get_json()["audit_ids"]) == 1
    (row,) = audio_rows(app)
    assert (row.direction, row.channel, row.content_type) == ("inbound", "whatsapp", "audio/ogg; codecs=opus")
    assert row.media_sid == "ME" + "d" * 32 and row.size_bytes == 1234


def test_sms_amr_voice_clip(check_webhook, sandbox, app):
    check_webhook("onMessageAdded__sms_amr_voice_clip", expected_rows=1, **sids(sandbox))
    assert audio_rows(app)[0].channel == "sms"


def test_rest_style_lowercase_media_keys(check_webhook, sandbox, app):
    check_webhook("onMessageAdded__webchat_sdk_lowercase_media", expected_rows=1, **sids(sandbox))
    assert audio_rows(app)[0].channel == "webchat"


def test_event_streams_media_sid_spelling(check_webhook, sandbox):
    check_webhook("onMessageAdded__event_streams_media_sid", expected_rows=1, **sids(sandbox, content_type="audio/mp4"))


def test_generic_content_type_with_audio_file_name(check_webhook, sandbox):
    check_webhook("onMessageAdded__octet_stream_opus_name", expected_rows=1, **sids(sandbox))


def test_text_image_and_other_events_create_nothing(check_webhook, sandbox):
    check_webhook("onMessageAdded__text_only", expected_rows=0, **sids(sandbox))
    check_webhook("onMessageAdded__image", expected_rows=0, **sids(sandbox))
    check_webhook("onConversationAdded__default", expected_rows=0, **sids(sandbox))


def test_forged_signature_is_rejected_and_nothing_stored(client, sandbox, app):
    params = load_fixture("onMessageAdded__whatsapp_voice_note", **sids(sandbox))
    response = post_webhook(client, sandbox, params, signature="bm90IGEgc2lnbmF0dXJl")
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "invalid_signature"
    tampered = dict(params, Author="whatsapp:+15559999999")
    good_signature = sandbox.sign("http://localhost" + POST_EVENT, params)
    assert post_webhook(client, sandbox, tampered, signature=good_signature).status_code == 403
    assert client.post(POST_EVENT, data=params).status_code == 403  # no header at all
    assert count_rows(app) == 0


def test_signature_validates_behind_a_tls_terminating_proxy(client, sandbox, another_app):
    """Heroku's router speaks http:// to the dyno while Twilio signed https://public-host/..."""
    params = load_fixture("onMessageAdded__whatsapp_voice_note", **sids(sandbox))
    signature = sandbox.sign("https://audio.example.com" + POST_EVENT, params)
    headers = {"X-Twilio-Signature": signature, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "audio.example.com"}
    # By default no proxy is trusted: X-Forwarded-* is what the sender says.
    assert client.post(POST_EVENT, data=params, headers=headers).status_code == 403
    client = another_app(PROXY_FIX_HOPS=1).test_client()  # the one router in front, trusted as configured
    assert client.post(POST_EVENT, data=params, headers=headers).status_code == 200
    # Without the forwarded headers the dyno sees http://localhost and the signature cannot match.
    assert client.post(POST_EVENT, data=params, headers={"X-Twilio-Signature": signature}).status_code == 403


def test_public_base_url_rebuilds_the_signed_url(client, sandbox, app):
    app.config["PUBLIC_BASE_URL"] = "https://audio.example.com"
    params = load_fixture("onMessageAdded__whatsapp_voice_note", **sids(sandbox))
    signature = sandbox.sign("https://audio.example.com" + POST_EVENT, params)
    assert client.post(POST_EVENT, data=params, headers={"X-Twilio-Signature": signature}).status_code == 200


def test_same_webhook_three_times_is_one_row_and_one_transcode(deliver, client, sandbox, app, tmp_path):
    source = make_audio(tmp_path / "note.ogg", "whatsapp_ogg", seconds=2.0)
    params, first = deliver(source, "audio/ogg; codecs=opus")
    assert first.status_code == 200
    for _ in range(2):
        again = post_webhook(client, sandbox, dict(params, RetryCount="1"))
        assert again.status_code == 200 and again.get_json()["audit_ids"] == []
    run_jobs(app)
    (row,) = audio_rows(app)
    assert row.status == "ready" and row.attempts == 1


def test_database_down_answers_503_so_twilio_can_retry(client, sandbox, app, monkeypatch):
    def broken(*args, **kwargs):
        raise OperationalError("connect", {}, Exception("connection refused"))

    with app.app_context():
        monkeypatch.setattr(db.engine, "raw_connection", broken)  # under engine.connect() too
    params = load_fixture("onMessageAdded__whatsapp_voice_note", **sids(sandbox))
    response = post_webhook(client, sandbox, params)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "storage_unavailable"
    monkeypatch.undo()  # the database is back: nothing was stored, and the redelivery is
    assert count_rows(app) == 0
    assert post_webhook(client, sandbox, params).status_code == 200
    assert count_rows(app) == 1


def test_queue_down_still_acknowledges_and_leaves_row_queued(client, sandbox, app, monkeypatch):
    from webhook_app.jobs import queue as jobs

    def unreachable(*args, **kwargs):
        raise ConnectionError("redis unreachable")

    monkeypatch.setattr(jobs, "enqueue", unreachable)
    params = load_fixture("onMessageAdded__whatsapp_voice_note", **sids(sandbox))
    assert post_webhook(client, sandbox, params).status_code == 200
    assert [row.status for row in audio_rows(app)] == ["queued"]
