"""An agent's recording as the channel takes it: converted to mono MP3 at the channel's bitrate, its duration and
size held to the channel's caps, and a muted microphone refused."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator

from flask import current_app

from ..audio.silence import is_digital_silence
from ..audio.transcode import AudioError, AudioTimeout, TranscodeResult, transcode_to_mp3
from ..domain_errors import DomainError
from ..humanize import format_bytes
from ..settings.cache import Settings

log = logging.getLogger(__name__)

# Clips up to this long are also checked for digital silence (a muted microphone records zeros).
SILENCE_CHECK_MAX_S = 120
SILENCE_PROBE_S = 5
# The record panel stops a take just before the cap, but MediaRecorder delivers its last chunk a little after
# the stop: a clip stopped at the cap must not be refused for a fraction of a second.
DURATION_TOLERANCE_S = 0.5
# How long an upload waits for one of its process's conversion slots before the agent is told to retry: long enough
# to ride out a burst of sends, short enough that a flood does not pile up web threads.
SLOT_WAIT_S = 5.0
RETRY_AFTER_S = 2


@contextlib.contextmanager
def conversion_slot() -> Iterator[None]:
    """One of this process's CONVERSIONS_PER_PROCESS conversions, or DomainError `busy` (with a retry after).

    Conversion runs inside the agent's request: without a bound, a burst of uploads (or one token holder) would run
    as many ffmpegs as the web process has threads, each allowed FFMPEG_MAX_MEMORY_MB."""
    config = current_app.config
    slots = current_app.extensions.setdefault(
        "conversion_slots", threading.BoundedSemaphore(config["CONVERSIONS_PER_PROCESS"])
    )
    if not slots.acquire(timeout=SLOT_WAIT_S):
        log.warning("all %d conversion slots of this process are busy", config["CONVERSIONS_PER_PROCESS"])
        raise DomainError(
            "busy",
            f"this server is converting {config['CONVERSIONS_PER_PROCESS']} recordings already; "
            f"send again in {RETRY_AFTER_S} s",
            retry_after_s=RETRY_AFTER_S,
        )
    try:
        yield
    finally:
        slots.release()


def convert(upload_path: str, mp3_path: str, settings: Settings, audit_id: int) -> TranscodeResult:
    """The recording as MP3 at `mp3_path`; DomainError when it cannot be converted."""
    config = current_app.config
    timeout_s = config["FFMPEG_TIMEOUT_S"]
    try:
        # Decode one second past the cap: enough to know the recording is too long, no more.
        # The first seconds for the silence check come out of the same ffmpeg run as PCM: the MP3 of a clip that
        # is not silent from the start is never decoded again.
        with conversion_slot():
            return transcode_to_mp3(
                upload_path,
                mp3_path,
                bitrate_kbps=settings.bitrate_kbps,
                mono=True,
                max_duration_s=settings.max_duration_s + 1,
                timeout_s=timeout_s,
                memory_mb=config["FFMPEG_MAX_MEMORY_MB"],
                pcm_path=os.path.splitext(mp3_path)[0] + ".pcm",
                pcm_max_s=SILENCE_PROBE_S,
            )
    except AudioTimeout as exc:
        # Not undecodable (400): valid audio too long to convert within FFMPEG_TIMEOUT_S, which a duration cap
        # of hours allows. Too large to take, then; and an error line, since the operator may need to act.
        log.error("outbound audit %s: conversion timed out: %s", audit_id, exc)
        raise DomainError(
            "conversion_timeout",
            f"converting the recording took longer than {timeout_s:g} s; "
            "send a shorter one or ask an admin to lower the duration "
            "cap",
        ) from exc
    except AudioError as exc:
        code = "empty_audio" if "zero-length" in str(exc) or "empty" in str(exc) else "not_audio"
        raise DomainError(code, str(exc)) from exc


def check_caps(result: TranscodeResult, settings: Settings) -> None:
    """DomainError when the MP3 is longer or larger than the channel takes, or silent."""
    if result.duration_s > settings.max_duration_s + DURATION_TOLERANCE_S:
        raise DomainError(
            "too_long",
            f"the recording is longer than the {settings.channel} limit of {_duration_text(settings.max_duration_s)}",
        )
    if result.size_bytes > settings.max_bytes:
        raise DomainError(
            "too_large",
            f"the recording is {format_bytes(result.size_bytes)} as MP3; "
            f"{settings.channel} allows at most {format_bytes(settings.max_bytes)} "
            "per file",
        )
    if result.duration_s <= SILENCE_CHECK_MAX_S and _is_digital_silence(result):
        raise DomainError("silent_audio", "the recording is silent: is the microphone muted?")


def _is_digital_silence(result: TranscodeResult) -> bool:
    """Whether the MP3 we made is all zeros; False when it cannot be told (its decode failed: our own MP3, so the
    check gives way rather than refuse the agent's recording for it)."""
    try:
        return is_digital_silence(result, SILENCE_CHECK_MAX_S)
    except AudioError as exc:
        log.warning("silence check of %s skipped: %s", result.path, exc)
        return False


def _duration_text(seconds: int) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes and rest else (f"{minutes} min" if minutes else f"{rest} s")
