// @ts-check
/** The settings section of the admin page: a card per channel and the table of recent changes. */
import { byId, el } from "../shared/dom.js";
import { errorParts } from "../shared/errors.js";
import { api } from "./api.js";
import { ChannelCard } from "./channel-card.js";
import { CHANNELS, channelName, formatSettingValue, SETTING_NAMES, timeEl } from "./config.js";

/**
 * One change of one setting (GET /settings-changes).
 * @typedef {{id: number, changed_at: string, channel: string, key: string, old_value: unknown,
 *   new_value: unknown, changed_by?: string | null}} SettingsChange
 */

const changesView = {
  channelSelect: byId("changes-channel", HTMLSelectElement),
  rows: byId("changes-rows", HTMLTableSectionElement),
  empty: byId("changes-empty", HTMLElement),

  async load() {
    const params = new URLSearchParams({ limit: "20" });
    if (this.channelSelect.value) params.set("channel", this.channelSelect.value);
    /** @type {{changes: SettingsChange[]}} */
    let body;
    try {
      body = await api("/settings-changes", { params });
    } catch (error) {
      const message = errorParts(error).message;
      this.rows.replaceChildren(el("tr", {}, el("td", { colspan: "6", class: "error-text", text: message })));
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

/** Load the channels' settings into their cards (in the service's channel order), then the recent changes. */
export async function initSettings() {
  const status = byId("settings-loading", HTMLElement);
  const container = byId("settings-cards", HTMLElement);
  /** @type {{settings: import("./channel-card.js").ChannelSettings[],
   *   transcription?: import("./channel-card.js").Transcription}} */
  let body;
  try {
    body = await api("/settings");
  } catch (error) {
    status.textContent = `Could not load the channel settings: ${errorParts(error).message}`;
    status.classList.add("error-text");
    return;
  }
  const byChannel = new Map(body.settings.map((settings) => [settings.channel, settings]));
  const order = [...CHANNELS, ...[...byChannel.keys()].filter((c) => !CHANNELS.includes(c))];
  const cards = order.flatMap((c) => {
    const settings = byChannel.get(c);
    return settings ? [new ChannelCard(settings, () => changesView.load(), body.transcription)] : [];
  });
  container.replaceChildren(...cards.map((card) => card.node));
  status.textContent = "";
  status.hidden = true;
  changesView.channelSelect.addEventListener("change", () => changesView.load());
  await changesView.load();
}
