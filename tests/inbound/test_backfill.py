"""Backfill: audio the webhook missed is recorded from REST; what was recorded stays single."""

from pathlib import Path

from tests.helpers.agent_api import post_audio
from tests.helpers.audio_samples import make_audio
from tests.helpers.conversations import conversation_with_agent
from tests.helpers.service import audio_rows, run_jobs


def test_backfill_records_missed_voice_notes_once(runner, app, client, sandbox, agent_token, tmp_path):
    note = Path(make_audio(tmp_path / "voice.amr", "amr", seconds=2.0)).read_bytes()
    sms = conversation_with_agent(sandbox, "SMS customer", "sms")
    whatsapp = conversation_with_agent(sandbox, "WA customer", "whatsapp")
    sandbox.customer_sends_media(sms, note, "audio/amr", "voice.amr")  # the webhook never arrived
    sandbox.customer_sends_media(whatsapp, note, "audio/amr", "voice.amr")
    sandbox.customer_sends_media(whatsapp, b"\x89PNG....", "image/png", "photo.png")
    recording = make_audio(tmp_path / "rec.webm", "webm", seconds=1.0)
    assert post_audio(client, agent_token, whatsapp, recording).status_code == 201  # our own, already audited

    result = runner.invoke(args=["backfill", "--since", "1h"])
    assert result.exit_code == 0, result.output
    assert "recorded 2 missed audio message(s)" in result.output
    run_jobs(app)
    rows = audio_rows(app)
    inbound = [r for r in rows if r.direction == "inbound"]
    assert sorted(r.channel for r in inbound) == ["sms", "whatsapp"]
    assert all(r.status == "ready" and abs(r.duration_s - 2.0) < 0.1 for r in inbound)

    again = runner.invoke(args=["backfill", "--since", "1h"])
    assert "recorded 0 missed" in again.output
    assert len(audio_rows(app)) == 3


def test_backfill_respects_since(runner, sandbox, tmp_path):
    sms = sandbox.create_conversation("SMS customer", "sms")["sid"]
    sandbox.customer_sends_media(sms, b"#!AMR\n", "audio/amr", "voice.amr")
    result = runner.invoke(args=["backfill", "--since", "2999-01-01T00:00:00Z"])
    assert "recorded 0 missed" in result.output
    assert runner.invoke(args=["backfill", "--since", "soon"]).exit_code != 0


def test_backfill_reads_a_conversation_whose_date_updated_says_nothing_happened(runner, sandbox, tmp_path):
    """Twilio's date_updated is the conversation resource's last update, not its last message's."""
    note = Path(make_audio(tmp_path / "voice.amr", "amr", seconds=1.0)).read_bytes()
    sms = sandbox.create_conversation("SMS customer", "sms")["sid"]
    sandbox.customer_sends_media(sms, note, "audio/amr", "voice.amr")
    with sandbox._tx() as conn:
        conn.execute("UPDATE conversations SET date_updated = '2020-01-01T00:00:00Z' WHERE sid = ?", (sms,))
    result = runner.invoke(args=["backfill", "--since", "1h"])
    assert "recorded 1 missed" in result.output, result.output
