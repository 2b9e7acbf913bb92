"""Response headers that keep customer bytes and other sites out of the service's origin.

Customer audio is served from this origin (`/media/<token>`), beside the admin page whose session can change
settings. A file that a browser could be talked into rendering as HTML would run script as the signed-in admin,
so media answers carry a type taken from the bytes (never the customer's label), `nosniff`, and a policy that runs
nothing; the pages get a policy that runs only our own scripts and that no other site can frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import RequestTimeout
from werkzeug.wrappers import Response as BaseResponse

from ..audio.detect import sniff, sniff_file
from ..runtime.greenlets import is_gevent_process
from .slow_clients import due_by

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from gevent import Timeout

# Containers a browser's <audio> may play, by what their bytes are (audio/detect.py's sniff) -> the type we serve.
PLAYABLE_TYPES = {
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "webm": "audio/webm",
    "mp4": "audio/mp4",
    "3gp": "audio/3gpp",
    "amr": "audio/amr",
    "amr-wb": "audio/amr-wb",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "aac": "audio/aac",
    "caf": "audio/x-caf",
}
DOWNLOAD_TYPE = "application/octet-stream"
# `sandbox` with no allowances: even a document rendered from these bytes gets a unique origin and no script.
MEDIA_POLICY = "default-src 'none'; sandbox; frame-ancestors 'none'"
PAGE_PATH_PREFIXES = ("/admin", "/agent")
# A client that stops sending its body for this long loses the connection (besides the body's total deadline,
# slow_clients.py). Twilio's webhooks and browsers' uploads stream without pauses.
BODY_IDLE_TIMEOUT_S = 10.0


def media_type(head: bytes) -> str:
    """What to serve stored bytes as: an audio type when they are a container we know, else a download."""
    return PLAYABLE_TYPES.get(sniff(head) or "", DOWNLOAD_TYPE)


def media_type_of_file(path: str) -> str:
    return PLAYABLE_TYPES.get(sniff_file(path) or "", DOWNLOAD_TYPE)


def allowed_media_type(content_type: str | None) -> str:
    """A stored label passes only when it is one of the audio types we would have sniffed ourselves."""
    label = (content_type or "").split(";", 1)[0].strip().lower()
    return label if label in PLAYABLE_TYPES.values() else DOWNLOAD_TYPE


def media_headers(response: BaseResponse, content_type: str, name: str) -> BaseResponse:
    """Every /media answer: the type we decided, no sniffing, a policy that runs nothing, and anything that is
    not audio as a download."""
    response.headers["Content-Type"] = content_type
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = MEDIA_POLICY
    playable = content_type != DOWNLOAD_TYPE
    extension = next((kind for kind, served in PLAYABLE_TYPES.items() if served == content_type), "bin")
    response.headers["Content-Disposition"] = f'{"inline" if playable else "attachment"}; filename="{name}.{extension}"'
    return response


def _page_policy() -> str:
    media_sources = ["'self'", "blob:"]  # blob: is the record panel's preview of the agent's own take
    public_s3 = current_app.config.get("S3_PUBLIC_ENDPOINT_URL") or current_app.config.get("S3_ENDPOINT_URL")
    if public_s3:
        parts = urlsplit(public_s3)
        media_sources.append(f"{parts.scheme}://{parts.netloc}")
    elif current_app.config.get("MEDIA_STORE") == "s3":
        media_sources.append("https://*.amazonaws.com")  # playback redirects to presigned AWS URLs
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"media-src {' '.join(media_sources)}; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


def _page_headers(response: Response) -> Response:
    if request.path.startswith(PAGE_PATH_PREFIXES) and response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", _page_policy())
        response.headers.setdefault("X-Frame-Options", "DENY")  # for browsers without frame-ancestors
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


class BodyStream(Protocol):
    """A server's request body (`wsgi.input`) as gunicorn's and Werkzeug's are: a size of None reads to the end."""

    def read(self, size: int | None = ..., /) -> bytes: ...

    def readline(self, size: int | None = ..., /) -> bytes: ...


class _TimedInput:
    """The request body stream, against the body's deadlines (slow_clients.py): each read must finish by the time
    the client's last byte of it is due, and, on a worker without greenlets, a single wait on the socket ends after
    BODY_IDLE_TIMEOUT_S. Either way the app sees a 408."""

    def __init__(self, stream: BodyStream, length: int | None, gevent_timeout: type[Timeout] | None) -> None:
        self._stream = stream
        self._length = length
        self._timeout = gevent_timeout
        self._started = time.monotonic()
        self._received = 0

    def _guarded(self, method: Callable[[int | None], bytes], size: int | None = -1) -> bytes:
        # This read needs `size` bytes, never more than the announced body has left (all of them when no size).
        left = None if self._length is None else max(self._length - self._received, 0)
        if size is None or size < 0:
            wanted = left or 0
        else:
            wanted = size if left is None else min(size, left)
        remaining = due_by(self._started, self._received + wanted) - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            if self._timeout is None:
                data = method(size)
            else:
                # A greenlet's read may take many recv()s, each quick: only a timer bounds their total.
                with self._timeout(remaining, TimeoutError):
                    data = method(size)
        except TimeoutError:
            raise RequestTimeout("the request body did not arrive in time") from None
        self._received += len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        return self._guarded(self._stream.read, size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._guarded(self._stream.readline, size)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


class SlowBodyGuard:
    """WSGI middleware: under gunicorn, the request body must keep to its deadlines (_TimedInput).

    gunicorn resets the socket to blocking (no timeout) when it takes the connection back after the response. On the
    one-machine default (web/gunicorn_worker.py) the body is whole before the app runs, so nothing here ever waits.
    """

    def __init__(self, wsgi_app: WSGIApplication) -> None:
        self.wsgi_app = wsgi_app
        self.gevent_timeout: type[Timeout] | None = None
        if is_gevent_process():  # gunicorn's gevent worker patches before it loads the app
            from gevent import Timeout

            self.gevent_timeout = Timeout

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        client = environ.get("gunicorn.socket")
        if client is not None:
            client.settimeout(BODY_IDLE_TIMEOUT_S)
            length = environ.get("CONTENT_LENGTH")
            length = int(length) if length and length.isdigit() else None
            environ["wsgi.input"] = _TimedInput(environ["wsgi.input"], length, self.gevent_timeout)
        return self.wsgi_app(environ, start_response)


def init_app(app: Flask) -> None:
    app.after_request(_page_headers)
    # Flask's documented way to wrap its WSGI app in middleware, though Flask types wsgi_app as a method.
    app.wsgi_app = SlowBodyGuard(app.wsgi_app)  # type: ignore[method-assign]
