"""Scratch space of jobs and uploads, and what a killed process leaves behind.

A job killed mid-work (SIGKILL, an OOM kill, a dyno stopped) cannot clean up: its temporary folder stays, with a
customer's original and a half-written MP3 in it (tens of MB each), and the ffmpeg it started would run on to the
end. So each scratch folder is named for the process that made it, and any folder whose process is gone is
removed, when a worker starts and at every maintenance run; and ffmpeg is told by the kernel to die with the
process that started it (audio/transcode.py).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile

log = logging.getLogger(__name__)

PREFIX = "webhook-app-"
LEFTOVER = re.compile(rf"{re.escape(PREFIX)}[a-z]+-(\d+)-")


def scratch_dir(kind: str) -> tempfile.TemporaryDirectory[str]:
    """A temporary folder for one job or upload (`kind`: inbound, outbound, upload), named for this process."""
    return tempfile.TemporaryDirectory(prefix=f"{PREFIX}{kind}-{os.getpid()}-")


def remove_dead_leftovers(root: str | None = None) -> int:
    """Remove the scratch folders of processes that no longer run; answer how many were removed."""
    root = root or tempfile.gettempdir()
    removed = 0
    try:
        entries = list(os.scandir(root))
    except OSError:
        log.exception("could not list %s for leftovers of killed jobs", root)
        return 0
    for entry in entries:
        match = LEFTOVER.match(entry.name)
        if not match or not entry.is_dir(follow_symlinks=False) or process_running(int(match.group(1))):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += 1
    if removed:
        log.info("removed %d scratch folders of killed jobs from %s", removed, root)
    return removed


def process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not ours to judge
    return True
