"""Group commit (concurrent webhooks share one INSERT and COMMIT) and the relay (workers enqueue new rows)."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest
from sqlalchemy import select, text

from tests.helpers.service import audio_rows, run_jobs
from tests.helpers.webhooks import load_fixture, post_webhook, sids
from webhook_app.extensions import db
from webhook_app.models import AudioMessage
from webhook_app.webhooks.conversations import audio_row_writer
from webhook_app.webhooks.group_commit import GroupCommitWriter, StorageUnavailable

RELAY = bool(os.environ.get("TEST_DATABASE_URL") and os.environ.get("TEST_REDIS_URL"))


def row(message_sid: str, media_sid: str) -> dict:
    from webhook_app.models import utcnow

    return dict(
        direction="inbound",
        channel="whatsapp",
        status="queued",
        conversation_sid="CH" + "c" * 32,
        message_sid=message_sid,
        media_sid=media_sid,
        truncated=False,
        attempts=0,
        created_at=utcnow(),
        updated_at=utcnow(),
        dispatched_at=utcnow(),
    )


def sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def test_callers_queued_behind_a_commit_share_the_next_one_and_each_gets_its_own_ids(app, monkeypatch):
    """The leader's INSERT is held until every other caller has queued behind it; the next leader must then
    commit all their rows in one INSERT. Were each caller to commit alone, there would be nine INSERTs."""
    writer = audio_row_writer()
    keys = [(sid("IM"), sid("ME")) for _ in range(7)]
    inserted: list[int] = []  # rows per _insert call, i.e. per batch
    leader_inserting, release = threading.Event(), threading.Event()
    real_insert = GroupCommitWriter._insert

    def held_insert(self, rows):
        inserted.append(len(rows))
        if len(inserted) == 1:
            leader_inserting.set()
            assert release.wait(30), "the test never released the first batch"
        return real_insert(self, rows)

    monkeypatch.setattr(GroupCommitWriter, "_insert", held_insert)
    results: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def store(name: str, key: tuple[str, str]) -> None:
        try:
            with app.app_context():
                results[name] = writer.insert([row(*key)])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    leader = threading.Thread(target=store, args=("leader", keys[0]))
    leader.start()
    assert leader_inserting.wait(30), "the first caller never reached its INSERT"
    # Queued while the leader's INSERT is in flight: six new messages, a redelivery of the leader's message (its
    # row is committed by then) and a redelivery racing its original in the same batch.
    followers = {f"new{number}": keys[number] for number in range(1, 7)}
    followers |= {"again0": keys[0], "again3": keys[3]}
    threads = [threading.Thread(target=store, args=item) for item in followers.items()]
    [thread.start() for thread in threads]
    for _ in range(3000):  # up to 30 s for the threads to queue; no timing is asserted
        with writer._lock:
            if len(writer._waiting) == len(followers):
                break
        time.sleep(0.01)
    else:
        release.set()
        pytest.fail(f"only {len(writer._waiting)} of {len(followers)} callers queued behind the leader")
    release.set()
    for thread in [leader, *threads]:
        thread.join(30)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in [leader, *threads])

    # One INSERT for the leader, one for all eight followers (their eight rows less the in-batch duplicate).
    assert inserted == [1, 7]
    stored = {(r.message_sid, r.media_sid): r.id for r in audio_rows(app)}
    assert len(stored) == len(keys)
    assert results["leader"] == [stored[keys[0]]]
    for number in (1, 2, 4, 5, 6):
        assert results[f"new{number}"] == [stored[keys[number]]]
    assert results["again0"] == []  # already committed: ON CONFLICT DO NOTHING
    # The original and its redelivery in one batch: whichever queued first gets the id, the other nothing.
    assert sorted([results["new3"], results["again3"]]) == [[], [stored[keys[3]]]]


def test_one_message_with_several_audio_media_keeps_their_order(app):
    writer = audio_row_writer()
    message = sid("IM")
    media = [sid("ME") for _ in range(3)]
    with app.app_context():
        ids = writer.insert([row(message, m) for m in media])
    assert [r.media_sid for r in audio_rows(app) if r.id in ids] == media and ids == sorted(ids)


def test_a_failed_batch_fails_every_waiting_caller_and_the_next_batch_works(app, monkeypatch):
    writer = audio_row_writer()
    calls = {"n": 0}
    real_insert = GroupCommitWriter._insert

    def failing_once(self, rows):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("disk full")
        return real_insert(self, rows)

    monkeypatch.setattr(GroupCommitWriter, "_insert", failing_once)
    with app.app_context():
        with pytest.raises(StorageUnavailable, match="disk full"):
            writer.insert([row(sid("IM"), sid("ME"))])
        assert len(writer.insert([row(sid("IM"), sid("ME"))])) == 1  # leadership was handed back


@pytest.mark.skipif(not RELAY, reason="the relay runs with RQ on PostgreSQL (CI's second suite)")
def test_webhook_never_touches_redis_and_the_relay_enqueues_the_row(client, sandbox, app, monkeypatch):
    from webhook_app.inbound.dispatch import relay_waiting_rows
    from webhook_app.jobs.queue import RqRunner

    def no_redis(*args, **kwargs):
        raise AssertionError("the webhook must not talk to Redis")

    runner = app.extensions["jobs"]
    assert runner.relays_new_rows
    with monkeypatch.context() as patch:
        patch.setattr(RqRunner, "enqueue", no_redis)
        patch.setattr(RqRunner, "enqueue_many", no_redis)
        params = load_fixture("onMessageAdded__whatsapp_voice_note", **sids(sandbox))
        assert post_webhook(client, sandbox, params).status_code == 200
    (stored,) = audio_rows(app)
    assert stored.status == "queued" and stored.dispatched_at is None
    with app.app_context():
        assert relay_waiting_rows() == 1
        assert relay_waiting_rows() == 0  # claimed once
        assert runner.queue.count == 1
    assert audio_rows(app)[0].dispatched_at is not None


@pytest.mark.skipif(not RELAY, reason="the relay runs with RQ on PostgreSQL (CI's second suite)")
def test_relay_gives_rows_back_when_redis_is_unreachable(app, sandbox, deliver, tmp_path):
    from redis.exceptions import ConnectionError as RedisConnectionError

    from tests.helpers.audio_samples import make_audio
    from webhook_app.inbound.dispatch import relay_waiting_rows
    from webhook_app.jobs.queue import RqRunner

    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=1.0)
    _, response = deliver(source, "audio/ogg")
    assert response.status_code == 200
    working = app.extensions["jobs"]
    app.extensions["jobs"] = RqRunner("redis://127.0.0.1:1/0", "unreachable", relays_new_rows=True)
    with app.app_context():
        with pytest.raises(RedisConnectionError):
            relay_waiting_rows()
        db.session.rollback()
    assert audio_rows(app)[0].dispatched_at is None  # given back, not lost
    app.extensions["jobs"] = working  # Redis is back: the next round relays it
    run_jobs(app)
    assert audio_rows(app)[0].status == "ready"


@pytest.mark.skipif(not RELAY, reason="NOTIFY is PostgreSQL's")
def test_inserting_queued_rows_notifies_the_relays_and_redeliveries_do_not(app):
    import psycopg
    from sqlalchemy.engine import make_url

    from webhook_app.inbound.dispatch import QUEUED_CHANNEL as CHANNEL

    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        new = dict(row(sid("IM"), sid("ME")), dispatched_at=None)
        writer = audio_row_writer()
        with app.app_context():
            writer.insert([new])
        assert [n.channel for n in listener.notifies(timeout=5, stop_after=1)] == [CHANNEL]
        with app.app_context():
            writer.insert([new])  # a redelivery inserts nothing: no wake-up
        assert list(listener.notifies(timeout=0.5)) == []
    with app.app_context():
        assert db.session.scalar(select(AudioMessage.id).where(text("dispatched_at IS NULL"))) is not None


def test_a_row_with_a_column_the_batch_statement_does_not_carry_is_refused(app):
    writer = audio_row_writer()
    with app.app_context():
        with pytest.raises(StorageUnavailable, match="error_code"):
            writer.insert([dict(row(sid("IM"), sid("ME")), error_code="x")])
        assert len(writer.insert([row(sid("IM"), sid("ME"))])) == 1  # refused, not stuck


def test_a_row_the_database_refuses_fails_only_its_own_caller(app):
    from webhook_app.webhooks.group_commit import _Pending

    writer = audio_row_writer()
    good, bad, other = (
        _Pending([row(sid("IM"), sid("ME"))]),
        _Pending([dict(row(sid("IM"), sid("ME")), error_code="x")]),
        _Pending([row(sid("IM"), sid("ME"))]),
    )
    with app.app_context():
        writer._commit_isolating([good, bad, other])  # one commit for three callers, as under load
    assert bad.error is not None and not bad.new_ids
    assert good.error is None and other.error is None and len(good.new_ids) == len(other.new_ids) == 1
    assert {r.id for r in audio_rows(app)} == {*good.new_ids, *other.new_ids}


@pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"),
    reason="PostgreSQL's row locks (CI's second suite)",
)
def test_writers_storing_the_same_redeliveries_in_opposite_orders_do_not_deadlock(app):
    """Each web process has its own writer, and Twilio's redeliveries can reach two of them in opposite orders."""
    import time

    import psycopg
    from sqlalchemy.engine import make_url

    from webhook_app.inbound.record import JSON_INSERT
    from webhook_app.webhooks.group_commit import json_rows

    first, second = sorted([(sid("IM"), sid("ME")), (sid("IM"), sid("ME"))])
    dsn = (
        make_url(app.config["SQLALCHEMY_DATABASE_URI"])
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )
    outcome: dict = {}

    def store() -> None:
        with app.app_context():
            try:
                outcome["ids"] = audio_row_writer().insert([row(*second), row(*first)])
            except Exception as exc:  # noqa: BLE001 - the assertion below shows it
                outcome["error"] = exc

    with psycopg.connect(dsn) as other, psycopg.connect(dsn, autocommit=True) as observer:
        # The other process's batch, midway through its statement: `first` stored, not yet committed.
        other.execute(JSON_INSERT, (json_rows([row(*first)]),))
        thread = threading.Thread(target=store)
        thread.start()
        deadline = time.monotonic() + 10
        while not observer.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the writer never waited for the other batch's row"
            time.sleep(0.02)
        # Had the writer stored `second` before waiting, each would now wait for the other (PostgreSQL fails one
        # of them after deadlock_timeout, and with it every webhook of that batch).
        other.execute(JSON_INSERT, (json_rows([row(*second)]),))
        other.commit()
        thread.join(10)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["ids"] == []  # both rows were the other batch's
    assert sorted((r.message_sid, r.media_sid) for r in audio_rows(app)) == [first, second]
