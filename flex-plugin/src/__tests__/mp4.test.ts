// The agent console's module (webhook_app/static/shared/mp4.js): the console and the plugin both repair with it.
import { mp4RecordedSeconds, readFragments, repairedMp4 } from "@shared/mp4.js";
import { readBytes, repairedRecording } from "@shared/recorder.js";

import {
  bytesOf, defaultFrameSize, FRAME, fragment, headerDurations, initSegment, MOVIE_TIMESCALE, recording, TIMESCALE,
  topLevel,
} from "../testing/mp4";

const MP4 = "audio/mp4; codecs=mp4a";
const FRAME_S = FRAME / TIMESCALE;

function blobOf(parts: Uint8Array<ArrayBuffer>[]): Blob {
  return new Blob(parts, { type: MP4 });
}

async function secondsIn(blob: Blob): Promise<number> {
  return mp4RecordedSeconds(await readBytes(blob));
}

/** Every fragment's frame numbers, from the bytes of its mdat (each frame is filled with its number), and checks
 * that its trun agrees with its mdat: the data offset points at the mdat's data and the sizes add up to it. */
function framesIn(bytes: Uint8Array): number[][] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const parsed = readFragments(view);
  if (!parsed) throw new Error("does not parse");
  return parsed.fragments.map(({ moof, mdat, dataOffsetAt, samples }) => {
    expect(dataOffsetAt).not.toBeNull();
    expect(moof.start + view.getInt32(dataOffsetAt as number)).toBe(mdat.body);
    expect(samples!.reduce((sum, s) => sum + s.size, 0)).toBe(mdat.end - mdat.body);
    let at = mdat.body;
    return samples!.map(({ size }) => {
      const number = bytes[at];
      expect(Array.from(bytes.slice(at, at + size)).every((b) => b === number)).toBe(true);
      at += size;
      return number;
    });
  });
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

test("reads how much audio a fragmented recording holds", async () => {
  // three one-second fragments of 43 AAC frames: 3 × 43 × 1024 / 44100 s
  expect(await secondsIn(blobOf(recording(3)))).toBeCloseTo((3 * 43 * FRAME) / TIMESCALE, 6);
  expect(await secondsIn(blobOf(initSegment()))).toBe(0); // the header alone: nothing yet
  expect(await secondsIn(new Blob([new Uint8Array(100)]))).toBe(0); // not MP4
});

test("WebKit's duplicated fragment header is dropped and the audio kept whole", async () => {
  const [ftyp, moov] = initSegment();
  const [moof1, mdat1] = fragment({ first: 0, frames: 43 });
  const [moof2, mdat2] = fragment({ first: 43, frames: 20 });
  // What WebKitGTK hands over when it flushes the fragment in progress: its moof, then the moof again and the mdat.
  const recorded = blobOf([ftyp, moov, moof1, mdat1, moof2, moof2, mdat2]);
  const repaired = await repairedRecording(recorded);
  const bytes = await bytesOf(repaired);
  expect(topLevel(bytes).map((b) => b.type)).toEqual(["ftyp", "moov", "moof", "mdat", "moof", "mdat"]);
  expect(repaired.size).toBe(recorded.size - moof2.length);
  expect(repaired.type).toBe(MP4);
  expect(framesIn(bytes)).toEqual([range(0, 43), range(43, 63)]);
  expect(mp4RecordedSeconds(bytes.buffer as ArrayBuffer)).toBeCloseTo(63 * FRAME_S, 6);
});

test("a take stopped mid-fragment is cut back to its length in whole AAC frames", async () => {
  const recorded = blobOf(recording(4)); // 4 s recorded: the take (2.5 s) and what came after Stop
  const cut = await repairedRecording(recorded, 2.5);
  const bytes = await bytesOf(cut);
  const seconds = mp4RecordedSeconds(bytes.buffer as ArrayBuffer);
  expect(seconds).toBeGreaterThanOrEqual(2.5);
  expect(seconds).toBeLessThan(2.5 + FRAME_S); // the frame the take ended in, no more
  // The fragment after the cut is gone; the cut one keeps the frames starting before 2.5 s.
  const keep = Math.ceil((2.5 * TIMESCALE) / FRAME); // frames 0..keep-1
  expect(framesIn(bytes)).toEqual([range(0, 43), range(43, 86), range(86, keep)]);
  expect(topLevel(bytes).map((b) => b.type)).toEqual(["ftyp", "moov", "moof", "mdat", "moof", "mdat", "moof", "mdat"]);
  // The cut fragment's header lost exactly its dropped entries (8 bytes each), its mdat their bytes.
  const [, , , , , , moof3, mdat3] = topLevel(bytes);
  const [originalMoof, originalMdat] = fragment({ first: 86, frames: 43 });
  expect(moof3.size).toBe(originalMoof.length - (129 - keep) * 8);
  expect(mdat3.size).toBe(8 + range(86, keep).reduce((sum, n) => sum + defaultFrameSize(n), 0));
  expect(mdat3.size).toBeLessThan(originalMdat.length);
  expect(cut.type).toBe(MP4);
});

test("cutting on a fragment's boundary drops the fragments after it whole", async () => {
  const bytes = await bytesOf(await repairedRecording(blobOf(recording(5)), (86 * FRAME) / TIMESCALE));
  expect(framesIn(bytes)).toEqual([range(0, 43), range(43, 86)]);
});

test("the cut and the repair work together, as at the end of a WebKit take", async () => {
  const [ftyp, moov] = initSegment();
  const fragments = [0, 1, 2].map((i) => fragment({ first: i * 43, frames: 43 }));
  const [moof3, mdat3] = fragments[2];
  const recorded = blobOf([ftyp, moov, ...fragments[0], ...fragments[1], moof3, moof3, mdat3]);
  const bytes = await bytesOf(await repairedRecording(recorded, 2.2));
  const keep = Math.ceil((2.2 * TIMESCALE) / FRAME);
  expect(framesIn(bytes)).toEqual([range(0, 43), range(43, 86), range(86, keep)]);
  expect(topLevel(bytes).filter((b) => b.type === "moof")).toHaveLength(3);
});

test("other writers' trun layouts (first-sample flags, per-sample flags, 64-bit tfdt) are cut as well", async () => {
  const bytes = await bytesOf(await repairedRecording(blobOf(recording(3, 43, { otherLayout: true })), 1.5));
  const keep = Math.ceil((1.5 * TIMESCALE) / FRAME);
  expect(framesIn(bytes)).toEqual([range(0, 43), range(43, keep)]);
  const seconds = mp4RecordedSeconds(bytes.buffer as ArrayBuffer);
  expect(seconds).toBeGreaterThanOrEqual(1.5);
  expect(seconds).toBeLessThan(1.5 + FRAME_S);
});

test("the header says how long the recording is (WebKit writes 0, and then plays only what it read first)", async () => {
  const recorded = blobOf(recording(3));
  expect(headerDurations(await bytesOf(recorded))).toEqual([0, 0, 0, 0]);
  const repaired = await repairedRecording(recorded);
  expect(repaired.size).toBe(recorded.size); // fields written in place
  const seconds = (3 * 43 * FRAME) / TIMESCALE;
  headerDurations(await bytesOf(repaired)).forEach((duration) => expect(duration).toBeCloseTo(seconds, 2));
  const cut = await bytesOf(await repairedRecording(recorded, 2.5));
  const kept = mp4RecordedSeconds(cut.buffer as ArrayBuffer);
  const [mvhd, tkhd, mdhd, mehd] = headerDurations(cut);
  expect(mdhd).toBeCloseTo(kept, 6); // in the track's own timescale: exact
  for (const movie of [mvhd, tkhd, mehd]) expect(Math.abs(movie - kept)).toBeLessThanOrEqual(0.5 / MOVIE_TIMESCALE);
});

test("a recording that needs nothing is returned as it was", async () => {
  const whole = blobOf(recording(3, 43, { withDuration: true }));
  expect(await repairedRecording(whole)).toBe(whole);
  expect(await repairedRecording(whole, 3.5)).toBe(whole); // shorter than the take: nothing to cut
  expect(repairedMp4(await readBytes(whole), 3.5)).toBeNull();
});

test("a last fragment cut short (the recorder stopped mid-write) is dropped, the rest kept", async () => {
  const [ftyp, moov] = initSegment();
  const [moof1, mdat1] = fragment({ first: 0, frames: 43 });
  const [moof2, mdat2] = fragment({ first: 43, frames: 43 });
  const bytes = await bytesOf(await repairedRecording(blobOf([ftyp, moov, moof1, mdat1, moof2, mdat2.slice(0, 500)]), 5));
  expect(framesIn(bytes)).toEqual([range(0, 43)]);
  expect(topLevel(bytes).map((b) => b.type)).toEqual(["ftyp", "moov", "moof", "mdat"]);
  const headerOnly = await bytesOf(await repairedRecording(blobOf([ftyp, moov, moof1, mdat1, moof2.slice(0, 6)])));
  expect(framesIn(headerOnly)).toEqual([range(0, 43)]);
});

test("bytes that do not parse as MP4 are returned as they were", async () => {
  const [ftyp, moov] = initSegment();
  const broken = new Uint8Array(16); // a box whose size is smaller than its own header
  new DataView(broken.buffer).setUint32(0, 4);
  const truncated = new Blob([ftyp, moov, broken], { type: MP4 });
  expect(await repairedRecording(truncated, 1)).toBe(truncated);
  const noHeader = blobOf(fragment({ first: 0, frames: 43 })); // no moov: no timescale to cut by
  expect(await repairedRecording(noHeader, 0.5)).toBe(noHeader);
  const webm = new Blob([new Uint8Array([0x1a, 0x45, 0xdf, 0xa3, 0, 0, 0, 0])]);
  expect(repairedMp4(await readBytes(webm), 1)).toBeNull();
});
