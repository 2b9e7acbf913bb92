"""The sandbox account a request to the sandbox app is served from, as its views see it.

A Protocol rather than account.py's Sandbox: account.py builds the app (app.py), so the views naming Sandbox
would make the two import each other. Sandbox meets it as it is.
"""

from __future__ import annotations

from typing import Protocol

from flask import current_app, request

from .store import Store
from .webhooks import WebhookSender
from .wire import not_found

EXTENSION = "twilio_sandbox"  # the sandbox app's extensions key: its account


class ServedAccount(Protocol):
    store: Store
    webhooks: WebhookSender
    chat_service_sid: str


def current_sandbox() -> ServedAccount:
    """The account the request is served from (app.create_sandbox_app puts it in the app's extensions)."""
    sandbox: ServedAccount = current_app.extensions[EXTENSION]
    return sandbox


def check_service(chat_service_sid: str | None) -> None:
    """A service-scoped path names this account's one Conversations service, or nothing is there."""
    if chat_service_sid is not None and chat_service_sid != current_sandbox().chat_service_sid:
        raise not_found(request.path)
