/** The audio service's agent API (see the service's HTTP interface): settings, the audio list, the upload. */

export interface AudioSettings {
  channel: string;
  sending_enabled: boolean;
  max_bytes: number | null;
  max_duration_s: number | null;
  bitrate_kbps: number | null;
}

export type AudioStatus = "queued" | "downloading" | "transcoding" | "sending" | "ready" | "failed";

/** One stretch of speech, in seconds from the start of the MP3. */
export interface TranscriptSegment {
  start: number;
  end: number;
  text: string;
}

export type TranscriptStatus = "queued" | "running" | "done" | "no_speech" | "failed";

/** An audio message's transcript, where its channel transcribes. */
export interface Transcript {
  status: TranscriptStatus;
  text: string;
  language: string | null;
  segments: TranscriptSegment[];
  model: string | null;
  /** The reason, when failed. */
  error?: string;
  /** Retention deleted the text. */
  deleted_at?: string;
}

export interface AudioMessage {
  audit_id: number;
  direction: "inbound" | "outbound";
  channel: string;
  conversation_sid: string;
  message_sid: string | null;
  media_sid: string | null;
  status: AudioStatus;
  duration_s: number | null;
  playback_url?: string;
  error?: string;
  /** Only where the channel transcribes. */
  transcript?: Transcript;
  created_at?: string;
}

export interface UploadResult {
  audit_id: number;
  message_sid: string;
  media_sid: string;
  duration_s: number;
  size_bytes: number;
  content_type: string;
}

export class ServiceError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(message: string, status = 0, code = "error") {
    super(message);
    this.name = "ServiceError";
    this.status = status;
    this.code = code;
  }
}

export function isAbort(error: unknown): boolean {
  return (error as { name?: string } | null)?.name === "AbortError";
}

function abortError(): Error {
  const error = new Error("cancelled");
  error.name = "AbortError";
  return error;
}

function errorFromBody(status: number, text: string): ServiceError {
  try {
    const error = JSON.parse(text)?.error;
    if (error?.message) return new ServiceError(error.message, status, error.code || "error");
  } catch {
    // not JSON: a proxy's error page, say
  }
  return new ServiceError(`The audio service answered with HTTP ${status}. Try again in a moment.`, status);
}

export class AudioService {
  readonly baseUrl: string;
  private readonly getToken: () => string | Promise<string>;

  constructor(baseUrl: string, getToken: () => string | Promise<string>) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.getToken = getToken;
  }

  url(conversationSid: string, suffix: "audio" | "audio-settings"): string {
    return `${this.baseUrl}/api/v1/conversations/${encodeURIComponent(conversationSid)}/${suffix}`;
  }

  private networkError(): ServiceError {
    return new ServiceError(
      `Could not reach the audio service at ${this.baseUrl}. Check the connection, or ask an administrator to check `
        + "the service and that it allows Flex's origin.",
      0,
      "network_error",
    );
  }

  private async token(): Promise<string> {
    try {
      return await this.getToken();
    } catch (error) {
      throw new ServiceError((error as Error)?.message || "No Flex token.", 401, "no_token");
    }
  }

  private async getJson<T>(url: string, signal?: AbortSignal): Promise<T> {
    const token = await this.token();
    let response: Response;
    try {
      response = await fetch(url, { headers: { Authorization: `Bearer ${token}`, Accept: "application/json" }, signal });
    } catch (error) {
      if (isAbort(error)) throw error;
      throw this.networkError();
    }
    const text = await response.text();
    if (!response.ok) throw errorFromBody(response.status, text);
    return JSON.parse(text) as T;
  }

  settings(conversationSid: string, signal?: AbortSignal): Promise<AudioSettings> {
    return this.getJson<AudioSettings>(this.url(conversationSid, "audio-settings"), signal);
  }

  async list(conversationSid: string, signal?: AbortSignal): Promise<AudioMessage[]> {
    const body = await this.getJson<{ audio_messages?: AudioMessage[] }>(this.url(conversationSid, "audio"), signal);
    return body.audio_messages ?? [];
  }

  /** POST the recording with XMLHttpRequest, because fetch still cannot report upload progress. */
  async upload(
    conversationSid: string,
    recording: { blob: Blob; filename: string; idempotencyKey: string },
    { onProgress, signal }: { onProgress?: (fraction: number) => void; signal: AbortSignal },
  ): Promise<UploadResult> {
    const token = await this.token();
    // Cancelled while Flex was handing out the token: the abort event has fired already.
    if (signal.aborted) throw abortError();
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", this.url(conversationSid, "audio"));
      xhr.setRequestHeader("Authorization", `Bearer ${token}`);
      // One key per recording: a retried send of the same clip is answered, never posted twice.
      xhr.setRequestHeader("Idempotency-Key", recording.idempotencyKey);
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable && onProgress) onProgress(event.loaded / event.total);
      });
      xhr.addEventListener("load", () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          try {
            resolve(JSON.parse(xhr.responseText));
          } catch {
            resolve({} as UploadResult);
          }
        } else {
          reject(errorFromBody(xhr.status, xhr.responseText));
        }
      });
      xhr.addEventListener("error", () => reject(this.networkError()));
      xhr.addEventListener("abort", () => reject(abortError()));
      signal.addEventListener("abort", () => xhr.abort(), { once: true });
      const form = new FormData();
      form.append("audio", recording.blob, recording.filename);
      xhr.send(form);
    });
  }
}
