// @ts-check
/**
 * A voice note's transcript under its player: "Transcribing…" while it is queued or running; when done, its
 * segments as one paragraph of plain, selectable text, each segment a span that seeks the player to its start and
 * plays (click, or Enter / Space when focused), the segment being heard highlighted; "No speech in this note." or
 * "No transcript: <reason>" otherwise. What it says and which segment is heard: shared/transcript.js, as in the
 * Flex plugin.
 */
import { el } from "../shared/dom.js";
import {
  currentSegment, isPlayKey, languageName, playFrom, segmentTitle, selectingIn, spokenSegments, transcriptNotice,
} from "../shared/transcript.js";

/** @typedef {import("../shared/api.js").Transcript} Transcript */

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
 * The transcript's element, wired to `audio`. `signal` removes its listeners on the player when the view is
 * replaced.
 * @param {Transcript} transcript
 * @param {HTMLAudioElement} audio
 * @param {AbortSignal} signal
 * @returns {HTMLElement}
 */
export function transcriptView(transcript, audio, signal) {
  const box = el("div", { class: "al-transcript", "data-transcript-status": transcript.status });
  const notice = transcriptNotice(transcript);
  if (notice) {
    box.append(el("p", { class: `al-transcript-state${notice.failed ? " al-transcript-state--failed" : ""}`,
      text: notice.text }));
    return box;
  }
  const segments = spokenSegments(transcript);
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
      title: segmentTitle(segment), text: segment.text.trim(),
    });
    span.addEventListener("click", () => {
      if (!selectingIn(paragraph)) playFrom(audio, segment);
    });
    span.addEventListener("keydown", (event) => {
      if (!isPlayKey(event.key)) return;
      event.preventDefault(); // Space would scroll the page
      playFrom(audio, segment);
    });
    return span;
  });
  // Spaces between the spans, as text: a selection copies as the sentence it reads as.
  spans.forEach((span, index) => paragraph.append(...(index ? [" ", span] : [span])));
  box.append(paragraph);

  /** @type {HTMLElement | null} */
  let current = null;
  const highlight = () => {
    const index = currentSegment(segments, audio.currentTime, audio.paused);
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
