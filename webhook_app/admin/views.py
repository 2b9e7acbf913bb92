"""The /admin page: log in with ADMIN_TOKEN or an admin/supervisor Flex token, then edit settings and browse
the audit trail (the page's script talks to the admin JSON API with the session cookie and a CSRF header)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from ..models import CHANNELS
from ..sandbox.demo import service_sandbox
from ..settings.rules import BITRATES_KBPS, HARD_MAX_BYTES, HARD_MAX_DURATION_S
from ..transcripts.languages import LANGUAGE_CHOICES
from ..web.errors import ApiError
from .auth import (
    admin_login_for,
    check_csrf,
    close_admin_sessions,
    csrf_token,
    open_admin_session,
    session_admin,
)

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("")
def index() -> str:
    admin = session_admin()
    if not admin:
        return login_page()
    return render_template(
        "admin/index.html",
        csrf_token=csrf_token(),
        admin=admin,
        channels=CHANNELS,
        bitrates=BITRATES_KBPS,
        hard_max_bytes=HARD_MAX_BYTES,
        languages=LANGUAGE_CHOICES,
        hard_max_duration_s=HARD_MAX_DURATION_S,
    )


@bp.post("/login")
def login() -> ResponseReturnValue:
    return sign_in(lambda: (request.form.get("token") or "").strip())


def sign_in(form_token: Callable[[], str]) -> ResponseReturnValue:
    """Open a page session with the token `form_token()` gives, once the form's CSRF token checks out (the form's
    own, or the sandbox's sign-in: sandbox/pages.py)."""
    try:
        check_csrf(request.form.get("csrf_token"))
        token = form_token()
        if not token:
            raise ApiError(401, "missing_token", "enter the admin token or a Flex token")
        identity, until = admin_login_for(token)
    except ApiError as exc:
        return login_page(error=exc.message), exc.status, exc.headers  # a 429's Retry-After too
    open_admin_session(identity, until)
    return redirect(url_for("admin.index"))


def login_page(error: str | None = None) -> str:
    return render_template(
        "admin/login.html", csrf_token=csrf_token(), error=error, sandbox=service_sandbox() is not None
    )


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    try:
        check_csrf(request.form.get("csrf_token"))
    except ApiError as exc:
        return exc.message, exc.status
    close_admin_sessions(everywhere=request.form.get("everywhere") == "1")
    return redirect(url_for("admin.index"))
