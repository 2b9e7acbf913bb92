// @ts-check
/** The panel while it records: Stop, the elapsed time against the limit, the input level, Cancel. */
import { el } from "../shared/dom.js";
import { formatDuration } from "../shared/format.js";
import { panelButton } from "./ui.js";

/**
 * The recording row and a way to show the take's time and input level on it.
 * @param {{limit: number, onStop: () => void, onCancel: () => void}} how `limit`: the longest take, in seconds
 * @returns {{row: HTMLDivElement, show: (elapsed: number, level: number) => void}}
 */
export function recordingView({ limit, onStop, onCancel }) {
  const timerText = el("span", { class: "rp-timer", role: "timer", "aria-label": "Elapsed recording time", text: "0:00" });
  const meterFill = el("span", { class: "rp-meter-fill" });
  const meter = el("span", {
    class: "rp-meter", role: "meter", "aria-label": "Microphone input level",
    "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0",
  }, meterFill);
  const row = el("div", { class: "rp-row" },
    panelButton("Stop", "Stop recording", onStop, { primary: true, kind: "stop" }),
    el("span", { class: "rp-live", "aria-hidden": "true" }),
    timerText,
    el("span", { class: "rp-limit", text: `/ ${formatDuration(limit)}` }),
    meter,
    panelButton("Cancel", "Cancel and discard the recording", onCancel));
  /**
   * @param {number} elapsed seconds
   * @param {number} level 0..1
   */
  const show = (elapsed, level) => {
    timerText.textContent = formatDuration(elapsed);
    meterFill.style.transform = `scaleX(${level.toFixed(3)})`;
    meter.setAttribute("aria-valuenow", String(Math.round(level * 100)));
  };
  return { row, show };
}
