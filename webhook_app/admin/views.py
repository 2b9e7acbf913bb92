"""The /admin page: log in with ADMIN_TOKEN or an admin/supervisor Flex token, then edit settings and browse
the audit trail (the page's script talks to the admin JSON API with the session cookie and a CSRF header)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, session, url_for

from ..errors import ApiError
from ..models import CHANNELS
from ..settings import BITRATES_KBPS, HARD_MAX_BYTES, HARD_MAX_DURATION_S
from .auth import admin_login_for, check_csrf, csrf_token, open_admin_session, session_admin

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("")
def index():
    admin = session_admin()
    if not admin:
        return render_template("admin/login.html", csrf_token=csrf_token(), error=None)
    return render_template("admin/index.html", csrf_token=csrf_token(), admin=admin, channels=CHANNELS,
                           bitrates=BITRATES_KBPS, hard_max_bytes=HARD_MAX_BYTES,
                           hard_max_duration_s=HARD_MAX_DURATION_S)


@bp.post("/login")
def login():
    try:
        check_csrf(request.form.get("csrf_token"))
        token = (request.form.get("token") or "").strip()
        if not token:
            raise ApiError(401, "missing_token", "enter the admin token or a Flex token")
        identity, until = admin_login_for(token)
    except ApiError as exc:
        return render_template("admin/login.html", csrf_token=csrf_token(), error=exc.message), exc.status
    open_admin_session(identity, until)
    return redirect(url_for("admin.index"))


@bp.post("/logout")
def logout():
    try:
        check_csrf(request.form.get("csrf_token"))
    except ApiError as exc:
        return exc.message, exc.status
    session.clear()
    return redirect(url_for("admin.index"))
