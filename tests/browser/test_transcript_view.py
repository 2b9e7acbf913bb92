"""The transcript under the player, in a real Chromium: the agent console's audio list (record-panel/transcript.js)
and the Flex plugin's bubble (flex-plugin/src/components/Transcript.tsx), on a customer voice note spoken by
espeak-ng and transcribed by the service's engine (tiny.en, offline).

Without espeak-ng or the transcribe extra these skip on a developer machine and fail under CI (CI set), as
tests/test_transcripts.py does.
"""

from __future__ import annotations

import json
import os
import re

import pytest
from playwright.sync_api import expect

os.environ["HF_HUB_OFFLINE"] = "1"  # before faster-whisper is imported: the bundled model, never the hub

from tests.browser.console import open_conversation, set_channel  # noqa: E402
from tests.helpers.speech_samples import (  # noqa: E402
    concatenate,
    normalize,
    require_espeak,
    require_transcribe_extra,
    speak,
)
from tests.helpers.webhooks import post_webhook  # noqa: E402

# Two sentences a second and a half apart: Whisper gives them as two segments at least.
FIRST = "Hi, this is Maria, calling about my internet bill."
SECOND = "My account number is 4 7 2 9 1 5. Could you call me back this afternoon?"
TRANSCRIBED_S = 180_000  # ms: the model's first load and a transcription on a loaded 2-core machine

# The position of an <audio>, and whether it plays.
CLOCK = "audio => ({time: audio.currentTime, paused: audio.paused})"


@pytest.fixture(scope="module")
def spoken_note(tmp_path_factory) -> str:
    require_espeak()
    require_transcribe_extra()
    folder = tmp_path_factory.mktemp("spoken")
    parts = [speak(folder / "first", FIRST, kind="mp3", pad_s=0.5), speak(folder / "second", SECOND, kind="mp3")]
    return concatenate(folder / "note", parts, kind="whatsapp_ogg", gap_s=1.5)


def customer_sends(app, sandbox, conversation_sid: str, path: str) -> None:
    """The customer sends the file; its signed webhook reaches the service (which converts, then transcribes)."""
    with open(path, "rb") as file:
        params = sandbox.customer_sends_media(conversation_sid, file.read(), "audio/ogg", "note.ogg")
    response = post_webhook(app.test_client(), sandbox, params)
    assert response.status_code == 200, response.get_data(as_text=True)


def check_transcript_seeks_and_selects(page, scope, audio, text, segments, screenshot) -> None:
    """The transcript (`text`, its segment spans `segments`) under the player `audio` inside `scope`: key words,
    a click on a segment seeks there and plays, Enter on a focused one too, and a mouse drag selects the text."""
    words = " ".join(normalize(text.inner_text()))
    assert "maria" in words and "call me back" in words, words
    assert segments.count() >= 2, segments.all_inner_texts()
    assert text.evaluate("node => getComputedStyle(node).userSelect") != "none"

    audio.evaluate("audio => { audio.muted = true; }")  # no autoplay policy in the way, no sound in CI
    audio.evaluate("""audio => audio.readyState >= 1 || new Promise(resolve =>
        audio.addEventListener('loadedmetadata', resolve, {once: true}))""")
    second = segments.nth(1)
    start = float(second.get_attribute("data-start"))
    assert start > 1.0, start  # after the first sentence
    second.click()
    page.wait_for_function(f"audio => !audio.paused && audio.currentTime >= {start} - 0.05", arg=audio.element_handle())
    clock = audio.evaluate("audio => { audio.pause(); return audio.currentTime; }")  # it played: stop it there
    assert clock == pytest.approx(start, abs=1.0), (clock, start)
    expect(second).to_have_attribute("aria-current", "true")  # the segment being heard
    scope.screenshot(path=str(screenshot))

    first = segments.nth(0)
    first_start = float(first.get_attribute("data-start"))
    first.focus()
    page.keyboard.press("Enter")
    page.wait_for_function(f"audio => audio.currentTime < {start} && !audio.paused", arg=audio.element_handle())
    audio.evaluate("audio => audio.pause()")
    assert audio.evaluate(CLOCK)["time"] == pytest.approx(first_start, abs=1.0)

    # Select with the mouse, from the first word to the last: the selection is the transcript, and a drag is
    # not a click on a segment (the player stays where it was).
    before = audio.evaluate(CLOCK)["time"]
    # A segment that wraps has one box per line: start in the first line of the first, end in the last line of the
    # last (the bounding box's middle may be the end of an earlier line, cutting the selection short).
    line_boxes = "node => Array.from(node.getClientRects(), r => ({x: r.x, y: r.y, width: r.width, height: r.height}))"
    box_first, box_last = first.evaluate(line_boxes)[0], segments.last.evaluate(line_boxes)[-1]
    page.mouse.move(box_first["x"] + 1, box_first["y"] + box_first["height"] / 2)
    page.mouse.down()
    page.mouse.move(box_last["x"] + box_last["width"] - 1, box_last["y"] + box_last["height"] / 2, steps=8)
    page.mouse.up()
    selected = page.evaluate("() => window.getSelection().toString()")
    selected_words = " ".join(normalize(selected))
    assert "maria" in selected_words and "call me back" in selected_words, selected
    assert audio.evaluate(CLOCK) == {"time": before, "paused": True}
    # The whole transcript, selected as a script would: the text as it reads.
    whole = text.evaluate("""node => { const range = document.createRange(); range.selectNodeContents(node);
        const selection = window.getSelection(); selection.removeAllRanges(); selection.addRange(range);
        return selection.toString(); }""")
    assert whole == " ".join(segments.all_inner_texts()), whole


def test_console_shows_the_transcript_seeks_and_lets_the_text_be_copied(
    page, app, live_server, sandbox, spoken_note, artifacts
):
    set_channel(app, "whatsapp", transcribe=True)
    conversation_sid = open_conversation(page, live_server, "WhatsApp")
    customer_sends(app, sandbox, conversation_sid, spoken_note)
    row = page.locator(".al-row--inbound")
    expect(row.locator("audio")).to_be_visible(timeout=60_000)
    transcript = row.locator(".al-transcript")
    expect(transcript).to_have_attribute("data-transcript-status", "done", timeout=TRANSCRIBED_S)
    check_transcript_seeks_and_selects(
        page,
        row,
        row.locator("audio"),
        transcript.locator(".al-transcript-text"),
        transcript.get_by_role("button"),
        artifacts / "console-transcript.png",
    )


def test_console_transcript_states_follow_the_service_and_keep_the_player(page, live_server, app, sandbox):
    """queued → "Transcribing…" (and the list keeps polling), then failed and no_speech, each with its text; the
    <audio> element stays the same one throughout (a poll never replaces a player)."""
    states = [{"status": "queued", "text": "", "language": None, "segments": [], "model": None}]
    open_conversation(page, live_server, "Web chat")

    def rewrite(route):
        response = route.fetch()
        body = response.json()
        for message in body["audio_messages"]:
            if message["status"] == "ready":
                message["transcript"] = states[-1]
        route.fulfill(response=response, body=json.dumps(body))

    page.route(re.compile(r"/api/v1/conversations/CH[0-9a-f]{32}/audio$"), rewrite)
    page.get_by_role("button", name="Simulate customer voice note").click()
    row = page.locator(".al-row--inbound")
    expect(row.locator(".al-transcript")).to_have_text("Transcribing…", timeout=30_000)
    page.evaluate("() => { window.__player = document.querySelector('.al-row--inbound audio'); }")

    states.append(
        {
            "status": "failed",
            "text": "",
            "language": None,
            "segments": [],
            "model": "tiny.en",
            "error": "the model has no Welsh",
        }
    )
    # Still polling quickly (every 1.5 s) while the transcript was queued: the change shows within seconds.
    expect(row.locator(".al-transcript")).to_have_text("No transcript: the model has no Welsh", timeout=10_000)
    assert page.evaluate("() => window.__player === document.querySelector('.al-row--inbound audio')")

    states.append({"status": "no_speech", "text": "", "language": "en", "segments": [], "model": "tiny.en"})
    page.reload()
    expect(row.locator(".al-transcript")).to_have_text("No speech in this note.", timeout=30_000)


def test_flex_plugin_shows_the_transcript_seeks_and_lets_the_text_be_copied(
    flex_page, app, sandbox, conversations, spoken_note, artifacts
):
    set_channel(app, "whatsapp", transcribe=True)
    page = flex_page()
    customer_sends(app, sandbox, conversations["whatsapp"], spoken_note)
    bubble = page.locator(".Twilio-MessageBubble").filter(has=page.locator(".raw-attachment"))
    audio = bubble.locator("audio")
    expect(audio).to_be_visible(timeout=60_000)
    transcript = bubble.get_by_test_id("transcript")
    expect(transcript).to_have_attribute("data-transcript-status", "done", timeout=TRANSCRIBED_S)
    check_transcript_seeks_and_selects(
        page,
        bubble,
        audio,
        transcript.get_by_test_id("transcript-text"),
        transcript.get_by_role("button"),
        artifacts / "flex-plugin-transcript.png",
    )
