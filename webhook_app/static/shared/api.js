// @ts-check
/**
 * The service's agent API (see its HTTP interface): a conversation's audio settings, its audio messages, the
 * upload of a voice note. The agent console's panel and list and the Flex plugin all call it through this client,
 * with the agent's Flex token (asked for before every request, as Flex refreshes it).
 */
import { ServiceError, errorParts, isAbortError, parseJson, serviceError } from "./errors.js";

/**
 * The channel's audio settings (GET .../audio-settings).
 * @typedef {object} AudioSettings
 * @property {string} channel
 * @property {boolean} sending_enabled
 * @property {number | null} [max_bytes]
 * @property {number | null} [max_duration_s]
 * @property {number | null} [bitrate_kbps]
 */
/** @typedef {"queued" | "downloading" | "transcoding" | "sending" | "ready" | "failed"} AudioStatus */
/**
 * One stretch of speech, in seconds from the start of the MP3.
 * @typedef {{start: number, end: number, text: string}} TranscriptSegment
 */
/** @typedef {"queued" | "running" | "done" | "no_speech" | "failed"} TranscriptStatus */
/**
 * An audio message's transcript, where its channel transcribes.
 * @typedef {object} Transcript
 * @property {TranscriptStatus} status
 * @property {string} [text]
 * @property {string | null} [language]
 * @property {TranscriptSegment[]} [segments]
 * @property {string | null} [model]
 * @property {string} [error] the reason, when failed
 * @property {string} [deleted_at] retention deleted the text
 */
/**
 * One audio message (GET .../audio).
 * @typedef {object} AudioMessage
 * @property {number} audit_id
 * @property {"inbound" | "outbound"} direction
 * @property {string} channel
 * @property {string} conversation_sid
 * @property {string | null} message_sid
 * @property {string | null} media_sid
 * @property {AudioStatus} status
 * @property {number | null} duration_s
 * @property {string} [playback_url]
 * @property {string} [error]
 * @property {Transcript} [transcript] only where the channel transcribes
 * @property {string} [created_at]
 */
/**
 * The service's answer to an upload: the voice note it sent.
 * @typedef {object} UploadResult
 * @property {number} audit_id
 * @property {string} message_sid
 * @property {string} media_sid
 * @property {number} duration_s
 * @property {number} size_bytes
 * @property {string} content_type
 */
/** @typedef {{blob: Blob, filename: string, idempotencyKey: string}} Upload what is posted of a recording */
/** @typedef {() => string | Promise<string>} TokenSource the agent's current Flex token */

/** The audio service's agent API for one service (its origin and path prefix; "" for the page's own). */
export class AudioService {
  /**
   * @param {string} baseUrl
   * @param {TokenSource} getToken
   */
  constructor(baseUrl, getToken) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.getToken = getToken;
  }

  /**
   * The conversation's endpoint `suffix` under the service's API.
   * @param {string} conversationSid
   * @param {"audio" | "audio-settings"} suffix
   */
  url(conversationSid, suffix) {
    return `${this.baseUrl}/api/v1/conversations/${encodeURIComponent(conversationSid)}/${suffix}`;
  }

  /**
   * @param {string} conversationSid
   * @param {AbortSignal} [signal]
   * @returns {Promise<AudioSettings>}
   */
  settings(conversationSid, signal) {
    return this.getJson(this.url(conversationSid, "audio-settings"), signal);
  }

  /**
   * The conversation's audio messages, in both directions.
   * @param {string} conversationSid
   * @param {AbortSignal} [signal]
   * @returns {Promise<AudioMessage[]>}
   */
  async list(conversationSid, signal) {
    /** @type {{audio_messages?: AudioMessage[]}} */
    const body = await this.getJson(this.url(conversationSid, "audio"), signal);
    return body.audio_messages ?? [];
  }

  /**
   * POST the recording with XMLHttpRequest, because fetch still cannot report upload progress.
   * @param {string} conversationSid
   * @param {Upload} recording
   * @param {{onProgress?: (fraction: number) => void, signal: AbortSignal}} how
   * @returns {Promise<UploadResult>} the sent note ({} when the answer is not JSON)
   */
  async upload(conversationSid, recording, { onProgress, signal }) {
    const token = await this.token();
    // Cancelled while the host app was handing out the token: its abort event has fired already.
    if (signal.aborted) throw uploadCancelled();
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", this.url(conversationSid, "audio"));
      xhr.setRequestHeader("Authorization", `Bearer ${token}`);
      // One key per recording: a retried send of the same clip is answered, never posted twice.
      xhr.setRequestHeader("Idempotency-Key", recording.idempotencyKey);
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress?.(event.loaded / event.total);
      });
      xhr.addEventListener("load", () => {
        if (xhr.status >= 200 && xhr.status < 300) resolve(/** @type {UploadResult} */ (parseJson(xhr.responseText) ?? {}));
        else reject(errorFromBody(xhr.status, xhr.responseText));
      });
      xhr.addEventListener("error", () => reject(this.networkError()));
      xhr.addEventListener("abort", () => reject(uploadCancelled()));
      signal.addEventListener("abort", () => xhr.abort(), { once: true });
      const form = new FormData();
      form.append("audio", recording.blob, recording.filename);
      xhr.send(form);
    });
  }

  /**
   * GET a JSON resource. Throws a ServiceError (or the AbortError of `signal`).
   * @param {string} url
   * @param {AbortSignal} [signal]
   * @returns {Promise<any>} the parsed body
   */
  async getJson(url, signal) {
    const token = await this.token();
    let response;
    try {
      response = await fetch(url, { headers: { Authorization: `Bearer ${token}`, Accept: "application/json" }, signal });
    } catch (error) {
      if (isAbortError(error)) throw error;
      throw this.networkError();
    }
    const text = await response.text();
    if (!response.ok) throw errorFromBody(response.status, text);
    return JSON.parse(text);
  }

  /** The token, or a ServiceError saying why there is none. */
  async token() {
    try {
      return await this.getToken();
    } catch (error) {
      throw new ServiceError(errorParts(error).message || "No Flex token.", 401, "no_token");
    }
  }

  /** The service was not reached: at another origin (from a Flex plugin), the cause may be its CORS allow-list. */
  networkError() {
    const message = /^https?:\/\//i.test(this.baseUrl)
      ? `Could not reach the audio service at ${this.baseUrl}. Check the connection, or ask an administrator to `
        + "check the service and that it allows this page's origin."
      : "Could not reach the audio service. Check the connection and try again.";
    return new ServiceError(message, 0, "network_error");
  }
}

/**
 * @param {number} status
 * @param {string} text the answer's body
 */
function errorFromBody(status, text) {
  return serviceError(status, parseJson(text), `The audio service answered with HTTP ${status}. Try again in a moment.`);
}

function uploadCancelled() {
  return new DOMException("Upload cancelled", "AbortError");
}

/** A new Idempotency-Key: a UUID, or 32 random hex digits where randomUUID is missing. */
export function newIdempotencyKey() {
  if (typeof globalThis.crypto?.randomUUID === "function") return crypto.randomUUID();
  // randomUUID is missing on older Safari; getRandomValues is everywhere and is just as unguessable.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
