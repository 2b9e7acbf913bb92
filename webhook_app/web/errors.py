"""One JSON error shape for every API answer: {"error": {"code", "message"}}, and the status of each domain error."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge

from ..domain_errors import DomainError
from ..humanize import format_bytes

# The status of each domain error's code (domain_errors.py): the one table where a domain refusal or failure
# becomes an HTTP status. A code not listed (a stored failure's `interrupted`, say) is a 500.
DOMAIN_ERROR_STATUS: dict[str, int] = {
    "bad_filter": 400,
    "bad_settings": 400,
    "empty_audio": 400,
    "not_audio": 400,
    "silent_audio": 400,
    "not_a_participant": 403,
    "sending_disabled": 403,
    "conversation_not_found": 404,
    "unknown_channel": 404,
    "idempotency_key_in_flight": 409,
    "conversion_timeout": 413,
    "too_large": 413,
    "too_long": 413,
    "internal_error": 500,
    "settings_missing": 500,
    "twilio_error": 502,
    "busy": 503,
}


class ApiError(Exception):
    """A refusal the edge itself decides (authentication, CSRF, limits on refused attempts, a URL's form), with
    its HTTP status; the domain raises DomainError instead."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def status_of(error: DomainError) -> int:
    return DOMAIN_ERROR_STATUS.get(error.code, 500)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    from .wrappers import url_problem  # the factory's import: wrappers loads psycopg (compat)

    @app.before_request
    def refuse_odd_urls() -> None:
        # Before every view (and before a webhook's signature check): one 400 instead of each view's own
        # handling, or a database error, for a NUL in a path segment or a query value.
        problem = url_problem(request.environ)
        if problem is not None:
            raise BadRequest(problem)

    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(DomainError)
    def handle_domain_error(exc: DomainError) -> Response:
        headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
        return error_response(status_of(exc), exc.code, exc.message, headers)

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException) -> Response | HTTPException:
        if request.path.startswith(("/api/", "/agent/api/", "/twilio/", "/media/", "/healthz", "/metrics")):
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
