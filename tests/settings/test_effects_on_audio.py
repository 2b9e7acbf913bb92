"""Per-channel settings checked by their effect on the audio, not as stored values: real ffmpeg, real audio.

bitrate_kbps shapes the MP3 of both directions, normalize_inbound=False keeps the customer's bytes as sent, and
loudness_normalize brings quiet inbound voice notes to the EBU R128 target.
"""

import io
import os

from tests.helpers.agent_api import listing
from tests.helpers.audio_samples import TARGET_LUFS, decoded_duration, integrated_loudness, make_audio, mp3_bitrate_kbps
from tests.helpers.conversations import conversation_with_agent
from tests.helpers.service import audio_rows, run_jobs, set_settings
from webhook_app.audio.detect import sniff

OGG = "audio/ogg; codecs=opus"


def served(client, token, conversation_sid):
    """The conversation's one audio message as the list endpoint gives it, and its /media answer."""
    (message,) = listing(client, token, conversation_sid)
    assert message["status"] == "ready", message
    media = client.get(message["playback_url"].replace("http://localhost", ""))
    assert media.status_code == 200
    return message, media


def average_kbps(path) -> float:
    """Bits over decoded seconds: a CBR file at 32 kb/s averages near 32 (headers add a little)."""
    return os.path.getsize(path) * 8 / decoded_duration(path) / 1000


def test_inbound_mp3_has_the_channel_bitrate(deliver, client, app, agent_token, tmp_path):
    set_settings(app, "sms", bitrate_kbps=32)  # the default is 64
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=2.0)  # not MP3: MP3 is kept as sent
    params, response = deliver(source, OGG, channel="sms")
    assert response.status_code == 200
    run_jobs(app)

    message, media = served(client, agent_token, params["ConversationSid"])
    assert message["channel"] == "sms" and media.mimetype == "audio/mpeg"
    mp3 = tmp_path / "served.mp3"
    mp3.write_bytes(media.data)
    assert 29 <= mp3_bitrate_kbps(mp3) <= 35  # ABR: the channel's bitrate on average
    assert 28 < average_kbps(mp3) < 40


def test_agent_upload_is_sent_at_the_channel_bitrate(client, app, sandbox, agent_token, tmp_path):
    conversation = conversation_with_agent(sandbox, "SMS customer", "sms")
    set_settings(app, "sms", bitrate_kbps=32)
    source = make_audio(tmp_path / "rec.webm", "webm", seconds=2.0)
    with open(source, "rb") as handle:
        data = {"audio": (io.BytesIO(handle.read()), "rec.webm", "audio/webm;codecs=opus")}
    response = client.post(
        f"/api/v1/conversations/{conversation}/audio",
        data=data,
        headers={"Authorization": f"Bearer {agent_token}"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()

    sent = tmp_path / "sent.mp3"
    sent.write_bytes(sandbox.media_bytes(response.get_json()["media_sid"]))  # what Twilio got
    assert 29 <= mp3_bitrate_kbps(sent) <= 35
    assert 28 < average_kbps(sent) < 40
    (row,) = audio_rows(app)
    assert row.channel == "sms" and row.mp3_size_bytes == os.path.getsize(sent)


def test_inbound_normalization_off_keeps_the_original_bytes(deliver, client, app, agent_token, tmp_path):
    set_settings(app, "whatsapp", normalize_inbound=False)
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=1.0)
    kept, _ = deliver(source, OGG, channel="whatsapp")
    converted, _ = deliver(source, OGG, channel="sms")  # normalize_inbound is per channel: sms still converts
    run_jobs(app)

    message, media = served(client, agent_token, kept["ConversationSid"])
    assert media.data == open(source, "rb").read()
    assert media.mimetype == "audio/ogg" and media.data[:4] == b"OggS"
    assert message["channel"] == "whatsapp" and message["mp3_size_bytes"] is None

    message, media = served(client, agent_token, converted["ConversationSid"])
    assert media.mimetype == "audio/mpeg" and message["mp3_size_bytes"] == len(media.data)
    assert sniff(media.data[:64]) == "mp3"


def test_loudness_setting_brings_quiet_voice_notes_to_the_target(deliver, client, app, agent_token, tmp_path):
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=2.0)
    quiet = integrated_loudness(source)
    assert quiet < -30  # a quiet recording (about -35 LUFS), far from the target
    set_settings(app, "webchat", loudness_normalize=True)
    louder, _ = deliver(source, OGG, channel="webchat")
    as_sent, _ = deliver(source, OGG, channel="whatsapp")  # loudness_normalize off (the default)
    run_jobs(app)

    for setting, params, expected in (("on", louder, TARGET_LUFS), ("off", as_sent, quiet)):
        _, media = served(client, agent_token, params["ConversationSid"])
        mp3 = tmp_path / f"loudness-{setting}.mp3"
        mp3.write_bytes(media.data)
        measured = integrated_loudness(mp3)
        assert abs(measured - expected) < 1.5, f"loudness_normalize {setting}: {measured} LUFS, expected {expected}"
