"""The app's request class (Flask's `app.request_class`), and what every request must be before a view reads it."""

from __future__ import annotations

import re
from typing import Any, Protocol
from urllib.parse import unquote, unquote_to_bytes

import flask
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property

from ..runtime.compat import URL_QUOTE_ERRORS, cache_body, has_cached_body
from ..untrusted_text import CONTROL_CHARACTERS

# The service's own JSON bodies nest two levels ({"whatsapp": {"max_bytes": ...}}). Python's parser recurses once
# per level and raises RecursionError (not ValueError: a 500) near 1,000 levels, which a 5 kB body reaches.
MAX_JSON_DEPTH = 32
# A string (its closing quote optional: an unterminated one is consumed once, to the end, instead of being tried again
# from each of its quotes, which took a 32 kB body of escaped quotes 2.7 s) or a bracket. One pass, linear.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def json_depth(text: str) -> int:
    """How deep `text` nests arrays and objects, counted as the parser would meet them (brackets in strings
    do not count)."""
    depth = deepest = 0
    for token in _JSON_TOKENS.findall(text):
        if token in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in ("]", "}"):
            depth -= 1
    return deepest


class JsonParser(Protocol):
    """What parses a request's JSON: Flask's json module, or the app's JSON provider."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any: ...


class BoundedJson:
    """A request's JSON parser (the app's, which Flask hands every request as `json_module`), refusing bodies
    nested deeper than MAX_JSON_DEPTH. Every failure is a ValueError, which `get_json` turns into None (silent)
    or a 400, on every route that reads JSON."""

    def __init__(self, parser: JsonParser) -> None:
        self.parser = parser

    def loads(self, data: str | bytes, **kwargs: Any) -> Any:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        if json_depth(text) > MAX_JSON_DEPTH:
            raise ValueError(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            return self.parser.loads(data, **kwargs)
        except RecursionError:  # not reachable past the count above, unless the parser and the count disagree
            raise ValueError(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels") from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)


def url_problem(environ: dict[str, Any]) -> str | None:
    """Why a request's path or query cannot be taken, or None.

    Views compare path segments and query values with database columns, and PostgreSQL refuses NUL in any text
    (a DataError: a 500 wherever a view forgot to check). Nothing the service serves has a control character or
    a byte that is not UTF-8 in its URL, so such a URL is refused once, here, for every route.
    """
    path, query = environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", "")
    # The common case, an ASCII path without controls and no query to decode, costs two string scans.
    if _plain(path) and (not query or ("%" not in query and _plain(query))):
        return None
    try:
        # PATH_INFO is already percent-decoded, as latin-1 (PEP 3333); the query is still percent-encoded.
        # The query's raw bytes too: a byte over 0x7F sent unencoded arrives as a latin-1 character (PEP 3333).
        text = path.encode("latin-1").decode("utf-8") + unquote_to_bytes(query.encode("latin-1")).decode("utf-8")
    except UnicodeError:
        return "the URL is not UTF-8"
    if CONTROL_CHARACTERS.search(text):
        return "the URL's path or query holds a control character (NUL, a line break or another)"
    return None


def _plain(text: str) -> bool:
    return text.isascii() and text.isprintable()  # for ASCII, "printable" is "no C0 control and no DEL"


class Request(flask.Request):
    _json_module = BoundedJson(flask.json)

    # Typed as Flask declares the attribute (werkzeug's default is the json module itself).
    @property
    def json_module(self) -> Any:
        return self._json_module

    @json_module.setter
    def json_module(self, parser: JsonParser) -> None:
        # Flask's request context sets the app's JSON provider on every request: bound it.
        self._json_module = BoundedJson(parser)

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
