"""Test audio, generated with ffmpeg at test time (nothing binary is committed).

Samples are made by an ffmpeg that has the encoder they need, which need not be the service's: Debian's ffmpeg
decodes AMR but cannot encode it, and the point of the suite is that the *service* works with a distribution's
ffmpeg. So a sample comes from the service's ffmpeg when it can make it, else from the imageio-ffmpeg wheel's,
while everything that measures results (durations, stream info, loudness) uses the service's ffmpeg.
"""

from __future__ import annotations

import functools
import re
import subprocess

from webhook_app.audio.ffmpeg import ffmpeg_binary

# A voice-like signal: a tone gliding between pitches with a little noise, so codecs have something to code.
VOICE = "sine=f=220:d={d}:sample_rate={sr},volume=0.5[t];anoisesrc=d={d}:c=pink:a=0.05:r={sr}[n];[t][n]amix=inputs=2"

# kind: (file extension, content type as channels label it, encoder args, sample rate)
KINDS = {
    "whatsapp_ogg": (".ogg", "audio/ogg; codecs=opus", ["-c:a", "libopus", "-b:a", "24k"], 16000),
    "amr": (".amr", "audio/amr", ["-c:a", "libopencore_amrnb", "-b:a", "12.2k"], 8000),
    "aac_mp4": (".m4a", "audio/mp4", ["-c:a", "aac", "-b:a", "64k"], 44100),
    "3gp": (".3gp", "video/3gpp", ["-c:a", "libopencore_amrnb", "-b:a", "12.2k", "-f", "3gp"], 8000),
    "mp3": (".mp3", "audio/mpeg", ["-c:a", "libmp3lame", "-b:a", "64k"], 44100),
    "wav": (".wav", "audio/wav", ["-c:a", "pcm_s16le"], 16000),
    "webm": (".webm", "audio/webm", ["-c:a", "libopus", "-b:a", "32k", "-f", "webm"], 48000),
}

CODEC_OPTIONS = {"-c", "-codec", "-c:a", "-codec:a", "-acodec", "-c:v", "-codec:v", "-vcodec"}


@functools.cache
def encoders_of(binary: str) -> frozenset[str]:
    """The encoder names `binary -encoders` lists (cached per binary: asking costs a process start)."""
    listing = subprocess.run(
        [binary, "-nostdin", "-hide_banner", "-encoders"], capture_output=True, text=True, errors="replace", timeout=30
    ).stdout
    # The table starts after a " ------" rule; each row is "<flags> <name> <description>".
    _, _, table = listing.partition("------")
    return frozenset(row.split()[1] for row in table.splitlines() if len(row.split()) >= 2)


def wheel_ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_with(*encoders: str) -> str:
    """The first of the service's ffmpeg and the imageio-ffmpeg wheel's that has every one of `encoders`."""
    candidates = list(dict.fromkeys([ffmpeg_binary(), wheel_ffmpeg()]))
    for binary in candidates:
        if set(encoders) <= encoders_of(binary):
            return binary
    raise RuntimeError(
        f"no ffmpeg here can encode {', '.join(encoders)} to make this test's sample (tried {', '.join(candidates)})"
    )


def encoders_in(args) -> list[str]:
    """The encoders an ffmpeg command line names ("copy" is none)."""
    return [value for option, value in zip(args, args[1:]) if option in CODEC_OPTIONS and value != "copy"]


def run_ffmpeg(*args: str) -> None:
    """Make a test file with `ffmpeg -y <args>`, by an ffmpeg that has the encoders the arguments name."""
    subprocess.run(
        [ffmpeg_with(*encoders_in(args)), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True
    )


class LazySamples(dict):
    """name -> sample, each made on first use by `make(name)`: a sample that cannot be made here fails the tests
    that use it, not every test of a module (as one module-scoped fixture making them all would)."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, name):
        sample = self[name] = self.make(name)
        return sample


def make_audio(path, kind: str, seconds: float = 3.0) -> str:
    extension, _, encoder, sample_rate = KINDS[kind]
    graph = VOICE.format(d=seconds, sr=sample_rate)
    run_ffmpeg("-filter_complex", graph, "-ac", "1", "-ar", str(sample_rate), "-t", str(seconds), *encoder, str(path))
    return str(path)


def content_type(kind: str) -> str:
    return KINDS[kind][1]


def decoded_duration(path) -> float:
    """What a player gets: decode the whole file and read ffmpeg's final timestamp."""
    done = subprocess.run(
        [ffmpeg_binary(), "-nostdin", "-hide_banner", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    times = re.findall(r"time=(\d+):(\d+):(\d+\.\d+)", done.stderr)
    hours, minutes, seconds = times[-1]
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def stream_info(path) -> str:
    done = subprocess.run(
        [ffmpeg_binary(), "-nostdin", "-hide_banner", "-i", str(path)], capture_output=True, text=True
    )
    return "\n".join(line for line in done.stderr.splitlines() if "Stream #" in line)


# The EBU R128 target for speech in a browser (LOUDNORM in webhook_app/audio/transcode.py); real runs land within
# half a LU of it.
TARGET_LUFS = -16.0


def integrated_loudness(path) -> float:
    """EBU R128 integrated loudness (LUFS), measured by ffmpeg's ebur128 filter over the whole file."""
    done = subprocess.run(
        [ffmpeg_binary(), "-nostdin", "-hide_banner", "-i", str(path), "-af", "ebur128", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(re.findall(r"I:\s+(-?[\d.]+) LUFS", done.stderr)[-1])  # the last one is the summary


def mp3_bitrate_kbps(path) -> int:
    """The bitrate the MP3's frames declare, as ffmpeg reports it."""
    return int(re.search(r"Audio: mp3.*?(\d+) kb/s", stream_info(path)).group(1))
