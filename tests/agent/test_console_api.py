"""The agent console's JSON, over the Flex-token auth the agent API uses."""

import pytest

from tests.helpers.conversations import agent_accepts, another_agents_conversation, conversation_with_agent
from tests.helpers.service import record_calls
from webhook_app.agent.access import REFUSED_CONVERSATIONS
from webhook_app.agent.console import LIST_LIMIT
from webhook_app.sandbox.demo import AGENT_IDENTITY


@pytest.mark.parametrize("role", ["supervisor", "agent"])  # the account's list; the agent's own conversations
def test_the_newest_conversations_come_first_even_past_one_page(client, sandbox, role):
    """Twilio lists oldest first; with more conversations than the console shows, the newest must still be there."""
    created = [conversation_with_agent(sandbox, f"Customer {number}", "sms") for number in range(LIST_LIMIT + 30)]
    token = sandbox.issue_token(AGENT_IDENTITY, roles=[role])
    response = client.get("/agent/api/conversations", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    listed = [c["sid"] for c in response.get_json()["conversations"]]
    assert listed == created[::-1][:LIST_LIMIT]


def test_the_console_api_needs_a_flex_token(client):
    response = client.get("/agent/api/conversations")
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "missing_token"


@pytest.fixture
def participants_calls(app, monkeypatch):
    """Every conversation whose Participants list the service asks Twilio for (behind its cache)."""
    return record_calls(monkeypatch, app.extensions["twilio"], "list_participants")


def test_refused_conversations_cost_a_bounded_number_of_participants_calls(
    client, app, sandbox, agent_token, participants_calls
):
    bearer = {"Authorization": f"Bearer {agent_token}"}
    theirs = another_agents_conversation(sandbox)
    answers = {client.get(f"/api/v1/conversations/{theirs}/audio", headers=bearer).status_code for _ in range(50)}
    assert answers == {403}
    assert participants_calls == [theirs, theirs]  # the refusal and one ask more (just accepted?); 50 before

    # A refusal confirmed twice stands for REFUSAL_CACHE_S; then an agent who has accepted since gets in.
    agent_accepts(sandbox, theirs)
    app.extensions["conversation_refusals"].clear()  # REFUSAL_CACHE_S later
    assert client.get(f"/api/v1/conversations/{theirs}/audio", headers=bearer).status_code == 200

    # Invented SIDs (Twilio: 404) are refusals too; past the limit the agent is told to wait, without asking.
    answers = [client.get(f"/api/v1/conversations/CH{n:032x}/audio", headers=bearer) for n in range(50)]
    limit = REFUSED_CONVERSATIONS.limit
    assert [answer.status_code for answer in answers] == [404] * (limit - 1) + [429] * (50 - limit + 1)
    assert answers[-1].get_json()["error"]["code"] == "too_many_refused_conversations"
    assert 0 < int(answers[-1].headers["Retry-After"]) <= REFUSED_CONVERSATIONS.window_s
    assert len(participants_calls) == 3 + limit - 1  # 100 before


def test_the_limit_on_refused_conversations_is_per_agent(client, sandbox, agent_token):
    def get(sid: str, token: str) -> int:
        return client.get(
            f"/api/v1/conversations/{sid}/audio", headers={"Authorization": f"Bearer {token}"}
        ).status_code

    assert {get(f"CH{n:032x}", agent_token) for n in range(REFUSED_CONVERSATIONS.limit)} == {404}
    assert get(f"CH{99:032x}", agent_token) == 429
    carols = conversation_with_agent(sandbox, "Carol's customer", "sms")
    sandbox.add_participant(carols, identity="carol_40example_2Ecom", attributes='{"member_type": "agent"}')
    assert get(carols, sandbox.issue_token("carol_40example_2Ecom", roles=["agent"])) == 200
