"""Which ffmpeg we run: FFMPEG_BINARY, else the system one on PATH, else the imageio-ffmpeg wheel's.

No step may need apt or a download: the wheel always has a binary for the platform.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import sys


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
