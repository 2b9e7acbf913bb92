"""Hostile input corpus: files built at test time to break the pipeline, sent both ways.

Every case goes in as a customer voice note (signed webhook -> job) and, where it makes sense, as an agent upload.
Whatever the bytes, the service must never answer 500, the webhook answers 200, an upload of undecodable input a 4xx
with `{"error": {"code", "message"}}`, and the audit row ends `ready` (content legitimately decodable) or `failed`
with a non-empty reason: never left in queued/downloading/transcoding/sending.

Nothing binary is committed: the corpus is generated with ffmpeg into tmp dirs, small except where size is the point.
"""

from __future__ import annotations

import io
import json
import random
import re
import struct
import time
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

import pytest

from tests.helpers.agent_api import listing, post_audio
from tests.helpers.audio_samples import KINDS, VOICE, LazySamples, content_type, run_ffmpeg
from tests.helpers.other_files import pdf, png
from tests.helpers.service import audio_rows, run_jobs, set_settings
from tests.helpers.webhooks import post_webhook
from webhook_app.web.wrappers import json_depth, url_problem

IN_PROGRESS = {"queued", "downloading", "transcoding", "sending"}
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
SECONDS = 3.0
CONTAINERS = ("whatsapp_ogg", "webm", "aac_mp4", "aac_mp4_faststart", "3gp", "amr", "wav", "mp3")


# -- corpus -------------------------------------------------------------------------------------------------------


def make_sample(path: Path, kind: str) -> None:
    """audio_samples.make_audio with a seeded noise source: the same bytes every run, so a corpus case that
    fails once fails every time (the cuts and flipped bytes below land on the same spots)."""
    _, _, encoder, rate = KINDS[kind]
    graph = VOICE.format(d=SECONDS, sr=rate).replace("anoisesrc=", "anoisesrc=seed=42:")
    run_ffmpeg(
        "-filter_complex",
        graph,
        "-ac",
        "1",
        "-ar",
        str(rate),
        "-t",
        str(SECONDS),
        *encoder,
        "-fflags",
        "+bitexact",
        "-flags:a",
        "+bitexact",
        str(path),
    )


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def samples(corpus_dir) -> dict[str, bytes]:
    """One real 3 s voice note per container (a few tens of kB each), made when a test first asks for it."""

    def make(kind: str) -> bytes:
        if kind == "aac_mp4_faststart":
            # iOS-style MP4 with the moov atom in front: its "header" is the whole index, no sample data after it.
            made["aac_mp4"]  # its source, made now if no test has asked for it yet
            path = corpus_dir / "sample-faststart.m4a"
            run_ffmpeg("-i", str(corpus_dir / "sample-aac_mp4.m4a"), "-c", "copy", "-movflags", "+faststart", str(path))
        else:
            path = corpus_dir / f"sample-{kind}{KINDS[kind][0]}"
            make_sample(path, kind)
        return path.read_bytes()

    made = LazySamples(make)
    return made


LABELS = {**{kind: content_type(kind) for kind in KINDS}, "aac_mp4_faststart": "audio/mp4"}
EXTENSIONS = {**{kind: KINDS[kind][0] for kind in KINDS}, "aac_mp4_faststart": ".m4a"}


def _mp4_box_offset(data: bytes, box: bytes) -> int:
    """Offset of a top-level MP4 box."""
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if kind == box:
            return offset
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        if size < 8:
            break
        offset += size
    raise AssertionError(f"no {box!r} box")


def header_length(kind: str, data: bytes) -> int:
    """Where the container's header ends and the coded audio begins: a cut there leaves a file with no audio."""
    if kind == "whatsapp_ogg":
        # Page 1 is OpusHead, page 2 OpusTags; audio starts at the third page.
        first = data.index(b"OggS", 4)
        return data.index(b"OggS", first + 4)
    if kind == "webm":
        return data.index(b"\x1f\x43\xb6\x75")  # the first Cluster
    if kind in ("aac_mp4", "3gp"):
        return _mp4_box_offset(data, b"mdat")  # ftyp (+ free): the moov is at the end
    if kind == "aac_mp4_faststart":
        return _mp4_box_offset(data, b"mdat") + 8  # ftyp + the whole moov + the mdat box header
    if kind == "amr":
        return len(b"#!AMR\n")
    if kind == "wav":
        return data.index(b"data") + 8
    if kind == "mp3":
        assert data.startswith(b"ID3")
        syncsafe = data[6:10]
        return 10 + (syncsafe[0] << 21 | syncsafe[1] << 14 | syncsafe[2] << 7 | syncsafe[3])
    raise KeyError(kind)


def truncated(kind: str, data: bytes, cut: str) -> bytes:
    if cut == "few_bytes":
        return data[:8]
    if cut == "header_only":
        return data[: header_length(kind, data)]
    if cut == "half":
        return data[: len(data) // 2]
    raise KeyError(cut)


def html() -> bytes:
    return (
        b"<!DOCTYPE html><html><head><title>voice.ogg</title></head><body>"
        + b"<p>not audio</p>" * 200
        + b"</body></html>"
    )


def random_bytes() -> bytes:
    data = bytearray(random.Random(1234).randbytes(8192))
    data[0] = 0x00  # no accidental magic: nothing we sniff starts with a NUL byte
    return bytes(data)


WRONG_MAGIC = {
    "png": png,
    "pdf": pdf,
    "html": html,
    "random": random_bytes,
    "zip": lambda: b"PK\x03\x04" + random.Random(5).randbytes(2000),
    "json": lambda: json.dumps({"Media": [{"Sid": "ME" + "0" * 32}]}).encode() * 20,
}


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- the two ways in ------------------------------------------------------------------------------------------------


@pytest.fixture
def agent_conversation(sandbox) -> str:
    conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
    sandbox.add_participant(conversation, identity="agent_40example_2Ecom", attributes='{"member_type": "agent"}')
    return conversation


def assert_settled(row, *, allowed=("ready", "failed")) -> None:
    """A row that will never move again, and says why when it failed."""
    assert row.status not in IN_PROGRESS, f"audit {row.id} stuck in {row.status} ({row.error})"
    assert row.status in allowed, f"audit {row.id} is {row.status}: {row.error}"
    if row.status == "failed":
        assert isinstance(row.error, str) and row.error.strip(), f"audit {row.id} failed without a reason"
        assert row.finished_at is not None
    else:
        assert row.duration_s and row.duration_s > 0 and row.mp3_size_bytes and row.media_key, row.to_dict()
        assert not row.error


def rows_of(app, conversation_sid: str) -> list:
    return [row for row in audio_rows(app) if row.conversation_sid == conversation_sid]


def send_inbound(deliver, app, path: Path, label: str, channel: str = "whatsapp", allowed=("ready", "failed")):
    params, response = deliver(path, label, channel=channel)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(response.get_json()["audit_ids"]) == 1
    run_jobs(app)
    (row,) = rows_of(app, params["ConversationSid"])
    assert_settled(row, allowed=allowed)
    return row


def assert_error_shape(response) -> dict:
    body = response.get_json()
    assert isinstance(body, dict) and set(body) == {"error"}, response.get_data(as_text=True)
    error = body["error"]
    assert set(error) == {"code", "message"}
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    return error


def send_upload(client, app, token, conversation, path: Path, label: str, *, expect=None, filename=None):
    """Post as the record panel does; answer (response, audit row or None). `expect`: allowed status codes."""
    before = {row.id for row in audio_rows(app)}
    response = post_audio(client, token, conversation, path, content_type=label, filename=filename)
    assert response.status_code != 500, response.get_data(as_text=True)
    if expect is not None:
        assert response.status_code in expect, response.get_data(as_text=True)
    new_rows = [row for row in audio_rows(app) if row.id not in before]
    row = new_rows[0] if new_rows else None
    assert len(new_rows) <= 1
    if response.status_code == 201:
        assert row is not None
        assert_settled(row, allowed=("ready",))
        assert response.get_json()["audit_id"] == row.id
    else:
        assert 400 <= response.status_code < 500, response.status_code
        error = assert_error_shape(response)
        if row is not None:
            assert_settled(row, allowed=("failed",))
            assert row.error_code == error["code"]
    return response, row


# -- zero-length ----------------------------------------------------------------------------------------------------


def test_zero_length_voice_note_fails_with_a_reason(deliver, app, tmp_path):
    row = send_inbound(deliver, app, write(tmp_path, "voice.ogg", b""), "audio/ogg", allowed=("failed",))
    assert "empty" in row.error and row.size_bytes == 0


def test_zero_length_upload_is_400(client, app, agent_token, agent_conversation, tmp_path):
    response, row = send_upload(
        client, app, agent_token, agent_conversation, write(tmp_path, "rec.webm", b""), "audio/webm", expect={400}
    )
    assert response.get_json()["error"]["code"] == "empty_audio" and row.status == "failed"


# -- truncated files of every container ------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", ["few_bytes", "header_only", "half"])
@pytest.mark.parametrize("kind", CONTAINERS)
def test_truncated_voice_note(deliver, app, samples, tmp_path, kind, cut):
    data = truncated(kind, samples[kind], cut)
    assert 0 < len(data) < len(samples[kind])
    path = write(tmp_path, f"voice{EXTENSIONS[kind]}", data)
    # A few bytes or a bare header carry no audio at all; half a file may legitimately decode (its first part).
    allowed = ("ready", "failed") if cut == "half" else ("failed",)
    row = send_inbound(deliver, app, path, LABELS[kind], allowed=allowed)
    if row.status == "ready":
        assert row.duration_s <= SECONDS + 0.1 and not row.truncated
    assert row.size_bytes == len(data)


@pytest.mark.parametrize("cut", ["few_bytes", "header_only", "half"])
@pytest.mark.parametrize("kind", CONTAINERS)
def test_truncated_upload(client, app, agent_token, agent_conversation, samples, tmp_path, kind, cut):
    path = write(tmp_path, f"rec{EXTENSIONS[kind]}", truncated(kind, samples[kind], cut))
    expect = {201, 400} if cut == "half" else {400}
    response, row = send_upload(client, app, agent_token, agent_conversation, path, LABELS[kind], expect=expect)
    if response.status_code == 400:
        assert response.get_json()["error"]["code"] in ("not_audio", "empty_audio")
    else:
        assert row.duration_s <= SECONDS + 0.1


@pytest.mark.parametrize("kind", CONTAINERS)
def test_truncation_points_are_what_they_claim(samples, kind):
    """The corpus itself: the header-only cuts really hold no coded audio, the halves really hold some."""
    data = samples[kind]
    assert 0 < header_length(kind, data) < len(data) // 2


# -- wrong magic labelled audio ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(WRONG_MAGIC))
def test_not_audio_labelled_audio_ogg_fails_inbound(deliver, app, tmp_path, name):
    row = send_inbound(
        deliver, app, write(tmp_path, "voice.ogg", WRONG_MAGIC[name]()), "audio/ogg; codecs=opus", allowed=("failed",)
    )
    assert "audio" in row.error  # "not decodable audio (...)" or "the file has no audio stream"


@pytest.mark.parametrize("name", sorted(WRONG_MAGIC))
def test_not_audio_labelled_audio_ogg_is_a_400_upload(client, app, agent_token, agent_conversation, tmp_path, name):
    response, row = send_upload(
        client,
        app,
        agent_token,
        agent_conversation,
        write(tmp_path, "rec.ogg", WRONG_MAGIC[name]()),
        "audio/ogg",
        expect={400},
    )
    assert response.get_json()["error"]["code"] == "not_audio" and row.status == "failed"


# -- real audio, wrong label: the bytes decide ----------------------------------------------------------------------

MISLABELLED = [
    ("amr", "audio/mpeg"),
    ("whatsapp_ogg", "audio/amr"),
    ("wav", "audio/ogg; codecs=opus"),
    ("mp3", "video/3gpp"),
    ("webm", "audio/mp4"),
    ("aac_mp4", "audio/webm"),
    ("3gp", "audio/wav"),
    ("amr", "application/octet-stream"),
]


@pytest.mark.parametrize("kind,label", MISLABELLED)
def test_mislabelled_voice_note_still_works(deliver, app, samples, tmp_path, kind, label):
    # The file name is as misleading as the label (only a generic label needs the name to count as audio).
    row = send_inbound(
        deliver,
        app,
        write(tmp_path, "voice.amr" if label.startswith("application/") else "voice.mp3", samples[kind]),
        label,
        allowed=("ready",),
    )
    assert abs(row.duration_s - SECONDS) < 0.15


@pytest.mark.parametrize("kind,label", MISLABELLED)
def test_mislabelled_upload_still_works(client, app, agent_token, agent_conversation, samples, tmp_path, kind, label):
    response, row = send_upload(
        client, app, agent_token, agent_conversation, write(tmp_path, "rec.mp3", samples[kind]), label, expect={201}
    )
    assert abs(response.get_json()["duration_s"] - SECONDS) < 0.15


# -- labels with parameters, lists and control characters: the bytes decide what is stored and served -------------

HOSTILE_LABELS = [
    "audio/ogg, text/html",
    'audio/ogg; codecs=opus; charset="utf-8"',
    "AUDIO/OGG ; CODECS=OPUS",
    "audio/ogg\x00text/html",
    'audio/ogg; name="x\x1b[2Jy"',
    "audio/ogg;" + "p=1;" * 40,
    "audio/mpeg, audio/ogg",
]
SERVED = {"whatsapp_ogg": "audio/ogg", "html": "application/octet-stream"}


@pytest.mark.parametrize("label", HOSTILE_LABELS)
@pytest.mark.parametrize("content", sorted(SERVED))
def test_kept_as_sent_media_is_served_by_its_bytes_whatever_its_label(
    deliver, client, app, samples, agent_token, tmp_path, label, content
):
    set_settings(app, "whatsapp", normalize_inbound=False)
    data = samples["whatsapp_ogg"] if content != "html" else WRONG_MAGIC["html"]()
    params, response = deliver(write(tmp_path, "voice.ogg", data), label)
    assert response.status_code == 200 and len(response.get_json()["audit_ids"]) == 1
    run_jobs(app)
    (row,) = rows_of(app, params["ConversationSid"])
    assert row.status == "ready" and not CONTROL.search(row.content_type or "")
    (message,) = listing(client, agent_token, row.conversation_sid)
    media = client.get(message["playback_url"].replace("http://localhost", ""))
    assert media.status_code == 200 and media.data == data
    assert media.headers["Content-Type"] == SERVED[content]
    assert media.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("label", HOSTILE_LABELS)
def test_hostile_label_on_an_upload_is_cleaned_and_decided_by_the_bytes(
    client, app, agent_token, agent_conversation, samples, tmp_path, label
):
    response, row = send_upload(
        client,
        app,
        agent_token,
        agent_conversation,
        write(tmp_path, "rec.ogg", samples["whatsapp_ogg"]),
        label,
        expect={201},
    )
    assert response.get_json()["content_type"] == "audio/mpeg"
    assert not CONTROL.search(row.content_type or "")


@pytest.mark.parametrize("suffix", ["\n", " ", "\t", "\r\n", "\x00", "\u2028"])
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/conversations/{sid}/audio",
        "/api/v1/conversations/{sid}/audio-settings",
        "/agent/api/conversations/{sid}",
    ],
)
def test_sids_with_trailing_whitespace_or_controls_are_refused(client, agent_token, agent_conversation, path, suffix):
    url = path.format(sid=quote(agent_conversation + suffix))
    response = client.get(url, headers={"Authorization": f"Bearer {agent_token}"})
    # A control character is refused for the whole URL, before the view reads the SID.
    expected = "bad_request" if CONTROL.search(suffix) else "bad_conversation_sid"
    assert response.status_code == 400 and response.get_json()["error"]["code"] == expected


# -- every route, odd URLs and bodies: never a 5xx, and the one error shape wherever JSON answers -----------------
ROUTES = [
    ("GET", "/api/v1/admin/settings"),
    ("PUT", "/api/v1/admin/settings"),
    ("GET", "/api/v1/admin/settings/{channel}"),
    ("PUT", "/api/v1/admin/settings/{channel}"),
    ("GET", "/api/v1/admin/settings-changes"),
    ("GET", "/api/v1/admin/audit"),
    ("GET", "/api/v1/admin/audit/{id}"),
    ("GET", "/api/v1/conversations/{sid}/audio"),
    ("POST", "/api/v1/conversations/{sid}/audio"),
    ("GET", "/api/v1/conversations/{sid}/audio-settings"),
    ("GET", "/agent/api/conversations"),
    ("GET", "/agent/api/conversations/{sid}"),
    ("POST", "/agent/api/conversations/{sid}/simulate-voice-note"),
    ("GET", "/media/{token}"),
    ("GET", "/healthz"),
    ("POST", "/twilio/conversations/pre-event"),
    ("POST", "/twilio/conversations/post-event"),
    ("GET", "/admin"),
    ("GET", "/agent/conversations/{sid}"),
    ("GET", "/metrics"),
]
# (what goes into the URL's variable part, what goes into its query, refused as a whole URL?)
ODD_URLS = {
    "nul_in_a_segment": ("x%00", "", True),
    "nul_in_a_query_value": ("", "channel=%00&since=%00&q=%00", True),
    "nul_in_a_query_name": ("", "%00=1", True),
    "line_break_in_the_query": ("", "conversation_sid=CH%0Ax", True),
    "c1_control_in_a_segment": ("x%C2%85", "", True),
    "invalid_utf8_in_the_query": ("", "q=%FF%FE&channel=%C3", True),
    "invalid_utf8_in_a_segment": ("%ED%A0%80", "", True),
    "huge_numbers": ("", "limit=" + "9" * 400 + "&page=" + "9" * 30 + "&per_page=-1&since=999999999999d", False),
    "not_numbers": ("", "limit=abc&page=1e3&per_page=%E2%85%A0&since=yesterday&until=2026-13-45", False),
}
API_PREFIXES = ("/api/", "/agent/api/", "/twilio/", "/media/", "/healthz")


@pytest.mark.parametrize("method,route", ROUTES)
def test_odd_urls_on_every_route_are_a_4xx_in_the_error_shape(
    client, app, agent_token, agent_conversation, method, route
):
    app.config["ADMIN_TOKEN"] = "admin-secret"
    headers = {"Authorization": "Bearer admin-secret" if "/admin" in route else f"Bearer {agent_token}"}
    values = {"channel": "whatsapp", "id": "1", "sid": agent_conversation, "token": "abc"}
    for odd, (segment, query, refused) in ODD_URLS.items():
        if segment and "{" not in route:
            continue  # nothing in this route's path to put it in
        path = route.format(**{name: value + segment for name, value in values.items()})
        # PATH_INFO as a WSGI server passes it: the path's bytes, percent-decoded, as latin-1 (werkzeug's test
        # client would decode them as UTF-8 first, replacing what is not).
        environ = {"PATH_INFO": unquote_to_bytes(path).decode("latin-1"), "QUERY_STRING": query}
        response = client.open(path, method=method, headers=headers, environ_overrides=environ)
        assert response.status_code < 500, (odd, response.get_data(as_text=True))
        if refused:
            assert response.status_code == 400, (odd, response.status_code)
        if response.status_code >= 400 and path.startswith(API_PREFIXES):
            assert_error_shape(response)


@pytest.mark.parametrize(
    "body",
    [
        "[" * 5000,
        "{" * 5000,
        '{"a": ' * 2000 + "1" + "}" * 2000,
        '"whatsapp"',
        "[1, 2]",
        "null",
        "1e999999",
        b"\xff\xfe",
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/admin/settings", "/api/v1/admin/settings/whatsapp"])
def test_odd_json_bodies_are_a_400_in_the_error_shape(client, app, path, body):
    app.config["ADMIN_TOKEN"] = "admin-secret"
    response = client.put(
        path, data=body, content_type="application/json", headers={"Authorization": "Bearer admin-secret"}
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    assert_error_shape(response)


@pytest.mark.parametrize(
    "path",
    ["/api/v1/admin/settings/whatsapp%00", "/api/v1/admin/settings-changes?channel=%00", "/api/v1/admin/audit?q=a%00"],
)
def test_nul_in_a_path_segment_or_a_query_value_is_400_not_a_database_error(client, app, path):
    # PostgreSQL refuses NUL in text: compared with a column, it was a DataError (500) on every such route.
    app.config["ADMIN_TOKEN"] = "admin-secret"
    response = client.get(path, headers={"Authorization": "Bearer admin-secret"})
    assert response.status_code == 400 and assert_error_shape(response)["code"] == "bad_request"


@pytest.mark.parametrize("path", ["/api/v1/admin/settings", "/api/v1/admin/settings/whatsapp"])
@pytest.mark.parametrize("body", ["[" * 5000, '{"whatsapp": ' * 5000, "[" * 33 + "]" * 33])
def test_json_nested_past_the_limit_is_400_not_a_recursion_error(client, app, path, body):
    app.config["ADMIN_TOKEN"] = "admin-secret"
    headers = {"Authorization": "Bearer admin-secret"}
    response = client.put(path, data=body, content_type="application/json", headers=headers)
    assert response.status_code == 400 and assert_error_shape(response)["code"] == "bad_settings"
    shallow = client.put(path, json={"whatsapp": {}} if path.endswith("settings") else {}, headers=headers)
    assert shallow.status_code == 200


def test_a_body_of_unterminated_escaped_quotes_is_counted_in_one_pass():
    """A 1 MB body of \\" once took the depth count quadratic time (32 kB: 2.7 s, the process stalled)."""
    started = time.monotonic()
    assert json_depth('"' + '\\"' * 500_000) == 0 and json_depth('[{"a": "]]"}, [[]]]') == 3
    assert time.monotonic() - started < 1


def test_a_raw_byte_over_0x7f_in_the_query_is_refused_like_its_percent_encoding(client):
    environ = {"PATH_INFO": "/healthz", "QUERY_STRING": "q=\xff"}  # latin-1, as a server hands a raw byte on
    assert url_problem(environ) is not None and url_problem({**environ, "QUERY_STRING": "q=%FF"}) is not None


def test_an_idempotency_key_with_a_nul_is_400_not_a_database_error(client, agent_token, agent_conversation):
    response = client.post(
        f"/api/v1/conversations/{agent_conversation}/audio",
        data={"audio": (io.BytesIO(b"OggS" + bytes(100)), "take.ogg")},
        headers={"Authorization": f"Bearer {agent_token}", "Idempotency-Key": "take-1\x00"},
    )
    assert response.status_code == 400 and assert_error_shape(response)["code"] == "bad_idempotency_key"


# -- sizes: declared vs real, and the download cap ------------------------------------------------------------------


@pytest.fixture
def http_calls(app, monkeypatch) -> list[tuple[str, str]]:
    """Every Twilio REST call the service makes (method, URL)."""
    http = app.extensions["twilio"].http
    calls = []
    original = http.request

    def spy(method, url, **kwargs):
        calls.append((method, url))
        return original(method, url, **kwargs)

    monkeypatch.setattr(http, "request", spy)
    return calls


@pytest.mark.parametrize("declared", [10**12, 10**30, -5, "12abc", True])
def test_gigantic_or_garbage_declared_size_with_a_small_file(client, sandbox, app, samples, declared):
    conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
    params = sandbox.customer_sends_media(conversation, samples["whatsapp_ogg"], "audio/ogg", "voice.ogg")
    media = json.loads(params["Media"])
    media[0]["Size"] = declared
    params["Media"] = json.dumps(media)
    response = post_webhook(client, sandbox, params)  # signed over the lie, as Twilio would have signed it
    assert response.status_code == 200, response.get_data(as_text=True)
    run_jobs(app)
    (row,) = rows_of(app, conversation)
    # The declared size is a claim: MCS metadata and the bytes that really arrived decide.
    assert_settled(row, allowed=("ready",))
    assert row.size_bytes == len(samples["whatsapp_ogg"])


def test_media_over_the_download_cap_fails_before_any_byte_moves(deliver, app, samples, tmp_path, http_calls):
    app.config["MEDIA_DOWNLOAD_MAX_BYTES"] = 10_000
    assert len(samples["wav"]) > 50_000
    row = send_inbound(deliver, app, write(tmp_path, "voice.wav", samples["wav"]), "audio/wav", allowed=("failed",))
    assert "over the 9.8 KB cap" in row.error
    assert not [url for _, url in http_calls if url.split("?")[0].endswith("/Content")], http_calls
    assert row.sha256 is None  # nothing was hashed: nothing was stored


@pytest.mark.parametrize("claimed", [100, None, "huge", -1])
def test_media_metadata_that_lies_about_its_size_is_capped_while_streaming(
    deliver, app, samples, tmp_path, monkeypatch, claimed
):
    """MCS metadata understating the size (or missing / garbage) must not let a big file through."""
    app.config["MEDIA_DOWNLOAD_MAX_BYTES"] = 10_000
    api = app.extensions["twilio"]
    real_fetch = api.fetch_media

    def lying_fetch(chat_service_sid, media_sid):
        meta = real_fetch(chat_service_sid, media_sid)
        meta["size"] = claimed
        return meta

    monkeypatch.setattr(api, "fetch_media", lying_fetch)
    row = send_inbound(deliver, app, write(tmp_path, "voice.wav", samples["wav"]), "audio/wav", allowed=("failed",))
    assert "over the 9.8 KB cap" in row.error


# -- hours of silence: small on the wire, long to decode ------------------------------------------------------------


@pytest.fixture(scope="module")
def long_silence(corpus_dir) -> Path:
    """~16 MB of Ogg/Opus that is hours of digital silence: one minute encoded at 6 kbps, then looped by copy.

    Opus sends silence in tiny packets, so 16 MB (WhatsApp's cap) holds the better part of a day of it: small on
    the wire, very long to decode. Only the duration cap and the ffmpeg timeout keep it from tying up a worker.
    """
    minute = corpus_dir / "silence-60s.ogg"
    run_ffmpeg(
        "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "60", "-c:a", "libopus", "-b:a", "6k", str(minute)
    )
    loops = int(15_500_000 / minute.stat().st_size)
    path = corpus_dir / "silence-hours.ogg"
    run_ffmpeg("-stream_loop", str(loops - 1), "-i", str(minute), "-c", "copy", str(path))
    assert 14_000_000 < path.stat().st_size <= 16 * 1024 * 1024
    assert loops >= 120, f"only {loops} minutes: not hours"
    return path


def test_long_silence_is_cut_at_the_duration_cap(deliver, app, long_silence):
    app.config["INBOUND_MAX_DURATION_S"] = 60
    row = send_inbound(deliver, app, long_silence, "audio/ogg; codecs=opus", allowed=("ready",))
    assert row.truncated is True
    assert abs(row.duration_s - 60) < 1.0
    # Only the first minute was encoded: 60 s at 64 kbps is ~480 kB; the whole file would be hundreds of MB.
    assert row.mp3_size_bytes < 700_000


def test_long_silence_is_stopped_by_the_ffmpeg_timeout(deliver, app, long_silence):
    app.config["FFMPEG_TIMEOUT_S"] = 1  # decoding all of it would take minutes
    row = send_inbound(deliver, app, long_silence, "audio/ogg; codecs=opus", allowed=("failed",))
    # The watchdog killed ffmpeg: only its timeout writes this reason (a finished decode would be "ready").
    assert "longer than 1 s and was stopped" in row.error
    assert row.media_key is None and row.mp3_size_bytes is None


def test_long_silence_upload_is_413_too_long(client, app, agent_token, agent_conversation, long_silence):
    set_settings(app, "whatsapp", max_duration_s=60)
    response, row = send_upload(client, app, agent_token, agent_conversation, long_silence, "audio/ogg", expect={413})
    assert response.get_json()["error"]["code"] == "too_long"
    assert row.duration_s <= 61.5


def test_long_silence_upload_stopped_by_the_ffmpeg_timeout_is_a_413_not_a_hang(
    client, app, agent_token, agent_conversation, long_silence
):
    app.config["FFMPEG_TIMEOUT_S"] = 1
    response, row = send_upload(client, app, agent_token, agent_conversation, long_silence, "audio/ogg", expect={413})
    error = response.get_json()["error"]
    # conversion_timeout, not too_long: ffmpeg was stopped by its timeout before it reached the duration cap.
    assert error["code"] == "conversion_timeout" and "longer than 1 s" in error["message"]


def silence(path: Path, fmt_args: list[str], seconds: float = 2.0) -> Path:
    run_ffmpeg("-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", str(seconds), *fmt_args, str(path))
    return path


SILENCE_FORMATS = {
    "webm": (".webm", "audio/webm", ["-c:a", "libopus", "-f", "webm"]),
    "ogg": (".ogg", "audio/ogg", ["-c:a", "libopus"]),
    "wav": (".wav", "audio/wav", ["-c:a", "pcm_s16le"]),
    "mp3": (".mp3", "audio/mpeg", ["-c:a", "libmp3lame"]),
    "m4a": (".m4a", "audio/mp4", ["-c:a", "aac"]),
}


@pytest.mark.parametrize("fmt", sorted(SILENCE_FORMATS))
def test_silent_upload_is_400_silent_audio(client, app, agent_token, agent_conversation, tmp_path, fmt):
    extension, label, args = SILENCE_FORMATS[fmt]
    path = silence(tmp_path / f"rec{extension}", args)
    response, row = send_upload(client, app, agent_token, agent_conversation, path, label, expect={400})
    assert response.get_json()["error"]["code"] == "silent_audio"


def test_silent_voice_note_from_a_customer_is_still_delivered(deliver, app, tmp_path):
    """Silence is refused from agents (a muted microphone) but a customer's message is never dropped."""
    path = silence(tmp_path / "voice.ogg", ["-c:a", "libopus"])
    row = send_inbound(deliver, app, path, "audio/ogg; codecs=opus", allowed=("ready",))
    assert abs(row.duration_s - 2.0) < 0.1


# -- video without audio, under an audio label -----------------------------------------------------------------------

VIDEO_ONLY = {
    "3gp": (".3gp", "video/3gpp", ["-c:v", "mpeg4", "-f", "3gp"]),
    "mp4": (".mp4", "audio/mp4", ["-c:v", "mpeg4", "-f", "mp4"]),
    "webm": (".webm", "audio/webm", ["-c:v", "libvpx", "-deadline", "realtime", "-f", "webm"]),
}


@pytest.fixture(scope="module")
def video_only(corpus_dir) -> dict[str, Path]:
    def make(name: str) -> Path:
        extension, _, args = VIDEO_ONLY[name]
        path = corpus_dir / f"video-only{extension}"
        run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=128x96:rate=5", "-t", "1", *args, str(path))
        return path

    return LazySamples(make)


@pytest.mark.parametrize("name", sorted(VIDEO_ONLY))
def test_video_without_audio_fails_with_no_audio_stream(deliver, app, video_only, name):
    row = send_inbound(deliver, app, video_only[name], VIDEO_ONLY[name][1], allowed=("failed",))
    assert "no audio stream" in row.error


@pytest.mark.parametrize("name", sorted(VIDEO_ONLY))
def test_video_without_audio_upload_is_400(client, app, agent_token, agent_conversation, video_only, name):
    response, _ = send_upload(
        client, app, agent_token, agent_conversation, video_only[name], VIDEO_ONLY[name][1], expect={400}
    )
    error = response.get_json()["error"]
    assert error["code"] == "not_audio" and "no audio stream" in error["message"]


# -- lying headers and corrupted middles ---------------------------------------------------------------------------


def huge_wav_header(data: bytes) -> bytes:
    """RIFF and data chunk sizes claim ~4 GB; the file holds the 3 s it really has."""
    out = bytearray(data)
    out[4:8] = struct.pack("<I", 0xFFFFFFF0)
    data_at = data.index(b"data")
    out[data_at + 4 : data_at + 8] = struct.pack("<I", 0xFFFFFFE0)
    return bytes(out)


def test_wav_declaring_a_huge_data_size(deliver, app, samples, tmp_path):
    row = send_inbound(deliver, app, write(tmp_path, "voice.wav", huge_wav_header(samples["wav"])), "audio/wav")
    if row.status == "ready":
        assert abs(row.duration_s - SECONDS) < 0.1  # what is really there, not what the header claims


def test_wav_declaring_a_huge_data_size_upload(client, app, agent_token, agent_conversation, samples, tmp_path):
    response, row = send_upload(
        client,
        app,
        agent_token,
        agent_conversation,
        write(tmp_path, "rec.wav", huge_wav_header(samples["wav"])),
        "audio/wav",
        expect={201, 400},
    )
    if response.status_code == 201:
        assert abs(row.duration_s - SECONDS) < 0.1


def corrupt_middle(data: bytes, width: int = 64) -> bytes:
    out = bytearray(data)
    middle = len(out) // 2
    for index in range(middle, middle + width):
        out[index] ^= 0xFF
    return bytes(out)


@pytest.mark.parametrize("kind", ["whatsapp_ogg", "webm", "aac_mp4", "amr", "mp3"])
def test_corrupted_page_in_the_middle(deliver, app, samples, tmp_path, kind):
    data = corrupt_middle(samples[kind])
    row = send_inbound(deliver, app, write(tmp_path, f"voice{EXTENSIONS[kind]}", data), LABELS[kind])
    if row.status == "ready":
        # AMR frames are self-delimiting: flipped mode bytes can turn into extra (noise) frames, so allow some
        # growth, but a corrupted page must never blow the duration up.
        assert 0 < row.duration_s <= 2 * SECONDS


@pytest.mark.parametrize("kind", ["whatsapp_ogg", "webm", "aac_mp4", "amr", "mp3"])
def test_corrupted_page_in_the_middle_upload(client, app, agent_token, agent_conversation, samples, tmp_path, kind):
    path = write(tmp_path, f"rec{EXTENSIONS[kind]}", corrupt_middle(samples[kind]))
    send_upload(client, app, agent_token, agent_conversation, path, LABELS[kind], expect={201, 400})


def test_ogg_with_every_page_checksum_broken(deliver, app, samples, tmp_path):
    """Flip a byte inside every Ogg page after the headers: each page fails its CRC."""
    data = bytearray(samples["whatsapp_ogg"])
    start = header_length("whatsapp_ogg", bytes(data))
    offset = data.find(b"OggS", start)
    while offset != -1:
        segments = data[offset + 26]
        payload = offset + 27 + segments
        if payload < len(data):
            data[payload] ^= 0x55
        offset = data.find(b"OggS", offset + 4)
    send_inbound(deliver, app, write(tmp_path, "voice.ogg", bytes(data)), "audio/ogg; codecs=opus")


# -- upload requests that are malformed as HTTP ----------------------------------------------------------------------


def raw_multipart(parts: list[tuple[str, str | None, str | None, bytes]], boundary: str = "hostileBoundary42"):
    """A multipart body built by hand: (field name, filename or None for no filename parameter, type, bytes)."""
    body = b""
    for name, filename, part_type, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if part_type:
            body += f"Content-Type: {part_type}\r\n".encode()
        body += b"\r\n" + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def raw_post(client, token, conversation, body: bytes, content_type: str | None, headers: dict | None = None):
    all_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
    kwargs = {"data": body, "headers": all_headers}
    if content_type is not None:
        kwargs["content_type"] = content_type
    return client.post(f"/api/v1/conversations/{conversation}/audio", **kwargs)


def test_part_without_a_filename_is_400_missing_audio(client, app, agent_token, agent_conversation, samples):
    body, ctype = raw_multipart([("audio", None, "audio/webm", samples["webm"])])
    response = raw_post(client, agent_token, agent_conversation, body, ctype)
    assert response.status_code == 400
    assert assert_error_shape(response)["code"] == "missing_audio"
    assert audio_rows(app) == []


def test_part_with_an_empty_filename(client, app, agent_token, agent_conversation, samples):
    body, ctype = raw_multipart([("audio", "", "audio/webm", samples["webm"])])
    response = raw_post(client, agent_token, agent_conversation, body, ctype)
    assert response.status_code in (201, 400), response.get_data(as_text=True)
    if response.status_code == 201:
        (row,) = audio_rows(app)
        assert_settled(row, allowed=("ready",))
        assert row.filename is None
    else:
        assert assert_error_shape(response)["code"] == "missing_audio"


def test_part_with_an_empty_filename_and_no_content_type(client, app, agent_token, agent_conversation, samples):
    body, ctype = raw_multipart([("audio", "", None, samples["whatsapp_ogg"])])
    response = raw_post(client, agent_token, agent_conversation, body, ctype)
    assert response.status_code in (201, 400), response.get_data(as_text=True)
    if response.status_code != 201:
        assert_error_shape(response)


@pytest.mark.parametrize(
    "variant",
    [
        "raw_audio",
        "json",
        "urlencoded",
        "text",
        "no_content_type",
        "multipart_without_boundary",
        "multipart_wrong_boundary",
        "multipart_unterminated",
        "empty_multipart",
    ],
)
def test_non_multipart_or_broken_multipart_body_is_400(client, app, agent_token, agent_conversation, samples, variant):
    audio = samples["webm"]
    if variant == "raw_audio":
        body, ctype = audio, "audio/webm"
    elif variant == "json":
        body, ctype = json.dumps({"audio": audio.hex()}).encode(), "application/json"
    elif variant == "urlencoded":
        body, ctype = b"audio=" + audio[:100].hex().encode(), "application/x-www-form-urlencoded"
    elif variant == "text":
        body, ctype = b"hello", "text/plain"
    elif variant == "no_content_type":
        body, ctype = audio, None
    elif variant == "multipart_without_boundary":
        body, _ = raw_multipart([("audio", "rec.webm", "audio/webm", audio)])
        ctype = "multipart/form-data"
    elif variant == "multipart_wrong_boundary":
        body, _ = raw_multipart([("audio", "rec.webm", "audio/webm", audio)])
        ctype = "multipart/form-data; boundary=somethingElse"
    elif variant == "multipart_unterminated":
        body, ctype = raw_multipart([("audio", "rec.webm", "audio/webm", audio)])
        body = body[: len(body) // 2]
    else:
        body, ctype = b"", "multipart/form-data; boundary=x"
    response = raw_post(client, agent_token, agent_conversation, body, ctype)
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data(as_text=True))
    assert_error_shape(response)
    for row in audio_rows(app):
        assert_settled(row, allowed=("failed",))


def test_idempotency_key_over_200_characters_is_400(client, app, agent_token, agent_conversation, samples, tmp_path):
    path = write(tmp_path, "rec.webm", samples["webm"])
    response = post_audio(client, agent_token, agent_conversation, path, key="k" * 201)
    assert response.status_code == 400
    assert assert_error_shape(response)["code"] == "bad_idempotency_key"
    assert audio_rows(app) == []
    at_limit = post_audio(client, agent_token, agent_conversation, path, key="k" * 200)
    assert at_limit.status_code == 201, at_limit.get_data(as_text=True)


def test_hostile_filename_and_content_type_on_a_real_recording(
    client, app, agent_token, agent_conversation, samples, tmp_path
):
    path = write(tmp_path, "rec.webm", samples["webm"])
    name = "../../etc/passwd\u202e" + "x" * 400 + ".webm"
    label = "audio/webm; codecs=" + "opus," * 100
    response, row = send_upload(client, app, agent_token, agent_conversation, path, label, filename=name, expect={201})
    assert len(row.filename) <= 256 and len(row.content_type) <= 128


def test_many_parts_named_audio(client, app, agent_token, agent_conversation, samples):
    body, ctype = raw_multipart(
        [("audio", "a.webm", "audio/webm", samples["webm"]), ("audio", "b.txt", "text/plain", b"not audio")]
        + [(f"f{i}", None, None, b"x") for i in range(200)]
    )
    response = raw_post(client, agent_token, agent_conversation, body, ctype)
    assert response.status_code in (201, 400), response.get_data(as_text=True)
    if response.status_code != 201:
        assert_error_shape(response)
    for row in audio_rows(app):
        assert_settled(row)


def test_body_shorter_than_its_content_length_is_a_4xx(client, app, agent_token, agent_conversation):
    """A part declaring an enormous Content-Length it never sends is cut off, not waited on."""
    body, ctype = raw_multipart([("audio", "rec.webm", "audio/webm", b"\x1a\x45\xdf\xa3" + b"\x00" * 100)])
    response = client.post(
        f"/api/v1/conversations/{agent_conversation}/audio",
        input_stream=io.BytesIO(body),
        headers={
            "Authorization": f"Bearer {agent_token}",
            "Content-Type": ctype,
            "Content-Length": str(len(body) + 1_000_000),
        },
    )
    assert response.status_code != 500
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert_error_shape(response)
    for row in audio_rows(app):
        assert_settled(row, allowed=("failed",))


def test_nul_characters_in_webhook_text_are_dropped_not_a_503(client, sandbox, app):
    # PostgreSQL's text types refuse NUL: left in, the INSERT fails and the webhook (with every webhook sharing
    # its commit) would be answered 503 again on each of Twilio's retries: a message lost.
    from tests.helpers.webhooks import load_fixture, sids

    params = load_fixture("onMessageAdded__whatsapp_voice_note", **sids(sandbox))
    media = json.loads(params["Media"])
    media[0]["Filename"] = "voice\x00.ogg"
    params.update(Media=json.dumps(media), Author="whatsapp:+15551230000\x00")
    response = post_webhook(client, sandbox, params)
    assert response.status_code == 200 and len(response.get_json()["audit_ids"]) == 1
    (row,) = audio_rows(app)
    assert row.filename == "voice.ogg" and row.author == "whatsapp:+15551230000"
