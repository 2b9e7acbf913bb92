"""pydub over the low-rate PCM that the transcode's ffmpeg wrote beside the MP3 (transcode.PCM_RATE, mono, s16le).

pydub is handed samples, never a file: it does not look for ffmpeg or ffprobe, and decodes nothing.
"""

from __future__ import annotations

import warnings

from .transcode import PCM_RATE, TranscodeResult, decode_to_pcm

with warnings.catch_warnings():
    # At import pydub looks for ffmpeg on PATH to convert files with, which it never does here (the wheel's
    # ffmpeg is not on PATH); and on Python 3.11-3.12 it imports the deprecated audioop (3.13: audioop-lts).
    warnings.filterwarnings("ignore", message="Couldn't find ff", category=RuntimeWarning)
    warnings.filterwarnings("ignore", message=".*audioop", category=DeprecationWarning)
    from pydub import AudioSegment

SAMPLE_WIDTH = 2


def load_pcm(path: str) -> AudioSegment:
    with open(path, "rb") as handle:
        data = handle.read()
    return AudioSegment(
        data=data[: len(data) - len(data) % SAMPLE_WIDTH], sample_width=SAMPLE_WIDTH, frame_rate=PCM_RATE, channels=1
    )


def is_digital_silence(result: TranscodeResult, max_s: float) -> bool:
    """Whether the first `max_s` seconds are exactly zero: what a muted microphone records (a quiet room never is).
    The start that the transcode wrote as PCM nearly always settles it; only a clip that starts in digital
    silence is decoded further, from its MP3."""
    if result.pcm_path is None or load_pcm(result.pcm_path).max > 0:
        return False
    whole = result.pcm_path + ".whole"
    decode_to_pcm(result.path, whole, max_s=max_s)
    return load_pcm(whole).max == 0
