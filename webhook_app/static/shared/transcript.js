// @ts-check
/**
 * A voice note's transcript as both players show it (the agent console's audio list and the Flex plugin's bubble
 * each draw it their own way): what it says in each state, its segments, the one being heard, and seeking the
 * player to a segment.
 */
import { formatDuration } from "./format.js";

/** @typedef {import("./api.js").Transcript} Transcript */
/** @typedef {import("./api.js").TranscriptSegment} TranscriptSegment */

/** Transcript states the list keeps polling for. */
export const TRANSCRIPT_BUSY = new Set(["queued", "running"]);

/**
 * What a transcript that has no text to show says instead ("Transcribing…"), and whether that is a failure; null
 * when it has text (done).
 * @param {Transcript} transcript
 * @returns {{text: string, failed: boolean} | null}
 */
export function transcriptNotice(transcript) {
  if (transcript.deleted_at) return { text: "Transcript deleted.", failed: false };
  if (TRANSCRIPT_BUSY.has(transcript.status)) return { text: "Transcribing…", failed: false };
  if (transcript.status === "no_speech") return { text: "No speech in this note.", failed: false };
  if (transcript.status === "failed") return { text: `No transcript: ${transcript.error || "unknown error"}`, failed: true };
  return null;
}

/**
 * The segments with something said in them.
 * @param {Transcript} transcript
 */
export function spokenSegments(transcript) {
  return (transcript.segments || []).filter((segment) => segment.text.trim());
}

/**
 * The language's name, for a transcript not in English ("Spanish"); null for English or none.
 * @param {string | null | undefined} code
 */
export function languageName(code) {
  if (!code || code === "en") return null;
  try {
    return new Intl.DisplayNames(["en"], { type: "language" }).of(code) || code;
  } catch {
    return code;
  }
}

/**
 * The segment being heard at `time` (a gap between two segments belongs to the one before); -1 before playing.
 * @param {TranscriptSegment[]} segments
 * @param {number} time
 * @param {boolean} paused
 */
export function currentSegment(segments, time, paused) {
  if (paused && !time) return -1;
  return segments.findIndex((segment, index) => time >= segment.start
    && (time < segment.end || (index + 1 < segments.length && time < segments[index + 1].start)));
}

/**
 * The segment's tooltip.
 * @param {TranscriptSegment} segment
 */
export function segmentTitle(segment) {
  return `Play from ${formatDuration(Math.floor(segment.start))}`;
}

/**
 * Play `audio` from the segment's start.
 * @param {HTMLAudioElement} audio
 * @param {TranscriptSegment} segment
 */
export function playFrom(audio, segment) {
  audio.currentTime = segment.start;
  // A refusal to play (autoplay rules) still leaves the player at the new position.
  audio.play()?.catch(() => {});
}

/**
 * Whether text in `paragraph` is being selected: a mouse selecting it is not a click on a segment.
 * @param {Node | null | undefined} paragraph
 */
export function selectingIn(paragraph) {
  const selection = window.getSelection();
  return Boolean(selection && !selection.isCollapsed && paragraph?.contains(selection.anchorNode));
}

/**
 * Whether the key plays a focused segment, as it would press a button (Enter, Space).
 * @param {string} key
 */
export function isPlayKey(key) {
  return key === "Enter" || key === " ";
}
