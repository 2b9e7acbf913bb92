"""Retention on the database store: old media goes, audit rows stay; batches, idempotence, the CLI."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from tests.helpers.audio_samples import make_audio
from tests.helpers.service import audio_rows, run_jobs
from webhook_app.extensions import db
from webhook_app.media.retention import count_expired_media, delete_expired_media
from webhook_app.models import AudioMessage, StoredMedia, utcnow


def listing(client, token, conversation_sid):
    response = client.get(
        f"/api/v1/conversations/{conversation_sid}/audio", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["audio_messages"]


def add_row(age_days: float, status: str = "ready", with_media: bool = True, stored: bool = True) -> int:
    """An audit row created `age_days` ago, with its MP3 in the database store."""
    row = AudioMessage(
        direction="inbound",
        channel="whatsapp",
        status=status,
        conversation_sid="CH" + "0" * 32,
        created_at=utcnow() - timedelta(days=age_days),
    )
    db.session.add(row)
    db.session.flush()
    if with_media:
        row.media_key = f"audio/{row.id}/0123456789abcdef.mp3"
        if stored:
            db.session.add(
                StoredMedia(key=row.media_key, content_type="audio/mpeg", size_bytes=3, sha256="0" * 64, data=b"ID3")
            )
    db.session.commit()
    return row.id


def stored_keys() -> set[str]:
    return set(db.session.scalars(select(StoredMedia.key)))


def test_voice_note_media_expires_but_its_audit_row_stays(deliver, client, app, agent_token, tmp_path):
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=2.0)
    params, _ = deliver(source, "audio/ogg; codecs=opus")
    run_jobs(app)
    (message,) = listing(client, agent_token, params["ConversationSid"])
    path = message["playback_url"].replace("http://localhost", "")
    assert client.get(path).status_code == 200

    with app.app_context():
        assert delete_expired_media(now=utcnow() + timedelta(days=400)) == 0  # RETENTION_DAYS=0: keep forever
        app.config["RETENTION_DAYS"] = 30
        assert delete_expired_media(now=utcnow() + timedelta(days=29)) == 0
        assert delete_expired_media(now=utcnow() + timedelta(days=31)) == 1
        assert delete_expired_media(now=utcnow() + timedelta(days=31)) == 0
        assert stored_keys() == set()

    (row,) = audio_rows(app)
    assert row.status == "ready" and row.media_deleted_at is not None and row.media_key
    assert row.mp3_size_bytes and row.duration_s  # the audit facts are kept
    response = client.get(path)
    assert response.status_code == 410
    assert response.get_json()["error"]["code"] == "media_expired"
    (listed,) = listing(client, agent_token, params["ConversationSid"])
    assert listed["status"] == "ready" and "playback_url" not in listed


def test_works_in_batches_and_only_on_finished_rows_with_media(app):
    app.config["RETENTION_DAYS"] = 7
    with app.app_context():
        old = [add_row(10) for _ in range(7)]
        failed_with_media = add_row(10, status="failed")  # an outbound send that failed after storing its MP3
        already_gone = add_row(10, stored=False)  # the object vanished before retention got to it
        young = add_row(3)
        in_progress = add_row(10, status="transcoding")
        without_media = add_row(10, status="failed", with_media=False)

        assert count_expired_media() == 9
        assert delete_expired_media(batch_size=3, limit=4) == 4  # one call is capped
        assert delete_expired_media(batch_size=3) == 5
        assert delete_expired_media(batch_size=3) == 0

        deleted = {
            r.id for r in db.session.scalars(select(AudioMessage).where(AudioMessage.media_deleted_at.is_not(None)))
        }
        assert deleted == {*old, failed_with_media, already_gone}
        assert stored_keys() == {f"audio/{young}/0123456789abcdef.mp3", f"audio/{in_progress}/0123456789abcdef.mp3"}
        assert db.session.get(AudioMessage, without_media).media_deleted_at is None
        assert len(audio_rows(app)) == 12  # no audit row is ever deleted


def test_a_store_failure_leaves_the_row_for_the_next_run(app, monkeypatch):
    app.config["RETENTION_DAYS"] = 1
    with app.app_context():
        first, second = add_row(2), add_row(2)
        store = app.extensions["media_store"]
        real_delete = store.delete

        def flaky(key):
            if key.startswith(f"audio/{first}/"):
                raise ConnectionError("store unreachable")
            real_delete(key)

        monkeypatch.setattr(store, "delete", flaky)
        assert delete_expired_media() == 1
        assert db.session.get(AudioMessage, first).media_deleted_at is None
        assert db.session.get(AudioMessage, second).media_deleted_at is not None

        monkeypatch.setattr(store, "delete", real_delete)
        assert delete_expired_media() == 1
        assert stored_keys() == set()


def test_a_store_that_is_down_stops_the_run_instead_of_walking_every_expired_row(app, monkeypatch):
    from webhook_app.media.retention import MAX_FAILURES_IN_A_ROW

    app.config["RETENTION_DAYS"] = 1
    with app.app_context():
        rows = [add_row(2) for _ in range(MAX_FAILURES_IN_A_ROW + 5)]
        store = app.extensions["media_store"]
        attempts = []

        def unreachable(key):
            attempts.append(key)
            raise ConnectionError("store unreachable")

        monkeypatch.setattr(store, "delete", unreachable)
        assert delete_expired_media() == 0
        assert len(attempts) == MAX_FAILURES_IN_A_ROW  # each of these costs the client's retries when S3 is down
        assert all(db.session.get(AudioMessage, row).media_deleted_at is None for row in rows)


def test_cli(app, runner):
    with app.app_context():
        add_row(40), add_row(40), add_row(5)

    result = runner.invoke(args=["retention", "run"])
    assert result.exit_code == 0 and "kept forever" in result.output

    result = runner.invoke(args=["retention", "run", "--days", "30", "--dry-run"])
    assert result.exit_code == 0 and "would delete the media of 2 audio message(s)" in result.output

    app.config["RETENTION_DAYS"] = 30
    result = runner.invoke(args=["retention", "run", "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    assert "deleted the media of 2 audio message(s)" in result.output
    result = runner.invoke(args=["retention", "run"])
    assert "deleted the media of 0 audio message(s)" in result.output
    result = runner.invoke(args=["retention", "run", "--days", "1"])
    assert "deleted the media of 1 audio message(s)" in result.output
