"""How long a client may take to send a request, and where its bytes wait until the request is whole.

A client that sends its request slowly (a header line every few seconds, or a body byte every few seconds) must not
hold what answers Twilio: a web thread (gthread, the SQLite default) or, for ever, a connection slot. So a request's
head has a total deadline, and its body a minimum average rate after a grace period: the client's n-th body byte is
due BODY_GRACE_S + n / BODY_MIN_RATE seconds after the head. A 100 MB agent upload on a slow mobile link (a few
hundred kbit/s) is on time; a trickle is late within seconds of its grace. Both web workers apply these rules:
gunicorn_worker.py before a request reaches a thread, headers.SlowBodyGuard while the app reads a body.

Nothing here touches a socket, so the buffering rules are tested without one (tests/web/test_slow_clients.py).
"""

from __future__ import annotations

import tempfile
from collections import deque
from typing import IO, cast

# The head (request line and headers) must be complete this long after the connection opened, or after the first
# byte of a kept-alive connection's next request. Twilio's and browsers' heads arrive in one packet.
HEAD_TIMEOUT_S = 10.0
# A head longer than this is refused (431). gunicorn's own limits (4 KiB request line, 8 KiB per header) still
# apply; this bounds what one connection can make the process hold before gunicorn ever parses it.
HEAD_MAX_BYTES = 32 * 1024
# The body: BODY_GRACE_S for its first bytes, then at least BODY_MIN_RATE bytes per second on average (64 kbit/s,
# slower than any mobile uplink an agent records on; a 100 MiB upload may take 3.6 hours at that rate).
BODY_GRACE_S = 10.0
BODY_MIN_RATE = 8 * 1024
# And never this long without a byte, however fast the body started (gevent's SlowBodyGuard: the socket's timeout).
BODY_IDLE_S = 10.0
# Bytes a connection keeps in memory before its body goes to a temporary file: a webhook (1-3 KB) stays in memory,
# and a thousand slow uploads cost a thousand small buffers, not their size.
MEMORY_BYTES = 32 * 1024
# How much of a spooled body the parser is handed at once.
FILE_READ_BYTES = 1024 * 1024
HEAD_END = b"\r\n\r\n"


class HeadTooLarge(Exception):
    """The head has no end within HEAD_MAX_BYTES."""


def due_by(started: float, nbytes: int) -> float:
    """When the client's `nbytes`-th body byte is due, for a body whose head was complete at `started`."""
    return started + BODY_GRACE_S + nbytes / BODY_MIN_RATE


class Inbox:
    """A connection's bytes that no parser has taken yet, in arrival order: in memory up to MEMORY_BYTES, the
    rest in an unnamed temporary file (gone with the process, however it ends).

    gunicorn's parser reads it as an iterable: each next() is the next piece, b"" when nothing is left (never
    StopIteration, which would end the connection's parser for good). A refusal, once set, is raised when the
    reader wants more than the inbox holds: the app then answers it (e.g. 413) instead of seeing a short body.
    No __len__: gunicorn's reader asks `if not self.iter`, and an empty inbox must not read as no inbox at all.
    """

    def __init__(self) -> None:
        self._pieces: deque[bytes] = deque()
        self._in_memory = 0
        self._file: IO[bytes] | None = None
        self._file_read = 0
        self._file_size = 0
        self.refusal: Exception | None = None

    def append(self, data: bytes) -> None:
        if not data:
            return
        if self._file is None and self._in_memory + len(data) <= MEMORY_BYTES:
            self._pieces.append(data)
            self._in_memory += len(data)
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile()
        self._file.seek(self._file_size)
        self._file.write(data)
        self._file_size += len(data)

    def pending(self) -> int:
        """Bytes not yet taken."""
        return self._in_memory + self._file_size - self._file_read

    def __iter__(self) -> Inbox:
        return self

    def __next__(self) -> bytes:
        if self._pieces:
            piece = self._pieces.popleft()
            self._in_memory -= len(piece)
            return piece
        if self._file is not None:
            self._file.seek(self._file_read)
            piece = self._file.read(FILE_READ_BYTES)
            self._file_read += len(piece)
            if self._file_read >= self._file_size:
                self.close()  # appends after this start in memory again, still after everything read
            return piece
        if self.refusal is not None:
            raise self.refusal
        return b""

    def take_all(self) -> bytes:
        """Everything left (a pipelined next request), emptying the inbox."""
        return b"".join(iter(self.__next__, b"")) if self.refusal is None else b""

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._file_read, self._file_size = None, 0, 0


class Arrival:
    """One request as it arrives: its head until the blank line, then `body_left` more bytes into the inbox."""

    def __init__(self, inbox: Inbox, leftover: bytes = b"") -> None:
        self.inbox = inbox
        self.head = leftover  # bytes of the head so far (a pipelined request's, or what a keep-alive left)
        self.searched = 0  # where the head's end may start, as far as the bytes so far show
        self.rest = b""  # bytes after the head, until the body is expected
        self.body_left: int | None = None  # unknown until the head is parsed
        self.body_started = 0.0
        self.last_byte_at = 0.0
        self.received = 0

    def add_head(self, data: bytes) -> bool:
        """Add bytes to the head; True once it is complete (it is then in the inbox, what followed it in `rest`)."""
        self.head += data
        end = self.head.find(HEAD_END, self.searched)
        if end < 0:
            self.searched = max(0, len(self.head) - len(HEAD_END) + 1)  # the end may straddle the next piece
            if len(self.head) > HEAD_MAX_BYTES:
                raise HeadTooLarge(f"no end of the request headers within {HEAD_MAX_BYTES} bytes")
            return False
        end += len(HEAD_END)
        if end > HEAD_MAX_BYTES:
            raise HeadTooLarge(f"request headers longer than {HEAD_MAX_BYTES} bytes")
        self.inbox.append(self.head[:end])
        self.head, self.rest = b"", self.head[end:]
        return True

    def expect_body(self, length: int, now: float) -> bool:
        """The parsed head announced `length` body bytes; True when they are all here already."""
        self.body_started = now
        self.body_left = length
        rest, self.rest = self.rest, b""
        return self.add_body(rest, now)

    def add_body(self, data: bytes, now: float) -> bool:
        """Add body bytes (or what follows the body: a pipelined request, kept for later); True once complete."""
        self.last_byte_at = now
        self.inbox.append(data)
        self.received += len(data)
        # Body bytes come only after expect_body(), which set the length the head announced.
        self.body_left = cast(int, self.body_left) - len(data)
        return self.body_left <= 0

    @property
    def started(self) -> bool:
        return bool(self.head) or self.body_left is not None

    @property
    def deadline(self) -> float:
        """When the body is late: its next byte was due, by the average rate or by the longest pause."""
        return min(due_by(self.body_started, self.received), self.last_byte_at + BODY_IDLE_S)
