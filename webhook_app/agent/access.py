"""Which conversations a Flex user reaches through the agent API and the console.

Agents reach the conversations they are a participant of; supervisors and admins reach all. Flex makes an agent a
chat participant of a conversation when they accept its task, under their escaped chat identity
("alice_40example_2Ecom"), which is also the `identity` IAM answers for their Flex token.
"""

from __future__ import annotations

import functools

from flask import g

from ..auth import FlexUser, flex_token_required
from ..errors import ApiError
from ..settings.channels import conversation_participants
from ..twilio.client import twilio_api
from ..twilio.sids import is_sid

ROLES_REACHING_EVERY_CONVERSATION = frozenset({"admin", "supervisor"})


def check_conversation_sid(sid: str) -> str:
    if not is_sid(sid, "CH"):
        raise ApiError(400, "bad_conversation_sid", f"{sid!r} is not a Conversation SID (CH + 32 hex digits)")
    return sid


def reaches_every_conversation(user: FlexUser) -> bool:
    return bool(ROLES_REACHING_EVERY_CONVERSATION & set(user.roles))


def authorize_conversation(user: FlexUser, conversation_sid: str) -> None:
    """Return when `user` may reach the conversation; else ApiError 403 `not_a_participant` (404 when Twilio has
    no such conversation, 502 when it could not say)."""
    if reaches_every_conversation(user):
        return
    cached = twilio_api().cached_participants(conversation_sid)
    if cached is not None and _is_participant(user, cached):
        return
    # Not cached, or cached before the agent accepted the task (Flex adds them then): ask Twilio once, and keep
    # its answer, rather than refuse a new participant until the cached list expires.
    if _is_participant(user, conversation_participants(conversation_sid, refresh=True)):
        return
    raise ApiError(
        403,
        "not_a_participant",
        f"{user.identity} is not a participant of conversation {conversation_sid}: agents reach the "
        "conversations they are a participant of; supervisors and admins reach all",
    )


def _is_participant(user: FlexUser, participants: list[dict]) -> bool:
    return any(participant.get("identity") == user.identity for participant in participants)


def conversation_access_required(view):
    """A Flex token whose user reaches the view's `conversation_sid` (checked in that order: 401, 400, 403/404)."""

    @functools.wraps(view)
    @flex_token_required
    def wrapper(conversation_sid: str, **kwargs):
        check_conversation_sid(conversation_sid)
        authorize_conversation(g.flex_user, conversation_sid)
        return view(conversation_sid, **kwargs)

    return wrapper
