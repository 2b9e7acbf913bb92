"""Conversations in the sandbox as Flex leaves them: a customer's, with or without the agent of `agent_token`."""

from __future__ import annotations

from pathlib import Path

# The agent of `agent_token` is the console's: the escaped chat identity Flex gives both a token and a participant.
from tests.helpers.audio_samples import make_audio
from webhook_app.sandbox.demo import AGENT_ATTRIBUTES, AGENT_IDENTITY


def agent_accepts(sandbox, conversation_sid: str) -> str:
    """The agent of `agent_token` joins the conversation, as Flex adds them when they accept its task."""
    sandbox.add_participant(conversation_sid, identity=AGENT_IDENTITY, attributes=AGENT_ATTRIBUTES)
    return conversation_sid


def conversation_with_agent(sandbox, friendly_name: str, channel: str, customer_address: str | None = None) -> str:
    """A customer's conversation on `channel` whose task the agent of `agent_token` has accepted."""
    return agent_accepts(sandbox, sandbox.create_conversation(friendly_name, channel, customer_address)["sid"])


def another_agents_conversation(sandbox) -> str:
    """A customer's conversation whose task another agent accepted: the agent of `agent_token` is not in it."""
    conversation = sandbox.create_conversation("Bob's customer", "whatsapp")["sid"]
    sandbox.add_participant(conversation, identity="bob_40example_2Ecom", attributes='{"member_type": "agent"}')
    return conversation


def web_chat_message_with_two_attachments(app, sandbox, tmp_path) -> tuple[str, dict, str]:
    """A web chat (SDK) message with a 1 s and a 2 s voice note, of which its webhook shows only the first:
    (conversation SID, the webhook's params, the second attachment's media SID)."""
    conversation = conversation_with_agent(sandbox, "Web visitor", "webchat")
    first = make_audio(tmp_path / "a.webm", "webm", seconds=1.0)
    second = make_audio(tmp_path / "b.ogg", "whatsapp_ogg", seconds=2.0)
    params = sandbox.customer_sends_media(conversation, Path(first).read_bytes(), "audio/webm", "a.webm")
    extra = app.extensions["twilio"].upload_media(
        sandbox.chat_service_sid, Path(second).read_bytes(), "audio/ogg", "b.ogg"
    )
    sandbox.attach_media(conversation, params["MessageSid"], extra["sid"])
    return conversation, params, extra["sid"]
