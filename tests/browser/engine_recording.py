"""The record panel as the Firefox and WebKit tests drive it (engines.py's pages, no init scripts): the script that
keeps the microphone streams, when the recorder started and what it recorded; a take timed inside the page; the
container each engine records."""

from __future__ import annotations

from tests.browser.console import TRACK_STREAMS as CHROMIUM_TRACK_STREAMS

# Installed after the page loaded (WebKitWebDriver has no init scripts): the panel asks for the microphone only on
# Record. Keeps every microphone stream (as in Chromium's tests), when the recorder started, and the recording.
TRACK_STREAMS = (
    "() => {"
    + CHROMIUM_TRACK_STREAMS
    + """
  // When the recorder really started: a take's length counts from its start event, not from the click.
  const start = MediaRecorder.prototype.start;
  MediaRecorder.prototype.start = function (...args) {
    window.__recorderStartedAt = null;
    this.addEventListener("start", () => { window.__recorderStartedAt = performance.now(); }, { once: true });
    return start.apply(this, args);
  };
  // The recording the preview plays. (Firefox refuses a fetch of the blob: URL from a driver's script.)
  const createObjectURL = URL.createObjectURL;
  URL.createObjectURL = (blob) => { window.__recorded = blob; return createObjectURL(blob); };
}"""
)

# Record exactly `seconds` from the recorder's start, timed inside the page: a driver round trip per poll (tens of
# milliseconds, more in WebKit) would make the take's length a matter of luck.
RECORD_FOR = """async (seconds) => {
  document.querySelector('[aria-label="Start recording a voice note"]').click();
  while (window.__recorderStartedAt == null) await new Promise((resolve) => setTimeout(resolve, 5));
  const stopAt = window.__recorderStartedAt + seconds * 1000;
  while (performance.now() < stopAt) await new Promise((resolve) => setTimeout(resolve, 2));
  document.querySelector('[aria-label="Stop recording"]').click();
  return (performance.now() - window.__recorderStartedAt) / 1000;
}"""

# What the preview plays: its container (as the blob says) and size.
RECORDED_FILE = "() => ({ type: window.__recorded.type, size: window.__recorded.size })"
EXPECTED_CONTAINER = {"firefox": r"^audio/(webm|ogg)", "webkit": r"^audio/mp4"}
