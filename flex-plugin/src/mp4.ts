/**
 * WebKit's fragmented MP4 (Safari's MediaRecorder writes `audio/mp4`, AAC in `moof`/`mdat` fragments), read and
 * repaired at the container level: boxes and sample tables only, the AAC frames themselves are never touched.
 *
 * WebKit (WebKitGTK 2.50 here, as Safari) writes a fragment per second and hands each over about a second late;
 * at stop() it delivers the fragment in progress only some of the time, and then with its `moof` header written
 * twice (decoders read the first as the header of the data after the second and fail on the whole fragment). So a
 * take could end up to 1.9 s short. The recorder (recorder.ts) therefore records on after Stop until fragments
 * covering the take have arrived (`recordedSeconds`), and `repairedMp4` drops the duplicated header and cuts the
 * file back to the take: whole AAC frames dropped from the last fragment's sample table (`trun`) and its `mdat`.
 * The same repair as the service's own record panel (webhook_app/static/record-panel.js).
 */

export interface Box {
  type: string;
  /** Offsets in the file: where the box starts, where its payload starts, where it ends. */
  start: number;
  body: number;
  end: number;
}

export interface Sample {
  duration: number;
  size: number;
}

export interface Fragment {
  moof: Box;
  mdat: Box;
  traf?: Box;
  trun?: Box;
  /** Where the trun's data_offset is written (null: the data follows the moof, as the spec's default). */
  dataOffsetAt: number | null;
  /** Bytes per sample entry in the trun. */
  entrySize: number;
  /** The fragment's start in timescale units (its tfdt). */
  base: number;
  /** Per-sample durations and sizes, when the trun carries both (WebKit's does); else null, left as it is. */
  samples: Sample[] | null;
}

/** Where the header says how long the recording is: each field's offset, width and timescale. */
export interface DurationField {
  box: "mvhd" | "tkhd" | "mdhd" | "mehd";
  at: number;
  wide: boolean;
  /** The movie's timescale (mvhd, tkhd, mehd) or the track's media timescale (mdhd). */
  timescale: number;
}

export interface ParsedMp4 {
  timescale: number;
  /** The header's durations (WebKit writes 0 in all of them: a player then knows only what it has read). */
  durations: DurationField[];
  /** Every whole top-level box but the fragment headers no media data follows. */
  boxes: Box[];
  /** How many top-level boxes the file had (a last one cut short counts). */
  boxCount: number;
  fragments: Fragment[];
}

// trun flags (ISO/IEC 14496-12, 8.8.8)
const DATA_OFFSET = 0x1;
const FIRST_SAMPLE_FLAGS = 0x4;
const SAMPLE_DURATION = 0x100;
const SAMPLE_SIZE = 0x200;
const SAMPLE_FLAGS = 0x400;
const SAMPLE_COMPOSITION_OFFSET = 0x800;

function uint64(view: DataView, at: number): number {
  return view.getUint32(at) * 2 ** 32 + view.getUint32(at + 4);
}

function boxType(view: DataView, at: number): string {
  return String.fromCharCode(view.getUint8(at), view.getUint8(at + 1), view.getUint8(at + 2), view.getUint8(at + 3));
}

/**
 * The boxes between `start` and `end`, or null when they do not parse as boxes. With `tail`, a last box cut short
 * (a recorder stopped mid-write) ends the list instead, and `tail.cut` says so.
 */
export function readBoxes(view: DataView, start: number, end: number, tail?: { cut: boolean }): Box[] | null {
  const boxes: Box[] = [];
  const cutShort = () => {
    if (!tail) return null;
    tail.cut = true;
    return boxes;
  };
  while (start < end) {
    if (start + 8 > end) return cutShort();
    let size = view.getUint32(start);
    let body = start + 8;
    if (size === 1) {
      if (start + 16 > end) return cutShort();
      size = uint64(view, start + 8); // a 64-bit "largesize"
      body = start + 16;
    } else if (size === 0) {
      size = end - start; // "to the end of the file"
    }
    if (size < body - start) return null;
    if (start + size > end) return cutShort();
    boxes.push({ type: boxType(view, start + 4), start, body, end: start + size });
    start += size;
  }
  return boxes;
}

function childBox(view: DataView, box: Box | undefined, type: string): Box | undefined {
  return box ? readBoxes(view, box.body, box.end)?.find((child) => child.type === type) : undefined;
}

/** The media timescale and, per fragment (a `moof` its `mdat` follows), its start and samples; or null. */
export function readFragments(view: DataView): ParsedMp4 | null {
  const tail = { cut: false };
  const boxes = readBoxes(view, 0, view.byteLength, tail);
  if (!boxes) return null;
  const trak = childBox(view, boxes.find((box) => box.type === "moov"), "trak");
  const mdhd = childBox(view, childBox(view, trak, "mdia"), "mdhd");
  if (!mdhd || mdhd.body + 24 > mdhd.end) return null;
  const timescale = view.getUint32(mdhd.body + (view.getUint8(mdhd.body) === 1 ? 20 : 12));
  const durations = durationFields(view, boxes, trak as Box, mdhd, timescale);
  const kept: Box[] = [];
  const fragments: Fragment[] = [];
  boxes.forEach((box, index) => {
    if (box.type !== "moof") {
      kept.push(box);
      return;
    }
    const mdat = boxes[index + 1];
    if (mdat?.type !== "mdat") return; // WebKit's duplicated header: dropped
    kept.push(box);
    const traf = childBox(view, box, "traf");
    const tfdt = childBox(view, traf, "tfdt");
    const trun = childBox(view, traf, "trun");
    if (!traf || !tfdt || !trun || trun.body + 8 > trun.end) {
      fragments.push({ moof: box, mdat, dataOffsetAt: null, entrySize: 0, base: 0, samples: null });
      return;
    }
    const flags = view.getUint32(trun.body) & 0xffffff;
    let at = trun.body + 8;
    const dataOffsetAt = flags & DATA_OFFSET ? at : null;
    if (flags & DATA_OFFSET) at += 4;
    if (flags & FIRST_SAMPLE_FLAGS) at += 4;
    const entrySize = 4 * [SAMPLE_DURATION, SAMPLE_SIZE, SAMPLE_FLAGS, SAMPLE_COMPOSITION_OFFSET]
      .filter((flag) => flags & flag).length;
    let samples: Sample[] | null = null;
    if (flags & SAMPLE_DURATION && flags & SAMPLE_SIZE) { // duration then size first in each entry
      samples = [];
      const count = view.getUint32(trun.body + 4);
      for (let i = 0; i < count && at + entrySize <= trun.end; i += 1, at += entrySize) {
        samples.push({ duration: view.getUint32(at), size: view.getUint32(at + 4) });
      }
    }
    const base = view.getUint8(tfdt.body) === 1 ? uint64(view, tfdt.body + 4) : view.getUint32(tfdt.body + 4);
    fragments.push({ moof: box, mdat, traf, trun, dataOffsetAt, entrySize, base, samples });
  });
  return { timescale, durations, boxes: kept, boxCount: boxes.length + (tail.cut ? 1 : 0), fragments };
}

/** mvhd's, the track's tkhd's, mdhd's and (in a fragmented file's mvex) mehd's duration fields. */
function durationFields(view: DataView, boxes: Box[], trak: Box, mdhd: Box, timescale: number): DurationField[] {
  const moov = boxes.find((box) => box.type === "moov") as Box;
  const mvhd = childBox(view, moov, "mvhd");
  if (!mvhd || mvhd.body + 32 > mvhd.end) return [];
  const wide = (box: Box) => view.getUint8(box.body) === 1;
  const movieTimescale = view.getUint32(mvhd.body + (wide(mvhd) ? 20 : 12));
  const fields: DurationField[] = [
    { box: "mvhd", at: mvhd.body + (wide(mvhd) ? 24 : 16), wide: wide(mvhd), timescale: movieTimescale },
    { box: "mdhd", at: mdhd.body + (wide(mdhd) ? 24 : 16), wide: wide(mdhd), timescale },
  ];
  const tkhd = childBox(view, trak, "tkhd");
  if (tkhd && tkhd.body + 36 <= tkhd.end) {
    fields.push({ box: "tkhd", at: tkhd.body + (wide(tkhd) ? 28 : 20), wide: wide(tkhd), timescale: movieTimescale });
  }
  const mehd = childBox(view, childBox(view, moov, "mvex"), "mehd");
  if (mehd && mehd.body + (wide(mehd) ? 12 : 8) <= mehd.end) {
    fields.push({ box: "mehd", at: mehd.body + 4, wide: wide(mehd), timescale: movieTimescale });
  }
  return fields.filter((field) => field.timescale > 0);
}

function readDuration(view: DataView, field: DurationField): number {
  return field.wide ? uint64(view, field.at) : view.getUint32(field.at);
}

/**
 * The moov with its durations set to `end` (in the media timescale), or null when they say so already. WebKit
 * writes 0 in each: its own player then plays a recording from a blob: URL only as far as it had read when the
 * metadata loaded (one or two of the take's one-second fragments), and says so as its duration.
 */
function moovWithDuration(view: DataView, parsed: ParsedMp4, end: number): Uint8Array<ArrayBuffer> | null {
  const moov = parsed.boxes.find((box) => box.type === "moov");
  if (!moov || !parsed.durations.length) return null;
  const values = parsed.durations.map((field) => Math.round((end * field.timescale) / parsed.timescale));
  if (parsed.durations.every((field, i) => readDuration(view, field) === values[i])) return null;
  const copy = new Uint8Array(moov.end - moov.start);
  copy.set(new Uint8Array(view.buffer, view.byteOffset + moov.start, copy.length));
  const edit = new DataView(copy.buffer);
  parsed.durations.forEach((field, i) => {
    const at = field.at - moov.start;
    if (field.wide) {
      edit.setUint32(at, Math.floor(values[i] / 2 ** 32));
      edit.setUint32(at + 4, values[i] % 2 ** 32);
    } else {
      edit.setUint32(at, Math.min(values[i], 0xffffffff));
    }
  });
  return copy;
}

function fragmentEnd(fragment: Fragment): number {
  return fragment.base + (fragment.samples || []).reduce((sum, sample) => sum + sample.duration, 0);
}

/** Seconds of audio the fragments in the MP4 `bytes` hold (0 when it cannot tell). */
export function recordedSeconds(bytes: ArrayBuffer): number {
  const parsed = readFragments(new DataView(bytes));
  if (!parsed?.timescale) return 0;
  let end = 0;
  for (const fragment of parsed.fragments) {
    if (fragment.samples) end = Math.max(end, fragmentEnd(fragment));
  }
  return end / parsed.timescale;
}

/**
 * The fragment cut to its first `keep` samples: its header with the trun's entries removed (box sizes, sample
 * count and data offset adjusted), and an mdat with only those samples' bytes. Null for a layout it does not know.
 */
function cutFragment(view: DataView, fragment: Fragment, keep: number): Array<Uint8Array<ArrayBuffer>> | null {
  const { moof, mdat, traf, trun, dataOffsetAt, entrySize, samples } = fragment;
  if (!traf || !trun || !samples || samples.length !== view.getUint32(trun.body + 4)) return null;
  const dataStart = dataOffsetAt == null ? mdat.body : moof.start + view.getInt32(dataOffsetAt);
  // (64-bit box headers or data elsewhere than the next mdat's start: not what MediaRecorders write)
  if (dataStart !== mdat.body || moof.body !== moof.start + 8 || traf.body !== traf.start + 8
    || trun.body !== trun.start + 8 || mdat.body !== mdat.start + 8) return null;
  const removed = (samples.length - keep) * entrySize;
  const entriesEnd = trun.body + 8 + (dataOffsetAt == null ? 0 : 4)
    + (view.getUint32(trun.body) & FIRST_SAMPLE_FLAGS ? 4 : 0) + keep * entrySize;
  const header = new Uint8Array(moof.end - moof.start - removed);
  header.set(new Uint8Array(view.buffer, view.byteOffset + moof.start, entriesEnd - moof.start));
  const afterEntries = entriesEnd + removed;
  header.set(new Uint8Array(view.buffer, view.byteOffset + afterEntries, moof.end - afterEntries), entriesEnd - moof.start);
  const edit = new DataView(header.buffer);
  for (const box of [moof, traf, trun]) edit.setUint32(box.start - moof.start, box.end - box.start - removed);
  edit.setUint32(trun.body + 4 - moof.start, keep);
  if (dataOffsetAt != null) edit.setInt32(dataOffsetAt - moof.start, view.getInt32(dataOffsetAt) - removed);
  const bytes = samples.slice(0, keep).reduce((sum, sample) => sum + sample.size, 0);
  if (mdat.body + bytes > mdat.end) return null;
  const data = new Uint8Array(8 + bytes);
  new DataView(data.buffer).setUint32(0, 8 + bytes);
  data.set(new Uint8Array(view.buffer, view.byteOffset + mdat.start + 4, 4), 4);
  data.set(new Uint8Array(view.buffer, view.byteOffset + mdat.body, bytes), 8);
  return [header, data];
}

/**
 * The MP4 `bytes` repaired and cut to `seconds`: fragment headers no media data follows (WebKit's duplicated
 * `moof`) dropped; when `seconds` is given, the samples that start at or after it (a fragment starting after it goes
 * whole); and the header's durations set to what is left. The parts of the new file, or null when nothing changes
 * or the bytes do not parse as MP4.
 */
export function repairedMp4Parts(bytes: ArrayBuffer, seconds = Infinity): BlobPart[] | null {
  const view = new DataView(bytes);
  const parsed = readFragments(view);
  if (!parsed) return null;
  const limit = seconds * parsed.timescale;
  // What each fragment keeps (its samples that start before the limit: all of them, some, or none), and where the
  // recording then ends. A fragment without a sample table is kept whole, and then the end is not known.
  const cuts = new Map<Box, Array<Uint8Array<ArrayBuffer>>>();
  let end: number | null = 0;
  for (const fragment of parsed.fragments) {
    if (!fragment.samples) {
      end = null;
      continue;
    }
    let keep = 0;
    let time = fragment.base;
    for (; keep < fragment.samples.length && time < limit; keep += 1) time += fragment.samples[keep].duration;
    const cut = keep === fragment.samples.length ? null : (keep ? cutFragment(view, fragment, keep) : []);
    if (cut) cuts.set(fragment.moof, cut);
    if (end !== null && (keep || !cut)) end = Math.max(end, cut ? time : fragmentEnd(fragment));
  }
  const moov = end ? moovWithDuration(view, parsed, end) : null;
  const parts: BlobPart[] = [];
  const changed = parsed.boxes.length !== parsed.boxCount || cuts.size > 0 || moov !== null;
  let skipMdat = false; // the mdat of a fragment that was cut (its bytes are in the cut) or dropped
  for (const box of parsed.boxes) {
    if (box.type === "mdat" && skipMdat) {
      skipMdat = false;
    } else if (cuts.has(box)) {
      parts.push(...(cuts.get(box) as Array<Uint8Array<ArrayBuffer>>));
      skipMdat = true;
    } else if (box.type === "moov" && moov) {
      parts.push(moov);
    } else {
      parts.push(new Uint8Array(bytes, box.start, box.end - box.start));
    }
  }
  return changed ? parts : null;
}

export function readBytes(blob: Blob): Promise<ArrayBuffer> {
  if (typeof blob.arrayBuffer === "function") return blob.arrayBuffer();
  // jsdom's Blob (the unit tests) has no arrayBuffer(); FileReader is everywhere.
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result as ArrayBuffer);
    reader.onerror = () => reject(reader.error);
    reader.readAsArrayBuffer(blob);
  });
}

/** `repairedMp4Parts` for a Blob: the repaired recording (same type), or the blob itself when nothing changes. */
export async function repairedMp4(blob: Blob, seconds = Infinity): Promise<Blob> {
  const parts = repairedMp4Parts(await readBytes(blob), seconds);
  return parts ? new Blob(parts, { type: blob.type }) : blob;
}

/** Seconds of audio in the MP4 `blob`'s fragments (0 when it cannot tell). */
export async function mp4RecordedSeconds(blob: Blob): Promise<number> {
  return recordedSeconds(await readBytes(blob));
}
