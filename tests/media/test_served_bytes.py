"""Customer bytes served from the service's origin: a file labelled as audio is served by what its bytes are, as
a download that runs nothing (nosniff, a sandboxing CSP), converted or kept as sent."""

from tests.helpers.agent_api import listing
from tests.helpers.audio_samples import make_audio
from tests.helpers.service import run_jobs, set_settings

HTML = b"<!doctype html><html><body><script>fetch('/api/v1/admin/settings/whatsapp', {method: 'PUT'})</script>"


def served(client, token, conversation_sid, **headers):
    (message,) = listing(client, token, conversation_sid)
    assert message["status"] == "ready", message
    return client.get(message["playback_url"].replace("http://localhost", ""), headers=headers)


def test_html_labelled_as_audio_is_served_as_a_download_that_runs_nothing(deliver, client, app, agent_token, tmp_path):
    set_settings(app, "webchat", normalize_inbound=False)  # the customer's bytes are kept as sent
    page = tmp_path / "note.ogg"
    page.write_bytes(HTML)
    params, response = deliver(page, "audio/ogg, text/html", channel="webchat")
    assert response.status_code == 200
    run_jobs(app)

    media = served(client, agent_token, params["ConversationSid"])
    assert media.status_code == 200 and media.data == HTML
    assert media.headers["Content-Type"] == "application/octet-stream"  # never the customer's label
    assert media.headers["Content-Disposition"].startswith("attachment;")
    assert media.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in media.headers["Content-Security-Policy"]
    assert "default-src 'none'" in media.headers["Content-Security-Policy"]


def test_audio_kept_as_sent_is_served_by_what_its_bytes_are(deliver, client, app, agent_token, tmp_path):
    set_settings(app, "webchat", normalize_inbound=False)
    note = make_audio(tmp_path / "note.ogg", "whatsapp_ogg", seconds=1.0)
    params, _ = deliver(note, "audio/ogg; codecs=opus; x=" + "y" * 90, channel="webchat")  # 112 characters
    run_jobs(app)

    media = served(client, agent_token, params["ConversationSid"])
    assert media.status_code == 200
    assert media.headers["Content-Type"] == "audio/ogg"
    assert media.headers["Content-Disposition"].startswith("inline;")
    assert media.headers["X-Content-Type-Options"] == "nosniff"


def test_converted_mp3_carries_the_same_protections(deliver, client, app, agent_token, tmp_path):
    params, _ = deliver(make_audio(tmp_path / "n.ogg", "whatsapp_ogg", seconds=1.0), "audio/ogg", channel="whatsapp")
    run_jobs(app)
    media = served(client, agent_token, params["ConversationSid"])
    assert media.headers["Content-Type"] == "audio/mpeg"
    assert media.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in media.headers["Content-Security-Policy"]
