"""The agent console's JSON, over the Flex-token auth the agent API uses."""

import pytest

from tests.conftest import AGENT_IDENTITY, conversation_with_agent
from webhook_app.agent.console import LIST_LIMIT


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
