"""A stored voice note is read from the database a chunk at a time: a cheap range request cannot make the service
load a whole file into memory."""

import pytest

from tests.helpers.agent_api import listing
from tests.helpers.audio_samples import make_audio
from tests.helpers.service import run_jobs, set_settings
from webhook_app.media import storage
from webhook_app.media.storage import DATABASE_READ_BYTES


@pytest.fixture
def large_stored_note(deliver, client, app, agent_token, tmp_path, monkeypatch):
    """A 3.2 MB WAV kept as sent (more than ten database reads), and a log of every read playback makes."""
    set_settings(app, "webchat", normalize_inbound=False)
    original = tmp_path / "long.wav"
    make_audio(original, "wav", seconds=100.0)
    params, _ = deliver(original, "audio/wav", channel="webchat")
    run_jobs(app)
    (message,) = listing(client, agent_token, params["ConversationSid"])
    reads = []
    real_read = storage.read_stored_slice

    def logged_read(engine, key, offset, length):
        data = real_read(engine, key, offset, length)
        reads.append((offset, len(data)))
        return data

    monkeypatch.setattr(storage, "read_stored_slice", logged_read)
    return original.read_bytes(), message["playback_url"].replace("http://localhost", ""), reads


def test_a_one_byte_range_reads_one_chunk_not_the_file(client, large_stored_note):
    original, url, reads = large_stored_note
    assert len(original) > 10 * DATABASE_READ_BYTES

    response = client.get(url, headers={"Range": "bytes=0-0"})
    assert response.status_code == 206 and response.data == original[:1]
    assert reads and sum(length for _, length in reads) <= DATABASE_READ_BYTES


def test_head_reads_no_more_than_the_first_chunk(client, large_stored_note):
    original, url, reads = large_stored_note
    response = client.head(url)
    assert response.status_code == 200 and int(response.headers["Content-Length"]) == len(original)
    assert reads and sum(length for _, length in reads) <= DATABASE_READ_BYTES


def test_ranges_and_whole_file_are_read_a_chunk_at_a_time(client, large_stored_note):
    original, url, reads = large_stored_note
    start = DATABASE_READ_BYTES - 10  # across a chunk boundary
    response = client.get(url, headers={"Range": f"bytes={start}-{start + 99}"})
    assert response.status_code == 206 and response.data == original[start : start + 100]

    reads.clear()
    whole = client.get(url)
    assert whole.status_code == 200 and whole.data == original
    assert reads and max(length for _, length in reads) <= DATABASE_READ_BYTES
    assert len(reads) <= len(original) // DATABASE_READ_BYTES + 2  # each chunk once, plus the sniff
