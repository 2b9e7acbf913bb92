"""X-Twilio-Signature validation. Never skipped, in any mode."""

from __future__ import annotations

import logging

from flask import Request, current_app
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

log = logging.getLogger(__name__)


def signed_url(request: Request) -> str:
    """The URL Twilio signed.

    Behind Heroku's router `request.url` would say http:// while Twilio signed https://. ProxyFix repairs
    that from X-Forwarded-*; PUBLIC_BASE_URL, when set, wins because it is what the webhook was configured with.
    """
    base = current_app.config.get("PUBLIC_BASE_URL")
    if not base:
        return request.url
    query = request.query_string.decode("latin-1")
    return base + request.path + (f"?{query}" if query else "")


def is_valid_twilio_request(request: Request, auth_token: str) -> bool:
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        return False
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    validator = RequestValidator(auth_token)
    url = signed_url(request)
    if request.mimetype == "application/json":
        # JSON webhooks are signed over the URL (which carries bodySHA256) plus the raw body.
        params = request.get_data(as_text=True)
    elif request.method == "GET":
        params = {}
    else:
        params = request.form
    valid = validator.validate(url, params, signature, algorithm=algorithm)
    if not valid:
        log.warning("rejected webhook with a bad X-Twilio-Signature for %s", url)
    return valid
