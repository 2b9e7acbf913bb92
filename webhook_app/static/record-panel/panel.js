// @ts-check
/**
 * The record panel: record (timer, input level, a warning before the channel's cap and a stop at it), preview,
 * send with upload progress, discard, cancel. The states and what each shows live here; the take, the
 * recording, preview and sending rows, and the upload in their own modules.
 */
import { AudioService } from "../shared/api.js";
import { el, uniqueId } from "../shared/dom.js";
import { errorParts, isAbortError, ServiceError } from "../shared/errors.js";
import { formatDuration } from "../shared/format.js";
import { microphoneErrorMessage, newRecording, pickRecordingType, Take, unsupportedReason } from "../shared/recorder.js";
import { capsText, maxSeconds, STOP_BEFORE_LIMIT_S, TICK_MS, WARN_BEFORE_END_S } from "../shared/voice-notes.js";
import { previewView } from "./preview.js";
import { recordingView } from "./recording.js";
import { sendingView } from "./sending.js";
import { ensureStylesheet, micIcon, panelButton } from "./ui.js";

/** @typedef {import("../shared/recorder.js").Recording} Recording */
/** @typedef {import("../shared/api.js").AudioSettings} AudioSettings */
/**
 * What mountRecordPanel and mountAudioList take to reach the service for one conversation.
 * @typedef {object} ServiceOptions
 * @property {string} [apiBaseUrl] the service's origin and path prefix ("" for the page's own)
 * @property {() => Promise<string>} getToken the agent's current Flex token
 * @property {string} conversationSid
 */
/**
 * What mountRecordPanel takes.
 * @typedef {ServiceOptions & {onSent?: (result: object) => void,
 *   layout?: "inline" | "popover", expanded?: boolean}} PanelOptions
 */
/** @typedef {"loading" | "unsupported" | "disabled" | "unavailable" | "idle" | "starting" | "recording"
 *   | "preview" | "sending"} PanelState */

export class RecordPanel {
  /**
   * @param {HTMLElement} element
   * @param {PanelOptions} options
   */
  constructor(element, options) {
    if (!options?.conversationSid || typeof options.getToken !== "function") {
      throw new TypeError("mountRecordPanel needs {conversationSid, getToken}");
    }
    ensureStylesheet();
    this.options = options;
    this.service = new AudioService(options.apiBaseUrl || "", options.getToken);
    this.element = element;
    /** @type {PanelState} */
    this.state = "loading";
    /** @type {AudioSettings | null} */
    this.settings = null;
    /** @type {Take | null} */
    this.take = null;
    /** @type {Recording | null} */
    this.recording = null;
    /** @type {AbortController | null} the send in flight */
    this.upload = null;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.timer = undefined;
    this.warned = false;
    this.destroyed = false;
    this.expanded = false;
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
    this.root = el("div", { class: `rp rp--${options.layout === "popover" ? "popover" : "inline"}` },
      this.toggle, this.body);
    this.live = this.recordingView();
    this.sending = sendingView(() => this.upload?.abort());
    this.root.addEventListener("keydown", (event) => this.onKeydown(event));
    this.element.append(this.root);
    this.setExpanded(Boolean(options.expanded));
    this.start();
  }

  /** @param {KeyboardEvent} event */
  onKeydown(event) {
    if (event.key === "Escape" && this.expanded && this.options.layout === "popover") {
      this.setExpanded(false);
      this.toggle.focus();
    }
  }

  /** @param {boolean} expanded */
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
      this.show("unsupported", unsupported);
      return;
    }
    this.show("loading");
    /** @type {AudioSettings} */
    let settings;
    try {
      settings = await this.service.settings(this.options.conversationSid);
      if (this.destroyed) return;
      this.settings = settings;
    } catch (error) {
      if (this.destroyed) return;
      this.show("unavailable", `Could not load the audio settings: ${errorParts(error).message}`);
      return;
    }
    if (!settings.sending_enabled) {
      this.show("disabled");
      return;
    }
    this.caps.textContent = capsText(settings);
    this.show("idle");
  }

  /** The longest recording that fits the channel's caps. */
  maxSeconds() {
    return maxSeconds(this.settings);
  }

  // -- rendering ------------------------------------------------------------------------------------------
  /**
   * @param {PanelState} state
   * @param {string} [message] what the unsupported and unavailable states say
   */
  show(state, message = "") {
    this.state = state;
    this.root.dataset.state = state;
    this.toggle.classList.toggle("rp-toggle--live", state === "recording");
    const view = this.view(state, message);
    const hadFocus = this.root.contains(document.activeElement) && document.activeElement !== this.toggle;
    this.stage.replaceChildren(view);
    // Keyboard users keep their place: the main control of the new state takes the focus.
    const main = hadFocus ? this.stage.querySelector("[data-focus]") : null;
    if (main instanceof HTMLElement) main.focus();
  }

  /**
   * @param {PanelState} state
   * @param {string} message
   * @returns {HTMLElement}
   */
  view(state, message) {
    switch (state) {
      case "loading": return el("p", { class: "rp-note", text: "Loading audio settings…" });
      case "unsupported": return this.notice(message, "rp-note--blocked");
      case "disabled": return this.notice("Audio sending is disabled for this channel", "rp-note--blocked");
      case "unavailable": return el("div", { class: "rp-row" },
        el("p", { class: "rp-note rp-note--error", text: message }),
        panelButton("Retry", "Retry loading the audio settings", () => this.start(), { primary: true }));
      case "idle": return el("div", { class: "rp-row" },
        panelButton("Record", "Start recording a voice note", () => this.record(), { primary: true, kind: "record" }),
        el("span", { class: "rp-hint", text: "Records from your microphone" }));
      case "starting": return el("div", { class: "rp-row" },
        el("span", { class: "rp-note", text: "Waiting for the microphone…" }),
        panelButton("Cancel", "Cancel recording", () => this.cancel(), { focus: true }));
      case "recording": return (this.live = this.recordingView()).row;
      case "preview": return this.recording
        ? previewView(this.recording, { onSend: () => this.send(), onDiscard: () => this.discard() })
        : this.view("idle", "");
      case "sending": return this.sending.row;
    }
  }

  /**
   * @param {string} text
   * @param {string} modifier
   */
  notice(text, modifier) {
    return el("p", { class: `rp-note ${modifier}`, text });
  }

  recordingView() {
    return recordingView({ limit: this.maxSeconds(), onStop: () => this.stop(), onCancel: () => this.cancel() });
  }

  /** @param {string} [message] */
  say(message) {
    this.status.textContent = message || "";
  }

  /** @param {string} [message] */
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
    this.live.show(elapsed, take.level());
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
    this.timer = undefined;
    this.root.classList.remove("rp--ending");
  }

  /** @param {string} [reason] why it stopped, when not the agent's Stop */
  async stop(reason) {
    const take = this.take;
    if (!take || this.state !== "recording") return;
    this.stopTimer();
    this.take = null;
    // Usually a moment; in WebKit up to 2.5 s while its last MP4 fragment arrives (see Take.fragmentsCovering), in
    // Firefox up to 1 s while its encoder's last blocks do (Take.blocksCovering).
    this.say("Finishing the recording…");
    let blob;
    try {
      blob = await take.stop();
    } catch (error) {
      if (this.stale()) return;
      this.show("idle");
      const { message } = errorParts(error);
      this.fail(`Recording failed${message ? `: ${message}` : "."}`);
      return;
    }
    // Cancelled while the recorder was finishing (the state moved on), or already recording a new take.
    if (this.stale()) return;
    if (!blob.size) {
      this.show("idle");
      this.fail("Nothing was recorded. Check the microphone and try again.");
      return;
    }
    this.preview(blob, take.elapsed(), reason);
  }

  /** Whether what a stopping take finds no longer matters: the panel moved on while the recorder finished. */
  stale() {
    return this.destroyed || this.state !== "recording" || Boolean(this.take);
  }

  /**
   * @param {Blob} blob
   * @param {number} duration
   * @param {string} [reason]
   */
  preview(blob, duration, reason) {
    this.recording = newRecording(blob, duration);
    this.show("preview");
    this.fail(reason || "");
    this.say(`Recorded ${formatDuration(duration)}. Listen, then send or discard it.`);
  }

  /** @param {unknown} error */
  onRecorderError(error) {
    if (this.destroyed || !this.take) return;
    this.stopTimer();
    this.take.release();
    this.take = null;
    this.show("idle");
    const { message } = errorParts(error);
    this.fail(`Recording stopped unexpectedly${message ? `: ${message}` : "."}`);
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
    const recording = this.recording;
    if (!recording || this.state !== "preview") return;
    this.fail("");
    this.say("Sending the voice note…");
    const upload = new AbortController();
    this.upload = upload;
    this.sending = sendingView(() => this.upload?.abort());
    this.show("sending");
    let result;
    try {
      const how = { onProgress: this.sending.showProgress, signal: upload.signal };
      result = await this.service.upload(this.options.conversationSid, recording, how);
    } catch (error) {
      if (!this.destroyed) this.sendFailed(error);
      return;
    }
    if (this.destroyed) return;
    this.upload = null;
    const duration = result.duration_s ?? recording.duration;
    this.dropRecording();
    this.show("idle");
    this.say(`Voice note sent (${formatDuration(duration)}).`);
    try {
      this.options.onSent?.(result);
    } catch (error) {
      console.error("record panel: onSent failed", error);
    }
  }

  /** @param {unknown} error */
  sendFailed(error) {
    this.upload = null;
    if (error instanceof ServiceError && error.code === "sending_disabled") {
      // An admin turned sending off since the panel loaded: no point keeping a clip that cannot go.
      this.dropRecording();
      this.show("disabled");
      this.fail(error.message);
      return;
    }
    this.show("preview");
    if (isAbortError(error)) {
      this.say("Sending cancelled. The recording is kept; send it again or discard it.");
    } else {
      this.say("");
      this.fail(errorParts(error).message);
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
