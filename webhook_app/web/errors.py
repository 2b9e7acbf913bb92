"""One JSON error shape for every API answer: {"error": {"code", "message"}}."""

from __future__ import annotations

from flask import Flask, jsonify, request
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge

from ..humanize import format_bytes


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def conversation_error(exc, conversation_sid: str | None = None) -> ApiError:
    """A Twilio failure (twilio.http.TwilioHttpError) met reading conversations, as the API answers it: 404 when
    Twilio has no such conversation, else 502."""
    if exc.status == 404:
        return ApiError(
            404,
            "conversation_not_found",
            f"conversation {conversation_sid} does not exist"
            if conversation_sid
            else "Twilio has no such conversation",
        )
    return ApiError(
        502,
        "twilio_error",
        f"could not read {'the conversation' if conversation_sid else 'conversations'} from Twilio: {exc}",
    )


def error_response(status: int, code: str, message: str, headers: dict | None = None):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    from .wrappers import url_problem  # the factory's import: wrappers loads psycopg (compat)

    @app.before_request
    def refuse_odd_urls():
        # Before every view (and before a webhook's signature check): one 400 instead of each view's own
        # handling, or a database error, for a NUL in a path segment or a query value.
        problem = url_problem(request.environ)
        if problem is not None:
            raise BadRequest(problem)

    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException):
        if request.path.startswith(("/api/", "/agent/api/", "/twilio/", "/media/", "/healthz")):
            code = (exc.name or "error").lower().replace(" ", "_")
            # What the exception says beyond its body (a 416's Content-Range, a 405's Allow) stays.
            headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
            return error_response(exc.code or 500, code, _message_for(exc), headers)
        return exc


def _message_for(exc: HTTPException) -> str:
    if isinstance(exc, RequestEntityTooLarge):
        # werkzeug's "exceeds the capacity limit" leaves the sender guessing what the limit is.
        limit = request.max_content_length or request.max_form_memory_size
        if limit:
            return f"the request body is over the {format_bytes(limit)} limit of this endpoint"
    return exc.description or exc.name
