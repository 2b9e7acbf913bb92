"""The agent console: the service's own web page for hearing and answering voice notes without Flex.

It uses the same record panel and audio list a Flex plugin mounts, against the same agent API. In sandbox mode
the sandbox signs its demo agent in, sets up demo conversations and can play the customer (sandbox/pages.py), so the
whole loop runs on one machine.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from flask import Blueprint, Response, abort, g, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from ..domain_errors import conversation_error
from ..sandbox.pages import console_page_config
from ..settings.channels import channel_from_participants, conversation_participants
from ..twilio.client import ListedConversation, Participant, twilio_api
from ..twilio.http import TwilioHttpError
from ..twilio.sids import is_sid
from ..web.flex_auth import flex_token_required
from .access import conversation_access_required, reaches_every_conversation

bp = Blueprint("agent_console", __name__)
T = TypeVar("T")

LIST_LIMIT = 200
SCAN_LIMIT = 5000
PARTICIPANT_CONVERSATIONS_PAGE_SIZE = 50  # that resource's maximum (100 elsewhere in Conversations)

# -- pages --------------------------------------------------------------------------------------------------


@bp.get("/")
def index() -> WerkzeugResponse:
    return redirect(url_for("agent_console.conversations"))


@bp.get("/agent")
def conversations() -> str:
    return render_template("agent/conversations.html", page=_page_config(page="conversations"))


@bp.get("/agent/conversations/<conversation_sid>")
def conversation(conversation_sid: str) -> str:
    if not is_sid(conversation_sid, "CH"):
        abort(404)
    config = _page_config(page="conversation", conversationSid=conversation_sid)
    return render_template("agent/conversation.html", page=config, conversation_sid=conversation_sid)


def _page_config(**extra: str) -> dict[str, object]:
    """What the page script needs. Outside the sandbox there is no token here: the agent pastes a Flex one."""
    config: dict[str, object] = {
        "apiBaseUrl": request.script_root,
        "consoleApi": request.script_root + "/agent/api",
        "conversationsUrl": url_for("agent_console.conversations"),
        "conversationUrl": url_for("agent_console.conversation", conversation_sid="CONVERSATION_SID"),
        **extra,
    }
    config.update(console_page_config(extra["page"]))
    return config


# -- the console's JSON (same Flex-token auth as the agent API) ----------------------------------------------


@bp.get("/agent/api/conversations")
@flex_token_required
def api_conversations() -> Response:
    user = g.flex_user
    found = _every_conversation() if reaches_every_conversation(user) else _conversations_of(user.identity)
    return jsonify({"conversations": found})


@bp.get("/agent/api/conversations/<conversation_sid>")
@conversation_access_required
def api_conversation(conversation_sid: str) -> Response:
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


# -- helpers ------------------------------------------------------------------------------------------------


def _every_conversation() -> list[dict[str, object]]:
    """The account's newest LIST_LIMIT conversations (of the first SCAN_LIMIT), newest first."""
    # Twilio lists conversations oldest first and cannot be asked for the newest: read on (up to SCAN_LIMIT) and
    # keep the last LIST_LIMIT, or an account with more than LIST_LIMIT would never show its newest ones.
    found = _twilio(lambda: collections.deque(twilio_api().conversations(limit=SCAN_LIMIT), maxlen=LIST_LIMIT))
    return [_listed(c) for c in reversed(found)]


def _conversations_of(identity: str) -> list[dict[str, object]]:
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
    found.sort(key=lambda c: c.get("date_created") or datetime.min.replace(tzinfo=UTC), reverse=True)
    return [_listed(c) for c in found[:LIST_LIMIT]]


def _listed(conversation: ListedConversation) -> dict[str, object]:
    date_created = conversation.get("date_created")
    return {
        "sid": conversation.get("sid"),
        "friendly_name": conversation.get("friendly_name"),
        "state": conversation.get("state"),
        "date_created": date_created.isoformat() if date_created else None,
    }


def _customer_label(participants: list[Participant]) -> str | None:
    for participant in participants:
        address = (participant.get("messaging_binding") or {}).get("address")
        if address:
            return str(address)
    for participant in participants:
        try:
            attributes = json.loads(participant.get("attributes") or "{}")
        except ValueError:
            attributes = {}
        identity = participant.get("identity")
        if identity and attributes.get("member_type") != "agent":
            return identity
    return None


def _twilio(fn: Callable[[], T], conversation_sid: str | None = None) -> T:
    try:
        return fn()
    except TwilioHttpError as exc:
        raise conversation_error(exc, conversation_sid) from exc
