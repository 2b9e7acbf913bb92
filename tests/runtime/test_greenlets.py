"""psycopg's wait on a gevent web process (webhook_app/runtime/greenlets.py), against the real PostgreSQL.

gevent patches a whole process, so each check runs in a child Python that patches itself first, as gunicorn's
gevent worker does, and reports what it saw as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import psycopg
import pytest

from tests.helpers.processes import ROOT

pytestmark = pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="needs TEST_DATABASE_URL")

PRELUDE = """
from gevent import monkey
monkey.patch_all()
import json, sys, time
import gevent, psycopg
from psycopg import errors, generators, waiting
from webhook_app.config import normalize_database_url
from webhook_app.runtime.greenlets import install_gevent_wait, is_gevent_process, wait_gevent
URL = normalize_database_url(sys.argv[1]).replace("postgresql+psycopg://", "postgresql://")
"""


def run_patched(body: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body), os.environ["TEST_DATABASE_URL"]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_create_app_installs_it_only_in_a_gevent_process():
    from webhook_app.runtime.greenlets import is_gevent_process, wait_gevent

    assert not is_gevent_process() and psycopg.waiting.wait is not wait_gevent  # pytest: threads, no gevent
    seen = run_patched("""
        before = waiting.wait is wait_gevent
        from webhook_app import create_app
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "x", "TESTING": True})
        print(json.dumps({"gevent": is_gevent_process(), "before": before, "after": waiting.wait is wait_gevent}))
    """)
    assert seen == {"gevent": True, "before": False, "after": True}


def test_queries_of_several_greenlets_overlap_and_each_gets_its_own_answer():
    seen = run_patched("""
        install_gevent_wait()
        spans = {}

        def query(number):
            with psycopg.connect(URL, autocommit=True) as connection:
                started = time.monotonic()
                value = connection.execute("SELECT %s::int * 10 FROM pg_sleep(0.3)", (number,)).fetchone()[0]
                spans[number] = (started, time.monotonic(), value)

        gevent.joinall([gevent.spawn(query, n) for n in range(8)], raise_error=True)
        print(json.dumps({"values": [spans[n][2] for n in range(8)],
                          "last_start": max(s for s, _, _ in spans.values()),
                          "first_end": min(e for _, e, _ in spans.values())}))
    """)
    assert seen["values"] == [n * 10 for n in range(8)]
    # Cooperative: every query was under way before the first one came back. A wait that blocked the process
    # would run them one after the other.
    assert seen["last_start"] < seen["first_end"]


def test_a_timeout_raises_psycopgs_wait_timeout_and_a_lost_backend_an_operational_error():
    seen = run_patched("""
        install_gevent_wait()
        outcome = {}
        connection = psycopg.connect(URL, autocommit=True)
        connection.pgconn.send_query(b"SELECT pg_sleep(2)")
        try:
            wait_gevent(generators.fetch_many(connection.pgconn), connection.pgconn.socket, timeout=0.2)
            outcome["timeout"] = "returned"
        except errors._WaitTimeout:
            outcome["timeout"] = "raised"
        connection.close()  # a query still runs on it: nothing to commit

        victim = psycopg.connect(URL, autocommit=True)
        pid = victim.info.backend_pid

        def terminate():
            gevent.sleep(0.3)
            with psycopg.connect(URL, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

        killer = gevent.spawn(terminate)
        try:
            victim.execute("SELECT pg_sleep(10)")
            outcome["lost"] = "returned"
        except psycopg.OperationalError as exc:
            outcome["lost"] = type(exc).__name__
        killer.join()
        print(json.dumps(outcome))
    """)
    assert seen["timeout"] == "raised"
    assert seen["lost"] in ("OperationalError", "AdminShutdown")
