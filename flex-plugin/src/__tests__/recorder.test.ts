import { withoutOrphanFragmentHeaders } from "../recorder";

/** A top-level MP4 box: 32-bit size, 4-letter type, `payload` bytes of `fill`. */
function box(type: string, payload: number, fill = 0): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(new ArrayBuffer(8 + payload)).fill(fill);
  new DataView(bytes.buffer).setUint32(0, bytes.length);
  bytes.set(Array.from(type, (c) => c.charCodeAt(0)), 4);
  return bytes;
}

async function boxTypes(blob: Blob): Promise<string[]> {
  const bytes = new Uint8Array(await new Promise<ArrayBuffer>((resolve) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result as ArrayBuffer);
    reader.readAsArrayBuffer(blob);
  }));
  const view = new DataView(bytes.buffer);
  const types = [];
  for (let start = 0; start < bytes.length; start += view.getUint32(start)) {
    types.push(String.fromCharCode(...Array.from(bytes.slice(start + 4, start + 8))));
  }
  return types;
}

test("WebKit's last fragment loses its duplicated header, and nothing else", async () => {
  // What WebKitGTK wrote for a 5 s take: one-second fragments, the last one's moof twice.
  const recorded = new Blob([box("ftyp", 24), box("moov", 100), box("moof", 40, 1), box("mdat", 300),
    box("moof", 30, 2), box("moof", 30, 3), box("mdat", 200)], { type: "audio/mp4; codecs=mp4a" });
  const repaired = await withoutOrphanFragmentHeaders(recorded);
  expect(await boxTypes(repaired)).toEqual(["ftyp", "moov", "moof", "mdat", "moof", "mdat"]);
  expect(repaired.size).toBe(recorded.size - 38);
  expect(repaired.type).toBe("audio/mp4; codecs=mp4a");
});

test("a well-formed or unparseable recording is returned as it was", async () => {
  const whole = new Blob([box("ftyp", 24), box("moof", 40), box("mdat", 300)], { type: "audio/mp4" });
  expect(await withoutOrphanFragmentHeaders(whole)).toBe(whole);
  const truncated = new Blob([box("ftyp", 24), box("moof", 40).buffer.slice(0, 20)], { type: "audio/mp4" });
  expect(await withoutOrphanFragmentHeaders(truncated)).toBe(truncated);
});
