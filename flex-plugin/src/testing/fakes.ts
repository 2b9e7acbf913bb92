/**
 * Flex's boundary, faked at its narrowest point for the unit tests: a manager (configuration, token, store),
 * a task, the service's HTTP answers (fetch and XMLHttpRequest) and a microphone take.
 */
import { FlexManagerLike } from "../config";
import type { TakeControls } from "@shared/recorder.js";

export const CONVERSATION = "CH0123456789abcdef0123456789abcdef";
export const OTHER_CONVERSATION = "CHfedcba9876543210fedcba9876543210";
export const SERVICE = "https://audio.example.com";

export interface FakeManager extends FlexManagerLike {
  token: string;
}

export function fakeManager(options: { serviceUrl?: string | null; onServiceConfiguration?: boolean } = {}): FakeManager {
  const url = options.serviceUrl === undefined ? SERVICE : options.serviceUrl;
  const section = url === null ? {} : { audio_messages: { service_url: url } };
  const manager: FakeManager = {
    token: "token-1",
    configuration: options.onServiceConfiguration ? {} : section,
    serviceConfiguration: { ui_attributes: options.onServiceConfiguration ? section : {} },
    user: { token: "user-token" },
    store: { getState: () => ({ flex: { session: { ssoTokenPayload: { token: manager.token } } } }) },
  };
  return manager;
}

export function chatTask(conversationSid = CONVERSATION) {
  return { taskChannelUniqueName: "chat", attributes: { conversationSid } };
}

export const WHATSAPP_SETTINGS = {
  channel: "whatsapp", sending_enabled: true, max_bytes: 16 * 1024 * 1024, max_duration_s: 900, bitrate_kbps: 64,
};

type Route = (url: string, init: RequestInit | undefined) => { status: number; body: unknown } | Error;

/** `fetch` answering from `route`; every call is kept in `calls`. */
export function fakeFetch(route: Route) {
  const calls: Array<{ url: string; headers: Record<string, string> }> = [];
  const fetchMock = jest.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input);
    calls.push({ url, headers: { ...(init?.headers as Record<string, string>) } });
    const answer = route(url, init);
    if (answer instanceof Error) throw answer;
    return {
      ok: answer.status >= 200 && answer.status < 300,
      status: answer.status,
      text: async () => JSON.stringify(answer.body),
    } as Response;
  });
  (globalThis as { fetch: unknown }).fetch = fetchMock;
  return calls;
}

/** XMLHttpRequest that records what the panel sends; the test answers with `respond`. */
export class FakeXhr {
  static sent: FakeXhr[] = [];
  method = "";
  url = "";
  headers: Record<string, string> = {};
  body: FormData | null = null;
  status = 0;
  responseText = "";
  aborted = false;
  private listeners: Record<string, Array<() => void>> = {};
  private uploadListeners: Array<(event: { lengthComputable: boolean; loaded: number; total: number }) => void> = [];
  upload = {
    addEventListener: (_: string, listener: (event: { lengthComputable: boolean; loaded: number; total: number }) => void) => {
      this.uploadListeners.push(listener);
    },
  };

  static install(): void {
    FakeXhr.sent = [];
    (globalThis as { XMLHttpRequest: unknown }).XMLHttpRequest = FakeXhr;
  }

  open(method: string, url: string): void {
    this.method = method;
    this.url = url;
  }

  setRequestHeader(name: string, value: string): void {
    this.headers[name] = value;
  }

  addEventListener(name: string, listener: () => void): void {
    (this.listeners[name] ||= []).push(listener);
  }

  send(body: FormData): void {
    this.body = body;
    FakeXhr.sent.push(this);
  }

  abort(): void {
    this.aborted = true;
    this.emit("abort");
  }

  progress(fraction: number): void {
    this.uploadListeners.forEach((listener) => listener({ lengthComputable: true, loaded: fraction * 1000, total: 1000 }));
  }

  respond(status: number, body: unknown): void {
    this.status = status;
    this.responseText = JSON.stringify(body);
    this.emit("load");
  }

  private emit(name: string): void {
    (this.listeners[name] || []).forEach((listener) => listener());
  }
}

/** A microphone take whose clock the test moves. */
export class FakeTake implements TakeControls {
  seconds = 0;
  released = false;
  stopped = false;
  readonly finished: Promise<void>;
  private fail: (error: Error) => void = () => undefined;
  private finish: () => void = () => undefined;

  constructor() {
    this.finished = new Promise((resolve, reject) => {
      this.finish = resolve;
      this.fail = reject;
    });
    this.finished.catch(() => undefined);
  }

  elapsed(): number {
    return this.seconds;
  }

  level(): number {
    return 0.5;
  }

  private gate: Promise<void> | null = null;

  /** Make stop() wait (as WebKit's take does for its last MP4 fragment) until the returned function is called. */
  holdStop(): () => void {
    let open: () => void = () => undefined;
    this.gate = new Promise((resolve) => {
      open = resolve;
    });
    return open;
  }

  async stop(): Promise<Blob> {
    this.stopped = true;
    if (this.gate) await Promise.race([this.gate, this.finished]);
    this.finish();
    this.release();
    return new Blob([new Uint8Array(2048)], { type: "audio/webm;codecs=opus" });
  }

  release(): void {
    this.released = true;
    this.finish(); // a released recorder stops
  }

  crash(message: string): void {
    this.fail(new Error(message));
  }
}

export function microphone() {
  const takes: FakeTake[] = [];
  let denial: Error | null = null;
  const openTake = jest.fn(async () => {
    if (denial) throw denial;
    const take = new FakeTake();
    takes.push(take);
    return take;
  });
  return {
    openTake,
    takes,
    deny(name: string) {
      denial = Object.assign(new Error("denied"), { name });
    },
  };
}
