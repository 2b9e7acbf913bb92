// @ts-check
/**
 * What a voice note may be on its channel, and how its state reads, for the agent console and the Flex plugin
 * alike: the channels' names, the longest take both caps allow and the panel's line about it, when the panel
 * warns and stops, the audio messages' states and playback speeds.
 */
import { formatBytes, formatDuration } from "./format.js";
import { TRANSCRIPT_BUSY } from "./transcript.js";

/** @typedef {import("./api.js").AudioSettings} AudioSettings */
/** @typedef {import("./api.js").AudioMessage} AudioMessage */

/** @type {Record<string, string>} */
export const CHANNEL_NAMES = {
  whatsapp: "WhatsApp", sms: "SMS/MMS", webchat: "Web chat", messenger: "Messenger", other: "Other",
};

// While recording: the warning this long before the cap, and the timer's period.
export const WARN_BEFORE_END_S = 10;
export const TICK_MS = 200;
// Stop this much before the cap: the timer only looks every TICK_MS, and MediaRecorder hands over its last
// chunk a little after the stop (the service allows half a second over the cap for that, no more).
export const STOP_BEFORE_LIMIT_S = TICK_MS / 1000 + 0.1;
// The service caps the MP3 it makes, not the upload; stop early enough that the MP3 fits (frame/header overhead).
const MP3_SIZE_MARGIN = 0.95;

/** @type {Record<string, string>} */
export const STATUS_TEXT = {
  queued: "Waiting to be processed…",
  downloading: "Downloading from Twilio…",
  transcoding: "Converting to MP3…",
  sending: "Sending…",
  failed: "Could not be processed",
};
export const IN_PROGRESS = new Set(["queued", "downloading", "transcoding", "sending"]);
export const SPEEDS = [1, 1.5, 2];

/**
 * The channel's name for people ("WhatsApp"), its code when it has none here.
 * @param {string | null | undefined} channel
 */
export function channelName(channel) {
  return (channel && CHANNEL_NAMES[channel]) || channel || "";
}

/**
 * The longest recording that fits both caps; the MP3's size follows from the channel's bitrate.
 * @param {Partial<AudioSettings> | null | undefined} settings
 */
export function maxSeconds(settings) {
  const { max_duration_s: maxDuration, max_bytes: maxBytes, bitrate_kbps: kbps } = settings || {};
  const bySize = maxBytes && kbps ? Math.floor((maxBytes * 8 * MP3_SIZE_MARGIN) / (kbps * 1000)) : Infinity;
  return Math.min(maxDuration || Infinity, bySize);
}

/**
 * The panel's line about the caps: "WhatsApp: Up to 15:00 · 16 MB per file".
 * @param {Partial<AudioSettings>} settings
 */
export function capsText(settings) {
  const parts = [`Up to ${formatDuration(maxSeconds(settings))}`];
  if (settings.max_bytes) parts.push(`${formatBytes(settings.max_bytes)} per file`);
  return `${channelName(settings.channel) || "This channel"}: ${parts.join(" · ")}`;
}

/**
 * Whether the message, or its transcript, is still being worked on: the list then looks again soon.
 * @param {Pick<AudioMessage, "status" | "transcript">} message
 */
export function inProgress(message) {
  return IN_PROGRESS.has(message.status) || TRANSCRIPT_BUSY.has(message.transcript?.status ?? "");
}

/**
 * Play at `rate`, now and after a new source (a fresh playback link).
 * @param {HTMLAudioElement} audio
 * @param {number} rate
 */
export function setPlaybackRate(audio, rate) {
  // defaultPlaybackRate survives a source refresh; playbackRate changes what is playing now.
  audio.defaultPlaybackRate = rate;
  audio.playbackRate = rate;
}
