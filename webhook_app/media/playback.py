"""Signed, expiring playback links that a plain cross-origin <audio> element can use (no headers).

Database store: the bytes are served here (Range/206, ETag, 304). S3 store: a 302 to a short-lived presigned GET
URL, so S3 serves the bytes and the ranges itself; with `S3_PRESIGN=false` the object is streamed through this
service instead, the Range header passed on to S3. Any origin may read the audio (webhook_app/web/cors.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import IO, Any, cast

from flask import Blueprint, Response, current_app, redirect, request, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from werkzeug.http import http_date, parse_date, parse_range_header
from werkzeug.wrappers import Response as BaseResponse
from werkzeug.wsgi import wrap_file

from ..extensions import db
from ..models import AudioMessage, Status
from ..web.errors import ApiError
from ..web.headers import allowed_media_type, media_headers, media_type
from .storage import S3Store, SeekableStore, StreamedObject, media_store

bp = Blueprint("playback", __name__)

SALT = "playback-v1"
DEFAULT_PRESIGN_TTL_S = 900


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def playback_url(row: AudioMessage) -> str | None:
    if row.status != Status.READY.value or not row.media_key or row.media_deleted_at is not None:
        return None
    token = _serializer().dumps({"a": row.id, "k": row.media_key})
    base = current_app.config.get("PUBLIC_BASE_URL")
    path = url_for("playback.media", token=token)
    return base + path if base else url_for("playback.media", token=token, _external=True)


@bp.get("/media/<token>")
def media(token: str) -> BaseResponse:
    link_ttl_s = current_app.config["PLAYBACK_URL_TTL_S"]
    row, media_key, signed_at = _linked_audio(token, link_ttl_s)
    store = media_store()
    # A presigned URL never outlives the playback link that led to it.
    link_left_s = link_ttl_s - (datetime.now(UTC) - signed_at).total_seconds()
    ttl_s = max(1, int(min(current_app.config.get("S3_PRESIGN_TTL_S") or DEFAULT_PRESIGN_TTL_S, link_left_s)))
    url = store.presigned_url(media_key, ttl_s)
    if url:
        response = redirect(url, 302)
        response.headers["Cache-Control"] = f"private, max-age={ttl_s // 2}"
        return response
    if isinstance(store, S3Store):
        return _stream_from_s3(store, media_key, row.id)
    if not isinstance(store, SeekableStore):
        raise TypeError(f"{type(store).__name__} can neither presign, stream nor be read in place")
    return _serve_in_place(store, media_key, row)


def _linked_audio(token: str, link_ttl_s: int) -> tuple[AudioMessage, str, datetime]:
    """The audio message a playback link names, its media key and when the link was signed; ApiError (403, 410)
    for a link that is not valid, has expired, or names audio no longer there."""
    try:
        claims, signed_at = _serializer().loads(token, max_age=link_ttl_s, return_timestamp=True)
    except SignatureExpired:
        raise ApiError(410, "link_expired", "this playback link has expired; reload the conversation") from None
    except BadSignature:
        raise ApiError(403, "bad_link", "this playback link is not valid") from None
    row = db.session.get(AudioMessage, claims.get("a"))
    if row is None or row.media_key is None or row.media_key != claims.get("k"):
        raise ApiError(410, "gone", "this audio is no longer available")
    media_key = row.media_key
    if row.media_deleted_at is not None:
        raise ApiError(410, "media_expired", "this audio was deleted under the retention policy")
    return row, media_key, signed_at


def _serve_in_place(store: SeekableStore, media_key: str, row: AudioMessage) -> BaseResponse:
    """The bytes from a store read in place (the database, a folder), with ranges and conditional requests."""
    info = store.stat(media_key)
    if info is None:
        raise ApiError(410, "gone", "this audio is no longer available")
    audit_id, finished_at = row.id, row.finished_at
    # Each read of the bytes takes a pooled connection of its own. The request gives its session's back first:
    # forty requests each holding one while waiting for a second would empty the pool and wait on each other.
    db.session.close()
    reader = store.open(info)
    served_type = media_type(reader.read(64))  # the bytes decide, never the label a customer sent
    reader.seek(0)
    _ignore_ranges_werkzeug_would_refuse(request.environ, info.size_bytes)
    # wrap_file asks for IO[bytes] but calls only read, seek, tell and close, which every RawIOBase has.
    response: BaseResponse = Response(wrap_file(request.environ, cast(IO[bytes], reader)), direct_passthrough=True)
    response.content_length = info.size_bytes
    response.set_etag(info.sha256)
    response.last_modified = finished_at
    response.headers["Cache-Control"] = "private, max-age=3600"
    # Range/206, If-None-Match/304, If-Range and Accept-Ranges from Werkzeug, reading only the range asked for.
    response = response.make_conditional(request.environ, accept_ranges=True, complete_length=info.size_bytes)
    return media_headers(response, served_type, f"audio-{audit_id}")


def _ignore_ranges_werkzeug_would_refuse(environ: dict[str, Any], length: int) -> None:
    """werkzeug answers 416 to every Range it does not serve; RFC 9110 has a server ignore a range unit it does
    not know (and may ignore several ranges or a malformed header: the whole file, 200), and serve a suffix range
    longer than the file as the whole file. Only a start past the end stays 416, as S3 answers too."""
    header = environ.get("HTTP_RANGE")
    if not header:
        return
    parsed = parse_range_header(header)
    if parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1:
        del environ["HTTP_RANGE"]
    elif parsed.ranges[0][0] < 0 and -parsed.ranges[0][0] > length:
        environ["HTTP_RANGE"] = "bytes=0-"


def _stream_from_s3(store: S3Store, media_key: str, audit_id: int) -> BaseResponse:
    """The fallback without presigning: one S3 GET per request, the client's single byte range passed through."""
    parsed = request.range  # None when absent or unparsable: then the whole object, as RFC 9110 allows
    range_header = request.headers.get("Range") if parsed is not None and len(parsed.ranges) == 1 else None
    if_none_match = request.headers.get("If-None-Match")
    obj = store.open(media_key, range_header, if_none_match)
    # If-Range decides before the range does: a client with a stale copy gets the whole current object, not a
    # piece of it and not a 416, and still its 304 when If-None-Match says it has the current one.
    if obj is not None and obj.status == 206 and not _if_range_holds(obj):
        obj.close()
        obj = store.open(media_key, None, if_none_match)
    elif obj is not None and obj.status == 416 and request.headers.get("If-Range"):
        whole = store.open(media_key, None, if_none_match)  # S3's 416 carries no validator to compare
        if whole is not None and (whole.status != 200 or not _if_range_holds(whole)):
            obj.close()
            obj = whole
        elif whole is not None:
            whole.close()
    if obj is None:
        raise ApiError(410, "gone", "this audio is no longer available")
    if obj.status == 416:
        raise ApiError(
            416,
            "range_not_satisfiable",
            "the requested range is outside the audio",
            headers={"Content-Range": obj.content_range} if obj.content_range else None,
        )

    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600"}
    if obj.etag:
        headers["ETag"] = obj.etag
    if obj.last_modified:
        headers["Last-Modified"] = http_date(obj.last_modified)
    if obj.status == 304:
        return Response(status=304, headers=headers)  # no Content-Type: a 304 updates the cached copy's headers
    if obj.content_length is not None:
        headers["Content-Length"] = str(obj.content_length)
    if obj.content_range:
        headers["Content-Range"] = obj.content_range
    response = Response(obj.chunks(), status=obj.status, headers=headers, direct_passthrough=True)
    response.call_on_close(obj.close)  # HEAD, or a client that hangs up: give the S3 connection back
    return media_headers(response, allowed_media_type(obj.content_type), f"audio-{audit_id}")


def _if_range_holds(obj: StreamedObject) -> bool:
    condition = request.headers.get("If-Range")
    if not condition:
        return True
    condition = condition.strip()
    if condition.startswith(('"', "W/")):
        return condition == obj.etag  # If-Range needs a strong match
    when = parse_date(condition)
    return (
        when is not None
        and obj.last_modified is not None
        and int(when.timestamp()) == int(obj.last_modified.timestamp())
    )
