"""The private APIs the service leans on (webhook_app/runtime/compat.py) still behave as it assumes. When an upgrade of
werkzeug, twilio or psycopg fails here, read compat.py's comment for that use before raising the pin."""

from __future__ import annotations

import inspect
from urllib.parse import unquote, urlparse

from werkzeug.test import EnvironBuilder

from webhook_app.runtime import compat
from webhook_app.web.wrappers import Request, parse_form


def form_request(body: bytes) -> Request:
    return Request(
        EnvironBuilder(method="POST", data=body, content_type="application/x-www-form-urlencoded").get_environ()
    )


def test_werkzeug_still_caches_the_body_under_the_attribute_we_fill():
    request = form_request(b"a=1")
    assert not compat.has_cached_body(request)
    assert request.get_data(cache=True) == b"a=1"
    assert compat.has_cached_body(request), f"werkzeug no longer caches the body as {compat.BODY_CACHE_ATTRIBUTE}"
    assert request.__dict__[compat.BODY_CACHE_ATTRIBUTE] == b"a=1"


def test_a_body_we_cache_is_the_one_werkzeug_answers():
    request = form_request(b"ignored=1")
    compat.cache_body(request, b"b=2")
    assert request.get_data() == b"b=2"
    assert request.form_fields == [("b", "2")]


def test_werkzeug_url_quote_error_handler_keeps_undecodable_bytes_as_werkzeug_parses_them():
    assert unquote("%FF%41", errors=compat.URL_QUOTE_ERRORS) == "%FFA"
    request = form_request(b"name=%FF%41&x=%E2%82%AC")
    assert parse_form("name=%FF%41&x=%E2%82%AC") == list(request.form.items(multi=True))


def test_twilio_add_port_and_remove_port_spell_urls_as_the_validator_does():
    assert compat.add_port(urlparse("https://example.com/hook?a=1")) == "https://example.com:443/hook?a=1"
    assert compat.remove_port(urlparse("https://example.com:443/hook")) == "https://example.com/hook"
    assert compat.add_port(urlparse("http://example.com/x")) == "http://example.com:80/x"


def test_psycopg_wait_protocol_names_exist():
    import psycopg
    from psycopg import waiting

    assert {"R", "W", "RW"} <= set(compat.Wait.__members__)
    assert {"NONE", "R", "W", "RW"} <= set(compat.Ready.__members__)
    assert int(compat.Wait.R) == 1 and int(compat.Wait.W) == 2  # greenlets.py hands them to libev as READ/WRITE
    assert issubclass(compat.WaitTimeout, psycopg.errors.OperationalError)
    assert callable(compat.check_fd_closed)
    # Connection.wait looks the module's `wait` up per call, so replacing it reaches every connection.
    source = inspect.getsource(psycopg.Connection.wait)
    assert "waiting.wait(" in source
    original = waiting.wait
    try:
        compat.install_psycopg_wait(marker := object())
        assert waiting.wait is marker
    finally:
        waiting.wait = original
