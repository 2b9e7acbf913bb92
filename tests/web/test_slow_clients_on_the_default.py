"""Slow clients against the one-machine default (gunicorn.conf.py on SQLite, a real gunicorn): clients that stall
their bodies do not keep Twilio's webhooks from being answered."""

import os
import socket
import sys

import pytest
import requests

from tests.helpers.processes import SERVICE_VARIABLES, Processes, free_port
from tests.helpers.service import migrate
from tests.helpers.webhooks import POST_EVENT, load_fixture
from webhook_app.sandbox import Sandbox
from webhook_app.web.headers import BODY_IDLE_TIMEOUT_S

SLOW_CLIENTS = 50


@pytest.mark.slow
def test_slow_clients_leave_webhooks_answered_on_the_one_machine_default(tmp_path):
    """gunicorn as the Procfile runs it on SQLite (gthread): fifty clients that announce a body and stall must not
    keep Twilio's webhooks waiting, and each stalled body ends in a 408 instead of holding a thread for good."""
    database_url = "sqlite:///" + str(tmp_path / "one-machine.db")
    migrate(database_url)
    sandbox = Sandbox(str(tmp_path / "sandbox.db"))
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
    env.update(
        DATABASE_URL=database_url,
        SANDBOX_DB=str(tmp_path / "sandbox.db"),
        SECRET_KEY="test-secret",
        LOG_LEVEL="WARNING",
        LOG_FORMAT="text",
    )
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    processes = Processes(env, tmp_path)
    stalled: list[socket.socket] = []
    try:
        processes.start(
            "web", [sys.executable, "-m", "gunicorn", "webhook_app:create_app()", "--bind", f"127.0.0.1:{port}"]
        )
        processes.wait_for_http(base_url + "/healthz", "gunicorn to answer /healthz")
        for _ in range(SLOW_CLIENTS):
            client = socket.create_connection(("127.0.0.1", port))
            client.sendall(
                b"POST " + POST_EVENT.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"X-Twilio-Signature: c2lnbmF0dXJl\r\n"  # signed: the body is read to check it
                b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nAc"
            )
            stalled.append(client)

        url = base_url + POST_EVENT
        for number in range(10):
            params = load_fixture(
                "onMessageAdded__text_only",
                account_sid=sandbox.account_sid,
                conversation_sid="CH" + "0" * 31 + str(number),
                message_sid="IM" + "1" * 32,
                chat_service_sid=sandbox.chat_service_sid,
                participant_sid="MB" + "2" * 32,
            )
            # Twilio gives up after 5 s; before the fix every one of these waited behind the stalled bodies.
            answer = requests.post(
                url, data=params, headers={"X-Twilio-Signature": sandbox.sign(url, params)}, timeout=5
            )
            assert answer.status_code == 200, answer.text

        stalled[0].settimeout(BODY_IDLE_TIMEOUT_S + 15)
        status_line = stalled[0].recv(4096).split(b"\r\n", 1)[0]
        assert b" 408 " in status_line, status_line
        processes.check_alive()
    finally:
        for client in stalled:
            client.close()
        processes.stop()
