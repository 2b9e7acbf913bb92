// @ts-check
/** What the /admin page's template hands its script (data attributes and the CSRF meta tag), and its names. */
import { byId, el } from "../shared/dom.js";
import { formatDuration, formatMb, formatTime } from "../shared/format.js";

const root = byId("admin-app", HTMLElement);
export const API = root.dataset.api || "/api/v1/admin";
export const CSRF = document.querySelector('meta[name="csrf-token"]')?.getAttribute("content") || "";
export const CHANNELS = (root.dataset.channels || "").split(",").filter(Boolean);
export const BITRATES = (root.dataset.bitrates || "").split(",").filter(Boolean).map(Number);
/** @type {Record<string, number>} Twilio's per-file cap of each channel, in bytes. */
export const HARD_MAX_BYTES = JSON.parse(root.dataset.hardMaxBytes || "{}");
export const HARD_MAX_DURATION_S = Number(root.dataset.hardMaxDurationS) || 4 * 3600; // the server checks it as well
/** `auto` and the Whisper language codes a channel may transcribe in. */
export const LANGUAGES = (root.dataset.languages || "auto").split(",").filter(Boolean);

/** @type {Record<string, string>} */
const CHANNEL_NAMES = {
  whatsapp: "WhatsApp",
  sms: "SMS / MMS",
  webchat: "Web chat",
  messenger: "Facebook Messenger",
  other: "Other channels",
};
/** @type {Record<string, string>} */
export const SETTING_NAMES = {
  sending_enabled: "Agents may send audio",
  max_bytes: "Max size",
  max_duration_s: "Max duration",
  bitrate_kbps: "MP3 bitrate",
  normalize_inbound: "Normalize inbound audio to MP3",
  loudness_normalize: "Loudness normalization (EBU R128)",
  transcribe: "Transcribe voice notes",
  transcribe_language: "Transcription language",
};

/** @param {string} channel */
export const channelName = (channel) => CHANNEL_NAMES[channel] || channel;

/**
 * A duration that may be missing (a row not converted yet).
 * @param {number | null | undefined} seconds
 */
export function durationText(seconds) {
  return seconds === null || seconds === undefined ? "—" : formatDuration(seconds);
}

/**
 * A <time> showing local time with its zone, the ISO value in its title; "—" when missing.
 * @param {string | null | undefined} iso
 */
export function timeEl(iso) {
  return iso ? el("time", { datetime: iso, title: iso, text: formatTime(iso) }) : "—";
}

/**
 * A setting's value as the changes table shows it.
 * @param {string} key
 * @param {unknown} value
 */
export function formatSettingValue(key, value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "boolean") return value ? "on" : "off";
  if (typeof value === "number") {
    if (key === "max_bytes") return `${formatMb(value)} MB`;
    if (key === "max_duration_s") return formatDuration(value);
    if (key === "bitrate_kbps") return `${value} kbps`;
  }
  return String(value);
}
