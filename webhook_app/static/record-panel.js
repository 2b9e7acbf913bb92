// @ts-check
/**
 * Agent voice notes for Twilio Conversations: a record panel and an audio list.
 *
 * Dependency-free ES modules (no build step), so a Flex plugin can import them straight from the service:
 *
 *   const { mountRecordPanel, mountAudioList } = await import("https://audio.example.com/static/record-panel.js");
 *   const panel = mountRecordPanel(element, { apiBaseUrl, getToken, conversationSid, onSent });
 *   const list = mountAudioList(element, { apiBaseUrl, getToken, conversationSid });
 *   // later: panel.destroy(); list.destroy();
 *
 * `getToken` is an async function returning the agent's current Flex token; it is called before every request
 * because Flex refreshes tokens while the agent works.
 *
 * This file is the entry: the parts are its sibling modules in record-panel/ (the panel, the preview, the audio
 * list: what the page shows) and shared/ (all that is not drawn: the take and its recorder, WebKit's MP4 repair and
 * Firefox's WebM cut, the API client, transcript, format and error helpers; the Flex plugin's bundle is built from
 * these same modules, and the admin page uses some). Imported from another origin, every one of them is fetched in CORS
 * mode: the service serves its static modules with `Access-Control-Allow-Origin: *`.
 */
import { AudioList } from "./record-panel/audio-list.js";
import { RecordPanel } from "./record-panel/panel.js";

export { ServiceError } from "./shared/errors.js";
export { formatDuration } from "./shared/format.js";
export { pickRecordingType, repairedRecording } from "./shared/recorder.js";

/**
 * Mount the record panel into `element`.
 * @param {HTMLElement} element
 * @param {import("./record-panel/panel.js").PanelOptions} options
 * @returns {{destroy: () => void}}
 */
export function mountRecordPanel(element, options) {
  const panel = new RecordPanel(element, options);
  return { destroy: () => panel.destroy() };
}

/**
 * Mount the conversation's audio messages into `element`. Polls quickly while rows are in progress.
 * @param {HTMLElement} element
 * @param {import("./record-panel/audio-list.js").ListOptions} options
 * @returns {{refresh: () => Promise<void>, destroy: () => void}}
 */
export function mountAudioList(element, options) {
  const list = new AudioList(element, options);
  return { refresh: () => list.refresh(), destroy: () => list.destroy() };
}
