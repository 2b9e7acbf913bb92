// @ts-check
/**
 * Format helpers shared by the record panel, the agent console and the admin page: one rule for each kind of
 * number the service shows (durations, sizes, times).
 */

const MB = 1024 * 1024;

/**
 * A length as m:ss (h:mm:ss from an hour), to the nearest second: the one rule of every duration shown, in the
 * record panel, the agent console and the admin page, so a 3.9 s clip reads 0:04 in all of them.
 * @param {number} seconds
 */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–:––";
  const whole = Math.round(seconds);
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = String(whole % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

/**
 * A cap for people: "16 MB", "2.5 MB" (whole MB from 10, else one decimal).
 * @param {number} bytes
 */
export function formatMegabytes(bytes) {
  const mb = bytes / MB;
  return `${mb >= 10 ? Math.round(mb) : Math.round(mb * 10) / 10} MB`;
}

/**
 * MB as a number to edit: up to three decimals, no trailing zeros (16, 2, 0.5, 0.005); "" when missing.
 * @param {number | null | undefined} bytes
 */
export function formatMb(bytes) {
  if (bytes === null || bytes === undefined) return "";
  return String(Number((bytes / MB).toFixed(3)));
}

/**
 * A file's size: "512 B", "3.4 KB", "1.25 MB"; "—" when missing.
 * @param {number | null | undefined} bytes
 */
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < MB) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / MB).toFixed(2)} MB`;
}

/** @param {number} n */
const pad = (n) => String(n).padStart(2, "0");

/**
 * The browser's time zone as people name it here: "UTC", "CET", "GMT+1", "EST"…
 * @param {Date} date
 */
export function zoneName(date) {
  const parts = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(date);
  return parts.find((part) => part.type === "timeZoneName")?.value || "";
}

/**
 * Local time with its zone, sortable and unambiguous: 2026-11-25 09:30:05 CET. "—" when missing; a text that is
 * no time is shown as it is.
 * @param {string | null | undefined} iso
 */
export function formatTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
         `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${zoneName(d)}`.trimEnd();
}
