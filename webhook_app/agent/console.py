"""The agent console: the service's own web page for hearing and answering voice notes without Flex.

It uses the same record panel and audio list a Flex plugin mounts, against the same agent API. In sandbox mode it
also sets up demo conversations and can play the customer, so the whole loop runs on one machine.
"""

from __future__ import annotations

import collections
import json
import os
import tempfile
import threading

from flask import Blueprint, abort, current_app, jsonify, redirect, render_template, request, url_for
from twilio.base.exceptions import TwilioException, TwilioRestException

from ..auth import flex_token_required
from ..channels import channel_from_participants
from ..cli import _demo_voice_note
from ..errors import ApiError
from ..twilio.client import twilio_api
from ..twilio.http import TwilioHttpError
from ..twilio.sids import is_sid
from .api import check_conversation_sid

bp = Blueprint("agent_console", __name__)

AGENT_IDENTITY = "agent@example.com"
AGENT_ATTRIBUTES = '{"member_type":"agent"}'
DEMO_CONVERSATIONS = (
    ("whatsapp", "Demo customer · WhatsApp"),
    ("sms", "Demo customer · SMS"),
    ("webchat", "Demo customer · Web chat"),
)
DEMO_VOICE_NOTE_S = 5.0
SANDBOX_TOKEN_TTL_S = 8 * 3600  # a working day: the embedded token must outlive an open tab
LIST_LIMIT = 200
SCAN_LIMIT = 5000
POST_EVENT_PATH = "/twilio/conversations/post-event"

# Two first visits at once must not both create the demo conversations (one process; the sandbox is local).
_demo_lock = threading.Lock()


@bp.after_app_request
def share_record_panel(response):
    # A Flex plugin imports the module from Flex's origin; module scripts are fetched in CORS mode.
    if request.endpoint == "static" and (request.view_args or {}).get("filename", "").startswith("record-panel."):
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response


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
        config["identity"] = AGENT_IDENTITY
        config["token"] = sandbox.issue_token(AGENT_IDENTITY, roles=["agent"], ttl_s=SANDBOX_TOKEN_TTL_S)
    return config


# -- the console's JSON (same Flex-token auth as the agent API) ----------------------------------------------

@bp.get("/agent/api/conversations")
@flex_token_required
def api_conversations():
    client = twilio_api().client
    # Twilio lists conversations oldest first and cannot be asked for the newest: read on (up to SCAN_LIMIT) and
    # keep the last LIST_LIMIT, or an account with more than LIST_LIMIT would never show its newest ones.
    found = _twilio(lambda: collections.deque(
        client.conversations.v1.conversations.stream(limit=SCAN_LIMIT, page_size=100), maxlen=LIST_LIMIT))
    items = [{
        "sid": c.sid,
        "friendly_name": c.friendly_name,
        "state": c.state,
        "date_created": c.date_created.isoformat() if c.date_created else None,
    } for c in found]
    items.reverse()  # Twilio lists oldest first; agents want the newest on top
    return jsonify({"conversations": items})


@bp.get("/agent/api/conversations/<conversation_sid>")
@flex_token_required
def api_conversation(conversation_sid: str):
    check_conversation_sid(conversation_sid)
    api = twilio_api()
    details = _twilio(lambda: api.fetch_conversation(conversation_sid))
    participants = _twilio(lambda: api.list_participants(conversation_sid))
    return jsonify({
        "sid": details["sid"],
        "friendly_name": details["friendly_name"],
        "channel": channel_from_participants(participants),
        "customer": _customer_label(participants),
    })


@bp.post("/agent/api/conversations/<conversation_sid>/simulate-voice-note")
@flex_token_required
def simulate_voice_note(conversation_sid: str):
    """Play the customer: a generated voice note goes into the sandbox and its signed webhook to this service."""
    check_conversation_sid(conversation_sid)
    sandbox = twilio_api().sandbox
    if sandbox is None:
        raise ApiError(404, "sandbox_only", "simulating a customer needs the local Twilio sandbox")
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "voice-note.ogg")
        _demo_voice_note(path, DEMO_VOICE_NOTE_S)
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
    response = current_app.test_client().post(POST_EVENT_PATH, base_url=base, data=params,
                                              headers={"X-Twilio-Signature": signature})
    return response.status_code


# -- helpers ------------------------------------------------------------------------------------------------

def ensure_demo_conversations() -> None:
    """WhatsApp, SMS and web chat conversations with an agent in them, created once per sandbox."""
    sandbox = twilio_api().sandbox
    client = twilio_api().client
    with _demo_lock:
        existing = {c.friendly_name for c in _twilio(lambda: client.conversations.v1.conversations.list())}
        for channel, name in DEMO_CONVERSATIONS:
            if name in existing:
                continue
            sid = sandbox.create_conversation(name, channel)["sid"]
            sandbox.add_participant(sid, identity=AGENT_IDENTITY, attributes=AGENT_ATTRIBUTES)


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


def _twilio(fn):
    try:
        return fn()
    except TwilioHttpError as exc:
        _raise_twilio(exc.status, str(exc))
    except TwilioRestException as exc:
        _raise_twilio(exc.status, exc.msg)
    except TwilioException as exc:
        _raise_twilio(None, str(exc))


def _raise_twilio(status: int | None, detail: str):
    if status == 404:
        raise ApiError(404, "conversation_not_found", "Twilio has no such conversation")
    raise ApiError(502, "twilio_error", f"Twilio could not be reached or refused: {detail}")
