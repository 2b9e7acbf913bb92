"""Fields an attacker writes (webhook fields, upload names and types, SIDs, ids): cleaned or refused before they
reach a log, a row or an error message; a pre-event rejection stands even when its audit row cannot be written."""

import json

import pytest

from tests.helpers.agent_api import post_audio
from tests.helpers.audio_samples import make_audio
from tests.helpers.service import audio_rows, set_settings
from tests.helpers.webhooks import PRE_EVENT, on_message_add, post_webhook
from webhook_app.audio.bounded import reason


def test_a_decided_pre_event_rejection_stands_when_its_audit_cannot_be_written(
    client, app, sandbox, whatsapp, monkeypatch
):
    from webhook_app.webhooks import conversations

    def broken_audit(event, rejection):
        raise RuntimeError("database went away")

    monkeypatch.setattr(conversations, "audit_rejection", broken_audit)
    conversation, agent = whatsapp
    set_settings(app, "whatsapp", sending_enabled=False)
    response = post_webhook(client, sandbox, on_message_add(sandbox, conversation, participant_sid=agent), PRE_EVENT)
    assert response.status_code == 403  # it answered 200 {} (publish) before
    assert response.get_json()["error"]["code"] == "audio_not_allowed"


def test_control_characters_are_cleaned_from_pre_event_fields(client, app, sandbox, whatsapp):
    conversation, agent = whatsapp
    set_settings(app, "whatsapp", sending_enabled=False)
    params = on_message_add(sandbox, conversation, participant_sid=agent)
    params["Media"] = json.dumps(
        [
            {
                "Sid": "ME" + "1" * 32,
                "ContentType": "audio/mpeg\u0000\u0007",
                "Filename": "vo\u0000ice\n.mp3",
                "Size": 1000,
            }
        ]
    )
    response = post_webhook(client, sandbox, params, PRE_EVENT)
    assert response.status_code == 403
    (row,) = audio_rows(app)  # PostgreSQL refused the NUL: no row was stored
    assert (row.filename, row.content_type) == ("voice.mp3", "audio/mpeg")


def test_control_characters_are_cleaned_from_upload_names_and_types(client, app, sandbox, agent_token, tmp_path):
    conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
    sandbox.add_participant(conversation, identity="agent_40example_2Ecom", attributes='{"member_type": "agent"}')
    take = make_audio(tmp_path / "take.webm", "webm", seconds=1.0)
    response = post_audio(
        client, agent_token, conversation, take, content_type="audio/webm\x00\x1b", filename="my\x00take\x1b.webm"
    )
    assert response.status_code == 201, response.get_json()  # a 500 with no audit row on PostgreSQL before
    (row,) = audio_rows(app)
    assert row.filename == "mytake.webm" and "\x00" not in (row.content_type or "")


@pytest.mark.parametrize(
    "path,expected",
    [
        ("/api/v1/conversations/CH" + "a" * 32 + "%0A/audio", 400),  # a 201 with a 35-character SID before
        ("/api/v1/conversations/CH" + "a" * 32 + "%0A/audio-settings", 400),
        ("/agent/conversations/CH" + "a" * 32 + "%0A", 400),  # a control character: refused for any URL
    ],
)
def test_sids_with_a_trailing_newline_are_refused(client, agent_token, path, expected):
    response = client.get(path, headers={"Authorization": f"Bearer {agent_token}"})
    assert response.status_code == expected


def test_an_audit_id_past_32_bits_is_not_found(client, app):
    app.config["ADMIN_TOKEN"] = "admin-secret"
    response = client.get("/api/v1/admin/audit/2147483648", headers={"Authorization": "Bearer admin-secret"})
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def test_decode_errors_do_not_name_our_temporary_files():
    said = reason(
        [
            "[in#0 @ 0x5] Error opening input: Invalid argument",
            "Error opening input file file:/tmp/inbound-k2j4h1/source.",
        ]
    )
    assert "/tmp" not in said and "inbound-" not in said and "source" in said
