"""The media boundary (webhook_app/audio/bounded.py): ffmpeg reads only the bytes it was given, as the container we
found, and a file no voice note can be is stopped before it costs memory. Run beside Debian's ffmpeg 5.1 and the
wheel's 9.0 (CI runs the suite once with each)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time

import pytest

from tests.helpers.agent_api import post_audio
from tests.helpers.audio_samples import run_ffmpeg, stream_info
from tests.helpers.conversations import conversation_with_agent
from tests.helpers.processes import ROOT
from tests.helpers.service import audio_rows, run_jobs
from webhook_app.audio import bounded
from webhook_app.audio.bounded import Bounds, _limits_for_child, _StderrWatch, channel_count, stream_problem
from webhook_app.audio.ffmpeg import ffmpeg_binary
from webhook_app.audio.transcode import AudioError, AudioTimeout, transcode_to_mp3

EMPTY_ID3_TAG = b"ID3\x04\x00\x00\x00\x00\x00\x00"
# An Ogg page header (capture pattern, version, "first page" flag, then zeros) in front of what follows.
OGG_PAGE_START = b"OggS\x00\x02" + bytes(21)


def wav_header(rate: int, channels: int, data_bytes: int) -> bytes:
    """A PCM WAV header (8-bit samples) declaring `rate` and `channels`, whatever the data that follows is."""
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels, channels, 8)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + (struct.pack("<I", data_bytes))
    )


def pointing_at(secret: str) -> dict[str, bytes]:
    """Files that make a probing ffmpeg open `secret` (a media file on the server) and put it into the MP3."""
    url = "file://" + secret
    hls = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\n{url}\n#EXT-X-ENDLIST\n".encode()
    folder, name = secret.rsplit("/", 1)
    dash = (
        '<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:full:2011" '
        'type="static" mediaPresentationDuration="PT2S" minBufferTime="PT2S"><Period id="0" start="PT0S">'
        '<AdaptationSet id="0" contentType="audio" mimeType="audio/mpeg"><Representation id="0" bandwidth="64000" '
        f'codecs="mp3" audioSamplingRate="44100"><BaseURL>file://{folder}/</BaseURL><SegmentList duration="2" '
        f'timescale="1"><SegmentURL media="{name}"/></SegmentList></Representation></AdaptationSet></Period></MPD>'
    ).encode()
    concat = f"ffconcat version 1.0\nfile '{secret}'\n".encode()
    # An SDP file makes ffmpeg listen for RTP on a UDP port: network input from a customer's attachment.
    sdp = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n"
    return {
        "hls": hls,
        "dash": dash,
        "ffconcat": concat,
        "sdp": sdp,
        "hls behind ID3": EMPTY_ID3_TAG + hls,
        "dash behind ID3": EMPTY_ID3_TAG + dash,
        "ffconcat behind ID3": EMPTY_ID3_TAG + concat,
        "hls behind a RIFF/WAVE header": wav_header(8000, 1, len(hls))[:12] + hls,
        "hls behind an Ogg page header": OGG_PAGE_START + hls,
    }


@pytest.fixture
def secret(tmp_path) -> str:
    """A server-side media file no customer was given: 2 s of tone."""
    path = tmp_path / "secret" / "server-only.mp3"
    path.parent.mkdir()
    run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=1000:duration=2", "-c:a", "libmp3lame", str(path))
    return str(path)


@pytest.mark.parametrize("kind", list(pointing_at("/x")))
def test_playlists_and_manifests_never_open_what_they_name(tmp_path, secret, kind):
    attachment = tmp_path / "voice-note.ogg"
    attachment.write_bytes(pointing_at(secret)[kind])
    started = time.monotonic()
    with pytest.raises(AudioError, match="not decodable") as refused:
        transcode_to_mp3(str(attachment), str(tmp_path / "out.mp3"), timeout_s=20)
    assert not isinstance(refused.value, AudioTimeout)  # refused, not waited on (an SDP would listen until stopped)
    assert time.monotonic() - started < 10
    assert not (tmp_path / "out.mp3").exists() or (tmp_path / "out.mp3").stat().st_size == 0


@pytest.mark.parametrize(
    "rate,channels,reason",
    [
        (1, 1, "sample rate of 1 Hz"),
        (4000, 1, "sample rate of 4000 Hz"),
        (8000, 12, "12 channels"),
        (8000, 64, "64 channels"),
    ],
)
def test_a_stream_no_voice_note_has_is_refused_with_the_reason(tmp_path, rate, channels, reason):
    wav = tmp_path / "note.wav"
    data = bytes((i * 37) % 256 for i in range(20_000 - 20_000 % channels))
    wav.write_bytes(wav_header(rate, channels, len(data)) + data)
    with pytest.raises(AudioError, match=reason):
        transcode_to_mp3(str(wav), str(tmp_path / "out.mp3"), max_duration_s=900)


def crc(data: bytes, poly: int, bits: int) -> int:
    """FLAC's CRC-8 (poly 0x07) and CRC-16 (poly 0x8005): MSB first, no reflection, zero start."""
    value, top, mask = 0, 1 << (bits - 1), (1 << bits) - 1
    for byte in data:
        value ^= byte << (bits - 8)
        for _ in range(8):
            value = ((value << 1) ^ poly) & mask if value & top else (value << 1) & mask
    return value


def flac_whose_frames_say_1_hz(tmp_path) -> str:
    """A FLAC file whose STREAMINFO says 48 kHz while its frame headers say 1 Hz (decoders believe the frames),
    written by hand: encoders refuse 1 Hz. Mono, 8-bit, verbatim subframes of 256 samples."""
    streaminfo = struct.pack(">HH", 256, 256) + bytes(6)  # block sizes; frame sizes unknown
    streaminfo += ((48000 << 44) | (0 << 41) | (7 << 36) | 0).to_bytes(8, "big") + bytes(16)  # rate, mono, 8 bits
    frames = b""
    for number in range(20):
        # sync; block size "8 bits follow", rate "16 bits of Hz follow"; mono, 8-bit; frame number; 255; 1 Hz
        header = bytes([0xFF, 0xF8, 0x6D, 0x02, number, 255]) + struct.pack(">H", 1)
        header += bytes([crc(header, 0x07, 8)])
        frame = header + b"\x02" + bytes((i * 7 + number) % 256 for i in range(256))  # a verbatim subframe
        frames += frame + struct.pack(">H", crc(frame, 0x8005, 16))
    path = tmp_path / "lying.flac"
    path.write_bytes(b"fLaC" + bytes([0x80, 0, 0, 34]) + streaminfo + frames)
    return str(path)


def test_a_flac_whose_frames_say_1_hz_behind_a_48_khz_header_is_refused(tmp_path):
    with pytest.raises(AudioError, match="sample rate of 1 Hz"):
        transcode_to_mp3(flac_whose_frames_say_1_hz(tmp_path), str(tmp_path / "out.mp3"), max_duration_s=900)


def test_audio_that_changes_its_rate_part_way_is_refused(tmp_path):
    """The check reads the header and the first frames; ffmpeg takes no other rate after those."""
    parts = []
    for rate in (44100, 8000):
        part = tmp_path / f"{rate}.mp3"
        run_ffmpeg("-f", "lavfi", "-i", f"sine=duration=2:sample_rate={rate}", "-c:a", "libmp3lame", str(part))
        parts.append(part.read_bytes())
    joined = tmp_path / "joined.mp3"
    joined.write_bytes(b"".join(parts))
    with pytest.raises(AudioError, match="changes its sample rate or channels part-way"):
        transcode_to_mp3(str(joined), str(tmp_path / "out.mp3"), bitrate_kbps=64, mono=True)


ONE_HERTZ_IN_A_FRESH_PROCESS = """
import json, resource, sys
from webhook_app.audio.transcode import AudioError, transcode_to_mp3
try:
    transcode_to_mp3(sys.argv[1], sys.argv[2], max_duration_s=900)
    outcome = "converted"
except AudioError as error:
    outcome = str(error)
print(json.dumps({"outcome": outcome, "ffmpeg_peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def test_a_20_kb_wav_declaring_1_hz_is_stopped_before_it_costs_memory(tmp_path):
    """It made Debian's ffmpeg resample 900 s to 16 kHz in frames of hours: 820 MB for one inbound job."""
    wav = tmp_path / "one-hertz.wav"
    data = bytes((i * 37) % 256 for i in range(20_000))
    wav.write_bytes(wav_header(1, 1, len(data)) + data)
    done = subprocess.run(
        [sys.executable, "-c", ONE_HERTZ_IN_A_FRESH_PROCESS, str(wav), str(tmp_path / "out.mp3")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = json.loads(done.stdout)
    assert "sample rate of 1 Hz" in result["outcome"]
    assert result["ffmpeg_peak_kb"] < 150 * 1024  # a legitimate note's ffmpeg: 35-60 MB


@pytest.mark.parametrize(
    "rate,layout,expected",
    [(8000, "mono", ("mono",)), (192000, "stereo", ("stereo",)), (44100, "5.1", ("mono", "stereo"))],
)
def test_what_voice_notes_can_be_still_converts(tmp_path, rate, layout, expected):
    """Including more channels than MP3 has: downmixed before loudnorm (to mono or stereo, as the ffmpeg picks)."""
    wav = tmp_path / "note.wav"
    run_ffmpeg(
        "-f", "lavfi", "-i", f"sine=duration=2:sample_rate={rate}", "-af", f"aformat=channel_layouts={layout}", str(wav)
    )
    result = transcode_to_mp3(str(wav), str(tmp_path / "out.mp3"), loudness=True)
    assert abs(result.duration_s - 2.0) < 0.1
    assert any(f"Hz, {channels}," in stream_info(result.path) for channels in expected)


def test_every_ffmpeg_runs_with_memory_cpu_and_core_limits():
    limits = subprocess.run(
        ["cat", "/proc/self/limits"],
        preexec_fn=_limits_for_child(Bounds(timeout_s=10, memory_mb=300)),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = {line[:26].strip(): line[26:].split() for line in limits.splitlines()[1:]}
    assert rows["Max data size"][:2] == [str(300 * 1024 * 1024)] * 2
    assert rows["Max cpu time"][:2] == ["15", "16"]  # 1.5 x the wall-clock limit; SIGKILL a second later
    assert rows["Max core file size"][:2] == ["0", "0"]


def test_an_ffmpeg_over_its_cpu_time_is_stopped_and_said_so(monkeypatch):
    """ffmpeg catches SIGXCPU and exits 255: that is a time limit (413 for an agent), not an undecodable file."""
    monkeypatch.setattr(bounded, "CPU_ALLOWANCE", 0.2)  # 10 s of wall clock, 2 s of CPU
    endless = ["-f", "lavfi", "-i", "anoisesrc=d=3000:r=48000", "-af", "loudnorm", "-f", "null", "-"]
    started = time.monotonic()
    with pytest.raises(AudioTimeout, match="more than 2 s of CPU time"):
        bounded.run_ffmpeg([ffmpeg_binary(), "-nostdin", *endless], Bounds(timeout_s=10))
    assert time.monotonic() - started < 9


@pytest.mark.parametrize(
    "layout,count",
    [
        ("mono", 1),
        ("stereo", 2),
        ("5.1(side)", 6),
        ("7.1.4", 12),
        ("22.2", 24),
        ("12 channels", 12),
        ("FL+FR+LFE", 3),
        ("0x3f", 6),
    ],
)
def test_channel_counts_from_ffmpeg_layout_names(layout, count):
    assert channel_count(layout) == count


def test_an_unknown_layout_is_no_voice_note():
    assert "unknown number of channels" in stream_problem(48000, channel_count("ambisonic 9"))


# -- through the service's two ways in ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hls", "hls behind ID3"])
def test_a_customers_playlist_fails_with_a_reason_and_stores_nothing(deliver, app, tmp_path, secret, kind):
    attachment = tmp_path / "voice.ogg"
    attachment.write_bytes(pointing_at(secret)[kind])
    params, response = deliver(attachment, "audio/ogg")
    assert response.status_code == 200
    run_jobs(app)
    (row,) = [row for row in audio_rows(app) if row.conversation_sid == params["ConversationSid"]]
    assert row.status == "failed" and "not decodable" in row.error and row.media_key is None


def test_an_agents_playlist_behind_an_id3_tag_is_a_400_and_never_sent(client, sandbox, agent_token, tmp_path, secret):
    conversation = conversation_with_agent(sandbox, "Customer", "whatsapp")
    upload = tmp_path / "rec.mp3"
    upload.write_bytes(pointing_at(secret)["hls behind ID3"])
    response = post_audio(client, agent_token, conversation, upload, content_type="audio/mpeg")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "not_audio"
    assert sandbox.list_messages(conversation) == []


def test_transcription_of_media_kept_as_sent_reads_only_what_the_sniff_found(tmp_path, secret):
    """With normalize_inbound off the customer's original is stored and transcribed as sent: it is decoded inside
    the same bounds as every conversion."""
    pytest.importorskip("numpy")  # the transcribe extra's
    from webhook_app.transcripts.engine import decode

    playlist = tmp_path / "original"
    playlist.write_bytes(pointing_at(secret)["hls behind ID3"])
    with pytest.raises(AudioError, match="not decodable"):  # read as MP3, which it is not
        decode(playlist)
    one_hertz = tmp_path / "one-hertz"
    one_hertz.write_bytes(wav_header(1, 1, 20_000) + bytes(20_000))
    for absurd in (one_hertz, flac_whose_frames_say_1_hz(tmp_path)):
        with pytest.raises(AudioError, match="sample rate of 1 Hz"):
            decode(absurd)


def test_an_agents_1_hz_wav_is_a_400_with_the_reason_at_once(client, sandbox, agent_token, tmp_path):
    """Three of these held 3.3 GB and three web threads for 55 s each."""
    conversation = conversation_with_agent(sandbox, "Customer", "whatsapp")
    upload = tmp_path / "rec.wav"
    upload.write_bytes(wav_header(1, 1, 20_000) + bytes(range(256)) * 78 + bytes(32))
    started = time.monotonic()
    response = post_audio(client, agent_token, conversation, upload, content_type="audio/wav")
    assert response.status_code == 400 and "sample rate of 1 Hz" in response.get_json()["error"]["message"]
    assert time.monotonic() - started < 10


FORGED_LOG = """[info] Input #0, wav, from 'file:note.wav':
[info]   Metadata:
[info]     id3v2_priv.XMP  :
Stream #0:0: Audio: pcm_s16le, 48000 Hz, mono, s16, 768 kb/s
Output #0, mp3, to 'out.mp3':
[info]   Stream #0:0: Audio: pcm_u8 ([1][0][0][0] / 0x0001), 1 Hz, mono, u8, 0 kb/s
"""


def test_a_line_forged_by_a_tag_hides_no_real_one():
    """ffmpeg prints metadata keys raw, newlines and all: a tag can print a sane stream line, or "Output #0",
    before the real description. Every description is checked."""
    forger = subprocess.Popen(["sh", "-c", 'printf "%s" "$LOG" >&2'], env={"LOG": FORGED_LOG}, stderr=subprocess.PIPE)
    watch = _StderrWatch(forger)
    forger.wait(10)
    watch.join(10)
    assert watch.refusal and "sample rate of 1 Hz" in watch.refusal


class Bits:
    """A big-endian bit writer, for codec frames built by hand."""

    def __init__(self):
        self.bits: list[int] = []

    def put(self, value: int, width: int) -> Bits:
        self.bits += [(value >> shift) & 1 for shift in range(width - 1, -1, -1)]
        return self

    def bytes(self) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def alac_declaring_a_giant_frame(tmp_path, samples: int = 1 << 24) -> str:
    """A 1 KB CAF file whose one ALAC frame holds `samples` of silence (Rice zero-runs): 35 minutes at 8 kHz."""
    bits = Bits().put(0, 3).put(0, 4).put(0, 12).put(1, 1).put(0, 2).put(0, 1).put(samples, 32)  # mono, sized
    bits.put(0, 8).put(0, 8).put(0, 4).put(1, 4).put(0, 3).put(0, 5)  # no decorrelation; order-0 predictor
    done = 0
    while done < samples:
        bits.put(0, 1)  # a zero sample, then a run of zeros
        if done + 1 < samples:
            run = min(65535, samples - done - 2)
            bits.put(0x1FF, 9).put(run, 16)
            done += run
        done += 1
    frame = bits.put(7, 3).bytes()  # end of frame

    def chunk(kind: bytes, data: bytes) -> bytes:
        return kind + struct.pack(">q", len(data)) + data

    description = struct.pack(">dIIIIII", 8000.0, int.from_bytes(b"alac", "big"), 1, 0, samples, 1, 0)
    cookie = struct.pack(">IBBBBBBHIII", samples, 0, 16, 0, 0, 14, 1, 255, 0, 0, 8000)
    size = len(frame).to_bytes(2, "big")  # the packet table's variable-length size (under 16,384 bytes)
    packets = struct.pack(">qqii", 1, samples, 0, 0) + bytes([0x80 | size[0] << 1 | size[1] >> 7, size[1] & 0x7F])
    path = tmp_path / "giant-frame.caf"
    path.write_bytes(
        b"caff\0\1\0\0"
        + chunk(b"desc", description)
        + chunk(b"kuki", cookie)
        + chunk(b"pakt", packets)
        + chunk(b"data", b"\0\0\0\0" + frame)
    )
    return str(path)


def test_a_1_kb_file_declaring_a_35_minute_frame_stops_at_the_memory_cap(tmp_path):
    """Such a file took PyAV, decoding in the transcription worker itself, to 1.1 GB: every decode is ffmpeg's now."""
    pytest.importorskip("numpy")  # the transcribe extra's
    from webhook_app.transcripts.engine import decode

    giant = alac_declaring_a_giant_frame(tmp_path)
    assert os.path.getsize(giant) < 2048
    with pytest.raises(AudioError, match="more than the 200 MB"):
        transcode_to_mp3(giant, str(tmp_path / "out.mp3"), max_duration_s=900, memory_mb=200)
    with pytest.raises(AudioError, match="more than the 200 MB"):
        decode(giant, 900, memory_mb=200)
