"""The gunicorn worker of the one-machine default (SQLite): gthread's threads, but a request reaches one only whole.

gthread hands a connection to a pool thread as soon as its first byte arrives, and the thread then reads the head
(and the app the body) blocking, with no total deadline: 300 clients sending a header line every 5 s held all 64
threads, and Twilio's webhooks waited behind them. Here the main loop reads every connection without blocking until
its request is complete, against the deadlines of slow_clients.py, and only then gives it to a thread, which
parses nothing from the socket: the head was parsed by gunicorn's own parser as soon as it was complete (so the
framing is the one gunicorn serves), the body waits in the connection's Inbox (memory, then a temporary file).

A client that misses its deadline gets 408 and its connection is closed by the main loop; it never held a thread.
What is refused before a thread: a head over HEAD_MAX_BYTES (431), a chunked body (411: Twilio and browsers send
Content-Length), anything gunicorn's parser refuses (400 and the like). A Content-Length over the largest body any
route takes (UPLOAD_MAX_BYTES) goes to the app unread, which answers its own 413 without reading it.
Closing is done by the main loop too, lingering without blocking (gthread blocks its loop for up to 2 s per close).
TLS and HTTP/2 are not served here (the platform's router terminates TLS): gunicorn refuses to start with them.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

from gunicorn import http, util
from gunicorn.errors import ConfigError
from gunicorn.http.body import Body, ChunkedReader, LengthReader
from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import TConn, ThreadWorker
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .slow_clients import HEAD_TIMEOUT_S, MEMORY_BYTES, Arrival, HeadTooLarge, Inbox

if TYPE_CHECKING:
    from flask import Flask
    from gunicorn.config import Config
    from gunicorn.glogging import Logger
    from gunicorn.http import Request, RequestParser
    from gunicorn.uwsgi.parser import UWSGIParser

# Below malloc's mmap threshold: every recv() allocates this much before shrinking to what arrived.
RECV_BYTES = 64 * 1024
# Deadlines are checked this often (besides gunicorn's loop waking at least once a second): a late client is cut
# within a second of its deadline, and a busy loop does not walk every waiting connection on every event.
SWEEP_INTERVAL_S = 0.5
# A closing connection is drained (so that the client reads our last answer rather than a reset) this long at most,
# and at most this many bytes.
CLOSE_LINGER_S = 2.0
CLOSE_DRAIN_BYTES = 64 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# The largest body a route takes unless its view says it takes uploads (`takes_uploads`, agent/api.py): a webhook's
# limit. Bodies wait here before any signature or token is checked, so every route may not make us store 100 MiB.
SMALL_BODY_MAX_BYTES = 1024 * 1024
# Body bytes on their way to disk (bodies over MEMORY_BYTES) that one process holds at once, as a multiple of the
# upload cap: past it, a new large body is answered 503 before a byte of it is stored.
SPOOL_BUDGET_UPLOADS = 2
NO_CHUNKED = "send the body with a Content-Length (chunked request bodies are not accepted)"


class Connection(TConn):
    """A client connection: its parser reads the connection's Inbox, never the socket."""

    parser: RequestParser | UWSGIParser  # never HTTP/2 (check_config)

    def __init__(self, cfg: Config, sock: socket.socket, client: Any, server: Any) -> None:
        super().__init__(cfg, sock, client, server)
        self.inbox = Inbox()
        self.parser = http.get_parser(cfg, self.inbox, client)
        self.initialized = True  # no TLS, no HTTP/2 sniffing (check_config)
        self.arrival: Arrival | None = None  # None: closing
        self.request: Request | None = None
        self.idle = False  # kept alive, waiting for the first byte of its next request
        self.deadline = 0.0
        self.drained = 0
        self.spooled = 0  # bytes of the process's spool budget this connection's body holds


class BufferedRequestWorker(ThreadWorker):
    @classmethod
    def check_config(cls, cfg: Config, log: Logger) -> None:
        super().check_config(cfg, log)
        if cfg.is_ssl or "h2" in cfg.http_protocols:
            raise ConfigError("webhook_app's web worker serves plain HTTP/1.1: terminate TLS and HTTP/2 in front")

    def init_process(self) -> None:
        self.waiting: set[Connection] = set()
        self.next_sweep = 0.0
        self.spooled = 0
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        # gunicorn.conf.py has this worker serve webhook_app's Flask app itself, which gunicorn types as any WSGI app.
        self.flask_app = cast("Flask", self.wsgi)
        # The app's largest body: the agent upload's cap, for the views that take uploads.
        self.max_upload: int = self.flask_app.config["UPLOAD_MAX_BYTES"]
        self.spool_budget = SPOOL_BUDGET_UPLOADS * self.max_upload
        self.routes = self.flask_app.url_map.bind("localhost")

    def body_limit(self, request: Request) -> int:
        """The largest body the request's route takes: the upload cap where its view takes uploads, else a webhook's."""
        try:
            endpoint, _ = self.routes.match(unquote(request.path or ""), method=request.method)
        except HTTPException:  # no such route (404/405 to come), or a redirect: the small limit
            return SMALL_BODY_MAX_BYTES
        view = self.flask_app.view_functions.get(endpoint)
        return self.max_upload if getattr(view, "takes_uploads", False) else SMALL_BODY_MAX_BYTES

    def accept(self, listener: socket.socket) -> None:
        try:
            sock, client = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = Connection(self.cfg, sock, client, listener.getsockname())
        self.await_request(conn, b"", time.monotonic() + HEAD_TIMEOUT_S)

    def await_request(self, conn: Connection, leftover: bytes, deadline: float) -> None:
        """Read the connection's next request in the main loop (`leftover`: its bytes read already)."""
        conn.sock.setblocking(False)
        conn.arrival, conn.request, conn.deadline = Arrival(conn.inbox, leftover), None, deadline
        self.waiting.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_readable, conn))
        if leftover:  # a pipelined request may be whole already
            self.advance(conn, b"")

    def on_readable(self, conn: Connection, _sock: socket.socket) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if conn.arrival is None:  # closing: drain until the client closes too
            conn.drained += len(data)
            if not data or conn.drained > CLOSE_DRAIN_BYTES:
                self.close(conn)
        elif not data:
            self.close(conn)  # the client is gone
        else:
            self.advance(conn, data)

    def advance(self, conn: Connection, data: bytes) -> None:
        arrival = conn.arrival
        if arrival is None:  # closing: on_readable drains instead
            return
        if conn.idle:
            conn.idle, conn.deadline = False, time.monotonic() + HEAD_TIMEOUT_S
        if arrival.body_left is None:
            try:
                if not arrival.add_head(data):
                    return
            except HeadTooLarge as e:
                return self.refuse(conn, 431, "Request Header Fields Too Large", str(e))
            if not self.parse_head(conn, arrival):
                return
        elif not arrival.add_body(data, time.monotonic()):
            conn.deadline = arrival.deadline
            return
        self.dispatch(conn)

    def parse_head(self, conn: Connection, arrival: Arrival) -> bool:
        """Parse the complete head with gunicorn's parser; True when the request is whole (no body, or all here)."""
        try:
            conn.request = request = next(conn.parser)
        except (StopIteration, NoMoreData):
            self.close(conn)
            return False
        # gunicorn's own refusals (400, 414, 431, 501...) in its words, written without blocking; anything else from
        # hostile bytes must not end the loop that serves every connection.
        except Exception as e:  # noqa: BLE001
            self.handle_error(None, conn.sock, conn.client, e)
            self.close_gracefully(conn)
            return False
        # gunicorn's parser gives every request a body: chunked, or of a length (Request.set_body_reader turns the
        # read-to-EOF reader of a request without Content-Length into a LengthReader of 0).
        reader = cast(LengthReader | ChunkedReader, cast(Body, request.body).reader)
        if isinstance(reader, ChunkedReader):
            self.refuse(conn, 411, "Length Required", NO_CHUNKED)
            return False
        if reader.length > self.body_limit(request):
            # The app answers (a 413 in its own words, before reading); the connection closes after it.
            conn.inbox.refusal = RequestEntityTooLarge()
            # The flag is gunicorn 27's; types-gunicorn (26.2, the newest stubs) does not know it.
            request._expected_100_continue = False  # type: ignore[attr-defined]  # the client must not send it
            return True
        if reader.length > MEMORY_BYTES and not self.reserve_spool(conn, reader.length):
            self.refuse(conn, 503, "Service Unavailable", "too many large uploads arriving at once; retry shortly")
            return False
        if not arrival.expect_body(reader.length, time.monotonic()):
            conn.deadline = arrival.deadline
            if request._expected_100_continue:  # type: ignore[attr-defined]  # as above
                # gunicorn would send this from the thread (http/wsgi.py); the client waits for it first.
                request._expected_100_continue = False  # type: ignore[attr-defined]  # as above
                self.send_nowait(conn, CONTINUE)
            return False
        return True

    def reserve_spool(self, conn: Connection, length: int) -> bool:
        if self.spooled + length > self.spool_budget:
            return False
        self.spooled += length
        conn.spooled = length
        return True

    def release_spool(self, conn: Connection) -> None:
        self.spooled -= conn.spooled
        conn.spooled = 0

    def dispatch(self, conn: Connection) -> None:
        """The request is whole: a pool thread serves it (ThreadWorker.handle_request writes the answer)."""
        self.stop_waiting(conn)
        conn.sock.setblocking(True)
        self.enqueue_req(conn)

    def handle(self, conn: TConn) -> bool:
        """In a pool thread: serve the parsed request; whether the connection stays open."""
        # accept() makes every connection of this worker, and dispatch() hands one over only once it is parsed.
        conn = cast(Connection, conn)
        try:
            return self._keepalive_after(conn, self.handle_request(cast("Request", conn.request), conn))
        except StopIteration as e:
            self.log.debug("Closing connection. %s", e)
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("Socket error processing request.")
        except Exception as e:  # noqa: BLE001 - gthread's rule: an answer (500), and the thread lives on
            self.handle_error(conn.request, conn.sock, conn.client, e)
        return False

    def _keepalive_after(self, conn: Connection, keepalive: bool) -> bool:
        # A refused body was never read: where the next request would start is unknown.
        # gunicorn 27's gthread has this hook; types-gunicorn (26.2, the newest stubs) does not know it.
        return conn.inbox.refusal is None and super()._keepalive_after(conn, keepalive)  # type: ignore[misc]

    def finish_request(self, conn: TConn, fs: Future[bool]) -> None:
        """Back in the main loop after a thread served the connection."""
        conn = cast(Connection, conn)  # as in handle()
        try:
            keepalive = not fs.cancelled() and fs.result()
        except Exception:  # noqa: BLE001 - handle() logged it; the connection just closes
            keepalive = False
        self.release_spool(conn)  # the request is answered: its body is no longer kept
        if not keepalive:
            return self.close_gracefully(conn)
        leftover = conn.parser.unreader.take_buffered() + conn.inbox.take_all()
        now = time.monotonic()
        linger = self.cfg.keepalive if self.alive else min(self.cfg.keepalive, CLOSE_LINGER_S)
        conn.idle = not leftover
        self.await_request(conn, leftover, now + (linger if conn.idle else HEAD_TIMEOUT_S))

    def refuse(self, conn: Connection, status: int, reason: str, message: str) -> None:
        self.log.debug("Refused %s %s from %s: %s", status, reason, conn.client, message)
        self.send_nowait(conn, util.write_error, status, reason, message)
        self.close_gracefully(conn)

    def send_nowait(self, conn: Connection, data: bytes | Callable[..., None], *args: object) -> None:
        """Write a short answer only if the socket takes it now (a client that reads nothing cannot stall us)."""
        conn.sock.setblocking(False)
        try:
            data(conn.sock, *args) if callable(data) else conn.sock.send(data)
        except OSError:
            pass

    def close_gracefully(self, conn: Connection) -> None:
        """Send FIN, then drain what the client still sends, from the main loop, for CLOSE_LINGER_S at most."""
        self.stop_waiting(conn)
        self.release_spool(conn)
        conn.inbox.close()
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return self.close(conn)
        conn.sock.setblocking(False)
        conn.arrival, conn.drained, conn.deadline = None, 0, time.monotonic() + CLOSE_LINGER_S
        self.waiting.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_readable, conn))

    def stop_waiting(self, conn: Connection) -> None:
        if conn in self.waiting:
            self.waiting.discard(conn)
            self.poller.unregister(conn.sock)

    def close(self, conn: Connection) -> None:
        self.stop_waiting(conn)
        self.release_spool(conn)
        conn.inbox.close()
        self.nr_conns -= 1
        util.close(conn.sock)

    def murder_pending(self) -> None:
        """Every loop turn (gthread's hook): end the connections past their deadline, at most every SWEEP_INTERVAL_S."""
        now = time.monotonic()
        if now < self.next_sweep:
            return
        self.next_sweep = now + SWEEP_INTERVAL_S
        for conn in [conn for conn in self.waiting if conn.deadline <= now]:
            if conn.arrival is None or not conn.arrival.started:
                self.close(conn)  # done lingering, or a connection that never sent a byte: nothing to answer
            else:
                self.refuse(conn, 408, "Request Timeout", "the request did not arrive in time")

    def _cap_keepalive(self, deadline: float) -> None:
        # Stopping: kept-alive connections with nothing under way close by `deadline` (gthread's rule).
        for conn in self.waiting:
            if conn.idle:
                conn.deadline = min(conn.deadline, deadline)
