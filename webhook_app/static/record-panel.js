/**
 * Agent voice notes for Twilio Conversations: a record panel and an audio list.
 *
 * A dependency-free ES module (no build step), so a Flex plugin can import it straight from the service:
 *
 *   const { mountRecordPanel, mountAudioList } = await import("https://audio.example.com/static/record-panel.js");
 *   const panel = mountRecordPanel(element, { apiBaseUrl, getToken, conversationSid, onSent });
 *   const list = mountAudioList(element, { apiBaseUrl, getToken, conversationSid });
 *   // later: panel.destroy(); list.destroy();
 *
 * `getToken` is an async function returning the agent's current Flex token; it is called before every request
 * because Flex refreshes tokens while the agent works.
 */

// What the service accepts, best first: Chrome/Edge/Firefox record WebM or Ogg Opus, Safari records MP4/AAC.
const RECORDING_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4"];
const EXTENSIONS = { "audio/webm": "webm", "audio/ogg": "ogg", "audio/mp4": "m4a" };
const WARN_BEFORE_END_S = 10;
const TICK_MS = 200;
// Stop this much before the cap: the timer only looks every TICK_MS, and MediaRecorder hands over its last
// chunk a little after the stop (the service allows half a second over the cap for that, no more).
const STOP_BEFORE_LIMIT_S = TICK_MS / 1000 + 0.1;
// WebKit hands a fragment over up to two seconds after its audio (see repairedMp4); a frame (23 ms) short is whole.
const MP4_CATCH_UP_MS = 2500;
const MP4_END_TOLERANCE_S = 0.03;
// A decoded length may fall short of the measured one by the recorder's start-up and its last frame, not more.
const DECODED_SHORTER_THAN_TAKE_S = 0.5;
// The server caps the MP3 it makes, not the upload; stop early enough that the MP3 fits (frame/header overhead).
const MP3_SIZE_MARGIN = 0.95;

const CHANNEL_NAMES = { whatsapp: "WhatsApp", sms: "SMS/MMS", webchat: "Web chat", messenger: "Messenger", other: "Other" };
const STATUS_TEXT = {
  queued: "Waiting to be processed…",
  downloading: "Downloading from Twilio…",
  transcoding: "Converting to MP3…",
  sending: "Sending…",
  failed: "Could not be processed",
};
const IN_PROGRESS = new Set(["queued", "downloading", "transcoding", "sending"]);
const SPEEDS = [1, 1.5, 2];

let idCounter = 0;

// ---------------------------------------------------------------------------------------------------------
// Small helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === false || value == null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child != null));
  return node;
}

function uniqueId(prefix) {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/**
 * A length as m:ss (h:mm:ss from an hour), to the nearest second: the one rule of every duration shown, here, in
 * the agent console and on the admin page (which imports it), so a 3.9 s clip reads 0:04 in all of them.
 */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–:––";
  const whole = Math.round(seconds);
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = String(whole % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

function formatMegabytes(bytes) {
  const mb = bytes / (1024 * 1024);
  return `${mb >= 10 ? Math.round(mb) : Math.round(mb * 10) / 10} MB`;
}

function newIdempotencyKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  // randomUUID is missing on older Safari; getRandomValues is everywhere and is just as unguessable.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function micIcon() {
  const icon = el("span", { class: "rp-mic", "aria-hidden": "true" });
  // Static markup, no data in it: innerHTML is the short way to an SVG.
  icon.innerHTML = '<svg viewBox="0 0 24 24" width="16" height="16" fill="none" stroke="currentColor" stroke-width="2"'
    + ' stroke-linecap="round"><rect x="9" y="3" width="6" height="11" rx="3"/><path d="M5 11a7 7 0 0 0 14 0M12 18v3"/></svg>';
  return icon;
}

function ensureStylesheet() {
  // Flex plugins only import the module; loading the CSS next to it spares them a second step.
  const href = new URL("./record-panel.css", import.meta.url).href;
  if (document.querySelector(`link[data-record-panel-css]`)) return;
  document.head.append(el("link", { rel: "stylesheet", href, "data-record-panel-css": true }));
}

// ---------------------------------------------------------------------------------------------------------
// The service's API

export class ServiceError extends Error {
  constructor(message, status = 0, code = "error") {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function endpoint(apiBaseUrl, conversationSid, suffix) {
  const base = (apiBaseUrl || "").replace(/\/+$/, "");
  return `${base}/api/v1/conversations/${encodeURIComponent(conversationSid)}/${suffix}`;
}

function errorFromBody(status, text) {
  try {
    const error = JSON.parse(text)?.error;
    if (error?.message) return new ServiceError(error.message, status, error.code || "error");
  } catch {
    // not JSON: a proxy's HTML error page, say
  }
  return new ServiceError(`The audio service answered with HTTP ${status}. Try again in a moment.`, status);
}

const NETWORK_ERROR = "Could not reach the audio service. Check the connection and try again.";

async function getJson({ getToken }, url, signal) {
  const token = await getToken();
  let response;
  try {
    response = await fetch(url, { headers: { Authorization: `Bearer ${token}`, Accept: "application/json" }, signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ServiceError(NETWORK_ERROR, 0, "network_error");
  }
  const text = await response.text();
  if (!response.ok) throw errorFromBody(response.status, text);
  return JSON.parse(text);
}

/** POST the recording with XMLHttpRequest, because fetch still cannot report upload progress. */
async function uploadRecording(options, recording, { onProgress, signal }) {
  const token = await options.getToken();
  // Cancelled while the host app was fetching the token: its abort event has fired already.
  if (signal.aborted) throw new DOMException("Upload cancelled", "AbortError");
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", endpoint(options.apiBaseUrl, options.conversationSid, "audio"));
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.setRequestHeader("Idempotency-Key", recording.idempotencyKey);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText));
        } catch {
          resolve({});
        }
      } else {
        reject(errorFromBody(xhr.status, xhr.responseText));
      }
    });
    xhr.addEventListener("error", () => reject(new ServiceError(NETWORK_ERROR, 0, "network_error")));
    xhr.addEventListener("abort", () => reject(new DOMException("Upload cancelled", "AbortError")));
    signal.addEventListener("abort", () => xhr.abort(), { once: true });
    const form = new FormData();
    form.append("audio", recording.blob, recording.filename);
    xhr.send(form);
  });
}

// ---------------------------------------------------------------------------------------------------------
// Recording

/** The first type in RECORDING_TYPES this browser can record, or null. */
export function pickRecordingType(Recorder = globalThis.MediaRecorder) {
  if (typeof Recorder?.isTypeSupported !== "function") return null;
  return RECORDING_TYPES.find((type) => Recorder.isTypeSupported(type)) || null;
}

function unsupportedReason() {
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

function microphoneErrorMessage(error) {
  switch (error?.name) {
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
      return `The microphone could not be used${error?.message ? `: ${error.message}` : "."}`;
  }
}

// ---------------------------------------------------------------------------------------------------------
// WebKit's fragmented MP4. WebKitGTK writes a fragment per second and hands each over a second late; at stop()
// it delivers the fragment in progress only some of the time, and then with its `moof` header written twice
// (decoders fail on the whole fragment). So a take could end up to 1.9 s short. The take therefore keeps
// recording after Stop until fragments covering its length have arrived, then is cut back to that length here,
// at the container level (whole AAC frames dropped from the last fragment's index; no transcoding).

function readBoxes(view, start, end) {
  const boxes = [];
  while (start < end) {
    if (start + 8 > end) return null;
    let size = view.getUint32(start);
    let body = start + 8;
    if (size === 1) {
      if (start + 16 > end) return null;
      size = Number(view.getBigUint64(start + 8)); // a 64-bit "largesize"
      body = start + 16;
    } else if (size === 0) {
      size = end - start; // "to the end of the file"
    }
    if (size < body - start || start + size > end) return null;
    const type = String.fromCharCode(...new Uint8Array(view.buffer, view.byteOffset + start + 4, 4));
    boxes.push({ type, start, body, end: start + size });
    start += size;
  }
  return boxes;
}

function childBox(view, box, type) {
  return box && readBoxes(view, box.body, box.end)?.find((child) => child.type === type);
}

/** The media timescale, and per fragment (a `moof` its `mdat` follows) its start and its samples; or null. */
function readFragments(view) {
  const boxes = readBoxes(view, 0, view.byteLength);
  if (!boxes) return null;
  const mdhd = childBox(view, childBox(view, childBox(view, boxes.find((b) => b.type === "moov"), "trak"), "mdia"), "mdhd");
  if (!mdhd) return null;
  const timescale = view.getUint32(mdhd.body + (view.getUint8(mdhd.body) === 1 ? 20 : 12));
  const kept = [];
  const fragments = [];
  boxes.forEach((box, index) => {
    if (box.type !== "moof") return kept.push(box);
    if (boxes[index + 1]?.type !== "mdat") return undefined; // WebKit's duplicated header: dropped
    kept.push(box);
    const traf = childBox(view, box, "traf");
    const tfdt = childBox(view, traf, "tfdt");
    const trun = childBox(view, traf, "trun");
    if (!tfdt || !trun) return fragments.push({ moof: box, mdat: boxes[index + 1], samples: null });
    const flags = view.getUint32(trun.body) & 0xffffff;
    let at = trun.body + 8;
    const dataOffsetAt = flags & 0x1 ? at : null;
    if (flags & 0x1) at += 4;
    if (flags & 0x4) at += 4;
    const entrySize = 4 * [0x100, 0x200, 0x400, 0x800].filter((flag) => flags & flag).length;
    let samples = null;
    if (flags & 0x100 && flags & 0x200) { // per-sample durations and sizes: what WebKit writes
      samples = [];
      for (let i = 0; i < view.getUint32(trun.body + 4) && at + entrySize <= trun.end; i += 1, at += entrySize) {
        samples.push({ duration: view.getUint32(at), size: view.getUint32(at + 4) });
      }
    }
    const base = view.getUint8(tfdt.body) === 1 ? Number(view.getBigUint64(tfdt.body + 4)) : view.getUint32(tfdt.body + 4);
    return fragments.push({ moof: box, mdat: boxes[index + 1], traf, trun, dataOffsetAt, entrySize, base, samples });
  });
  return { timescale, boxes: kept, fragments };
}

/** Seconds of audio the fragments in `blob` hold (0 when it cannot tell). */
export async function mp4RecordedSeconds(blob) {
  const parsed = readFragments(new DataView(await blob.arrayBuffer()));
  if (!parsed?.timescale) return 0;
  let end = 0;
  for (const { base, samples } of parsed.fragments) {
    if (samples) end = Math.max(end, base + samples.reduce((sum, sample) => sum + sample.duration, 0));
  }
  return end / parsed.timescale;
}

/** A fragment cut to its first `keep` samples: its index entries and their bytes in the `mdat`. */
function cutFragment(view, fragment, keep) {
  const { moof, mdat, traf, trun, dataOffsetAt, entrySize, samples } = fragment;
  const dataStart = dataOffsetAt == null ? mdat.body : moof.start + view.getInt32(dataOffsetAt);
  if (dataStart !== mdat.body || moof.body !== moof.start + 8 || traf.body !== traf.start + 8) return null;
  const removed = (samples.length - keep) * entrySize;
  const entriesEnd = trun.end - (samples.length - keep) * entrySize;
  const header = new Uint8Array(moof.end - moof.start - removed);
  header.set(new Uint8Array(view.buffer, view.byteOffset + moof.start, entriesEnd - moof.start));
  header.set(new Uint8Array(view.buffer, view.byteOffset + trun.end, moof.end - trun.end), entriesEnd - moof.start);
  const edit = new DataView(header.buffer);
  for (const box of [moof, traf, trun]) edit.setUint32(box.start - moof.start, box.end - box.start - removed);
  edit.setUint32(trun.body + 4 - moof.start, keep);
  if (dataOffsetAt != null) edit.setInt32(dataOffsetAt - moof.start, view.getInt32(dataOffsetAt) - removed);
  const bytes = samples.slice(0, keep).reduce((sum, sample) => sum + sample.size, 0);
  const data = new Uint8Array(8 + bytes);
  new DataView(data.buffer).setUint32(0, 8 + bytes);
  data.set(new Uint8Array(view.buffer, view.byteOffset + mdat.start + 4, 4), 4);
  data.set(new Uint8Array(view.buffer, view.byteOffset + mdat.body, bytes), 8);
  return [header, data];
}

/**
 * The MP4 `blob` repaired and cut to `seconds`: WebKit's duplicated fragment headers dropped (see above) and, when
 * `seconds` is given, the samples that start after it. Anything that does not parse is returned as it was.
 */
export async function repairedMp4(blob, seconds = Infinity) {
  const view = new DataView(await blob.arrayBuffer());
  const parsed = readFragments(view);
  if (!parsed) return blob;
  const limit = seconds * parsed.timescale;
  const fragments = new Map(parsed.fragments.map((fragment) => [fragment.moof, fragment]));
  const parts = [];
  let changed = parsed.boxes.length !== readBoxes(view, 0, view.byteLength).length; // duplicated headers dropped
  let skipMdat = false; // the mdat of a fragment that was cut (its bytes are in the cut) or dropped
  for (const box of parsed.boxes) {
    if (box.type === "mdat" && skipMdat) {
      skipMdat = false;
      continue;
    }
    const fragment = fragments.get(box);
    const end = fragment?.samples && fragment.base + fragment.samples.reduce((sum, sample) => sum + sample.duration, 0);
    let keep = 0;
    for (let time = fragment?.base; fragment?.samples && keep < fragment.samples.length && time < limit; keep += 1) {
      time += fragment.samples[keep].duration;
    }
    const cut = !fragment?.samples || end <= limit ? null : (keep ? cutFragment(view, fragment, keep) : []);
    if (!cut) {
      parts.push(blob.slice(box.start, box.end));
      continue;
    }
    parts.push(...cut);
    skipMdat = true;
    changed = true;
  }
  return changed ? new Blob(parts, { type: blob.type }) : blob;
}

/** One take: the microphone stream, its MediaRecorder and a level analyser. Always ends with tracks stopped. */
class Take {
  constructor(stream, mimeType) {
    this.stream = stream;
    this.chunks = [];
    this.startedAt = null;
    this.stoppedAt = null;
    this.recorder = new MediaRecorder(stream, { mimeType });
    this.recorder.addEventListener("dataavailable", (event) => {
      if (event.data?.size) this.chunks.push(event.data);
    });
    this.finished = new Promise((resolve, reject) => {
      this.recorder.addEventListener("stop", () => resolve());
      this.recorder.addEventListener("error", (event) => reject(event.error || new Error("recording failed")));
    });
    this.started = new Promise((resolve) => {
      this.recorder.addEventListener("start", () => {
        this.startedAt = performance.now();
        resolve();
      });
    });
    // A timeslice keeps the data flowing, so a crash mid-recording loses at most a second.
    this.recorder.start(1000);
    this.levels = this.openAnalyser();
  }

  static async open(mimeType) {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    try {
      return new Take(stream, mimeType);
    } catch (error) {
      stream.getTracks().forEach((track) => track.stop());
      throw error;
    }
  }

  openAnalyser() {
    const Context = globalThis.AudioContext || globalThis.webkitAudioContext;
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

  elapsed() {
    if (this.startedAt == null) return 0;
    return ((this.stoppedAt ?? performance.now()) - this.startedAt) / 1000;
  }

  async stop() {
    const mp4 = this.type().startsWith("audio/mp4");
    if (this.recorder.state !== "inactive") {
      this.stoppedAt = performance.now();
      // WebKit's MP4 lags a fragment behind (see above): record on until the take's length has arrived.
      if (mp4) await this.fragmentsCovering(this.elapsed());
      if (this.recorder.state !== "inactive") {
        this.recorder.requestData(); // flushes what a recorder holds back (Safari's fragment in progress)
        this.recorder.stop();
      }
    }
    try {
      await this.finished;
    } finally {
      this.release();
    }
    const blob = new Blob(this.chunks, { type: this.type() });
    return mp4 ? repairedMp4(blob, this.elapsed()) : blob;
  }

  type() {
    // Firefox's mimeType stays empty until the start event, and its chunks say "audio/ogg; codecs=opus".
    return this.recorder.mimeType || this.chunks[0]?.type || "audio/webm";
  }

  /** Wait (at most MP4_CATCH_UP_MS) until the chunks hold `seconds` of audio. */
  async fragmentsCovering(seconds) {
    const deadline = performance.now() + MP4_CATCH_UP_MS;
    this.recorder.requestData();
    while (this.recorder.state === "recording" && performance.now() < deadline) {
      const arrived = new Promise((resolve) => {
        this.recorder.addEventListener("dataavailable", resolve, { once: true });
        setTimeout(resolve, Math.max(0, deadline - performance.now()));
      });
      await arrived;
      if (await mp4RecordedSeconds(new Blob(this.chunks)) >= seconds - MP4_END_TOLERANCE_S) return;
    }
  }

  /** Give the microphone back: the browser's recording indicator goes away only when every track stops. */
  release() {
    if (this.recorder.state !== "inactive") {
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
 * Tell `onLength` each length the browser decodes from a recording, as it learns it. The engines differ:
 * - Chrome writes WebM without a duration (the element says Infinity): seeking past the end makes the player read
 *   the file to its end and learn it.
 * - Firefox says Infinity too and ignores that seek: it learns the length only by playing to the end.
 * - WebKit reads its fragmented MP4's first fragment only and says "1 s" (the whole length after playing it).
 */
function learnDecodedLength(audio, onLength) {
  let probing = false;
  audio.addEventListener("durationchange", () => {
    if (!Number.isFinite(audio.duration)) return;
    if (probing) {
      probing = false;
      if (audio.currentTime) audio.currentTime = 0; // back from the probe below
    }
    onLength(audio.duration);
  });
  audio.addEventListener("loadedmetadata", () => {
    if (audio.duration !== Infinity) return;
    probing = true;
    audio.currentTime = Number.MAX_SAFE_INTEGER;
  }, { once: true });
  // A probe the engine ignored (Firefox) must not rewind the player when it learns the length at the end.
  audio.addEventListener("play", () => { probing = false; });
}

// ---------------------------------------------------------------------------------------------------------
// The record panel

/**
 * Mount the record panel into `element`.
 * @param {HTMLElement} element
 * @param {{apiBaseUrl: string, getToken: () => Promise<string>, conversationSid: string,
 *          onSent?: (result: object) => void, layout?: "inline" | "popover", expanded?: boolean}} options
 * @returns {{destroy: () => void}}
 */
export function mountRecordPanel(element, options) {
  const panel = new RecordPanel(element, options);
  return { destroy: () => panel.destroy() };
}

class RecordPanel {
  constructor(element, options) {
    if (!options?.conversationSid || typeof options.getToken !== "function") {
      throw new TypeError("mountRecordPanel needs {conversationSid, getToken}");
    }
    ensureStylesheet();
    this.options = options;
    this.element = element;
    this.state = "loading";
    this.settings = null;
    this.take = null;
    this.recording = null; // {blob, url, duration, filename, idempotencyKey}
    this.upload = null; // AbortController of the send in flight
    this.timer = null;
    this.destroyed = false;
    this.build();
    this.setExpanded(Boolean(options.expanded));
    this.start();
  }

  build() {
    const bodyId = uniqueId("rp-body");
    this.toggle = el("button", {
      type: "button", class: "rp-toggle", "aria-expanded": "false", "aria-controls": bodyId,
      "aria-label": "Voice note: show the recorder", onclick: () => this.setExpanded(!this.expanded),
    }, micIcon(), el("span", { class: "rp-toggle-text", text: "Voice note" }));
    this.stage = el("div", { class: "rp-stage" });
    this.status = el("div", { class: "rp-status", role: "status", "aria-live": "polite" });
    this.alert = el("div", { class: "rp-error", role: "alert" });
    this.caps = el("div", { class: "rp-caps" });
    this.body = el("div", { class: "rp-body", id: bodyId, hidden: true }, this.stage, this.alert, this.status, this.caps);
    this.root = el("div", { class: `rp rp--${this.options.layout === "popover" ? "popover" : "inline"}` },
      this.toggle, this.body);
    this.root.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.expanded && this.options.layout === "popover") {
        this.setExpanded(false);
        this.toggle.focus();
      }
    });
    this.element.append(this.root);
  }

  setExpanded(expanded) {
    this.expanded = expanded;
    this.body.hidden = !expanded;
    this.toggle.setAttribute("aria-expanded", String(expanded));
    this.toggle.setAttribute("aria-label", expanded ? "Voice note: hide the recorder" : "Voice note: show the recorder");
    this.root.classList.toggle("rp--expanded", expanded);
  }

  async start() {
    const unsupported = unsupportedReason();
    if (unsupported) {
      this.show("unsupported", { message: unsupported });
      return;
    }
    this.show("loading");
    try {
      const settings = await getJson(this.options, endpoint(this.options.apiBaseUrl, this.options.conversationSid, "audio-settings"));
      if (this.destroyed) return;
      this.settings = settings;
    } catch (error) {
      if (this.destroyed) return;
      this.show("unavailable", { message: `Could not load the audio settings: ${error.message}` });
      return;
    }
    if (!this.settings.sending_enabled) {
      this.show("disabled");
      return;
    }
    this.caps.textContent = this.capsText();
    this.show("idle");
  }

  /** The longest recording that fits both caps; the MP3 size follows from the channel's bitrate. */
  maxSeconds() {
    const { max_duration_s: maxDuration, max_bytes: maxBytes, bitrate_kbps: kbps } = this.settings;
    const bySize = maxBytes && kbps ? Math.floor((maxBytes * 8 * MP3_SIZE_MARGIN) / (kbps * 1000)) : Infinity;
    return Math.min(maxDuration || Infinity, bySize);
  }

  capsText() {
    const channel = CHANNEL_NAMES[this.settings.channel] || this.settings.channel || "This channel";
    const parts = [`Up to ${formatDuration(this.maxSeconds())}`];
    if (this.settings.max_bytes) parts.push(`${formatMegabytes(this.settings.max_bytes)} per file`);
    return `${channel}: ${parts.join(" · ")}`;
  }

  // -- rendering ------------------------------------------------------------------------------------------
  show(state, detail = {}) {
    this.state = state;
    this.root.dataset.state = state;
    this.toggle.classList.toggle("rp-toggle--live", state === "recording");
    const view = this.views()[state](detail);
    const hadFocus = this.root.contains(document.activeElement) && document.activeElement !== this.toggle;
    this.stage.replaceChildren(view);
    // Keyboard users keep their place: the main control of the new state takes the focus.
    if (hadFocus) this.stage.querySelector("[data-focus]")?.focus();
  }

  views() {
    return {
      loading: () => el("p", { class: "rp-note", text: "Loading audio settings…" }),
      unsupported: ({ message }) => this.notice(message, "rp-note--blocked"),
      disabled: () => this.notice("Audio sending is disabled for this channel", "rp-note--blocked"),
      unavailable: ({ message }) => el("div", { class: "rp-row" },
        el("p", { class: "rp-note rp-note--error", text: message }),
        this.button("Retry", "Retry loading the audio settings", () => this.start(), { primary: true })),
      idle: () => el("div", { class: "rp-row" },
        this.button("Record", "Start recording a voice note", () => this.record(), { primary: true, kind: "record" }),
        el("span", { class: "rp-hint", text: "Records from your microphone" })),
      starting: () => el("div", { class: "rp-row" },
        el("span", { class: "rp-note", text: "Waiting for the microphone…" }),
        this.button("Cancel", "Cancel recording", () => this.cancel(), { focus: true })),
      recording: () => this.recordingView(),
      preview: () => this.previewView(),
      sending: () => this.sendingView(),
    };
  }

  notice(text, modifier) {
    return el("p", { class: `rp-note ${modifier}`, text });
  }

  /** `focus`: the control that takes the focus when its state appears (the primary one unless told). */
  button(label, ariaLabel, onclick, { primary = false, kind = "", focus = primary } = {}) {
    return el("button", {
      type: "button", class: `rp-button${kind ? ` rp-button--${kind}` : ""}${primary ? " rp-button--primary" : ""}`,
      "aria-label": ariaLabel, onclick, "data-focus": focus,
    }, kind ? el("span", { class: `rp-icon rp-icon--${kind}`, "aria-hidden": "true" }) : null, label);
  }

  recordingView() {
    this.timerText = el("span", { class: "rp-timer", role: "timer", "aria-label": "Elapsed recording time", text: "0:00" });
    this.meterFill = el("span", { class: "rp-meter-fill" });
    this.meter = el("span", {
      class: "rp-meter", role: "meter", "aria-label": "Microphone input level",
      "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0",
    }, this.meterFill);
    return el("div", { class: "rp-row" },
      this.button("Stop", "Stop recording", () => this.stop(), { primary: true, kind: "stop" }),
      el("span", { class: "rp-live", "aria-hidden": "true" }),
      this.timerText,
      el("span", { class: "rp-limit", text: `/ ${formatDuration(this.maxSeconds())}` }),
      this.meter,
      this.button("Cancel", "Cancel and discard the recording", () => this.cancel()));
  }

  /**
   * The take's own small player: play/pause, a seek bar and "position / length". Not the browser's controls:
   * for a fresh WebM recording Chrome's show "0:00" and no length, and a panel this narrow hides their clock.
   * The length is the one measured while recording until the browser has decoded the file's own.
   */
  previewView() {
    const recording = this.recording;
    const audio = el("audio", { preload: "metadata", src: recording.url });
    const play = this.button("", "Play the recording", () => (audio.paused ? audio.play() : audio.pause()),
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
    const showPlaying = () => {
      play.setAttribute("aria-label", audio.paused ? "Play the recording" : "Pause the recording");
      play.firstChild.className = `rp-icon rp-icon--${audio.paused ? "play" : "pause"}`;
    };
    const measured = recording.duration;
    learnDecodedLength(audio, (seconds) => {
      // Shorter than the take is a partial view (WebKit's first fragment), not the file's length.
      if (seconds < measured - DECODED_SHORTER_THAN_TAKE_S) return;
      recording.duration = seconds;
      seek.max = String(seconds);
      showTime();
    });
    seek.addEventListener("input", () => { audio.currentTime = Number(seek.value); });
    audio.addEventListener("timeupdate", showTime);
    audio.addEventListener("play", showPlaying);
    audio.addEventListener("pause", showPlaying);
    audio.addEventListener("ended", showPlaying);
    // WebKit's last timeupdate can come a quarter second before the end: the clock would stop short of it.
    audio.addEventListener("ended", showTime);
    showTime();
    return el("div", { class: "rp-row rp-preview", role: "group", "aria-label": "Preview of your recording" },
      audio, play, seek, clock,
      this.button("Send", "Send the voice note", () => this.send(), { primary: true, kind: "send" }),
      this.button("Discard", "Discard the recording", () => this.discard()));
  }

  sendingView() {
    this.progress = el("progress", { class: "rp-progress", max: "100", value: "0", "aria-label": "Upload progress" });
    this.progressText = el("span", { class: "rp-progress-text", text: "Uploading… 0%" });
    this.cancelSend = this.button("Cancel", "Cancel sending", () => this.upload?.abort(), { primary: true });
    return el("div", { class: "rp-row" }, this.progress, this.progressText, this.cancelSend);
  }

  say(message) {
    this.status.textContent = message || "";
  }

  fail(message) {
    this.alert.textContent = message || "";
  }

  // -- actions --------------------------------------------------------------------------------------------
  async record() {
    this.fail("");
    this.say("");
    this.show("starting");
    let take;
    try {
      take = await Take.open(pickRecordingType());
    } catch (error) {
      if (this.destroyed || this.state !== "starting") return;
      this.show("idle");
      this.fail(microphoneErrorMessage(error));
      return;
    }
    if (this.destroyed || this.state !== "starting") {
      take.release(); // cancelled while the permission prompt was open
      return;
    }
    this.take = take;
    this.show("recording");
    this.say("Recording. Press Stop when you are done.");
    this.warned = false;
    this.timer = setInterval(() => this.tick(), TICK_MS);
    take.finished.catch((error) => this.onRecorderError(error));
  }

  tick() {
    const take = this.take;
    if (!take) return;
    const elapsed = take.elapsed();
    const limit = this.maxSeconds();
    this.timerText.textContent = formatDuration(elapsed);
    const level = take.level();
    this.meterFill.style.transform = `scaleX(${level.toFixed(3)})`;
    this.meter.setAttribute("aria-valuenow", String(Math.round(level * 100)));
    const left = limit - elapsed;
    if (left <= WARN_BEFORE_END_S && !this.warned) {
      this.warned = true;
      this.root.classList.add("rp--ending");
    }
    if (this.warned) this.fail(`Recording stops in ${Math.max(0, Math.ceil(left))} s (the ${formatDuration(limit)} limit).`);
    if (left <= STOP_BEFORE_LIMIT_S) this.stop(`Stopped at the ${formatDuration(limit)} limit.`);
  }

  stopTimer() {
    clearInterval(this.timer);
    this.timer = null;
    this.root.classList.remove("rp--ending");
  }

  async stop(reason) {
    const take = this.take;
    if (!take || this.state !== "recording") return;
    this.stopTimer();
    this.take = null;
    // Usually at once; in WebKit up to 2.5 s while its last MP4 fragment arrives (see Take.fragmentsCovering).
    this.say("Finishing the recording…");
    let blob;
    try {
      blob = await take.stop();
    } catch (error) {
      if (this.destroyed || this.state !== "recording" || this.take) return;
      this.show("idle");
      this.fail(`Recording failed${error?.message ? `: ${error.message}` : "."}`);
      return;
    }
    // Cancelled while the recorder was finishing (the state moved on), or already recording a new take.
    if (this.destroyed || this.state !== "recording" || this.take) return;
    if (!blob.size) {
      this.show("idle");
      this.fail("Nothing was recorded. Check the microphone and try again.");
      return;
    }
    const duration = take.elapsed();
    const baseType = blob.type.split(";")[0].trim();
    this.recording = {
      blob,
      duration,
      url: URL.createObjectURL(blob),
      filename: `voice-note.${EXTENSIONS[baseType] || "webm"}`,
      // One key per recording: a retried send of the same clip is answered, never posted twice.
      idempotencyKey: newIdempotencyKey(),
    };
    this.show("preview");
    this.fail(reason || "");
    this.say(`Recorded ${formatDuration(duration)}. Listen, then send or discard it.`);
  }

  onRecorderError(error) {
    if (this.destroyed || !this.take) return;
    this.stopTimer();
    this.take.release();
    this.take = null;
    this.show("idle");
    this.fail(`Recording stopped unexpectedly${error?.message ? `: ${error.message}` : "."}`);
  }

  cancel() {
    this.stopTimer();
    this.take?.release();
    this.take = null;
    this.fail("");
    this.show("idle");
    this.say("Recording cancelled.");
  }

  discard() {
    this.dropRecording();
    this.fail("");
    this.show("idle");
    this.say("Recording discarded.");
  }

  dropRecording() {
    if (this.recording) URL.revokeObjectURL(this.recording.url);
    this.recording = null;
  }

  async send() {
    if (!this.recording || this.state !== "preview") return;
    this.fail("");
    this.say("Sending the voice note…");
    this.upload = new AbortController();
    this.show("sending");
    const onProgress = (fraction) => {
      const percent = Math.round(fraction * 100);
      this.progress.value = percent;
      // The bytes are up; the service still converts and posts them before it answers.
      this.progressText.textContent = percent < 100 ? `Uploading… ${percent}%` : "Converting and sending…";
      if (percent >= 100 && this.cancelSend) {
        // The service has the whole clip and posts it whatever the browser does now: a Cancel here would
        // say "cancelled" about a message the customer still gets.
        this.cancelSend.disabled = true;
        this.cancelSend.title = "The voice note is with the service; it can no longer be cancelled.";
      }
    };
    let result;
    try {
      result = await uploadRecording(this.options, this.recording, { onProgress, signal: this.upload.signal });
    } catch (error) {
      if (this.destroyed) return;
      this.upload = null;
      if (error.code === "sending_disabled") {
        // An admin turned sending off since the panel loaded: no point keeping a clip that cannot go.
        this.dropRecording();
        this.show("disabled");
        this.fail(error.message);
        return;
      }
      this.show("preview");
      if (error.name === "AbortError") {
        this.say("Sending cancelled. The recording is kept; send it again or discard it.");
      } else {
        this.say("");
        this.fail(error.message);
      }
      return;
    }
    if (this.destroyed) return;
    this.upload = null;
    const duration = result.duration_s ?? this.recording.duration;
    this.dropRecording();
    this.show("idle");
    this.say(`Voice note sent (${formatDuration(duration)}).`);
    try {
      this.options.onSent?.(result);
    } catch (error) {
      console.error("record panel: onSent failed", error);
    }
  }

  destroy() {
    this.destroyed = true;
    this.stopTimer();
    this.take?.release();
    this.take = null;
    this.upload?.abort();
    this.dropRecording();
    this.root.remove();
  }
}

// ---------------------------------------------------------------------------------------------------------
// The audio list: both directions, normalized MP3 players with speed buttons

/**
 * Mount the conversation's audio messages into `element`. Polls quickly while rows are in progress.
 * @returns {{refresh: () => Promise<void>, destroy: () => void}}
 */
export function mountAudioList(element, options) {
  const list = new AudioList(element, options);
  return { refresh: () => list.refresh(), destroy: () => list.destroy() };
}

class AudioList {
  constructor(element, { apiBaseUrl, getToken, conversationSid, busyPollMs = 1500, idlePollMs = 15000 }) {
    ensureStylesheet();
    this.options = { apiBaseUrl, getToken, conversationSid };
    this.busyPollMs = busyPollMs;
    this.idlePollMs = idlePollMs;
    this.rows = new Map(); // audit_id -> {node, status, audio, needsNewSource}
    this.timer = null;
    this.inFlight = null;
    this.loaded = false; // announce new customer voice notes only after the first load
    this.destroyed = false;
    this.items = el("ol", { class: "al-items", "aria-label": "Audio messages" });
    this.empty = el("p", { class: "al-empty", text: "Loading audio messages…" });
    this.status = el("div", { class: "al-status", role: "status", "aria-live": "polite" });
    this.announcer = el("div", { class: "al-announce", "aria-live": "polite" });
    this.root = el("section", { class: "al" }, this.empty, this.items, this.status, this.announcer);
    element.append(this.root);
    this.refresh();
  }

  async refresh() {
    if (this.destroyed) return;
    clearTimeout(this.timer);
    this.inFlight?.abort();
    const controller = new AbortController();
    this.inFlight = controller;
    let busy = false;
    try {
      const body = await getJson(this.options, endpoint(this.options.apiBaseUrl, this.options.conversationSid, "audio"), controller.signal);
      if (this.destroyed || controller.signal.aborted) return;
      busy = this.render(body.audio_messages || []);
      this.loaded = true;
      this.status.classList.remove("al-status--error");
      this.status.textContent = "";
    } catch (error) {
      if (error.name === "AbortError" || this.destroyed) return;
      this.status.classList.add("al-status--error");
      this.status.textContent = `Could not load audio messages: ${error.message}`;
      if (!this.rows.size) this.empty.textContent = "";
    } finally {
      if (this.inFlight === controller) this.inFlight = null;
    }
    this.schedule(busy);
  }

  schedule(busy) {
    const delay = busy ? this.busyPollMs : this.idlePollMs;
    if (this.destroyed || !delay) return;
    // A hidden tab has nobody listening: look again when it is shown.
    this.timer = setTimeout(() => (document.hidden ? this.schedule(busy) : this.refresh()), delay);
  }

  /** Update rows in place, so an <audio> that is playing is never replaced by a poll. Returns "busy". */
  render(messages) {
    this.empty.textContent = messages.length ? "" : "No audio messages yet.";
    this.empty.hidden = Boolean(messages.length);
    const seen = new Set();
    let previous = null;
    for (const message of messages) {
      seen.add(message.audit_id);
      const row = this.upsert(message);
      const expectedNext = previous ? previous.nextSibling : this.items.firstChild;
      if (row.node !== expectedNext) this.items.insertBefore(row.node, expectedNext);
      previous = row.node;
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.node.remove();
        this.rows.delete(id);
      }
    }
    return messages.some((message) => IN_PROGRESS.has(message.status));
  }

  upsert(message) {
    let row = this.rows.get(message.audit_id);
    if (!row) {
      row = { node: null, status: null, audio: null, needsNewSource: false };
      row.node = el("li", { class: `al-row al-row--${message.direction}`, "data-audit-id": String(message.audit_id) });
      this.rows.set(message.audit_id, row);
      if (this.loaded && message.direction === "inbound") this.announcer.textContent = "New voice note from the customer.";
    }
    if (row.status !== message.status) {
      row.status = message.status;
      row.audio = null;
      row.node.dataset.status = message.status;
      row.node.replaceChildren(this.meta(message), this.bodyFor(message, row));
    } else if (row.audio && row.needsNewSource && message.playback_url) {
      // Playback links expire; a fresh one keeps the position the listener had.
      const position = row.audio.currentTime;
      row.needsNewSource = false;
      row.audio.src = message.playback_url;
      row.audio.addEventListener("loadedmetadata", () => { row.audio.currentTime = position; }, { once: true });
    }
    return row;
  }

  meta(message) {
    const who = message.direction === "inbound" ? "Customer" : "Agent";
    const when = message.created_at ? new Date(message.created_at) : null;
    return el("div", { class: "al-meta" },
      el("span", { class: "al-who", text: who }),
      el("span", { class: "al-channel", text: CHANNEL_NAMES[message.channel] || message.channel || "" }),
      when ? el("time", { datetime: message.created_at, text: when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) }) : null);
  }

  bodyFor(message, row) {
    if (message.status === "ready" && message.playback_url) return this.player(message, row);
    const text = STATUS_TEXT[message.status] || message.status;
    return el("div", { class: "al-body" },
      IN_PROGRESS.has(message.status) ? el("span", { class: "al-spinner", "aria-hidden": "true" }) : null,
      el("span", { class: "al-state", text }),
      message.status === "failed" && message.error ? el("span", { class: "al-error", text: message.error }) : null);
  }

  player(message, row) {
    const label = `${message.direction === "inbound" ? "Customer" : "Agent"} voice note, ${formatDuration(message.duration_s)}`;
    const audio = el("audio", { controls: true, preload: "metadata", src: message.playback_url, "aria-label": label });
    audio.addEventListener("error", () => {
      row.needsNewSource = true;
      this.refresh();
    });
    row.audio = audio;
    const speeds = el("div", { class: "al-speeds", role: "group", "aria-label": "Playback speed" },
      ...SPEEDS.map((rate) => el("button", {
        type: "button", class: "al-speed", "aria-pressed": String(rate === 1), "aria-label": `Play at ${rate}× speed`,
        "data-rate": String(rate), text: `${rate}×`, onclick: (event) => this.setSpeed(audio, speeds, rate, event.currentTarget),
      })));
    return el("div", { class: "al-body" },
      audio,
      el("span", { class: "al-duration", text: formatDuration(message.duration_s) }),
      speeds);
  }

  setSpeed(audio, group, rate, button) {
    // defaultPlaybackRate survives a source refresh; playbackRate changes what is playing now.
    audio.defaultPlaybackRate = rate;
    audio.playbackRate = rate;
    for (const other of group.querySelectorAll("button")) other.setAttribute("aria-pressed", String(other === button));
  }

  destroy() {
    this.destroyed = true;
    clearTimeout(this.timer);
    this.inFlight?.abort();
    this.root.remove();
  }
}
