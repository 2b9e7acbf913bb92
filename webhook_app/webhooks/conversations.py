"""Twilio Conversations webhooks. Answer within milliseconds: store, enqueue, reply; the work runs in jobs.

Twilio gives a webhook 5 seconds (error 50076) and, by default, never retries a post-event. So a post-event is
acknowledged only after its rows are committed (group commit: concurrent webhooks share one), and answered 503
when they could not be, which a service configured with `post_webhook_retry_count` redelivers.
"""

from __future__ import annotations

import json
import logging
from typing import cast

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request

from ..extensions import db
from ..inbound import record
from ..inbound.expand import enqueue_expand_once
from ..inbound.normalize import enqueue_new_rows
from ..inbound.record import audio_rows
from ..jobs import queue
from ..outbound.pre_event import audit_rejection, pre_event_verdict
from ..twilio.attachments import parse_media
from ..twilio.client import twilio_api
from ..twilio.sids import is_sid
from ..twilio.signatures import is_valid_twilio_request
from ..web.errors import error_response
from ..web.wrappers import Request
from .group_commit import BatchInsert, GroupCommitWriter, StorageUnavailable

log = logging.getLogger(__name__)

bp = Blueprint("conversations_webhooks", __name__, url_prefix="/twilio/conversations")

# A webhook is a form of a few kilobytes (a 1,600-character body, attributes, a media list). The signature can
# only be checked once the body is read, so an unauthenticated sender must not get to make it any size.
WEBHOOK_MAX_BYTES = 1024 * 1024


def init_app(app: Flask) -> None:
    app.extensions["group_commit"] = audio_row_writer()


def audio_row_writer() -> GroupCommitWriter:
    """The web process's group commit of inbound's `queued` rows (inbound/record.py: their columns, key and SQL)."""
    return GroupCommitWriter(
        BatchInsert(record.COLUMNS, record.KEY, record.JSON_INSERT, record.insert_ignoring_duplicates)
    )


@bp.before_request
def require_twilio_signature() -> None:
    request.max_content_length = WEBHOOK_MAX_BYTES
    request.max_form_memory_size = WEBHOOK_MAX_BYTES  # Flask's own default for forms is 500 kB
    if not is_valid_twilio_request(this_request(), twilio_api().auth_token):
        abort(error_response(403, "invalid_signature", "X-Twilio-Signature is missing or does not match"))


def handle_message_added(event: dict[str, str]) -> Response:
    media = parse_media(event.get("Media"))
    if not media:
        return jsonify({})
    if not is_sid(event.get("ConversationSid"), "CH") or not is_sid(event.get("MessageSid"), "IM"):
        return error_response(400, "bad_event", "onMessageAdded without a valid ConversationSid and MessageSid")
    rows = audio_rows(event, media)
    try:
        new_ids = current_app.extensions["group_commit"].insert(rows) if rows else []
    except StorageUnavailable:
        log.exception("could not store webhook for message %s", event["MessageSid"])
        return error_response(503, "storage_unavailable", "the event could not be stored; retry later")
    enqueue_new_rows(new_ids)
    # The relay expands the SDK messages whose rows it hands out; one without an audio row is ours to expand.
    if (event.get("Source") or "").upper() == "SDK" and not (rows and queue.relays_new_rows()):
        try:
            enqueue_expand_once(event)
        except Exception:  # noqa: BLE001 - Redis down: a stored row gets its expansion from the sweeper
            log.exception("could not enqueue expand_message for %s", event["MessageSid"])
            if not rows:
                # Nothing of this message is stored, so nothing would lead the sweeper to it: a 200 would lose
                # the audio among the attachments the webhook did not show. A configured retry redelivers it.
                return error_response(
                    503,
                    "queue_unavailable",
                    "the message's other attachments could not be queued for reading; retry later",
                )
    # The audit rows are the record of what arrived, and the access log has the request: at the rate Twilio
    # sends webhooks a success line each is noise, and a twentieth of a webhook's CPU. Failures log above.
    log.debug("onMessageAdded %s: %d media, %d new audio rows", event["MessageSid"], len(media), len(new_ids))
    return acknowledgement(new_ids)


def acknowledgement(audit_ids: list[int]) -> Response:
    """200 `{"audit_ids": [...]}`, the ids of the rows this delivery created (empty for a redelivery). Built
    directly: jsonify's trip through the app's JSON provider was a thirtieth of a webhook's CPU under load."""
    return Response(json.dumps({"audit_ids": audit_ids}), mimetype="application/json")


POST_EVENT_HANDLERS = {
    "onMessageAdded": handle_message_added,
}


def handle_message_add(event: dict[str, str]) -> Response:
    try:
        rejection = pre_event_verdict(event)
    except Exception:  # noqa: BLE001 - when in doubt, publish: a 5xx would reject the customer's message too
        log.exception("pre-event check failed for conversation %s; allowing", event.get("ConversationSid"))
        return jsonify({})
    if rejection is None:
        return jsonify({})
    try:
        audit_rejection(event, rejection)
        db.session.commit()
    except Exception:  # noqa: BLE001 - the decision stands: a lost audit row must not publish forbidden audio
        db.session.rollback()
        log.exception(
            "could not audit the pre-event rejection in %s: %s", event.get("ConversationSid"), rejection.reason
        )
    # Any 4xx rejects the message: Twilio does not publish it.
    return error_response(403, "audio_not_allowed", rejection.reason)


PRE_EVENT_HANDLERS = {
    "onMessageAdd": handle_message_add,
}


def this_request() -> Request:
    """The request as the app's own request class (webhook_app/web/wrappers.py, create_app's request_class)."""
    return cast(Request, request)


def webhook_event() -> dict[str, str]:
    # The first of a repeated field wins, as in request.form.to_dict().
    return dict(reversed(this_request().form_fields))


@bp.post("/pre-event")
def pre_event() -> Response:
    event = webhook_event()
    handler = PRE_EVENT_HANDLERS.get(event.get("EventType", ""))
    if handler is None:
        return jsonify({})
    return handler(event)


@bp.post("/post-event")
def post_event() -> Response:
    event = webhook_event()
    handler = POST_EVENT_HANDLERS.get(event.get("EventType", ""))
    if handler is None:
        return jsonify({})
    return handler(event)
