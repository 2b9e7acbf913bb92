// @ts-check
/** The take's preview: its own small player, showing the length the browser decodes once it knows it. */
import { learnDecodedLength } from "../shared/decoded-length.js";
import { el } from "../shared/dom.js";
import { formatDuration } from "../shared/format.js";
import { panelButton } from "./ui.js";

/** @typedef {import("../shared/recorder.js").Recording} Recording */

// A decoded length may fall short of the measured one by the recorder's start-up and its last frame, not more.
const DECODED_SHORTER_THAN_TAKE_S = 0.5;

/**
 * The take's own small player: play/pause, a seek bar and "position / length". Not the browser's controls:
 * for a fresh WebM recording Chrome's show "0:00" and no length, and a panel this narrow hides their clock.
 * The length is the one measured while recording until the browser has decoded the file's own (then
 * `recording.duration` is that).
 * @param {Recording} recording
 * @param {{onSend: () => void, onDiscard: () => void}} actions
 */
export function previewView(recording, { onSend, onDiscard }) {
  const audio = el("audio", { preload: "metadata", src: recording.url });
  const play = panelButton("", "Play the recording", () => (audio.paused ? audio.play() : audio.pause()),
    { kind: "play", focus: false });
  play.classList.add("rp-button--icon");
  const seek = el("input", { type: "range", class: "rp-seek", min: "0", max: String(recording.duration), step: "any",
    value: "0", "aria-label": "Position in the recording" });
  const clock = el("span", { class: "rp-duration" });
  const showTime = () => {
    const position = Math.min(audio.currentTime || 0, recording.duration);
    if (document.activeElement !== seek) seek.value = String(position);
    clock.textContent = `${formatDuration(position)} / ${formatDuration(recording.duration)}`;
    seek.setAttribute("aria-valuetext", clock.textContent);
  };
  const icon = play.querySelector(".rp-icon");
  const showPlaying = () => {
    play.setAttribute("aria-label", audio.paused ? "Play the recording" : "Pause the recording");
    if (icon) icon.className = `rp-icon rp-icon--${audio.paused ? "play" : "pause"}`;
  };
  const measured = recording.duration;
  learnDecodedLength(audio, {
    onLength: (seconds) => {
      // Shorter than the take is a partial view (WebKit's first fragment), not the file's length.
      if (seconds < measured - DECODED_SHORTER_THAN_TAKE_S) return;
      recording.duration = seconds;
      seek.max = String(seconds);
      showTime();
    },
  });
  seek.addEventListener("input", () => { audio.currentTime = Number(seek.value); });
  audio.addEventListener("timeupdate", showTime);
  for (const event of ["play", "pause", "ended"]) audio.addEventListener(event, showPlaying);
  // WebKit's last timeupdate can come a quarter second before the end: the clock would stop short of it.
  audio.addEventListener("ended", showTime);
  showTime();
  return el("div", { class: "rp-row rp-preview", role: "group", "aria-label": "Preview of your recording" },
    audio, play, seek, clock,
    panelButton("Send", "Send the voice note", onSend, { primary: true, kind: "send" }),
    panelButton("Discard", "Discard the recording", onDiscard));
}
