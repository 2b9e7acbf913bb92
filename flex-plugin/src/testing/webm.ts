/**
 * Synthetic WebM as Firefox's MediaRecorder writes it: an EBML header, then a Segment and Clusters of unknown size
 * (a live stream), a Cluster per second of 20 ms Opus blocks, each block's bytes filled with its number.
 */

/** An EBML element: its ID's bytes, a size (8-byte "unknown" when null), the payload. */
export function element(id: number[], payload: Uint8Array[], size: "known" | "unknown" = "known"): Uint8Array<ArrayBuffer> {
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

/** A 20 ms Opus block at `relativeMs` from its cluster's time, its bytes filled with `fill`. */
function simpleBlock(relativeMs: number, fill: number): Uint8Array<ArrayBuffer> {
  const frame = new Uint8Array(40).fill(fill);
  return element([0xa3], [Uint8Array.of(0x81), uint(relativeMs & 0xffff), Uint8Array.of(0x80), frame]);
}

/** What Firefox writes: EBML header, a Segment and Clusters of unknown size, a cluster a second of 20 ms blocks. */
export function recording(seconds: number, sizes: "known" | "unknown" = "unknown"): Uint8Array<ArrayBuffer> {
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

export function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(parts.flatMap((part) => Array.from(part))); // (test files are small)
}
