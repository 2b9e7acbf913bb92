"""The agent console: the service's own web page for hearing and answering voice notes without Flex.

It uses the same record panel and audio list a Flex plugin mounts, against the same agent API. In sandbox mode it
also sets up demo conversations and can play the customer, so the whole loop runs on one machine.
"""

from __future__ import annotations

import collections
import json
import os
import tempfile
from datetime import UTC, datetime

from flask import Blueprint, abort, current_app, g, jsonify, redirect, render_template, request, url_for

from ..domain_errors import conversation_error
from ..settings.channels import channel_from_participants, conversation_participants
from ..twilio.client import twilio_api
from ..twilio.http import TwilioHttpError
from ..twilio.sids import is_sid
from ..web.errors import ApiError
from ..web.flex_auth import flex_token_required
from .access import conversation_access_required, reaches_every_conversation
from .demo import AGENT_IDENTITY, AGENT_NAME, demo_voice_note, ensure_demo_conversations

bp = Blueprint("agent_console", __name__)

SANDBOX_TOKEN_TTL_S = 8 * 3600  # a working day: the embedded token must outlive an open tab
LIST_LIMIT = 200
SCAN_LIMIT = 5000
PARTICIPANT_CONVERSATIONS_PAGE_SIZE = 50  # that resource's maximum (100 elsewhere in Conversations)
POST_EVENT_PATH = "/twilio/conversations/post-event"

# -- pages --------------------------------------------------------------------------------------------------


@bp.get("/")
def index():
    return redirect(url_for("agent_console.conversations"))


@bp.get("/agent")
def conversations():
    if twilio_api().sandbox is not None:
        ensure_demo_conversations()
    return render_template("agent/conversations.html", page=_page_config(page="conversations"))


@bp.get("/agent/conversations/<conversation_sid>")
def conversation(conversation_sid: str):
    if not is_sid(conversation_sid, "CH"):
        abort(404)
    config = _page_config(page="conversation", conversationSid=conversation_sid)
    return render_template("agent/conversation.html", page=config, conversation_sid=conversation_sid)


def _page_config(**extra) -> dict:
    """What the page script needs. Outside the sandbox there is no token here: the agent pastes a Flex one."""
    sandbox = twilio_api().sandbox
    config = {
        "sandbox": sandbox is not None,
        "apiBaseUrl": request.script_root,
        "consoleApi": request.script_root + "/agent/api",
        "conversationsUrl": url_for("agent_console.conversations"),
        "conversationUrl": url_for("agent_console.conversation", conversation_sid="CONVERSATION_SID"),
        **extra,
    }
    if sandbox is not None:
        config["identity"] = AGENT_NAME
        config["token"] = sandbox.issue_token(AGENT_IDENTITY, roles=["agent"], ttl_s=SANDBOX_TOKEN_TTL_S)
    return config


# -- the console's JSON (same Flex-token auth as the agent API) ----------------------------------------------


@bp.get("/agent/api/conversations")
@flex_token_required
def api_conversations():
    user = g.flex_user
    found = _every_conversation() if reaches_every_conversation(user) else _conversations_of(user.identity)
    return jsonify({"conversations": found})


@bp.get("/agent/api/conversations/<conversation_sid>")
@conversation_access_required
def api_conversation(conversation_sid: str):
    details = _twilio(lambda: twilio_api().fetch_conversation(conversation_sid), conversation_sid)
    participants = conversation_participants(conversation_sid)
    return jsonify(
        {
            "sid": details["sid"],
            "friendly_name": details["friendly_name"],
            "channel": channel_from_participants(participants),
            "customer": _customer_label(participants),
        }
    )


@bp.post("/agent/api/conversations/<conversation_sid>/simulate-voice-note")
@conversation_access_required
def simulate_voice_note(conversation_sid: str):
    """Play the customer: a generated voice note goes into the sandbox and its signed webhook to this service."""
    sandbox = twilio_api().sandbox
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
    status = _deliver_in_process(sandbox, params)
    if status != 200:
        raise ApiError(502, "webhook_failed", f"the service answered the onMessageAdded webhook with {status}")
    return jsonify({"conversation_sid": conversation_sid, "message_sid": params["MessageSid"]}), 201


def _deliver_in_process(sandbox, params: dict) -> int:
    """POST the signed webhook through the app itself rather than over HTTP.

    A single-threaded server (flask run --without-threads, one gunicorn sync worker) would otherwise wait on
    itself. The signature covers the URL the webhook view rebuilds: PUBLIC_BASE_URL when set, else the
    test client's own base URL.
    """
    base = current_app.config.get("PUBLIC_BASE_URL") or "http://localhost"
    signature = sandbox.sign(base + POST_EVENT_PATH, params)
    response = current_app.test_client().post(
        POST_EVENT_PATH, base_url=base, data=params, headers={"X-Twilio-Signature": signature}
    )
    return response.status_code


# -- helpers ------------------------------------------------------------------------------------------------


def _every_conversation() -> list[dict]:
    """The account's newest LIST_LIMIT conversations (of the first SCAN_LIMIT), newest first."""
    # Twilio lists conversations oldest first and cannot be asked for the newest: read on (up to SCAN_LIMIT) and
    # keep the last LIST_LIMIT, or an account with more than LIST_LIMIT would never show its newest ones.
    found = _twilio(lambda: collections.deque(twilio_api().conversations(limit=SCAN_LIMIT), maxlen=LIST_LIMIT))
    return [_listed(c) for c in reversed(found)]


def _conversations_of(identity: str) -> list[dict]:
    """The conversations `identity` is a participant of, newest first, from Twilio's Participant Conversations
    resource: one listing of that participant's conversations instead of every conversation's participants."""
    found = _twilio(
        lambda: list(
            twilio_api().participant_conversations(
                identity, limit=SCAN_LIMIT, page_size=PARTICIPANT_CONVERSATIONS_PAGE_SIZE
            )
        )
    )
    # Twilio does not document this list's order: sort by creation, newest first (ties keep the listed order,
    # reversed, as for the account's list).
    found.reverse()
    found.sort(key=lambda c: c["date_created"] or datetime.min.replace(tzinfo=UTC), reverse=True)
    return [_listed(c) for c in found[:LIST_LIMIT]]


def _listed(conversation: dict) -> dict:
    date_created = conversation["date_created"]
    return {
        "sid": conversation["sid"],
        "friendly_name": conversation["friendly_name"],
        "state": conversation["state"],
        "date_created": date_created.isoformat() if date_created else None,
    }


def _customer_label(participants: list[dict]) -> str | None:
    for participant in participants:
        binding = participant.get("messaging_binding") or {}
        if binding.get("address"):
            return binding["address"]
    for participant in participants:
        try:
            attributes = json.loads(participant.get("attributes") or "{}")
        except ValueError:
            attributes = {}
        if participant.get("identity") and attributes.get("member_type") != "agent":
            return participant["identity"]
    return None


def _twilio(fn, conversation_sid: str | None = None):
    try:
        return fn()
    except TwilioHttpError as exc:
        raise conversation_error(exc, conversation_sid) from exc
