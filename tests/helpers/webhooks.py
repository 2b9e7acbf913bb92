"""Webhooks as Twilio posts them: the recorded bodies in tests/fixtures/webhooks/ with their placeholders filled,
signed by the sandbox with its auth token."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template
from urllib.parse import parse_qsl

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
POST_EVENT = "/twilio/conversations/post-event"
PRE_EVENT = "/twilio/conversations/pre-event"


def load_fixture(name: str, **values) -> dict[str, str]:
    """A webhook body as Twilio posts it (form-encoded), with $placeholders filled in."""
    raw = (FIXTURES / "webhooks" / f"{name}.txt").read_text().strip()
    return dict(parse_qsl(Template(raw).substitute(values), keep_blank_values=True))


def sids(sandbox, **extra):
    """Values for a fixture's placeholders: the sandbox's account and chat service, made-up SIDs for the rest."""
    values = dict(
        account_sid=sandbox.account_sid,
        chat_service_sid=sandbox.chat_service_sid,
        conversation_sid="CH" + "a" * 32,
        message_sid="IM" + "b" * 32,
        participant_sid="MB" + "c" * 32,
        media_sid="ME" + "d" * 32,
        filename="voice.ogg",
        size="1234",
        author="guest-1",
        content_type="audio/webm",
    )
    values.update(extra)
    return values


def post_webhook(client, sandbox, params: dict, path: str = POST_EVENT, signature: str | None = None):
    url = "http://localhost" + path
    headers = {"X-Twilio-Signature": signature if signature is not None else sandbox.sign(url, params)}
    return client.post(path, data=params, headers=headers)


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
    files=(),
):
    """onMessageAdd as Twilio posts it. `files`: the attachments as the webhook lists them (`uploaded`), else one
    media item that MCS does not hold."""
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
    if files:
        params["Media"] = json.dumps(list(files))
    elif media:
        params["Media"] = json.dumps(
            [{"Sid": "ME" + "1" * 32, "ContentType": content_type, "Filename": "a.mp3", "Size": size}]
        )
    return params
