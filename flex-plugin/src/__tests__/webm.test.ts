import { cutWebm, readWebm, webmRecordedSeconds } from "../webm";

/** An EBML element: its ID's bytes, a size (8-byte "unknown" when null), the payload. */
function element(id: number[], payload: Uint8Array[], size: "known" | "unknown" = "known"): Uint8Array {
  const length = payload.reduce((sum, part) => sum + part.length, 0);
  const sizeBytes = size === "unknown" ? [0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
    : [0x10, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff]; // a 4-byte size
  const out = new Uint8Array(id.length + sizeBytes.length + length);
  out.set(id, 0);
  out.set(sizeBytes, id.length);
  let at = id.length + sizeBytes.length;
  for (const part of payload) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

const uint = (value: number, width = 2) => Uint8Array.from({ length: width }, (_, i) => (value >> (8 * (width - 1 - i))) & 0xff);

/** A 20 ms Opus block at `ms` from its cluster's time, its bytes filled with `fill`. */
function simpleBlock(relativeMs: number, fill: number): Uint8Array {
  const frame = new Uint8Array(40).fill(fill);
  return element([0xa3], [Uint8Array.of(0x81), uint(relativeMs & 0xffff), Uint8Array.of(0x80), frame]);
}

/** What Firefox writes: EBML header, a Segment and Clusters of unknown size, a cluster a second of 20 ms blocks. */
function recording(seconds: number, sizes: "known" | "unknown" = "unknown"): Uint8Array {
  const header = element([0x1a, 0x45, 0xdf, 0xa3], [element([0x42, 0x82], [Uint8Array.from("webm", (c) => c.charCodeAt(0))])]);
  const info = element([0x15, 0x49, 0xa9, 0x66], [element([0x2a, 0xd7, 0xb1], [uint(1000000, 3)])]);
  const tracks = element([0x16, 0x54, 0xae, 0x6b], [new Uint8Array(20)]);
  const clusters: Uint8Array[] = [];
  for (let second = 0; second * 1000 < seconds * 1000; second += 1) {
    const blocks: Uint8Array[] = [];
    for (let ms = 0; ms < 1000 && second * 1000 + ms < seconds * 1000; ms += 20) blocks.push(simpleBlock(ms, (second * 50 + ms / 20) % 256));
    clusters.push(element([0x1f, 0x43, 0xb6, 0x75], [element([0xe7], [uint(second * 1000)]), ...blocks], sizes));
  }
  return concat([header, element([0x18, 0x53, 0x80, 0x67], [info, tracks, ...clusters], sizes)]);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

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
