"""Which conversations a Flex user reaches through the agent API and the console.

Agents reach the conversations they are a participant of; supervisors and admins reach all. Flex makes an agent a
chat participant of a conversation when they accept its task, under their escaped chat identity
("alice_40example_2Ecom"), which is also the `identity` IAM answers for their Flex token.

Each refusal costs a Participants call (a random SID's 404 too), so no token holder may spend the account's API
allowance on them: a refusal confirmed by a second ask stands for a while without a third, and an agent refused too
many conversations lately is told to wait (429), counted for the whole deployment (web/ratelimit.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, current_app, g

from ..domain_errors import DomainError
from ..runtime.cache import ExpiringCache
from ..settings.channels import conversation_participants
from ..twilio.client import twilio_api
from ..twilio.sids import is_sid
from ..web.errors import ApiError
from ..web.flex_auth import FlexUser, flex_token_required
from ..web.ratelimit import Limit, enforce, record

R = TypeVar("R")

ROLES_REACHING_EVERY_CONVERSATION = frozenset({"admin", "supervisor"})
# Each refusal cost a Participants call. Conversations an agent may be refused within the window, whatever they
# are (a token holder trying SIDs): far above what a console does (it lists only the agent's own conversations).
REFUSED_CONVERSATIONS = Limit(
    "refused-conversations",
    limit=20,
    window_s=300,
    code="too_many_refused_conversations",
    what="{limit} conversations refused in {minutes} minutes for this agent",
)
# A refusal asked about twice in a row stands this long without a third ask (a polling tab, a client repeating
# itself); the first repeat still asks, so an agent refused just before accepting the task gets in at once.
REFUSAL_CACHE_S = 30


@dataclass(frozen=True)
class CachedRefusal:
    code: str
    message: str
    asked_again: bool


def check_conversation_sid(sid: str) -> str:
    if not is_sid(sid, "CH"):
        raise ApiError(400, "bad_conversation_sid", f"{sid!r} is not a Conversation SID (CH + 32 hex digits)")
    return sid


def reaches_every_conversation(user: FlexUser) -> bool:
    return bool(ROLES_REACHING_EVERY_CONVERSATION & set(user.roles))


def authorize_conversation(user: FlexUser, conversation_sid: str) -> None:
    """Return when `user` may reach the conversation; else DomainError `not_a_participant` (or
    `conversation_not_found` when Twilio has no such conversation, `twilio_error` when it could not say), or
    ApiError 429 after too many refusals."""
    if reaches_every_conversation(user):
        return
    cached = twilio_api().cached_participants(conversation_sid)
    if cached is not None and _is_participant(user, cached):
        return
    refusals: ExpiringCache = current_app.extensions["conversation_refusals"]
    key = (user.identity, conversation_sid)
    known: CachedRefusal | None = refusals.get(key)
    if known is not None and known.asked_again:
        raise DomainError(known.code, known.message)
    enforce(REFUSED_CONVERSATIONS, user.identity)
    # Not cached, cached before the agent accepted the task (Flex adds them then), or refused once already (the
    # agent may have accepted since): ask Twilio, and keep its answer, rather than refuse a new participant.
    try:
        if _is_participant(user, conversation_participants(conversation_sid, refresh=True)):
            refusals.discard(key)
            return
        refusal = DomainError(
            "not_a_participant",
            f"{user.identity} is not a participant of conversation {conversation_sid}: agents reach the "
            "conversations they are a participant of; supervisors and admins reach all",
        )
    except DomainError as exc:
        if exc.code != "conversation_not_found":  # Twilio could not say: nothing was refused
            raise
        refusal = exc  # random SIDs cost a Participants call each as well
    record(REFUSED_CONVERSATIONS, user.identity, conversation_sid)
    refusals.put(key, CachedRefusal(refusal.code, refusal.message, asked_again=known is not None))
    raise refusal


def _is_participant(user: FlexUser, participants: Sequence[Mapping[str, object]]) -> bool:
    return any(participant.get("identity") == user.identity for participant in participants)


def conversation_access_required(view: Callable[..., R]) -> Callable[..., R]:
    """A Flex token whose user reaches the view's `conversation_sid` (checked in that order: 401, 400, 403/404)."""

    @functools.wraps(view)
    @flex_token_required
    def wrapper(conversation_sid: str, **kwargs: Any) -> R:  # Flask passes the URL's values by name
        check_conversation_sid(conversation_sid)
        authorize_conversation(g.flex_user, conversation_sid)
        return view(conversation_sid, **kwargs)

    return wrapper


def init_app(app: Flask) -> None:
    # Per process: it only spares repeats; the limit on refusals above is the deployment's.
    app.extensions["conversation_refusals"] = ExpiringCache(ttl_s=REFUSAL_CACHE_S, max_entries=10_000)
