/**
 * Synthetic fragmented MP4, laid out as WebKit's MediaRecorder writes it (ftyp, moov with the track's timescale,
 * then per fragment a moof — mfhd, traf with tfhd, tfdt and a trun listing each AAC frame's duration and size —
 * and an mdat with the frames). Each frame's bytes are filled with its number, so a test can tell which frames a
 * repaired file kept.
 */

export const TIMESCALE = 44100;
export const FRAME = 1024; // samples per AAC frame: 23.2 ms at 44.1 kHz

export function box(type: string, ...payload: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const size = 8 + payload.reduce((sum, part) => sum + part.length, 0);
  const bytes = new Uint8Array(size);
  new DataView(bytes.buffer).setUint32(0, size);
  bytes.set(Array.from(type, (c) => c.charCodeAt(0)), 4);
  let at = 8;
  for (const part of payload) {
    bytes.set(part, at);
    at += part.length;
  }
  return bytes;
}

/** Big-endian 32-bit words (a `bigWords` entry given as [high, low] is a 64-bit one). */
function words(...values: Array<number | [number, number]>): Uint8Array {
  const flat = values.flatMap((value) => (Array.isArray(value) ? value : [value]));
  const bytes = new Uint8Array(flat.length * 4);
  const view = new DataView(bytes.buffer);
  flat.forEach((value, index) => view.setUint32(index * 4, value));
  return bytes;
}

export const MOVIE_TIMESCALE = 1800; // what WebKit writes in mvhd

/** ftyp and moov, with the durations WebKit writes (0: not known) unless `frames` says how long the track is. */
export function initSegment(frames = 0): Uint8Array<ArrayBuffer>[] {
  const movie = Math.round((frames * FRAME * MOVIE_TIMESCALE) / TIMESCALE);
  // version 0 boxes: mvhd timescale at +12, duration at +16; tkhd duration at +20; mdhd as mvhd; mehd (version 1,
  // as WebKit writes it) a 64-bit fragment_duration at +4
  const mvhd = box("mvhd", words(0, 0, 0, MOVIE_TIMESCALE, movie), new Uint8Array(80));
  const tkhd = box("tkhd", words(7, 0, 0, 1, 0, movie), new Uint8Array(60));
  const mdhd = box("mdhd", words(0, 0, 0, TIMESCALE, frames * FRAME), new Uint8Array(4));
  const mehd = box("mehd", words(0x01000000, [0, movie]));
  return [box("ftyp", Uint8Array.from("isommp42", (c) => c.charCodeAt(0))), box("moov", mvhd,
    box("trak", tkhd, box("mdia", mdhd, box("hdlr", new Uint8Array(25)))),
    box("mvex", mehd, box("trex", new Uint8Array(24))))];
}

/** The durations the header of `bytes` gives, in seconds: mvhd, tkhd, mdhd, mehd. */
export function headerDurations(bytes: Uint8Array): number[] {
  const at = (type: string) => {
    const code = Array.from(type, (c) => c.charCodeAt(0));
    for (let i = 0; i + 4 <= bytes.length; i += 1) {
      if (code.every((c, j) => bytes[i + j] === c)) return i + 4; // the box's payload
    }
    throw new Error(`no ${type}`);
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return [
    view.getUint32(at("mvhd") + 16) / MOVIE_TIMESCALE,
    view.getUint32(at("tkhd") + 20) / MOVIE_TIMESCALE,
    view.getUint32(at("mdhd") + 16) / TIMESCALE,
    (view.getUint32(at("mehd") + 4) * 2 ** 32 + view.getUint32(at("mehd") + 8)) / MOVIE_TIMESCALE,
  ];
}

export interface FragmentOptions {
  /** The first frame's number (its bytes' fill) and start, in frames. */
  first: number;
  frames: number;
  /** Bytes of frame `n` (AAC frames vary in size). */
  frameSize?: (n: number) => number;
  /** trun with first_sample_flags and per-sample flags (12-byte entries), tfdt version 1: other writers' layout. */
  otherLayout?: boolean;
}

export function defaultFrameSize(n: number): number {
  return 180 + (n % 7) * 11;
}

/** One fragment: [moof, mdat]. */
export function fragment({ first, frames, frameSize = defaultFrameSize, otherLayout = false }: FragmentOptions):
  Uint8Array<ArrayBuffer>[] {
  const numbers = Array.from({ length: frames }, (_, i) => first + i);
  const entries = numbers.flatMap((n) => (otherLayout ? [FRAME, frameSize(n), 0x02000000] : [FRAME, frameSize(n)]));
  const flags = otherLayout ? 0x000705 : 0x000301; // data offset, (first sample flags,) durations, sizes(, flags)
  const trunFor = (dataOffset: number) => box("trun", words(flags, frames, dataOffset, ...(otherLayout ? [0] : []),
    ...entries));
  const tfdt = otherLayout ? box("tfdt", words(0x01000000, [0, first * FRAME])) : box("tfdt", words(0, first * FRAME));
  const moofFor = (dataOffset: number) => box("moof", box("mfhd", words(0, first + 1)),
    box("traf", box("tfhd", words(0x020000, 1)), tfdt, trunFor(dataOffset)));
  const moof = moofFor(moofFor(0).length + 8); // the data starts right after the mdat's header
  const data = new Uint8Array(numbers.reduce((sum, n) => sum + frameSize(n), 0));
  let at = 0;
  for (const n of numbers) {
    data.fill(n % 256, at, at + frameSize(n));
    at += frameSize(n);
  }
  return [moof, box("mdat", data)];
}

/** A recording of `fragments` fragments of `framesEach` frames (about a second each, as WebKit writes). */
export function recording(fragments: number, framesEach = 43, options: Partial<FragmentOptions> & { withDuration?: boolean } = {}):
  Uint8Array<ArrayBuffer>[] {
  const parts = initSegment(options.withDuration ? fragments * framesEach : 0);
  for (let i = 0; i < fragments; i += 1) parts.push(...fragment({ ...options, first: i * framesEach, frames: framesEach }));
  return parts;
}

export function bytesOf(blob: Blob): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(new Uint8Array(reader.result as ArrayBuffer));
    reader.onerror = () => reject(reader.error);
    reader.readAsArrayBuffer(blob);
  });
}

export interface Listed {
  type: string;
  size: number;
  start: number;
}

/** The top-level boxes of `bytes`, read independently of the code under test. */
export function topLevel(bytes: Uint8Array): Listed[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const listed: Listed[] = [];
  for (let start = 0; start < bytes.length; start += view.getUint32(start)) {
    listed.push({ type: String.fromCharCode(...Array.from(bytes.slice(start + 4, start + 8))), size: view.getUint32(start), start });
  }
  return listed;
}
