"""Any voice note -> MP3, through one streaming ffmpeg process.

ffmpeg reads the source file and writes the MP3 to a seekable file: decoded PCM never passes through Python,
so memory stays flat however long the recording is. Writing to a file rather than a pipe lets the muxer go
back and fill the Xing/LAME header (frame count, encoder delay and padding), which players need to report
and trim the duration exactly.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..metrics import TRANSCODE_SECONDS
from .detect import sniff_file
from .ffmpeg import die_with_parent, ffmpeg_binary

log = logging.getLogger(__name__)

# MP3 allows 8-48 kHz, but narrowband sources (8 kHz AMR) at 8 kHz leave large encoder padding; letting ffmpeg
# pick the nearest of these rates upsamples those and passes everything else through untouched.
MP3_SAMPLE_RATES = "16000|22050|24000|32000|44100|48000"
# EBU R128 target for speech played back in a browser.
LOUDNORM = "loudnorm=I=-16:TP=-1.5:LRA=11"
BITRATES_KBPS = (32, 48, 64, 96, 128)
# The PCM that Python may inspect (audio/silence.py), written by the same ffmpeg process beside the MP3, so nothing
# is decoded twice: mono, 16-bit, at a rate that keeps speech and costs 16 KB a second. Resampling is most of its
# cost (a 60 s clip whole: +10-20% CPU on the transcode), so callers ask for the seconds they need.
PCM_RATE = 8000


class AudioError(Exception):
    """The input is not audio we can decode (a permanent failure: retrying will not help)."""


class AudioTimeout(AudioError):
    pass


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
) -> list[str]:
    cmd = [
        ffmpeg or ffmpeg_binary(),
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-i",
        src,
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
        filters = ([LOUDNORM] if loudness else []) + [f"aformat=sample_rates={MP3_SAMPLE_RATES}"]
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


def _pcm_output(pcm: str, max_s: float | None) -> list[str]:
    args = ["-map", "0:a:0", "-ac", "1", "-ar", str(PCM_RATE), "-c:a", "pcm_s16le"]
    if max_s:
        args += ["-t", f"{max_s:.3f}"]
    return args + ["-f", "s16le", pcm]


def decode_to_pcm(src: str, pcm: str, *, max_s: float | None = None, timeout_s: float = 60) -> float:
    """`src`'s first `max_s` seconds as PCM_RATE mono s16le in the file `pcm`; answers the seconds decoded."""
    return _run(
        [ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", src, *_pcm_output(pcm, max_s)],
        timeout_s,
        None,
    )


def transcode_to_mp3(
    src: str,
    dst: str,
    *,
    bitrate_kbps: int = 64,
    mono: bool = False,
    loudness: bool = False,
    max_duration_s: float | None = None,
    timeout_s: float = 120,
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
            timeout_s=timeout_s,
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
    timeout_s: float,
    keep_mp3: bool,
    on_progress: Callable[[float], None] | None,
    pcm: str | None,
    pcm_max_s: float | None,
) -> TranscodeResult:
    source_format = _checked_source(src, bitrate_kbps)
    copy = keep_mp3 and source_format == "mp3" and not loudness and not mono
    started = time.monotonic()
    try:
        duration = _run(
            build_command(
                src,
                dst,
                bitrate_kbps=bitrate_kbps,
                mono=mono,
                loudness=loudness,
                max_duration_s=max_duration_s,
                copy=copy,
                pcm=pcm,
                pcm_max_s=pcm_max_s,
            ),
            timeout_s,
            on_progress,
        )
    except AudioTimeout:
        raise
    except AudioError:
        if not copy:
            raise
        # ID3 tags open AAC and FLAC files too, whose streams the MP3 muxer refuses to copy: decode instead.
        duration = 0.0
    if copy and duration <= 0:
        # A file that only looks like MP3 (a stray sync word or an ID3 tag): decode it properly instead, within
        # what is left of the one time limit.
        copy = False
        remaining = timeout_s - (time.monotonic() - started)
        if remaining <= 0:
            raise AudioTimeout(f"ffmpeg ran longer than {timeout_s:g} s and was stopped")
        command = build_command(
            src, dst, bitrate_kbps=bitrate_kbps, max_duration_s=max_duration_s, pcm=pcm, pcm_max_s=pcm_max_s
        )
        duration = _run(command, remaining, on_progress)
    out_size = os.path.getsize(dst) if os.path.exists(dst) else 0
    if duration <= 0 or out_size == 0:
        raise AudioError("no audio could be decoded (zero-length result)")
    truncated = bool(max_duration_s) and duration >= max_duration_s - 0.05
    return TranscodeResult(
        dst, duration, out_size, _sha256_of(dst), source_format, copy, truncated, time.monotonic() - started, pcm
    )


def _checked_source(src: str, bitrate_kbps: int) -> str:
    """The source's format, once the request is one ffmpeg can be asked for."""
    if bitrate_kbps not in BITRATES_KBPS:
        raise ValueError(f"bitrate {bitrate_kbps} kbps is not one of {BITRATES_KBPS}")
    if os.path.getsize(src) == 0:
        raise AudioError("the file is empty (0 bytes)")
    return sniff_file(src)


def _sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _run(cmd: list[str], timeout_s: float, on_progress: Callable[[float], None] | None) -> float:
    """Run ffmpeg with a hard wall-clock limit; answer the output duration in seconds."""
    cmd = [cmd[0], "-progress", "pipe:1", "-nostats", *cmd[1:]]
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, preexec_fn=die_with_parent
        )
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        watchdog = threading.Timer(timeout_s, kill)
        watchdog.daemon = True
        watchdog.start()
        out_time_us = 0
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                key, _, value = raw.decode("ascii", "replace").strip().partition("=")
                if key == "out_time_us" and value.lstrip("-").isdigit():
                    out_time_us = max(out_time_us, int(value))
                    if on_progress is not None:
                        on_progress(out_time_us / 1e6)
            returncode = proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if timed_out.is_set():
            raise AudioTimeout(f"ffmpeg ran longer than {timeout_s:g} s and was stopped")
        if returncode != 0:
            stderr.seek(0)
            raise AudioError(_reason(stderr.read().decode("utf-8", "replace")))
    return out_time_us / 1e6


DIRECTORY_PART = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\s\\/:'\"]+)+[\\/]")


def _reason(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = " ".join(lines)
    if "matches no streams" in text or "does not contain any stream" in text:
        return "the file has no audio stream"
    if "Invalid data found when processing input" in text or "could not find codec parameters" in text.lower():
        return "not decodable audio (ffmpeg: invalid data found when processing input)"
    detail = lines[-1] if lines else "ffmpeg failed without a message"
    # ffmpeg names its files by path: the reason reaches agents, admins and CSV exports, our temp folders must not.
    detail = DIRECTORY_PART.sub("", detail)
    return f"not decodable audio (ffmpeg: {detail[:300]})"
