"""The app's request class (Flask's `app.request_class`)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import flask
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property


class Request(flask.Request):
    @cached_property
    def form_fields(self) -> list[tuple[str, str]]:
        """A form-encoded body as (name, value) pairs in the order sent, empty for any other body.

        Twilio's webhooks are form posts whose every field is signed, so the signature check and the handler
        both read all of them: parsed once, straight into pairs, this costs a third of werkzeug's `form` (its
        stream wrappers and MultiDict). Parsed as werkzeug parses it, so both agree on every body.
        """
        if self.mimetype != "application/x-www-form-urlencoded":
            return []
        limit = self.max_form_memory_size
        if limit is not None and (self.content_length or 0) > limit:
            raise RequestEntityTooLarge()
        body = self.get_data(cache=True)
        if limit is not None and len(body) > limit:  # chunked: no Content-Length to check first
            raise RequestEntityTooLarge()
        try:
            return parse_qsl(body.decode(), keep_blank_values=True, errors="werkzeug.url_quote")
        except ValueError:  # not UTF-8: werkzeug's form would be empty too
            return []
