"""Every use of a library's private API, in one place, each with why.

pyproject.toml bounds these packages from above (werkzeug, twilio, psycopg), and tests/runtime/test_compat.py
exercises each use, so an upgrade that breaks one fails there, by name, instead of somewhere downstream.
"""

from __future__ import annotations

import codecs

import werkzeug.urls  # noqa: F401 - registers the "werkzeug.url_quote" codec error handler used below
from psycopg import errors as psycopg_errors
from psycopg import waiting as psycopg_waiting
from psycopg._enums import Ready as Ready  # psycopg's wait protocol speaks these; not exported elsewhere
from psycopg._enums import Wait as Wait  # (both re-exported, `as`, for greenlets.py)
from psycopg.abc import WaitFunc
from twilio.request_validator import add_port as add_port  # re-exported: see url_spellings in twilio/signatures.py
from twilio.request_validator import remove_port as remove_port
from werkzeug.wrappers import Request

# -- werkzeug --------------------------------------------------------------------------------------------------
# Request.get_data(cache=True) keeps the body in this attribute. wrappers.Request reads a form's body straight
# from the server's input (a tenth of a webhook's cost) and leaves it there, so that get_data, form and the
# signature check all see the same bytes without werkzeug's stream wrappers.
BODY_CACHE_ATTRIBUTE = "_cached_data"

# werkzeug's codec error handler for percent-decoding: undecodable bytes are kept as %XX, as werkzeug parses forms.
# The fast form parser (wrappers.parse_form) must decode exactly as werkzeug does.
URL_QUOTE_ERRORS = "werkzeug.url_quote"
codecs.lookup_error(URL_QUOTE_ERRORS)  # fails at import if werkzeug stopped registering it


def has_cached_body(request: Request) -> bool:
    return BODY_CACHE_ATTRIBUTE in request.__dict__


def cache_body(request: Request, body: bytes) -> None:
    setattr(request, BODY_CACHE_ATTRIBUTE, body)


# -- twilio ----------------------------------------------------------------------------------------------------
# add_port / remove_port: the URL with and without its default port, exactly as twilio's RequestValidator spells
# them when it tries both. Twilio signs either spelling; signatures.py checks the same two at half the cost.


# -- psycopg ---------------------------------------------------------------------------------------------------
# The wait-function protocol (psycopg.waiting.wait_poll's): a generator asking for Wait states and fed Ready ones.
# greenlets.wait_gevent implements it and replaces psycopg's module-level `wait`, which Connection.wait looks up
# per call; _WaitTimeout is what a wait raises when its timeout expires, _check_fd_closed how wait_poll tells a
# closed socket.
WaitTimeout = psycopg_errors._WaitTimeout
check_fd_closed = psycopg_waiting._check_fd_closed


def install_psycopg_wait(wait: WaitFunc) -> None:
    psycopg_waiting.wait = wait
