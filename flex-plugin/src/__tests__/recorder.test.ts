// The agent console's recorder (webhook_app/static/shared/recorder.js): the console and the plugin both record with it.
import { mp4RecordedSeconds as recordedSeconds } from "@shared/mp4.js";
import { filenameFor, MP4_CATCH_UP_MS, pickRecordingType, Take } from "@shared/recorder.js";
import { readWebm, webmRecordedSeconds } from "@shared/webm.js";

import { bytesOf, FRAME, fragment, initSegment, TIMESCALE, topLevel } from "../testing/mp4";
import { recording as webmRecording } from "../testing/webm";

const openMicrophoneTake = (options?: { catchUpMs?: number }) => Take.open(pickRecordingType(), options);

/**
 * MediaRecorder as WebKitGTK behaves (see mp4.js): it writes a fragment per second and hands it over late; the
 * test decides which chunks arrive when. Firefox's and Chromium's recorders hand everything over at stop().
 */
class FakeRecorder extends EventTarget {
  static supported = ["audio/mp4"];
  static last: FakeRecorder;
  static isTypeSupported(type: string): boolean {
    return FakeRecorder.supported.includes(type);
  }

  state: RecordingState = "inactive";
  mimeType = "";
  requests = 0;
  /** What requestData() and stop() hand over at once (WebKit: only sometimes the fragment in progress). */
  onRequest: Array<Uint8Array<ArrayBuffer>[]> = [];
  onStop: Uint8Array<ArrayBuffer>[] = [];

  constructor(readonly stream: unknown, readonly options: { mimeType: string }) {
    super();
    FakeRecorder.last = this;
  }

  start(): void {
    this.state = "recording";
    this.mimeType = this.options.mimeType;
    setTimeout(() => this.dispatchEvent(new Event("start")));
  }

  hand(parts: Uint8Array<ArrayBuffer>[]): void {
    const event = Object.assign(new Event("dataavailable"), { data: new Blob(parts, { type: this.mimeType }) });
    this.dispatchEvent(event);
  }

  requestData(): void {
    this.requests += 1;
    const parts = this.onRequest.shift();
    if (parts) setTimeout(() => this.hand(parts));
  }

  stop(): void {
    if (this.state === "inactive") return;
    this.state = "inactive";
    setTimeout(() => {
      if (this.onStop.length) this.hand(this.onStop);
      this.dispatchEvent(new Event("stop"));
    });
  }
}

const tracks: Array<{ stopped: boolean }> = [];
let clockOffset = 0;
const realNow = performance.now.bind(performance);

beforeEach(() => {
  FakeRecorder.supported = ["audio/mp4"];
  tracks.length = 0;
  clockOffset = 0;
  jest.spyOn(performance, "now").mockImplementation(() => realNow() + clockOffset);
  (globalThis as { MediaRecorder: unknown }).MediaRecorder = FakeRecorder;
  Object.defineProperty(navigator, "mediaDevices", {
    configurable: true,
    value: {
      getUserMedia: async () => {
        const track = { stopped: false, stop() { this.stopped = true; } };
        tracks.push(track);
        return { getTracks: () => [track] };
      },
    },
  });
});

afterEach(() => jest.restoreAllMocks());

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const second = (n: number) => fragment({ first: n * 43, frames: 43 }); // the n-th second's fragment

/** A take that has been recording for `seconds` (its clock moved on), with `arrived` handed over meanwhile. */
async function recordingFor(seconds: number, arrived: Uint8Array<ArrayBuffer>[], catchUpMs?: number): Promise<Take> {
  const take = await openMicrophoneTake(catchUpMs === undefined ? {} : { catchUpMs });
  await wait(5); // the start event
  FakeRecorder.last.hand(arrived);
  clockOffset += seconds * 1000;
  return take;
}

test("WebKit: after Stop the take records on until its end has arrived, then is cut back to its length", async () => {
  // 2.3 s recorded; WebKit has handed over only the first second. The next two come late, on their own.
  const take = await recordingFor(2.3, [...initSegment(), ...second(0)]);
  const recorder = FakeRecorder.last;
  const stopping = take.stop();
  await wait(20);
  expect(recorder.state).toBe("recording"); // still recording: the take's end has not arrived yet
  expect(tracks[0].stopped).toBe(false);
  recorder.hand(second(1));
  await wait(20);
  expect(recorder.state).toBe("recording"); // 2 s of 2.3: not yet
  recorder.onStop = second(3); // what stop() flushes: after the take, cut away
  recorder.hand(second(2));
  const blob = await stopping;
  expect(recorder.state).toBe("inactive");
  expect(tracks[0].stopped).toBe(true); // the microphone goes back
  expect(blob.type).toBe("audio/mp4");
  expect(filenameFor(blob)).toBe("voice-note.m4a");
  const bytes = await bytesOf(blob);
  const seconds = recordedSeconds(bytes.buffer as ArrayBuffer);
  expect(seconds).toBeGreaterThanOrEqual(take.elapsed() - 0.03);
  expect(seconds).toBeLessThan(take.elapsed() + FRAME / TIMESCALE);
  // (the take's clock runs on real time too: a loaded machine adds a little to the 2.3 s)
  expect(take.elapsed()).toBeGreaterThanOrEqual(2.3);
  expect(take.elapsed()).toBeLessThan(2.9);
  expect(topLevel(bytes).filter((b) => b.type === "moof")).toHaveLength(3);
});

test("WebKit: the take's end that never arrives is waited for at most the catch-up time", async () => {
  const take = await recordingFor(2.5, [...initSegment(), ...second(0)], 150);
  const recorder = FakeRecorder.last;
  const [moof, mdat] = second(1);
  recorder.onRequest = [[], [moof, moof, mdat]]; // at stop(), its last fragment's header written twice
  const started = realNow();
  const blob = await take.stop();
  const waited = realNow() - started;
  expect(waited).toBeGreaterThanOrEqual(140);
  expect(waited).toBeLessThan(1000);
  const bytes = await bytesOf(blob);
  expect(topLevel(bytes).map((b) => b.type)).toEqual(["ftyp", "moov", "moof", "mdat", "moof", "mdat"]);
  expect(recordedSeconds(bytes.buffer as ArrayBuffer)).toBeCloseTo((86 * FRAME) / TIMESCALE, 6); // all there was
  expect(MP4_CATCH_UP_MS).toBe(2500);
});

test("WebKit: a take whose end is already there stops at once", async () => {
  const take = await recordingFor(1.9, [...initSegment(), ...second(0), ...second(1)]);
  const started = realNow();
  const bytes = await bytesOf(await take.stop());
  expect(realNow() - started).toBeLessThan(500);
  const seconds = recordedSeconds(bytes.buffer as ArrayBuffer);
  expect(seconds).toBeGreaterThanOrEqual(1.9 - 0.03);
  expect(seconds).toBeLessThan(take.elapsed() + FRAME / TIMESCALE);
});

test("WebKit: releasing the take while it waits for its end gives the microphone back at once", async () => {
  const take = await recordingFor(2.5, [...initSegment(), ...second(0)]);
  const started = realNow();
  const stopping = take.stop();
  await wait(20);
  take.release(); // the agent pressed Cancel meanwhile
  await stopping;
  expect(realNow() - started).toBeLessThan(1000);
  expect(tracks[0].stopped).toBe(true);
});

test("Firefox's WebM: after Stop the take records on until its end has arrived, then is cut back to it", async () => {
  FakeRecorder.supported = ["audio/webm;codecs=opus"];
  // 3 s written; 2.3 s recorded when Stop is pressed, of which only the first 2 s have come out of the encoder.
  const whole = webmRecording(3);
  const at2s = readWebm(new DataView(whole.buffer as ArrayBuffer))!.blocks.find((block) => block.time >= 2)!.start;
  const take = await openMicrophoneTake();
  await wait(5);
  const recorder = FakeRecorder.last;
  recorder.hand([whole.slice(0, at2s)]);
  clockOffset += 2300;
  recorder.onRequest = [[], [whole.slice(at2s)]]; // the queued audio comes with the second request
  const blob = await take.stop();
  expect(recorder.requests).toBeGreaterThanOrEqual(2);
  expect(tracks[0].stopped).toBe(true);
  const seconds = webmRecordedSeconds((await bytesOf(blob)).buffer as ArrayBuffer);
  expect(seconds).toBeGreaterThanOrEqual(take.elapsed() - 0.02);
  expect(seconds).toBeLessThanOrEqual(take.elapsed() + 0.02); // whole 20 ms blocks
  expect(seconds).toBeLessThan(2.9);
  expect(blob.type).toBe("audio/webm;codecs=opus");
});

test("Firefox's WebM: an end that never arrives is waited for at most the catch-up time", async () => {
  FakeRecorder.supported = ["audio/webm;codecs=opus"];
  const whole = webmRecording(2);
  const take = await openMicrophoneTake({ catchUpMs: 150 });
  await wait(5);
  FakeRecorder.last.hand([whole]);
  clockOffset += 2300;
  const started = realNow();
  const blob = await take.stop();
  expect(realNow() - started).toBeGreaterThanOrEqual(140);
  expect(realNow() - started).toBeLessThan(1000);
  expect(webmRecordedSeconds((await bytesOf(blob)).buffer as ArrayBuffer)).toBeCloseTo(2, 6); // all there was
});

test("Firefox's Ogg and anything else: Stop asks for the data and stops, no waiting, no rewriting", async () => {
  FakeRecorder.supported = ["audio/ogg;codecs=opus"];
  const take = await openMicrophoneTake();
  await wait(5);
  const recorder = FakeRecorder.last;
  recorder.mimeType = ""; // Firefox: empty until its chunks say "audio/ogg; codecs=opus"
  const ogg = new Blob([new Uint8Array(3000)], { type: "audio/ogg; codecs=opus" });
  recorder.dispatchEvent(Object.assign(new Event("dataavailable"), { data: ogg }));
  const blob = await take.stop();
  expect(recorder.requests).toBe(1);
  expect(blob.type).toBe("audio/ogg; codecs=opus");
  expect(blob.size).toBe(3000);
  expect(filenameFor(blob)).toBe("voice-note.ogg");
  expect(tracks[0].stopped).toBe(true);
});
