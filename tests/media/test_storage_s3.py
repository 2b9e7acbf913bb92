"""The S3 media store against moto's S3 server over real HTTP: upload, presigned playback, streaming, retention."""

from __future__ import annotations

import io
import os
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from sqlalchemy import func, select

from tests.helpers.audio_samples import make_audio
from tests.helpers.service import audio_rows, run_jobs
from webhook_app.extensions import db
from webhook_app.media.retention import delete_expired_media
from webhook_app.media.storage import DatabaseStore, MediaStore, S3Store, build_store
from webhook_app.models import StoredMedia, utcnow


@pytest.fixture(scope="session")
def s3_endpoint():
    try:
        from moto import server as moto_server
    except ImportError as missing:
        message = f"moto's S3 server is not installed ({missing}): pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs the test extras: a missing moto there is a broken pipeline
        pytest.skip(message)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch):
    """Dummy credentials from the standard variables (boto3 reads them itself), nothing from the machine."""
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


@pytest.fixture
def s3(s3_endpoint, aws_env):
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3):
    name = f"audio-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


S3_CONFIG = {
    "MEDIA_STORE": "s3",
    "S3_REGION": "us-east-1",
    "S3_PREFIX": "",
    "S3_PRESIGN": True,
    "S3_PRESIGN_TTL_S": 900,
}


@pytest.fixture
def app(app, s3_endpoint, bucket):
    """The suite's app (same database, sandbox, jobs) with MEDIA_STORE=s3 against the moto bucket."""
    app.config.update(S3_CONFIG, S3_BUCKET=bucket, S3_ENDPOINT_URL=s3_endpoint)
    use_store(app)
    return app


def use_store(app) -> None:
    app.extensions["media_store"] = build_store(app.config)


def listing(client, token, conversation_sid):
    response = client.get(
        f"/api/v1/conversations/{conversation_sid}/audio", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["audio_messages"]


@pytest.fixture
def voice_note(deliver, client, app, agent_token, tmp_path):
    """A customer's 3-second WhatsApp voice note, delivered through the sandbox and normalized to MP3."""
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=3.0)
    params, response = deliver(source, "audio/ogg; codecs=opus")
    assert response.status_code == 200
    run_jobs(app)
    (message,) = listing(client, agent_token, params["ConversationSid"])
    assert message["status"] == "ready", message
    return message


def local_path(url: str) -> str:
    return url.replace("http://localhost", "")


def test_stores_are_media_stores():
    assert isinstance(DatabaseStore(), MediaStore)
    assert isinstance(S3Store("bucket"), MediaStore)
    assert DatabaseStore().presigned_url("audio/1/x.mp3", 60) is None


def test_store_is_chosen_by_config():
    assert isinstance(build_store({}), DatabaseStore)
    assert isinstance(build_store({"MEDIA_STORE": "database"}), DatabaseStore)
    store = build_store({"MEDIA_STORE": "S3", "S3_BUCKET": "b", "S3_PREFIX": None})
    assert isinstance(store, S3Store) and store.prefix == "" and store.presign
    with pytest.raises(RuntimeError, match="S3_BUCKET"):
        build_store({"MEDIA_STORE": "s3"})
    with pytest.raises(RuntimeError, match="MEDIA_STORE"):
        build_store({"MEDIA_STORE": "disk"})


def test_config_reads_the_s3_environment(monkeypatch):
    from webhook_app.config import Config

    monkeypatch.setenv("MEDIA_STORE", "s3")
    monkeypatch.setenv("S3_BUCKET", "voice")
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("S3_PRESIGN", "false")
    monkeypatch.setenv("RETENTION_DAYS", "30")
    config = Config()
    assert (config.MEDIA_STORE, config.S3_BUCKET, config.S3_ENDPOINT_URL, config.S3_PREFIX) == (
        "s3",
        "voice",
        "http://minio:9000",
        "",
    )
    assert config.S3_PRESIGN is False and config.S3_PRESIGN_TTL_S == 900 and config.RETENTION_DAYS == 30
    monkeypatch.setenv("S3_PRESIGN", "nope")
    with pytest.raises(ValueError, match="S3_PRESIGN"):
        Config()


def test_voice_note_is_stored_in_the_bucket_and_played_from_a_presigned_url(app, client, voice_note, s3, bucket):
    (row,) = audio_rows(app)
    head = s3.head_object(Bucket=bucket, Key=row.media_key)
    assert head["ContentType"] == "audio/mpeg"
    assert head["ContentLength"] == row.mp3_size_bytes == voice_note["mp3_size_bytes"]
    assert head["Metadata"]["sha256"] == row.mp3_sha256
    with app.app_context():  # nothing in the database store
        assert db.session.scalar(select(func.count()).select_from(StoredMedia)) == 0

    response = client.get(local_path(voice_note["playback_url"]))
    assert response.status_code == 302
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    location = response.headers["Location"]
    assert location.startswith(app.config["S3_ENDPOINT_URL"] + f"/{bucket}/audio/")
    query = parse_qs(urlsplit(location).query)
    assert 0 < int(query["X-Amz-Expires"][0]) <= 900

    # What the browser does next: S3 (here moto) answers ranges itself.
    whole = requests.get(location, timeout=10)
    assert whole.status_code == 200 and whole.headers["Content-Type"] == "audio/mpeg"
    assert len(whole.content) == row.mp3_size_bytes
    part = requests.get(location, headers={"Range": "bytes=0-99"}, timeout=10)
    assert part.status_code == 206
    assert len(part.content) == 100 and part.content == whole.content[:100]
    assert part.headers["Content-Range"] == f"bytes 0-99/{row.mp3_size_bytes}"


def test_presigned_url_never_outlives_the_playback_link(app, client, voice_note):
    app.config["PLAYBACK_URL_TTL_S"] = 120
    response = client.get(local_path(voice_note["playback_url"]))
    assert response.status_code == 302
    expires = int(parse_qs(urlsplit(response.headers["Location"]).query)["X-Amz-Expires"][0])
    assert 0 < expires <= 120
    app.config["PLAYBACK_URL_TTL_S"] = -1
    assert client.get(local_path(voice_note["playback_url"])).status_code == 410


def test_streaming_fallback_passes_ranges_through(app, client, voice_note):
    app.config["S3_PRESIGN"] = False
    use_store(app)
    path = local_path(voice_note["playback_url"])
    size = voice_note["mp3_size_bytes"]

    whole = client.get(path)
    assert whole.status_code == 200 and whole.mimetype == "audio/mpeg"
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert int(whole.headers["Content-Length"]) == len(whole.data) == size
    (row,) = audio_rows(app)
    assert whole.headers["ETag"] == f'"{row.mp3_sha256}"'  # the same ETag the database store gives

    part = client.get(path, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{size}"
    assert part.headers["Accept-Ranges"] == "bytes" and part.headers["ETag"] == whole.headers["ETag"]
    assert int(part.headers["Content-Length"]) == 100 and part.data == whole.data[100:200]
    tail = client.get(path, headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.data == whole.data[-50:]
    assert tail.headers["Content-Range"] == f"bytes {size - 50}-{size - 1}/{size}"

    assert client.get(path, headers={"If-None-Match": whole.headers["ETag"]}).status_code == 304
    assert client.get(path, headers={"Range": f"bytes={size + 10}-"}).status_code == 416
    stale = client.get(path, headers={"Range": "bytes=0-9", "If-Range": '"not-the-etag"'})
    assert stale.status_code == 200 and stale.data == whole.data  # a stale copy gets the whole object
    fresh = client.get(path, headers={"Range": "bytes=0-9", "If-Range": whole.headers["ETag"]})
    assert fresh.status_code == 206 and fresh.data == whole.data[:10]
    stale_past_the_end = client.get(path, headers={"Range": f"bytes={size + 10}-", "If-Range": '"not-the-etag"'})
    assert stale_past_the_end.status_code == 200 and stale_past_the_end.data == whole.data
    current_past_the_end = client.get(path, headers={"Range": f"bytes={size + 10}-", "If-Range": whole.headers["ETag"]})
    assert current_past_the_end.status_code == 416
    cached = client.get(
        path, headers={"Range": "bytes=0-9", "If-Range": '"not-the-etag"', "If-None-Match": whole.headers["ETag"]}
    )
    assert cached.status_code == 304
    head = client.head(path)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == size


def test_object_missing_from_the_bucket_is_gone(app, client, voice_note, s3, bucket):
    app.config["S3_PRESIGN"] = False
    use_store(app)
    (row,) = audio_rows(app)
    s3.delete_object(Bucket=bucket, Key=row.media_key)
    response = client.get(local_path(voice_note["playback_url"]))
    assert response.status_code == 410 and response.get_json()["error"]["code"] == "gone"


def test_agent_recording_is_stored_in_the_bucket(app, client, sandbox, agent_token, s3, bucket, tmp_path):
    conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
    sandbox.add_participant(conversation, identity="agent_40example_2Ecom", attributes='{"member_type": "agent"}')
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=2.0)
    response = client.post(
        f"/api/v1/conversations/{conversation}/audio",
        data={"audio": (io.BytesIO(open(source, "rb").read()), "rec.webm", "audio/webm")},
        headers={"Authorization": f"Bearer {agent_token}"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    (row,) = audio_rows(app)
    head = s3.head_object(Bucket=bucket, Key=row.media_key)
    assert head["ContentType"] == "audio/mpeg" and head["ContentLength"] == row.mp3_size_bytes


def test_big_files_go_up_in_parts(app, s3, bucket, tmp_path):
    big = tmp_path / "big.mp3"
    big.write_bytes(b"\xff\xfb" * (5 * 1024 * 1024))  # 10 MiB: above the 8 MiB multipart threshold
    with app.app_context():
        store = app.extensions["media_store"]
        store.put("audio/999/big.mp3", str(big), "audio/mpeg", "ab" * 32)
        head = s3.head_object(Bucket=bucket, Key="audio/999/big.mp3")
        assert head["ContentLength"] == 10 * 1024 * 1024 and head["ContentType"] == "audio/mpeg"
        assert head["ETag"].strip('"').endswith("-2")  # a multipart upload's ETag names its part count
        assert head["Metadata"] == {"sha256": "ab" * 32}
        stored = store.get("audio/999/big.mp3")
        assert stored.size_bytes == 10 * 1024 * 1024 and stored.sha256 == "ab" * 32
        store.delete("audio/999/big.mp3")
        store.delete("audio/999/big.mp3")  # already gone: not an error
        assert store.get("audio/999/big.mp3") is None


def test_prefix_is_configurable(app, s3, bucket, tmp_path):
    app.config["S3_PREFIX"] = "tenant-a/"
    use_store(app)
    path = tmp_path / "x.mp3"
    path.write_bytes(b"ID3" + b"\0" * 100)
    with app.app_context():
        app.extensions["media_store"].put("audio/1/x.mp3", str(path), "audio/mpeg", "cd" * 32)
    assert s3.head_object(Bucket=bucket, Key="tenant-a/audio/1/x.mp3")["ContentLength"] == 103


def test_retention_deletes_the_object_and_keeps_the_row(app, client, voice_note, agent_token, s3, bucket):
    app.config["RETENTION_DAYS"] = 30
    (row,) = audio_rows(app)
    key = row.media_key
    with app.app_context():
        assert delete_expired_media(now=utcnow() + timedelta(days=29)) == 0
    s3.head_object(Bucket=bucket, Key=key)

    with app.app_context():
        assert delete_expired_media(now=utcnow() + timedelta(days=31)) == 1
        assert delete_expired_media(now=utcnow() + timedelta(days=31)) == 0  # idempotent
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    (after,) = audio_rows(app)
    assert after.status == "ready" and after.media_deleted_at is not None and after.media_key == row.media_key

    response = client.get(local_path(voice_note["playback_url"]))
    assert response.status_code == 410
    assert response.get_json()["error"]["code"] == "media_expired"
    (listed,) = listing(client, agent_token, voice_note["conversation_sid"])
    assert listed["status"] == "ready" and "playback_url" not in listed
