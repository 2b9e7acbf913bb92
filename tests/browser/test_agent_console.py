"""The agent console and record panel in a real Chromium: record, preview, send, play, and every failure an agent
can meet (blocked or missing microphone, old browser, channel caps, server errors)."""

from __future__ import annotations

import json
import re
import threading

import pytest
from playwright.sync_api import expect

from tests.browser.console import LIVE_TRACKS, TRACK_STREAMS, expand_panel, open_conversation, set_channel
from tests.helpers.audio_samples import decoded_duration
from tests.helpers.service import deployed_service, hold_outbound_conversions, serving
from webhook_app.sandbox import Sandbox

AUDIO_POST = re.compile(r"/api/v1/conversations/CH[0-9a-f]{32}/audio$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def record(page, seconds: int, within=None) -> None:
    """Record `seconds` in the console's panel, or in the panel inside the locator `within`."""
    panel = within or page
    panel.get_by_role("button", name="Start recording a voice note").click()
    expect(panel.get_by_role("button", name="Stop recording")).to_be_visible()
    # Polled every frame in the page (not by expect's back-off) so Stop follows the timer within milliseconds.
    page.wait_for_function(
        f"() => document.querySelector('.rp-timer')?.textContent === '0:{seconds:02d}'",
        polling="raf",
        timeout=(seconds + 10) * 1000,
    )
    page.wait_for_timeout(500)  # the timer rounds to the nearest second: it reads 0:03 from 2.5 s on
    panel.get_by_role("button", name="Stop recording").click()
    expect(panel.locator(".rp-preview")).to_be_visible()


def test_agent_records_previews_and_sends_a_voice_note(page, live_server, sandbox, tmp_path, artifacts):
    """Test A: the whole loop. Needs the upload API (POST /api/v1/conversations/<sid>/audio)."""
    page.add_init_script(TRACK_STREAMS)
    conversation_sid = open_conversation(page, live_server, "WhatsApp")

    # A customer voice note first, so the screenshot shows both sides of the conversation.
    page.get_by_role("button", name="Simulate customer voice note").click()
    expect(page.locator(".al-row--inbound audio")).to_be_visible(timeout=30_000)

    expand_panel(page)
    expect(page.locator(".rp-caps")).to_contain_text("WhatsApp: Up to 15:00")
    record(page, 3)
    expect(page.locator(".rp-duration")).to_have_text(re.compile(r"^0:00 / 0:0[34]$"))
    assert page.evaluate(LIVE_TRACKS) == 0, "the microphone is still held after Stop"
    page.screenshot(path=str(artifacts / "agent-console.png"))

    with page.expect_request(lambda r: r.method == "POST" and AUDIO_POST.search(r.url)) as sent:
        page.get_by_role("button", name="Send the voice note").click()
    assert UUID.match(sent.value.headers.get("idempotency-key", "")), sent.value.headers
    assert "multipart/form-data" in sent.value.headers["content-type"]
    expect(page.locator(".rp-status")).to_contain_text("Voice note sent", timeout=30_000)
    expect(page.get_by_role("button", name="Start recording a voice note")).to_be_visible()

    outbound = page.locator(".al-row--outbound")
    expect(outbound).to_have_count(1)
    expect(outbound.locator("audio")).to_be_visible(timeout=30_000)
    expect(outbound.locator(".al-who")).to_have_text("Agent")

    sent_media = [
        item
        for message in sandbox.list_messages(conversation_sid)
        for item in (message["media"] or [])
        if item["content_type"] == "audio/mpeg"
    ]
    assert len(sent_media) == 1, sandbox.list_messages(conversation_sid)
    media_sid = sent_media[0]["sid"]
    assert sandbox.media_info(media_sid)["content_type"] == "audio/mpeg"
    mp3 = tmp_path / "sent.mp3"
    mp3.write_bytes(sandbox.media_bytes(media_sid))
    assert decoded_duration(mp3) == pytest.approx(3.0, abs=0.5)


def test_the_preview_shows_the_recorded_length_and_plays_it(page, live_server, artifacts):
    """Chrome's MediaRecorder writes WebM with no duration, so the browser's own controls said "0:00" and nothing
    more: the preview's clock shows position and length, the length measured and then decoded."""
    open_conversation(page, live_server, "WhatsApp")
    expand_panel(page)
    record(page, 3)
    preview = page.get_by_role("group", name="Preview of your recording")
    clock = preview.locator(".rp-duration")
    expect(clock).to_have_text("0:00 / 0:03")
    # The browser has read the file's own length (Infinity until it scanned the WebM to its end).
    page.wait_for_function("() => Number.isFinite(document.querySelector('.rp-preview audio').duration)")
    expect(clock).to_have_text("0:00 / 0:03")

    preview.get_by_role("button", name="Play the recording").click()
    expect(preview.get_by_role("button", name="Pause the recording")).to_be_visible()
    page.wait_for_function("() => document.querySelector('.rp-preview audio').currentTime > 0.5")
    expect(clock).not_to_have_text("0:00 / 0:03")
    expect(preview.get_by_role("button", name="Play the recording")).to_be_visible(timeout=10_000)  # it ended
    expect(clock).to_have_text("0:03 / 0:03")
    expect(preview.get_by_role("slider", name="Position in the recording")).to_have_attribute(
        "aria-valuetext", "0:03 / 0:03"
    )
    page.screenshot(path=str(artifacts / "record-panel-preview.png"))


def test_blocked_microphone_is_explained(browser_without_microphone_permission, live_server):
    """Test B: Chromium denies the microphone (NotAllowedError), as it does after an agent clicked "Block"."""
    page = browser_without_microphone_permission.new_context().new_page()
    open_conversation(page, live_server, "SMS")
    expand_panel(page)
    page.get_by_role("button", name="Start recording a voice note").click()
    expect(page.get_by_role("alert").filter(has_text="Microphone access is blocked")).to_be_visible()
    # Nothing is stuck: the agent can fix the permission and press Record again.
    expect(page.get_by_role("button", name="Start recording a voice note")).to_be_enabled()


def test_missing_microphone_is_explained(page, live_server):
    # Chromium's fake device always exists, so the page is told what a machine without a microphone says.
    page.add_init_script(
        "navigator.mediaDevices.getUserMedia = async () => {"
        " throw new DOMException('Requested device not found', 'NotFoundError'); };"
    )
    open_conversation(page, live_server, "WhatsApp")
    expand_panel(page)
    page.get_by_role("button", name="Start recording a voice note").click()
    expect(page.get_by_role("alert")).to_have_text(
        "No microphone was found. Connect a microphone or headset and try again."
    )


def test_customer_voice_note_appears_and_plays_at_three_speeds(page, live_server):
    """Test C: the sandbox customer sends a voice note; the agent hears the normalized MP3."""
    open_conversation(page, live_server, "Web chat")
    expect(page.locator(".al-empty")).to_have_text("No audio messages yet.")
    page.get_by_role("button", name="Simulate customer voice note").click()
    row = page.locator(".al-row--inbound")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-status", "ready", timeout=30_000)
    expect(row.locator(".al-duration")).to_have_text("0:05")

    audio = row.locator("audio")
    duration = audio.evaluate("""audio => audio.readyState >= 1 ? audio.duration : new Promise(resolve =>
        audio.addEventListener('loadedmetadata', () => resolve(audio.duration), {once: true}))""")
    assert duration == pytest.approx(5.0, abs=0.3)
    # Muted, so no autoplay policy stands in the way; the clock moving proves the MP3 decodes.
    audio.evaluate("audio => { audio.muted = true; return audio.play(); }")
    page.wait_for_function("audio => audio.currentTime > 0.2", arg=audio.element_handle())
    audio.evaluate("audio => audio.pause()")

    for label, rate in (("1.5", 1.5), ("2", 2.0), ("1", 1.0)):
        button = row.get_by_role("button", name=f"Play at {label}× speed")
        button.click()
        expect(button).to_have_attribute("aria-pressed", "true")
        assert audio.evaluate("audio => audio.playbackRate") == rate
    expect(row.locator(".al-speed[aria-pressed='true']")).to_have_count(1)


def test_browser_without_media_recorder_is_told_so(page, live_server):
    """Test D: an old browser gets a clear message instead of a Record button that cannot work."""
    page.add_init_script("delete window.MediaRecorder;")
    open_conversation(page, live_server, "WhatsApp")
    expand_panel(page)
    expect(page.locator(".rp-stage")).to_contain_text("This browser cannot record audio")
    expect(page.get_by_role("button", name="Start recording a voice note")).to_have_count(0)


def test_server_error_message_is_shown_and_the_clip_kept(page, live_server):
    """Test E: whatever the service refuses with, the agent reads its message and keeps the recording."""
    message = "the recording is 17.3 MB as MP3; whatsapp allows at most 16 MB per file"

    def refuse(route):
        if route.request.method == "POST":
            route.fulfill(
                status=413,
                content_type="application/json",
                body=json.dumps({"error": {"code": "too_large", "message": message}}),
            )
        else:
            route.continue_()

    page.route(AUDIO_POST, refuse)
    open_conversation(page, live_server, "WhatsApp")
    expand_panel(page)
    record(page, 1)
    page.get_by_role("button", name="Send the voice note").click()
    expect(page.get_by_role("alert").filter(has_text=message)).to_be_visible()
    expect(page.get_by_role("button", name="Send the voice note")).to_be_visible()
    page.get_by_role("button", name="Discard the recording").click()
    expect(page.get_by_role("button", name="Start recording a voice note")).to_be_visible()


def test_cancel_is_disabled_once_the_service_has_the_whole_clip(page, live_server, monkeypatch):
    """From then on the service posts the message whatever the browser does: a Cancel that said "cancelled"
    would be wrong about a voice note the customer gets."""
    release = threading.Event()
    converting = hold_outbound_conversions(monkeypatch, release)
    open_conversation(page, live_server, "WhatsApp")
    expand_panel(page)
    record(page, 1)
    page.get_by_role("button", name="Send the voice note").click()
    expect(page.locator(".rp-progress-text")).to_have_text("Converting and sending…", timeout=10_000)
    expect(page.get_by_role("button", name="Cancel sending")).to_be_disabled()
    assert converting.wait(10)
    release.set()
    expect(page.locator(".rp-status")).to_contain_text("Voice note sent", timeout=30_000)


def test_sending_turned_off_after_the_panel_loaded(page, live_server, app):
    open_conversation(page, live_server, "WhatsApp")
    expand_panel(page)
    record(page, 1)
    set_channel(app, "whatsapp", sending_enabled=False)  # an admin, meanwhile
    page.get_by_role("button", name="Send the voice note").click()
    expect(page.locator(".rp-stage")).to_have_text("Audio sending is disabled for this channel")
    expect(page.get_by_role("alert")).not_to_be_empty()
    expect(page.get_by_role("button", name="Send the voice note")).to_have_count(0)


def test_sending_disabled_channel_shows_no_record_button(page, live_server, app):
    set_channel(app, "sms", sending_enabled=False)
    open_conversation(page, live_server, "SMS")
    expand_panel(page)
    expect(page.locator(".rp-stage")).to_have_text("Audio sending is disabled for this channel")
    expect(page.get_by_role("button", name="Start recording a voice note")).to_have_count(0)


def test_recording_stops_itself_at_the_channel_limit_after_a_warning(page, live_server, app):
    set_channel(app, "whatsapp", max_duration_s=12)
    page.add_init_script(TRACK_STREAMS)
    open_conversation(page, live_server, "WhatsApp")
    expand_panel(page)
    expect(page.locator(".rp-caps")).to_contain_text("Up to 0:12")
    page.get_by_role("button", name="Start recording a voice note").click()
    expect(page.get_by_role("alert")).to_contain_text("Recording stops in", timeout=5_000)
    expect(page.locator(".rp-preview")).to_be_visible(timeout=15_000)
    expect(page.get_by_role("alert")).to_contain_text("Stopped at the 0:12 limit")
    expect(page.locator(".rp-duration")).to_have_text(re.compile(r"^0:00 / 0:1[12]$"))
    assert page.evaluate(LIVE_TRACKS) == 0
    # The service holds the clip to the same cap: one the panel stopped there goes through.
    page.get_by_role("button", name="Send the voice note").click()
    expect(page.locator(".rp-status")).to_contain_text("Voice note sent", timeout=30_000)


def test_keyboard_only_record_and_cancel_releases_the_microphone(page, live_server):
    page.add_init_script(TRACK_STREAMS)
    open_conversation(page, live_server, "WhatsApp")
    toggle = page.get_by_role("button", name="Voice note: show the recorder")
    toggle.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Start recording a voice note")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Start recording a voice note")).to_be_focused()
    page.keyboard.press("Enter")
    # The focus follows the state: Stop is where Record was.
    expect(page.get_by_role("button", name="Stop recording")).to_be_focused()
    expect(page.get_by_role("meter", name="Microphone input level")).to_be_visible()
    page.wait_for_function("() => window.__streams.length === 1")
    size_while_recording = page.locator(".rp-body").bounding_box()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Cancel and discard the recording")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").filter(has_text="Recording cancelled")).to_be_visible()
    assert page.evaluate(LIVE_TRACKS) == 0
    # Fixed-size panel: no layout jump between states.
    assert page.locator(".rp-body").bounding_box() == size_while_recording


@pytest.fixture
def twilio_mode(app, database_url, tmp_path):
    """The service with Twilio credentials (no in-process sandbox), talking real HTTP to a "remote" Twilio.

    The remote is a sandbox served on its own port, reached through TWILIO_API_BASE_URL exactly as real
    Twilio would be. `app` is requested for its clean database.
    """
    remote = Sandbox(str(tmp_path / "remote-twilio.db"))
    with deployed_service(remote, database_url, REDIS_URL=None) as service, serving(service) as url:
        yield remote, url


def test_outside_the_sandbox_the_console_asks_for_a_flex_token(page, twilio_mode):
    remote, url = twilio_mode
    conversation = remote.create_conversation("Customer on WhatsApp", "whatsapp")["sid"]
    remote.add_participant(conversation, identity="alice_40example_2Ecom", attributes='{"member_type": "agent"}')
    remote.create_conversation("Another agent's customer", "sms")
    token = remote.issue_token("alice_40example_2Ecom", roles=["agent"])

    page.goto(f"{url}/agent")
    token_field = page.get_by_role("textbox", name="Flex token")
    expect(token_field).to_be_focused()
    token_field.fill("not-a-flex-token")
    page.get_by_role("button", name="Continue").click()
    expect(page.locator("#token-error")).to_contain_text("That token was not accepted")
    token_field.fill(token)
    page.get_by_role("button", name="Continue").click()

    # The account's own conversations, those the agent is in: no demo conversations are made outside the sandbox.
    expect(page.locator(".conversation-link")).to_have_count(1)
    page.get_by_role("link", name=re.compile("Customer on WhatsApp")).click()
    expect(page.locator("#conversation-channel")).to_have_text("WhatsApp")
    assert page.evaluate("sessionStorage.getItem('audioConsole.flexToken')") == token
    expect(page.get_by_role("button", name="Simulate customer voice note")).to_have_count(0)
    expect(page.locator(".al-empty")).to_have_text("No audio messages yet.")
    expand_panel(page)
    expect(page.get_by_role("button", name="Start recording a voice note")).to_be_visible()


# A Flex plugin mounts the panel itself, with its own getToken (Flex refreshes tokens, so fetching one can take a
# while). This mounts a second panel the same way, whose token the test hands out when it chooses.
MOUNT_PLUGIN_PANEL = """
async (sid) => {
  const moduleUrl = new URL("record-panel.js", document.querySelector("script[type=module]").src);
  const { mountRecordPanel } = await import(moduleUrl.href);
  const config = JSON.parse(document.getElementById("console-config").textContent);
  const host = document.createElement("div");
  host.id = "plugin-panel";
  document.body.append(host);
  window.__holdToken = false;
  window.__releaseToken = null;
  mountRecordPanel(host, {
    apiBaseUrl: config.apiBaseUrl, conversationSid: sid, expanded: true,
    getToken: () => window.__holdToken
      ? new Promise((resolve) => { window.__releaseToken = () => resolve(config.token); })
      : Promise.resolve(config.token),
  });
}
"""


def test_cancel_while_the_host_app_fetches_the_token_sends_nothing(page, live_server):
    posts: list[str] = []
    page.on(
        "request",
        lambda request: (
            posts.append(request.url) if request.method == "POST" and AUDIO_POST.search(request.url) else None
        ),
    )
    conversation_sid = open_conversation(page, live_server, "WhatsApp")
    page.evaluate(MOUNT_PLUGIN_PANEL, conversation_sid)
    plugin = page.locator("#plugin-panel")
    record(page, 1, within=plugin)

    page.evaluate("() => { window.__holdToken = true; }")
    plugin.get_by_role("button", name="Send the voice note").click()
    page.wait_for_function("() => window.__releaseToken !== null")
    plugin.get_by_role("button", name="Cancel sending").click()
    page.evaluate("() => window.__releaseToken()")  # the token arrives after the agent cancelled

    expect(plugin.locator(".rp-status")).to_have_text(
        "Sending cancelled. The recording is kept; send it again or discard it."
    )
    expect(plugin.get_by_role("button", name="Send the voice note")).to_be_visible()
    page.wait_for_timeout(500)  # long enough for an XHR the panel should not have opened
    assert posts == []
    # The kept clip still goes when the agent sends it again.
    page.evaluate("() => { window.__holdToken = false; }")
    plugin.get_by_role("button", name="Send the voice note").click()
    expect(plugin.locator(".rp-status")).to_contain_text("Voice note sent", timeout=30_000)
    assert len(posts) == 1


def test_cancel_right_after_stop_discards_the_take(page, live_server):
    """Stop waits for MediaRecorder's last chunk; a Cancel in that wait wins, and no preview appears later."""
    page.add_init_script(TRACK_STREAMS)
    open_conversation(page, live_server, "WhatsApp")
    expand_panel(page)
    page.get_by_role("button", name="Start recording a voice note").click()
    expect(page.locator(".rp-timer")).to_have_text("0:01", timeout=10_000)
    # Both clicks in one task, before the recorder's stop event can arrive.
    page.evaluate("""() => {
      document.querySelector('[aria-label="Stop recording"]').click();
      document.querySelector('[aria-label="Cancel and discard the recording"]').click();
    }""")
    expect(page.locator(".rp-status")).to_have_text("Recording cancelled.")
    page.wait_for_function(f"() => ({LIVE_TRACKS})() === 0")
    page.wait_for_timeout(1_000)  # the stop event has long arrived: it must not bring a preview back
    expect(page.locator(".rp-preview")).to_have_count(0)
    expect(page.get_by_role("button", name="Start recording a voice note")).to_be_visible()
    expect(page.locator(".rp-error")).to_be_empty()
