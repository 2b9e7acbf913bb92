"""Who may administer: ADMIN_TOKEN, or a Flex token whose roles include admin or supervisor.

The JSON API takes either as a bearer token. The /admin page logs in once with either and then rides on a
signed session cookie; requests that change something through the cookie must carry the page's CSRF token. The
cookie carries a secret whose session row (models.AdminSession) must still be open: signing out closes it, so a
copied cookie dies with the original, and "sign out everywhere" closes every session of that admin.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import ParamSpec, TypeVar

from flask import Flask, Request, current_app, g, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from sqlalchemy import delete, update

from ..extensions import db
from ..models import AdminSession, utcnow
from ..web.errors import ApiError
from ..web.flex_auth import authenticate, bearer_token, limit_token_guesses

P = ParamSpec("P")
R = TypeVar("R")

ADMIN_ROLES = {"admin", "supervisor"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# A page session lives as long as the credential it was opened with, and never longer than a working day.
ADMIN_SESSION_MAX_S = 12 * 3600


class AdminSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, opened only for requests that carry a cookie.

    Only the /admin page has a session; Twilio's webhooks and the API's bearer-token clients send no cookie,
    and building the cookie's signing serializer for each of them cost a third of a webhook's request setup.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if "HTTP_COOKIE" not in request.environ:
            return self.session_class()
        return super().open_session(app, request)


def admin_identity_for(token: str) -> str:
    """The actor name for a token, or ApiError 401 (not valid) / 403 (valid, but an agent)."""
    return admin_login_for(token)[0]


def admin_login_for(token: str) -> tuple[str, float]:
    """(actor name, until when a page session opened with this token may last), or ApiError 401 / 403."""
    admin_token = current_app.config.get("ADMIN_TOKEN")
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        # A client told to wait is told so for the right ADMIN_TOKEN too: else a 200 among the 429s would still
        # tell a guesser when they found it. A wrong guess is counted below, as a token IAM refused: nothing
        # tells an ADMIN_TOKEN guess from a Flex token, whose format is Twilio's to change.
        limit_token_guesses()
        return "admin-token", time.time() + ADMIN_SESSION_MAX_S
    user = authenticate(token)
    if not ADMIN_ROLES & set(user.roles):
        raise ApiError(
            403,
            "not_an_admin",
            f"{user.identity} has roles {list(user.roles) or 'none'}; admin or supervisor is required",
        )
    return user.identity, min(user.expires_at, time.time() + ADMIN_SESSION_MAX_S)


def open_admin_session(identity: str, until: float) -> None:
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    # Sessions ended more than a day ago are only history; a sign-in is rare enough to sweep them.
    db.session.execute(delete(AdminSession).where(AdminSession.expires_at < now - timedelta(days=1)))
    db.session.add(
        AdminSession(
            secret_sha256=_digest(secret),
            identity=identity,
            created_at=now,
            expires_at=datetime.fromtimestamp(until, UTC),
        )
    )
    db.session.commit()
    session.clear()
    session["admin"] = identity
    session["admin_until"] = until
    session["admin_secret"] = secret
    # Rotating ADMIN_TOKEN ends the page sessions it opened.
    session["admin_key"] = _admin_token_fingerprint() if identity == "admin-token" else None
    session.permanent = False


def session_admin() -> str | None:
    """The page session's admin, or None: never signed in, the credential's time is up, the session was signed
    out (here or on another device), or ADMIN_TOKEN changed since (such a session is cleared)."""
    identity: str | None = session.get("admin")
    if not identity:
        return None
    fresh = session.get("admin_until", 0) > time.time()
    if fresh and identity == "admin-token":
        fresh = session.get("admin_key") is not None and session.get("admin_key") == _admin_token_fingerprint()
    if fresh:
        row = db.session.get(AdminSession, _digest(session.get("admin_secret") or ""))
        fresh = row is not None and row.identity == identity and row.revoked_at is None
    if not fresh:
        session.clear()
        return None
    return identity


def close_admin_sessions(everywhere: bool) -> None:
    """Sign out: this session, or every open session of its admin (the caller has checked CSRF)."""
    identity = session.get("admin")
    if identity:
        which = (
            AdminSession.identity == identity
            if everywhere
            else AdminSession.secret_sha256 == _digest(session.get("admin_secret") or "")
        )
        db.session.execute(
            update(AdminSession).where(which, AdminSession.revoked_at.is_(None)).values(revoked_at=utcnow())
        )
        db.session.commit()
    session.clear()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _admin_token_fingerprint() -> str | None:
    admin_token = current_app.config.get("ADMIN_TOKEN")
    return hashlib.sha256(admin_token.encode()).hexdigest()[:16] if admin_token else None


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    token: str = session["csrf"]
    return token


def check_csrf(sent: str | None) -> None:
    expected = session.get("csrf")
    # As bytes: compare_digest refuses non-ASCII str, and a forged value must be a 403, not a 500.
    if not expected or not sent or not hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), expected.encode()):
        raise ApiError(403, "csrf_failed", "the form is stale or forged: reload the page and try again")


def admin_required(view: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        token = bearer_token()
        if token is not None:
            g.admin = admin_identity_for(token)
        elif session_admin():
            if request.method not in SAFE_METHODS:
                check_csrf(request.headers.get("X-CSRF-Token"))
            g.admin = session["admin"]
        else:
            raise ApiError(401, "admin_login_required", "send 'Authorization: Bearer <ADMIN_TOKEN or Flex token>'")
        return view(*args, **kwargs)

    return wrapper
