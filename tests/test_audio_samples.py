"""The test-audio helper itself: samples come from an ffmpeg that can make them, whichever ffmpeg the service runs."""

from pathlib import Path

import pytest

from tests.helpers import audio_samples
from tests.helpers.audio_samples import LazySamples, ffmpeg_with, make_audio, wheel_ffmpeg
from webhook_app.audio import ffmpeg


@pytest.fixture
def service_ffmpeg_without_amr_encoding(monkeypatch, tmp_path) -> tuple[Path, Path]:
    """The only ffmpeg on PATH is like Debian's: it lists no AMR-NB encoder (otherwise it is the wheel's, so it
    works), and logs every command it runs. Answers (that ffmpeg, its log)."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text(f"""#!/bin/sh
echo "$*" >> '{log}'
case "$*" in
  *-encoders*) exec '{wheel_ffmpeg()}' "$@" | grep -v libopencore_amrnb ;;
  *) exec '{wheel_ffmpeg()}' "$@" ;;
esac
""")
    fake.chmod(0o755)
    monkeypatch.delenv("FFMPEG_BINARY", raising=False)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    # The service's choice, made afresh from this PATH; the cached one the rest of the session uses is left alone.
    monkeypatch.setattr(audio_samples, "ffmpeg_binary", ffmpeg.ffmpeg_binary.__wrapped__)
    return fake, log


def test_a_sample_the_services_ffmpeg_cannot_encode_comes_from_the_wheel(service_ffmpeg_without_amr_encoding, tmp_path):
    _, log = service_ffmpeg_without_amr_encoding
    assert ffmpeg_with("libopencore_amrnb") == wheel_ffmpeg()
    note = make_audio(tmp_path / "note.amr", "amr", seconds=1.0)
    assert Path(note).read_bytes().startswith(b"#!AMR\n")
    assert str(note) not in log.read_text()  # only asked what it can encode, never told to make the note


def test_a_sample_the_services_ffmpeg_can_encode_comes_from_it(service_ffmpeg_without_amr_encoding, tmp_path):
    fake, log = service_ffmpeg_without_amr_encoding
    assert ffmpeg_with("libopus") == str(fake)
    note = make_audio(tmp_path / "note.ogg", "whatsapp_ogg", seconds=1.0)
    assert Path(note).read_bytes().startswith(b"OggS")
    assert str(note) in log.read_text()


def test_a_sample_no_ffmpeg_here_can_encode_fails_with_the_encoders_name():
    with pytest.raises(RuntimeError, match="no ffmpeg here can encode no_such_encoder"):
        ffmpeg_with("no_such_encoder")


def test_a_sample_that_cannot_be_made_fails_only_the_tests_that_use_it():
    def make(name: str) -> bytes:
        if name == "unmakeable":
            raise RuntimeError("no encoder for it")
        return name.encode()

    samples = LazySamples(make)
    with pytest.raises(RuntimeError, match="no encoder"):
        samples["unmakeable"]
    assert samples["fine"] == b"fine"
    assert "unmakeable" not in samples  # not remembered as made
