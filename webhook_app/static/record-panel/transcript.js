// @ts-check
/**
 * A voice note's transcript under its player: "Transcribing…" while it is queued or running; when done, its
 * segments as one paragraph of plain, selectable text, each segment a span that seeks the player to its start and
 * plays (click, or Enter / Space when focused), the segment being heard highlighted; "No speech in this note." or
 * "No transcript: <reason>" otherwise.
 */
import { el } from "../shared/dom.js";
import { formatDuration } from "../shared/format.js";

/**
 * One stretch of speech, in seconds from the start of the MP3.
 * @typedef {{start: number, end: number, text: string}} Segment
 */
/**
 * An audio message's `transcript` (the service's contract).
 * @typedef {object} Transcript
 * @property {string} status queued, running, done, no_speech or failed
 * @property {string} [text]
 * @property {string | null} [language]
 * @property {Segment[]} [segments]
 * @property {string | null} [model]
 * @property {string} [error] the reason, when failed
 * @property {string} [deleted_at] retention deleted the text
 */

/** Transcript states the list keeps polling for. */
export const TRANSCRIPT_BUSY = new Set(["queued", "running"]);

/**
 * What the view shows, as a string: the list rebuilds the view only when this changes between polls.
 * @param {Transcript | undefined} transcript
 */
export function transcriptKey(transcript) {
  if (!transcript) return "";
  const { status, text, language, segments, error, deleted_at: deleted } = transcript;
  return JSON.stringify([status, text, language, segments, error, deleted]);
}

/**
 * The language's name, for a transcript not in English ("Spanish"); null for English or an unknown code.
 * @param {string | null | undefined} code
 */
function languageName(code) {
  if (!code || code === "en") return null;
  try {
    return new Intl.DisplayNames(["en"], { type: "language" }).of(code) || code;
  } catch {
    return code;
  }
}

/**
 * The transcript's element, wired to `audio`. `signal` removes its listeners on the player when the view is
 * replaced.
 * @param {Transcript} transcript
 * @param {HTMLAudioElement} audio
 * @param {AbortSignal} signal
 * @returns {HTMLElement}
 */
export function transcriptView(transcript, audio, signal) {
  const box = el("div", { class: "al-transcript", "data-transcript-status": transcript.status });
  if (transcript.deleted_at) {
    box.append(el("p", { class: "al-transcript-state", text: "Transcript deleted." }));
    return box;
  }
  if (TRANSCRIPT_BUSY.has(transcript.status)) {
    box.append(el("p", { class: "al-transcript-state", text: "Transcribing…" }));
    return box;
  }
  if (transcript.status === "no_speech") {
    box.append(el("p", { class: "al-transcript-state", text: "No speech in this note." }));
    return box;
  }
  if (transcript.status === "failed") {
    box.append(el("p", { class: "al-transcript-state al-transcript-state--failed",
      text: `No transcript: ${transcript.error || "unknown error"}` }));
    return box;
  }
  const segments = (transcript.segments || []).filter((segment) => segment.text.trim());
  const language = languageName(transcript.language);
  if (language) box.append(el("span", { class: "al-transcript-language", text: language }));
  if (!segments.length) {
    box.append(el("p", { class: "al-transcript-text", text: (transcript.text || "").trim() }));
    return box;
  }
  const paragraph = el("p", { class: "al-transcript-text", lang: transcript.language || null });
  const spans = segments.map((segment) => {
    const span = el("span", {
      class: "al-segment", role: "button", tabindex: "0", "data-start": String(segment.start),
      title: `Play from ${formatDuration(Math.floor(segment.start))}`, text: segment.text.trim(),
    });
    const seek = () => {
      audio.currentTime = segment.start;
      audio.play().catch(() => { /* the browser refused to play: the player still shows the new position */ });
    };
    span.addEventListener("click", () => {
      // Text being selected with the mouse is not a click on the segment.
      const selection = window.getSelection();
      if (selection && !selection.isCollapsed && paragraph.contains(selection.anchorNode)) return;
      seek();
    });
    span.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" && event.key !== " ") return;
      event.preventDefault(); // Space would scroll the page
      seek();
    });
    return span;
  });
  // Spaces between the spans, as text: a selection copies as the sentence it reads as.
  spans.forEach((span, index) => paragraph.append(...(index ? [" ", span] : [span])));
  box.append(paragraph);

  /** @type {HTMLElement | null} */
  let current = null;
  const highlight = () => {
    const time = audio.currentTime;
    const index = audio.paused && !time ? -1
      : segments.findIndex((segment, i) => time >= segment.start
        && (time < segment.end || (i + 1 < segments.length && time < segments[i + 1].start)));
    const next = index >= 0 ? spans[index] : null;
    if (next === current) return;
    current?.classList.remove("al-segment--current");
    current?.removeAttribute("aria-current");
    next?.classList.add("al-segment--current");
    next?.setAttribute("aria-current", "true");
    current = next;
  };
  for (const type of ["timeupdate", "seeked", "emptied"]) audio.addEventListener(type, highlight, { signal });
  highlight();
  return box;
}
