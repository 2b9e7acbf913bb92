// @ts-check
/**
 * The audio list: the conversation's audio messages in both directions, as the service's normalized MP3 with
 * 1× / 1.5× / 2× buttons and the transcript under the player (transcript.js), or what is happening to them. Polls
 * quickly while rows, or their transcripts, are in progress.
 */
import { AudioService } from "../shared/api.js";
import { el } from "../shared/dom.js";
import { errorParts, isAbortError } from "../shared/errors.js";
import { formatDuration } from "../shared/format.js";
import { channelName, IN_PROGRESS, inProgress, setPlaybackRate, SPEEDS, STATUS_TEXT } from "../shared/voice-notes.js";
import { transcriptKey, transcriptView } from "./transcript.js";
import { ensureStylesheet } from "./ui.js";

/**
 * What mountAudioList takes: the service, and how often to look again (ms) while a row is in progress or not.
 * @typedef {import("./panel.js").ServiceOptions & {busyPollMs?: number, idlePollMs?: number}} ListOptions
 */
/** @typedef {import("../shared/api.js").AudioMessage} AudioMessage */
/**
 * A row on the page; its player kept across polls (a fresh playback link replaces an expired one in place), its
 * transcript view replaced only when what it shows changed (`transcriptKey`).
 * @typedef {object} Row
 * @property {HTMLLIElement} node
 * @property {string | null} status
 * @property {HTMLAudioElement | null} audio
 * @property {boolean} needsNewSource
 * @property {HTMLElement | null} transcript
 * @property {string} transcriptKey
 * @property {AbortController | null} transcriptListeners removes the view's listeners on the player
 */

export class AudioList {
  /**
   * @param {HTMLElement} element
   * @param {ListOptions} options
   */
  constructor(element, { apiBaseUrl, getToken, conversationSid, busyPollMs = 1500, idlePollMs = 15000 }) {
    ensureStylesheet();
    this.service = new AudioService(apiBaseUrl || "", getToken);
    this.conversationSid = conversationSid;
    this.busyPollMs = busyPollMs;
    this.idlePollMs = idlePollMs;
    /** @type {Map<number, Row>} by audit_id */
    this.rows = new Map();
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    /** @type {AbortController | null} */
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
      const messages = await this.service.list(this.conversationSid, controller.signal);
      if (this.destroyed || controller.signal.aborted) return;
      busy = this.render(messages);
      this.loaded = true;
      this.status.classList.remove("al-status--error");
      this.status.textContent = "";
    } catch (error) {
      if (isAbortError(error) || this.destroyed) return;
      this.status.classList.add("al-status--error");
      this.status.textContent = `Could not load audio messages: ${errorParts(error).message}`;
      if (!this.rows.size) this.empty.textContent = "";
    } finally {
      if (this.inFlight === controller) this.inFlight = null;
    }
    this.schedule(busy);
  }

  /** @param {boolean} busy whether a row is in progress */
  schedule(busy) {
    const delay = busy ? this.busyPollMs : this.idlePollMs;
    if (this.destroyed || !delay) return;
    // A hidden tab has nobody listening: look again when it is shown.
    this.timer = setTimeout(() => (document.hidden ? this.schedule(busy) : this.refresh()), delay);
  }

  /**
   * Update rows in place, so an <audio> that is playing is never replaced by a poll. Returns "busy".
   * @param {AudioMessage[]} messages
   */
  render(messages) {
    this.empty.textContent = messages.length ? "" : "No audio messages yet.";
    this.empty.hidden = Boolean(messages.length);
    const seen = new Set();
    /** @type {ChildNode | null} */
    let previous = null;
    for (const message of messages) {
      seen.add(message.audit_id);
      const row = this.upsert(message);
      /** @type {ChildNode | null} */
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
    return messages.some(inProgress);
  }

  /** @param {AudioMessage} message */
  upsert(message) {
    let row = this.rows.get(message.audit_id);
    if (!row) {
      const node = el("li", { class: `al-row al-row--${message.direction}`, "data-audit-id": String(message.audit_id) });
      row = { node, status: null, audio: null, needsNewSource: false, transcript: null, transcriptKey: "",
        transcriptListeners: null };
      this.rows.set(message.audit_id, row);
      if (this.loaded && message.direction === "inbound") this.announcer.textContent = "New voice note from the customer.";
    }
    if (row.status !== message.status) {
      row.status = message.status;
      dropTranscript(row);
      row.audio = null;
      row.node.dataset.status = message.status;
      row.node.replaceChildren(this.meta(message), this.bodyFor(message, row));
    } else if (row.audio && row.needsNewSource && message.playback_url) {
      // Playback links expire; a fresh one keeps the position the listener had.
      const audio = row.audio;
      const position = audio.currentTime;
      row.needsNewSource = false;
      audio.src = message.playback_url;
      audio.addEventListener("loadedmetadata", () => { audio.currentTime = position; }, { once: true });
    }
    this.showTranscript(message, row);
    return row;
  }

  /**
   * The transcript under the player, (re)built when what it shows changed since the last poll.
   * @param {AudioMessage} message
   * @param {Row} row
   */
  showTranscript(message, row) {
    const transcript = row.audio ? message.transcript : undefined;
    const key = transcriptKey(transcript);
    if (row.transcript && key === row.transcriptKey) return;
    dropTranscript(row);
    if (!transcript || !row.audio) return;
    const listeners = new AbortController();
    row.transcriptKey = key;
    row.transcriptListeners = listeners;
    row.transcript = transcriptView(transcript, row.audio, listeners.signal);
    row.node.append(row.transcript);
  }

  /** @param {AudioMessage} message */
  meta(message) {
    const who = message.direction === "inbound" ? "Customer" : "Agent";
    const when = message.created_at ? new Date(message.created_at) : null;
    return el("div", { class: "al-meta" },
      el("span", { class: "al-who", text: who }),
      el("span", { class: "al-channel", text: channelName(message.channel) }),
      when ? el("time", { datetime: message.created_at, text: when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) }) : null);
  }

  /**
   * @param {AudioMessage} message
   * @param {Row} row
   */
  bodyFor(message, row) {
    if (message.status === "ready" && message.playback_url) return this.player(message, message.playback_url, row);
    const text = STATUS_TEXT[message.status] || message.status;
    return el("div", { class: "al-body" },
      IN_PROGRESS.has(message.status) ? el("span", { class: "al-spinner", "aria-hidden": "true" }) : null,
      el("span", { class: "al-state", text }),
      message.status === "failed" && message.error ? el("span", { class: "al-error", text: message.error }) : null);
  }

  /**
   * The MP3 player and its speed buttons.
   * @param {AudioMessage} message
   * @param {string} src
   * @param {Row} row
   */
  player(message, src, row) {
    const duration = formatDuration(message.duration_s ?? NaN);
    const label = `${message.direction === "inbound" ? "Customer" : "Agent"} voice note, ${duration}`;
    const audio = el("audio", { controls: true, preload: "metadata", src, "aria-label": label });
    audio.addEventListener("error", () => {
      row.needsNewSource = true;
      this.refresh();
    });
    row.audio = audio;
    const buttons = SPEEDS.map((rate) => el("button", {
      type: "button", class: "al-speed", "aria-pressed": String(rate === 1), "aria-label": `Play at ${rate}× speed`,
      "data-rate": String(rate), text: `${rate}×`,
    }));
    buttons.forEach((button, index) => button.addEventListener("click", () => setSpeed(audio, buttons, SPEEDS[index])));
    return el("div", { class: "al-body" },
      audio,
      el("span", { class: "al-duration", text: duration }),
      el("div", { class: "al-speeds", role: "group", "aria-label": "Playback speed" }, buttons));
  }

  destroy() {
    this.destroyed = true;
    clearTimeout(this.timer);
    this.inFlight?.abort();
    this.root.remove();
  }
}

/**
 * Remove the row's transcript view and its listeners on the player.
 * @param {Row} row
 */
function dropTranscript(row) {
  row.transcriptListeners?.abort();
  row.transcript?.remove();
  row.transcript = null;
  row.transcriptKey = "";
  row.transcriptListeners = null;
}

/**
 * Play at `rate`; its button (of `buttons`, in SPEEDS' order) is the pressed one.
 * @param {HTMLAudioElement} audio
 * @param {HTMLButtonElement[]} buttons
 * @param {number} rate
 */
function setSpeed(audio, buttons, rate) {
  setPlaybackRate(audio, rate);
  buttons.forEach((button, index) => button.setAttribute("aria-pressed", String(SPEEDS[index] === rate)));
}
