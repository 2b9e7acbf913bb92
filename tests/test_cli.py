"""The sandbox CLI a new user runs first: a real server thread, a real signed webhook over HTTP."""

import requests

from tests.audio_samples import decoded_duration, make_audio


def test_send_audio_delivers_a_playable_mp3(runner, live_server, tmp_path, app):
    source = make_audio(tmp_path / "hello.amr", "amr", seconds=4.0)
    result = runner.invoke(args=["sandbox", "send-audio", "--channel", "sms", "--server", live_server, source])
    assert result.exit_code == 0, result.output
    assert "webhook -> 200" in result.output
    url = result.output.split("play:")[1].strip()
    response = requests.get(url, headers={"Range": "bytes=0-"}, timeout=10)
    assert response.status_code == 206 and response.headers["Content-Type"] == "audio/mpeg"
    mp3 = tmp_path / "out.mp3"
    mp3.write_bytes(response.content)
    assert abs(decoded_duration(mp3) - 4.0) < 0.1


def test_send_audio_without_a_file_uses_a_generated_voice_note(runner, live_server):
    result = runner.invoke(args=["sandbox", "send-audio", "--server", live_server])
    assert result.exit_code == 0, result.output
    assert "ready: 6.0" in result.output


def test_send_audio_reports_a_failed_transcode(runner, live_server, tmp_path):
    bogus = tmp_path / "note.ogg"
    bogus.write_text("not audio\n" * 50)
    result = runner.invoke(args=["sandbox", "send-audio", "--server", live_server, str(bogus)])
    assert result.exit_code != 0
    assert "not decodable" in result.output


def test_token_command_issues_tokens_the_api_accepts(runner, client, sandbox):
    token = runner.invoke(args=["sandbox", "token", "--identity", "bob", "--role", "supervisor"]).output.strip()
    conversation = sandbox.create_conversation("Customer", "whatsapp")["sid"]
    response = client.get(f"/api/v1/conversations/{conversation}/audio", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_healthz_reports_database_and_queue(client, app):
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok" and body["database"]["ok"]
    expected = "rq" if app.config["REDIS_URL"] else "in-process"
    assert body["queue"]["backend"] == expected
