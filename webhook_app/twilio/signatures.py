"""X-Twilio-Signature validation. Never skipped, in any mode."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping
from urllib.parse import urlparse

from flask import current_app
from twilio.request_validator import HMAC_SHA1, RequestValidator, get_signature_algorithm
from werkzeug.datastructures import MultiDict

from ..runtime.compat import add_port, remove_port
from ..web.wrappers import Request

log = logging.getLogger(__name__)

_DIGESTS = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}
# A form as the signature reads it: (name, value) pairs in any order, a dict, or a werkzeug MultiDict.
FormFields = Iterable[tuple[str, str]] | Mapping[str, str] | MultiDict[str, str]


def signed_url(request: Request) -> str:
    """The URL Twilio signed.

    Behind Heroku's router the request would say http:// while Twilio signed https://. ProxyFix repairs
    that from X-Forwarded-*; PUBLIC_BASE_URL, when set, wins because it is what the webhook was configured with.
    """
    base: str | None = current_app.config.get("PUBLIC_BASE_URL")
    if not base:
        return request.requested_url
    query = request.query_string.decode("latin-1")
    return base + request.path + (f"?{query}" if query else "")


def is_valid_twilio_request(request: Request, auth_token: str) -> bool:
    signature = request.environ.get("HTTP_X_TWILIO_SIGNATURE")
    if not signature:
        return False
    algorithm = get_signature_algorithm(request.environ.get("HTTP_X_TWILIO_WEBHOOKS_SIGNATURE_SETTINGS"))
    url = signed_url(request)
    if (
        request.is_form_post
        and algorithm.upper() in _DIGESTS
        and "bodySHA256" not in request.environ.get("QUERY_STRING", "")
    ):
        valid = is_valid_form_signature(auth_token, url, request.form_fields, signature, algorithm)
    else:
        # The rarer shapes (JSON bodies signed through bodySHA256, GETs, unknown algorithms): Twilio's validator.
        params = (
            request.get_data(as_text=True)
            if request.mimetype == "application/json"
            else {}
            if request.method == "GET"
            else MultiDict(request.form_fields)
        )
        try:
            valid = RequestValidator(auth_token).validate(url, params, signature, algorithm=algorithm)
        except (TypeError, ValueError, KeyError):
            # twilio's validator indexes a JSON body as if it were a form when bodySHA256 is missing: a request
            # shaped like that was not signed by Twilio.
            valid = False
    if not valid:
        log.warning("rejected webhook with a bad X-Twilio-Signature for %s", url)
    return valid


def is_valid_form_signature(
    auth_token: str, url: str, form: FormFields, signature: str, algorithm: str = HMAC_SHA1
) -> bool:
    """What twilio's RequestValidator.validate accepts for a form POST, at half its cost on every webhook.

    Twilio signs the URL sometimes with the default port and sometimes without (its own validator accepts
    both), so both are tried, the URL's own spelling first: usually one HMAC instead of always two, and a
    constant-time compare in C instead of a Python loop. tests/twilio/test_signatures.py holds it to Twilio's validator.
    """
    given = signature.encode("utf-8", "surrogateescape")
    for candidate in url_spellings(url):
        if hmac.compare_digest(form_signature(auth_token, candidate, form, algorithm).encode(), given):
            return True
    return False


@functools.lru_cache(maxsize=64)
def url_spellings(url: str) -> tuple[str, str]:
    """The URL with and without its default port, its own spelling first. A service's webhooks all come to a
    few URLs: remembered, not parsed again for each."""
    parsed = urlparse(url)
    return (add_port(parsed), remove_port(parsed)) if parsed.port else (remove_port(parsed), add_port(parsed))


def form_signature(auth_token: str, url: str, form: FormFields, algorithm: str = HMAC_SHA1) -> str:
    """Twilio's signature: the URL, then each parameter name followed by its value, names sorted and a name's
    distinct values sorted, HMAC'd with the auth token, base64. `form` is (name, value) pairs, a dict or a
    werkzeug MultiDict."""
    pairs: Iterable[tuple[str, str]]
    if isinstance(form, MultiDict):
        pairs = form.items(multi=True)
    elif isinstance(form, Mapping):
        pairs = form.items()
    else:
        pairs = form
    # Sorting the distinct (name, value) pairs orders by name, then by value: exactly Twilio's order.
    payload = url + "".join(name + value for name, value in sorted(set(pairs)))
    digest = hmac.new(auth_token.encode(), payload.encode(), _DIGESTS[algorithm.upper()]).digest()
    return base64.b64encode(digest).decode()
