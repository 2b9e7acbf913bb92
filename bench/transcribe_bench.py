"""Transcription on the worker's CPU (make bench): speed, memory and accuracy of webhook_app/transcripts/engine.py.

All audio is made here, at run time: contact-center sentences spoken by espeak-ng, encoded as WhatsApp notes are
(Ogg/Opus, 16 kHz, 24 kb/s), then converted to MP3 by the service's own transcode (what a transcription job reads).

(a) Speed and memory, in a fresh process per model (this script with --child): model load time; RSS after importing
    the engine, after loading the model, and the peak (VmHWM) while a 60 s note is transcribed; real-time factor
    (transcription wall time / audio duration) of the 60 s note, median of BENCH_TRANSCRIBE_RUNS after one warm-up
    run, and its CPU time per audio second (less disturbed by other load on the machine).
    Then, in another fresh process, the peak while one note as long as the channels' default cap (900 s,
    BENCH_TRANSCRIBE_LONG_S; 0 skips it) is transcribed: the engine cuts it in pieces of at most 30 s.
    Targets (tiny.en, int8, 2 threads): real-time factor < 0.25; RSS with the model loaded and peak during the 60 s
    note < 400 MB. The long note's peak is reported, not a target.
(b) Accuracy: word error rate over BENCH_TRANSCRIBE_SENTENCES (25 sentences) x 2 voices x 2 speeds, scored after
    tests/helpers/speech_samples.py's normalize() (case, punctuation, numbers as digits, spelled codes). Target
    < 15 % with tiny.en. Silence, pink noise and a music-like tone (10 s each) must give no_speech.
(c) Time to `ready` with transcription on vs off, same run: the 60 s note (as a WhatsApp Ogg/Opus note) through
    the service in this process (sandbox, SQLite, in-process jobs: transcription on its own thread), from the signed
    webhook to its row `ready`, BENCH_TRANSCRIBE_READY_ROUNDS (5) times each, alternating off and on, after one
    warm-up note; each note's jobs (its transcript too) finish before the next is sent. Target: on's median within
    5 % of off's (the MP3 is ready first; the transcript follows). The transcript's own time is reported.

Settings: BENCH_TRANSCRIBE_MODELS (comma-separated `label=model`, model a directory or a faster-whisper name, none
for the bundled tiny.en; default `tiny.en=`), BENCH_TRANSCRIBE_THREADS (2), BENCH_TRANSCRIBE_COMPUTE_TYPE (int8),
BENCH_TRANSCRIBE_BEAM (5), BENCH_TRANSCRIBE_RUNS (3). Exits 1 when a target is missed (targets apply to tiny.en).
Figures also go to bench/out/transcribe.json.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# The bench must not need the model hub: the models are directories (a name still works where the hub answers).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

RTF_TARGET = 0.25
RSS_TARGET_MB = 400
WER_TARGET = 0.15
NOTE_S = 60.0
LONG_NOTE_S = float(os.environ.get("BENCH_TRANSCRIBE_LONG_S", 900))

VOICES = ("en-us", "en-gb+f3")  # espeak-ng's American voice, and its British one in a female variant
SPEEDS = (140, 185)  # words a minute (espeak-ng's default is 175)

# (category, text): the text is both what espeak-ng says and the reference. Digits are written apart so that they
# are spoken one by one, as people read out account and phone numbers.
SENTENCES = [
    ("plain", "Hi, I'm calling about my order. It still hasn't arrived and it's been two weeks."),
    ("number", "My account number is 5 8 3 1 2 7, could you please call me back?"),
    ("plain", "I was charged twice for the same subscription this month."),
    ("plain", "Can you send me a new password reset link to my email address?"),
    ("plain", "The parcel was left at the wrong address on Baker Street."),
    ("plain", "I'd like to cancel my appointment on Thursday afternoon."),
    ("number", "My phone number is 0 7 9 1 1 2 3 4 5 6 7, call me back after five."),
    ("plain", "The internet connection keeps dropping every evening since Monday."),
    ("plain", "I need to change the delivery date to next Friday, please."),
    ("plain", "Thank you for your help, the issue is resolved now."),
    ("number", "My order number is 4 4 0 9 1 8 and the item arrived damaged."),
    ("plain", "Could you tell me when the refund will be processed?"),
    ("number", "I paid twenty five dollars for shipping but it took three weeks."),
    ("plain", "Please update my billing address, I moved last month."),
    ("number", "The card ending in 9 9 0 2 was declined at the checkout."),
    ("plain", "I would like to speak to a supervisor about my complaint."),
    ("plain", "My flight was cancelled and nobody has contacted me since yesterday."),
    ("plain", "Is there a discount if I renew my contract for another year?"),
    ("plain", "The technician never showed up this morning."),
    ("number", "I have been waiting on hold for forty minutes, please call me back."),
    ("number", "My reference number is 7 3 2 0 5, I sent the documents on Tuesday."),
    ("plain", "The app crashes every time I try to upload a photo."),
    ("plain", "Can I return the shoes if I already wore them outside once?"),
    ("code", "My booking reference is B K 4 7 2 Q."),
    ("plain", "I'd like to upgrade to the premium plan starting next month."),
]


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# ---------------------------------------------------------------------------------------------------------------
# The child: one model in a fresh process, so its memory figures are its own.


def status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(spec: dict) -> dict:
    started_rss = status_mb("VmRSS")
    import faster_whisper  # noqa: F401  (what the worker imports with the engine's first use)

    from webhook_app.transcripts import engine

    imported_rss = status_mb("VmRSS")
    options = {"threads": spec["threads"], "compute_type": spec["compute_type"]}
    started = time.perf_counter()
    loaded = engine.load_model(spec["model"], **options)
    load_s = time.perf_counter() - started
    loaded_rss = status_mb("VmRSS")
    result = {
        "label": loaded.label,
        "load_s": load_s,
        "rss_start_mb": started_rss,
        "rss_imported_mb": imported_rss,
        "rss_loaded_mb": loaded_rss,
        "english_only": loaded.english_only,
        "model_bytes": os.path.getsize(os.path.join(loaded.source, "model.bin"))
        if os.path.isdir(loaded.source)
        else None,
    }

    def transcribe(path):
        return engine.transcribe(
            path, model=spec["model"], beam_size=spec["beam"], language=spec["language"], **options
        )

    if spec.get("note"):
        runs = []
        for run in range(spec["runs"] + 1):  # the first run warms up (the VAD model loads on first use)
            wall, cpu = time.perf_counter(), cpu_s()
            transcript = transcribe(spec["note"])
            wall, cpu = time.perf_counter() - wall, cpu_s() - cpu
            runs.append({"wall_s": wall, "cpu_s": cpu, "duration_s": transcript.duration_s, "warmup": run == 0})
        result["note_runs"] = runs
        result["rss_peak_mb"] = status_mb("VmHWM")
    clips = []
    for clip in spec.get("clips", []):
        wall = time.perf_counter()
        transcript = transcribe(clip["path"])
        clips.append(
            {
                **clip,
                "status": transcript.status,
                "hypothesis": transcript.text,
                "wall_s": time.perf_counter() - wall,
                "duration_s": transcript.duration_s,
            }
        )
    result["clips"] = clips
    result["rss_peak_after_clips_mb"] = status_mb("VmHWM")
    return result


def run_child(spec: dict) -> dict:
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise SystemExit(f"child failed for {spec['model']}:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------------
# Audio


def make_audio(folder: str) -> dict:
    from tests.helpers import speech_samples
    from tests.helpers.audio_samples import run_ffmpeg
    from webhook_app.audio.transcode import transcode_to_mp3

    def as_stored_mp3(ogg: str) -> str:
        mp3 = ogg.rsplit(".", 1)[0] + ".mp3"
        transcode_to_mp3(ogg, mp3)
        return mp3

    jobs = []
    for index, (category, text) in enumerate(SENTENCES):
        for voice in VOICES:
            for wpm in SPEEDS:
                name = f"s{index:02d}-{voice.replace('+', '_')}-{wpm}"
                jobs.append(
                    {"path": os.path.join(folder, name), "text": text, "category": category, "voice": voice, "wpm": wpm}
                )

    def make_clip(job):
        ogg = speech_samples.speak(
            job["path"], job["text"], voice=job["voice"], wpm=job["wpm"], kind="whatsapp_ogg", pad_s=0.5
        )
        return {**job, "path": as_stored_mp3(ogg)}

    with ThreadPoolExecutor(2) as pool:
        clips = list(pool.map(make_clip, jobs))
    # A 60 s note: the sentences of one voice at the default speed, one after another.
    parts = [
        speech_samples.speak(os.path.join(folder, f"note-part-{i:02d}"), text, voice="en-us", wpm=175, kind="wav")
        for i, (_, text) in enumerate(SENTENCES)
    ]
    note_ogg = speech_samples.concatenate(os.path.join(folder, "note-60s"), parts, kind="whatsapp_ogg", seconds=NOTE_S)
    long_ogg = os.path.join(folder, "note-long.ogg")
    if LONG_NOTE_S:
        run_ffmpeg(
            "-stream_loop", "-1", "-i", note_ogg, "-t", str(LONG_NOTE_S), "-c:a", "libopus", "-b:a", "24k", long_ogg
        )
    sounds = [
        {
            "path": as_stored_mp3(
                speech_samples.not_speech(os.path.join(folder, sound), sound, seconds=10, kind="whatsapp_ogg")
            ),
            "text": "",
            "category": f"not speech: {sound}",
            "voice": "",
            "wpm": 0,
        }
        for sound in speech_samples.NOT_SPEECH
    ]
    return {
        "clips": clips,
        "note": as_stored_mp3(note_ogg),
        "note_ogg": note_ogg,
        "sounds": sounds,
        "long_note": as_stored_mp3(long_ogg) if LONG_NOTE_S else None,
    }


# ---------------------------------------------------------------------------------------------------------------
# (c) Time to ready with transcription on vs off

READY_TARGET_RATIO = 1.05
POST_EVENT = "/twilio/conversations/post-event"


def time_to_ready_on_vs_off(note_ogg: str, rounds: int) -> dict | None:
    """Webhook to `ready` for the 60 s note, transcription off vs on for its channel, alternating, same process.
    Answers {"off_p50_s", "on_p50_s", "ratio", "transcript_p50_s", ...}."""
    from sqlalchemy import select

    from tests.helpers.service import migrate
    from webhook_app import create_app
    from webhook_app.extensions import db
    from webhook_app.models import AudioMessage, Transcript
    from webhook_app.settings.rules import update_settings

    with tempfile.TemporaryDirectory(prefix="transcribe-ready-") as folder:
        url = "sqlite:///" + os.path.join(folder, "bench.db")
        migrate(url)
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": url,
                "SANDBOX_DB": os.path.join(folder, "sandbox.db"),
                "SECRET_KEY": "bench",
                "REDIS_URL": None,
                "MAINTENANCE_INTERVAL_S": 0,
                "SETTINGS_CHECK_INTERVAL_S": 0,
            }
        )
        sandbox = app.extensions["twilio"].sandbox
        client = app.test_client()
        with open(note_ogg, "rb") as handle:
            data = handle.read()

        def one_note(transcribe: bool) -> tuple[float, float | None]:
            with app.app_context():
                update_settings("whatsapp", {"transcribe": transcribe}, "bench")
                db.session.commit()
            conversation = sandbox.create_conversation("Bench customer", "whatsapp")["sid"]
            params = sandbox.customer_sends_media(conversation, data, "audio/ogg", "note.ogg")
            signature = sandbox.sign("http://localhost" + POST_EVENT, params)
            started = time.perf_counter()
            assert client.post(POST_EVENT, data=params, headers={"X-Twilio-Signature": signature}).status_code == 200
            ready = None
            with app.app_context():
                while ready is None:
                    status = db.session.scalar(
                        select(AudioMessage.status).where(AudioMessage.message_sid == params["MessageSid"])
                    )
                    db.session.rollback()
                    if status in ("ready", "failed"):
                        assert status == "ready", "the bench note failed"
                        ready = time.perf_counter() - started
                    else:
                        time.sleep(0.005)
                app.extensions["jobs"].wait(timeout=600)  # its transcript too, before the next note
                transcribed = time.perf_counter() - started
                done = db.session.scalar(
                    select(Transcript.status)
                    .join(AudioMessage, AudioMessage.id == Transcript.audio_message_id)
                    .where(AudioMessage.message_sid == params["MessageSid"])
                )
            assert (done is not None) == transcribe and done in (None, "done"), done
            return ready, transcribed if transcribe else None

        one_note(True)  # warm-up: ffmpeg in the page cache, the model loaded
        off, on, transcripts = [], [], []
        for _ in range(rounds):
            off.append(one_note(False)[0])
            ready, transcribed = one_note(True)
            on.append(ready)
            transcripts.append(transcribed)
    off_p50, on_p50 = statistics.median(off), statistics.median(on)
    return {
        "off_p50_s": off_p50,
        "on_p50_s": on_p50,
        "ratio": on_p50 / off_p50,
        "off_s": off,
        "on_s": on,
        "transcript_p50_s": statistics.median(transcripts),
        "rounds": rounds,
    }


# ---------------------------------------------------------------------------------------------------------------


def models_to_measure() -> list[tuple[str, str | None]]:
    configured = os.environ.get("BENCH_TRANSCRIBE_MODELS", "").strip()
    if not configured:
        return [("tiny.en", None)]
    models = []
    for item in configured.split(","):
        label, _, model = item.strip().partition("=")
        models.append((label, model or None))  # "tiny.en=" (nothing after "="): the bundled model
    return models


def wer_of(clips: list[dict]) -> float:
    from tests.helpers.speech_samples import word_error_rate

    return word_error_rate([(clip["text"], clip["hypothesis"]) for clip in clips])


def main() -> int:
    threads = env_int("BENCH_TRANSCRIBE_THREADS", 2)
    compute_type = os.environ.get("BENCH_TRANSCRIBE_COMPUTE_TYPE", "int8")
    beam = env_int("BENCH_TRANSCRIBE_BEAM", 5)
    runs = env_int("BENCH_TRANSCRIBE_RUNS", 3)
    print(
        f"transcribe bench: {len(SENTENCES)} sentences x {len(VOICES)} voices x {len(SPEEDS)} speeds, "
        f"{threads} threads, {compute_type}, beam {beam}; load average {os.getloadavg()[0]:.2f} at start"
    )
    failures = []
    report = {
        "threads": threads,
        "compute_type": compute_type,
        "beam": beam,
        "models": {},
        "load_average_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="transcribe-bench-") as folder:
        started = time.perf_counter()
        audio = make_audio(folder)
        print(
            f"audio made in {time.perf_counter() - started:.1f} s: {len(audio['clips'])} clips, a 60 s note, "
            f"{len(audio['sounds'])} non-speech sounds"
        )
        for label, model in models_to_measure():
            spec = {
                "model": model,
                "threads": threads,
                "compute_type": compute_type,
                "beam": beam,
                "language": "en",
                "runs": runs,
                "note": audio["note"],
                "clips": [
                    {key: clip[key] for key in ("path", "text", "category", "voice", "wpm")}
                    for clip in audio["clips"] + audio["sounds"]
                ],
            }
            load_before = os.getloadavg()[0]
            result = run_child(spec)
            result["load_average"] = [load_before, os.getloadavg()[0]]
            if audio["long_note"]:
                result["long_note"] = run_child({**spec, "note": audio["long_note"], "runs": 0, "clips": []})
            report["models"][label] = result
            failures += summarize(label, result, targets=(label == "tiny.en"))
        ready = time_to_ready_on_vs_off(audio["note_ogg"], env_int("BENCH_TRANSCRIBE_READY_ROUNDS", 5))
    report["time_to_ready"] = ready
    print(
        f"\n(c) time to ready of a {NOTE_S:g} s note, transcription on vs off: off p50 {ready['off_p50_s']:.2f} s, "
        f"on p50 {ready['on_p50_s']:.2f} s, ratio {ready['ratio']:.3f} (target <= {READY_TARGET_RATIO}); "
        f"the transcript {ready['transcript_p50_s']:.2f} s after the webhook"
    )
    if ready["ratio"] > READY_TARGET_RATIO:
        failures.append(
            f"time to ready with transcription on is {ready['ratio']:.3f}x off's (target <= {READY_TARGET_RATIO})"
        )
    report["load_average_end"] = os.getloadavg()
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "out", "transcribe.json"), "w") as out:
        json.dump(report, out, indent=1)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if failures:
        print("MISSED: " + "; ".join(failures))
        return 1
    print("all targets met")
    return 0


def summarize(label: str, result: dict, targets: bool) -> list[str]:
    failures = []
    timed = [run for run in result["note_runs"] if not run["warmup"]]
    duration = timed[0]["duration_s"]
    rtf = statistics.median(run["wall_s"] for run in timed) / duration
    rtf_best = min(run["wall_s"] for run in timed) / duration
    cpu_rtf = statistics.median(run["cpu_s"] for run in timed) / duration
    size = f", model.bin {result['model_bytes'] / 1e6:.0f} MB" if result["model_bytes"] else ""
    print(
        f"\n== {label} ({result['label']}{size}; load average {result['load_average'][0]:.2f} -> "
        f"{result['load_average'][1]:.2f})"
    )
    print(
        f"(a) model load {result['load_s']:.2f} s; RSS: {result['rss_start_mb']:.0f} MB at start, "
        f"{result['rss_imported_mb']:.0f} MB with faster-whisper imported, {result['rss_loaded_mb']:.0f} MB with "
        f"the model loaded, peak {result['rss_peak_mb']:.0f} MB during the {duration:.0f} s note "
        f"({result['rss_peak_after_clips_mb']:.0f} MB after all clips)"
    )
    print(
        f"    {duration:.0f} s note: real-time factor {rtf:.3f} (median of {len(timed)}, best {rtf_best:.3f}, "
        f"warm-up {result['note_runs'][0]['wall_s'] / duration:.3f}); CPU seconds per audio second {cpu_rtf:.3f}"
    )
    result["summary"] = {"rtf_median": rtf, "rtf_best": rtf_best, "cpu_per_audio_s": cpu_rtf, "note_s": duration}
    long = result.get("long_note")
    if long:
        run = long["note_runs"][0]
        print(
            f"    {run['duration_s']:.0f} s note (one run, fresh process): peak RSS {long['rss_peak_mb']:.0f} MB, "
            f"real-time factor {run['wall_s'] / run['duration_s']:.3f}, CPU seconds per audio second "
            f"{run['cpu_s'] / run['duration_s']:.3f}"
        )
        result["summary"].update(
            {
                "long_note_s": run["duration_s"],
                "long_peak_mb": long["rss_peak_mb"],
                "long_rtf": run["wall_s"] / run["duration_s"],
            }
        )
    if targets:
        if rtf >= RTF_TARGET:
            failures.append(f"{label} real-time factor {rtf:.3f} >= {RTF_TARGET}")
        for name in ("rss_loaded_mb", "rss_peak_mb", "rss_peak_after_clips_mb"):
            if result[name] >= RSS_TARGET_MB:
                failures.append(f"{label} {name} {result[name]:.0f} >= {RSS_TARGET_MB} MB")

    speech = [clip for clip in result["clips"] if clip["text"]]
    sounds = [clip for clip in result["clips"] if not clip["text"]]
    overall = wer_of(speech)
    clip_audio = sum(clip["duration_s"] for clip in speech)
    clip_rtf = sum(clip["wall_s"] for clip in speech) / clip_audio
    print(
        f"(b) WER {overall:.1%} over {len(speech)} clips ({clip_audio:.0f} s of speech; real-time factor of the "
        f"short clips {clip_rtf:.3f})"
    )
    groups = {}
    for clip in speech:
        groups.setdefault(f"voice {clip['voice']}", []).append(clip)
        groups.setdefault(f"{clip['wpm']} wpm", []).append(clip)
        groups.setdefault(f"{clip['category']} sentences", []).append(clip)
    print("    " + ", ".join(f"{name} {wer_of(clips):.1%}" for name, clips in groups.items()))
    worst = sorted(speech, key=lambda clip: -wer_of([clip]))[:3]
    for clip in worst:
        print(
            f"    worst: {wer_of([clip]):.0%} {clip['voice']} {clip['wpm']}: {clip['text']!r} -> {clip['hypothesis']!r}"
        )
    for sound in sounds:
        print(f"    {sound['category']}: {sound['status']} {sound['hypothesis']!r}")
    result["summary"].update(
        {"wer": overall, "wer_groups": {name: wer_of(clips) for name, clips in groups.items()}, "clip_rtf": clip_rtf}
    )
    if targets and overall >= WER_TARGET:
        failures.append(f"{label} WER {overall:.1%} >= {WER_TARGET:.0%}")
    for sound in sounds:
        if sound["status"] != "no_speech":
            failures.append(f"{label} {sound['category']} gave {sound['status']} {sound['hypothesis']!r}")
    return failures


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        # Clips go in with their reference as "text" and come back with the transcript as "hypothesis".
        print(json.dumps(child(json.loads(sys.stdin.read()))))
        sys.exit(0)
    sys.exit(main())
