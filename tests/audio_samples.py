"""Test audio, generated with ffmpeg at test time (nothing binary is committed)."""

from __future__ import annotations

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


def make_audio(path, kind: str, seconds: float = 3.0) -> str:
    extension, _, encoder, sample_rate = KINDS[kind]
    graph = VOICE.format(d=seconds, sr=sample_rate)
    subprocess.run([ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-filter_complex", graph,
                    "-ac", "1", "-ar", str(sample_rate), "-t", str(seconds), *encoder, str(path)], check=True)
    return str(path)


def content_type(kind: str) -> str:
    return KINDS[kind][1]


def decoded_duration(path) -> float:
    """What a player gets: decode the whole file and read ffmpeg's final timestamp."""
    done = subprocess.run([ffmpeg_binary(), "-nostdin", "-hide_banner", "-i", str(path), "-f", "null", "-"],
                          capture_output=True, text=True, check=True)
    times = re.findall(r"time=(\d+):(\d+):(\d+\.\d+)", done.stderr)
    hours, minutes, seconds = times[-1]
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def stream_info(path) -> str:
    done = subprocess.run([ffmpeg_binary(), "-nostdin", "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return "\n".join(line for line in done.stderr.splitlines() if "Stream #" in line)
