// @ts-check
/**
 * WebKit's fragmented MP4 (Safari's MediaRecorder writes `audio/mp4`, AAC in `moof`/`mdat` fragments), read and
 * repaired at the container level: boxes and sample tables only, the AAC frames themselves are never touched.
 *
 * WebKitGTK writes a fragment per second and hands each over a second late; at stop() it delivers the fragment in
 * progress only some of the time, and then with its `moof` header written twice (decoders fail on the whole
 * fragment). So a take could end up to 1.9 s short. The take therefore keeps recording after Stop until fragments
 * covering its length have arrived (see recorder.js), then is cut back to that length here (whole AAC frames
 * dropped from the last fragment's index and `mdat`; no transcoding). WebKit also writes 0 as the file's duration
 * (`mvhd`, `tkhd`, `mdhd`, `mehd`) and then plays a fresh recording only as far as it had read at load (a 3 s
 * take's preview stopped after 1 s): the repaired file says the take's length there.
 *
 * Bytes in, bytes out, like webm.js: recorder.js is where recordings are Blobs. The agent console and the Flex
 * plugin both run this module (the plugin's bundle imports it from here).
 */

/**
 * One box: its four-letter type and where it, its body and its end are in the file.
 * @typedef {{type: string, start: number, body: number, end: number}} Box
 */
/** @typedef {{duration: number, size: number}} Sample */
/**
 * A `moof` and the `mdat` after it. Where its track run lists each sample's duration and size (what WebKit
 * writes), also its boxes, the run's layout, its start time (`base`, in the timescale) and its samples.
 * @typedef {object} Fragment
 * @property {Box} moof
 * @property {Box} mdat
 * @property {Box} [traf]
 * @property {Box} [trun]
 * @property {number | null} dataOffsetAt where the run's data offset is written (null: the data follows the moof)
 * @property {number} entrySize bytes per sample entry
 * @property {number} base
 * @property {Sample[] | null} samples
 */
/**
 * Where the header says how long the recording is: the field's box, offset and width, and its timescale (the
 * movie's for mvhd, tkhd and mehd; the track's media timescale for mdhd).
 * @typedef {{box: "mvhd" | "tkhd" | "mdhd" | "mehd", at: number, wide: boolean, timescale: number}} DurationField
 */
/**
 * @typedef {object} ParsedMp4
 * @property {number} timescale
 * @property {DurationField[]} durations the header's durations (WebKit writes 0 in all of them)
 * @property {Box[]} boxes every whole top-level box but the fragment headers no media data follows
 * @property {number} boxCount how many top-level boxes the file had (a last one cut short counts)
 * @property {Fragment[]} fragments
 */

// trun flags (ISO/IEC 14496-12, 8.8.8)
const DATA_OFFSET = 0x1;
const FIRST_SAMPLE_FLAGS = 0x4;
const SAMPLE_DURATION = 0x100;
const SAMPLE_SIZE = 0x200;
const SAMPLE_FLAGS = 0x400;
const SAMPLE_COMPOSITION_OFFSET = 0x800;

/**
 * @param {DataView} view
 * @param {number} at
 */
function uint64(view, at) {
  return view.getUint32(at) * 2 ** 32 + view.getUint32(at + 4);
}

/**
 * The boxes between `start` and `end`, or null when they do not parse as boxes. With `tail`, a last box cut short
 * (a recorder stopped mid-write) ends the list instead, and `tail.cut` says so.
 * @param {DataView} view
 * @param {number} start
 * @param {number} end
 * @param {{cut: boolean}} [tail]
 * @returns {Box[] | null}
 */
function readBoxes(view, start, end, tail) {
  /** @type {Box[]} */
  const boxes = [];
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
    const type = String.fromCharCode(...new Uint8Array(view.buffer, view.byteOffset + start + 4, 4));
    boxes.push({ type, start, body, end: start + size });
    start += size;
  }
  return boxes;
}

/**
 * The first child of `box` of this type.
 * @param {DataView} view
 * @param {Box | null | undefined} box
 * @param {string} type
 * @returns {Box | undefined}
 */
function childBox(view, box, type) {
  return box ? readBoxes(view, box.body, box.end)?.find((child) => child.type === type) : undefined;
}

/**
 * A fragment's index: its track run's layout and samples, and its start time.
 * @param {DataView} view
 * @param {Box} moof
 * @param {Box} mdat
 * @returns {Fragment}
 */
function readFragment(view, moof, mdat) {
  const traf = childBox(view, moof, "traf");
  const tfdt = childBox(view, traf, "tfdt");
  const trun = childBox(view, traf, "trun");
  if (!traf || !tfdt || !trun || trun.body + 8 > trun.end) {
    return { moof, mdat, dataOffsetAt: null, entrySize: 0, base: 0, samples: null };
  }
  const flags = view.getUint32(trun.body) & 0xffffff;
  let at = trun.body + 8;
  const dataOffsetAt = flags & DATA_OFFSET ? at : null;
  if (flags & DATA_OFFSET) at += 4;
  if (flags & FIRST_SAMPLE_FLAGS) at += 4;
  const entrySize = 4 * [SAMPLE_DURATION, SAMPLE_SIZE, SAMPLE_FLAGS, SAMPLE_COMPOSITION_OFFSET]
    .filter((flag) => flags & flag).length;
  /** @type {Sample[] | null} */
  let samples = null;
  if (flags & SAMPLE_DURATION && flags & SAMPLE_SIZE) { // duration then size first in each entry: what WebKit writes
    samples = [];
    const count = view.getUint32(trun.body + 4);
    for (let i = 0; i < count && at + entrySize <= trun.end; i += 1, at += entrySize) {
      samples.push({ duration: view.getUint32(at), size: view.getUint32(at + 4) });
    }
  }
  const base = view.getUint8(tfdt.body) === 1 ? uint64(view, tfdt.body + 4) : view.getUint32(tfdt.body + 4);
  return { moof, mdat, traf, trun, dataOffsetAt, entrySize, base, samples };
}

/**
 * mvhd's, the track's tkhd's, mdhd's and (in a fragmented file's mvex) mehd's duration fields.
 * @param {DataView} view
 * @param {Box} moov
 * @param {Box | undefined} trak
 * @param {Box} mdhd
 * @param {number} timescale
 * @returns {DurationField[]}
 */
function durationFields(view, moov, trak, mdhd, timescale) {
  const mvhd = childBox(view, moov, "mvhd");
  if (!mvhd || mvhd.body + 32 > mvhd.end) return [];
  /** @param {Box} box */
  const wide = (box) => view.getUint8(box.body) === 1;
  const movieTimescale = view.getUint32(mvhd.body + (wide(mvhd) ? 20 : 12));
  /** @type {DurationField[]} */
  const fields = [
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

/**
 * The media timescale, the header's durations, the file's boxes less WebKit's duplicated headers (and a last box
 * cut short), and its fragments (a `moof` its `mdat` follows); or null when the file does not parse.
 * @param {DataView} view
 * @returns {ParsedMp4 | null}
 */
export function readFragments(view) {
  const tail = { cut: false };
  const boxes = readBoxes(view, 0, view.byteLength, tail);
  if (!boxes) return null;
  const moov = boxes.find((box) => box.type === "moov");
  const trak = childBox(view, moov, "trak");
  const mdhd = childBox(view, childBox(view, trak, "mdia"), "mdhd");
  if (!moov || !mdhd || mdhd.body + 24 > mdhd.end) return null;
  const timescale = view.getUint32(mdhd.body + (view.getUint8(mdhd.body) === 1 ? 20 : 12));
  const durations = durationFields(view, moov, trak, mdhd, timescale);
  /** @type {Box[]} */
  const kept = [];
  /** @type {Fragment[]} */
  const fragments = [];
  for (const [index, box] of boxes.entries()) {
    const next = boxes[index + 1];
    if (box.type === "moof" && next?.type !== "mdat") continue; // WebKit's duplicated header: dropped
    kept.push(box);
    if (box.type === "moof") fragments.push(readFragment(view, box, next));
  }
  return { timescale, durations, boxes: kept, boxCount: boxes.length + (tail.cut ? 1 : 0), fragments };
}

/**
 * @param {DataView} view
 * @param {DurationField} field
 */
function readDuration(view, field) {
  return field.wide ? uint64(view, field.at) : view.getUint32(field.at);
}

/**
 * The moov with its durations set to `end` (in the media timescale), or null when they say so already. WebKit
 * writes 0 in each: its own player then plays a recording from a blob: URL only as far as it had read when the
 * metadata loaded (one or two of the take's one-second fragments), and says so as its duration.
 * @param {DataView} view
 * @param {ParsedMp4} parsed
 * @param {number} end
 * @returns {Uint8Array<ArrayBuffer> | null}
 */
function moovWithDuration(view, parsed, end) {
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

/**
 * Where the fragment ends, in the timescale.
 * @param {Fragment} fragment
 */
function fragmentEnd(fragment) {
  return fragment.base + (fragment.samples || []).reduce((sum, sample) => sum + sample.duration, 0);
}

/**
 * Seconds of audio the fragments in the MP4 `bytes` hold (0 when it cannot tell).
 * @param {ArrayBuffer} bytes
 */
export function mp4RecordedSeconds(bytes) {
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
 * @param {DataView} view
 * @param {Fragment} fragment
 * @param {number} keep
 * @returns {Uint8Array<ArrayBuffer>[] | null}
 */
function cutFragment(view, fragment, keep) {
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
 * `moof`) and a last box cut short dropped; when `seconds` is given, the samples that start at or after it (a
 * fragment starting after it goes whole); and the header's durations set to what is left. Null when nothing
 * changes, or the bytes do not parse as MP4.
 * @param {ArrayBuffer} bytes
 * @param {number} [seconds]
 * @returns {Uint8Array<ArrayBuffer> | null}
 */
export function repairedMp4(bytes, seconds = Infinity) {
  const view = new DataView(bytes);
  const parsed = readFragments(view);
  if (!parsed) return null;
  const { cuts, end } = cutsTo(view, parsed, seconds * parsed.timescale);
  const moov = end ? moovWithDuration(view, parsed, end) : null;
  if (parsed.boxes.length === parsed.boxCount && !cuts.size && !moov) return null;
  /** @type {Uint8Array<ArrayBuffer>[]} */
  const parts = [];
  let skipMdat = false; // the mdat of a fragment that was cut (its bytes are in the cut) or dropped
  for (const box of parsed.boxes) {
    const cut = cuts.get(box);
    if (box.type === "mdat" && skipMdat) {
      skipMdat = false;
    } else if (cut) {
      parts.push(...cut);
      skipMdat = true;
    } else if (box.type === "moov" && moov) {
      parts.push(moov);
    } else {
      parts.push(new Uint8Array(bytes, box.start, box.end - box.start));
    }
  }
  return concat(parts);
}

/**
 * What each fragment keeps of its samples (those that start before `limit`, in the timescale: all of them, some,
 * or none), by its moof (a fragment keeping all is not listed), and where the recording then ends (null when a
 * fragment without a sample table, kept whole, leaves it unknown).
 * @param {DataView} view
 * @param {ParsedMp4} parsed
 * @param {number} limit
 * @returns {{cuts: Map<Box, Uint8Array<ArrayBuffer>[]>, end: number | null}}
 */
function cutsTo(view, parsed, limit) {
  /** @type {Map<Box, Uint8Array<ArrayBuffer>[]>} */
  const cuts = new Map();
  /** @type {number | null} */
  let end = 0;
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
  return { cuts, end };
}

/**
 * The parts as one array.
 * @param {Uint8Array[]} parts
 */
function concat(parts) {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
