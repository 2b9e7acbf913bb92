"""The Flex plugin's record panel and players in Firefox and in WebKit (Safari's engine), not only Chromium.

The same built bundle and stand-in for Flex as test_flex_plugin.py (which runs in Chromium), driven by the engines
of engines.py (Firefox over WebDriver BiDi, WebKitGTK through WebKitWebDriver under Xvfb). A smoke set runs in both
engines (record → preview → send → the MP3 in the conversation, a 5 s take arriving as 5 s; a take stopped
mid-fragment; the preview; the customer's MP3 at 1x/1.5x/2x); Firefox also runs the rest of Chromium's flows (cap
warning and automatic stop, cancel, cancel right after Stop, no microphone, microphone blocked). The 5 s take is also
measured in Chromium (Playwright, as test_flex_plugin.py), so its length is checked in every engine. Without the
built bundle or an engine these skip locally and fail under CI.
"""

from __future__ import annotations

import contextlib
import re

import pytest

from tests.browser.console import LIVE_TRACKS, sent_mp3_duration, set_channel
from tests.browser.engine_recording import (
    EXPECTED_CONTAINER,
    RECORD_FOR,
    RECORDED_FILE,
    TRACK_STREAMS,
)
from tests.browser.flex_desktop import customer_voice_note, stand_in_desktop

PANEL = "[data-testid='voice-note-panel']"
STATUS = "[data-testid='voice-note-status']"
ALERT = "[data-testid='voice-note-alert']"
PREVIEW = "[aria-label='Preview of your recording']"

# Every text the panel's status line shows, with when (installed after load, as TRACK_STREAMS is): how long WebKit's
# "Finishing the recording…" lasts is measured from it.
WATCH_STATUS = """() => {
  window.__statuses = [];
  new MutationObserver(() => {
    const text = document.querySelector("[data-testid='voice-note-status']")?.textContent || "";
    const last = window.__statuses[window.__statuses.length - 1];
    if (text && (!last || last.text !== text)) window.__statuses.push({ text, at: performance.now() });
  }).observe(document.body, { subtree: true, childList: true, characterData: true });
}"""


@pytest.fixture
def desktop(app, live_server, sandbox, conversations, plugin_bundle):
    """Open the stand-in agent desktop with the plugin in an engine's page; `overrides` change Flex's config."""
    with contextlib.ExitStack() as opened:

        def open_desktop(page, **overrides) -> str:
            origin = opened.enter_context(
                stand_in_desktop(app, live_server, sandbox, conversations, plugin_bundle, **overrides)
            )
            page.goto(f"{origin}/agent-desktop/")
            page.wait_for(
                "() => document.querySelector('.Twilio-MessageInputActions') && window.__pluginName",
                timeout_s=30,
                message="the stand-in desktop with the plugin",
            )
            assert page.call("() => window.__pluginName") == "AudioMessagesPlugin"
            page.call(TRACK_STREAMS)
            page.call(WATCH_STATUS)
            return origin

        yield open_desktop


def open_recorder(page) -> None:
    page.click("Voice note: show the recorder")
    page.wait_for(
        "() => document.querySelector('[aria-label=\"Start recording a voice note\"]')",
        timeout_s=20,
        message="the Record button",
    )


def record(page, seconds: float) -> float:
    """Record `seconds` from the recorder's start (timed inside the page); the take's length as the page saw it."""
    took = page.call(RECORD_FOR, seconds, timeout_s=seconds + 60)
    page.wait_for(f'() => document.querySelector("{PREVIEW}")', timeout_s=30, message="the preview")
    return took


def finishing_seconds(page) -> float | None:
    """How long the panel said "Finishing the recording…" after the last Stop (None: it never did)."""
    return page.call("""() => {
      const all = window.__statuses;
      const index = all.map((s) => s.text).lastIndexOf("Finishing the recording…");
      return index < 0 || index + 1 >= all.length ? null : (all[index + 1].at - all[index].at) / 1000;
    }""")


def send(page) -> None:
    page.click("Send the voice note")
    page.wait_for_text(STATUS, "Voice note sent", timeout_s=60)


# -- the smoke set: Firefox and WebKit ------------------------------------------------------------------------------


def test_a_five_second_take_is_sent_whole(engine_page, desktop, sandbox, conversations, tmp_path):
    """Record → preview → send → the MP3 in the conversation, as long as the take (5 s ± 0.2). In WebKit the panel
    records on after Stop until the take's last MP4 fragment has arrived, saying so, and cuts the file back."""
    page = engine_page
    desktop(page)
    open_recorder(page)
    page.wait_for_text("body", "WhatsApp: Up to 15:00 · 16 MB per file")
    took = record(page, 5)
    assert took == pytest.approx(5.0, abs=0.1)
    recorded = page.call(RECORDED_FILE)
    assert re.match(EXPECTED_CONTAINER[page.engine], recorded["type"]), recorded
    assert recorded["size"] > 10_000, recorded  # seconds of audio, not a header
    assert page.text("[data-testid='voice-note-duration']") == "0:05"
    page.wait_for_text(STATUS, r"^Recorded 0:05\. Listen, then send or discard it\.$")
    finishing = finishing_seconds(page)
    assert finishing is not None, page.call("() => window.__statuses")
    assert finishing < 3.0  # at most 2.5 s of catching up, then the cut
    page.wait_for(f"() => ({LIVE_TRACKS})() === 0", message="the microphone released after Stop")

    send(page)
    duration = sent_mp3_duration(sandbox, conversations["whatsapp"], tmp_path)
    print(
        f"flex plugin, {page.engine}: a {took:.2f} s take as {recorded['type']}, {recorded['size']} bytes, "
        f"finishing {finishing:.2f} s, arrived as a {duration:.2f} s MP3 ({page.text(STATUS)})"
    )
    assert duration == pytest.approx(5.0, abs=0.2)
    # The agent's own note plays in the message list too, labelled with the length the service measured.
    label = page.wait_for(
        "() => document.querySelector('.Twilio-MessageBubble.from-me audio')?.getAttribute('aria-label')",
        timeout_s=30,
        message="the sent note's player in the agent's bubble",
    )
    assert label == "Agent voice note, 0:05", label


def test_a_take_stopped_mid_fragment_is_sent_to_its_length(engine_page, desktop, sandbox, conversations, tmp_path):
    """2.5 s: WebKit's take ends half-way through an MP4 fragment, which the plugin cuts back to the take."""
    page = engine_page
    desktop(page)
    open_recorder(page)
    took = record(page, 2.5)
    send(page)
    duration = sent_mp3_duration(sandbox, conversations["whatsapp"], tmp_path)
    print(f"flex plugin, {page.engine}: a {took:.2f} s take arrived as a {duration:.2f} s MP3")
    assert duration == pytest.approx(took, abs=0.2)


def test_the_preview_shows_the_recorded_length_and_plays_it_whole(engine_page, desktop):
    """Neither Firefox's nor WebKit's recordings carry a usable duration up front: the panel shows the take's. WebKit
    writes 0 as its MP4's duration and then plays a blob only as far as it had read at load (one or two of the
    take's one-second fragments): the plugin writes the take's length into the header, so the preview plays whole."""
    page = engine_page
    desktop(page)
    open_recorder(page)
    record(page, 3)
    assert page.text("[data-testid='voice-note-duration']") == "0:03"
    page.wait_for(f'() => document.querySelector("{PREVIEW}").readyState >= 1', message="the preview's metadata")
    at_load = page.call(f'() => document.querySelector("{PREVIEW}").duration')
    if page.engine == "webkit":
        assert at_load == pytest.approx(3.0, abs=0.1)  # from the header the plugin wrote
    page.call(
        f'() => {{ const audio = document.querySelector("{PREVIEW}"); audio.muted = true; return audio.play(); }}'
    )
    page.wait_for(f'() => document.querySelector("{PREVIEW}").ended', timeout_s=15, message="the preview to end")
    played, duration = page.call(
        f'() => {{ const a = document.querySelector("{PREVIEW}"); return [a.currentTime, a.duration]; }}'
    )
    print(
        f"flex plugin, {page.engine}: the 3 s preview's duration at load {at_load}, played to {played:.2f} s, "
        f"then {duration} s"
    )
    assert played == pytest.approx(3.0, abs=0.3)
    assert duration == pytest.approx(3.0, abs=0.3)  # Firefox learns it by playing to the end
    assert page.text("[data-testid='voice-note-duration']") == "0:03"


def test_customer_voice_note_plays_at_three_speeds(engine_page, desktop, app, conversations):
    page = engine_page
    desktop(page)
    customer_voice_note(app, conversations["whatsapp"])
    player = "audio[aria-label='Customer voice note, 0:05']"
    page.wait_for(f'() => document.querySelector("{player}")', timeout_s=60, message="the customer's MP3 player")
    # The service's MP3 takes the place of Flex's raw attachment link.
    assert page.call("() => document.querySelector('.raw-attachment').closest('.Twilio-MessageBubble-Body').hidden")
    duration = page.call(
        f"""() => {{
      const audio = document.querySelector("{player}");
      return audio.readyState >= 1 ? audio.duration : new Promise((resolve) =>
        audio.addEventListener('loadedmetadata', () => resolve(audio.duration), {{ once: true }}));
    }}""",
        timeout_s=30,
    )
    assert duration == pytest.approx(5.0, abs=0.3)
    page.call(f'() => {{ const audio = document.querySelector("{player}"); audio.muted = true; return audio.play(); }}')
    page.wait_for(f'() => document.querySelector("{player}").currentTime > 0.2', message="the MP3 to play")
    for label, rate in (("1.5", 1.5), ("2", 2.0), ("1", 1.0)):
        page.click(f"Play at {label}× speed", within=".Twilio-MessageBubble")
        page.wait_for(
            f'() => document.querySelector("{player}").playbackRate === {rate}', message=f"playback at {rate}x"
        )
        assert (
            page.call(
                f"() => document.querySelector(\"[aria-label='Play at {label}× speed']\").getAttribute('aria-pressed')"
            )
            == "true"
        )
    page.call(f'() => document.querySelector("{player}").pause()')


# -- the rest of Chromium's flows, in Firefox -----------------------------------------------------------------------


def recording_for_a_second(page) -> None:
    open_recorder(page)
    page.click("Start recording a voice note")
    page.wait_for_text("[data-testid='voice-note-timer']", "^0:01$", timeout_s=10)


def test_cancel_releases_the_microphone_and_sends_nothing(firefox_page, desktop, sandbox, conversations):
    page = firefox_page
    desktop(page)
    recording_for_a_second(page)
    page.click("Cancel and discard the recording")
    page.wait_for_text(STATUS, "^Recording cancelled.$")
    page.wait_for(f"() => ({LIVE_TRACKS})() === 0", message="the microphone released")
    assert page.count(PREVIEW) == 0
    assert page.count("[aria-label='Start recording a voice note']") == 1
    assert not any(message["media"] for message in sandbox.list_messages(conversations["whatsapp"]))


def test_cancel_right_after_stop_discards_the_take(firefox_page, desktop):
    """Stop asks for the take's last data before the preview; a Cancel in that wait still wins."""
    page = firefox_page
    desktop(page)
    recording_for_a_second(page)
    page.call("""() => {
      document.querySelector('[aria-label="Stop recording"]').click();
      document.querySelector('[aria-label="Cancel and discard the recording"]').click();
    }""")
    page.wait_for_text(STATUS, "^Recording cancelled.$")
    page.wait_for(f"() => ({LIVE_TRACKS})() === 0", message="the microphone released")
    page.call("() => new Promise((resolve) => setTimeout(resolve, 1000))")  # the stop event has long arrived
    assert page.count(PREVIEW) == 0
    assert page.text(ALERT) == ""


def test_recording_stops_itself_at_the_channel_limit_after_a_warning(
    firefox_page, desktop, app, sandbox, conversations, tmp_path
):
    page = firefox_page
    set_channel(app, "whatsapp", max_duration_s=12)
    desktop(page)
    open_recorder(page)
    page.wait_for_text("body", "WhatsApp: Up to 0:12")
    page.click("Start recording a voice note")
    page.wait_for_text(ALERT, "Recording stops in", timeout_s=10)
    assert page.call(f'() => document.querySelector("{PANEL}").dataset.ending') == "true"
    page.wait_for(f'() => document.querySelector("{PREVIEW}")', timeout_s=20, message="the automatic stop")
    page.wait_for_text(ALERT, "Stopped at the 0:12 limit")
    page.wait_for(f"() => ({LIVE_TRACKS})() === 0", message="the microphone released")
    send(page)
    assert sent_mp3_duration(sandbox, conversations["whatsapp"], tmp_path) <= 12.5  # the cap, with its allowance


def test_missing_microphone_is_explained(firefox_page, desktop):
    # Firefox's fake stream always exists, so the page is told what a machine without a microphone says.
    page = firefox_page
    # (Guarded: the preload script also runs in about:blank, which has no mediaDevices.)
    page.add_init_script(
        "if (navigator.mediaDevices) navigator.mediaDevices.getUserMedia = async () => {"
        " throw new DOMException('The object can not be found here.', 'NotFoundError'); };"
    )
    desktop(page)
    open_recorder(page)
    page.click("Start recording a voice note")
    page.wait_for_text(ALERT, "^No microphone was found. Connect a microphone or headset and try again.$")


def test_blocked_microphone_is_explained(firefox_without_microphone_permission, desktop):
    """Firefox with "block" as its answer to the microphone (permissions.default.microphone = 2): NotAllowedError."""
    page = firefox_without_microphone_permission
    desktop(page)
    open_recorder(page)
    page.click("Start recording a voice note")
    page.wait_for_text(ALERT, "Microphone access is blocked", timeout_s=15)
    # Nothing is stuck: the agent can fix the permission and press Record again.
    page.wait_for(
        "() => !document.querySelector('[aria-label=\"Start recording a voice note\"]')?.disabled",
        message="Record to be enabled again",
    )


# -- the same 5 s take in Chromium (Playwright's page, conftest.py), for the measured length in every engine ---------


def test_a_five_second_take_is_sent_whole_in_chromium(
    page, app, live_server, sandbox, conversations, plugin_bundle, tmp_path
):
    with stand_in_desktop(app, live_server, sandbox, conversations, plugin_bundle) as origin:
        page.goto(f"{origin}/agent-desktop/")
        page.wait_for_function("() => document.querySelector('.Twilio-MessageInputActions') && window.__pluginName")
        page.evaluate(TRACK_STREAMS)
        page.get_by_role("button", name="Voice note: show the recorder").click()
        page.get_by_role("button", name="Start recording a voice note").wait_for()
        took = page.evaluate(RECORD_FOR, 5)
        page.locator(PREVIEW).wait_for()
        recorded = page.evaluate(RECORDED_FILE)
        assert recorded["type"].startswith("audio/webm"), recorded
        page.get_by_role("button", name="Send the voice note").click()
        page.locator(STATUS).filter(has_text="Voice note sent").wait_for(timeout=60_000)
        duration = sent_mp3_duration(sandbox, conversations["whatsapp"], tmp_path)
    print(
        f"flex plugin, chromium: a {took:.2f} s take as {recorded['type']}, {recorded['size']} bytes, "
        f"arrived as a {duration:.2f} s MP3"
    )
    assert took == pytest.approx(5.0, abs=0.1)
    assert duration == pytest.approx(5.0, abs=0.2)
