"""The agent console and its record panel as the browser tests drive them: in Chromium (Playwright), open a
conversation and the panel; in every engine, the script that keeps every microphone stream the page opens (the
Firefox and WebKit tests install it too, see engine_recording.py); and, around the page, a channel's settings changed
as an admin would and the MP3 the customer got."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.helpers.audio_samples import decoded_duration
from webhook_app.extensions import db
from webhook_app.settings.rules import update_settings

# Keeps every microphone stream the page opens, so a test can check that all its tracks were stopped.
TRACK_STREAMS = """
window.__streams = [];
const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {
  const stream = await original(constraints);
  window.__streams.push(stream);
  return stream;
};
"""
LIVE_TRACKS = "() => window.__streams.flatMap(s => s.getTracks()).filter(t => t.readyState !== 'ended').length"


def open_conversation(page, live_server: str, channel_label: str) -> str:
    page.goto(f"{live_server}/agent")
    page.get_by_role("link", name=re.compile(channel_label)).click()
    expect(page.locator("#conversation-title")).to_contain_text(channel_label)
    return page.url.rstrip("/").rsplit("/", 1)[1]


def expand_panel(page) -> None:
    page.get_by_role("button", name="Voice note: show the recorder").click()
    expect(page.locator(".rp-body")).to_be_visible()


def set_channel(app, channel: str, **values) -> None:
    """As an admin would: through the settings service, which bumps the version every process watches."""
    with app.app_context():
        update_settings(channel, values, actor="browser-test")
        db.session.commit()
    # Other processes notice within SETTINGS_CHECK_INTERVAL_S; this one need not wait for that.
    app.extensions["settings_cache"].invalidate()


def sent_mp3_duration(sandbox, conversation_sid: str, tmp_path) -> float:
    """The length of the one MP3 the agent sent in the conversation, as the customer got it."""
    media = [
        item
        for message in sandbox.list_messages(conversation_sid)
        for item in (message["media"] or [])
        if item["content_type"] == "audio/mpeg"
    ]
    assert len(media) == 1, sandbox.list_messages(conversation_sid)
    mp3 = tmp_path / "sent.mp3"
    mp3.write_bytes(sandbox.media_bytes(media[0]["sid"]))
    return decoded_duration(mp3)
