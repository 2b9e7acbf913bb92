// @ts-check
/**
 * The length a browser decodes from a fresh recording, learnt for the preview's player: the console's record
 * panel (record-panel/preview.js) and the Flex plugin's (RecordPanel.tsx) both use this; each shows it its own way.
 */

/**
 * Make `audio` learn the length of what it plays, and tell `onLength` each finite length it reports. The engines
 * differ:
 * - Chrome writes WebM without a duration (the element says Infinity): seeking past the end makes the player read
 *   the file to its end and learn it; the player is then put back at the start.
 * - Firefox says Infinity too and ignores that seek: it learns the length only by playing to the end, so the probe
 *   is called off once playing starts (its late durationchange must not rewind the player).
 * - WebKit reads the length the MP4's header says: the take's, which the repair writes (see mp4.js). (WebKit's own
 *   header says 0; it then said "1 s", the fragments it had read, and played only those.)
 * Call it before the metadata loads (right after creating or mounting the element). Aborting `signal` removes its
 * listeners (a React effect's cleanup, a new `src`).
 * @param {HTMLAudioElement} audio
 * @param {{onLength?: (seconds: number) => void, signal?: AbortSignal}} [options]
 */
export function learnDecodedLength(audio, { onLength, signal } = {}) {
  if (signal?.aborted) return;
  let probing = false;
  const learnt = () => {
    if (!Number.isFinite(audio.duration)) return;
    if (probing) {
      probing = false;
      if (audio.currentTime) audio.currentTime = 0; // back from the probe below
    }
    onLength?.(audio.duration);
  };
  const probe = () => {
    if (audio.duration !== Infinity) return;
    probing = true;
    audio.currentTime = Number.MAX_SAFE_INTEGER;
  };
  const playing = () => {
    probing = false;
  };
  audio.addEventListener("durationchange", learnt);
  audio.addEventListener("loadedmetadata", probe, { once: true });
  audio.addEventListener("play", playing);
  // By hand, not addEventListener's `signal` option: older engines (and the plugin tests' jsdom) ignore that.
  signal?.addEventListener("abort", () => {
    audio.removeEventListener("durationchange", learnt);
    audio.removeEventListener("loadedmetadata", probe);
    audio.removeEventListener("play", playing);
  }, { once: true });
}
