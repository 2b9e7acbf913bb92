"""The Flex plugin's built bundle in a real Chromium, against the real service and its local Twilio sandbox.

A real Flex needs a Twilio login, so the page stands in for Flex's runtime (flex_stand_in.js: global React and
ReactDOM, window.Twilio.Flex with Plugins.init, withTaskContext and the MessageInputActions / MessageBubble content
stores, a manager with ui_attributes and the SSO token) and loads `flex-plugin/build/plugin-audio-messages.js`
exactly as Flex would, from an origin of its own, so every call to the service is cross-origin as from Flex.

The bundle is built by `flex-plugin/ci.sh` (npm ci, type-check, unit tests, build). Without it these tests are
skipped on a developer machine and fail under CI, as a missing Chromium does.
"""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect

from tests.browser.console import LIVE_TRACKS, TRACK_STREAMS, sent_mp3_duration, set_channel
from tests.browser.flex_desktop import ROOT, customer_voice_note

AUDIO_POST = re.compile(r"/api/v1/conversations/CH[0-9a-f]{32}/audio$")
SCREENSHOT = ROOT / "docs" / "flex-plugin.png"


def record(page, seconds: int) -> None:
    page.get_by_role("button", name="Start recording a voice note").click()
    expect(page.get_by_role("button", name="Stop recording")).to_be_visible()
    page.wait_for_function(
        f"() => document.querySelector('[role=timer]')?.textContent === '0:{seconds:02d}'",
        polling="raf",
        timeout=(seconds + 10) * 1000,
    )
    page.get_by_role("button", name="Stop recording").click()
    expect(page.get_by_label("Preview of your recording")).to_be_visible()


def test_agent_hears_the_customer_and_records_and_sends_a_reply(flex_page, app, sandbox, conversations, tmp_path):
    page = flex_page()
    page.add_init_script(TRACK_STREAMS)
    page.reload()
    conversation = conversations["whatsapp"]

    # Hear: the customer's Ogg/Opus note plays from the service's MP3 instead of Flex's raw attachment.
    customer_voice_note(app, conversation)
    bubble = page.locator(".Twilio-MessageBubble").filter(has=page.locator(".raw-attachment"))
    expect(bubble).to_have_count(1)
    player = bubble.get_by_label("Customer voice note, 0:05")
    expect(player).to_be_visible(timeout=30_000)
    expect(bubble.locator(".Twilio-MessageBubble-Body")).to_be_hidden()
    duration = player.evaluate("""audio => audio.readyState >= 1 ? audio.duration : new Promise(resolve =>
        audio.addEventListener('loadedmetadata', () => resolve(audio.duration), {once: true}))""")
    assert duration == pytest.approx(5.0, abs=0.3)
    player.evaluate("audio => { audio.muted = true; return audio.play(); }")
    page.wait_for_function("audio => audio.currentTime > 0.2", arg=player.element_handle())
    player.evaluate("audio => audio.pause()")
    for label, rate in (("1.5", 1.5), ("2", 2.0), ("1", 1.0)):
        bubble.get_by_role("button", name=f"Play at {label}× speed").click()
        assert player.evaluate("audio => audio.playbackRate") == rate

    # Record and send, from the button in the message input.
    toggle = page.get_by_role("button", name="Voice note: show the recorder")
    toggle.click()
    expect(page.get_by_text("WhatsApp: Up to 15:00 · 16 MB per file")).to_be_visible()
    record(page, 2)
    assert page.evaluate(LIVE_TRACKS) == 0, "the microphone is still held after Stop"
    if os.environ.get("FLEX_PLUGIN_SCREENSHOT"):  # generated once for docs/flex-plugin.png, committed
        page.locator(".desktop").screenshot(path=str(SCREENSHOT))

    with page.expect_request(lambda r: r.method == "POST" and AUDIO_POST.search(r.url)) as sent:
        page.get_by_role("button", name="Send the voice note").click()
    headers = sent.value.all_headers()
    assert re.fullmatch(r"[0-9a-f-]{36}", headers.get("idempotency-key", "")), headers
    assert headers["origin"] == page.flex_origin
    assert headers["authorization"].startswith("Bearer ")
    expect(page.get_by_role("status")).to_contain_text("Voice note sent", timeout=30_000)

    assert sent_mp3_duration(sandbox, conversation, tmp_path) == pytest.approx(2.0, abs=0.5)
    # The agent's own note plays in the message list too.
    expect(
        page.locator(".Twilio-MessageBubble.from-me").get_by_label(re.compile(r"^Agent voice note, 0:0[23]$"))
    ).to_be_visible(timeout=30_000)


def test_button_is_disabled_with_the_reason_where_sending_is_off(flex_page, app):
    set_channel(app, "sms", sending_enabled=False)  # an admin, in the service's settings
    page = flex_page()
    page.get_by_role("button", name="sms chat").click()
    button = page.get_by_role("button", name="Voice note")
    expect(button).to_be_disabled()
    expect(button).to_have_attribute("title", "Audio sending is disabled for this channel")
    assert (
        page.evaluate(
            "b => b.getAttribute('aria-describedby') && document.getElementById("
            "b.getAttribute('aria-describedby')).textContent",
            button.element_handle(),
        )
        == "Audio sending is disabled for this channel"
    )
    # Another channel of the same agent is unaffected.
    page.get_by_role("button", name="whatsapp chat").click()
    expect(page.get_by_role("button", name="Voice note: show the recorder")).to_be_enabled()


def test_switching_tasks_mid_recording_stops_the_microphone_and_sends_nothing(flex_page):
    page = flex_page()
    page.add_init_script(TRACK_STREAMS)
    page.reload()
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and AUDIO_POST.search(r.url) else None)
    page.get_by_role("button", name="Voice note: show the recorder").click()
    page.get_by_role("button", name="Start recording a voice note").click()
    expect(page.get_by_role("timer")).to_have_text("0:01", timeout=10_000)
    page.get_by_role("button", name="sms chat").click()
    page.wait_for_function(f"() => ({LIVE_TRACKS})() === 0")
    expect(page.get_by_role("button", name="Stop recording")).to_have_count(0)
    page.get_by_role("button", name="whatsapp chat").click()
    expect(page.get_by_role("button", name="Voice note: show the recorder")).to_be_visible()
    assert posts == []


def test_missing_service_url_is_explained_in_the_panel(flex_page):
    page = flex_page(serviceUrl=None)
    page.get_by_role("button", name="Voice note: show the recorder").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Voice notes are not set up: Flex's configuration has no ui_attributes.audio_messages.service_url"
    )


def test_unreachable_service_is_explained_in_the_panel(flex_page):
    page = flex_page(serviceUrl="http://127.0.0.1:9")  # nothing listens on the discard port
    page.get_by_role("button", name="Voice note: show the recorder").click()
    expect(page.get_by_role("alert")).to_contain_text("Could not reach the audio service at http://127.0.0.1:9")
    expect(page.get_by_role("button", name="Retry loading the audio settings")).to_be_visible()


def test_keyboard_only_record_and_cancel(flex_page):
    page = flex_page()
    page.add_init_script(TRACK_STREAMS)
    page.reload()
    toggle = page.get_by_role("button", name="Voice note: show the recorder")
    toggle.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Voice note: hide the recorder")).to_have_attribute("aria-expanded", "true")
    # A keyboard user tabs on once Record is on the page: the panel renders it after the toggle, not in the same
    # frame, and a Tab pressed before then passes it by (a race seen once in a full run).
    record = page.get_by_role("button", name="Start recording a voice note")
    expect(record).to_be_visible()
    page.keyboard.press("Tab")
    expect(record).to_be_focused()
    page.keyboard.press("Enter")
    # The focus follows the state: Stop is where Record was.
    expect(page.get_by_role("button", name="Stop recording")).to_be_focused()
    expect(page.get_by_role("meter", name="Microphone input level")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Cancel and discard the recording")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Recording cancelled.")
    page.wait_for_function(f"() => ({LIVE_TRACKS})() === 0")
    # Escape closes the recorder and hands the focus back to its button.
    page.get_by_role("button", name="Start recording a voice note").focus()
    page.keyboard.press("Escape")
    expect(page.get_by_role("button", name="Voice note: show the recorder")).to_be_focused()
