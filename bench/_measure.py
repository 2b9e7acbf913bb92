"""Runs one transcode variant in this fresh process and prints its wall time and peak RSS as JSON."""

import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pydub import AudioSegment  # noqa: E402

from webhook_app.audio.ffmpeg import ffmpeg_binary  # noqa: E402
from webhook_app.audio.transcode import build_command, transcode_to_mp3  # noqa: E402


def peak_rss_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


variant, source, dest = sys.argv[1:4]
outcome = "converted"
# pydub's documented setting for an ffmpeg off PATH (the service itself never has pydub run ffmpeg).
AudioSegment.converter = ffmpeg_binary()

started = time.perf_counter()
if variant == "service":
    transcode_to_mp3(source, dest, bitrate_kbps=64, timeout_s=600)
elif variant.startswith("inbound"):
    # As the inbound job runs it with the default settings (64 kb/s, the 900 s channel cap); "inbound+loudness"
    # with loudness normalization on. A refusal is an outcome, not a failure.
    from webhook_app.audio.transcode import AudioError

    try:
        made = transcode_to_mp3(source, dest, max_duration_s=900, loudness=variant.endswith("+loudness"))
        outcome = f"{made.size_bytes} bytes"
    except AudioError as error:
        outcome = f"refused: {error}"
elif variant == "bare":
    # The same encoder settings as the service, as one plain command line.
    command = build_command(source, dest, bitrate_kbps=64)
    subprocess.run([command[0], "-loglevel", "error", *command[1:]], check=True)
elif variant == "pydub":
    # The codec named, so pydub needs no ffprobe to read the file (the imageio-ffmpeg wheel ships none).
    AudioSegment.from_file(source, codec="opus").export(dest, format="mp3", bitrate="64k")
else:
    raise SystemExit(f"unknown variant {variant}")
wall = time.perf_counter() - started
me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(
    json.dumps(
        {
            "outcome": outcome,
            "wall_s": wall,
            # The whole process's CPU (imports included, the same for every variant) plus ffmpeg's: what the work costs,
            # whatever else the machine was doing meanwhile.
            "cpu_s": me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime,
            # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the process that started this one (the bench,
            # with all it imported), which made this process look 13 MB larger than it ever was.
            "self_rss_kb": peak_rss_kb(),
            "child_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        }
    )
)
