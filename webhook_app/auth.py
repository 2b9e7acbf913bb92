"""Flex token authentication for the agent API, validated through Twilio IAM and cached until expiry."""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app, g, request

from .cache import ExpiringCache
from .errors import ApiError
from .twilio.client import twilio_api
from .twilio.http import TwilioHttpError

log = logging.getLogger(__name__)

DEFAULT_CACHE_S = 300  # when IAM gives no expiration
# A token IAM refused stays refused (tokens do not become valid later): asking again would only spend an IAM call.
REFUSED_CACHE_S = 300
# Refused tokens a client may present in the window before it is told to wait (each one cost an IAM call):
# generous for an agent whose token expired on several tabs, nothing for someone guessing.
REFUSALS_PER_CLIENT = 10
REFUSAL_WINDOW_S = 300


@dataclass(frozen=True)
class FlexUser:
    identity: str
    roles: tuple[str, ...]
    worker_sid: str | None
    expires_at: float


@dataclass(frozen=True)
class Refusal:
    message: str
    expires_at: float


def _expiry(value) -> float:
    if not value:
        return time.time() + DEFAULT_CACHE_S
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return time.time() + DEFAULT_CACHE_S
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


class RefusalLimiter:
    """Refused tokens per client (its address, as ProxyFix reads it) within a sliding window, in this process."""

    def __init__(self, limit: int = REFUSALS_PER_CLIENT, window_s: float = REFUSAL_WINDOW_S, max_clients: int = 10_000):
        self.limit, self.window_s, self.max_clients = limit, window_s, max_clients
        self._refusals: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait_s(self, client: str) -> float:
        """How long `client` must wait before a new token is checked for it (0: go ahead)."""
        now = time.monotonic()
        with self._lock:
            times = self._refusals.get(client)
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if not times or len(times) < self.limit:
                return 0.0
            return times[0] + self.window_s - now

    def refused(self, client: str) -> None:
        with self._lock:
            times = self._refusals.setdefault(client, deque())
            times.append(time.monotonic())
            self._refusals.move_to_end(client)
            while len(self._refusals) > self.max_clients:
                self._refusals.popitem(last=False)


def authenticate(token: str) -> FlexUser:
    cache: ExpiringCache = current_app.extensions["flex_token_cache"]
    key = hashlib.sha256(token.encode()).hexdigest()
    known = cache.get(key)
    if isinstance(known, Refusal):
        raise ApiError(401, "invalid_token", known.message)
    if known is not None:
        return known
    limiter: RefusalLimiter = current_app.extensions["flex_token_refusals"]
    client = request.remote_addr or "unknown"
    wait_s = limiter.wait_s(client)
    if wait_s > 0:
        log.warning(
            "client %s presented %d refused tokens in %d s; not asking Twilio for another",
            client,
            limiter.limit,
            limiter.window_s,
        )
        raise ApiError(
            429,
            "too_many_invalid_tokens",
            f"{limiter.limit} invalid tokens in {limiter.window_s // 60:g} minutes from this client; "
            f"try again in {math.ceil(wait_s)} s",
            headers={"Retry-After": str(math.ceil(wait_s))},
        )
    try:
        answer = twilio_api().validate_flex_token(token)
    except TwilioHttpError as exc:
        log.error("Flex token validation unavailable: %s", exc)
        raise ApiError(503, "auth_unavailable", "could not validate the Flex token with Twilio; retry") from exc
    user = FlexUser(
        identity=answer.get("identity") or answer.get("realm_user_id") or "unknown",
        roles=tuple(answer.get("roles") or ()),
        worker_sid=answer.get("worker_sid"),
        expires_at=_expiry(answer.get("expiration")),
    )
    refusal = None
    if not answer.get("valid"):
        refusal = answer.get("message") or "the Flex token is not valid"
    elif user.expires_at <= time.time():
        refusal = "the Flex token has expired"
    if refusal:
        limiter.refused(client)
        refused = Refusal(refusal, time.time() + REFUSED_CACHE_S)
        cache.put(key, refused, refused.expires_at)
        raise ApiError(401, "invalid_token", refusal)
    cache.put(key, user, user.expires_at)
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
    # A page of players costs one IAM call, not one each, and a refused token is refused again without asking.
    # Wall-clock expiry: a token's expiration is an instant, not a duration.
    app.extensions["flex_token_cache"] = ExpiringCache(ttl_s=REFUSED_CACHE_S, max_entries=10_000, clock=time.time)
    app.extensions["flex_token_refusals"] = RefusalLimiter()
