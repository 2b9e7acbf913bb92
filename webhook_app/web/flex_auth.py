"""Flex token authentication for the agent API, validated through Twilio IAM and cached until expiry."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from flask import Flask, current_app, g, request

from ..runtime.cache import ExpiringCache
from ..twilio.client import twilio_api
from ..twilio.http import TwilioHttpError
from .errors import ApiError
from .ratelimit import Limit, enforce, record

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_CACHE_S = 300  # when IAM gives no expiration
# A token IAM refused stays refused (tokens do not become valid later): asking again would only spend an IAM call.
REFUSED_CACHE_S = 300
# Refused tokens a client may present in the window before it is told to wait (each one cost an IAM call):
# generous for an agent whose token expired on several tabs, nothing for someone guessing.
REFUSED_TOKENS = Limit(
    "refused-tokens",
    limit=10,
    window_s=300,
    code="too_many_invalid_tokens",
    what="{limit} invalid tokens in {minutes} minutes from this client",
)


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


def _expiry(value: object) -> float:
    if not value:
        return time.time() + DEFAULT_CACHE_S
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return time.time() + DEFAULT_CACHE_S
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def client_key() -> str:
    """Whom refused tokens count against: the client's address as the server saw it, or as the trusted proxies
    (PROXY_FIX_HOPS) report it; an IPv6 client by its /64, which one subscriber holds whole."""
    address = request.remote_addr or "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def limit_token_guesses() -> None:
    """429 `too_many_invalid_tokens` when this client presented too many refused tokens lately."""
    enforce(REFUSED_TOKENS, client_key())


def authenticate(token: str) -> FlexUser:
    cache: ExpiringCache[str, FlexUser | Refusal] = current_app.extensions["flex_token_cache"]
    key = hashlib.sha256(token.encode()).hexdigest()
    known = cache.get(key)
    if isinstance(known, Refusal):
        raise ApiError(401, "invalid_token", known.message)
    if known is not None:
        return known
    limit_token_guesses()
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
        record(REFUSED_TOKENS, client_key(), key)
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


def flex_token_required(view: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        token = bearer_token()
        if token is None:
            raise ApiError(401, "missing_token", "send the Flex token as 'Authorization: Bearer <token>'")
        g.flex_user = authenticate(token)
        return view(*args, **kwargs)

    return wrapper


def init_app(app: Flask) -> None:
    # A page of players costs one IAM call, not one each, and a refused token is refused again without asking.
    # Wall-clock expiry: a token's expiration is an instant, not a duration.
    cache: ExpiringCache[str, FlexUser | Refusal] = ExpiringCache(
        ttl_s=REFUSED_CACHE_S, max_entries=10_000, clock=time.time
    )
    app.extensions["flex_token_cache"] = cache
    if os.environ.get("DYNO") and not app.config["PROXY_FIX_HOPS"]:
        # Heroku sets DYNO; its router is in front of every dyno, so without a trusted hop every client has the
        # router's address: one client's refused tokens would make every agent wait.
        log.warning(
            "PROXY_FIX_HOPS is 0 on Heroku (DYNO=%s): every client looks like Heroku's router, so refused tokens "
            "are counted for all clients together; set PROXY_FIX_HOPS=1",
            os.environ["DYNO"],
        )
