"""The one HTTP path to Twilio: real hosts, a configured base URL, or the in-process sandbox.

Every Twilio call (Conversations through twilio-python, MCS and IAM, which twilio-python does not cover)
goes through `TwilioHttp`, so timeouts, retries and `TWILIO_API_BASE_URL` behave the same everywhere.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from twilio.http import HttpClient
from twilio.http.response import Response as TwilioResponse
from werkzeug.test import Client

from ..humanize import format_bytes
from ..runtime.retry import TRANSIENT_STATUSES, RetryPolicy

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger(__name__)

CONVERSATIONS_HOST = "https://conversations.twilio.com"
MCS_HOST = "https://mcs.us1.twilio.com"
IAM_HOST = "https://iam.twilio.com"
REST_HOSTS = tuple(host + "/" for host in (CONVERSATIONS_HOST, MCS_HOST, IAM_HOST))

NO_AUTH = ("", "")  # pass as `auth` to send no Authorization header at all

RANGE_NOT_SATISFIABLE = 416

# Query parameters or a form body, as requests and werkzeug's test client take them.
Params = dict[str, Any]


class TwilioHttpError(Exception):
    def __init__(
        self, message: str, status: int | None = None, transient: bool = False, code: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient
        self.code = code
        self.retry_after: float | None = None  # seconds, when Twilio's answer said how long to wait


class TooLarge(TwilioHttpError):
    pass


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    content: bytes
    url: str = ""

    def json(self) -> Any:
        return json.loads(self.content or b"null")

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


@dataclass
class Outgoing:
    """One request as sent: over HTTP, or to the sandbox in-process."""

    method: str
    url: str
    params: Params | None
    data: Params | bytes | None
    json_body: dict[str, Any] | None
    headers: dict[str, str] | None
    auth: tuple[str, str] | None
    stream_to: IO[bytes] | None  # the body is written here (a 2xx's), not kept in the response
    max_bytes: int | None  # past this, TooLarge


@dataclass
class TwilioHttp:
    """`wsgi_app` set: requests are answered in-process by the sandbox (no socket, no thread)."""

    auth: tuple[str, str] | None
    base_url: str | None = None
    wsgi_app: WSGIApplication | None = None
    timeout_s: float = 15.0
    retries: int = 4
    backoff_s: float = 0.5
    sleep: Callable[[float], None] = time.sleep
    _session: requests.Session = field(default_factory=requests.Session, repr=False)

    def resolve(self, url: str) -> str:
        """Twilio's absolute URL -> the URL we really call (same path, maybe another base). Only REST calls move:
        MCS's `content_direct_temporary` is a pre-signed link on a CDN host, whose path means nothing to the base
        URL's server, and its signature covers that host."""
        if self.base_url and url.startswith(REST_HOSTS):
            parts = urlsplit(url)
            rest = parts.path + (f"?{parts.query}" if parts.query else "")
            return self.base_url + rest
        return url

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Params | None = None,
        data: Params | bytes | None = None,
        json_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        retry: bool | None = None,
        stream_to: IO[bytes] | None = None,
        max_bytes: int | None = None,
    ) -> HttpResponse:
        """One Twilio request with bounded retries on transient failures.

        POSTs are retried only when `retry=True`: a message create is not idempotent.
        With `stream_to`, the body is written there chunk by chunk and cut off past `max_bytes`.
        """
        method = method.upper()
        if retry is None:
            retry = method == "GET"
        attempts = 1 + (self.retries if retry else 0)
        last_error: TwilioHttpError | None = None
        for attempt in range(attempts):
            if attempt:
                self.sleep(self._delay(attempt, last_error))
            if stream_to is not None:
                stream_to.seek(0)
                stream_to.truncate()
            send_auth = None if auth == NO_AUTH else (auth or self.auth)
            outgoing = Outgoing(
                method, self.resolve(url), params, data, json_body, headers, send_auth, stream_to, max_bytes
            )
            outcome = self._attempt(outgoing, url, attempt + 1, attempts)
            if isinstance(outcome, TwilioHttpError):
                last_error = outcome
                continue
            return outcome
        assert last_error is not None
        raise last_error

    def _attempt(self, out: Outgoing, url: str, number: int, attempts: int) -> HttpResponse | TwilioHttpError:
        """One try of `request`: Twilio's response, or the transient failure (logged) that another try may cure.
        Anything else raises."""
        method = out.method
        try:
            response = self._send(out)
        except TooLarge:
            raise
        except (
            requests.Timeout,
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            # ChunkedEncodingError is also what a connection reset in the middle of a body becomes (urllib3's
            # ProtocolError, "Connection broken"): transient, though requests does not call it a ConnectionError.
            error = TwilioHttpError(f"{method} {url}: {type(exc).__name__}: {exc}", transient=True)
            log.warning("twilio request failed (attempt %d/%d): %s", number, attempts, error)
            return error
        if response.status in TRANSIENT_STATUSES:
            error = _error_from(response, method, url, transient=True)
            error.retry_after = _retry_after(response)
            log.warning("twilio answered %d (attempt %d/%d): %s", response.status, number, attempts, url)
            return error
        return response

    def first_bytes(self, url: str, count: int, timeout_s: float) -> bytes:
        """The first `count` bytes of a GET of `url`: one request, no retries (the caller has a deadline), each
        socket wait at most `timeout_s`. It asks for `Range: bytes=0-<count-1>`; a server that ignores the range
        and sends the whole file is read no further than `count` bytes before the connection is dropped."""
        url = self.resolve(url)
        # identity: the file's own bytes, not a compressed form of them (sniffing reads the container's magic).
        headers = {"Range": f"bytes=0-{count - 1}", "Accept-Encoding": "identity"}
        if self.wsgi_app is not None:
            response = self._send_in_process(
                self.wsgi_app, Outgoing("GET", url, None, None, None, headers, self.auth, None, None)
            )
            if response.status == RANGE_NOT_SATISFIABLE:
                return b""
            return raise_for_status(response, "GET", url).content[:count]
        try:
            # Redirects are followed (to storage, as MCS's links are): requests drops the Authorization header
            # when the host changes, and the Range header goes along.
            with self._session.get(url, headers=headers, auth=self.auth, timeout=timeout_s, stream=True) as raw:
                if raw.status_code == RANGE_NOT_SATISFIABLE:
                    return b""  # an empty file has no byte 0 (object storage answers so): nothing to sniff
                if raw.status_code >= 400:
                    raise TwilioHttpError(f"GET {url} -> {raw.status_code}", raw.status_code)
                return raw.raw.read(count, decode_content=False) or b""
        except requests.RequestException as exc:
            raise TwilioHttpError(f"GET {url}: {type(exc).__name__}: {exc}", transient=True) from exc

    def _delay(self, attempt: int, error: TwilioHttpError | None) -> float:
        return RetryPolicy(base_s=self.backoff_s).delay(attempt, error.retry_after if error else None)

    def _send(self, out: Outgoing) -> HttpResponse:
        if self.wsgi_app is not None:
            return self._send_in_process(self.wsgi_app, out)
        method, url, headers, stream_to, max_bytes = out.method, out.url, out.headers, out.stream_to, out.max_bytes
        with self._session.request(
            method,
            url,
            params=out.params,
            data=out.data,
            json=out.json_body,
            headers=headers,
            auth=out.auth,
            timeout=self.timeout_s,
            stream=stream_to is not None,
            allow_redirects=True,
        ) as raw:
            headers_out = dict(raw.headers)
            if stream_to is None or not (200 <= raw.status_code < 300):
                return HttpResponse(raw.status_code, headers_out, raw.content, url)
            declared = raw.headers.get("Content-Length")
            if max_bytes is not None and declared and declared.isdigit() and int(declared) > max_bytes:
                raise TooLarge(f"media is {format_bytes(int(declared))}, over the {format_bytes(max_bytes)} cap")
            written = 0
            for chunk in raw.iter_content(64 * 1024):
                written += len(chunk)
                if max_bytes is not None and written > max_bytes:
                    raise TooLarge(f"media is over the {format_bytes(max_bytes)} cap")
                stream_to.write(chunk)
            return HttpResponse(raw.status_code, headers_out, b"", url)

    @staticmethod
    def _send_in_process(wsgi_app: WSGIApplication, out: Outgoing) -> HttpResponse:
        method, url, params, data, json_body = out.method, out.url, out.params, out.data, out.json_body
        auth, stream_to, max_bytes = out.auth, out.stream_to, out.max_bytes
        parts = urlsplit(url)
        client = Client(wsgi_app)
        headers = dict(out.headers or {})
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        kwargs: dict[str, Any] = {"headers": headers, "query_string": params or parts.query or None}
        if json_body is not None:
            kwargs["json"] = json_body
        elif data is not None:
            kwargs["data"] = data
        raw = client.open(parts.path, method=method, base_url=f"{parts.scheme}://{parts.netloc}", **kwargs)
        body = raw.get_data()
        if stream_to is not None and 200 <= raw.status_code < 300:
            if max_bytes is not None and len(body) > max_bytes:
                raise TooLarge(f"media is over the {format_bytes(max_bytes)} cap")
            stream_to.write(body)
            body = b""
        return HttpResponse(raw.status_code, dict(raw.headers), body, url)


def _retry_after(response: HttpResponse) -> float | None:
    value = response.headers.get("Retry-After") or response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _error_from(response: HttpResponse, method: str, url: str, transient: bool = False) -> TwilioHttpError:
    code = None
    message = response.text[:300]
    try:
        body = response.json()
        if isinstance(body, dict):
            code = body.get("code")
            message = body.get("message") or message
    except ValueError:
        pass
    return TwilioHttpError(f"{method} {url} -> {response.status}: {message}", response.status, transient, code)


def raise_for_status(response: HttpResponse, method: str = "", url: str = "") -> HttpResponse:
    if response.status >= 400:
        raise _error_from(response, method, url or response.url, transient=response.status in TRANSIENT_STATUSES)
    return response


class TwilioPythonBridge(HttpClient):
    """Lets twilio-python's generated Conversations client ride on `TwilioHttp`."""

    def __init__(self, http: TwilioHttp) -> None:
        super().__init__(logger=log, is_async=False, timeout=http.timeout_s)
        self.http = http

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        retry = method.upper() == "GET"
        response = self.http.request(method, url, params=params, data=data, headers=headers, auth=auth, retry=retry)
        self.last_response = TwilioResponse(response.status, response.text, response.headers)
        return self.last_response
