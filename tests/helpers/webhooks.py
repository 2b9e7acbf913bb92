"""Webhooks as Twilio posts them: the bodies in tests/fixtures/webhooks/<event>__<variant>.json, one form field per
line with $placeholders in its values (a field Twilio sends as JSON text, such as Media, written as JSON), signed by
the sandbox with its auth token."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
POST_EVENT = "/twilio/conversations/post-event"
PRE_EVENT = "/twilio/conversations/pre-event"


def load_fixture(name: str, **values) -> dict[str, str]:
    """A webhook body as Twilio posts it (its form fields), with $placeholders filled in."""
    fields = json.loads((FIXTURES / "webhooks" / f"{name}.json").read_text())
    return {
        key: fill(value, values) if isinstance(value, str) else json.dumps(fill(value, values))
        for key, value in fields.items()
    }


def fill(value, values: dict):
    """`value` with the $placeholders in its strings filled in, at any depth."""
    if isinstance(value, str):
        return Template(value).substitute(values)
    if isinstance(value, list):
        return [fill(item, values) for item in value]
    if isinstance(value, dict):
        return {key: fill(item, values) for key, item in value.items()}
    return value


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
    """onMessageAdd as Twilio posts it (the fixture onMessageAdd__agent_audio: an agent's MP3 from the Flex UI), as
    `source` and `author` sent it. `files`: the attachments as the webhook lists them (`uploaded`), else one media
    item that MCS does not hold, of `content_type` and `size`; `media=False`: none."""
    params = load_fixture(
        "onMessageAdd__agent_audio",
        account_sid=sandbox.account_sid,
        chat_service_sid=sandbox.chat_service_sid,
        conversation_sid=conversation,
    )
    params.update(Source=source, Author=author, ClientIdentity=author)
    if source != "SDK":
        del params["ClientIdentity"]  # only SDK (Flex UI, web chat) messages carry the sender's identity
    if participant_sid:
        params["ParticipantSid"] = participant_sid
    (item,) = json.loads(params["Media"])
    if files:
        params["Media"] = json.dumps(list(files))
    elif media:
        params["Media"] = json.dumps([{**item, "ContentType": content_type, "Size": size}])
    else:
        del params["Media"]
    return params
