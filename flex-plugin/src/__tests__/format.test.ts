/**
 * The console's format module (webhook_app/static/shared/format.js), which the plugin, the agent console and the
 * admin page all use; its sizes against the table humanize.format_bytes is tested against too
 * (tests/test_humanize.py), so the pages and the service's messages say a size the same way.
 */
import { readFileSync } from "fs";
import { join } from "path";

import { formatBytes, formatDuration } from "@shared/format.js";

const TABLE = join(__dirname, "../../../tests/fixtures/format_cases.json");
const cases: Array<[number, string]> = JSON.parse(readFileSync(TABLE, "utf8")).bytes;

test("the shared table has cases on each side of every boundary", () => {
  expect(cases.length).toBeGreaterThan(10);
  expect(cases.map(([, text]) => text.split(" ")[1])).toEqual(expect.arrayContaining(["bytes", "KB", "MB"]));
});

test.each(cases)("%d bytes read as %s, as in the service's messages", (bytes, text) => {
  expect(formatBytes(bytes)).toBe(text);
});

test("a size not known reads as a dash", () => {
  expect(formatBytes(null)).toBe("—");
  expect(formatBytes(undefined)).toBe("—");
});

test("durations are m:ss to the nearest second, h:mm:ss from an hour", () => {
  expect(formatDuration(3.9)).toBe("0:04");
  expect(formatDuration(4.49)).toBe("0:04");
  expect(formatDuration(59.5)).toBe("1:00");
  expect(formatDuration(900)).toBe("15:00");
  expect(formatDuration(3725)).toBe("1:02:05");
  for (const unknown of [null, undefined, NaN, Infinity, -1]) expect(formatDuration(unknown)).toBe("–:––");
});
