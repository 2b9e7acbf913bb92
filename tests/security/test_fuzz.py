"""Hypothesis-driven fuzzing of everything the service parses from the outside.

Webhook bodies are signed exactly as Twilio signs them, so the fuzz reaches the parsing behind the signature check.
The invariants: never a 500; every 4xx/5xx in the one JSON error shape; after the jobs ran, no row of the
example is left in progress and every failed row carries a reason.

Examples are derandomized (the same inputs every run, so CI is reproducible); run with
`--hypothesis-seed=<n>` and without the profile to explore further.
"""

from __future__ import annotations

import io
import json
import re
import string
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.helpers.audio_samples import make_audio
from tests.helpers.service import audio_rows, run_jobs
from tests.helpers.webhooks import post_webhook
from webhook_app.settings.rules import BITRATES_KBPS, HARD_MAX_BYTES, HARD_MAX_DURATION_S
from webhook_app.twilio.attachments import parse_media

IN_PROGRESS = {"queued", "downloading", "transcoding", "sending"}
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# What Twilio really sends, plus the shapes that break naive parsers.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=12,
)
media_keys = st.sampled_from(
    [
        "Sid",
        "sid",
        "MediaSid",
        "ContentType",
        "content_type",
        "contentType",
        "Filename",
        "filename",
        "Size",
        "size",
        "Category",
    ]
)
# Controls, line breaks and Unicode separators: what a NUL-refusing database, a log line or a header chokes on.
control_text = st.text(alphabet=st.characters(categories=["Cc", "Zl", "Zp", "Zs"]), min_size=1, max_size=4)
# Content types as channels and attackers write them: parameters, lists, odd case, controls inside.
hostile_label = st.builds(
    lambda base, separator, tail: base + separator + tail,
    st.sampled_from(["audio/ogg", "audio/mpeg", "AUDIO/OGG ", "text/html", "audio/amr", "video/3gpp", ""]),
    st.sampled_from(["; codecs=opus", ", text/html", ";", ", ", '; charset="', "\x00", ""]),
    st.text(max_size=30) | control_text,
)
media_entry = st.dictionaries(media_keys, json_scalars | hostile_label | control_text, max_size=6)
media_field = st.one_of(
    json_values.map(json.dumps),
    st.lists(media_entry, max_size=4).map(json.dumps),
    st.text(max_size=80),
)
# Form values go through HTTP: any text Werkzeug can carry, including long and non-ASCII strings.
form_text = st.text(max_size=60) | st.text(alphabet=string.ascii_letters + string.digits, min_size=30, max_size=400)


def assert_error_shape(response) -> None:
    body = response.get_json(silent=True)
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), response.get_data(as_text=True)[:300]
    assert body["error"].get("code") and body["error"].get("message")


def assert_no_stuck_rows(app, rows) -> None:
    for row in rows:
        assert row.status not in IN_PROGRESS, (row.id, row.status)
        if row.status == "failed":
            assert row.error, f"row {row.id} failed without a reason"
        for column in ("author", "source", "content_type", "filename"):
            assert not CONTROL.search(getattr(row, column) or ""), (row.id, column, getattr(row, column))


@given(raw=json_values | media_field)
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
def test_parse_media_accepts_anything(raw):
    items = parse_media(raw)
    for item in items:
        assert isinstance(item.sid, str) and item.sid
        assert item.size is None or (isinstance(item.size, int) and 0 <= item.size < 2**53)


@pytest.mark.parametrize(
    "raw",
    [
        '[{"Sid": "ME' + "0" * 32 + '", "Size": "\u00b2"}]',  # a digit int() refuses
        '[{"Sid": "ME' + "0" * 32 + '", "Size": "' + "9" * 400 + '"}]',
        "[" * 100_000 + "]" * 100_000,  # deeper than json's recursion limit
    ],
)
def test_parse_media_survives_what_hypothesis_rarely_draws(raw):
    for item in parse_media(raw):
        assert item.size is None or (isinstance(item.size, int) and 0 <= item.size < 2**53)


@pytest.fixture
def voice_note(sandbox, tmp_path_factory):
    """A real conversation with one real customer voice note in the sandbox's MCS, reused by every example."""
    path = make_audio(tmp_path_factory.mktemp("fuzz") / "voice.ogg", "whatsapp_ogg", seconds=1.0)
    conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
    return sandbox.customer_sends_media(conversation, Path(path).read_bytes(), "audio/ogg", "voice.ogg")


def _unknown_media(voice_note) -> str:
    """The same attachment under a media SID that MCS does not know (deleted, or another account's)."""
    (media,) = json.loads(voice_note["Media"])
    return json.dumps([dict(media, Sid="ME" + "0" * 32)])


@FUZZ
@given(data=st.data())
def test_post_event_never_500s_and_never_leaves_a_stuck_row(client, sandbox, app, voice_note, data):
    params = dict(voice_note, MessageSid="IM" + uuid.uuid4().hex)
    # Hypothesis's branch choice leans towards the simplest inputs: an explicit selector keeps about half the
    # examples well-formed around the edges (so they reach the job), the rest anything at all.
    if data.draw(st.integers(0, 9), label="selector") < 5:
        params["Media"] = data.draw(st.sampled_from([voice_note["Media"], _unknown_media(voice_note)]), label="Media")
        for field in data.draw(
            st.lists(
                st.sampled_from(["Author", "Source", "ChatServiceSid", "AccountSid", "Index", "Body", "Attributes"]),
                max_size=3,
                unique=True,
            ),
            label="mutated",
        ):
            params[field] = data.draw(form_text | control_text, label=field)
    else:
        params["MessageSid"] = data.draw(st.just(params["MessageSid"]) | form_text, label="MessageSid")
        params["Media"] = data.draw(media_field, label="Media")
        for field in data.draw(
            st.lists(
                st.sampled_from(
                    [
                        "EventType",
                        "ConversationSid",
                        "Author",
                        "Source",
                        "ChatServiceSid",
                        "AccountSid",
                        "Index",
                        "Body",
                    ]
                ),
                max_size=4,
                unique=True,
            ),
            label="mutated",
        ):
            params[field] = data.draw(form_text | control_text, label=field)
        for field in data.draw(st.lists(st.sampled_from(sorted(params)), max_size=2, unique=True), label="removed"):
            del params[field]
    before = {row.id for row in audio_rows(app)}

    response = post_webhook(client, sandbox, params)

    assert response.status_code in (200, 400), response.get_data(as_text=True)[:300]
    if response.status_code != 200:
        assert_error_shape(response)
    run_jobs(app)
    new_rows = [row for row in audio_rows(app) if row.id not in before]
    assert_no_stuck_rows(app, new_rows)
    event(f"post-event answered {response.status_code}; new rows {sorted(row.status for row in new_rows)}")


@FUZZ
@given(data=st.data())
def test_pre_event_never_500s(client, sandbox, app, voice_note, data):
    params = dict(voice_note, EventType="onMessageAdd")
    params["Media"] = data.draw(st.just(voice_note["Media"]) | media_field, label="Media")
    for field in data.draw(
        st.lists(
            st.sampled_from(["ConversationSid", "Author", "Source", "ChatServiceSid", "Body", "ClientIdentity"]),
            max_size=4,
            unique=True,
        ),
        label="mutated",
    ):
        params[field] = data.draw(form_text | control_text, label=field)
    response = post_webhook(client, sandbox, params, path="/twilio/conversations/pre-event")
    assert response.status_code in (200, 403), response.get_data(as_text=True)[:300]
    if response.status_code == 403:
        assert_error_shape(response)


@pytest.fixture
def tiny_recording(tmp_path_factory) -> bytes:
    path = make_audio(tmp_path_factory.mktemp("fuzz") / "rec.webm", "webm", seconds=1.0)
    return Path(path).read_bytes()


header_text = st.text(alphabet=string.printable.strip() + " ", max_size=240)


@FUZZ
@given(data=st.data())
def test_upload_never_500s_and_never_leaves_a_stuck_row(client, sandbox, app, agent_token, tiny_recording, data):
    # As above: half the examples are a real recording to a real conversation with hostile edges.
    if data.draw(st.integers(0, 9), label="selector") < 5:
        conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
        # The agent has accepted the task: a participant, as agents must be to reach a conversation's audio.
        sandbox.add_participant(conversation, identity="agent_40example_2Ecom", attributes='{"member_type": "agent"}')
        payload = data.draw(
            st.sampled_from([tiny_recording, tiny_recording[: len(tiny_recording) // 2]]), label="payload"
        )
        field = "audio"
    else:
        conversation = data.draw(
            st.sampled_from(["CH" + "0" * 32])
            | st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=40),
            label="conversation",
        )
        payload = data.draw(
            st.binary(max_size=2048) | st.binary(max_size=512).map(lambda noise: tiny_recording[:200] + noise),
            label="payload",
        )
        field = data.draw(st.sampled_from(["audio", "file", ""]) | st.text(max_size=10), label="field")
    form = {
        field: (
            io.BytesIO(payload),
            data.draw(st.text(max_size=300) | control_text, label="filename"),
            data.draw(
                header_text | hostile_label.filter(lambda label: "\n" not in label and "\r" not in label),
                label="content type",
            ),
        )
    }
    for name in data.draw(st.lists(st.text(max_size=10), max_size=3), label="extra fields"):
        form[name] = data.draw(st.text(max_size=50), label=name)
    headers = {"Authorization": f"Bearer {agent_token}"}
    key = data.draw(st.none() | header_text, label="Idempotency-Key")
    if key is not None:
        headers["Idempotency-Key"] = key
    before = {row.id for row in audio_rows(app)}

    response = client.post(
        f"/api/v1/conversations/{conversation}/audio", data=form, headers=headers, content_type="multipart/form-data"
    )

    assert response.status_code < 500 or response.status_code in (502, 503), response.get_data(as_text=True)[:300]
    if response.status_code >= 400:
        assert_error_shape(response)
    code = (response.get_json(silent=True) or {}).get("error", {}).get("code", "")
    event(f"upload answered {response.status_code} {code}")
    run_jobs(app)
    assert_no_stuck_rows(app, [row for row in audio_rows(app) if row.id not in before])


ADMIN = "fuzz-admin-token"
settings_keys = st.sampled_from(
    [
        "sending_enabled",
        "max_bytes",
        "max_duration_s",
        "bitrate_kbps",
        "normalize_inbound",
        "loudness_normalize",
        "channel",
        "updated_at",
    ]
) | st.text(max_size=12)


@FUZZ
@given(
    channel=st.sampled_from(["whatsapp", "sms", "webchat"]) | st.text(max_size=12),
    body=st.dictionaries(settings_keys, json_scalars, max_size=5) | json_values,
)
def test_admin_settings_put_never_500s_and_keeps_settings_valid(client, app, channel, body):
    app.config["ADMIN_TOKEN"] = ADMIN
    headers = {"Authorization": f"Bearer {ADMIN}"}
    response = client.put(
        f"/api/v1/admin/settings/{channel}", data=json.dumps(body), headers=headers, content_type="application/json"
    )
    assert response.status_code in (200, 400, 404), response.get_data(as_text=True)[:300]
    if response.status_code != 200:
        assert_error_shape(response)
    listing = client.get("/api/v1/admin/settings", headers=headers)
    assert listing.status_code == 200
    for row in listing.get_json()["settings"]:
        assert isinstance(row["sending_enabled"], bool) and isinstance(row["normalize_inbound"], bool)
        assert 1 <= row["max_bytes"] <= HARD_MAX_BYTES[row["channel"]]
        assert 1 <= row["max_duration_s"] <= HARD_MAX_DURATION_S and row["bitrate_kbps"] in BITRATES_KBPS


@FUZZ
@given(
    suffix=control_text | st.sampled_from(["\n", " ", "\t", "\r\n", "%0A", "%00"]),
    path=st.sampled_from(
        [
            "/api/v1/conversations/{sid}/audio",
            "/api/v1/conversations/{sid}/audio-settings",
            "/agent/api/conversations/{sid}",
        ]
    ),
)
def test_sids_with_anything_after_them_are_refused(client, agent_token, path, suffix):
    url = path.format(sid=quote("CH" + "a" * 32 + suffix, safe="%/"))
    response = client.get(url, headers={"Authorization": f"Bearer {agent_token}"})
    assert response.status_code in (400, 404), (url, response.status_code)
    assert_error_shape(response)
