// @ts-check
/**
 * The audit trail on the admin page: filters (kept in the address, so a filtered view can be bookmarked), the
 * table, its pages, the CSV link for the same filters, and the detail panel of the row selected.
 */
import { byId, el } from "../shared/dom.js";
import { errorParts } from "../shared/errors.js";
import { formatBytes } from "../shared/format.js";
import { api } from "./api.js";
import { AuditDetail } from "./audit-detail.js";
import { API, channelName, durationText, timeEl } from "./config.js";

/** @typedef {import("./audit-detail.js").AuditRow} AuditRow */
/** @typedef {{audio_messages: AuditRow[], total: number, page: number, per_page: number}} AuditPage */

const PER_PAGE_DEFAULT = 25;
const FORM_KEYS = ["direction", "channel", "status", "conversation_sid", "q", "range", "from", "to"];

export class AuditTrail {
  constructor() {
    this.form = byId("audit-filters", HTMLFormElement);
    this.customRange = byId("custom-range", HTMLFieldSetElement);
    this.filterError = byId("filter-error", HTMLElement);
    this.table = byId("audit-table", HTMLTableElement);
    this.rows = byId("audit-rows", HTMLTableSectionElement);
    this.summary = byId("audit-summary", HTMLElement);
    this.pageLabel = byId("audit-page", HTMLElement);
    this.prev = byId("audit-prev", HTMLButtonElement);
    this.next = byId("audit-next", HTMLButtonElement);
    this.csv = byId("audit-csv", HTMLAnchorElement);
    this.detail = new AuditDetail(this.rows);
    this.page = 1;
    this.perPage = PER_PAGE_DEFAULT;
    this.total = 0;
    this.sequence = 0;
  }

  init() {
    this.readLocation();
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.apply();
    });
    this.form.addEventListener("change", (event) => this.onChange(event));
    this.form.addEventListener("reset", () => {
      // After the browser has reset the fields.
      setTimeout(() => {
        this.syncCustomRange();
        this.apply();
      });
    });
    this.prev.addEventListener("click", () => this.goTo(this.page - 1));
    this.next.addEventListener("click", () => this.goTo(this.page + 1));
    byId("audit-refresh", HTMLButtonElement).addEventListener("click", () => this.load());
    this.rows.addEventListener("click", (event) => {
      const target = event.target instanceof Element ? event.target : null;
      const row = target?.closest("tr[data-audit-id]");
      if (row instanceof HTMLTableRowElement && !target?.closest("a")) this.detail.open(Number(row.dataset.auditId));
    });
    window.addEventListener("popstate", () => {
      this.readLocation();
      this.load({ pushState: false });
    });
    this.load({ pushState: false });
  }

  /** @param {Event} event */
  onChange(event) {
    const target = event.target;
    const name = target instanceof HTMLInputElement || target instanceof HTMLSelectElement ? target.name : "";
    if (name === "range") this.syncCustomRange();
    if (name === "range" && this.field("range").value === "custom") return; // wait for the dates
    if (name === "conversation_sid" || name === "q") return; // text: applied with Enter or the button
    this.apply();
  }

  /**
   * A filter field of the form.
   * @param {string} name
   */
  field(name) {
    const field = this.form.elements.namedItem(name);
    if (field instanceof HTMLInputElement || field instanceof HTMLSelectElement) return field;
    throw new TypeError(`The audit filters have no field ${name}`);
  }

  /** The filter fields, page and page size live in the address, so a filtered view can be bookmarked. */
  readLocation() {
    const params = new URLSearchParams(window.location.search);
    for (const key of FORM_KEYS) this.field(key).value = params.get(key) || "";
    this.page = Math.max(1, parseInt(params.get("page") ?? "", 10) || 1);
    this.perPage = Math.min(500, Math.max(1, parseInt(params.get("per_page") ?? "", 10) || PER_PAGE_DEFAULT));
    this.syncCustomRange();
  }

  /** @param {boolean} push a new history entry (else the current one is replaced) */
  writeLocation(push) {
    const params = new URLSearchParams();
    for (const key of FORM_KEYS) {
      const value = this.field(key).value.trim();
      if (value && (key !== "from" && key !== "to" || this.field("range").value === "custom")) {
        params.set(key, value);
      }
    }
    if (this.page > 1) params.set("page", String(this.page));
    if (this.perPage !== PER_PAGE_DEFAULT) params.set("per_page", String(this.perPage));
    const query = params.toString();
    const url = `${window.location.pathname}${query ? `?${query}` : ""}`;
    if (url === `${window.location.pathname}${window.location.search}`) return;
    if (push) window.history.pushState(null, "", url);
    else window.history.replaceState(null, "", url);
  }

  syncCustomRange() {
    this.customRange.hidden = this.field("range").value !== "custom";
  }

  /** The API's filter parameters from the form (no page): the table and the CSV link share them. */
  filterParams() {
    const params = new URLSearchParams();
    for (const key of ["direction", "channel", "status"]) if (this.field(key).value) params.set(key, this.field(key).value);
    const sid = this.field("conversation_sid").value.trim();
    if (sid) params.set("conversation_sid", sid);
    const words = this.field("q").value.trim();
    if (words) params.set("q", words);
    const range = this.field("range").value;
    if (range === "today") {
      const midnight = new Date();
      midnight.setHours(0, 0, 0, 0);
      params.set("since", midnight.toISOString());
    } else if (range === "custom") {
      for (const [field, key] of [["from", "since"], ["to", "until"]]) {
        const value = this.field(field).value;
        if (!value) continue;
        const when = new Date(value); // datetime-local: the admin's local time
        if (Number.isNaN(when.getTime())) throw new Error(`The ${field} date is not valid.`);
        params.set(key, when.toISOString());
      }
      const since = params.get("since");
      const until = params.get("until");
      if (since !== null && until !== null && since >= until) {
        throw new Error("The start of the range must be before its end.");
      }
    } else if (range) {
      params.set("since", range); // relative: 1h, 24h, 7d, 30d (counted back from each request)
    }
    return params;
  }

  apply() {
    this.page = 1;
    this.load({ pushState: true });
  }

  /** @param {number} page */
  goTo(page) {
    this.page = Math.max(1, page);
    this.load({ pushState: true });
  }

  /** @param {{pushState?: boolean}} [how] */
  async load({ pushState = false } = {}) {
    let filters;
    try {
      filters = this.filterParams();
      this.filterError.textContent = "";
    } catch (error) {
      this.filterError.textContent = errorParts(error).message;
      return;
    }
    this.writeLocation(pushState);
    this.updateCsvLink(filters);
    const params = new URLSearchParams(filters);
    params.set("page", String(this.page));
    params.set("per_page", String(this.perPage));
    const sequence = ++this.sequence;
    this.table.setAttribute("aria-busy", "true");
    this.summary.textContent = "Loading…";
    /** @type {AuditPage} */
    let body;
    try {
      body = await api("/audit", { params });
    } catch (error) {
      if (sequence !== this.sequence) return;
      this.table.removeAttribute("aria-busy");
      this.summary.textContent = `Could not load the audit trail: ${errorParts(error).message}`;
      this.summary.classList.add("error-text");
      this.rows.replaceChildren();
      return;
    }
    if (sequence !== this.sequence) return; // a newer filter has been applied meanwhile
    this.table.removeAttribute("aria-busy");
    this.summary.classList.remove("error-text");
    this.total = body.total;
    const pages = Math.max(1, Math.ceil(body.total / body.per_page));
    if (body.audio_messages.length === 0 && this.page > pages) {
      this.goTo(pages); // the filter shrank past this page
      return;
    }
    this.render(body, pages);
  }

  /** @param {URLSearchParams} filters */
  updateCsvLink(filters) {
    const params = new URLSearchParams(filters);
    params.set("format", "csv");
    this.csv.href = `${API}/audit?${params}`;
  }

  /**
   * @param {AuditPage} body
   * @param {number} pages
   */
  render(body, pages) {
    const first = (body.page - 1) * body.per_page + 1;
    const last = first + body.audio_messages.length - 1;
    this.summary.textContent = body.total === 0
      ? "No audio messages match these filters."
      : `Showing ${first}–${last} of ${body.total} audio message${body.total === 1 ? "" : "s"}`;
    this.pageLabel.textContent = `Page ${body.page} of ${pages}`;
    this.prev.disabled = body.page <= 1;
    this.next.disabled = body.page >= pages;
    this.rows.replaceChildren(...body.audio_messages.map((row) => this.rowNode(row)));
  }

  /** @param {AuditRow} row */
  rowNode(row) {
    const selected = row.audit_id === this.detail.selectedId;
    const note = row.match ? matchNode(row.match) : row.status === "failed"
      ? el("span", { class: "error-text", text: row.error || "failed", title: row.error || "" })
      : (row.author || "—");
    const size = row.mp3_size_bytes && row.mp3_size_bytes !== row.size_bytes
      ? `${formatBytes(row.size_bytes)} → ${formatBytes(row.mp3_size_bytes)}`
      : formatBytes(row.size_bytes ?? row.mp3_size_bytes);
    return el("tr", {
      "data-audit-id": row.audit_id, "data-status": row.status, "data-channel": row.channel,
      "data-direction": row.direction, "aria-current": selected ? "true" : undefined,
      class: selected ? "selected" : undefined,
    },
      el("td", {}, el("button", { type: "button", class: "link-button", text: `#${row.audit_id}`,
                                  "aria-label": `Show details of audio message ${row.audit_id}` })),
      el("td", {}, timeEl(row.created_at)),
      el("td", { text: row.direction }),
      el("td", { text: channelName(row.channel) }),
      el("td", {}, el("span", { class: `status status--${row.status}`, text: row.status })),
      el("td", { class: "num", text: durationText(row.duration_s) }),
      el("td", { class: "num", text: size }),
      el("td", {}, el("code", { class: "sid", title: row.conversation_sid, text: row.conversation_sid })),
      el("td", { class: "note" }, note));
  }
}

/**
 * The words a search found, marked in the transcript's snippet: built as DOM text and <mark> nodes (the snippet
 * is the customer's words, never markup).
 * @param {{snippet: string, highlights: [number, number][]}} match
 */
function matchNode(match) {
  /** @type {(Node | string)[]} */
  const parts = [];
  let at = 0;
  for (const [start, end] of match.highlights) {
    if (start < at || end > match.snippet.length) continue;
    parts.push(match.snippet.slice(at, start), el("mark", { text: match.snippet.slice(start, end) }));
    at = end;
  }
  parts.push(match.snippet.slice(at));
  return el("span", { class: "match", title: "Said in the note" }, ...parts);
}
