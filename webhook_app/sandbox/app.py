"""The sandbox's WSGI app: Conversations, MCS and IAM on one host (callers keep Twilio's paths and swap only the
base URL), behind Twilio's basic auth, injected faults first."""

from __future__ import annotations

import hmac

from flask import Flask, Response, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.datastructures import Authorization
from werkzeug.exceptions import HTTPException

from . import conversations, iam, media
from .controls import take_fault
from .served import EXTENSION, ServedAccount, current_sandbox
from .store import Store
from .wire import (
    ERR_AUTHENTICATE,
    ERR_METHOD_NOT_ALLOWED,
    TwilioError,
    http_error,
    not_found,
)

# The real temporary link is pre-signed object storage, which refuses a request that also carries basic auth.
_ONE_AUTH_MECHANISM = (
    "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed;"
    " only the X-Amz-Algorithm query parameter, Signature query string parameter"
    " or the Authorization header should be specified</Message></Error>"
)


class TwilioJSONProvider(DefaultJSONProvider):
    sort_keys = False  # keep Twilio's field order on the wire


def create_sandbox_app(sandbox: ServedAccount) -> Flask:
    """The app serving `sandbox`, which its views find in app.extensions."""
    app = Flask(__name__)
    app.url_map.strict_slashes = False
    app.json = TwilioJSONProvider(app)
    app.extensions[EXTENSION] = sandbox
    app.register_error_handler(TwilioError, _twilio_error)
    app.register_error_handler(HTTPException, _http_error)
    app.before_request(_faults_then_auth)
    for blueprint in (conversations.bp, media.bp, iam.bp):
        app.register_blueprint(blueprint)
    return app


def _twilio_error(exc: TwilioError) -> Response:
    return exc.response()


def _http_error(exc: HTTPException) -> Response:
    if exc.code == 404:
        return not_found(request.path).response()
    if exc.code == 405:
        return TwilioError(405, ERR_METHOD_NOT_ALLOWED, "Method not allowed").response()
    return http_error(exc.code or 500, exc.description or exc.name).response()


def _faults_then_auth() -> Response | None:
    store = current_sandbox().store
    fault = take_fault(store, request.path)
    if fault is not None:
        raise fault
    if request.endpoint == "mcs.media_content" and media.temp_link_valid():
        if "Authorization" in request.headers:
            # Downloads through the temporary link must send no credentials, as the real one requires.
            return Response(_ONE_AUTH_MECHANISM, status=400, mimetype="application/xml")
        return None
    if not _authorized(store, request.authorization, api_key_allowed=request.endpoint != "iam.validate"):
        raise TwilioError(401, ERR_AUTHENTICATE, "Authenticate", {"WWW-Authenticate": 'Basic realm="Twilio API"'})
    return None


def _authorized(store: Store, auth: Authorization | None, api_key_allowed: bool) -> bool:
    """HTTP basic auth with the account's SID and auth token, or (REST, not IAM: Twilio documents IAM's token
    validation with the account's credentials only) an API key's SID and secret."""
    if auth is None or auth.type != "basic":
        return False
    username, password = auth.username or "", auth.password or ""
    if hmac.compare_digest(username, store.account_sid):
        return hmac.compare_digest(password, store.auth_token)
    if not api_key_allowed or not username.startswith("SK"):
        return False
    with store.connect() as conn:
        row = conn.execute("SELECT secret FROM api_keys WHERE sid = ?", (username,)).fetchone()
    return row is not None and hmac.compare_digest(password, row["secret"])
