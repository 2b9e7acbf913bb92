// @ts-check
/**
 * Format helpers shared by the record panel, the agent console, the admin page and the Flex plugin: one rule for
 * each kind of number the service shows (durations, sizes, times). Sizes follow the service's own messages
 * (webhook_app/humanize.py); tests/fixtures/format_cases.json holds the cases both are tested against.
 */

const KB = 1024;
const MB = 1024 * KB;

/**
 * A length as m:ss (h:mm:ss from an hour), to the nearest second: the one rule of every duration shown, in the
 * record panel, the agent console and the admin page, so a 3.9 s clip reads 0:04 in all of them.
 * "–:––" when not known.
 * @param {number | null | undefined} seconds
 */
export function formatDuration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "–:––";
  const whole = Math.round(seconds);
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = String(whole % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
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
 * A size (a file, a cap) as the service's messages say it: "900 bytes", "9.8 KB", "16 MB", "40.4 MB": KB and MB
 * of 1,024 and 1,048,576 bytes (the admin page's units), to a tenth rounded half up, without a ".0" (a size that
 * rounds to 1024 KB is 1 MB); "—" when missing. The rule of humanize.format_bytes, so a cap reads the same on the
 * page and in a refusal.
 * @param {number | null | undefined} bytes a whole number
 */
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  if (bytes < KB) return `${bytes} bytes`;
  let tenths = tenthsOf(bytes, KB);
  let unit = "KB";
  if (tenths >= 1024 * 10) {
    tenths = tenthsOf(bytes, MB);
    unit = "MB";
  }
  const whole = Math.floor(tenths / 10);
  return tenths % 10 ? `${whole}.${tenths % 10} ${unit}` : `${whole} ${unit}`;
}

/**
 * Tenths of `unit` in `bytes`, rounded half up. Whole bytes only: then every step is exact in floating point (a
 * power of two divides exactly), as in Python's integers; `toFixed` would round 1.25 up where Python rounds to even.
 * @param {number} bytes
 * @param {number} unit
 */
function tenthsOf(bytes, unit) {
  return Math.floor((bytes * 10 + unit / 2) / unit);
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
