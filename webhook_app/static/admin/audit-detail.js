// @ts-check
/** The audit trail's detail panel: one audio message, fetched fresh, with its player and every field. */
import { byId, el } from "../shared/dom.js";
import { errorParts } from "../shared/errors.js";
import { formatBytes, formatDuration } from "../shared/format.js";
import { api } from "./api.js";
import { channelName, timeEl } from "./config.js";

/**
 * An audio message as the audit API has it (GET /audit, /audit/<id>).
 * @typedef {object} AuditRow
 * @property {number} audit_id
 * @property {string} status
 * @property {string} direction
 * @property {string} channel
 * @property {string} conversation_sid
 * @property {string | null} [created_at]
 * @property {string | null} [started_at]
 * @property {string | null} [finished_at]
 * @property {string | null} [updated_at]
 * @property {string | null} [author]
 * @property {string | null} [source]
 * @property {string | null} [message_sid]
 * @property {string | null} [media_sid]
 * @property {string | null} [filename]
 * @property {string | null} [content_type]
 * @property {number | null} [size_bytes]
 * @property {number | null} [mp3_size_bytes]
 * @property {number | null} [duration_s]
 * @property {boolean} [truncated]
 * @property {string | null} [sha256]
 * @property {number | null} [processing_ms]
 * @property {number | null} [transcode_ms]
 * @property {number | null} [attempts]
 * @property {string | null} [error]
 * @property {string | null} [error_code]
 * @property {string | null} [playback_url]
 * @property {{status: string, text: string, language: string | null, model: string | null, error?: string,
 *   deleted_at?: string, segments: {start: number, end: number, text: string}[]}} [transcript] when the channel
 *   transcribes
 * @property {{snippet: string, highlights: [number, number][]}} [match] with `q`: where the words are in the text
 */

/** @typedef {Node | string | null | undefined} Shown */

/** @param {unknown} value */
const blank = (value) => value === null || value === undefined || value === "";
/**
 * @param {string} label
 * @param {Shown} value
 */
const item = (label, value) => [el("dt", { text: label }), el("dd", {}, blank(value) ? "—" : value)];
/** The size, and its exact count where the size is rounded (from 1 KB). @param {number | null | undefined} value */
const bytes = (value) => (value === null || value === undefined ? null
  : value < 1024 ? formatBytes(value) : `${formatBytes(value)} (${value.toLocaleString("en-US")} bytes)`);
/** @param {number | null | undefined} value */
const ms = (value) => (value === null || value === undefined ? null : `${value} ms`);
/** @param {string | null | undefined} value */
const code = (value) => (value ? el("code", { text: value }) : null);

export class AuditDetail {
  /** @param {HTMLTableSectionElement} rows the audit table's body, whose selected row this marks */
  constructor(rows) {
    this.rows = rows;
    this.panel = byId("audit-detail", HTMLElement);
    this.title = byId("audit-detail-title", HTMLElement);
    this.body = byId("audit-detail-body", HTMLElement);
    /** @type {number | null} */
    this.selectedId = null;
    byId("audit-detail-close", HTMLButtonElement).addEventListener("click", () => this.close());
  }

  /** @param {number} auditId */
  async open(auditId) {
    this.selectedId = auditId;
    for (const tr of this.rows.querySelectorAll("tr[data-audit-id]")) {
      if (!(tr instanceof HTMLTableRowElement)) continue;
      const selected = Number(tr.dataset.auditId) === auditId;
      tr.classList.toggle("selected", selected);
      if (selected) tr.setAttribute("aria-current", "true");
      else tr.removeAttribute("aria-current");
    }
    this.panel.hidden = false;
    this.panel.dataset.auditId = String(auditId);
    this.title.textContent = `Audio message #${auditId}`;
    this.body.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
    this.panel.scrollIntoView({ block: "nearest" });
    this.title.focus({ preventScroll: true });
    /** @type {AuditRow} */
    let row;
    try {
      row = await api(`/audit/${auditId}`); // fresh: the status may have moved on, and a new playback link
    } catch (error) {
      if (this.selectedId === auditId) {
        this.body.replaceChildren(el("p", { class: "error-text", role: "alert", text: errorParts(error).message }));
      }
      return;
    }
    if (this.selectedId !== auditId) return;
    this.render(row);
  }

  /** @param {AuditRow} row */
  render(row) {
    this.body.replaceChildren(...[
      failure(row),
      player(row),
      transcript(row),
      el("div", { class: "detail-grid" },
        el("div", {}, el("h4", { text: "Message" }), el("dl", {}, ...messageItems(row))),
        el("div", {}, el("h4", { text: "Audio" }), el("dl", {}, ...audioItems(row))),
        el("div", {}, el("h4", { text: "Timings" }), el("dl", {}, ...timingItems(row))))].filter((node) => node !== null));
  }

  close() {
    const id = this.selectedId;
    this.selectedId = null;
    this.panel.hidden = true;
    this.body.querySelector("audio")?.pause();
    this.body.replaceChildren();
    for (const tr of this.rows.querySelectorAll("tr.selected")) {
      tr.classList.remove("selected");
      tr.removeAttribute("aria-current");
    }
    const button = this.rows.querySelector(`tr[data-audit-id="${id}"] button`);
    if (button instanceof HTMLElement) button.focus();
  }
}

/** @param {AuditRow} row */
function failure(row) {
  return row.status === "failed"
    ? el("div", { class: "banner banner--error detail-error", role: "note" },
        el("strong", { text: row.error_code ? `${row.error_code}: ` : "Failed: " }),
        row.error || "unknown error")
    : null;
}

/** @param {AuditRow} row */
function player(row) {
  return row.playback_url
    ? el("div", { class: "player" },
        el("audio", { controls: true, preload: "metadata", src: row.playback_url,
                      "aria-label": `Play audio message ${row.audit_id}` }),
        el("a", { href: row.playback_url, target: "_blank", rel: "noopener", text: "Open the MP3" }))
    : el("p", { class: "muted", text: row.status === "failed" ? "No audio: this message failed."
                                                                : `No audio yet: the message is ${row.status}.` });
}

/**
 * What was said, as selectable text, with its status, language and model; nothing when the channel does not
 * transcribe.
 * @param {AuditRow} row
 */
function transcript(row) {
  const shown = row.transcript;
  if (!shown) return null;
  const about = [shown.status, shown.language, shown.model].filter(Boolean).join(" · ");
  const text = shown.deleted_at ? "Deleted by retention." : shown.status === "failed" ? shown.error || "failed"
    : shown.status === "no_speech" ? "No speech in this note." : shown.text || "Not transcribed yet.";
  return el("div", { class: "detail-transcript", "data-transcript-status": shown.status },
    el("h4", { text: "Transcript" }),
    el("p", { class: shown.status === "failed" ? "error-text" : "transcript-text", text }),
    el("p", { class: "muted small", text: about }));
}

/** @param {AuditRow} row */
function messageItems(row) {
  return [
    item("Status", el("span", { class: `status status--${row.status}`, text: row.status })),
    item("Direction", row.direction),
    item("Channel", channelName(row.channel)),
    item("Author", row.author),
    item("Source", row.source),
    item("Conversation", code(row.conversation_sid)),
    item("Message", code(row.message_sid)),
    item("Media", code(row.media_sid)),
  ].flat();
}

/** @param {AuditRow} row */
function audioItems(row) {
  const duration = row.duration_s === null || row.duration_s === undefined ? null
    : `${row.duration_s} s (${formatDuration(row.duration_s)})`;
  return [
    item("File name", row.filename),
    item("Content type", row.content_type),
    item("Original size", bytes(row.size_bytes)),
    item("MP3 size", bytes(row.mp3_size_bytes)),
    item("Duration", duration),
    item("Truncated", row.truncated ? "yes, cut at the duration cap" : "no"),
    item("SHA-256", code(row.sha256)),
  ].flat();
}

/** @param {AuditRow} row */
function timingItems(row) {
  return [
    item("Created", timeEl(row.created_at)),
    item("Started", timeEl(row.started_at)),
    item("Finished", timeEl(row.finished_at)),
    item("Updated", timeEl(row.updated_at)),
    item("Processing", ms(row.processing_ms)),
    item("Transcode", ms(row.transcode_ms)),
    item("Attempts", blank(row.attempts) ? null : String(row.attempts)),
  ].flat();
}
