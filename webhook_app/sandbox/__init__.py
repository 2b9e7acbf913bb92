"""The local Twilio sandbox: a fake Twilio account that plays Twilio's part when the service has no credentials.

In: Conversations v1, Media Content Service and IAM token-validation requests (Twilio's paths, any base URL), and
Python calls from the CLI, the agent console and tests (a customer sends a voice note, fail the next request...).
Out: Twilio's wire shapes, and webhooks signed exactly as Twilio signs them. It is an app of its own: the service
reaches it only through the Twilio client, as it would reach Twilio.
"""

from __future__ import annotations

import os

from flask import Flask

from .account import Sandbox
from .app import create_sandbox_app


def sandbox_for(app: Flask) -> Sandbox | None:
    """The app's sandbox account when it runs without Twilio credentials (TWILIO_SANDBOX), else None."""
    if not app.config["TWILIO_SANDBOX"]:
        return None
    return Sandbox(app.config.get("SANDBOX_DB") or os.path.join(app.instance_path, "twilio-sandbox.db"))


__all__ = ["Sandbox", "create_sandbox_app", "sandbox_for"]
