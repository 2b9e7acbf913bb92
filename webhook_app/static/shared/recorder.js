// @ts-check
/**
 * Recording: which format this browser records, why it cannot, and one take (the microphone stream, its
 * MediaRecorder and a level meter), handed over cut back to the take and repaired (mp4.js, webm.js). Recordings
 * are Blobs here and only here: the container modules work on bytes.
 *
 * The agent console's record panel and the Flex plugin's both record with this module.
 */
import { newIdempotencyKey } from "./api.js";
import { errorParts } from "./errors.js";
import { mp4RecordedSeconds, repairedMp4 } from "./mp4.js";
import { cutWebm, webmRecordedSeconds } from "./webm.js";

// What the service accepts, best first: Chrome/Edge/Firefox record WebM or Ogg Opus, Safari records MP4/AAC.
const RECORDING_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4"];
/** @type {Record<string, string>} */
const EXTENSIONS = { "audio/webm": "webm", "audio/ogg": "ogg", "audio/mp4": "m4a" };
// WebKit hands a fragment over up to two seconds after its audio (see mp4.js): after Stop an MP4 take records on
// at most this long for its end to arrive. A frame (23 ms of AAC) short of the take counts as whole.
export const MP4_CATCH_UP_MS = 2500;
const MP4_END_TOLERANCE_S = 0.03;
// Firefox drops at stop() the audio still queued for its encoder (0.1-0.3 s under load, see webm.js): after Stop a
// WebM take records on at most this long, asking for its data every WEBM_POLL_MS, until blocks covering it arrived.
export const WEBM_CATCH_UP_MS = 1000;
const WEBM_POLL_MS = 100;
const WEBM_END_TOLERANCE_S = 0.02;

/**
 * What a record panel needs of a take (the plugin's tests give the panel fakes of this shape).
 * @typedef {object} TakeControls
 * @property {Promise<void>} finished settles when the recorder stops; rejects when it fails mid-recording
 * @property {() => number} elapsed seconds recorded so far (frozen once stopped)
 * @property {() => number} level input level 0..1
 * @property {() => Promise<Blob>} stop stop, wait for the take's end (in WebKit up to MP4_CATCH_UP_MS), release the
 *   microphone; the recording, cut back to the take
 * @property {() => void} release give the microphone back at once, dropping what was recorded
 */
/**
 * A recording ready to send.
 * @typedef {object} Recording
 * @property {Blob} blob
 * @property {string} url its object URL, for the preview
 * @property {number} duration seconds: measured while recording (the console's preview then puts what the
 *   browser decoded)
 * @property {string} filename
 * @property {string} idempotencyKey one per recording: a retried send is answered, never posted twice
 */
/** @typedef {{context: AudioContext, analyser: AnalyserNode, samples: Float32Array<ArrayBuffer>}} Levels */

/**
 * The first type in RECORDING_TYPES this browser can record, or null.
 * @param {{isTypeSupported?: (type: string) => boolean} | undefined} [Recorder]
 */
export function pickRecordingType(Recorder = globalThis.MediaRecorder) {
  if (typeof Recorder?.isTypeSupported !== "function") return null;
  return RECORDING_TYPES.find((type) => Recorder.isTypeSupported?.(type)) || null;
}

/** Why this page cannot record here, or null when it can. */
export function unsupportedReason() {
  const canCapture = Boolean(globalThis.navigator?.mediaDevices?.getUserMedia);
  if (!canCapture && globalThis.isSecureContext === false) {
    return "Recording needs a secure page: open this page over https://.";
  }
  if (!canCapture || typeof globalThis.MediaRecorder !== "function") {
    return "This browser cannot record audio. Use a current version of Chrome, Edge, Firefox or Safari.";
  }
  if (!pickRecordingType()) {
    return "This browser cannot record audio in a format the service accepts (WebM, Ogg or MP4).";
  }
  return null;
}

/**
 * What to tell the agent when the microphone could not be opened.
 * @param {unknown} error what getUserMedia rejected with
 */
export function microphoneErrorMessage(error) {
  const { name, message } = errorParts(error);
  switch (name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access is blocked. Allow the microphone for this site (the icon in the address bar), then try again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect a microphone or headset and try again.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone could not be started. Another application may be using it.";
    default:
      return `The microphone could not be used${message ? `: ${message}` : "."}`;
  }
}

/**
 * The name the recording is uploaded under: its type's extension.
 * @param {Blob} blob
 */
export function filenameFor(blob) {
  const baseType = (blob.type || "").split(";")[0].trim();
  return `voice-note.${EXTENSIONS[baseType] || "webm"}`;
}

/**
 * A take's recording, ready to preview and send, with its own Idempotency-Key.
 * @param {Blob} blob
 * @param {number} duration seconds
 * @returns {Recording}
 */
export function newRecording(blob, duration) {
  return {
    blob, duration, url: URL.createObjectURL(blob), filename: filenameFor(blob), idempotencyKey: newIdempotencyKey(),
  };
}

/**
 * The bytes of `blob`. (jsdom's Blob, the plugin's unit tests, has no arrayBuffer(); FileReader is everywhere.)
 * @param {Blob} blob
 * @returns {Promise<ArrayBuffer>}
 */
export function readBytes(blob) {
  if (typeof blob.arrayBuffer === "function") return blob.arrayBuffer();
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(/** @type {ArrayBuffer} */ (reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsArrayBuffer(blob);
  });
}

/**
 * The recording cut back to `seconds` and repaired, by its container: WebKit's MP4 (mp4.js) and a WebM take
 * recorded on after Stop (webm.js); anything else, or nothing to change, is `blob` itself.
 * @param {Blob} blob
 * @param {number} [seconds]
 * @returns {Promise<Blob>}
 */
export async function repairedRecording(blob, seconds = Infinity) {
  const repair = blob.type.startsWith("audio/mp4") ? repairedMp4
    : blob.type.startsWith("audio/webm") ? cutWebm : null;
  const repaired = repair && repair(await readBytes(blob), seconds);
  return repaired ? new Blob([repaired], { type: blob.type }) : blob;
}

/** One take: the microphone stream, its MediaRecorder and a level analyser. Always ends with tracks stopped. */
export class Take {
  /**
   * @param {MediaStream} stream
   * @param {string | null} mimeType
   * @param {{catchUpMs?: number}} [options] `catchUpMs`: the longest wait for the take's end after Stop (for MP4;
   *   a WebM take waits at most WEBM_CATCH_UP_MS of it)
   */
  constructor(stream, mimeType, { catchUpMs = MP4_CATCH_UP_MS } = {}) {
    this.stream = stream;
    this.requestedType = mimeType;
    this.catchUpMs = catchUpMs;
    /** @type {Blob[]} */
    this.chunks = [];
    /** @type {number | null} */
    this.startedAt = null;
    /** @type {number | null} */
    this.stoppedAt = null;
    this.recorder = new MediaRecorder(stream, { mimeType: mimeType ?? undefined });
    this.recorder.addEventListener("dataavailable", (event) => {
      if (event.data?.size) this.chunks.push(event.data);
    });
    /** @type {Promise<void>} Resolves when the recorder stopped, rejects with its error. */
    this.finished = new Promise((resolve, reject) => {
      this.recorder.addEventListener("stop", () => resolve());
      this.recorder.addEventListener("error", (event) => reject(recorderError(event)));
    });
    this.finished.catch(() => {}); // observed by the panel; no unhandled rejection here
    this.started = new Promise((resolve) => {
      this.recorder.addEventListener("start", () => {
        this.startedAt = performance.now();
        resolve(undefined);
      });
    });
    // A timeslice keeps the data flowing, so a crash mid-recording loses at most a second.
    this.recorder.start(1000);
    /** @type {Levels | null} */
    this.levels = this.openAnalyser();
  }

  /**
   * Ask for the microphone and start recording in `mimeType`.
   * @param {string | null} mimeType
   * @param {{catchUpMs?: number}} [options]
   */
  static async open(mimeType, options) {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    try {
      return new Take(stream, mimeType, options);
    } catch (error) {
      stream.getTracks().forEach((track) => track.stop());
      throw error;
    }
  }

  /** @returns {Levels | null} */
  openAnalyser() {
    /** @type {typeof AudioContext | undefined} Safari before 14.1 names it webkitAudioContext. */
    const Context = globalThis.AudioContext || Reflect.get(globalThis, "webkitAudioContext");
    if (!Context) return null;
    try {
      const context = new Context();
      const analyser = context.createAnalyser();
      analyser.fftSize = 1024;
      context.createMediaStreamSource(this.stream).connect(analyser);
      return { context, analyser, samples: new Float32Array(analyser.fftSize) };
    } catch {
      return null; // the meter is a nicety; recording works without it
    }
  }

  /** Input level 0..1 (RMS, scaled so normal speech fills most of the bar). */
  level() {
    if (!this.levels) return 0;
    const { analyser, samples } = this.levels;
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const sample of samples) sum += sample * sample;
    return Math.min(1, Math.sqrt(sum / samples.length) * 4);
  }

  /** Seconds recorded, from the recorder's start event to now or to Stop. */
  elapsed() {
    if (this.startedAt == null) return 0;
    return ((this.stoppedAt ?? performance.now()) - this.startedAt) / 1000;
  }

  /**
   * Stop and hand over the recording, cut back to the take: WebKit's MP4 repaired (see mp4.js), a WebM take's end
   * waited for (Firefox's encoder lags, see webm.js). What was recorded after Stop only carried the take's end.
   */
  async stop() {
    const type = this.type();
    const mp4 = type.startsWith("audio/mp4");
    const webm = type.startsWith("audio/webm");
    if (this.isRecording()) {
      this.stoppedAt = performance.now();
      // WebKit's MP4 lags a fragment behind, Firefox's encoder a little: record on until the take's length arrived.
      if (mp4) await this.fragmentsCovering(this.elapsed());
      if (webm) await this.blocksCovering(this.elapsed());
      if (this.isRecording()) { // (a Cancel meanwhile has stopped it)
        this.recorder.requestData(); // flushes what a recorder holds back (Safari's fragment in progress)
        this.recorder.stop();
      }
    }
    try {
      await this.finished;
    } finally {
      this.release();
    }
    return repairedRecording(new Blob(this.chunks, { type: this.type() }), this.elapsed());
  }

  /**
   * Not stopped yet. (A separate look at the state: TypeScript would take it for unchanged since the one before
   * an await, but the recorder may have stopped meanwhile.)
   */
  isRecording() {
    return this.recorder.state !== "inactive";
  }

  type() {
    // Firefox's mimeType stays empty until the start event, and its chunks say "audio/ogg; codecs=opus".
    return this.recorder.mimeType || this.chunks[0]?.type || this.requestedType || "audio/webm";
  }

  /**
   * Seconds of audio the chunks so far hold, read by `recordedSeconds` (mp4.js's or webm.js's).
   * @param {(bytes: ArrayBuffer) => number} recordedSeconds
   */
  async secondsSoFar(recordedSeconds) {
    return recordedSeconds(await readBytes(new Blob(this.chunks)));
  }

  /**
   * Wait (at most catchUpMs) until the MP4 chunks hold `seconds` of audio, or the recorder stopped (a Cancel).
   * @param {number} seconds
   */
  async fragmentsCovering(seconds) {
    const deadline = performance.now() + this.catchUpMs;
    const covered = async () => await this.secondsSoFar(mp4RecordedSeconds) >= seconds - MP4_END_TOLERANCE_S;
    if (await covered()) return;
    this.recorder.requestData();
    while (this.isRecording() && performance.now() < deadline) {
      await this.dataOrStop(deadline - performance.now());
      if (await covered()) return;
    }
  }

  /**
   * Ask for the WebM data every WEBM_POLL_MS (at most WEBM_CATCH_UP_MS, or catchUpMs when shorter) until it holds
   * `seconds` of audio, or the recorder stopped (a Cancel).
   * @param {number} seconds
   */
  async blocksCovering(seconds) {
    const deadline = performance.now() + Math.min(this.catchUpMs, WEBM_CATCH_UP_MS);
    const covered = async () => await this.secondsSoFar(webmRecordedSeconds) >= seconds - WEBM_END_TOLERANCE_S;
    while (this.isRecording() && performance.now() < deadline) {
      this.recorder.requestData();
      await this.dataOrStop(Math.min(WEBM_POLL_MS, deadline - performance.now()));
      if (await covered()) return;
    }
  }

  /**
   * Settles at the recorder's next chunk, its stop (a Cancel), or after `ms`, whichever comes first.
   * @param {number} ms
   * @returns {Promise<void>}
   */
  dataOrStop(ms) {
    const recorder = this.recorder;
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms));
      function done() {
        clearTimeout(timer);
        recorder.removeEventListener("dataavailable", done);
        recorder.removeEventListener("stop", done);
        resolve();
      }
      recorder.addEventListener("dataavailable", done);
      recorder.addEventListener("stop", done);
    });
  }

  /** Give the microphone back: the browser's recording indicator goes away only when every track stops. */
  release() {
    if (this.isRecording()) {
      try {
        this.recorder.stop();
      } catch {
        // already stopping
      }
    }
    this.stream.getTracks().forEach((track) => track.stop());
    if (this.levels) {
      this.levels.context.close().catch(() => {});
      this.levels = null;
    }
  }
}

/**
 * The error of a recorder's error event (older engines put it on the event), or a plain one.
 * @param {Event} event
 */
function recorderError(event) {
  const error = Reflect.get(event, "error");
  return error || new Error("recording failed");
}
