// @ts-check
/**
 * WebKit's fragmented MP4. WebKitGTK writes a fragment per second and hands each over a second late; at stop()
 * it delivers the fragment in progress only some of the time, and then with its `moof` header written twice
 * (decoders fail on the whole fragment). So a take could end up to 1.9 s short. The take therefore keeps
 * recording after Stop until fragments covering its length have arrived (see take.js), then is cut back to that
 * length here, at the container level (whole AAC frames dropped from the last fragment's index; no transcoding).
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
 * @property {Sample[] | null} samples
 * @property {Box} [traf]
 * @property {Box} [trun]
 * @property {number | null} [dataOffsetAt] where the run's data offset is, when it has one
 * @property {number} [entrySize] bytes per sample entry
 * @property {number} [base]
 */
/**
 * A fragment whose samples are known: one that can be measured and cut.
 * @typedef {Required<Fragment> & {samples: Sample[]}} IndexedFragment
 */

/**
 * The boxes between `start` and `end`, or null when they do not parse as boxes.
 * @param {DataView} view
 * @param {number} start
 * @param {number} end
 * @returns {Box[] | null}
 */
function readBoxes(view, start, end) {
  const boxes = [];
  while (start < end) {
    if (start + 8 > end) return null;
    let size = view.getUint32(start);
    let body = start + 8;
    if (size === 1) {
      if (start + 16 > end) return null;
      size = Number(view.getBigUint64(start + 8)); // a 64-bit "largesize"
      body = start + 16;
    } else if (size === 0) {
      size = end - start; // "to the end of the file"
    }
    if (size < body - start || start + size > end) return null;
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
  if (!tfdt || !trun) return { moof, mdat, samples: null };
  const flags = view.getUint32(trun.body) & 0xffffff;
  let at = trun.body + 8;
  const dataOffsetAt = flags & 0x1 ? at : null;
  if (flags & 0x1) at += 4;
  if (flags & 0x4) at += 4;
  const entrySize = 4 * [0x100, 0x200, 0x400, 0x800].filter((flag) => flags & flag).length;
  let samples = null;
  if (flags & 0x100 && flags & 0x200) { // per-sample durations and sizes: what WebKit writes
    samples = [];
    for (let i = 0; i < view.getUint32(trun.body + 4) && at + entrySize <= trun.end; i += 1, at += entrySize) {
      samples.push({ duration: view.getUint32(at), size: view.getUint32(at + 4) });
    }
  }
  const base = view.getUint8(tfdt.body) === 1 ? Number(view.getBigUint64(tfdt.body + 4)) : view.getUint32(tfdt.body + 4);
  return { moof, mdat, traf, trun, dataOffsetAt, entrySize, base, samples };
}

/**
 * The media timescale, the file's boxes less WebKit's duplicated headers, and its fragments (a `moof` its
 * `mdat` follows); or null when the file does not parse.
 * @param {DataView} view
 * @returns {{timescale: number, boxes: Box[], fragments: Fragment[]} | null}
 */
function readFragments(view) {
  const boxes = readBoxes(view, 0, view.byteLength);
  if (!boxes) return null;
  const mdhd = childBox(view, childBox(view, childBox(view, boxes.find((b) => b.type === "moov"), "trak"), "mdia"), "mdhd");
  if (!mdhd) return null;
  const timescale = view.getUint32(mdhd.body + (view.getUint8(mdhd.body) === 1 ? 20 : 12));
  const kept = [];
  const fragments = [];
  for (const [index, box] of boxes.entries()) {
    const next = boxes[index + 1];
    if (box.type === "moof" && next?.type !== "mdat") continue; // WebKit's duplicated header: dropped
    kept.push(box);
    if (box.type === "moof") fragments.push(readFragment(view, box, next));
  }
  return { timescale, boxes: kept, fragments };
}

/**
 * Whether the fragment's samples (and so its length and the way to cut it) are known.
 * @param {Fragment | undefined} fragment
 * @returns {fragment is IndexedFragment}
 */
function isIndexed(fragment) {
  return Boolean(fragment?.samples);
}

/**
 * Where the fragment ends, in the timescale.
 * @param {IndexedFragment} fragment
 */
function fragmentEnd(fragment) {
  return fragment.base + fragment.samples.reduce((sum, sample) => sum + sample.duration, 0);
}

/**
 * Seconds of audio the fragments in `blob` hold (0 when it cannot tell).
 * @param {Blob} blob
 */
export async function mp4RecordedSeconds(blob) {
  const parsed = readFragments(new DataView(await blob.arrayBuffer()));
  if (!parsed?.timescale) return 0;
  let end = 0;
  for (const fragment of parsed.fragments) {
    if (isIndexed(fragment)) end = Math.max(end, fragmentEnd(fragment));
  }
  return end / parsed.timescale;
}

/**
 * A fragment cut to its first `keep` samples: its index entries and their bytes in the `mdat`; null when its
 * layout is not the plain one this can cut.
 * @param {DataView} view
 * @param {IndexedFragment} fragment
 * @param {number} keep
 * @returns {Uint8Array<ArrayBuffer>[] | null}
 */
function cutFragment(view, fragment, keep) {
  const { moof, mdat, traf, trun, dataOffsetAt, entrySize, samples } = fragment;
  const dataStart = dataOffsetAt == null ? mdat.body : moof.start + view.getInt32(dataOffsetAt);
  if (dataStart !== mdat.body || moof.body !== moof.start + 8 || traf.body !== traf.start + 8) return null;
  const removed = (samples.length - keep) * entrySize;
  const entriesEnd = trun.end - (samples.length - keep) * entrySize;
  const header = new Uint8Array(moof.end - moof.start - removed);
  header.set(new Uint8Array(view.buffer, view.byteOffset + moof.start, entriesEnd - moof.start));
  header.set(new Uint8Array(view.buffer, view.byteOffset + trun.end, moof.end - trun.end), entriesEnd - moof.start);
  const edit = new DataView(header.buffer);
  for (const box of [moof, traf, trun]) edit.setUint32(box.start - moof.start, box.end - box.start - removed);
  edit.setUint32(trun.body + 4 - moof.start, keep);
  if (dataOffsetAt != null) edit.setInt32(dataOffsetAt - moof.start, view.getInt32(dataOffsetAt) - removed);
  const bytes = samples.slice(0, keep).reduce((sum, sample) => sum + sample.size, 0);
  const data = new Uint8Array(8 + bytes);
  new DataView(data.buffer).setUint32(0, 8 + bytes);
  data.set(new Uint8Array(view.buffer, view.byteOffset + mdat.start + 4, 4), 4);
  data.set(new Uint8Array(view.buffer, view.byteOffset + mdat.body, bytes), 8);
  return [header, data];
}

/**
 * What of a fragment that goes past `limit` stays: its cut (no parts when none of its samples starts before the
 * limit), or null when it ends within the limit or cannot be cut (kept whole).
 * @param {DataView} view
 * @param {IndexedFragment} fragment
 * @param {number} limit in the timescale
 * @returns {Uint8Array<ArrayBuffer>[] | null}
 */
function cutAt(view, fragment, limit) {
  if (fragmentEnd(fragment) <= limit) return null;
  let keep = 0;
  for (let time = fragment.base; keep < fragment.samples.length && time < limit; keep += 1) {
    time += fragment.samples[keep].duration;
  }
  return keep ? cutFragment(view, fragment, keep) : [];
}

/**
 * The MP4 `blob` repaired and cut to `seconds`: WebKit's duplicated fragment headers dropped (see above) and, when
 * `seconds` is given, the samples that start after it. Anything that does not parse is returned as it was.
 * @param {Blob} blob
 * @param {number} [seconds]
 * @returns {Promise<Blob>}
 */
export async function repairedMp4(blob, seconds = Infinity) {
  const view = new DataView(await blob.arrayBuffer());
  const parsed = readFragments(view);
  if (!parsed) return blob;
  const limit = seconds * parsed.timescale;
  const fragments = new Map(parsed.fragments.map((fragment) => [fragment.moof, fragment]));
  /** @type {BlobPart[]} */
  const parts = [];
  let changed = parsed.boxes.length !== readBoxes(view, 0, view.byteLength)?.length; // duplicated headers dropped
  let skipMdat = false; // the mdat of a fragment that was cut (its bytes are in the cut) or dropped
  for (const box of parsed.boxes) {
    if (box.type === "mdat" && skipMdat) {
      skipMdat = false;
      continue;
    }
    const fragment = fragments.get(box);
    const cut = isIndexed(fragment) ? cutAt(view, fragment, limit) : null;
    if (!cut) {
      parts.push(blob.slice(box.start, box.end));
      continue;
    }
    parts.push(...cut);
    skipMdat = true;
    changed = true;
  }
  return changed ? new Blob(parts, { type: blob.type }) : blob;
}
