// @ts-check
/**
 * The agent API as the record panel and the audio list call it, with the agent's Flex token (asked of the host
 * page before every request, as Flex refreshes it).
 */
import { ServiceError, isAbortError, parseJson, serviceError } from "../shared/errors.js";

/**
 * What the panel and the list need to reach the service for one conversation.
 * @typedef {object} ServiceOptions
 * @property {string} [apiBaseUrl] the service's origin and path prefix ("" for the page's own)
 * @property {() => Promise<string>} getToken the agent's current Flex token
 * @property {string} conversationSid
 */

/**
 * A recording ready to send.
 * @typedef {object} Recording
 * @property {Blob} blob
 * @property {string} url its object URL, for the preview
 * @property {number} duration seconds: measured while recording, then what the browser decoded
 * @property {string} filename
 * @property {string} idempotencyKey one per recording: a retried send is answered, never posted twice
 */

export const NETWORK_ERROR = "Could not reach the audio service. Check the connection and try again.";

/**
 * The conversation's endpoint `suffix` ("audio", "audio-settings") under the service's API.
 * @param {ServiceOptions} options
 * @param {string} suffix
 */
export function endpoint({ apiBaseUrl, conversationSid }, suffix) {
  const base = (apiBaseUrl || "").replace(/\/+$/, "");
  return `${base}/api/v1/conversations/${encodeURIComponent(conversationSid)}/${suffix}`;
}

/**
 * @param {number} status
 * @param {string} text the answer's body
 */
function errorFromBody(status, text) {
  return serviceError(status, parseJson(text), `The audio service answered with HTTP ${status}. Try again in a moment.`);
}

/**
 * GET a JSON resource of the agent API. Throws a ServiceError (or the AbortError of `signal`).
 * @param {ServiceOptions} options
 * @param {string} url
 * @param {AbortSignal} [signal]
 * @returns {Promise<any>} the parsed body
 */
export async function getJson({ getToken }, url, signal) {
  const token = await getToken();
  let response;
  try {
    response = await fetch(url, { headers: { Authorization: `Bearer ${token}`, Accept: "application/json" }, signal });
  } catch (error) {
    if (isAbortError(error)) throw error;
    throw new ServiceError(NETWORK_ERROR, 0, "network_error");
  }
  const text = await response.text();
  if (!response.ok) throw errorFromBody(response.status, text);
  return JSON.parse(text);
}

/**
 * POST the recording with XMLHttpRequest, because fetch still cannot report upload progress.
 * @param {ServiceOptions} options
 * @param {Recording} recording
 * @param {{onProgress: (fraction: number) => void, signal: AbortSignal}} how
 * @returns {Promise<any>} the service's answer: the sent note (`duration_s`, …), {} when it is not JSON
 */
export async function uploadRecording(options, recording, { onProgress, signal }) {
  const token = await options.getToken();
  // Cancelled while the host app was fetching the token: its abort event has fired already.
  if (signal.aborted) throw new DOMException("Upload cancelled", "AbortError");
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", endpoint(options, "audio"));
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.setRequestHeader("Idempotency-Key", recording.idempotencyKey);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(parseJson(xhr.responseText) ?? {});
      else reject(errorFromBody(xhr.status, xhr.responseText));
    });
    xhr.addEventListener("error", () => reject(new ServiceError(NETWORK_ERROR, 0, "network_error")));
    xhr.addEventListener("abort", () => reject(new DOMException("Upload cancelled", "AbortError")));
    signal.addEventListener("abort", () => xhr.abort(), { once: true });
    const form = new FormData();
    form.append("audio", recording.blob, recording.filename);
    xhr.send(form);
  });
}

/** A new Idempotency-Key: a UUID, or 32 random hex digits where randomUUID is missing. */
export function newIdempotencyKey() {
  if (typeof globalThis.crypto?.randomUUID === "function") return crypto.randomUUID();
  // randomUUID is missing on older Safari; getRandomValues is everywhere and is just as unguessable.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
