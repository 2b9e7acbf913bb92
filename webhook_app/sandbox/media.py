"""The Media Content Service (mcs.us1.twilio.com): upload, the media resource, its content and the pre-signed
temporary link to it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import sqlite3
import time

from flask import Blueprint, Response, jsonify, request
from werkzeug.http import parse_options_header, parse_range_header
from werkzeug.wrappers import Response as BaseResponse  # what make_conditional is annotated to answer

from .records import garbage_collected, insert_media
from .resources import MediaLinks, MediaResource
from .served import check_service, current_sandbox
from .store import Store
from .wire import (
    ERR_INVALID_MEDIA_CONTENT_TYPE,
    ERR_INVALID_PARAMETER,
    ERR_MEDIA_TOO_LARGE,
    TwilioError,
    not_found,
)

# Real MCS accepts far more than any channel delivers (email allows 150 MB); channel limits are the caller's job.
MAX_MEDIA_BYTES = 150 * 1024 * 1024
TEMP_URL_TTL_S = 300  # MCS `content_direct_temporary` links live 300 s

bp = Blueprint("mcs", __name__)


def render_media(store: Store, row: sqlite3.Row, host_url: str | None = None) -> MediaResource:
    path = f"/v1/Services/{row['service_sid']}/Media/{row['sid']}"
    links: MediaLinks = {"content": f"{path}/Content", "content_direct_temporary": None}
    if host_url:
        # Real MCS hands out a pre-signed CDN link; ours points back at this host's /Content with a signed
        # expiring query, so whoever reached us through their own base URL can fetch it without auth.
        expires = int(time.time()) + TEMP_URL_TTL_S
        sig = temp_signature(store, row["sid"], expires)
        links["content_direct_temporary"] = f"{host_url.rstrip('/')}{path}/Content?Expires={expires}&Signature={sig}"
    # MCS, unlike Conversations, answers relative `url`/`links.content` (seen in real responses).
    return {
        "sid": row["sid"],
        "account_sid": store.account_sid,
        "service_sid": row["service_sid"],
        "date_created": row["date_created"],
        "date_upload_updated": row["date_created"],
        "date_updated": row["date_updated"],
        "links": links,
        "size": row["size"],
        "content_type": row["content_type"],
        "filename": row["filename"],
        "author": row["author"],
        "category": "media",
        "message_sid": row["message_sid"],
        "channel_sid": row["channel_sid"],
        "url": path,
        "is_multipart_upstream": False,
    }


def temp_signature(store: Store, media_sid: str, expires: int) -> str:
    mac = hmac.new(store.auth_token.encode(), f"{media_sid}:{expires}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def temp_link_valid() -> bool:
    """Whether this request to a media's /Content carries an unexpired temporary-link signature for it."""
    media_sid = (request.view_args or {}).get("media_sid", "")
    expires, signature = request.args.get("Expires", ""), request.args.get("Signature", "")
    if not expires.isdigit() or not signature or int(expires) < time.time():
        return False
    return hmac.compare_digest(signature, temp_signature(current_sandbox().store, media_sid, int(expires)))


@bp.post("/v1/Services/<chat_service_sid>/Media")
def media_upload(chat_service_sid: str) -> tuple[Response, int]:
    check_service(chat_service_sid)
    if request.content_length is not None and request.content_length > MAX_MEDIA_BYTES:
        raise TwilioError(413, ERR_MEDIA_TOO_LARGE, "Media exceeds the maximum allowed size")
    data, content_type, filename = _read_upload()
    if not data:
        raise TwilioError(400, ERR_INVALID_PARAMETER, "Media content is empty")
    if len(data) > MAX_MEDIA_BYTES:
        raise TwilioError(413, ERR_MEDIA_TOO_LARGE, "Media exceeds the maximum allowed size")
    if not content_type or "/" not in content_type:
        raise TwilioError(400, ERR_INVALID_MEDIA_CONTENT_TYPE, "Invalid media content type")
    store = current_sandbox().store
    with store.tx() as conn:
        row = insert_media(store, conn, data, content_type, filename)
    return jsonify(render_media(store, row, request.host_url)), 201


@bp.get("/v1/Services/<chat_service_sid>/Media/<media_sid>")
def media_fetch(chat_service_sid: str, media_sid: str) -> Response:
    row = _media_or_404(chat_service_sid, media_sid)
    return jsonify(render_media(current_sandbox().store, row, request.host_url))


@bp.get("/v1/Services/<chat_service_sid>/Media/<media_sid>/Content")
def media_content(chat_service_sid: str, media_sid: str) -> BaseResponse:
    row = _media_or_404(chat_service_sid, media_sid)
    data = bytes(row["data"])
    response = Response(data, status=200, headers={"Content-Type": row["content_type"]})
    # MCS hands the bytes out from object storage, which answers one `Range: bytes=a-b` with 206 (cut at the
    # end of the file) and a range past the end with 416, and ignores a malformed header or several ranges
    # (200, the whole file), as S3 does.
    ranges = parse_range_header(request.headers.get("Range"))
    if ranges is None or ranges.units != "bytes" or len(ranges.ranges) != 1:
        return response
    return response.make_conditional(request, accept_ranges=True, complete_length=len(data))


def _media_or_404(chat_service_sid: str, media_sid: str) -> sqlite3.Row:
    check_service(chat_service_sid)
    with current_sandbox().store.connect() as conn:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM media WHERE sid = ? AND service_sid = ?", (media_sid, chat_service_sid)
        ).fetchone()
    if row is None or garbage_collected(row):
        raise not_found(request.path)
    return row


def _read_upload() -> tuple[bytes, str, str | None]:
    """The bytes, media type and filename of an MCS upload, in any form clients send it.

    Twilio documents a raw body with the media type as Content-Type; public clients also send
    multipart/form-data (a "Media" file part, optional "FileName" field). The filename may come as a
    `Filename`/`FileName`/`filename` query parameter or a Content-Disposition header.
    """
    if request.mimetype == "multipart/form-data":
        upload = next(iter(request.files.values()), None)
        if upload is None:
            return b"", "", None
        filename = request.form.get("FileName") or request.form.get("Filename") or upload.filename or None
        return upload.read(), upload.content_type or "application/octet-stream", filename
    filename = request.args.get("Filename") or request.args.get("FileName") or request.args.get("filename")
    if not filename and request.headers.get("Content-Disposition"):
        _, options = parse_options_header(request.headers["Content-Disposition"])
        filename = options.get("filename")
    return request.get_data(cache=False), request.headers.get("Content-Type", "").strip(), filename or None
