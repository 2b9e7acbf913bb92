"""Transcode benchmark (make bench): the service's path vs bare ffmpeg vs naive pydub, side by side.

For each input, every variant runs in a fresh process (so peak RSS is its own), three times; the median wall
time and the largest peak RSS are reported. Targets: service/bare wall time <= 1.10, and service peak
RSS <= 100 MB on the 17-minute file and flat as duration grows.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from _webhooks import make_voice_note  # noqa: E402

from webhook_app.audio.ffmpeg import ffmpeg_binary  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
INPUTS = [
    # name, seconds, sample rate, opus bitrate, container
    ("voice note 60 s, Ogg/Opus 16 kHz", 60, 16000, "24k", "ogg"),
    ("recording 5 min, WebM/Opus 48 kHz", 300, 48000, "128k", "webm"),
    ("recording 17 min, WebM/Opus 48 kHz (~16 MB)", 1020, 48000, "128k", "webm"),
]
VARIANTS = ["service", "bare", "pydub"]


def measure(variant: str, source: str, dest: str) -> dict:
    done = subprocess.run(
        [sys.executable, os.path.join(HERE, "_measure.py"), variant, source, dest],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    print(f"ffmpeg: {ffmpeg_binary()}")
    print(
        f"{RUNS} runs per variant, the variants in turn; wall and CPU (python + ffmpeg) = median, RSS = peak of the"
        " variant's process tree (max of runs)\n"
    )
    header = (
        f"{'input':46} {'variant':8} {'wall s':>8} {'vs bare':>8} {'CPU s':>7} {'vs bare':>8}"
        f" {'peak RSS MB':>12}  (python + ffmpeg)"
    )
    print(header)
    print("-" * len(header))
    failures = []
    service_rss = []
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        for name, seconds, sample_rate, bitrate, container in INPUTS:
            source = os.path.join(workdir, f"in-{seconds}.{container}")
            make_voice_note(source, seconds, sample_rate, bitrate, container)
            results = {}
            # Variants take turns, run by run: this machine's speed drifts from minute to minute, and a block of
            # one variant's runs followed by a block of another's would compare two different machines.
            runs_of = {variant: [] for variant in VARIANTS}
            for _ in range(RUNS):
                for variant in VARIANTS:
                    runs_of[variant].append(measure(variant, source, os.path.join(workdir, f"out-{variant}.mp3")))
            for variant, runs in runs_of.items():
                results[variant] = {
                    "wall": statistics.median(r["wall_s"] for r in runs),
                    "cpu": statistics.median(r["cpu_s"] for r in runs),
                    "self_mb": max(r["self_rss_kb"] for r in runs) / 1024,
                    "child_mb": max(r["child_rss_kb"] for r in runs) / 1024,
                }
            size_mb = os.path.getsize(source) / 1e6
            bare = results["bare"]["wall"]
            for variant in VARIANTS:
                r = results[variant]
                total = r["child_mb"] + (r["self_mb"] if variant != "bare" else 0)
                label = f"{name} [{size_mb:.1f} MB]" if variant == "service" else ""
                print(
                    f"{label:46} {variant:8} {r['wall']:8.3f} {r['wall'] / bare:8.2f} {r['cpu']:7.3f}"
                    f" {r['cpu'] / results['bare']['cpu']:8.2f} {total:12.1f}"
                    f"  ({r['self_mb'] if variant != 'bare' else 0:.0f} + {r['child_mb']:.0f})"
                )
            ratio = results["service"]["wall"] / bare
            service_total = results["service"]["self_mb"] + results["service"]["child_mb"]
            service_rss.append(service_total)
            if ratio > 1.10:
                failures.append(f"{name}: service/bare wall time {ratio:.2f} > 1.10")
            if seconds >= 1000 and service_total > 100:
                failures.append(f"{name}: service peak RSS {service_total:.0f} MB > 100 MB")
            print()
    growth = service_rss[-1] - service_rss[0]
    print(f"service peak RSS from 60 s to 17 min: {service_rss[0]:.1f} -> {service_rss[-1]:.1f} MB (+{growth:.1f} MB)")
    if growth > 20:
        failures.append(f"service RSS grows with duration (+{growth:.0f} MB)")
    for failure in failures:
        print("TARGET MISSED:", failure)
    print("all targets met" if not failures else f"{len(failures)} target(s) missed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
