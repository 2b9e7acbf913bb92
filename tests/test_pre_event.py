"""Pre-event onMessageAdd: agent audio the channel forbids is rejected (403), everything else allowed fast."""

import json
from pathlib import Path

import pytest

from tests.audio_samples import make_audio
from tests.conftest import audio_rows, post_webhook
from tests.processes import wait_until
from tests.test_outbound import set_settings

PRE_EVENT = "/twilio/conversations/pre-event"


@pytest.fixture
def whatsapp(sandbox):
    conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
    agent = sandbox.add_participant(conversation, identity="agent@example.com", attributes='{"member_type":"agent"}')
    return conversation, agent["sid"]


def on_message_add(
    sandbox,
    conversation,
    *,
    source="SDK",
    author="agent@example.com",
    participant_sid=None,
    content_type="audio/mpeg",
    size=1000,
    media=True,
):
    params = {
        "AccountSid": sandbox.account_sid,
        "EventType": "onMessageAdd",
        "ConversationSid": conversation,
        "ChatServiceSid": sandbox.chat_service_sid,
        "Source": source,
        "Author": author,
        "Attributes": "{}",
        "RetryCount": "0",
    }
    if source == "SDK":
        params["ClientIdentity"] = author
    if participant_sid:
        params["ParticipantSid"] = participant_sid
    if media:
        params["Media"] = json.dumps(
            [{"Sid": "ME" + "1" * 32, "ContentType": content_type, "Filename": "a.mp3", "Size": size}]
        )
    return params


def test_agent_audio_is_allowed_by_default(client, sandbox, whatsapp):
    conversation, agent = whatsapp
    response = post_webhook(client, sandbox, on_message_add(sandbox, conversation, participant_sid=agent), PRE_EVENT)
    assert response.status_code == 200 and response.get_json() == {}


def test_agent_audio_is_rejected_when_sending_is_disabled(client, app, sandbox, whatsapp):
    conversation, agent = whatsapp
    set_settings(app, "whatsapp", sending_enabled=False)
    response = post_webhook(client, sandbox, on_message_add(sandbox, conversation, participant_sid=agent), PRE_EVENT)
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
    image = on_message_add(sandbox, conversation, participant_sid=agent, content_type="image/png")
    for params in (text, image):
        assert post_webhook(client, sandbox, params, PRE_EVENT).status_code == 200


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
