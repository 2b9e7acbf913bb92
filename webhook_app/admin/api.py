"""Admin JSON API: per-channel settings and the audit trail."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, stream_with_context
from sqlalchemy import select

from ..audit import audit_csv, audit_dict, audit_page, filtered_query
from ..extensions import db
from ..models import CHANNELS, AudioMessage, ChannelSettings, SettingsChange
from ..settings.cache import Settings
from ..settings.rules import update_settings
from ..transcripts.job import NOT_INSTALLED, installed
from ..transcripts.search import add_transcripts
from ..web.errors import ApiError
from .auth import admin_required

MAX_AUDIT_ID = 2**31 - 1

bp = Blueprint("admin_api", __name__, url_prefix="/api/v1/admin")


def _settings_rows() -> list[dict[str, Any]]:
    rows = {row.channel: row for row in db.session.scalars(select(ChannelSettings))}
    return [Settings.from_row(rows[c]).to_dict() for c in CHANNELS if c in rows]


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_settings", "send a JSON object (Content-Type: application/json)")
    return body


@bp.get("/settings")
@admin_required
def list_settings() -> Response:
    return jsonify({"settings": _settings_rows(), "transcription": _transcription()})


def _transcription() -> dict[str, Any]:
    """Whether this process can transcribe (the page says so beside `transcribe`). With RQ the workers transcribe,
    and they are deployed from the same requirements as the web process."""
    out: dict[str, Any] = {
        "installed": installed(),
        "model": current_app.config.get("TRANSCRIBE_MODEL") or "tiny.en (bundled)",
    }
    if not out["installed"]:
        out["message"] = NOT_INSTALLED
    return out


@bp.put("/settings")
@admin_required
def put_many_settings() -> Response:
    """{"whatsapp": {...}, "sms": {...}}: all or nothing."""
    body = _json_body()
    for channel, changes in body.items():
        update_settings(channel, changes, g.admin)
    db.session.commit()
    return jsonify({"settings": _settings_rows()})


@bp.get("/settings/<channel>")
@admin_required
def get_settings(channel: str) -> Response:
    row = db.session.get(ChannelSettings, channel)
    if row is None:
        raise ApiError(404, "unknown_channel", f"no channel {channel!r}; channels are {', '.join(CHANNELS)}")
    return jsonify(Settings.from_row(row).to_dict())


@bp.put("/settings/<channel>")
@admin_required
def put_settings(channel: str) -> Response:
    row = update_settings(channel, _json_body(), g.admin)
    db.session.commit()
    return jsonify(Settings.from_row(row).to_dict())


@bp.get("/settings-changes")
@admin_required
def settings_changes() -> Response:
    limit = min(500, max(1, request.args.get("limit", 100, type=int)))
    query = select(SettingsChange).order_by(SettingsChange.changed_at.desc(), SettingsChange.id.desc()).limit(limit)
    if request.args.get("channel"):
        query = query.where(SettingsChange.channel == request.args["channel"])
    return jsonify({"changes": [change.to_dict() for change in db.session.scalars(query)]})


@bp.get("/audit")
@admin_required
def audit() -> Response:
    if request.args.get("format") == "csv":
        filtered_query(request.args)  # bad filters answer 400 before a streamed 200 starts
        return Response(
            stream_with_context(audit_csv(request.args)),
            mimetype="text/csv",
            headers={"Content-Disposition": "attachment; filename=audio-audit.csv"},
        )
    return jsonify(audit_page(request.args))


@bp.get("/audit/<int:audit_id>")
@admin_required
def audit_row(audit_id: int) -> Response:
    # Ids are 32-bit INTEGERs: PostgreSQL refuses to even compare a larger number with one (a 500, not a 404).
    row = db.session.get(AudioMessage, audit_id) if audit_id <= MAX_AUDIT_ID else None
    if row is None:
        raise ApiError(404, "not_found", f"no audit row {audit_id}")
    return jsonify(add_transcripts([row], [audit_dict(row)])[0])
