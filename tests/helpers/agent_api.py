"""The agent API as the record panel calls it: list a conversation's audio, upload a recording."""

from __future__ import annotations

import io
from datetime import datetime

# An audio message as README's HTTP API gives it, plus playback_url only when ready and error only when failed.
MESSAGE_KEYS = {
    "audit_id",
    "direction",
    "channel",
    "conversation_sid",
    "message_sid",
    "media_sid",
    "status",
    "content_type",
    "size_bytes",
    "mp3_size_bytes",
    "duration_s",
    "created_at",
    "updated_at",
}


def assert_timestamps_are_iso_with_a_zone(message):
    for key in ("created_at", "updated_at"):
        assert datetime.fromisoformat(message[key]).tzinfo is not None, (key, message[key])


def listing(client, token, conversation_sid):
    response = client.get(
        f"/api/v1/conversations/{conversation_sid}/audio", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["audio_messages"]


def post_audio(client, token, conversation, path, content_type="audio/webm", key=None, filename=None):
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    with open(path, "rb") as handle:
        data = {"audio": (io.BytesIO(handle.read()), filename or str(path).rsplit("/", 1)[-1], content_type)}
    return client.post(
        f"/api/v1/conversations/{conversation}/audio", data=data, headers=headers, content_type="multipart/form-data"
    )
