/**
 * The conversation's audio messages, fetched once per conversation for every bubble that shows one, polled
 * quickly while a row is being converted or transcribed (or a bubble waits for a message the service has not listed yet) and
 * slowly otherwise, and only while some bubble is on screen.
 */
import type { AudioMessage, AudioService } from "@shared/api.js";
import { isAbortError } from "@shared/errors.js";
import { inProgress } from "@shared/voice-notes.js";

export interface ConversationAudio {
  loaded: boolean;
  error: string | null;
  byMessage: Map<string, AudioMessage[]>;
}

type Listener = (state: ConversationAudio) => void;

interface Entry {
  state: ConversationAudio;
  listeners: Set<Listener>;
  timer: ReturnType<typeof setTimeout> | null;
  inFlight: AbortController | null;
  /** Message SIDs a bubble asked about that the service has not listed yet, with when they were first asked. */
  waiting: Map<string, number>;
}

export interface AudioStoreOptions {
  busyPollMs?: number;
  idlePollMs?: number;
  /** How long to keep polling fast for a message the service does not know (its webhook may still be coming). */
  waitForUnknownMs?: number;
  now?: () => number;
}

export class AudioStore {
  private readonly service: AudioService;
  private readonly entries = new Map<string, Entry>();
  private readonly busyPollMs: number;
  private readonly idlePollMs: number;
  private readonly waitForUnknownMs: number;
  private readonly now: () => number;

  constructor(service: AudioService, options: AudioStoreOptions = {}) {
    this.service = service;
    this.busyPollMs = options.busyPollMs ?? 1500;
    this.idlePollMs = options.idlePollMs ?? 15000;
    this.waitForUnknownMs = options.waitForUnknownMs ?? 20000;
    this.now = options.now ?? (() => Date.now());
  }

  get(conversationSid: string): ConversationAudio {
    return this.entry(conversationSid).state;
  }

  /** Listen to a conversation; the first listener starts the polling, the last one to leave stops it. */
  subscribe(conversationSid: string, listener: Listener, messageSid?: string): () => void {
    const entry = this.entry(conversationSid);
    const first = entry.listeners.size === 0;
    entry.listeners.add(listener);
    let ask = first && !entry.inFlight;
    if (messageSid && !entry.state.byMessage.has(messageSid) && !entry.waiting.has(messageSid)) {
      entry.waiting.set(messageSid, this.now());
      // A new message on screen that the last answer did not have: ask now rather than at the next idle poll.
      ask = ask || (entry.state.loaded && !entry.inFlight);
    }
    if (ask) this.refresh(conversationSid);
    return () => {
      entry.listeners.delete(listener);
      if (!entry.listeners.size) this.stop(entry);
    };
  }

  async refresh(conversationSid: string): Promise<void> {
    const entry = this.entry(conversationSid);
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = null;
    entry.inFlight?.abort();
    const controller = new AbortController();
    entry.inFlight = controller;
    try {
      const messages = await this.service.list(conversationSid, controller.signal);
      if (controller.signal.aborted) return;
      const byMessage = new Map<string, AudioMessage[]>();
      for (const message of messages) {
        if (!message.message_sid) continue;
        const rows = byMessage.get(message.message_sid) ?? [];
        rows.push(message);
        byMessage.set(message.message_sid, rows);
      }
      for (const sid of byMessage.keys()) entry.waiting.delete(sid);
      entry.state = { loaded: true, error: null, byMessage };
    } catch (error) {
      if (isAbortError(error) || controller.signal.aborted) return;
      entry.state = { ...entry.state, loaded: true, error: (error as Error).message };
    } finally {
      if (entry.inFlight === controller) entry.inFlight = null;
    }
    entry.listeners.forEach((listener) => listener(entry.state));
    this.schedule(conversationSid, entry);
  }

  private busy(entry: Entry): boolean {
    const now = this.now();
    for (const [sid, since] of entry.waiting) {
      if (now - since > this.waitForUnknownMs) entry.waiting.delete(sid);
    }
    if (entry.waiting.size) return true;
    for (const rows of entry.state.byMessage.values()) {
      if (rows.some(inProgress)) return true;
    }
    return false;
  }

  private schedule(conversationSid: string, entry: Entry): void {
    if (!entry.listeners.size) return;
    const delay = this.busy(entry) ? this.busyPollMs : this.idlePollMs;
    entry.timer = setTimeout(() => {
      entry.timer = null;
      // A hidden tab has nobody listening: look again when it is shown.
      if (typeof document !== "undefined" && document.hidden) this.schedule(conversationSid, entry);
      else this.refresh(conversationSid);
    }, delay);
  }

  private stop(entry: Entry): void {
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = null;
    entry.inFlight?.abort();
    entry.inFlight = null;
    entry.waiting.clear();
  }

  private entry(conversationSid: string): Entry {
    let entry = this.entries.get(conversationSid);
    if (!entry) {
      entry = {
        state: { loaded: false, error: null, byMessage: new Map() },
        listeners: new Set(),
        timer: null,
        inFlight: null,
        waiting: new Map(),
      };
      this.entries.set(conversationSid, entry);
    }
    return entry;
  }
}
