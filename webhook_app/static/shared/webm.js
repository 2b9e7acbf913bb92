// @ts-check
/**
 * WebM (Matroska) as MediaRecorders write it, read and cut at the container level: EBML elements and block
 * timestamps only, the Opus frames themselves are never touched.
 *
 * Firefox drops at stop() the audio still queued for its encoder: under load a take lost 0.1-0.3 s at its end. So
 * the take (recorder.js) records on after Stop until blocks covering it have arrived (`webmRecordedSeconds`) and
 * `cutWebm` cuts the file back to the take: the blocks that start after its end go, as whole blocks. Firefox and
 * Chromium write the Segment and its Clusters with "unknown" sizes (a live stream), so the cut is the file up to
 * that block; a Cluster or Segment of known size has its size rewritten (in the same width).
 *
 * Bytes in, bytes out, like mp4.js: recorder.js is where recordings are Blobs. The agent console and the Flex
 * plugin both run this module (the plugin's bundle imports it from here).
 */

const EBML = 0x1a45dfa3;
const SEGMENT = 0x18538067;
const INFO = 0x1549a966;
const TIMECODE_SCALE = 0x2ad7b1;
const CLUSTER = 0x1f43b675;
const TIMECODE = 0xe7;
const SIMPLE_BLOCK = 0xa3;
const BLOCK_GROUP = 0xa0;
const BLOCK = 0xa1;
// Top-level children of a Segment: where a Cluster of unknown size ends.
const SEGMENT_CHILDREN = new Set([0x114d9b74, INFO, 0x1654ae6b, CLUSTER, 0x1c53bb6b, 0x1941a469, 0x1043a770, 0x1254c367]);

/**
 * One EBML element: its ID, where it starts, where its size is written (and the size's width), where its payload
 * starts and ends (the data's end for an element of unknown size).
 * @typedef {{id: number, start: number, sizeAt: number, sizeWidth: number, body: number, end: number,
 *   unknown: boolean}} Element
 */
/**
 * A block: its start in seconds from the recording's first block, where it starts, its Cluster, and whether it is
 * that Cluster's first.
 * @typedef {{time: number, start: number, cluster: Element, firstInCluster: boolean}} WebmBlock
 */

/**
 * An EBML variable-length integer at `at` (an ID keeps its length marker, a size does not), or null.
 * @param {DataView} view
 * @param {number} at
 * @param {boolean} keepMarker
 * @returns {{value: number, width: number} | null}
 */
function vint(view, at, keepMarker) {
  if (at >= view.byteLength) return null;
  const first = view.getUint8(at);
  let width = 1;
  while (width <= 8 && !(first & (0x80 >> (width - 1)))) width += 1;
  if (width > 8 || at + width > view.byteLength) return null;
  let value = keepMarker ? first : first & ((0x80 >> (width - 1)) - 1);
  for (let i = 1; i < width; i += 1) value = value * 256 + view.getUint8(at + i);
  return { value, width };
}

/**
 * The element at `at`, within a parent ending at `parentEnd`, or null.
 * @param {DataView} view
 * @param {number} at
 * @param {number} parentEnd
 * @returns {Element | null}
 */
function readElement(view, at, parentEnd) {
  const id = vint(view, at, true);
  if (!id) return null;
  const size = vint(view, at + id.width, false);
  if (!size) return null;
  const body = at + id.width + size.width;
  const unknown = size.value === 2 ** (7 * size.width) - 1;
  const end = unknown ? parentEnd : body + size.value;
  if (body > parentEnd || end > view.byteLength) {
    // cut short: a recorder stopped mid-write (or a chunk not yet arrived); what is there still counts
    return { id: id.value, start: at, sizeAt: at + id.width, sizeWidth: size.width, body, end: parentEnd, unknown: true };
  }
  return { id: id.value, start: at, sizeAt: at + id.width, sizeWidth: size.width, body, end, unknown };
}

/**
 * An unsigned integer element's value.
 * @param {DataView} view
 * @param {Element} element
 */
function readUint(view, element) {
  let value = 0;
  for (let at = element.body; at < element.end && at < element.body + 8; at += 1) value = value * 256 + view.getUint8(at);
  return value;
}

/**
 * The Segment and every block's start time, or null when the bytes are not WebM.
 * @param {DataView} view
 * @returns {{segment: Element, blocks: WebmBlock[]} | null}
 */
export function readWebm(view) {
  const header = readElement(view, 0, view.byteLength);
  if (!header || header.id !== EBML || header.unknown) return null;
  const segment = readElement(view, header.end, view.byteLength);
  if (!segment || segment.id !== SEGMENT) return null;
  let scale = 1e6; // ns per timecode unit: Matroska's default
  /** @type {WebmBlock[]} */
  const blocks = [];
  /** @type {number | null} */
  let origin = null;
  for (let at = segment.body; at < segment.end;) {
    const element = readElement(view, at, segment.end);
    if (!element) break;
    if (element.id === INFO) {
      for (let inner = element.body; inner < element.end;) {
        const child = readElement(view, inner, element.end);
        if (!child) break;
        if (child.id === TIMECODE_SCALE) scale = readUint(view, child) || scale;
        inner = child.end;
      }
    } else if (element.id === CLUSTER) {
      let clusterTime = 0;
      let inner = element.body;
      let first = true;
      while (inner < element.end) {
        const child = readElement(view, inner, element.end);
        if (!child) break;
        if (element.unknown && SEGMENT_CHILDREN.has(child.id)) break; // the next Cluster: this one has ended
        if (child.id === TIMECODE) clusterTime = readUint(view, child);
        let block = child.id === SIMPLE_BLOCK ? child : null;
        if (child.id === BLOCK_GROUP) {
          const grouped = readElement(view, child.body, child.end);
          if (grouped?.id === BLOCK) block = grouped;
        }
        if (block) {
          const track = vint(view, block.body, false);
          if (track && block.body + track.width + 2 <= view.byteLength) {
            const ticks = clusterTime + view.getInt16(block.body + track.width);
            const seconds = (ticks * scale) / 1e9;
            origin = origin ?? seconds;
            blocks.push({ time: seconds - origin, start: child.start, cluster: element, firstInCluster: first });
            first = false;
          }
        }
        inner = child.end;
      }
      element.end = inner;
    }
    at = element.end;
  }
  return { segment, blocks };
}

/**
 * The blocks' typical length (the gap between two), for when the last one ends.
 * @param {WebmBlock[]} blocks
 */
function blockSeconds(blocks) {
  return blocks.length > 1 ? Math.max(0, blocks[1].time - blocks[0].time) : 0;
}

/**
 * Seconds of audio the WebM `bytes` hold, from its first block to the end of its last (0 when it cannot tell).
 * @param {ArrayBuffer} bytes
 */
export function webmRecordedSeconds(bytes) {
  const parsed = readWebm(new DataView(bytes));
  if (!parsed?.blocks.length) return 0;
  return parsed.blocks[parsed.blocks.length - 1].time + blockSeconds(parsed.blocks);
}

/**
 * Write `size` as the element's size, in the width it has; false when it does not fit.
 * @param {DataView} view
 * @param {Element} element
 * @param {number} size
 */
function writeSize(view, element, size) {
  if (size >= 2 ** (7 * element.sizeWidth) - 1) return false;
  let value = size;
  for (let i = element.sizeWidth - 1; i >= 0; i -= 1) {
    view.setUint8(element.sizeAt + i, value % 256);
    value = Math.floor(value / 256);
  }
  view.setUint8(element.sizeAt, view.getUint8(element.sizeAt) | (0x80 >> (element.sizeWidth - 1)));
  return true;
}

/**
 * The WebM `bytes` cut to `seconds` (from its first block): the blocks that start at or after it go, and a Cluster
 * left with none goes whole. Null when there is nothing to cut, or the bytes are not WebM as recorders write it.
 * @param {ArrayBuffer} bytes
 * @param {number} seconds
 * @returns {Uint8Array<ArrayBuffer> | null}
 */
export function cutWebm(bytes, seconds) {
  const view = new DataView(bytes);
  const parsed = readWebm(view);
  if (!parsed) return null;
  const index = parsed.blocks.findIndex((block) => block.time >= seconds);
  if (index <= 0) return null; // nothing after the take, or nothing of it
  const block = parsed.blocks[index];
  const cut = block.firstInCluster ? block.cluster.start : block.start;
  // (anything after the Clusters, such as Cues, is dropped with them: a live recording has none)
  const out = new Uint8Array(bytes.slice(0, cut));
  const edit = new DataView(out.buffer);
  for (const element of [parsed.segment, block.firstInCluster ? null : block.cluster]) {
    if (element && !element.unknown && !writeSize(edit, element, cut - element.body)) return null;
  }
  return out;
}
