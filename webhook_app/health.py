"""Health for the platform and monitors: database and job queue, each with its own `ok`."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from sqlalchemy import text

from .extensions import db
from .jobs.queue import runner

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    checks: dict = {}
    healthy = True
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = {"ok": True, "dialect": db.engine.dialect.name}
    except Exception as exc:  # noqa: BLE001 - report, don't raise
        healthy = False
        checks["database"] = {"ok": False, "error": str(exc)[:200]}
    try:
        checks["queue"] = {"ok": True, **runner().describe()}
    except Exception as exc:  # noqa: BLE001
        healthy = False
        checks["queue"] = {"ok": False, "error": str(exc)[:200]}
    if not healthy:
        log.warning("healthz degraded: %s", checks)
    # 200 either way (README, HTTP API): the web tier still acknowledges webhooks while Redis is down, so a platform
    # check must not take it out of rotation for that; monitors alert on "status" and each check's "ok".
    return jsonify({"status": "ok" if healthy else "degraded", **checks}), 200
