// @ts-check
/** What the record panel and the audio list both show: their stylesheet, icons and buttons. */
import { el } from "../shared/dom.js";

/** Load record-panel.css beside the module, once per page. */
export function ensureStylesheet() {
  // Flex plugins only import the module; loading the CSS next to it spares them a second step.
  const href = new URL("../record-panel.css", import.meta.url).href;
  if (document.querySelector(`link[data-record-panel-css]`)) return;
  document.head.append(el("link", { rel: "stylesheet", href, "data-record-panel-css": true }));
}

export function micIcon() {
  const icon = el("span", { class: "rp-mic", "aria-hidden": "true" });
  // Static markup, no data in it: innerHTML is the short way to an SVG.
  icon.innerHTML = '<svg viewBox="0 0 24 24" width="16" height="16" fill="none" stroke="currentColor" stroke-width="2"'
    + ' stroke-linecap="round"><rect x="9" y="3" width="6" height="11" rx="3"/><path d="M5 11a7 7 0 0 0 14 0M12 18v3"/></svg>';
  return icon;
}

/**
 * A panel button. `kind` adds its icon (record, stop, send, play…); `focus`: the control that takes the focus
 * when its state appears (the primary one unless told).
 * @param {string} label
 * @param {string} ariaLabel
 * @param {() => void} onclick
 * @param {{primary?: boolean, kind?: string, focus?: boolean}} [how]
 */
export function panelButton(label, ariaLabel, onclick, { primary = false, kind = "", focus = primary } = {}) {
  return el("button", {
    type: "button", class: `rp-button${kind ? ` rp-button--${kind}` : ""}${primary ? " rp-button--primary" : ""}`,
    "aria-label": ariaLabel, onclick, "data-focus": focus,
  }, kind ? el("span", { class: `rp-icon rp-icon--${kind}`, "aria-hidden": "true" }) : null, label);
}
