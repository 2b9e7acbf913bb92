"""The load generator when wrk is not installed: closed-loop HTTP/1.1 keep-alive connections in asyncio, one
protocol object per connection, requests pre-built, so it spends a few tens of microseconds per request.
Latency = request written -> response fully read."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter


class Samples:
    def __init__(self):
        self.latencies: list[float] = []
        self.statuses: Counter = Counter()
        self.errors: Counter = Counter()
        self.elapsed = 0.0


class _Connection(asyncio.Protocol):
    def __init__(self, run: _Run):
        self.run = run
        self.transport = None
        self.buffer = bytearray()
        self.sent_at: float | None = None
        self.expected: int | None = None
        self.close_after = False
        self.status = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.send_next()

    def send_next(self) -> None:
        request = self.run.next_request()
        if request is None:
            self.transport.close()
            return
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.expected is None and not self._read_head():
            return
        if len(self.buffer) < self.expected:
            return
        latency = time.perf_counter() - self.sent_at
        self.sent_at = None
        del self.buffer[: self.expected]
        self.expected = None
        self.run.record(self.status, latency)
        if self.close_after:
            self.transport.close()
        else:
            self.send_next()

    def _read_head(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).decode("latin-1")
        self.status = int(head[9:12])
        length = re.search(r"(?im)^content-length:\s*(\d+)", head)
        if length is None:
            self.run.samples.errors["response without Content-Length"] += 1
            self.sent_at = None
            self.transport.close()
            return False
        self.close_after = re.search(r"(?im)^connection:\s*close", head) is not None
        self.expected = end + 4 + int(length.group(1))
        return True

    def connection_lost(self, exc) -> None:
        if self.sent_at is not None:
            self.run.samples.errors[f"connection lost: {type(exc).__name__ if exc else 'closed by server'}"] += 1
            self.sent_at = None
        self.run.connection_closed(self)


class _Run:
    def __init__(
        self,
        host: str,
        port: int,
        source,
        seconds: float,
        connections: int,
        timeout_s: float,
        stop: threading.Event | None,
    ):
        self.host, self.port, self.source, self.seconds = host, port, source, seconds
        self.connections, self.timeout_s, self.stop = connections, timeout_s, stop
        self.samples = Samples()
        self.loop = asyncio.get_event_loop()
        self.open: set[_Connection] = set()
        self.finished = self.loop.create_future()
        self.stopping = False

    def next_request(self) -> bytes | None:
        if self.stopping or time.perf_counter() >= self.deadline or (self.stop is not None and self.stop.is_set()):
            self.stopping = True
            return None
        return self.source.next()

    def record(self, status: int, latency: float) -> None:
        self.samples.statuses[status] += 1
        self.samples.latencies.append(latency)
        self.last_done = time.perf_counter()

    def connection_closed(self, connection: _Connection) -> None:
        self.open.discard(connection)
        if not self.stopping and time.perf_counter() < self.deadline and self.source.index < self.source.limit:
            self.loop.create_task(self.connect())  # the server closed a keep-alive connection: open another
        elif not self.open and not self.finished.done():
            self.finished.set_result(None)

    async def connect(self) -> None:
        try:
            _, protocol = await self.loop.create_connection(lambda: _Connection(self), self.host, self.port)
            self.open.add(protocol)
        except OSError as exc:
            self.samples.errors[f"connect: {type(exc).__name__}"] += 1
            if not self.open and not self.finished.done():
                self.finished.set_result(None)

    async def main(self) -> Samples:
        self.started = self.last_done = time.perf_counter()
        self.deadline = self.started + self.seconds
        await asyncio.gather(*(self.connect() for _ in range(self.connections)))
        try:
            await asyncio.wait_for(asyncio.shield(self.finished), self.seconds + self.timeout_s + 5)
        except TimeoutError:
            pass
        for connection in list(self.open):
            if connection.sent_at is not None:
                self.samples.errors["timeout"] += 1
                connection.sent_at = None
            connection.transport.abort()
        self.samples.elapsed = max(self.last_done - self.started, 1e-9)
        return self.samples


def run(
    host: str,
    port: int,
    source,
    seconds: float,
    connections: int,
    timeout_s: float,
    stop: threading.Event | None = None,
) -> Samples:
    """`connections` connections send `source.next()` requests until `seconds` pass, `stop` is set or the source
    runs dry (`source.index` reaching `source.limit`)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_Run(host, port, source, seconds, connections, timeout_s, stop).main())
    finally:
        loop.close()
