"""The agent console's JSON, over the Flex-token auth the agent API uses."""

from webhook_app.agent.console import LIST_LIMIT


def test_the_newest_conversations_come_first_even_past_one_page(client, sandbox, agent_token):
    """Twilio lists oldest first; with more conversations than the console shows, the newest must still be there."""
    created = [sandbox.create_conversation(f"Customer {number}", "sms")["sid"] for number in range(LIST_LIMIT + 30)]
    response = client.get("/agent/api/conversations", headers={"Authorization": f"Bearer {agent_token}"})
    assert response.status_code == 200
    listed = [c["sid"] for c in response.get_json()["conversations"]]
    assert listed == created[::-1][:LIST_LIMIT]


def test_the_console_api_needs_a_flex_token(client):
    response = client.get("/agent/api/conversations")
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "missing_token"
