"""Conversation access: agents reach the conversations they are in; supervisors and admins reach all."""

import pytest

from tests.helpers.agent_api import listing, post_audio
from tests.helpers.audio_samples import make_audio
from tests.helpers.conversations import another_agents_conversation, conversation_with_agent
from tests.helpers.service import audio_rows, record_calls
from webhook_app.sandbox.demo import AGENT_IDENTITY


def assert_not_a_participant(response, conversation: str) -> None:
    assert response.status_code == 403, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "not_a_participant"
    assert AGENT_IDENTITY in error["message"] and conversation in error["message"]
    assert "supervisors and admins reach all" in error["message"]


def test_an_agent_reaches_no_conversation_they_are_not_a_participant_of(client, app, sandbox, agent_token, tmp_path):
    conversation = another_agents_conversation(sandbox)
    bearer = {"Authorization": f"Bearer {agent_token}"}
    take = make_audio(tmp_path / "take.webm", "webm", seconds=1.0)

    # Every one of these answered 200/201 to any valid token of the account before.
    assert_not_a_participant(client.get(f"/api/v1/conversations/{conversation}/audio", headers=bearer), conversation)
    assert_not_a_participant(post_audio(client, agent_token, conversation, take), conversation)
    assert_not_a_participant(
        client.get(f"/api/v1/conversations/{conversation}/audio-settings", headers=bearer), conversation
    )
    assert_not_a_participant(client.get(f"/agent/api/conversations/{conversation}", headers=bearer), conversation)
    assert_not_a_participant(
        client.post(f"/agent/api/conversations/{conversation}/simulate-voice-note", headers=bearer), conversation
    )
    assert audio_rows(app) == []  # refused before anything was sent or audited
    missing = "CH" + "0" * 32
    response = client.get(f"/api/v1/conversations/{missing}/audio", headers=bearer)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "conversation_not_found"


@pytest.mark.parametrize("role", ["supervisor", "admin"])
def test_supervisors_and_admins_reach_every_conversation(client, app, sandbox, agent_token, tmp_path, role):
    conversation = another_agents_conversation(sandbox)
    listing_url = f"/api/v1/conversations/{conversation}/audio"
    refused = client.get(listing_url, headers={"Authorization": f"Bearer {agent_token}"})
    assert_not_a_participant(refused, conversation)  # where an agent is refused, their lead is not:
    token = sandbox.issue_token("lead_40example_2Ecom", roles=[role])
    bearer = {"Authorization": f"Bearer {token}"}
    take = make_audio(tmp_path / "take.webm", "webm", seconds=1.0)
    assert post_audio(client, token, conversation, take).status_code == 201
    (message,) = listing(client, token, conversation)
    assert message["status"] == "ready"
    settings = client.get(f"/api/v1/conversations/{conversation}/audio-settings", headers=bearer)
    assert settings.status_code == 200 and settings.get_json()["channel"] == "whatsapp"
    details = client.get(f"/agent/api/conversations/{conversation}", headers=bearer)
    assert details.status_code == 200 and details.get_json()["sid"] == conversation


def test_an_agent_who_just_accepted_the_task_is_let_in_at_once_and_then_served_from_the_cache(
    client, app, sandbox, agent_token, monkeypatch
):
    conversation = another_agents_conversation(sandbox)
    url, bearer = f"/api/v1/conversations/{conversation}/audio", {"Authorization": f"Bearer {agent_token}"}
    assert_not_a_participant(client.get(url, headers=bearer), conversation)  # its participants are cached now

    sandbox.add_participant(conversation, identity=AGENT_IDENTITY, attributes='{"member_type": "agent"}')  # accepts
    calls = record_calls(monkeypatch, app.extensions["twilio"], "list_participants")
    assert client.get(url, headers=bearer).status_code == 200  # not refused until the cached list expires
    assert calls == [conversation]  # the one fresh read, which also refreshed the cache
    for _ in range(3):
        assert client.get(url, headers=bearer).status_code == 200
    assert calls == [conversation]  # the hot path asks Twilio nothing more


def test_the_console_lists_an_agent_only_their_conversations_and_a_supervisor_all(client, sandbox, agent_token):
    others = [another_agents_conversation(sandbox), sandbox.create_conversation("Nobody's yet", "sms")["sid"]]
    mine = conversation_with_agent(sandbox, "My customer", "webchat")
    supervisor = sandbox.issue_token("lead_40example_2Ecom", roles=["supervisor"])

    def listed(token: str) -> list[str]:
        response = client.get("/agent/api/conversations", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        return [c["sid"] for c in response.get_json()["conversations"]]

    assert listed(agent_token) == [mine]  # the account's every conversation before
    assert listed(supervisor) == [mine, *reversed(others)]
