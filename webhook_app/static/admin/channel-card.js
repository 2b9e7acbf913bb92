// @ts-check
/** One channel's settings card on the admin page: its form, what changed, validation, saving. */
import { el } from "../shared/dom.js";
import { errorParts } from "../shared/errors.js";
import { formatDuration, formatMb } from "../shared/format.js";
import { api } from "./api.js";
import {
  BITRATES, channelName, HARD_MAX_BYTES, HARD_MAX_DURATION_S, LANGUAGES, SETTING_NAMES, timeEl,
} from "./config.js";

const MB = 1024 * 1024;

/**
 * A channel's settings as the API has them (GET /settings, PUT /settings/<channel>).
 * @typedef {object} SettingValues
 * @property {boolean} sending_enabled
 * @property {number} max_bytes
 * @property {number} max_duration_s
 * @property {number} bitrate_kbps
 * @property {boolean} normalize_inbound
 * @property {boolean} loudness_normalize
 * @property {boolean} transcribe
 * @property {string} transcribe_language `auto` or a Whisper language code
 */
/**
 * Whether the service can transcribe (GET /settings' `transcription`).
 * @typedef {{installed: boolean, model?: string, message?: string}} Transcription
 */
/**
 * @typedef {SettingValues & {channel: string, updated_at?: string | null, updated_by?: string | null}
 *   & Record<string, unknown>} ChannelSettings
 */

/** A value the form cannot save, and the field to fix. */
class FieldError extends Error {
  /**
   * @param {HTMLInputElement} input
   * @param {string} message
   */
  constructor(input, message) {
    super(message);
    this.input = input;
  }
}

/**
 * @param {string} id
 * @param {string} name
 * @param {Record<string, string | boolean | undefined>} [attrs]
 */
const numberInput = (id, name, attrs = {}) => el("input", { type: "number", id, name, ...attrs });

export class ChannelCard {
  /**
   * @param {ChannelSettings} settings
   * @param {(channel: string) => void} [onSaved]
   * @param {Transcription} [transcription]
   */
  constructor(settings, onSaved, transcription) {
    this.channel = settings.channel;
    this.settings = settings;
    this.hardMax = HARD_MAX_BYTES[this.channel] || null;
    this.onSaved = onSaved;
    this.saving = false;
    this.shownMb = "";
    const name = channelName(this.channel);
    this.sending = el("input", { type: "checkbox", role: "switch", id: this.id("sending-enabled"), name: "sending_enabled" });
    this.maxMb = numberInput(this.id("max-mb"), "max_mb", { inputmode: "decimal", min: "0.001", step: "any",
      max: this.hardMax ? formatMb(this.hardMax) : undefined, "aria-describedby": this.id("max-mb-hint"), required: true });
    this.minutes = numberInput(this.id("max-minutes"), "max_minutes", { inputmode: "numeric", min: "0",
      max: String(HARD_MAX_DURATION_S / 60), step: "1", "aria-label": "Max duration: minutes" });
    this.seconds = numberInput(this.id("max-seconds"), "max_seconds", { inputmode: "numeric", min: "0", max: "59",
      step: "1", "aria-label": "Max duration: seconds" });
    this.bitrate = el("select", { id: this.id("bitrate"), name: "bitrate_kbps" },
                      BITRATES.map((kbps) => el("option", { value: String(kbps), text: `${kbps} kbps` })));
    this.normalize = el("input", { type: "checkbox", id: this.id("normalize-inbound"), name: "normalize_inbound" });
    this.loudness = el("input", { type: "checkbox", id: this.id("loudness"), name: "loudness_normalize" });
    this.transcribe = el("input", { type: "checkbox", id: this.id("transcribe"), name: "transcribe",
                                    "aria-describedby": this.id("transcribe-hint") });
    this.language = el("select", { id: this.id("transcribe-language"), name: "transcribe_language" },
                       LANGUAGES.map((code) => el("option", { value: code, text: code === "auto" ? "Detect" : code })));
    this.transcribeHint = el("p", { class: "hint", id: this.id("transcribe-hint"),
      text: transcription && !transcription.installed
        ? `Not installed here: notes get a failed transcript. ${transcription.message || ""}`.trim()
        : "Text of each voice note, made on this service's workers; no audio leaves the deployment." });
    this.badge = el("span", { class: "badge" });
    this.meta = el("p", { class: "muted small card-meta" });
    this.dirtyNote = el("span", { class: "dirty-note small", text: "Unsaved changes", hidden: true });
    this.feedback = el("p", { class: "feedback", role: "status", "aria-live": "polite", "data-feedback": true });
    this.saveButton = el("button", { type: "submit", class: "button button--primary",
                                     "aria-label": `Save ${name} settings`, text: "Save" });
    this.form = this.buildForm();
    this.node = el("section", { class: "card channel-card", "data-channel": this.channel,
                                "aria-labelledby": this.id("title") },
      el("div", { class: "card-head" }, el("h3", { id: this.id("title"), text: name }), this.badge),
      this.form,
      this.meta);
    this.load(settings);
  }

  /** @param {string} name */
  id(name) {
    return `${this.channel}-${name}`;
  }

  buildForm() {
    const name = channelName(this.channel);
    const hardMaxText = this.hardMax ? `Up to ${formatMb(this.hardMax)} MB, Twilio's limit for ${name}.` : "";
    const check = (/** @type {HTMLInputElement} */ input, /** @type {string} */ label) =>
      el("div", { class: "field field--check" }, input, el("label", { for: input.id, text: label }));
    const form = el("form", { novalidate: true, "aria-labelledby": this.id("title") },
      el("div", { class: "field field--switch" },
        this.sending,
        el("label", { for: this.sending.id, text: SETTING_NAMES.sending_enabled })),
      el("div", { class: "field" },
        el("label", { for: this.maxMb.id, text: "Max size per file (MB)" }),
        this.maxMb,
        el("p", { class: "hint", id: this.id("max-mb-hint"), text: hardMaxText })),
      el("fieldset", { class: "field duration" },
        el("legend", { text: "Max duration" }),
        el("div", { class: "duration-inputs" },
          el("label", { for: this.minutes.id }, this.minutes, el("span", { "aria-hidden": "true", text: "min" })),
          el("label", { for: this.seconds.id }, this.seconds, el("span", { "aria-hidden": "true", text: "s" })))),
      el("div", { class: "field" },
        el("label", { for: this.bitrate.id, text: "MP3 bitrate" }),
        this.bitrate),
      check(this.normalize, SETTING_NAMES.normalize_inbound),
      check(this.loudness, SETTING_NAMES.loudness_normalize),
      check(this.transcribe, SETTING_NAMES.transcribe),
      this.transcribeHint,
      el("div", { class: "field" },
        el("label", { for: this.language.id, text: SETTING_NAMES.transcribe_language }),
        this.language),
      el("div", { class: "card-actions" }, this.saveButton, this.dirtyNote),
      this.feedback);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    form.addEventListener("input", () => this.refreshDirty());
    form.addEventListener("change", () => this.refreshDirty());
    return form;
  }

  /**
   * Show the server's state and make it the baseline "unchanged" is measured against.
   * @param {ChannelSettings} settings
   */
  load(settings) {
    this.settings = settings;
    this.sending.checked = settings.sending_enabled;
    this.maxMb.value = formatMb(settings.max_bytes);
    this.shownMb = this.maxMb.value;
    this.minutes.value = String(Math.floor(settings.max_duration_s / 60));
    this.seconds.value = String(settings.max_duration_s % 60);
    if (!BITRATES.includes(settings.bitrate_kbps)) {
      const kbps = String(settings.bitrate_kbps); // a value stored before the list changed: still shown
      this.bitrate.append(el("option", { value: kbps, text: `${kbps} kbps` }));
    }
    this.bitrate.value = String(settings.bitrate_kbps);
    this.normalize.checked = settings.normalize_inbound;
    this.loudness.checked = settings.loudness_normalize;
    this.transcribe.checked = settings.transcribe;
    if (![...this.language.options].some((option) => option.value === settings.transcribe_language)) {
      const code = settings.transcribe_language; // stored before the list changed: still shown
      this.language.append(el("option", { value: code, text: code }));
    }
    this.language.value = settings.transcribe_language;

    this.node.dataset.sendingEnabled = String(settings.sending_enabled);
    this.badge.textContent = settings.sending_enabled ? "Sending on" : "Sending off";
    this.badge.className = `badge ${settings.sending_enabled ? "badge--on" : "badge--off"}`;
    this.meta.replaceChildren(settings.updated_at
      ? el("span", {}, "Last changed ", timeEl(settings.updated_at), ` by ${settings.updated_by || "unknown"}`)
      : "Never changed: the defaults apply");
    for (const input of [this.maxMb, this.minutes, this.seconds]) input.removeAttribute("aria-invalid");
    this.refreshDirty();
  }

  /**
   * The form as settings values, or throws a FieldError whose message says what to fix.
   * @returns {SettingValues}
   */
  values() {
    return {
      sending_enabled: this.sending.checked,
      bitrate_kbps: Number(this.bitrate.value),
      normalize_inbound: this.normalize.checked,
      loudness_normalize: this.loudness.checked,
      transcribe: this.transcribe.checked,
      transcribe_language: this.language.value,
      max_bytes: this.maxBytes(),
      max_duration_s: this.maxDuration(),
    };
  }

  maxBytes() {
    if (this.maxMb.value.trim() === this.shownMb) {
      return this.settings.max_bytes; // untouched: keep the exact bytes, not the rounded MB
    }
    const mb = Number(this.maxMb.value);
    if (this.maxMb.value.trim() === "" || !Number.isFinite(mb) || mb <= 0) {
      throw this.invalid(this.maxMb, "Enter the max size in MB, greater than 0.");
    }
    const bytes = Math.round(mb * MB);
    if (this.hardMax && bytes > this.hardMax) {
      const name = channelName(this.channel);
      throw this.invalid(this.maxMb, `${name} accepts at most ${formatMb(this.hardMax)} MB per file.`);
    }
    return Math.max(1, bytes);
  }

  maxDuration() {
    const minutes = this.minutes.value.trim() === "" ? 0 : Number(this.minutes.value);
    const seconds = this.seconds.value.trim() === "" ? 0 : Number(this.seconds.value);
    if (!Number.isInteger(minutes) || minutes < 0) throw this.invalid(this.minutes, "Minutes must be a whole number.");
    if (!Number.isInteger(seconds) || seconds < 0 || seconds > 59) {
      throw this.invalid(this.seconds, "Seconds must be a whole number from 0 to 59.");
    }
    const total = minutes * 60 + seconds;
    if (total < 1 || total > HARD_MAX_DURATION_S) {
      const most = formatDuration(HARD_MAX_DURATION_S);
      throw this.invalid(this.minutes, `The max duration must be between 0:01 and ${most}.`);
    }
    return total;
  }

  /**
   * @param {HTMLInputElement} input
   * @param {string} message
   */
  invalid(input, message) {
    input.setAttribute("aria-invalid", "true");
    return new FieldError(input, message);
  }

  /** The values that differ from the server's. */
  changes() {
    const values = this.values();
    return Object.fromEntries(Object.entries(values).filter(([key, value]) => value !== this.settings[key]));
  }

  refreshDirty() {
    let dirty;
    try {
      dirty = Object.keys(this.changes()).length > 0;
    } catch {
      dirty = true; // an invalid entry is a change too
    }
    this.node.dataset.dirty = String(dirty);
    this.dirtyNote.hidden = !dirty;
  }

  /**
   * @param {string} message
   * @param {"" | "ok" | "error"} [kind]
   */
  say(message, kind = "") {
    this.feedback.textContent = message;
    this.feedback.className = `feedback${kind ? ` feedback--${kind}` : ""}`;
  }

  async save() {
    if (this.saving) return;
    for (const input of [this.maxMb, this.minutes, this.seconds]) input.removeAttribute("aria-invalid");
    let changes;
    try {
      changes = this.changes();
    } catch (error) {
      this.say(errorParts(error).message, "error");
      if (error instanceof FieldError) error.input.focus();
      return;
    }
    if (Object.keys(changes).length === 0) {
      this.say("Nothing to save: no changes.");
      return;
    }
    this.saving = true;
    this.saveButton.disabled = true;
    this.saveButton.setAttribute("aria-busy", "true");
    this.say("Saving…");
    try {
      const saved = await api(`/settings/${encodeURIComponent(this.channel)}`, { method: "PUT", body: changes });
      this.load(saved);
      this.say("Saved", "ok");
      this.onSaved?.(this.channel);
    } catch (error) {
      this.say(errorParts(error).message, "error");
    } finally {
      this.saving = false;
      this.saveButton.disabled = false;
      this.saveButton.removeAttribute("aria-busy");
    }
  }
}
