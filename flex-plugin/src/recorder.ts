/** The microphone: one take = a stream, its MediaRecorder and a level analyser. A take always ends with its
 * tracks stopped, so the browser's recording indicator goes away. */

import { mp4RecordedSeconds, readBytes, repairedMp4 } from "./mp4";
import { cutWebm, webmRecordedSeconds } from "./webm";

// What the service accepts, best first: Chrome/Edge/Firefox record WebM or Ogg Opus, Safari records MP4/AAC.
const RECORDING_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4"];
const EXTENSIONS: Record<string, string> = { "audio/webm": "webm", "audio/ogg": "ogg", "audio/mp4": "m4a" };
// WebKit hands an MP4 fragment over up to two seconds after its audio (see mp4.ts): after Stop the take records on
// at most this long for its end to arrive. A frame (23 ms of AAC) short of the take counts as whole.
export const MP4_CATCH_UP_MS = 2500;
const MP4_END_TOLERANCE_S = 0.03;
// Firefox drops at stop() the audio still queued for its encoder (0.1-0.3 s under load, see webm.ts): after Stop a
// WebM take records on at most this long, asking for its data every WEBM_POLL_MS, until blocks covering it arrived.
export const WEBM_CATCH_UP_MS = 1000;
const WEBM_POLL_MS = 100;
const WEBM_END_TOLERANCE_S = 0.02;

export interface Take {
  /** Settles when the recorder stops; rejects when it fails mid-recording. */
  readonly finished: Promise<void>;
  /** Seconds recorded so far (frozen once stopped). */
  elapsed(): number;
  /** Input level 0..1. */
  level(): number;
  /** Stop, wait for the last chunk (in WebKit up to MP4_CATCH_UP_MS), release the microphone; the recording. */
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

  private readonly catchUpMs: number;
  private readonly requestedType: string;

  constructor(stream: MediaStream, mimeType: string, catchUpMs = MP4_CATCH_UP_MS) {
    this.stream = stream;
    this.catchUpMs = catchUpMs;
    this.requestedType = mimeType;
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
    const type = this.type();
    const mp4 = type.startsWith("audio/mp4");
    const webm = type.startsWith("audio/webm");
    if (this.recorder.state !== "inactive") {
      this.stoppedAt = performance.now();
      // WebKit's MP4 lags a fragment behind (see mp4.ts), Firefox's encoder a little (webm.ts): record on until
      // the take's length has arrived.
      if (mp4) await this.fragmentsCovering(this.elapsed());
      if (webm) await this.blocksCovering(this.elapsed());
      if (this.recorderState() !== "inactive") { // (a Cancel meanwhile has stopped it)
        this.recorder.requestData(); // flushes what a recorder holds back (Safari's fragment in progress)
        this.recorder.stop();
      }
    }
    try {
      await this.finished;
    } finally {
      this.release();
    }
    const blob = new Blob(this.chunks, { type: this.type() });
    // Cut back to the take (whole AAC frames or Opus blocks): what was recorded after Stop only carried its end.
    if (mp4) return repairedMp4(blob, this.elapsed());
    if (webm) {
      const cut = cutWebm(await readBytes(blob), this.elapsed());
      return cut ? new Blob([cut], { type: blob.type }) : blob;
    }
    return blob;
  }

  /** The recorder's state now (a method, so the type checker does not narrow it across awaits). */
  private recorderState(): RecordingState {
    return this.recorder.state;
  }

  private type(): string {
    // Firefox's mimeType stays empty until the start event, and its chunks say "audio/ogg; codecs=opus".
    return this.recorder.mimeType || this.chunks[0]?.type || this.requestedType;
  }

  /** Wait (at most catchUpMs) until the chunks hold `seconds` of audio, or the recorder stopped (a Cancel). */
  private async fragmentsCovering(seconds: number): Promise<void> {
    const deadline = performance.now() + this.catchUpMs;
    const covered = async () => await mp4RecordedSeconds(new Blob(this.chunks)) >= seconds - MP4_END_TOLERANCE_S;
    if (await covered()) return;
    this.recorder.requestData();
    while (this.recorderState() === "recording" && performance.now() < deadline) {
      await this.dataOrStop(deadline - performance.now());
      if (await covered()) return;
    }
  }

  /** Ask for the data every WEBM_POLL_MS (at most catchUpMs for MP4 and WEBM_CATCH_UP_MS) until it holds `seconds`. */
  private async blocksCovering(seconds: number): Promise<void> {
    const deadline = performance.now() + Math.min(this.catchUpMs, WEBM_CATCH_UP_MS);
    const covered = async () => webmRecordedSeconds(await readBytes(new Blob(this.chunks))) >= seconds - WEBM_END_TOLERANCE_S;
    while (this.recorderState() === "recording" && performance.now() < deadline) {
      this.recorder.requestData();
      await this.dataOrStop(Math.min(WEBM_POLL_MS, deadline - performance.now()));
      if (await covered()) return;
    }
  }

  /** Settles at the recorder's next chunk, its stop (a Cancel), or after `ms`, whichever comes first. */
  private dataOrStop(ms: number): Promise<void> {
    const recorder = this.recorder;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms));
      function done() {
        clearTimeout(timer);
        recorder.removeEventListener("dataavailable", done);
        recorder.removeEventListener("stop", done);
        resolve();
      }
      recorder.addEventListener("dataavailable", done);
      recorder.addEventListener("stop", done);
    });
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
export const openMicrophoneTake = async (options: { catchUpMs?: number } = {}): Promise<Take> => {
  const mimeType = pickRecordingType();
  if (!mimeType) throw new Error("no supported recording type");
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  });
  try {
    return new MicrophoneTake(stream, mimeType, options.catchUpMs);
  } catch (error) {
    stream.getTracks().forEach((track) => track.stop());
    throw error;
  }
};
