// @ts-check
/** The panel while a voice note uploads: its progress, then "Converting and sending…", and Cancel until then. */
import { el } from "../shared/dom.js";
import { panelButton } from "./ui.js";

/**
 * The sending row and a way to show how far the upload is.
 * @param {() => void} onCancel
 * @returns {{row: HTMLDivElement, showProgress: (fraction: number) => void}}
 */
export function sendingView(onCancel) {
  const progress = el("progress", { class: "rp-progress", max: "100", value: "0", "aria-label": "Upload progress" });
  const progressText = el("span", { class: "rp-progress-text", text: "Uploading… 0%" });
  const cancel = panelButton("Cancel", "Cancel sending", onCancel, { primary: true });
  const showProgress = (/** @type {number} */ fraction) => {
    const percent = Math.round(fraction * 100);
    progress.value = percent;
    // The bytes are up; the service still converts and posts them before it answers.
    progressText.textContent = percent < 100 ? `Uploading… ${percent}%` : "Converting and sending…";
    if (percent >= 100) {
      // The service has the whole clip and posts it whatever the browser does now: a Cancel here would
      // say "cancelled" about a message the customer still gets.
      cancel.disabled = true;
      cancel.title = "The voice note is with the service; it can no longer be cancelled.";
    }
  };
  return { row: el("div", { class: "rp-row" }, progress, progressText, cancel), showProgress };
}
