"""Health for the platform and monitors: database, schema, job queue and ffmpeg, each with its own `ok`.

503 only for what makes this process unfit while another could be fit: a schema behind its code (a deploy whose
release phase did not migrate) or an ffmpeg that does not run. A platform then keeps routing Twilio to the processes
that can store and convert, or does not start routing to this one. An unreachable database or Redis is 200
"degraded": every process shares them, so taking them all out of rotation would only turn the service's 503s
(which Twilio retries) into the router's errors, and while Redis is down webhooks are still stored.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify

from ..audio.ffmpeg import ffmpeg_in_use
from ..extensions import db
from ..jobs.queue import runner
from ..runtime.schema import database_revisions, schema_status

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    checks = {**_database_and_schema(), "queue": _queue(), "ffmpeg": _ffmpeg()}
    unfit = not (checks["ffmpeg"]["ok"] and checks.get("schema", {"ok": True})["ok"])
    degraded = not all(check["ok"] for check in checks.values())
    if degraded:
        log.warning("healthz %s: %s", "unfit" if unfit else "degraded", checks)
    status = "unfit" if unfit else "degraded" if degraded else "ok"
    return jsonify({"status": status, **checks}), 503 if unfit else 200


def _database_and_schema() -> dict[str, Any]:
    try:
        revisions = database_revisions(db.session.connection())
    except Exception as exc:  # noqa: BLE001 - report, don't raise
        db.session.rollback()
        return {"database": {"ok": False, "error": str(exc)[:200]}}
    database = {"ok": True, "dialect": db.engine.dialect.name}
    try:
        return {"database": database, "schema": schema_status(revisions)}
    except Exception as exc:  # noqa: BLE001 - no migrations/ to compare with
        return {"database": database, "schema": {"ok": False, "error": str(exc)[:200]}}


def _queue() -> dict[str, Any]:
    try:
        return {"ok": True, **runner().describe()}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": str(exc)[:200]}


def _ffmpeg() -> dict[str, Any]:
    try:
        binary, version = ffmpeg_in_use()
    except Exception as exc:  # noqa: BLE001 - a ConfigError says why; anything else (no ffmpeg anywhere) is unfit too
        return {"ok": False, "error": str(exc)[:300]}
    return {"ok": True, "path": binary, "version": version}
