"""Which ffmpeg we run: FFMPEG_BINARY, else the system one on PATH, else the imageio-ffmpeg wheel's.

No step may need apt or a download: the wheel always has a binary for the platform.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys

from ..config import ConfigError

# `ffmpeg -version` answers in milliseconds; this only bounds a binary that hangs, even on a loaded machine.
VERSION_TIMEOUT_S = 10


@functools.lru_cache(maxsize=1)
def ffmpeg_binary() -> str:
    configured = os.environ.get("FFMPEG_BINARY")
    if configured:
        found = shutil.which(configured)
        if not found:
            raise ConfigError(
                f"FFMPEG_BINARY={configured!r} is not an executable (the path of an ffmpeg, or unset: "
                "the one on PATH, else the imageio-ffmpeg wheel's)"
            )
        return found
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    import imageio_ffmpeg

    bundled: str = imageio_ffmpeg.get_ffmpeg_exe()  # untyped (no stubs): the path of the wheel's binary
    return bundled


def ffmpeg_in_use() -> tuple[str, str]:
    """The ffmpeg this process runs and its version, or a ConfigError saying why it cannot run: start-up refuses
    to serve without it (runtime/startup.py), /healthz reports it. Cheap after the first call: a look at the file."""
    binary = ffmpeg_binary()
    if not os.access(binary, os.X_OK):  # removed or replaced since it was chosen
        raise ConfigError(f"ffmpeg {binary} is no longer an executable")
    return binary, ffmpeg_version(binary)


@functools.lru_cache(maxsize=4)
def ffmpeg_version(binary: str) -> str:
    """The version `binary -version` reports (e.g. 5.1.6-0+deb12u1); a ConfigError when it does not run as an
    ffmpeg. Run once per binary and process: the version does not change under a running process."""
    try:
        done = subprocess.run(
            [binary, "-version"], capture_output=True, text=True, errors="replace", timeout=VERSION_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"ffmpeg {binary} does not run: {exc}") from None
    words = done.stdout.split(maxsplit=3)
    if done.returncode != 0 or words[:2] != ["ffmpeg", "version"] or len(words) < 3:
        said = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise ConfigError(f"{binary} is not a working ffmpeg: `{binary} -version` says {said[0][:200]!r}")
    return words[2]


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
