"""The PCM the transcode writes beside the MP3, and pydub's verdict on it (webhook_app/audio/silence.py)."""

from __future__ import annotations

import pytest

from tests.helpers.audio_samples import make_audio, run_ffmpeg
from webhook_app.audio.silence import is_digital_silence, load_pcm
from webhook_app.audio.transcode import PCM_RATE, transcode_to_mp3


def transcode_with_pcm(src, tmp_path, **options):
    return transcode_to_mp3(
        str(src), str(tmp_path / "out.mp3"), mono=True, pcm_path=str(tmp_path / "out.pcm"), **options
    )


def silence(path, seconds: float, *encoder: str) -> str:
    run_ffmpeg("-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-t", str(seconds), *encoder, str(path))
    return str(path)


def test_the_pcm_comes_from_the_same_ffmpeg_as_the_mp3_and_matches_it(tmp_path):
    result = transcode_with_pcm(make_audio(tmp_path / "voice.webm", "webm", seconds=3.0), tmp_path)
    segment = load_pcm(str(tmp_path / "out.pcm"))
    assert segment.frame_rate == PCM_RATE and segment.channels == 1 and segment.sample_width == 2
    assert abs(segment.duration_seconds - result.duration_s) < 0.05
    assert segment.max > 1000 and not is_digital_silence(result, 120)


@pytest.mark.parametrize(
    "encoder",
    [
        ("-c:a", "libopus", "-f", "webm"),
        ("-c:a", "aac", "-f", "mp4"),
        ("-c:a", "pcm_s16le", "-f", "wav"),
        ("-c:a", "libmp3lame", "-f", "mp3"),
    ],
    ids=["webm", "mp4", "wav", "mp3"],
)
def test_a_muted_microphone_is_digital_silence_whatever_the_container(tmp_path, encoder):
    result = transcode_with_pcm(silence(tmp_path / "muted", 2.0, *encoder), tmp_path, pcm_max_s=0.5)
    assert abs(result.duration_s - 2.0) < 0.1
    assert is_digital_silence(result, 120)  # the first half second, then the whole MP3


def test_a_quiet_room_is_not_digital_silence(tmp_path):
    """Noise 70 dB below full scale is still a microphone that works."""
    src = tmp_path / "quiet.webm"
    run_ffmpeg(
        "-f", "lavfi", "-i", "anoisesrc=c=white:a=0.0003:r=48000", "-t", "2", "-c:a", "libopus", "-f", "webm", str(src)
    )
    assert not is_digital_silence(transcode_with_pcm(src, tmp_path), 120)


def test_a_clip_that_starts_silent_is_looked_at_whole(tmp_path):
    src = tmp_path / "late.webm"
    run_ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=48000:cl=mono:d=3",
        "-f",
        "lavfi",
        "-i",
        "sine=f=440:d=2:r=48000",
        "-filter_complex",
        "[0][1]concat=n=2:v=0:a=1",
        "-c:a",
        "libopus",
        "-f",
        "webm",
        str(src),
    )
    result = transcode_with_pcm(src, tmp_path, pcm_max_s=1.0)
    assert load_pcm(result.pcm_path).max == 0  # the start alone would say silent
    assert not is_digital_silence(result, 120)


def test_pcm_stops_at_its_own_limit_while_the_mp3_goes_on(tmp_path):
    result = transcode_with_pcm(
        make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=4.0), tmp_path, pcm_max_s=1.5
    )
    assert abs(result.duration_s - 4.0) < 0.1
    assert abs(load_pcm(str(tmp_path / "out.pcm")).duration_seconds - 1.5) < 0.01


def test_an_mp3_kept_as_it_is_still_gets_its_pcm(tmp_path):
    result = transcode_to_mp3(
        make_audio(tmp_path / "voice.mp3", "mp3", seconds=2.0),
        str(tmp_path / "out.mp3"),
        pcm_path=str(tmp_path / "out.pcm"),
    )
    assert result.copied
    assert abs(load_pcm(str(tmp_path / "out.pcm")).duration_seconds - result.duration_s) < 0.1
