// The /admin page: per-channel settings editor and audit browser.
//
// Plain ES module, no build step. It talks to the admin JSON API (/api/v1/admin/...) with the session cookie the
// login form set; every request that changes something carries the page's CSRF token in X-CSRF-Token.

// The record panel's formatter: one rounding rule for every duration the service shows (nearest second).
import { formatDuration } from "./record-panel.js";

const root = document.getElementById("admin-app");
const API = root.dataset.api || "/api/v1/admin";
const CSRF = document.querySelector('meta[name="csrf-token"]')?.content || "";
const CHANNELS = (root.dataset.channels || "").split(",").filter(Boolean);
const BITRATES = (root.dataset.bitrates || "").split(",").filter(Boolean).map(Number);
const HARD_MAX_BYTES = JSON.parse(root.dataset.hardMaxBytes || "{}");
const HARD_MAX_DURATION_S = Number(root.dataset.hardMaxDurationS) || 4 * 3600; // the server checks it as well
const MB = 1024 * 1024;
const PER_PAGE_DEFAULT = 25;

const CHANNEL_NAMES = {
  whatsapp: "WhatsApp",
  sms: "SMS / MMS",
  webchat: "Web chat",
  messenger: "Facebook Messenger",
  other: "Other channels",
};
const SETTING_NAMES = {
  sending_enabled: "Agents may send audio",
  max_bytes: "Max size",
  max_duration_s: "Max duration",
  bitrate_kbps: "MP3 bitrate",
  normalize_inbound: "Normalize inbound audio to MP3",
  loudness_normalize: "Loudness normalization (EBU R128)",
};

// -- small helpers ------------------------------------------------------------------------------------------

/** el("p", {class: "x", text: "hi"}, child, ...): attributes, `text`, `on<event>` handlers, then children. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const $ = (id) => document.getElementById(id);
const channelName = (channel) => CHANNEL_NAMES[channel] || channel;

function formatMb(bytes) {
  if (bytes === null || bytes === undefined) return "";
  // Up to three decimals, no trailing zeros: 16, 2, 0.5, 0.005.
  return String(Number((bytes / MB).toFixed(3)));
}

function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < MB) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / MB).toFixed(2)} MB`;
}

/** A duration that may be missing (a row not converted yet). */
function durationText(seconds) {
  return seconds === null || seconds === undefined ? "—" : formatDuration(seconds);
}

const pad = (n) => String(n).padStart(2, "0");

/** The browser's time zone as people name it here: "UTC", "CET", "GMT+1", "EST"… */
function zoneName(date) {
  const parts = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(date);
  return parts.find((part) => part.type === "timeZoneName")?.value || "";
}

/** Local time with its zone, sortable and unambiguous: 2026-11-25 09:30:05 CET. */
function formatTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
         `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${zoneName(d)}`.trimEnd();
}

function timeEl(iso) {
  return iso ? el("time", { datetime: iso, title: iso, text: formatTime(iso) }) : "—";
}

function formatSettingValue(key, value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "boolean") return value ? "on" : "off";
  if (key === "max_bytes") return `${formatMb(value)} MB`;
  if (key === "max_duration_s") return formatDuration(value);
  if (key === "bitrate_kbps") return `${value} kbps`;
  return String(value);
}

// -- the API ------------------------------------------------------------------------------------------------

class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, { method = "GET", body, params } = {}) {
  const url = new URL(API + path, window.location.origin);
  if (params) for (const [key, value] of params) url.searchParams.append(key, value);
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (!["GET", "HEAD", "OPTIONS"].includes(method)) headers["X-CSRF-Token"] = CSRF;
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiFailure(0, "network", "The server could not be reached. Check the connection and try again.");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401) $("session-banner").hidden = false;
    const error = data && data.error;
    throw new ApiFailure(response.status, error?.code || `http_${response.status}`,
                         error?.message || `The server answered ${response.status} ${response.statusText}`.trim());
  }
  return data;
}

// == 1. Settings editor =====================================================================================

class ChannelCard {
  constructor(settings, onSaved) {
    this.channel = settings.channel;
    this.hardMax = HARD_MAX_BYTES[this.channel] || null;
    this.onSaved = onSaved;
    this.saving = false;
    this.build();
    this.load(settings);
  }

  id(name) {
    return `${this.channel}-${name}`;
  }

  build() {
    const name = channelName(this.channel);
    const titleId = this.id("title");
    const hardMaxText = this.hardMax ? `Up to ${formatMb(this.hardMax)} MB, Twilio's limit for ${name}.` : "";

    this.sending = el("input", { type: "checkbox", role: "switch", id: this.id("sending-enabled"),
                                 name: "sending_enabled" });
    this.maxMb = el("input", { type: "number", id: this.id("max-mb"), name: "max_mb", inputmode: "decimal",
                               min: "0.001", step: "any", max: this.hardMax ? formatMb(this.hardMax) : undefined,
                               "aria-describedby": this.id("max-mb-hint"), required: true });
    this.minutes = el("input", { type: "number", id: this.id("max-minutes"), name: "max_minutes",
                                 inputmode: "numeric", min: "0", max: String(HARD_MAX_DURATION_S / 60), step: "1",
                                 "aria-label": "Max duration: minutes" });
    this.seconds = el("input", { type: "number", id: this.id("max-seconds"), name: "max_seconds",
                                 inputmode: "numeric", min: "0", max: "59", step: "1",
                                 "aria-label": "Max duration: seconds" });
    this.bitrate = el("select", { id: this.id("bitrate"), name: "bitrate_kbps" },
                      BITRATES.map((kbps) => el("option", { value: String(kbps), text: `${kbps} kbps` })));
    this.normalize = el("input", { type: "checkbox", id: this.id("normalize-inbound"), name: "normalize_inbound" });
    this.loudness = el("input", { type: "checkbox", id: this.id("loudness"), name: "loudness_normalize" });
    this.badge = el("span", { class: "badge" });
    this.meta = el("p", { class: "muted small card-meta" });
    this.dirtyNote = el("span", { class: "dirty-note small", text: "Unsaved changes", hidden: true });
    this.feedback = el("p", { class: "feedback", role: "status", "aria-live": "polite", "data-feedback": true });
    this.saveButton = el("button", { type: "submit", class: "button button--primary",
                                     "aria-label": `Save ${name} settings`, text: "Save" });

    this.form = el("form", { novalidate: true, "aria-labelledby": titleId },
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
      el("div", { class: "field field--check" },
        this.normalize,
        el("label", { for: this.normalize.id, text: SETTING_NAMES.normalize_inbound })),
      el("div", { class: "field field--check" },
        this.loudness,
        el("label", { for: this.loudness.id, text: SETTING_NAMES.loudness_normalize })),
      el("div", { class: "card-actions" }, this.saveButton, this.dirtyNote),
      this.feedback);

    this.node = el("section", { class: "card channel-card", "data-channel": this.channel,
                                "aria-labelledby": titleId },
      el("div", { class: "card-head" }, el("h3", { id: titleId, text: name }), this.badge),
      this.form,
      this.meta);

    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    this.form.addEventListener("input", () => this.refreshDirty());
    this.form.addEventListener("change", () => this.refreshDirty());
  }

  /** Show the server's state and make it the baseline "unchanged" is measured against. */
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

    this.node.dataset.sendingEnabled = String(settings.sending_enabled);
    this.badge.textContent = settings.sending_enabled ? "Sending on" : "Sending off";
    this.badge.className = `badge ${settings.sending_enabled ? "badge--on" : "badge--off"}`;
    this.meta.replaceChildren(settings.updated_at
      ? el("span", {}, "Last changed ", timeEl(settings.updated_at), ` by ${settings.updated_by || "unknown"}`)
      : "Never changed: the defaults apply");
    for (const input of [this.maxMb, this.minutes, this.seconds]) input.removeAttribute("aria-invalid");
    this.refreshDirty();
  }

  /** The form as settings values, or throws an Error whose message says what to fix. */
  values() {
    const values = {
      sending_enabled: this.sending.checked,
      bitrate_kbps: Number(this.bitrate.value),
      normalize_inbound: this.normalize.checked,
      loudness_normalize: this.loudness.checked,
    };
    const name = channelName(this.channel);
    if (this.maxMb.value.trim() === this.shownMb) {
      values.max_bytes = this.settings.max_bytes; // untouched: keep the exact bytes, not the rounded MB
    } else {
      const mb = Number(this.maxMb.value);
      if (this.maxMb.value.trim() === "" || !Number.isFinite(mb) || mb <= 0) {
        throw this.invalid(this.maxMb, "Enter the max size in MB, greater than 0.");
      }
      const bytes = Math.round(mb * MB);
      if (this.hardMax && bytes > this.hardMax) {
        throw this.invalid(this.maxMb, `${name} accepts at most ${formatMb(this.hardMax)} MB per file.`);
      }
      values.max_bytes = Math.max(1, bytes);
    }
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
    values.max_duration_s = total;
    return values;
  }

  invalid(input, message) {
    input.setAttribute("aria-invalid", "true");
    const error = new Error(message);
    error.input = input;
    return error;
  }

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
      this.say(error.message, "error");
      error.input?.focus();
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
      this.say(error.message, "error");
    } finally {
      this.saving = false;
      this.saveButton.disabled = false;
      this.saveButton.removeAttribute("aria-busy");
    }
  }
}

const changesView = {
  channelSelect: $("changes-channel"),
  rows: $("changes-rows"),
  empty: $("changes-empty"),

  async load() {
    const params = new URLSearchParams({ limit: "20" });
    if (this.channelSelect.value) params.set("channel", this.channelSelect.value);
    let body;
    try {
      body = await api("/settings-changes", { params });
    } catch (error) {
      this.rows.replaceChildren(el("tr", {}, el("td", { colspan: "6", class: "error-text", text: error.message })));
      this.empty.hidden = true;
      return;
    }
    this.rows.replaceChildren(...body.changes.map((change) => el("tr", { "data-change-id": change.id },
      el("td", {}, timeEl(change.changed_at)),
      el("td", { text: channelName(change.channel) }),
      el("td", { text: SETTING_NAMES[change.key] || change.key }),
      el("td", { text: formatSettingValue(change.key, change.old_value) }),
      el("td", { text: formatSettingValue(change.key, change.new_value) }),
      el("td", { text: change.changed_by || "—" }))));
    this.empty.hidden = body.changes.length > 0;
  },
};

async function initSettings() {
  const status = $("settings-loading");
  const container = $("settings-cards");
  let body;
  try {
    body = await api("/settings");
  } catch (error) {
    status.textContent = `Could not load the channel settings: ${error.message}`;
    status.classList.add("error-text");
    return;
  }
  const byChannel = new Map(body.settings.map((settings) => [settings.channel, settings]));
  const order = [...CHANNELS, ...[...byChannel.keys()].filter((c) => !CHANNELS.includes(c))];
  const cards = order.filter((c) => byChannel.has(c))
    .map((c) => new ChannelCard(byChannel.get(c), () => changesView.load()));
  container.replaceChildren(...cards.map((card) => card.node));
  status.textContent = "";
  status.hidden = true;
  changesView.channelSelect.addEventListener("change", () => changesView.load());
  await changesView.load();
}

// == 2. Audit browser =======================================================================================

const audit = {
  form: $("audit-filters"),
  customRange: $("custom-range"),
  filterError: $("filter-error"),
  rows: $("audit-rows"),
  summary: $("audit-summary"),
  pageLabel: $("audit-page"),
  prev: $("audit-prev"),
  next: $("audit-next"),
  csv: $("audit-csv"),
  detail: $("audit-detail"),
  detailTitle: $("audit-detail-title"),
  detailBody: $("audit-detail-body"),
  page: 1,
  perPage: PER_PAGE_DEFAULT,
  total: 0,
  sequence: 0,
  selectedId: null,
  FORM_KEYS: ["direction", "channel", "status", "conversation_sid", "range", "from", "to"],

  init() {
    this.readLocation();
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.apply();
    });
    this.form.addEventListener("change", (event) => {
      if (event.target.name === "range") this.syncCustomRange();
      if (event.target.name === "range" && event.target.value === "custom") return; // wait for the dates
      if (event.target.name === "conversation_sid") return; // text: applied with Enter or the button
      this.apply();
    });
    this.form.addEventListener("reset", () => {
      // After the browser has reset the fields.
      setTimeout(() => {
        this.syncCustomRange();
        this.apply();
      });
    });
    this.prev.addEventListener("click", () => this.goTo(this.page - 1));
    this.next.addEventListener("click", () => this.goTo(this.page + 1));
    $("audit-refresh").addEventListener("click", () => this.load());
    $("audit-detail-close").addEventListener("click", () => this.closeDetail());
    this.rows.addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-audit-id]");
      if (row && !event.target.closest("a")) this.openDetail(Number(row.dataset.auditId));
    });
    window.addEventListener("popstate", () => {
      this.readLocation();
      this.load({ pushState: false });
    });
    this.load({ pushState: false });
  },

  /** The filter fields, page and page size live in the address, so a filtered view can be bookmarked. */
  readLocation() {
    const params = new URLSearchParams(window.location.search);
    for (const key of this.FORM_KEYS) {
      const field = this.form.elements[key];
      if (field) field.value = params.get(key) || "";
    }
    this.page = Math.max(1, parseInt(params.get("page"), 10) || 1);
    this.perPage = Math.min(500, Math.max(1, parseInt(params.get("per_page"), 10) || PER_PAGE_DEFAULT));
    this.syncCustomRange();
  },

  writeLocation(push) {
    const params = new URLSearchParams();
    for (const key of this.FORM_KEYS) {
      const value = this.form.elements[key]?.value.trim();
      if (value && (key !== "from" && key !== "to" || this.form.elements.range.value === "custom")) {
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
  },

  syncCustomRange() {
    this.customRange.hidden = this.form.elements.range.value !== "custom";
  },

  /** The API's filter parameters from the form (no page): the table and the CSV link share them. */
  filterParams() {
    const f = this.form.elements;
    const params = new URLSearchParams();
    for (const key of ["direction", "channel", "status"]) if (f[key].value) params.set(key, f[key].value);
    const sid = f.conversation_sid.value.trim();
    if (sid) params.set("conversation_sid", sid);
    const range = f.range.value;
    if (range === "today") {
      const midnight = new Date();
      midnight.setHours(0, 0, 0, 0);
      params.set("since", midnight.toISOString());
    } else if (range === "custom") {
      for (const [field, key] of [["from", "since"], ["to", "until"]]) {
        if (!f[field].value) continue;
        const when = new Date(f[field].value); // datetime-local: the admin's local time
        if (Number.isNaN(when.getTime())) throw new Error(`The ${field} date is not valid.`);
        params.set(key, when.toISOString());
      }
      if (params.has("since") && params.has("until") && params.get("since") >= params.get("until")) {
        throw new Error("The start of the range must be before its end.");
      }
    } else if (range) {
      params.set("since", range); // relative: 1h, 24h, 7d, 30d (counted back from each request)
    }
    return params;
  },

  apply() {
    this.page = 1;
    this.load({ pushState: true });
  },

  goTo(page) {
    this.page = Math.max(1, page);
    this.load({ pushState: true });
  },

  async load({ pushState = false } = {}) {
    let filters;
    try {
      filters = this.filterParams();
      this.filterError.textContent = "";
    } catch (error) {
      this.filterError.textContent = error.message;
      return;
    }
    this.writeLocation(pushState);
    this.updateCsvLink(filters);
    const params = new URLSearchParams(filters);
    params.set("page", String(this.page));
    params.set("per_page", String(this.perPage));
    const sequence = ++this.sequence;
    this.rows.closest("table").setAttribute("aria-busy", "true");
    this.summary.textContent = "Loading…";
    let body;
    try {
      body = await api("/audit", { params });
    } catch (error) {
      if (sequence !== this.sequence) return;
      this.rows.closest("table").removeAttribute("aria-busy");
      this.summary.textContent = `Could not load the audit trail: ${error.message}`;
      this.summary.classList.add("error-text");
      this.rows.replaceChildren();
      return;
    }
    if (sequence !== this.sequence) return; // a newer filter has been applied meanwhile
    this.rows.closest("table").removeAttribute("aria-busy");
    this.summary.classList.remove("error-text");
    this.total = body.total;
    const pages = Math.max(1, Math.ceil(body.total / body.per_page));
    if (body.audio_messages.length === 0 && this.page > pages) {
      this.goTo(pages); // the filter shrank past this page
      return;
    }
    this.render(body, pages);
  },

  updateCsvLink(filters) {
    const params = new URLSearchParams(filters);
    params.set("format", "csv");
    this.csv.href = `${API}/audit?${params}`;
  },

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
  },

  rowNode(row) {
    const note = row.status === "failed"
      ? el("span", { class: "error-text", text: row.error || "failed", title: row.error || "" })
      : (row.author || "—");
    const size = row.mp3_size_bytes && row.mp3_size_bytes !== row.size_bytes
      ? `${formatBytes(row.size_bytes)} → ${formatBytes(row.mp3_size_bytes)}`
      : formatBytes(row.size_bytes ?? row.mp3_size_bytes);
    return el("tr", {
      "data-audit-id": row.audit_id, "data-status": row.status, "data-channel": row.channel,
      "data-direction": row.direction, "aria-current": row.audit_id === this.selectedId ? "true" : undefined,
      class: row.audit_id === this.selectedId ? "selected" : undefined,
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
  },

  async openDetail(auditId) {
    this.selectedId = auditId;
    for (const tr of this.rows.querySelectorAll("tr[data-audit-id]")) {
      const selected = Number(tr.dataset.auditId) === auditId;
      tr.classList.toggle("selected", selected);
      if (selected) tr.setAttribute("aria-current", "true");
      else tr.removeAttribute("aria-current");
    }
    this.detail.hidden = false;
    this.detail.dataset.auditId = String(auditId);
    this.detailTitle.textContent = `Audio message #${auditId}`;
    this.detailBody.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
    this.detail.scrollIntoView({ block: "nearest" });
    this.detailTitle.focus({ preventScroll: true });
    let row;
    try {
      row = await api(`/audit/${auditId}`); // fresh: the status may have moved on, and a new playback link
    } catch (error) {
      if (this.selectedId === auditId) {
        this.detailBody.replaceChildren(el("p", { class: "error-text", role: "alert", text: error.message }));
      }
      return;
    }
    if (this.selectedId !== auditId) return;
    this.renderDetail(row);
  },

  renderDetail(row) {
    const blank = (value) => value === null || value === undefined || value === "";
    const item = (label, value) => [el("dt", { text: label }), el("dd", {}, blank(value) ? "—" : value)];
    const bytes = (value) => (blank(value) ? null : `${formatBytes(value)} (${value.toLocaleString("en-US")} bytes)`);
    const ms = (value) => (value === null || value === undefined ? null : `${value} ms`);
    const code = (value) => (value ? el("code", { text: value }) : null);
    const player = row.playback_url
      ? el("div", { class: "player" },
          el("audio", { controls: true, preload: "metadata", src: row.playback_url,
                        "aria-label": `Play audio message ${row.audit_id}` }),
          el("a", { href: row.playback_url, target: "_blank", rel: "noopener", text: "Open the MP3" }))
      : el("p", { class: "muted", text: row.status === "failed" ? "No audio: this message failed."
                                                                  : `No audio yet: the message is ${row.status}.` });
    const error = row.status === "failed"
      ? el("div", { class: "banner banner--error detail-error", role: "note" },
          el("strong", { text: row.error_code ? `${row.error_code}: ` : "Failed: " }),
          row.error || "unknown error")
      : null;
    this.detailBody.replaceChildren(...[
      error,
      player,
      el("div", { class: "detail-grid" },
        el("div", {},
          el("h4", { text: "Message" }),
          el("dl", {},
            item("Status", el("span", { class: `status status--${row.status}`, text: row.status })),
            item("Direction", row.direction),
            item("Channel", channelName(row.channel)),
            item("Author", row.author),
            item("Source", row.source),
            item("Conversation", code(row.conversation_sid)),
            item("Message", code(row.message_sid)),
            item("Media", code(row.media_sid)))),
        el("div", {},
          el("h4", { text: "Audio" }),
          el("dl", {},
            item("File name", row.filename),
            item("Content type", row.content_type),
            item("Original size", bytes(row.size_bytes)),
            item("MP3 size", bytes(row.mp3_size_bytes)),
            item("Duration", blank(row.duration_s) ? null : `${row.duration_s} s (${formatDuration(row.duration_s)})`),
            item("Truncated", row.truncated ? "yes, cut at the duration cap" : "no"),
            item("SHA-256", code(row.sha256)))),
        el("div", {},
          el("h4", { text: "Timings" }),
          el("dl", {},
            item("Created", timeEl(row.created_at)),
            item("Started", timeEl(row.started_at)),
            item("Finished", timeEl(row.finished_at)),
            item("Updated", timeEl(row.updated_at)),
            item("Processing", ms(row.processing_ms)),
            item("Transcode", ms(row.transcode_ms)),
            item("Attempts", blank(row.attempts) ? null : String(row.attempts)))))].filter(Boolean));
  },

  closeDetail() {
    const id = this.selectedId;
    this.selectedId = null;
    this.detail.hidden = true;
    this.detailBody.querySelector("audio")?.pause();
    this.detailBody.replaceChildren();
    for (const tr of this.rows.querySelectorAll("tr.selected")) {
      tr.classList.remove("selected");
      tr.removeAttribute("aria-current");
    }
    this.rows.querySelector(`tr[data-audit-id="${id}"] button`)?.focus();
  },
};

// The custom range is typed in the browser's time: say which.
for (const label of document.querySelectorAll("[data-local-zone]")) label.textContent = `(${zoneName(new Date())})`;
initSettings();
audit.init();
