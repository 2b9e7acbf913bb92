"""Pre-event onMessageAdd: agent audio the channel forbids is rejected (403), everything else allowed fast."""

import time
from pathlib import Path

import pytest

from tests.helpers.audio_samples import KINDS, make_audio
from tests.helpers.other_files import pdf, png
from tests.helpers.processes import wait_until
from tests.helpers.service import audio_rows, set_settings
from tests.helpers.webhooks import PRE_EVENT, on_message_add, post_webhook
from webhook_app.outbound import pre_event


def uploaded(app, sandbox, data: bytes, label: str, filename: str) -> dict:
    """A file put in the sandbox's MCS, as a webhook's Media item lists it (Twilio's spelling)."""
    media = app.extensions["twilio"].upload_media(sandbox.chat_service_sid, data, label, filename)
    return {"Sid": media["sid"], "ContentType": label, "Filename": filename, "Size": len(data)}


def test_agent_audio_is_allowed_by_default(client, sandbox, whatsapp):
    conversation, agent = whatsapp
    response = post_webhook(client, sandbox, on_message_add(sandbox, conversation, participant_sid=agent), PRE_EVENT)
    assert response.status_code == 200 and response.get_json() == {}


def test_agent_audio_is_rejected_when_sending_is_disabled(client, app, sandbox, whatsapp):
    conversation, agent = whatsapp
    set_settings(app, "whatsapp", sending_enabled=False)
    response = post_webhook(client, sandbox, on_message_add(sandbox, conversation, participant_sid=agent), PRE_EVENT)
    rejected_for_sending_disabled(app, response)


def rejected_for_sending_disabled(app, response):
    """The audit row of the one file a pre-event rejected because the channel's sending is off."""
    assert response.status_code == 403
    assert response.get_json()["error"] == {
        "code": "audio_not_allowed",
        "message": "audio sending is disabled for the whatsapp channel",
    }
    (row,) = audio_rows(app)
    assert (row.direction, row.status, row.error_code, row.source) == (
        "outbound",
        "failed",
        "sending_disabled",
        "pre-event",
    )
    return row


def test_agent_audio_over_the_cap_is_rejected(client, app, sandbox, whatsapp):
    conversation, agent = whatsapp
    set_settings(app, "whatsapp", max_bytes=500_000)
    params = on_message_add(sandbox, conversation, participant_sid=agent, size=600_000)
    response = post_webhook(client, sandbox, params, PRE_EVENT)
    assert response.status_code == 403 and "at most 488.3 KB" in response.get_json()["error"]["message"]
    small = on_message_add(sandbox, conversation, participant_sid=agent, size=400_000)
    assert post_webhook(client, sandbox, small, PRE_EVENT).status_code == 200


def test_customer_messages_are_never_blocked(client, app, sandbox, whatsapp):
    conversation, _ = whatsapp
    set_settings(app, "whatsapp", sending_enabled=False)
    customer = on_message_add(sandbox, conversation, source="WHATSAPP", author="whatsapp:+15551230001")
    assert post_webhook(client, sandbox, customer, PRE_EVENT).status_code == 200
    webchat = sandbox.create_conversation("Visitor", "webchat")["sid"]
    visitor = sandbox.list_participants(webchat)[0]
    set_settings(app, "webchat", sending_enabled=False)
    params = on_message_add(sandbox, webchat, author=visitor["identity"], participant_sid=visitor["sid"])
    assert post_webhook(client, sandbox, params, PRE_EVENT).status_code == 200
    assert audio_rows(app) == []


def test_text_and_images_pass(client, app, sandbox, whatsapp):
    conversation, agent = whatsapp
    set_settings(app, "whatsapp", sending_enabled=False)
    text = on_message_add(sandbox, conversation, participant_sid=agent, media=False)
    files = [uploaded(app, sandbox, png(), "image/png", "a.png"), uploaded(app, sandbox, pdf(), "text/plain", "a.txt")]
    image = on_message_add(sandbox, conversation, participant_sid=agent, files=files)
    for params in (text, image):
        assert post_webhook(client, sandbox, params, PRE_EVENT).status_code == 200
    assert audio_rows(app) == []


# -- what a file is, by its bytes: Flex's attach button sends whatever label the browser guessed ----------------
@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("pre-event")
    return {
        kind: Path(make_audio(folder / f"reply{KINDS[kind][0]}", kind, seconds=1.0)).read_bytes()
        for kind in ("webm", "whatsapp_ogg", "aac_mp4")
    }


MISLABELLED = [
    ("webm", "video/webm", "reply.webm", "webm"),
    ("whatsapp_ogg", "application/octet-stream", "note.bin", "ogg"),
    ("aac_mp4", "text/plain", "note.txt", "mp4"),
]


@pytest.mark.parametrize("kind,label,filename,container", MISLABELLED)
def test_agent_audio_with_another_label_is_rejected_by_its_bytes(
    client, app, sandbox, whatsapp, recordings, kind, label, filename, container
):
    conversation, agent = whatsapp
    set_settings(app, "whatsapp", sending_enabled=False)
    files = [uploaded(app, sandbox, recordings[kind], label, filename)]
    response = post_webhook(
        client, sandbox, on_message_add(sandbox, conversation, participant_sid=agent, files=files), PRE_EVENT
    )
    row = rejected_for_sending_disabled(app, response)
    assert row.media_sid == files[0]["Sid"]
    assert (row.content_type, row.filename) == (label, filename)  # what Twilio said; the error says what it is
    assert f"labelled {label}, its bytes are {container} audio" in row.error


def test_every_rejected_file_gets_its_audit_row(client, app, sandbox, whatsapp, recordings):
    conversation, agent = whatsapp
    set_settings(app, "whatsapp", sending_enabled=False)
    files = [
        uploaded(app, sandbox, recordings["webm"], "video/webm", "a.webm"),
        uploaded(app, sandbox, png(), "image/png", "photo.png"),
        uploaded(app, sandbox, recordings["whatsapp_ogg"], "application/octet-stream", "note.bin"),
        uploaded(app, sandbox, recordings["aac_mp4"], "audio/mp4", "labelled.m4a"),
    ]
    response = post_webhook(
        client, sandbox, on_message_add(sandbox, conversation, participant_sid=agent, files=files), PRE_EVENT
    )
    assert response.status_code == 403
    rows = audio_rows(app)
    assert sorted(row.media_sid for row in rows) == sorted(files[i]["Sid"] for i in (0, 2, 3))  # not the photo
    assert {row.status for row in rows} == {"failed"}


def test_media_that_cannot_be_read_in_time_is_rejected_and_audited(client, app, sandbox, whatsapp, monkeypatch):
    """Sending is off: a file that might be audio is not published on a guess. Twilio would publish it unchanged
    after 5 s, so the answer comes at the read budget, however long MCS stalls."""
    conversation, agent = whatsapp
    set_settings(app, "whatsapp", sending_enabled=False)
    monkeypatch.setattr(pre_event, "HEAD_BUDGET_S", 0.5)
    files = [uploaded(app, sandbox, png(), "image/png", "photo.png")]
    sandbox.stall_next(r"/Content$", 3.0)
    started = time.monotonic()
    response = post_webhook(
        client, sandbox, on_message_add(sandbox, conversation, participant_sid=agent, files=files), PRE_EVENT
    )
    assert time.monotonic() - started < 2.0
    assert response.status_code == 403
    message = response.get_json()["error"]["message"]
    assert message.startswith("audio sending is disabled for the whatsapp channel") and "try again" in message
    (row,) = audio_rows(app)
    assert (row.status, row.error_code, row.content_type) == ("failed", "sending_disabled", "image/png")
    assert "could not be read from Twilio within 0.5 s" in row.error

    sandbox.fail_next(r"/Content$", 503)  # an error is no better than a stall
    again = post_webhook(
        client, sandbox, on_message_add(sandbox, conversation, participant_sid=agent, files=files), PRE_EVENT
    )
    assert again.status_code == 403 and len(audio_rows(app)) == 2


@pytest.fixture
def media_reads(app, monkeypatch) -> list[str]:
    api = app.extensions["twilio"]
    reads: list[str] = []
    real = api.media_head
    monkeypatch.setattr(
        api, "media_head", lambda service, sid, *a, **k: reads.append(sid) or real(service, sid, *a, **k)
    )
    return reads


def test_a_customers_files_are_never_read(client, app, sandbox, whatsapp, recordings, media_reads):
    conversation, _ = whatsapp
    set_settings(app, "whatsapp", sending_enabled=False)
    files = [uploaded(app, sandbox, recordings["whatsapp_ogg"], "text/plain", "note.txt")]
    customer = on_message_add(sandbox, conversation, source="WHATSAPP", author="whatsapp:+15551230001", files=files)
    assert post_webhook(client, sandbox, customer, PRE_EVENT).status_code == 200
    assert media_reads == [] and audio_rows(app) == []


def test_nothing_is_read_where_the_settings_allow_it_or_the_label_says_audio(
    client, app, sandbox, whatsapp, recordings, media_reads
):
    conversation, agent = whatsapp
    files = [uploaded(app, sandbox, recordings["webm"], "video/webm", "a.webm")]
    allowed = on_message_add(sandbox, conversation, participant_sid=agent, files=files)
    assert post_webhook(client, sandbox, allowed, PRE_EVENT).status_code == 200  # sending on, under the cap
    set_settings(app, "whatsapp", sending_enabled=False)
    labelled = on_message_add(sandbox, conversation, participant_sid=agent)  # audio/mpeg: the label decides
    assert post_webhook(client, sandbox, labelled, PRE_EVENT).status_code == 403
    assert media_reads == []


def test_a_file_over_the_cap_is_read_and_rejected_as_audio_only_by_its_bytes(
    client, app, sandbox, whatsapp, recordings, media_reads
):
    conversation, agent = whatsapp
    set_settings(app, "whatsapp", max_bytes=1000)
    voice = [uploaded(app, sandbox, recordings["whatsapp_ogg"], "application/octet-stream", "note.bin")]
    response = post_webhook(
        client, sandbox, on_message_add(sandbox, conversation, participant_sid=agent, files=voice), PRE_EVENT
    )
    assert (
        response.status_code == 403 and "whatsapp allows at most 1000 bytes" in response.get_json()["error"]["message"]
    )
    assert audio_rows(app)[0].error_code == "too_large"
    photo = [uploaded(app, sandbox, png() + bytes(2000), "image/png", "big.png")]
    response = post_webhook(
        client, sandbox, on_message_add(sandbox, conversation, participant_sid=agent, files=photo), PRE_EVENT
    )
    assert response.status_code == 200
    assert media_reads == [voice[0]["Sid"], photo[0]["Sid"]]


def test_pre_event_needs_a_valid_signature(client, sandbox, whatsapp):
    conversation, agent = whatsapp
    params = on_message_add(sandbox, conversation, participant_sid=agent)
    assert post_webhook(client, sandbox, params, PRE_EVENT, signature="Zm9yZ2Vk").status_code == 403


def test_pre_event_answers_from_cache_without_calling_twilio(client, app, sandbox, whatsapp, monkeypatch):
    """Twilio publishes unchanged after 5 s: the verdict must not wait on a REST call per message. The speed
    itself is the benchmark's to measure; here, that repeated messages make no Twilio call at all."""
    conversation, agent = whatsapp
    params = on_message_add(sandbox, conversation, participant_sid=agent)
    api = app.extensions["twilio"]
    calls: list[str] = []
    original = api.list_participants
    monkeypatch.setattr(api, "list_participants", lambda sid: calls.append(sid) or original(sid))
    for _ in range(20):
        assert post_webhook(client, sandbox, params, PRE_EVENT).status_code == 200
    assert len(calls) <= 1  # the first message of the conversation may fetch its participants, once


# -- as Twilio calls it: the sandbox asks the live service before publishing an agent's SDK send ---------------
@pytest.fixture
def hooked(sandbox, live_server):
    sandbox.set_webhook(
        f"{live_server}/twilio/conversations/post-event", pre_url=f"{live_server}/twilio/conversations/pre-event"
    )
    conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
    sandbox.add_participant(conversation, identity="agent_40example_2Ecom", attributes='{"member_type":"agent"}')
    return conversation


def test_flex_native_audio_is_stopped_before_publishing_when_the_channel_forbids_it(app, sandbox, hooked, tmp_path):
    voice = make_audio(tmp_path / "reply.ogg", "whatsapp_ogg", seconds=1.0)
    set_settings(app, "whatsapp", sending_enabled=False)
    sent = sandbox.agent_sends_media(
        hooked, "agent_40example_2Ecom", Path(voice).read_bytes(), "audio/ogg", "reply.ogg"
    )
    assert sent["published"] is False and sent["pre_status"] == 403
    assert sandbox.list_messages(hooked) == []  # the customer never gets it
    (row,) = audio_rows(app)
    assert (row.direction, row.status, row.error_code, row.author) == (
        "outbound",
        "failed",
        "sending_disabled",
        "agent_40example_2Ecom",
    )


def test_flex_native_audio_labelled_video_is_stopped_by_its_bytes(app, sandbox, hooked, recordings):
    set_settings(app, "whatsapp", sending_enabled=False)
    sent = sandbox.agent_sends_media(hooked, "agent_40example_2Ecom", recordings["webm"], "video/webm", "clip.webm")
    assert sent["published"] is False and sent["pre_status"] == 403
    assert sandbox.list_messages(hooked) == []
    (row,) = audio_rows(app)
    assert (row.status, row.error_code, row.content_type) == ("failed", "sending_disabled", "video/webm")


def test_flex_native_audio_that_is_allowed_is_published_then_audited_as_the_agents(app, sandbox, hooked, tmp_path):
    voice = make_audio(tmp_path / "reply.ogg", "whatsapp_ogg", seconds=1.0)
    sent = sandbox.agent_sends_media(
        hooked, "agent_40example_2Ecom", Path(voice).read_bytes(), "audio/ogg", "reply.ogg"
    )
    assert sent["published"] is True and sent["pre_status"] == 200
    assert sandbox.webhook_deliveries()[-1]["status"] == 200  # the post-event that followed
    row = wait_until(
        lambda: next((r for r in audio_rows(app) if r.status in ("ready", "failed")), None),
        60,
        "the agent's audio row to finish",
    )
    assert (row.direction, row.status, row.message_sid) == ("outbound", "ready", sent["message_sid"])
