"""The app's request class (Flask's `app.request_class`)."""

from __future__ import annotations

from urllib.parse import unquote

import flask
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property

from .compat import URL_QUOTE_ERRORS, cache_body, has_cached_body


class Request(flask.Request):
    @cached_property
    def is_form_post(self) -> bool:
        """A form-encoded POST, the shape of every Twilio webhook (read off the header: werkzeug's `mimetype`
        parses every parameter of it)."""
        content_type = self.environ.get("CONTENT_TYPE", "")
        return (
            self.environ.get("REQUEST_METHOD") == "POST"
            and content_type.partition(";")[0].strip().lower() == "application/x-www-form-urlencoded"
        )

    @cached_property
    def requested_url(self) -> str:
        """The URL as the client requested it: scheme and host as the proxy in front saw them (ProxyFix applies
        X-Forwarded-*), path and query byte for byte as sent, which is what Twilio signs. werkzeug's `url`
        decodes and re-encodes them (and costs ten times as much); it stays the answer when the server does not
        pass the raw request target on (gunicorn and werkzeug's server do, as RAW_URI)."""
        raw = self.environ.get("RAW_URI")
        if not raw or not raw.startswith("/"):
            return self.url
        return f"{self.scheme}://{self.host}{raw}"

    @cached_property
    def form_fields(self) -> list[tuple[str, str]]:
        """A form-encoded body as (name, value) pairs in the order sent, empty for any other body.

        Twilio's webhooks are form posts whose every field is signed, so the signature check and the handler
        both read all of them: parsed once, straight into pairs, this costs a third of werkzeug's `form` (its
        stream wrappers and MultiDict). Parsed as werkzeug parses it, so both agree on every body.
        """
        if not self.is_form_post:
            return []
        limit = self.max_form_memory_size
        if limit is not None and (self.content_length or 0) > limit:
            raise RequestEntityTooLarge()
        if self.content_length is not None and not has_cached_body(self):
            # The body at once from the server's input, without werkzeug's stream wrappers (a tenth of a webhook).
            body = self.environ["wsgi.input"].read(self.content_length)
            cache_body(self, body)
        else:
            body = self.get_data(cache=True)
        if limit is not None and len(body) > limit:  # chunked: no Content-Length to check first
            raise RequestEntityTooLarge()
        try:
            return parse_form(body.decode())
        except ValueError:  # not UTF-8: werkzeug's form would be empty too
            return []


def parse_form(text: str) -> list[tuple[str, str]]:
    """urllib's parse_qsl(text, keep_blank_values=True) with werkzeug's error handler, as werkzeug parses forms,
    at half the cost: most names and many values need no unquoting, and asking costs less than calling it."""
    fields = []
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        fields.append((_unquote_plus(name), _unquote_plus(value)))
    return fields


def _unquote_plus(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    return unquote(text, errors=URL_QUOTE_ERRORS) if "%" in text else text
