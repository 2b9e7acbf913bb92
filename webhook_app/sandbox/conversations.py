"""Conversations v1 (conversations.twilio.com): conversations, participants, messages and a participant's
conversations, each both at /v1/... and service-scoped at /v1/Services/<chat_service_sid>/..."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Sequence
from typing import TypeVar
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request
from flask.typing import RouteCallable

from .records import (
    binding_type,
    check_state,
    delivery,
    get_conversation,
    insert_conversation,
    insert_message,
    insert_participant,
)
from .render import (
    conversation_path,
    render_conversation,
    render_message,
    render_participant,
    render_participant_conversation,
)
from .resources import MessagingBinding, PageMeta
from .served import check_service, current_sandbox
from .store import Store
from .webhooks import webhook_params
from .wire import CONVERSATIONS_BASE, ERR_INVALID_PARAMETER, TwilioError, not_found

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
MAX_PARTICIPANT_CONVERSATIONS_PAGE_SIZE = 50  # that list's own bound in the spec

bp = Blueprint("conversations", __name__)
R = TypeVar("R")  # a rendered resource


def _store() -> Store:
    return current_sandbox().store


def _conversation_or_404(conn: sqlite3.Connection, sid: str) -> sqlite3.Row:
    row = get_conversation(conn, sid)
    if row is None:
        raise not_found(request.path)
    return row


def _page(
    key: str,
    rows: Sequence[sqlite3.Row],
    render: Callable[[sqlite3.Row], R],
    path: str,
    extra_query: str = "",
    max_page_size: int = MAX_PAGE_SIZE,
) -> dict[str, list[R] | PageMeta]:
    """Twilio's list envelope. PageToken ("PT" + offset here) wins over Page, as in the real API."""
    try:
        page_size = int(request.args.get("PageSize", DEFAULT_PAGE_SIZE))
        page = int(request.args.get("Page", 0))
    except ValueError:
        page_size = page = -1
    # The spec's bounds (PageSize 1-100, Page >= 0): out of them is a bad request, not a quietly different page,
    # so a client asking for more than Twilio serves finds out here rather than in production.
    if not (1 <= page_size <= max_page_size and page >= 0):
        raise TwilioError(400, ERR_INVALID_PARAMETER, f"Invalid PageSize or Page (PageSize 1-{max_page_size})")
    token = request.args.get("PageToken", "")
    offset = int(token[2:]) if re.fullmatch(r"PT\d+", token) else page * page_size
    base = f"{CONVERSATIONS_BASE}{path}?{extra_query}PageSize={page_size}"

    def page_url(number: int, start: int | None) -> str:
        return f"{base}&Page={number}" + (f"&PageToken=PT{start}" if start is not None else "")

    has_next = offset + page_size < len(rows)
    meta: PageMeta = {
        "page": page,
        "page_size": page_size,
        "first_page_url": page_url(0, None),
        "previous_page_url": page_url(page - 1, max(offset - page_size, 0)) if page > 0 else None,
        "url": page_url(page, None if page == 0 and not token else offset),
        "next_page_url": page_url(page + 1, offset + page_size) if has_next else None,
        "key": key,
    }
    return {key: [render(row) for row in rows[offset : offset + page_size]], "meta": meta}


def create_conversation(chat_service_sid: str | None = None) -> tuple[Response, int]:
    check_service(chat_service_sid)
    store, f = _store(), request.form
    with store.tx() as conn:
        row = insert_conversation(
            store,
            conn,
            friendly_name=f.get("FriendlyName"),
            unique_name=f.get("UniqueName"),
            attributes=f.get("Attributes"),
            state=f.get("State"),
            messaging_service_sid=f.get("MessagingServiceSid"),
            date_created=f.get("DateCreated"),
        )
    return jsonify(render_conversation(store, row, chat_service_sid is not None)), 201


def list_conversations(chat_service_sid: str | None = None) -> Response:
    check_service(chat_service_sid)
    store, scoped = _store(), chat_service_sid is not None
    with store.connect() as conn:
        rows = conn.execute("SELECT * FROM conversations ORDER BY seq").fetchall()
    state = request.args.get("State")
    if state:
        check_state(state)
        rows = [r for r in rows if r["state"] == state]
    path = f"/v1/Services/{store.chat_service_sid}/Conversations" if scoped else "/v1/Conversations"
    # The page links keep the filter, or following next_page_url would list every state.
    return jsonify(
        _page(
            "conversations",
            rows,
            lambda r: render_conversation(store, r, scoped),
            path,
            extra_query=f"State={state}&" if state else "",
        )
    )


def fetch_conversation(sid: str, chat_service_sid: str | None = None) -> Response:
    check_service(chat_service_sid)
    store = _store()
    with store.connect() as conn:
        row = _conversation_or_404(conn, sid)
    return jsonify(render_conversation(store, row, chat_service_sid is not None))


def create_participant(conversation_sid: str, chat_service_sid: str | None = None) -> tuple[Response, int]:
    check_service(chat_service_sid)
    store, f = _store(), request.form
    address = f.get("MessagingBinding.Address")
    binding: MessagingBinding | None = None
    if address:
        binding = {
            "type": binding_type(address),
            "address": address,
            "proxy_address": f.get("MessagingBinding.ProxyAddress"),
        }
    with store.tx() as conn:
        conv = _conversation_or_404(conn, conversation_sid)
        row = insert_participant(
            store, conn, conv["sid"], identity=f.get("Identity"), binding=binding, attributes=f.get("Attributes")
        )
    return jsonify(render_participant(store, row, chat_service_sid is not None)), 201


def list_participants(conversation_sid: str, chat_service_sid: str | None = None) -> Response:
    check_service(chat_service_sid)
    store, scoped = _store(), chat_service_sid is not None
    with store.connect() as conn:
        conv = _conversation_or_404(conn, conversation_sid)
        rows = conn.execute(
            "SELECT * FROM participants WHERE conversation_sid = ? ORDER BY seq", (conv["sid"],)
        ).fetchall()
    path = conversation_path(store, conv["sid"], scoped) + "/Participants"
    return jsonify(_page("participants", rows, lambda r: render_participant(store, r, scoped), path))


def fetch_participant(conversation_sid: str, sid: str, chat_service_sid: str | None = None) -> Response:
    check_service(chat_service_sid)
    store = _store()
    with store.connect() as conn:
        conv = _conversation_or_404(conn, conversation_sid)
        # Twilio also accepts the participant's identity in place of its MB sid.
        row = conn.execute(
            "SELECT * FROM participants WHERE conversation_sid = ? AND (sid = ? OR identity = ?)",
            (conv["sid"], sid, sid),
        ).fetchone()
    if row is None:
        raise not_found(request.path)
    return jsonify(render_participant(store, row, chat_service_sid is not None))


def create_message(conversation_sid: str, chat_service_sid: str | None = None) -> tuple[Response, int]:
    check_service(chat_service_sid)
    store, f = _store(), request.form
    with store.tx() as conn:
        conv = _conversation_or_404(conn, conversation_sid)
        row = insert_message(
            store,
            conn,
            conv["sid"],
            author=f.get("Author"),
            body=f.get("Body"),
            attributes=f.get("Attributes"),
            media_sid=f.get("MediaSid"),
            date_created=f.get("DateCreated"),
        )
        resource = render_message(store, row, delivery(conn, conv["sid"]), chat_service_sid is not None)
        params = webhook_params(store, conn, row)
    # REST-made messages stay silent unless the caller opts in (no echo of our own sends).
    if request.headers.get("X-Twilio-Webhook-Enabled", "").lower() == "true":
        current_sandbox().webhooks.deliver_in_background(params)
    return jsonify(resource), 201


def list_messages(conversation_sid: str, chat_service_sid: str | None = None) -> Response:
    check_service(chat_service_sid)
    store, scoped = _store(), chat_service_sid is not None
    order = request.args.get("Order", "asc").lower()
    if order not in ("asc", "desc"):
        raise TwilioError(400, ERR_INVALID_PARAMETER, f"Invalid Order: {order}")
    with store.connect() as conn:
        conv = _conversation_or_404(conn, conversation_sid)
        rows = conn.execute(
            f"SELECT * FROM messages WHERE conversation_sid = ? ORDER BY idx {order}", (conv["sid"],)
        ).fetchall()
        summary = delivery(conn, conv["sid"])
    path = conversation_path(store, conv["sid"], scoped) + "/Messages"
    extra = f"Order={order}&" if "Order" in request.args else ""
    return jsonify(_page("messages", rows, lambda r: render_message(store, r, summary, scoped), path, extra))


def fetch_message(conversation_sid: str, sid: str, chat_service_sid: str | None = None) -> Response:
    check_service(chat_service_sid)
    store = _store()
    with store.connect() as conn:
        conv = _conversation_or_404(conn, conversation_sid)
        row = conn.execute(
            "SELECT * FROM messages WHERE conversation_sid = ? AND sid = ?", (conv["sid"], sid)
        ).fetchone()
        if row is None:
            raise not_found(request.path)
        summary = delivery(conn, conv["sid"])
    return jsonify(render_message(store, row, summary, chat_service_sid is not None))


def list_participant_conversations(chat_service_sid: str | None = None) -> Response:
    check_service(chat_service_sid)
    store, scoped = _store(), chat_service_sid is not None
    identity, address = request.args.get("Identity"), request.args.get("Address")
    if bool(identity) == bool(address):
        raise TwilioError(400, ERR_INVALID_PARAMETER, "Either Identity or Address must be provided")
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT c.*, p.sid AS participant_sid, p.identity AS participant_identity,"
            " p.messaging_binding AS participant_messaging_binding FROM participants p"
            " JOIN conversations c ON c.sid = p.conversation_sid ORDER BY c.seq"
        ).fetchall()
    rows = [
        r
        for r in rows
        if (
            r["participant_identity"] == identity
            if identity
            else json.loads(r["participant_messaging_binding"] or "{}").get("address") == address
        )
    ]
    path = (f"/v1/Services/{store.chat_service_sid}" if scoped else "/v1") + "/ParticipantConversations"
    query = urlencode({"Identity": identity} if identity else {"Address": address}) + "&"
    return jsonify(
        _page(
            "conversations",
            rows,
            lambda r: render_participant_conversation(store, r, scoped),
            path,
            extra_query=query,
            max_page_size=MAX_PARTICIPANT_CONVERSATIONS_PAGE_SIZE,
        )
    )


_ROUTES: list[tuple[str, str, RouteCallable]] = [
    ("/ParticipantConversations", "GET", list_participant_conversations),
    ("/Conversations", "GET", list_conversations),
    ("/Conversations", "POST", create_conversation),
    ("/Conversations/<sid>", "GET", fetch_conversation),
    ("/Conversations/<conversation_sid>/Participants", "GET", list_participants),
    ("/Conversations/<conversation_sid>/Participants", "POST", create_participant),
    ("/Conversations/<conversation_sid>/Participants/<sid>", "GET", fetch_participant),
    ("/Conversations/<conversation_sid>/Messages", "GET", list_messages),
    ("/Conversations/<conversation_sid>/Messages", "POST", create_message),
    ("/Conversations/<conversation_sid>/Messages/<sid>", "GET", fetch_message),
]


def _add_routes() -> None:
    # Twilio serves every Conversations resource both account-wide and under its default service's path.
    for suffix, method, view in _ROUTES:
        bp.add_url_rule("/v1" + suffix, view.__name__, view, methods=[method])
        bp.add_url_rule("/v1/Services/<chat_service_sid>" + suffix, "service_" + view.__name__, view, methods=[method])


_add_routes()
