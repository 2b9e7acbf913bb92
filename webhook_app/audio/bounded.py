"""Every ffmpeg that reads a stranger's bytes runs inside these bounds.

- It reads exactly the file it was given, as the container our own sniff (detect.py) found: the demuxer is named,
  never probed. ffmpeg's probe would open a "voice note" that is an HLS or DASH playlist, an ffconcat list or an SDP
  file as one and fetch what it points to (`file:///…` on the worker's disk, `http://…` anywhere), straight into
  the customer's MP3. Named, a playlist is only bytes that fail to parse as Ogg or MP3. The one protocol it may
  open is `file`, and only the demuxer we named, so nothing inside a container can reach further.
- Its input stream must be what a voice note can be: ffmpeg describes the stream (rate, channels) before it
  decodes a frame, and the frames once the first is decoded; it is stopped there with the reason when either is
  absurd. A 20 KB WAV that declares 1 Hz
  made ffmpeg resample 900 s to 16 kHz in frames of an hour each: 820 MB for one inbound job.
- Its memory (RLIMIT_DATA: heap and private mappings, what a decoder allocates), CPU time (RLIMIT_CPU) and wall
  clock are capped, and it dies with the process that started it.
"""

from __future__ import annotations

import math
import re
import resource
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .ffmpeg import die_with_parent

# Our containers (detect.sniff) -> the ffmpeg demuxer that reads them. Nothing else is ever opened.
DEMUXERS = {
    "ogg": "ogg",
    "webm": "matroska",
    "amr": "amr",
    "amr-wb": "amr",
    "wav": "wav",
    "flac": "flac",
    "caf": "caf",
    "mp4": "mov",
    "3gp": "mov",
    "mp3": "mp3",
    "aac": "aac",
}
# What a voice note can be: narrowband AMR and telephone WAV at 8 kHz up to studio WAV at 192 kHz; mono to 7.1.
MIN_SAMPLE_RATE_HZ = 8_000
MAX_SAMPLE_RATE_HZ = 192_000
MAX_CHANNELS = 8
# FFMPEG_MAX_MEMORY_MB's default: a legitimate note peaks at 40-150 MB resident, up to ~230 MB allocated (what
# RLIMIT_DATA counts; docs/benchmarks.md).
DEFAULT_MEMORY_MB = 512
# The CPU cap comes on top of the wall-clock one: a run may use more than one core (ffmpeg 7+ runs demuxing,
# decoding, filtering and encoding in threads of their own), so CPU seconds may exceed wall seconds a little.
CPU_ALLOWANCE = 1.5
# A hostile file can make ffmpeg warn once per frame: only the last lines are kept, for the reason.
STDERR_TAIL_LINES = 20
STDERR_LINE_MAX = 4096

NAMED_LAYOUTS = {"mono": 1, "stereo": 2, "downmix": 2, "binaural": 2, "quad": 4, "hexagonal": 6, "octagonal": 8}
LEVEL_PREFIX = re.compile(r"^(?:\[[^\]]*\]\s)*\[(?P<level>[a-z]+)\] ?")
# "  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 128 kb/s": an audio stream
# as ffmpeg describes it before decoding (the outputs' are ours, and sane).
AUDIO_STREAM = re.compile(
    r"^\s*Stream #\d+:\d+(?:\[[^\]]*\])?(?:\([^)]*\))?: Audio: .*?, (?P<rate>\d+) Hz, (?P<layout>[^,]+)"
)
# "tb:1/48000 samplefmt:fltp samplerate:48000 chlayout:mono" (verbose): what the decoded frames really are, as the
# filters are set up from the first one. A decoder may disagree with the header (a FLAC frame can say 1 Hz behind a
# 48 kHz header); after the first frame no change is taken (-reinit_filter 0).
FILTER_INPUT = re.compile(r"^tb:\S+ samplefmt:\S+ samplerate:(?P<rate>\d+) chlayout:(?P<layout>.+)$")
# ffmpeg catches SIGXCPU (RLIMIT_CPU's soft limit) and exits 255 saying so, at info level.
CPU_LIMIT_REACHED = f"received signal {int(signal.SIGXCPU)}"
DIRECTORY_PART = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\s\\/:'\"]+)+[\\/]")


class AudioError(Exception):
    """The input is not audio we can decode (a permanent failure: retrying will not help)."""


class AudioTimeout(AudioError):
    pass


class AudioRefused(AudioError):
    """The boundary stopped it: a stream no voice note has, or over the memory cap. Never worth a second run."""


@dataclass(frozen=True)
class Bounds:
    """What one ffmpeg run may spend."""

    timeout_s: float
    memory_mb: int = DEFAULT_MEMORY_MB


def demuxer_for(container: str | None) -> str:
    """The demuxer that reads `container` (detect.sniff's name); AudioError for anything else."""
    demuxer = DEMUXERS.get(container or "")
    if demuxer is None:
        raise AudioError(
            "not decodable audio (not a format we accept: Ogg, WebM, MP4/M4A, 3GP, AMR, WAV, FLAC, CAF, MP3 or AAC)"
        )
    return demuxer


def input_args(path: str, container: str | None) -> list[str]:
    """ffmpeg's input options for `path`, read as `container` and nothing else."""
    demuxer = demuxer_for(container)
    args = ["-protocol_whitelist", "file", "-format_whitelist", demuxer]
    if demuxer == "mov":
        args += ["-enable_drefs", "0"]  # an MP4's data references may name other files: never follow them
    # Frames that change rate or channels part-way would have ffmpeg rebuild its filters for them: refused instead.
    args += ["-reinit_filter", "0"]
    # "file:" so that no path is ever taken for another protocol's URL.
    return [*args, "-f", demuxer, "-i", f"file:{path}"]


def channel_count(layout: str) -> int | None:
    """Channels in ffmpeg's name of a layout ("mono", "5.1(side)", "7.1.4", "12 channels", "FL+FR+LFE")."""
    layout = layout.strip()
    counted = re.match(r"(\d+) channels", layout)
    if counted:
        return int(counted.group(1))
    base = layout.split("(", 1)[0].strip()
    if base in NAMED_LAYOUTS:
        return NAMED_LAYOUTS[base]
    if re.fullmatch(r"\d+(?:\.\d+)+", base):
        return sum(int(part) for part in base.split("."))
    if re.fullmatch(r"[A-Z]+(?:\+[A-Z]+)+", base):
        return base.count("+") + 1
    if re.fullmatch(r"0x[0-9a-fA-F]+", base):
        return int(base, 16).bit_count()  # a channel mask
    return None


def stream_problem(sample_rate: int, channels: int | None) -> str | None:
    """Why a stream of this rate and channel count is no voice note we decode, or None when it may be one."""
    if not MIN_SAMPLE_RATE_HZ <= sample_rate <= MAX_SAMPLE_RATE_HZ:
        return (
            f"the audio declares a sample rate of {sample_rate} Hz; voice notes are "
            f"{MIN_SAMPLE_RATE_HZ // 1000}-{MAX_SAMPLE_RATE_HZ // 1000} kHz"
        )
    if channels is None or not 1 <= channels <= MAX_CHANNELS:
        return f"the audio declares {channels or 'an unknown number of'} channels; voice notes have 1 to {MAX_CHANNELS}"
    return None


def run_ffmpeg(cmd: list[str], bounds: Bounds, on_progress: Callable[[float], None] | None = None) -> float:
    """Run ffmpeg (`cmd`: the binary first) inside `bounds`; answer the output's duration in seconds.

    AudioTimeout when a time limit stopped it, AudioError with a human reason for everything else it refused."""
    cmd = [cmd[0], "-progress", "pipe:1", "-nostats", "-loglevel", "level+verbose", *cmd[1:]]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_limits_for_child(bounds),
    )
    stderr = _StderrWatch(proc)
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    watchdog = threading.Timer(bounds.timeout_s, kill)
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
        stderr.join()
    _raise_for_outcome(returncode, timed_out.is_set(), stderr, bounds)
    return out_time_us / 1e6


def _raise_for_outcome(returncode: int, timed_out: bool, stderr: _StderrWatch, bounds: Bounds) -> None:
    if stderr.refusal:
        raise AudioRefused(stderr.refusal)
    if timed_out:
        raise AudioTimeout(f"ffmpeg ran longer than {bounds.timeout_s:g} s and was stopped")
    if returncode == -signal.SIGXCPU or (returncode != 0 and stderr.cpu_limit_reached):
        raise AudioTimeout(f"ffmpeg used more than {_cpu_seconds(bounds)} s of CPU time and was stopped")
    if returncode == 0:
        return
    errors = stderr.errors()
    if any("Cannot allocate memory" in line for line in errors):
        raise AudioRefused(f"decoding needed more than the {bounds.memory_mb} MB an audio file may use")
    if returncode < 0:
        raise AudioError(f"ffmpeg was stopped by signal {-returncode}")
    raise AudioError(reason(errors))


def reason(lines: list[str]) -> str:
    """What to tell agents, admins and CSV exports about ffmpeg's error lines."""
    lines = [line.strip() for line in lines if line.strip()]
    text = " ".join(lines)
    if "matches no streams" in text or "does not contain any stream" in text:
        return "the file has no audio stream"
    if "Changing audio frame properties on the fly is not supported" in text:  # -reinit_filter 0 refused it
        return "the audio changes its sample rate or channels part-way through; a voice note does not"
    if "Invalid data found when processing input" in text or "could not find codec parameters" in text.lower():
        return "not decodable audio (ffmpeg: invalid data found when processing input)"
    detail = lines[-1] if lines else "ffmpeg failed without a message"
    # ffmpeg names its files by path (behind the "file:" we give it): the reason reaches agents, admins and CSV
    # exports, our temp folders must not.
    detail = DIRECTORY_PART.sub("", detail.replace("file:", ""))
    return f"not decodable audio (ffmpeg: {detail[:300]})"


def _cpu_seconds(bounds: Bounds) -> int:
    return math.ceil(bounds.timeout_s * CPU_ALLOWANCE)


def _limits_for_child(bounds: Bounds) -> Callable[[], None]:
    memory = bounds.memory_mb * 1024 * 1024
    cpu_s = _cpu_seconds(bounds)

    def limit() -> None:  # runs in the child between fork and exec: no locks, no allocation-heavy work
        die_with_parent()
        resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
        # SIGXCPU at the soft limit, SIGKILL a second later should it be ignored.
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a killed decoder must not write its memory to disk

    return limit


class _StderrWatch(threading.Thread):
    """Reads ffmpeg's log as it runs: keeps the last error lines, and stops ffmpeg the moment a description of the
    stream it reads (the header's or the decoded frames') is no voice note."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.refusal: str | None = None
        self.cpu_limit_reached = False
        self._tail: deque[tuple[str, str]] = deque(maxlen=STDERR_TAIL_LINES)
        self.start()

    def run(self) -> None:
        assert self.proc.stderr is not None
        while raw := self.proc.stderr.readline(STDERR_LINE_MAX):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            match = LEVEL_PREFIX.match(line)
            level, text = (match.group("level"), line[match.end() :]) if match else ("info", line)
            if self.refusal is None:
                self._check(text)
            if text.startswith("Exiting normally, received signal") and CPU_LIMIT_REACHED in text:
                self.cpu_limit_reached = True
            if level in ("error", "fatal", "panic"):
                self._tail.append((level, text))

    def _check(self, text: str) -> None:
        """Stop ffmpeg at the first description of a stream that no voice note has: the header's, before any frame is
        decoded, then the frames' own, as the filters are set up for them. Every such line is checked, whatever came
        before it: ffmpeg prints metadata keys raw, so a tag can print a line of its own choosing (a sane-looking
        stream, "Output #0"), and a line that could end the checking would let it hide the real one. A forged
        absurd line refuses only its own file."""
        described = AUDIO_STREAM.match(text) or FILTER_INPUT.match(text)
        if described is None:
            return
        self.refusal = stream_problem(int(described.group("rate")), channel_count(described.group("layout")))
        if self.refusal:
            self.proc.kill()

    def errors(self) -> list[str]:
        return [text for _, text in self._tail]
