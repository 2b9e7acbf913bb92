// The agent console's module (webhook_app/static/shared/webm.js): the console and the plugin both cut with it.
import { cutWebm, readWebm, webmRecordedSeconds } from "@shared/webm.js";
import { recording } from "../testing/webm";

const buffer = (bytes: Uint8Array) => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;

test("reads how much audio a WebM recording holds, as Firefox writes it (unknown sizes)", () => {
  expect(webmRecordedSeconds(buffer(recording(3)))).toBeCloseTo(3, 6);
  expect(webmRecordedSeconds(buffer(recording(2.5)))).toBeCloseTo(2.5, 6);
  expect(webmRecordedSeconds(buffer(new Uint8Array(100)))).toBe(0);
  // a chunk still on its way: what has arrived counts
  const whole = recording(3);
  expect(webmRecordedSeconds(buffer(whole.slice(0, whole.length - 500)))).toBeLessThan(3);
});

test("a take recorded on after Stop is cut back to its length in whole blocks", () => {
  const cut = cutWebm(buffer(recording(3.4)), 2.5);
  expect(cut).not.toBeNull();
  const parsed = readWebm(new DataView(buffer(cut as Uint8Array)));
  expect(parsed?.blocks).toHaveLength(125); // 2.5 s of 20 ms blocks
  expect(parsed?.blocks[124].time).toBeCloseTo(2.48, 6);
  expect(webmRecordedSeconds(buffer(cut as Uint8Array))).toBeCloseTo(2.5, 6);
  // the bytes before the cut are the recording's own
  expect(Array.from((cut as Uint8Array).slice(0, 200))).toEqual(Array.from(recording(3.4).slice(0, 200)));
});

test("a cut on a cluster's first block drops the cluster whole", () => {
  const cut = cutWebm(buffer(recording(3.4)), 2) as Uint8Array;
  const parsed = readWebm(new DataView(buffer(cut)));
  expect(parsed?.blocks).toHaveLength(100);
  // no empty cluster left behind: the file ends with the last block of the second cluster
  expect(cut.length).toBe(recording(2).length);
});

test("known sizes are rewritten to the cut", () => {
  const cut = cutWebm(buffer(recording(3, "known")), 1.5) as Uint8Array;
  const view = new DataView(buffer(cut));
  const parsed = readWebm(view);
  expect(parsed?.blocks).toHaveLength(75);
  expect(parsed?.segment.unknown).toBe(false);
  expect(parsed?.segment.end).toBe(cut.length); // the Segment's size says where the file ends
  expect(webmRecordedSeconds(buffer(cut))).toBeCloseTo(1.5, 6);
});

test("nothing to cut, or not WebM: null", () => {
  expect(cutWebm(buffer(recording(2)), 2.5)).toBeNull();
  expect(cutWebm(buffer(new Uint8Array([0x4f, 0x67, 0x67, 0x53, 0, 2, 0, 0])), 1)).toBeNull(); // Ogg
});
