"""Real ffmpeg on real audio: every format customers and browsers send becomes a playable MP3."""

import os

import pytest

from tests.helpers.audio_samples import (
    KINDS,
    TARGET_LUFS,
    decoded_duration,
    integrated_loudness,
    make_audio,
    mp3_bitrate_kbps,
    run_ffmpeg,
    stream_info,
)
from webhook_app.audio.detect import is_audio, sniff_file
from webhook_app.audio.transcode import AudioError, AudioTimeout, transcode_to_mp3


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_voice_format_becomes_mp3_of_the_same_duration(tmp_path, kind):
    source = make_audio(tmp_path / f"in{KINDS[kind][0]}", kind, seconds=4.0)
    result = transcode_to_mp3(source, str(tmp_path / "out.mp3"))
    assert sniff_file(result.path) == "mp3"
    assert abs(decoded_duration(result.path) - decoded_duration(source)) < 0.1
    assert abs(result.duration_s - 4.0) < 0.1
    assert result.size_bytes == os.path.getsize(result.path) and len(result.sha256) == 64
    assert "mono" in stream_info(result.path)  # mono sources stay mono
    assert result.copied == (kind == "mp3")  # MP3 input is kept, not re-encoded


def test_narrowband_amr_is_resampled_to_16_khz(tmp_path):
    source = make_audio(tmp_path / "in.amr", "amr", seconds=12.0)
    result = transcode_to_mp3(source, str(tmp_path / "out.mp3"))
    assert "16000 Hz" in stream_info(result.path)
    assert abs(decoded_duration(result.path) - 12.0) < 0.1


def test_bitrate_and_mono_are_applied(tmp_path):
    source = make_audio(tmp_path / "in.webm", "webm", seconds=3.0)
    result = transcode_to_mp3(source, str(tmp_path / "out.mp3"), bitrate_kbps=32, mono=True)
    assert 29 <= mp3_bitrate_kbps(result.path) <= 35  # ABR: 32 on average
    with pytest.raises(ValueError):
        transcode_to_mp3(source, str(tmp_path / "x.mp3"), bitrate_kbps=65)


def test_loudness_normalization_reaches_the_target_and_keeps_duration(tmp_path):
    source = make_audio(tmp_path / "in.ogg", "whatsapp_ogg", seconds=2.0)
    quiet = integrated_loudness(source)
    assert quiet < -30  # a quiet recording (about -35 LUFS), far from the target
    result = transcode_to_mp3(source, str(tmp_path / "out.mp3"), loudness=True)
    assert abs(integrated_loudness(result.path) - TARGET_LUFS) < 1.5
    assert abs(decoded_duration(result.path) - 2.0) < 0.1

    as_is = transcode_to_mp3(source, str(tmp_path / "as-is.mp3"), loudness=False)
    assert abs(integrated_loudness(as_is.path) - quiet) < 1.5  # off: the level is left alone


def test_duration_cap_truncates(tmp_path):
    source = make_audio(tmp_path / "in.ogg", "whatsapp_ogg", seconds=6.0)
    result = transcode_to_mp3(source, str(tmp_path / "out.mp3"), max_duration_s=2.0)
    assert result.truncated
    assert abs(decoded_duration(result.path) - 2.0) < 0.1


def test_ffmpeg_run_time_is_capped(tmp_path):
    source = make_audio(tmp_path / "in.wav", "wav", seconds=30.0)
    with pytest.raises(AudioTimeout, match="longer than"):
        transcode_to_mp3(source, str(tmp_path / "out.mp3"), timeout_s=0.01, loudness=True)


def test_id3_tagged_aac_is_decoded_not_copied_as_mp3(tmp_path):
    """An ID3 tag opens AAC (ADTS) files too: the sniff looks behind it, so ffmpeg reads AAC (the MP3 muxer would
    refuse to copy its stream)."""
    source = str(tmp_path / "voice.aac")
    run_ffmpeg(
        "-i",
        make_audio(tmp_path / "v.wav", "wav", seconds=2.0),
        "-c:a",
        "aac",
        "-b:a",
        "48k",
        "-f",
        "adts",
        "-write_id3v2",
        "1",
        "-metadata",
        "title=voice",
        source,
    )
    assert open(source, "rb").read(3) == b"ID3" and sniff_file(source) == "aac"
    result = transcode_to_mp3(source, str(tmp_path / "out.mp3"))
    assert not result.copied and abs(result.duration_s - 2.0) < 0.15
    assert "Audio: mp3" in stream_info(tmp_path / "out.mp3")


def test_zero_bytes_is_rejected_with_a_reason(tmp_path):
    empty = tmp_path / "empty.ogg"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        transcode_to_mp3(str(empty), str(tmp_path / "out.mp3"))


def test_text_named_ogg_is_not_decodable(tmp_path):
    fake = tmp_path / "note.ogg"
    fake.write_text("this is not audio at all\n" * 20)
    with pytest.raises(AudioError, match="not decodable"):
        transcode_to_mp3(str(fake), str(tmp_path / "out.mp3"))


def test_truncated_mp4_fails_but_truncated_ogg_keeps_what_is_there(tmp_path):
    mp4 = make_audio(tmp_path / "in.m4a", "aac_mp4", seconds=4.0)
    data = open(mp4, "rb").read()
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(AudioError):
        transcode_to_mp3(str(cut), str(tmp_path / "a.mp3"))

    ogg = make_audio(tmp_path / "in.ogg", "whatsapp_ogg", seconds=4.0)
    data = open(ogg, "rb").read()
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(data[: len(data) // 2])
    result = transcode_to_mp3(str(cut), str(tmp_path / "b.mp3"))
    assert 0.5 < result.duration_s < 3.5


def test_video_without_audio_has_no_audio_stream(tmp_path):
    video = tmp_path / "clip.3gp"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc=d=1:s=64x64", "-c:v", "mpeg4", "-f", "3gp", str(video))
    with pytest.raises(AudioError, match="no audio stream"):
        transcode_to_mp3(str(video), str(tmp_path / "out.mp3"))


@pytest.mark.parametrize(
    "content_type,filename,expected",
    [
        ("audio/ogg; codecs=opus", None, True),
        ("audio/opus", None, True),
        ("audio/amr", None, True),
        ("video/3gpp", "voice.3gp", True),
        ("audio/mp4", None, True),
        ("audio/aac", None, True),
        ("audio/mpeg", None, True),
        ("audio/wav", None, True),
        ("audio/webm", None, True),
        ("application/octet-stream", "voice.opus", True),
        ("application/octet-stream", "report.pdf", False),
        ("image/jpeg", "photo.jpg", False),
        ("video/mp4", "clip.mp4", False),
    ],
)
def test_audio_detection(content_type, filename, expected):
    assert is_audio(content_type, filename) is expected
