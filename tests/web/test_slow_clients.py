"""Slow clients (issue 23, section 3): 300 clients trickling their headers and 300 trickling their bodies must not keep
Twilio's webhooks waiting, on either default (SQLite + gunicorn_worker.py's threads, PostgreSQL + gevent), and each is
cut at its deadline. Below them, the buffering rules of slow_clients.py, without a socket."""

from __future__ import annotations

import os
import resource
import selectors
import socket
import sys
import time

import pytest
import requests
from gunicorn.http.unreader import IterUnreader
from werkzeug.exceptions import RequestEntityTooLarge

from tests.helpers.processes import GUNICORN_CONF, Processes, free_port, service_env
from tests.helpers.service import migrate
from tests.helpers.webhooks import POST_EVENT, load_fixture
from webhook_app.sandbox import Sandbox
from webhook_app.web.slow_clients import (
    BODY_GRACE_S,
    BODY_IDLE_S,
    BODY_MIN_RATE,
    HEAD_MAX_BYTES,
    HEAD_TIMEOUT_S,
    MEMORY_BYTES,
    Arrival,
    HeadTooLarge,
    Inbox,
    due_by,
)

SLOW_HEADERS = SLOW_BODIES = 300
TRICKLE_EVERY_S = 2.0  # one header line, or one body byte, per client this often: never a 10 s gap
WEBHOOK_EVERY_S = 0.5
# Twilio gives up after 5 s; a webhook must be answered well before, whatever the slow clients do.
WEBHOOK_LIMIT_S = 2.0
SLOW_BODY_LENGTH = 1000
LATE_SLACK_S = 4.0  # deadlines are swept every second or so, and 600 sockets are opened in turn


def test_a_head_is_whole_at_its_blank_line_even_across_pieces():
    arrival = Arrival(Inbox())
    assert not arrival.add_head(b"GET / HTTP/1.1\r\nHost: x\r")
    assert not arrival.add_head(b"\n\r")
    assert arrival.add_head(b"\nbody")  # the blank line straddled three pieces
    assert arrival.inbox.take_all() == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" and arrival.rest == b"body"


def test_a_pipelined_request_left_over_is_found_whole():
    arrival = Arrival(Inbox(), b"GET / HTTP/1.1\r\n\r\nGET /next")
    assert arrival.add_head(b"") and arrival.rest == b"GET /next"


def test_a_head_without_end_is_refused_at_its_bound():
    arrival = Arrival(Inbox())
    with pytest.raises(HeadTooLarge):
        arrival.add_head(b"GET / HTTP/1.1\r\nX: " + b"a" * HEAD_MAX_BYTES)


def test_the_body_is_whole_at_its_length_and_what_follows_it_is_kept():
    arrival = Arrival(Inbox())
    arrival.add_head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")
    assert not arrival.expect_body(5, now=100.0)
    assert due_by(100.0, 2) == 100.0 + BODY_GRACE_S + 2 / BODY_MIN_RATE
    assert arrival.deadline == min(due_by(100.0, 2), 100.0 + BODY_IDLE_S)
    assert arrival.add_body(b"cdeGET /next", now=101.0)
    assert arrival.inbox.take_all().endswith(b"\r\n\r\nabcdeGET /next")


def test_a_large_body_waits_in_a_file_and_comes_back_in_order():
    inbox = Inbox()
    pieces = [bytes([n]) * (MEMORY_BYTES // 3) for n in range(10)]
    for piece in pieces:
        inbox.append(piece)
    assert inbox._in_memory <= MEMORY_BYTES and inbox._file is not None
    assert inbox.pending() == sum(map(len, pieces))
    assert inbox.take_all() == b"".join(pieces) and inbox.pending() == 0 and inbox._file is None


def test_a_refused_body_raises_instead_of_ending_short():
    inbox = Inbox()
    inbox.append(b"part")
    inbox.refusal = ValueError("too large")
    assert next(inbox) == b"part"
    with pytest.raises(ValueError):
        next(inbox)


def test_a_refusal_reaches_the_app_through_gunicorns_reader():
    """gunicorn's reader asks `if not iterable` before each read: an empty inbox must still raise its refusal."""
    inbox = Inbox()
    inbox.refusal = RequestEntityTooLarge()
    with pytest.raises(RequestEntityTooLarge):
        IterUnreader(inbox).read(10)


def test_a_body_that_stops_after_a_fast_start_is_late_after_the_longest_pause():
    arrival = Arrival(Inbox())
    arrival.expect_body(10_000_000, now=0.0)
    arrival.add_body(b"x" * 5_000_000, now=1.0)  # ahead of the average rate by ten minutes
    assert arrival.deadline == 1.0 + BODY_IDLE_S


def send_head(port: int, path: str, length: int, method: str = "POST") -> bytes:
    """A head announcing `length` body bytes, no body: what comes back before a byte of it is sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        sock.sendall(f"{head}Content-Length: {length}\r\n\r\n".encode())
        return sock.recv(4096)


@pytest.mark.slow
def test_only_a_view_that_takes_uploads_may_be_sent_more_than_a_webhook(tmp_path):
    """Bodies wait in the worker before any signature or token check: a route that takes none gets 413 at once, an
    upload route its own cap, and the bodies stored at once are bounded per process (503 past the budget)."""
    database_url = "sqlite:///" + str(tmp_path / "one-machine.db")
    migrate(database_url)
    processes, base_url = serve(tmp_path, database_url, WEB_CONCURRENCY="1")  # the budget is per process
    port = int(base_url.rsplit(":", 1)[1])
    upload = "/api/v1/conversations/CH" + "0" * 32 + "/audio"
    try:
        # Answered at once (the app refuses before it reads: no signature, no token), never stored and waited for.
        for method, path, length in [
            ("POST", POST_EVENT, 50 << 20),
            ("PUT", "/api/v1/admin/settings/sms", 2 << 20),
            ("POST", upload, 200 << 20),  # over UPLOAD_MAX_BYTES
        ]:
            answer = send_head(port, path, length, method)
            assert answer[:12] in (b"HTTP/1.1 401", b"HTTP/1.1 403", b"HTTP/1.1 413"), (path, answer[:100])
        # Two uploads of 100 MiB on their way fill the process's spool budget: a third is 503 before it is stored.
        waiting = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        for sock in waiting:
            sock.sendall(f"POST {upload} HTTP/1.1\r\nHost: x\r\nContent-Length: {100 * 1024 * 1024}\r\n\r\n".encode())
        time.sleep(0.5)
        assert send_head(port, upload, 100 * 1024 * 1024).startswith(b"HTTP/1.1 503")
        for sock in waiting:
            sock.close()
    finally:
        processes.stop()


def raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def serve(tmp_path, database_url: str, **config: str) -> tuple[Processes, str]:
    """gunicorn as the Procfile runs it (the project's gunicorn.conf.py picks the worker from DATABASE_URL)."""
    sandbox_db = str(tmp_path / "sandbox.db")
    env = service_env(
        DATABASE_URL=database_url, SANDBOX_DB=sandbox_db, SECRET_KEY="test-secret", LOG_FORMAT="text", **config
    )
    port = free_port()
    processes = Processes(env, tmp_path)
    argv = [sys.executable, "-m", "gunicorn", "webhook_app:create_app()", "-c", GUNICORN_CONF]
    processes.start("web", [*argv, "--bind", f"127.0.0.1:{port}", "--access-logfile", "/dev/null"])
    base_url = f"http://127.0.0.1:{port}"
    processes.wait_for_http(base_url + "/healthz", "gunicorn to answer /healthz")
    return processes, base_url


class SlowClient:
    def __init__(self, port: int, first: bytes, trickle: bytes):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.opened = time.monotonic()
        self.sock.sendall(first)
        self.trickle = trickle
        self.ended: float | None = None
        self.answer = b""

    def send_more(self) -> None:
        try:
            self.sock.send(self.trickle)
        except OSError:
            self.end(b"")

    def end(self, answer: bytes) -> None:
        if self.ended is None:
            self.ended, self.answer = time.monotonic(), answer


def slow_clients(port: int) -> list[SlowClient]:
    head = f"POST {POST_EVENT} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    body_head = (
        head
        + (
            f"X-Twilio-Signature: c2lnbmF0dXJl\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {SLOW_BODY_LENGTH}\r\n\r\nA"
        ).encode()
    )
    clients = []  # heads and bodies in turn
    for _ in range(SLOW_HEADERS):
        clients.append(SlowClient(port, head, b"X-Slow: a\r\n"))
        clients.append(SlowClient(port, body_head, b"a"))
    return clients


def signed_webhook(sandbox: Sandbox, url: str, number: int) -> float:
    params = load_fixture(
        "onMessageAdded__text_only",
        account_sid=sandbox.account_sid,
        conversation_sid=f"CH{number:032d}",
        message_sid=f"IM{number:032d}",
        chat_service_sid=sandbox.chat_service_sid,
        participant_sid="MB" + "2" * 32,
    )
    started = time.monotonic()
    answer = requests.post(url, data=params, headers={"X-Twilio-Signature": sandbox.sign(url, params)}, timeout=5)
    assert answer.status_code == 200, answer.text
    return time.monotonic() - started


def trickle_and_post(clients: list[SlowClient], sandbox: Sandbox, url: str, until: float) -> list[float]:
    """Keep every slow client trickling, post a signed webhook every WEBHOOK_EVERY_S, and note when (and how)
    the server ends each slow client, until `until` or until all are ended."""
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client.sock, selectors.EVENT_READ, client)
    latencies: list[float] = []
    next_trickle = next_webhook = time.monotonic()
    while time.monotonic() < until and any(client.ended is None for client in clients):
        now = time.monotonic()
        if now >= next_trickle:
            for client in clients:
                if client.ended is None:
                    client.send_more()
            next_trickle = now + TRICKLE_EVERY_S
        if now >= next_webhook:
            latencies.append(signed_webhook(sandbox, url, len(latencies)))
            next_webhook = time.monotonic() + WEBHOOK_EVERY_S
        for key, _ in selector.select(timeout=0.05):
            try:
                answer = key.data.sock.recv(4096)
            except OSError:
                answer = b""
            key.data.end(answer)
            selector.unregister(key.fileobj)
    selector.close()
    return latencies


def check_slow_clients_and_webhooks(tmp_path, database_url: str, head_deadline_s: float, head_answer: bytes):
    raise_file_limit(4 * (SLOW_HEADERS + SLOW_BODIES) + 256)  # both ends of each, when the server runs here
    sandbox = Sandbox(str(tmp_path / "sandbox.db"))
    processes, base_url = serve(tmp_path, database_url)
    clients: list[SlowClient] = []
    try:
        clients = slow_clients(int(base_url.rsplit(":", 1)[1]))
        body_deadline = due_by(0, SLOW_BODY_LENGTH)  # the whole body's, at the latest
        until = time.monotonic() + max(head_deadline_s, body_deadline) + LATE_SLACK_S
        latencies = trickle_and_post(clients, sandbox, base_url + POST_EVENT, until)
        processes.check_alive()
    finally:
        for client in clients:
            client.sock.close()
        processes.stop()

    heads, bodies = clients[0::2], clients[1::2]
    print(
        f"\n{database_url.split(':')[0]}: {len(latencies)} webhooks beside {len(heads)} slow heads and {len(bodies)}"
        f" slow bodies: max {max(latencies) * 1000:.0f} ms, median {sorted(latencies)[len(latencies) // 2] * 1000:.0f}"
        f" ms; slow heads ended after {max(c.ended - c.opened for c in heads if c.ended):.1f} s at most,"
        f" slow bodies after {max(c.ended - c.opened for c in bodies if c.ended):.1f} s at most"
    )
    assert max(latencies) < WEBHOOK_LIMIT_S, latencies
    for group, deadline, answer in ((heads, head_deadline_s, head_answer), (bodies, BODY_GRACE_S, b"HTTP/1.1 408")):
        late = [client for client in group if client.ended is None or client.ended - client.opened > deadline + 4]
        assert not late, f"{len(late)} slow clients still open after their deadline"
        early = [client for client in group if client.ended - client.opened < deadline - 1]
        assert not early, f"{len(early)} slow clients cut before their deadline"
        assert all(client.answer.startswith(answer) for client in group), {client.answer[:40] for client in group}


@pytest.mark.slow
def test_slow_clients_leave_webhooks_answered_on_sqlite(tmp_path):
    """SQLite, gthread's threads (gunicorn_worker.py): each slow client gets a 408 at its deadline, never a thread."""
    database_url = "sqlite:///" + str(tmp_path / "one-machine.db")
    migrate(database_url)
    check_slow_clients_and_webhooks(tmp_path, database_url, HEAD_TIMEOUT_S, b"HTTP/1.1 408")


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"), reason="needs TEST_DATABASE_URL (PostgreSQL)"
)
def test_slow_clients_leave_webhooks_answered_on_postgresql_with_gevent(tmp_path, database_url):
    """PostgreSQL, gevent: a slow head is dropped at gunicorn's keep-alive timeout (2 s, a gevent.Timeout around
    the head's parse), a slow body gets headers.SlowBodyGuard's 408."""
    check_slow_clients_and_webhooks(tmp_path, database_url, 2.0, b"")
