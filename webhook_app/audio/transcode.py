"""Any voice note -> MP3, through one streaming ffmpeg process.

ffmpeg reads the source file and writes the MP3 to a seekable file: decoded PCM never passes through Python,
so memory stays flat however long the recording is. Writing to a file rather than a pipe lets the muxer go
back and fill the Xing/LAME header (frame count, encoder delay and padding), which players need to report
and trim the duration exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..observability.metrics import TRANSCODE_SECONDS
from .bounded import (
    DEFAULT_MEMORY_MB,
    AudioError,
    AudioRefused,
    AudioTimeout,
    Bounds,
    demuxer_for,
    input_args,
    run_ffmpeg,
)
from .detect import sniff_file
from .ffmpeg import ffmpeg_binary

__all__ = ["AudioError", "AudioTimeout", "TranscodeResult", "build_command", "decode_to_pcm", "transcode_to_mp3"]

log = logging.getLogger(__name__)

# MP3 allows 8-48 kHz, but narrowband sources (8 kHz AMR) at 8 kHz leave large encoder padding; letting ffmpeg
# pick the nearest of these rates upsamples those and passes everything else through untouched.
MP3_SAMPLE_RATES = "16000|22050|24000|32000|44100|48000"
# EBU R128 target for speech played back in a browser.
LOUDNORM = "loudnorm=I=-16:TP=-1.5:LRA=11"
# Down to stereo before anything else: MP3 carries no more, and loudnorm's cost grows with every channel it is
# handed (a 7.1 WAV at 192 kHz: 450 MB before the downmix, 150 MB after).
AT_MOST_STEREO = "aformat=channel_layouts=mono|stereo"
BITRATES_KBPS = (32, 48, 64, 96, 128)
# The PCM that Python may inspect (audio/silence.py), written by the same ffmpeg process beside the MP3, so nothing
# is decoded twice: mono, 16-bit, at a rate that keeps speech and costs 16 KB a second. Resampling is most of its
# cost (a 60 s clip whole: +10-20% CPU on the transcode), so callers ask for the seconds they need. Never below
# bounded.MIN_SAMPLE_RATE_HZ: the boundary checks every stream ffmpeg describes, our own outputs included.
PCM_RATE = 8000


@dataclass
class TranscodeResult:
    path: str
    duration_s: float
    size_bytes: int
    sha256: str
    source_format: str | None
    copied: bool  # MP3 input kept as is (remuxed, not re-encoded)
    truncated: bool
    elapsed_s: float
    pcm_path: str | None = None  # the PCM written beside the MP3, when asked for


def build_command(
    src: str,
    dst: str,
    *,
    bitrate_kbps: int = 64,
    mono: bool = False,
    loudness: bool = False,
    max_duration_s: float | None = None,
    copy: bool = False,
    ffmpeg: str | None = None,
    pcm: str | None = None,
    pcm_max_s: float | None = None,
    container: str | None = None,
) -> list[str]:
    """ffmpeg's command line (without its log options: audio/bounded.py adds those) that writes `src`, read as
    `container` (default: what its bytes are), as MP3 to `dst`."""
    cmd = [
        ffmpeg or ffmpeg_binary(),
        "-nostdin",
        "-hide_banner",
        "-y",
        *input_args(src, container or sniff_file(src)),
        "-map",
        "0:a:0",
        "-vn",
        "-sn",
        "-dn",
        "-map_metadata",
        "-1",
    ]
    if max_duration_s:
        cmd += ["-t", f"{max_duration_s:.3f}"]
    if copy:
        cmd += ["-c:a", "copy"]
    else:
        filters = [AT_MOST_STEREO] + ([LOUDNORM] if loudness else []) + [f"aformat=sample_rates={MP3_SAMPLE_RATES}"]
        cmd += ["-af", ",".join(filters)]
        if mono:
            cmd += ["-ac", "1"]
        # ABR: the channel's bitrate on average over speech, while silence (hours of it in a few hundred KB of
        # FLAC or Opus) drops to the smallest frames instead of costing full bitrate.
        cmd += ["-c:a", "libmp3lame", "-b:a", f"{int(bitrate_kbps)}k", "-abr", "1"]
    cmd += ["-f", "mp3", dst]
    if pcm:
        # From the decoded input, not from the MP3: the encoder's filters and rate do not touch it.
        cmd += _pcm_output(pcm, min(filter(None, (max_duration_s, pcm_max_s)), default=None))
    return cmd


def _pcm_output(pcm: str, max_s: float | None, rate: int = PCM_RATE) -> list[str]:
    args = ["-map", "0:a:0", "-ac", "1", "-ar", str(rate), "-c:a", "pcm_s16le"]
    if max_s:
        args += ["-t", f"{max_s:.3f}"]
    return args + ["-f", "s16le", pcm]


def decode_to_pcm(
    src: str,
    pcm: str,
    *,
    max_s: float | None = None,
    rate: int = PCM_RATE,
    timeout_s: float = 60,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> float:
    """The first `max_s` seconds of `src` (read as what its bytes are) as `rate` Hz mono s16le in the file `pcm`;
    answers the seconds decoded. AudioError as transcode_to_mp3 raises it."""
    if os.path.getsize(src) == 0:
        raise AudioError("the file is empty (0 bytes)")
    command = [ffmpeg_binary(), "-nostdin", "-hide_banner", "-y", *input_args(src, sniff_file(src))]
    return run_ffmpeg([*command, *_pcm_output(pcm, max_s, rate)], Bounds(timeout_s, memory_mb))


def transcode_to_mp3(
    src: str,
    dst: str,
    *,
    bitrate_kbps: int = 64,
    mono: bool = False,
    loudness: bool = False,
    max_duration_s: float | None = None,
    timeout_s: float = 120,
    memory_mb: int = DEFAULT_MEMORY_MB,
    keep_mp3: bool = True,
    on_progress: Callable[[float], None] | None = None,
    pcm_path: str | None = None,
    pcm_max_s: float | None = None,
) -> TranscodeResult:
    """Transcode `src` into the MP3 file `dst`; raise AudioError with a human reason when it cannot be done.
    With `pcm_path`, the same process also writes the first `pcm_max_s` seconds there as PCM_RATE mono s16le."""
    started = time.monotonic()
    outcome = "error"
    try:
        result = _transcode(
            src,
            dst,
            bitrate_kbps=bitrate_kbps,
            mono=mono,
            loudness=loudness,
            max_duration_s=max_duration_s,
            bounds=Bounds(timeout_s, memory_mb),
            keep_mp3=keep_mp3,
            on_progress=on_progress,
            pcm=pcm_path,
            pcm_max_s=pcm_max_s,
        )
        outcome = "ok"
        return result
    except AudioTimeout:
        outcome = "timeout"
        raise
    except AudioError:
        outcome = "not_audio"
        raise
    finally:
        TRANSCODE_SECONDS.labels(outcome).observe(time.monotonic() - started)


def _transcode(
    src: str,
    dst: str,
    *,
    bitrate_kbps: int,
    mono: bool,
    loudness: bool,
    max_duration_s: float | None,
    bounds: Bounds,
    keep_mp3: bool,
    on_progress: Callable[[float], None] | None,
    pcm: str | None,
    pcm_max_s: float | None,
) -> TranscodeResult:
    source_format = _checked_source(src, bitrate_kbps)
    copy = keep_mp3 and source_format == "mp3" and not loudness and not mono
    started = time.monotonic()
    command = functools.partial(
        build_command,
        src,
        dst,
        bitrate_kbps=bitrate_kbps,
        max_duration_s=max_duration_s,
        pcm=pcm,
        pcm_max_s=pcm_max_s,
        container=source_format,
    )
    if copy:
        duration, copy = _copy_else_decode(command, bounds, on_progress, started)
    else:
        duration = run_ffmpeg(command(mono=mono, loudness=loudness, copy=False), bounds, on_progress)
    out_size = os.path.getsize(dst) if os.path.exists(dst) else 0
    if duration <= 0 or out_size == 0:
        raise AudioError("no audio could be decoded (zero-length result)")
    truncated = bool(max_duration_s and duration >= max_duration_s - 0.05)
    return TranscodeResult(
        dst, duration, out_size, _sha256_of(dst), source_format, copy, truncated, time.monotonic() - started, pcm
    )


def _copy_else_decode(
    command: Callable[..., list[str]],
    bounds: Bounds,
    on_progress: Callable[[float], None] | None,
    started: float,
) -> tuple[float, bool]:
    """MP3 kept as it is (a stream copy), or decoded after all when the copy fails or yields nothing. Answers the
    duration and whether it was copied."""
    try:
        duration = run_ffmpeg(command(mono=False, loudness=False, copy=True), bounds, on_progress)
    except (AudioTimeout, AudioRefused):
        raise
    except AudioError:
        # MPEG audio the MP3 muxer refuses to copy (MPEG-2.5 layer III oddities, a broken first frame): decode.
        duration = 0.0
    if duration > 0:
        return duration, True
    # A file that only looks like MP3 (a stray sync word): decode it properly instead, within what is left of the
    # one time limit.
    remaining = bounds.timeout_s - (time.monotonic() - started)
    if remaining <= 0:
        raise AudioTimeout(f"ffmpeg ran longer than {bounds.timeout_s:g} s and was stopped")
    return run_ffmpeg(command(), dataclasses.replace(bounds, timeout_s=remaining), on_progress), False


def _checked_source(src: str, bitrate_kbps: int) -> str | None:
    """The source's format, once the request is one ffmpeg can be asked for."""
    if bitrate_kbps not in BITRATES_KBPS:
        raise ValueError(f"bitrate {bitrate_kbps} kbps is not one of {BITRATES_KBPS}")
    if os.path.getsize(src) == 0:
        raise AudioError("the file is empty (0 bytes)")
    container = sniff_file(src)
    demuxer_for(container)  # AudioError now, with the reason, for anything that is no audio container we read
    return container


def _sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
