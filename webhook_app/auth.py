"""Flex token authentication for the agent API, validated through Twilio IAM and cached until expiry."""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone

from flask import current_app, g, request

from .errors import ApiError
from .twilio.client import twilio_api
from .twilio.http import TwilioHttpError

log = logging.getLogger(__name__)

DEFAULT_CACHE_S = 300  # when IAM gives no expiration


@dataclass(frozen=True)
class FlexUser:
    identity: str
    roles: tuple[str, ...]
    worker_sid: str | None
    expires_at: float


class TokenCache:
    """Bounded LRU keyed by the token's hash: a page of players costs one IAM call, not one each."""

    def __init__(self, max_entries: int = 10_000):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, FlexUser] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> FlexUser | None:
        with self._lock:
            user = self._entries.get(key)
            if user is None:
                return None
            if user.expires_at <= time.time():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return user

    def put(self, key: str, user: FlexUser) -> None:
        with self._lock:
            self._entries[key] = user
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def _expiry(value) -> float:
    if not value:
        return time.time() + DEFAULT_CACHE_S
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return time.time() + DEFAULT_CACHE_S
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def authenticate(token: str) -> FlexUser:
    cache: TokenCache = current_app.extensions["flex_token_cache"]
    key = hashlib.sha256(token.encode()).hexdigest()
    user = cache.get(key)
    if user is not None:
        return user
    try:
        answer = twilio_api().validate_flex_token(token)
    except TwilioHttpError as exc:
        log.error("Flex token validation unavailable: %s", exc)
        raise ApiError(503, "auth_unavailable", "could not validate the Flex token with Twilio; retry") from exc
    if not answer.get("valid"):
        raise ApiError(401, "invalid_token", answer.get("message") or "the Flex token is not valid")
    user = FlexUser(
        identity=answer.get("identity") or answer.get("realm_user_id") or "unknown",
        roles=tuple(answer.get("roles") or ()),
        worker_sid=answer.get("worker_sid"),
        expires_at=_expiry(answer.get("expiration")),
    )
    if user.expires_at <= time.time():
        raise ApiError(401, "invalid_token", "the Flex token has expired")
    cache.put(key, user)
    return user


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def flex_token_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        token = bearer_token()
        if token is None:
            raise ApiError(401, "missing_token", "send the Flex token as 'Authorization: Bearer <token>'")
        g.flex_user = authenticate(token)
        return view(*args, **kwargs)

    return wrapper


def init_app(app) -> None:
    app.extensions["flex_token_cache"] = TokenCache()
