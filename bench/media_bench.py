"""What one file may cost (make bench): web-process memory while 40 clients read a 30 MB stored file and while agents
upload it at once, and what the hostile corpus costs the inbound transcode.

1. Memory. gunicorn as the Procfile runs it (one process; gthread on SQLite, gevent with BENCH_DATABASE_URL or
   TEST_DATABASE_URL on PostgreSQL) serves a 30 MB original kept as sent (normalize_inbound off). 40 concurrent
   clients ask `Range: bytes=0-0` five times each, then 40 read the whole file; the process's RSS is sampled
   throughout. Target: under 2 MB of growth per concurrent request, whatever the file size (each request holds one
   256 KB read; SQLite adds each pooled connection's page cache). Then six agents upload the same file at once:
   the web process and its ffmpegs stay under 600 MB (at most CONVERSIONS_PER_PROCESS conversions; the rest 503).
2. The hostile corpus: files a customer could send cheaply or to hurt (silence in FLAC, Opus and AMR up to the
   default channel cap of 900 s, absurd WAV headers, a playlist behind an ID3 tag, 7.1 audio at 192 kHz) and
   voice-like notes, through the inbound transcode in a fresh process each, beside each ffmpeg build. The worst
   output/input ratio and the peak ffmpeg RSS are the figures README's Security section states.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from webhook_app.audio.bounded import DEFAULT_MEMORY_MB  # noqa: E402
from webhook_app.audio.ffmpeg import ffmpeg_binary  # noqa: E402
from webhook_app.sandbox import Sandbox  # noqa: E402

CONCURRENT = 40
STORED_MB = 30
PER_REQUEST_TARGET_MB = 2.0
# Agents sending at the same moment to one web process (conversion runs in the request).
UPLOADS_AT_ONCE = 6
UPLOADS_PEAK_TARGET_MB = 600  # the web process, its request buffers and CONVERSIONS_PER_PROCESS (2) ffmpegs
CHANNEL_CAP_S = 900  # the default max_duration_s of every channel (migration 0001)
ADMIN_TOKEN = "bench-admin"


def ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    # The wheel's ffmpeg has every encoder the inputs need (a distribution's may lack AMR-NB's).
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def ffmpeg_builds() -> list[str]:
    """The service's ffmpeg and the wheel's, when they differ (a distribution's and the wheel's)."""
    import imageio_ffmpeg

    return list(dict.fromkeys([ffmpeg_binary(), imageio_ffmpeg.get_ffmpeg_exe()]))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def worker_pid(master_pid: int) -> int:
    with open(f"/proc/{master_pid}/task/{master_pid}/children") as children:
        return int(children.read().split()[0])


def tree_rss_mb(pid: int) -> float:
    """RSS of `pid` and the processes it started (a web process and its ffmpegs)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            kids = [int(child) for child in children.read().split()]
    except OSError:
        kids = []
    total = rss_mb(pid)
    for kid in kids:
        try:
            total += rss_mb(kid)
        except OSError:
            pass  # it ended meanwhile
    return total


class PeakSampler:
    def __init__(self, pid: int, measure=rss_mb):
        self.pid, self.measure, self.peak, self._stop = pid, measure, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.measure(self.pid))
            time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def uploads_at_once(url: str, token: str, recording: str, pid: int) -> tuple[dict[int, int], float]:
    """UPLOADS_AT_ONCE agents send the long recording at the same moment: the answers (by status) and the peak RSS
    of the web process with its ffmpegs (at most CONVERSIONS_PER_PROCESS at a time; the others are told 503)."""

    def send(_):
        with open(recording, "rb") as handle:
            files = {"audio": ("long.wav", handle, "audio/wav")}
            return requests.post(
                url, files=files, headers={"Authorization": f"Bearer {token}"}, timeout=300
            ).status_code

    with PeakSampler(pid, tree_rss_mb) as sampled, ThreadPoolExecutor(UPLOADS_AT_ONCE) as pool:
        statuses = list(pool.map(send, range(UPLOADS_AT_ONCE)))
    return {status: statuses.count(status) for status in sorted(set(statuses))}, sampled.peak


def memory_under_concurrent_reads(workdir: str, database_url: str) -> tuple:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TWILIO_", "REDIS_URL", "PUBLIC_BASE_URL", "HOST"))
    }
    env.update(
        DATABASE_URL=database_url,
        SANDBOX_DB=f"{workdir}/sandbox.db",
        SECRET_KEY="bench",
        LOG_LEVEL="WARNING",
        ADMIN_TOKEN=ADMIN_TOKEN,
        WEB_CONCURRENCY="1",
        MEDIA_DOWNLOAD_MAX_BYTES=str(64 << 20),
    )
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    original = os.path.join(workdir, "long.wav")
    seconds = STORED_MB * 1e6 / 32000  # 16 kHz, 16-bit mono: 32 kB a second
    ffmpeg(
        "-f", "lavfi", "-i", f"anoisesrc=d={seconds}:c=pink:a=0.1:r=16000", "-ac", "1", "-c:a", "pcm_s16le", original
    )
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "webhook_app:create_app()",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "--access-logfile",
            "/dev/null",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(base + "/healthz", timeout=1).ok)
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        requests.put(
            f"{base}/api/v1/admin/settings/webchat", json={"normalize_inbound": False}, headers=admin, timeout=10
        ).raise_for_status()
        sandbox = Sandbox(env["SANDBOX_DB"])
        sandbox.set_webhook(f"{base}/twilio/conversations/post-event")
        conversation = sandbox.create_conversation("Bench customer", "webchat")["sid"]
        # Agents reach only the conversations they are a participant of (as after accepting the task).
        sandbox.add_participant(conversation, identity="bench-agent", attributes='{"member_type":"agent"}')
        with open(original, "rb") as handle:
            sandbox.customer_sends_media(conversation, handle.read(), "audio/wav", "long.wav", deliver=True)
        token = sandbox.issue_token("bench-agent")
        listing = f"{base}/api/v1/conversations/{conversation}/audio"

        def ready():
            messages = requests.get(listing, headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
            message = (messages.get("audio_messages") or [{}])[0]
            if message.get("status") == "failed":
                raise SystemExit(f"the stored note failed: {message}")
            return message.get("playback_url")

        url = wait_for(ready, timeout=120)
        pid = worker_pid(server.pid)
        requests.get(url, headers={"Range": "bytes=0-0"}, timeout=10)  # warm the code paths once
        before = rss_mb(pid)
        session = requests.Session()
        session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=CONCURRENT))

        def one_byte(_):
            for _ in range(5):
                answer = session.get(url, headers={"Range": "bytes=0-0"}, timeout=60)
                assert answer.status_code == 206 and len(answer.content) == 1, (answer.status_code, answer.text[:300])

        def whole(_):
            with session.get(url, stream=True, timeout=120) as answer:
                return sum(len(chunk) for chunk in answer.iter_content(64 * 1024))

        with PeakSampler(pid) as ranges, ThreadPoolExecutor(CONCURRENT) as pool:
            list(pool.map(one_byte, range(CONCURRENT)))
        with PeakSampler(pid) as reads, ThreadPoolExecutor(CONCURRENT) as pool:
            sizes = list(pool.map(whole, range(CONCURRENT)))
        assert set(sizes) == {os.path.getsize(original)}, sizes
        dialect = database_url.split(":", 1)[0]
        uploads = uploads_at_once(listing, token, original, pid)
        return dialect, before, ranges.peak, reads.peak, uploads
    finally:
        server.terminate()
        server.wait(15)


def wav_header(rate: int, channels: int, data_bytes: int) -> bytes:
    """A PCM WAV header (8-bit) declaring `rate` and `channels` (and `data_bytes`), whatever follows it."""
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels, channels, 8)
    riff = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
    return riff + b"data" + struct.pack("<I", data_bytes)


def hostile_corpus(workdir: str) -> dict[str, tuple[str, str]]:
    """name -> (file, variant of _measure.py): what a customer could send cheaply, legitimate or not."""
    voice = (
        "sine=f=220:d=60:sample_rate=16000,volume=0.5[t];anoisesrc=d=60:c=pink:a=0.05:r=16000[n];[t][n]amix=inputs=2"
    )
    cap = str(CHANNEL_CAP_S)
    made = {
        "FLAC silence 900 s": ("silence.flac", ["-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", cap]),
        "FLAC silence 900 s, 192 kHz stereo": (
            "silence-192k.flac",
            ["-f", "lavfi", "-i", "anullsrc=r=192000:cl=stereo", "-t", cap],
        ),
        "Opus silence 900 s (6 kb/s)": (
            "silence.ogg",
            ["-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", cap, "-c:a", "libopus", "-b:a", "6k"],
        ),
        "Opus silence 900 s, DTX": (
            "silence-dtx.ogg",
            ["-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", cap, "-c:a", "libopus", "-b:a", "6k", "-dtx", "1"],
        ),
        "AMR-NB silence 900 s": (
            "silence.amr",
            ["-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", cap, "-c:a", "libopencore_amrnb", "-b:a", "4.75k"],
        ),
        "WAV 7.1 at 192 kHz, 20 s": (
            "wide.wav",
            [
                "-f",
                "lavfi",
                "-i",
                "sine=d=20:sample_rate=192000",
                "-af",
                "aformat=channel_layouts=7.1",
                "-c:a",
                "pcm_s16le",
            ],
        ),
        "Opus voice-like 60 s (24 kb/s, WhatsApp)": (
            "voice.ogg",
            ["-filter_complex", voice, "-ac", "1", "-c:a", "libopus", "-b:a", "24k"],
        ),
        "AMR-NB voice-like 60 s (12.2 kb/s, MMS)": (
            "voice.amr",
            ["-filter_complex", voice, "-ar", "8000", "-ac", "1", "-c:a", "libopencore_amrnb", "-b:a", "12.2k"],
        ),
    }
    corpus = {}
    for name, (filename, args) in made.items():
        ffmpeg(*args, os.path.join(workdir, filename))
        corpus[name] = (filename, "inbound")
    corpus["WAV 7.1 at 192 kHz, 20 s, loudness on"] = ("wide.wav", "inbound+loudness")
    written = {
        "WAV declaring 1 Hz (20 KB)": ("one-hertz.wav", wav_header(1, 1, 20_000) + bytes(range(256)) * 78),
        "WAV declaring 4 kHz (20 KB)": ("four-khz.wav", wav_header(4000, 1, 20_000) + bytes(20_000)),
        "WAV declaring 64 channels (20 KB)": ("many.wav", wav_header(8000, 64, 19_968) + bytes(19_968)),
        "WAV declaring 4 GB of data (1 KB)": ("huge.wav", wav_header(8000, 1, 0xFFFFFF00) + bytes(1000)),
        "HLS playlist behind an ID3 tag": (
            "playlist.mp3",
            b"ID3\x04\x00\x00\x00\x00\x00\x00#EXTM3U\n#EXTINF:2,\nfile:///etc/hostname\n",
        ),
    }
    for name, (filename, data) in written.items():
        with open(os.path.join(workdir, filename), "wb") as handle:
            handle.write(data)
        corpus[name] = (filename, "inbound")
    return corpus


def measure_corpus(workdir: str, corpus: dict[str, tuple[str, str]], binary: str) -> list[dict]:
    """Each file through the inbound transcode in a fresh process (so its ffmpeg's peak RSS is its own)."""
    rows = []
    for name, (filename, variant) in corpus.items():
        source = os.path.join(workdir, filename)
        done = subprocess.run(
            [sys.executable, os.path.join(HERE, "_measure.py"), variant, source, os.path.join(workdir, "out.mp3")],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "FFMPEG_BINARY": binary},
        )
        measured = json.loads(done.stdout)
        outcome = measured["outcome"]
        mp3_bytes = int(outcome.split()[0]) if outcome.endswith(" bytes") else None
        rows.append(
            {
                "name": name,
                "sent": os.path.getsize(source),
                "mp3": mp3_bytes,
                "outcome": outcome,
                "ffmpeg_peak_mb": measured["child_rss_kb"] / 1024,
            }
        )
    return rows


def report_corpus(binary: str, rows: list[dict]) -> list[str]:
    """Print the corpus's rows; answer the targets missed."""
    for row in rows:
        made = f"{row['mp3'] / 1e3:9.1f} KB  x{row['mp3'] / row['sent']:6.1f}" if row["mp3"] else row["outcome"]
        peak = row["ffmpeg_peak_mb"]
        print(f"  {row['name']:42} {row['sent'] / 1e3:9.1f} KB -> {made}; ffmpeg peak {peak:.0f} MB")
    converted = [row for row in rows if row["mp3"]]
    worst = max(converted, key=lambda row: row["mp3"] / row["sent"])
    hungriest = max(rows, key=lambda row: row["ffmpeg_peak_mb"])
    print(
        f"  worst ratio x{worst['mp3'] / worst['sent']:.1f} ({worst['name']}); at most {CHANNEL_CAP_S} s x 64 kb/s = "
        f"{CHANNEL_CAP_S * 64 / 8 / 1000:.1f} MB per inbound file; peak ffmpeg {hungriest['ffmpeg_peak_mb']:.0f} MB "
        f"({hungriest['name']}; the cap is {DEFAULT_MEMORY_MB} MB)"
    )
    if hungriest["ffmpeg_peak_mb"] > DEFAULT_MEMORY_MB:
        return [f"{binary}: ffmpeg peaked at {hungriest['ffmpeg_peak_mb']:.0f} MB"]
    return []


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout} s")


def main() -> int:
    failures = []
    databases = ["sqlite:///{workdir}/bench.db"]
    server_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if server_url:
        databases.append(server_url)
    print(f"web-process RSS while {CONCURRENT} clients read a {STORED_MB} MB stored file (ffmpeg: {ffmpeg_binary()}):")
    for template in databases:
        with tempfile.TemporaryDirectory(prefix="media-bench-") as workdir:
            if template.startswith("postgres"):
                reset_schema(template)
            dialect, before, ranges_peak, reads_peak, (statuses, uploads_peak) = memory_under_concurrent_reads(
                workdir, template.format(workdir=workdir)
            )
        growth = max(ranges_peak, reads_peak) - before
        per_request = growth / CONCURRENT
        print(
            f"  {dialect:10} idle {before:6.1f} MB; 200 one-byte ranges, 40 at a time: peak {ranges_peak:6.1f} MB; "
            f"40 whole reads at once: peak {reads_peak:6.1f} MB; growth {growth:5.1f} MB, "
            f"{per_request:.2f} MB per request (target < {PER_REQUEST_TARGET_MB:g})"
        )
        if per_request >= PER_REQUEST_TARGET_MB:
            failures.append(f"{dialect}: RSS grew {per_request:.2f} MB per concurrent read")
        print(
            f"  {dialect:10} {UPLOADS_AT_ONCE} uploads of that {STORED_MB} MB WAV at once: answers {statuses}; web "
            f"process with its ffmpegs peaked at {uploads_peak:.0f} MB (target < {UPLOADS_PEAK_TARGET_MB} MB)"
        )
        if uploads_peak >= UPLOADS_PEAK_TARGET_MB:
            failures.append(f"{dialect}: {UPLOADS_AT_ONCE} uploads took the web process to {uploads_peak:.0f} MB")

    with tempfile.TemporaryDirectory(prefix="media-bench-") as workdir:
        corpus = hostile_corpus(workdir)
        for binary in ffmpeg_builds():
            print(f"\nThe hostile corpus through the inbound transcode (64 kb/s ABR, {CHANNEL_CAP_S} s cap), {binary}:")
            failures += report_corpus(binary, measure_corpus(workdir, corpus, binary))
    for failure in failures:
        print("TARGET MISSED:", failure)
    print("all targets met" if not failures else f"{len(failures)} target(s) missed")
    return 1 if failures else 0


def reset_schema(url: str) -> None:
    from sqlalchemy import create_engine, text

    from webhook_app.config import normalize_database_url

    engine = create_engine(normalize_database_url(url))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
