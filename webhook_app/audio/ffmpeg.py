"""Which ffmpeg we run: FFMPEG_BINARY, else the system one on PATH, else the imageio-ffmpeg wheel's.

No step may need apt or a download: the wheel always has a binary for the platform.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import warnings

# "Stream #0:0(eng): Audio: opus, 48000 Hz, mono, fltp" -> codec, rate, layout, sample format
STREAM_LINE = re.compile(r"Stream #\d+:(\d+)[^:]*: Audio: (\w+)[^,]*, (\d+) Hz, ([^,]+), (\w+)")
BITS_PER_SAMPLE = {"u8": 8, "s16": 16, "s32": 32, "s64": 64, "flt": 32, "dbl": 64}


@functools.lru_cache(maxsize=1)
def ffmpeg_binary() -> str:
    configured = os.environ.get("FFMPEG_BINARY")
    if configured:
        found = shutil.which(configured)
        if not found:
            raise RuntimeError(f"FFMPEG_BINARY={configured!r} is not an executable")
        return found
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


PROBE_TIMEOUT_S = 30
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """preexec_fn for ffmpeg: on Linux the kernel kills it when the process that started it dies, so a job killed
    mid-transcode (SIGKILL, OOM) does not leave ffmpeg running on to the end with no one to read its output."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def probe_with_ffmpeg(filepath, read_ahead_limit=-1) -> dict:
    """The part of ffprobe's JSON that pydub reads, from `ffmpeg -i` (the imageio-ffmpeg wheel has no ffprobe)."""
    # Reading the header only; a file that stalls even that (a FIFO, a hostile container) must not hang a worker.
    done = subprocess.run([ffmpeg_binary(), "-nostdin", "-hide_banner", "-i", os.fspath(filepath)],
                          capture_output=True, text=True, errors="replace", timeout=PROBE_TIMEOUT_S,
                          preexec_fn=die_with_parent)
    streams = []
    for match in STREAM_LINE.finditer(done.stderr):
        index, codec, rate, layout, sample_fmt = match.groups()
        bits = BITS_PER_SAMPLE.get(sample_fmt.rstrip("p"), 16)
        streams.append({"index": int(index), "codec_type": "audio", "codec_name": codec, "sample_rate": rate,
                        "channels": 1 if layout.strip() == "mono" else 2, "sample_fmt": sample_fmt,
                        "bits_per_sample": bits})
    return {"streams": streams, "format": {}}


def configure_pydub() -> None:
    """pydub looks for ffmpeg and ffprobe on PATH only: point it at our ffmpeg, and probe with it too."""
    with warnings.catch_warnings():
        # pydub warns at import when ffmpeg is not on PATH; we set its converter right below.
        warnings.filterwarnings("ignore", message="Couldn't find ff", category=RuntimeWarning)
        from pydub import AudioSegment, audio_segment, utils

    AudioSegment.converter = ffmpeg_binary()
    if not ffprobe_on_path_beside(AudioSegment.converter):
        # No ffprobe (the wheel ships none), or one from another installation than the ffmpeg we decode with
        # (FFMPEG_BINARY elsewhere): probe with our ffmpeg, so one ffmpeg build reads every file.
        audio_segment.mediainfo_json = probe_with_ffmpeg
        utils.mediainfo_json = probe_with_ffmpeg


def ffprobe_on_path_beside(ffmpeg: str) -> bool:
    """Whether the ffprobe pydub would find on PATH is the one installed next to `ffmpeg`."""
    on_path = shutil.which("ffprobe")
    return on_path is not None and os.path.samefile(os.path.dirname(os.path.abspath(on_path)),
                                                    os.path.dirname(os.path.abspath(ffmpeg)))
