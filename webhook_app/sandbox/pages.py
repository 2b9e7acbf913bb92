"""The service's pages in sandbox mode: the agent console's demo (its agent signed in, demo conversations, the
customer played) and /admin's sign-in without a token. Against real Twilio none of it is there: the console asks
for a Flex token, /admin for a token, and "simulate" answers 404 `sandbox_only`.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from flask import Blueprint, Response, abort, jsonify
from flask.typing import ResponseReturnValue

from ..admin.auth import ADMIN_SESSION_MAX_S
from ..admin.views import sign_in
from ..agent.access import conversation_access_required
from ..web.errors import ApiError
from ..webhooks.conversations import handle_message_added
from .demo import AGENT_IDENTITY, AGENT_NAME, demo_voice_note, ensure_demo_conversations, service_sandbox

bp = Blueprint("sandbox_pages", __name__)

SANDBOX_TOKEN_TTL_S = 8 * 3600  # a working day: the embedded token must outlive an open tab
SANDBOX_ADMIN_IDENTITY = "admin@example.com"


def console_page_config(page: str) -> dict[str, Any]:
    """What the sandbox adds to an agent console page (agent/console.py): in the sandbox its demo agent signed in
    (the token embedded in the page) and, for the conversations list, the demo conversations set up."""
    sandbox = service_sandbox()
    if sandbox is None:
        return {"sandbox": False}
    if page == "conversations":
        ensure_demo_conversations(sandbox)
    token = sandbox.issue_token(AGENT_IDENTITY, roles=["agent"], ttl_s=SANDBOX_TOKEN_TTL_S)
    return {"sandbox": True, "identity": AGENT_NAME, "token": token}


@bp.post("/admin/sandbox-login")
def admin_sign_in() -> ResponseReturnValue:
    """/admin's "Sign in to the sandbox": a sandbox-issued Flex token with the admin role (as /agent embeds an
    agent's), issued once the form's CSRF token checks out; 404 against real Twilio."""
    sandbox = service_sandbox()
    if sandbox is None:
        abort(404)
    return sign_in(lambda: sandbox.issue_token(SANDBOX_ADMIN_IDENTITY, roles=["admin"], ttl_s=ADMIN_SESSION_MAX_S))


@bp.post("/agent/api/conversations/<conversation_sid>/simulate-voice-note")
@conversation_access_required
def simulate_voice_note(conversation_sid: str) -> tuple[Response, int]:
    """Play the customer: a generated voice note goes into the sandbox and its webhook to this service."""
    sandbox = service_sandbox()
    if sandbox is None:
        raise ApiError(404, "sandbox_only", "simulating a customer needs the local Twilio sandbox")
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "voice-note.ogg")
        demo_voice_note(path)
        with open(path, "rb") as handle:
            data = handle.read()
    try:
        params = sandbox.customer_sends_media(conversation_sid, data, "audio/ogg", "voice-note.ogg")
    except KeyError:
        raise ApiError(404, "conversation_not_found", f"conversation {conversation_sid} does not exist") from None
    except LookupError as exc:
        raise ApiError(409, "no_customer", str(exc)) from None
    # The webhook's own handler, called in this request: the event comes from the sandbox this process holds, so
    # there is no signature to check, and a single-threaded server (flask run --without-threads, one gunicorn sync
    # worker) is not left waiting on itself as it would be over HTTP.
    status = handle_message_added(params).status_code
    if status != 200:
        raise ApiError(502, "webhook_failed", f"the service answered the onMessageAdded webhook with {status}")
    return jsonify({"conversation_sid": conversation_sid, "message_sid": params["MessageSid"]}), 201
