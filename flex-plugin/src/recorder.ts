/** The microphone: one take = a stream, its MediaRecorder and a level analyser. A take always ends with its
 * tracks stopped, so the browser's recording indicator goes away. */

// What the service accepts, best first: Chrome/Edge/Firefox record WebM or Ogg Opus, Safari records MP4/AAC.
const RECORDING_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4"];
const EXTENSIONS: Record<string, string> = { "audio/webm": "webm", "audio/ogg": "ogg", "audio/mp4": "m4a" };

export interface Take {
  /** Settles when the recorder stops; rejects when it fails mid-recording. */
  readonly finished: Promise<void>;
  /** Seconds recorded so far (frozen once stopped). */
  elapsed(): number;
  /** Input level 0..1. */
  level(): number;
  /** Stop, wait for the last chunk, release the microphone; the recording. */
  stop(): Promise<Blob>;
  /** Give the microphone back at once, dropping what was recorded. */
  release(): void;
}

export type OpenTake = () => Promise<Take>;

export function filenameFor(blob: Blob): string {
  const baseType = (blob.type || "").split(";")[0].trim();
  return `voice-note.${EXTENSIONS[baseType] || "webm"}`;
}

export function pickRecordingType(): string | null {
  const Recorder = globalThis.MediaRecorder;
  if (typeof Recorder?.isTypeSupported !== "function") return null;
  return RECORDING_TYPES.find((type) => Recorder.isTypeSupported(type)) || null;
}

/** Why this browser cannot record, or null when it can. */
export function unsupportedReason(): string | null {
  const canCapture = Boolean(globalThis.navigator?.mediaDevices?.getUserMedia);
  if (!canCapture && globalThis.isSecureContext === false) {
    return "Recording needs a secure page: open Flex over https://.";
  }
  if (!canCapture || typeof globalThis.MediaRecorder !== "function") {
    return "This browser cannot record audio. Use a current version of Chrome, Edge, Firefox or Safari.";
  }
  if (!pickRecordingType()) {
    return "This browser cannot record audio in a format the service accepts (WebM, Ogg or MP4).";
  }
  return null;
}

export function microphoneErrorMessage(error: unknown): string {
  const { name, message } = (error || {}) as { name?: string; message?: string };
  switch (name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access is blocked. Allow the microphone for this site (the icon in the address bar), then try again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect a microphone or headset and try again.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone could not be started. Another application may be using it.";
    default:
      return `The microphone could not be used${message ? `: ${message}` : "."}`;
  }
}

function readBytes(blob: Blob): Promise<ArrayBuffer> {
  if (typeof blob.arrayBuffer === "function") return blob.arrayBuffer();
  // jsdom's Blob (the unit tests) has no arrayBuffer(); FileReader is everywhere.
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result as ArrayBuffer);
    reader.onerror = () => reject(reader.error);
    reader.readAsArrayBuffer(blob);
  });
}

/**
 * The MP4 `blob` without the fragment headers (`moof` boxes) that no media data (`mdat`) follows.
 *
 * WebKit's last fragment, flushed by requestData() or stop(), comes with its `moof` written twice; decoders read
 * the first as the header of the data after the second and fail on the whole fragment (a second lost again). Only
 * top-level boxes are read and whole boxes dropped: the audio itself is untouched (no transcoding). Anything that
 * does not parse as MP4 boxes is returned as it was. (The same repair as the service's record-panel.js.)
 */
export async function withoutOrphanFragmentHeaders(blob: Blob): Promise<Blob> {
  const bytes = new DataView(await readBytes(blob));
  const boxes: Array<[string, number, number]> = []; // type, start, end
  for (let start = 0; start < bytes.byteLength;) {
    if (start + 8 > bytes.byteLength) return blob;
    let size = bytes.getUint32(start);
    const type = String.fromCharCode(...Array.from(new Uint8Array(bytes.buffer, start + 4, 4)));
    if (size === 1) {
      if (start + 16 > bytes.byteLength) return blob;
      size = bytes.getUint32(start + 8) * 2 ** 32 + bytes.getUint32(start + 12); // a 64-bit "largesize"
    } else if (size === 0) {
      size = bytes.byteLength - start; // "to the end of the file"
    }
    if (size < 8 || start + size > bytes.byteLength) return blob;
    boxes.push([type, start, start + size]);
    start += size;
  }
  const kept = boxes.filter(([type], index) => type !== "moof" || boxes[index + 1]?.[0] === "mdat");
  if (kept.length === boxes.length) return blob;
  return new Blob(kept.map(([, start, end]) => blob.slice(start, end)), { type: blob.type });
}

interface Levels {
  context: AudioContext;
  analyser: AnalyserNode;
  samples: Float32Array<ArrayBuffer>;
}

class MicrophoneTake implements Take {
  readonly finished: Promise<void>;
  private readonly stream: MediaStream;
  private readonly recorder: MediaRecorder;
  private readonly chunks: Blob[] = [];
  private startedAt: number | null = null;
  private stoppedAt: number | null = null;
  private levels: Levels | null;

  constructor(stream: MediaStream, mimeType: string) {
    this.stream = stream;
    this.recorder = new MediaRecorder(stream, { mimeType });
    this.recorder.addEventListener("dataavailable", (event) => {
      if (event.data?.size) this.chunks.push(event.data);
    });
    this.finished = new Promise((resolve, reject) => {
      this.recorder.addEventListener("stop", () => resolve());
      this.recorder.addEventListener("error", (event) => reject((event as unknown as { error?: Error }).error
        || new Error("recording failed")));
    });
    this.finished.catch(() => undefined); // observed by the panel; no unhandled rejection here
    this.recorder.addEventListener("start", () => {
      this.startedAt = performance.now();
    });
    // A timeslice keeps the data flowing, so a crash mid-recording loses at most a second.
    this.recorder.start(1000);
    this.levels = this.openAnalyser();
  }

  private openAnalyser(): Levels | null {
    const Context = globalThis.AudioContext
      || (globalThis as unknown as { webkitAudioContext?: typeof AudioContext }).webkitAudioContext;
    if (!Context) return null;
    try {
      const context = new Context();
      const analyser = context.createAnalyser();
      analyser.fftSize = 1024;
      context.createMediaStreamSource(this.stream).connect(analyser);
      return { context, analyser, samples: new Float32Array(new ArrayBuffer(analyser.fftSize * 4)) };
    } catch {
      return null; // the meter is a nicety; recording works without it
    }
  }

  level(): number {
    if (!this.levels) return 0;
    const { analyser, samples } = this.levels;
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (let i = 0; i < samples.length; i += 1) sum += samples[i] * samples[i];
    return Math.min(1, Math.sqrt(sum / samples.length) * 4);
  }

  elapsed(): number {
    if (this.startedAt == null) return 0;
    return ((this.stoppedAt ?? performance.now()) - this.startedAt) / 1000;
  }

  async stop(): Promise<Blob> {
    if (this.recorder.state !== "inactive") {
      this.stoppedAt = performance.now();
      // WebKit (Safari's engine) writes MP4 in one-second fragments and stop() alone drops the fragment in
      // progress: up to a second lost at the end. Asking for the data first makes it flush that fragment.
      this.recorder.requestData();
      this.recorder.stop();
    }
    try {
      await this.finished;
    } finally {
      this.release();
    }
    // Firefox's mimeType stays empty until the start event, and its chunks say "audio/ogg; codecs=opus".
    const type = this.recorder.mimeType || this.chunks[0]?.type || "audio/webm";
    const blob = new Blob(this.chunks, { type });
    return type.startsWith("audio/mp4") ? withoutOrphanFragmentHeaders(blob) : blob;
  }

  release(): void {
    if (this.recorder.state !== "inactive") {
      try {
        this.recorder.stop();
      } catch {
        // already stopping
      }
    }
    this.stream.getTracks().forEach((track) => track.stop());
    if (this.levels) {
      this.levels.context.close().catch(() => undefined);
      this.levels = null;
    }
  }
}

/** Ask for the microphone and start recording in the best type this browser has. */
export const openMicrophoneTake: OpenTake = async () => {
  const mimeType = pickRecordingType();
  if (!mimeType) throw new Error("no supported recording type");
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  });
  try {
    return new MicrophoneTake(stream, mimeType);
  } catch (error) {
    stream.getTracks().forEach((track) => track.stop());
    throw error;
  }
};
