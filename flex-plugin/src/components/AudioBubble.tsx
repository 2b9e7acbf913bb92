/**
 * A voice note in Flex's message list, played from the service's normalized MP3: its status while it is being
 * converted, the reason when it failed, 1x / 1.5x / 2x, its duration, and its transcript under the player where
 * the channel transcribes (Transcript.tsx). Added to MessageBubble.Content; where the
 * service knows nothing of the message this renders nothing and Flex's own attachment stays.
 */
import * as React from "react";
import { Box } from "@twilio-paste/core/box";
import { Button } from "@twilio-paste/core/button";
import { Spinner } from "@twilio-paste/core/spinner";
import { Text } from "@twilio-paste/core/text";

import type { AudioMessage } from "@shared/api.js";
import { formatDuration } from "@shared/format.js";
import { IN_PROGRESS, setPlaybackRate, SPEEDS, STATUS_TEXT } from "@shared/voice-notes.js";

import { ConversationAudio } from "../audioStore";
import { Runtime } from "../runtime";
import { PluginTheme } from "./PluginTheme";
import { Transcript } from "./Transcript";

/** The slice of Flex's MessageState the bubble reads (`message.source` is the Conversations SDK's Message). */
export interface BubbleMessage {
  isFromMe?: boolean;
  source?: {
    sid?: string | null;
    body?: string | null;
    attachedMedia?: Array<{ sid?: string | null; contentType?: string | null }> | null;
  } | null;
}

export interface AudioBubbleProps {
  runtime: Runtime;
  conversationSid?: string;
  message?: BubbleMessage;
}

/** Whether a message carries audio: only those get a bubble (and a look-up at the service). */
export function hasAudio(message: BubbleMessage | undefined): boolean {
  return Boolean(message?.source?.attachedMedia?.some((media) => (media.contentType || "").startsWith("audio/")));
}

function useConversationAudio(runtime: Runtime, conversationSid: string | undefined, messageSid: string | undefined) {
  // (one subscription per bubble; the store fetches once per conversation for all of them)
  const { store } = runtime;
  const [state, setState] = React.useState<ConversationAudio | null>(
    () => (store && conversationSid ? store.get(conversationSid) : null),
  );
  React.useEffect(() => {
    if (!store || !conversationSid) return undefined;
    setState(store.get(conversationSid));
    return store.subscribe(conversationSid, setState, messageSid);
  }, [store, conversationSid, messageSid]);
  return state;
}

export function AudioBubble({ runtime, conversationSid, message }: AudioBubbleProps): JSX.Element | null {
  const messageSid = message?.source?.sid || undefined;
  const state = useConversationAudio(runtime, conversationSid, messageSid);
  const rows = (messageSid && state?.byMessage.get(messageSid)) || [];
  const anchor = React.useRef<HTMLDivElement>(null);
  const replacesFlexMedia = rows.length > 0 && !message?.source?.body
    && (message?.source?.attachedMedia || []).every((media) => rows.some((row) => row.media_sid === media.sid));
  useHideFlexBody(anchor, replacesFlexMedia);
  if (!rows.length) return null;
  return (
    <PluginTheme manager={runtime.manager}>
      <div ref={anchor} data-testid="audio-bubble" data-message-sid={messageSid}>
        {rows.map((row) => (
          <AudioRow key={row.audit_id} row={row} fromMe={Boolean(message?.isFromMe)}
            onExpired={() => conversationSid && runtime.store?.refresh(conversationSid)} />
        ))}
      </div>
    </PluginTheme>
  );
}

/**
 * Flex renders an attachment as a download link inside the bubble's body. When every attachment of a message
 * without text is one of ours, the body is hidden while our players are shown (and shown again if they go):
 * the bubble's own DynamicContentStore `remove` cannot follow what the service answers later.
 */
function useHideFlexBody(anchor: React.RefObject<HTMLElement>, hide: boolean): void {
  React.useLayoutEffect(() => {
    if (!hide || !anchor.current) return undefined;
    let body: HTMLElement | null = null;
    // Up to the bubble, never past it: the first ancestor with a body in it, if it has exactly one.
    for (let node = anchor.current.parentElement, depth = 0; node && depth < 4 && !body; node = node.parentElement, depth += 1) {
      const found = node.querySelectorAll<HTMLElement>(".Twilio-MessageBubble-Body");
      if (found.length > 1) break;
      if (found.length === 1) body = found[0];
    }
    if (!body || body.hidden) return undefined;
    const hidden = body;
    hidden.hidden = true;
    return () => {
      hidden.hidden = false;
    };
  }, [anchor, hide]);
}

interface RowProps {
  row: AudioMessage;
  fromMe: boolean;
  /** The playback link failed (signed links expire): ask the service for a fresh one. */
  onExpired: () => void;
}

function AudioRow({ row, fromMe, onExpired }: RowProps): JSX.Element {
  const who = row.direction === "outbound" || fromMe ? "Agent" : "Customer";
  if (row.status === "ready" && row.playback_url) return <Player row={row} who={who} onExpired={onExpired} />;
  const inProgress = IN_PROGRESS.has(row.status);
  return (
    <Box display="flex" alignItems="center" columnGap="space20" paddingY="space20" data-status={row.status}
      data-testid="audio-row">
      {inProgress ? <Spinner decorative size="sizeIcon20" /> : null}
      <Text as="span" color={row.status === "failed" ? "colorTextError" : "colorTextWeak"} data-testid="audio-state">
        {`${who} voice note: ${STATUS_TEXT[row.status] || row.status}`}
      </Text>
      {row.status === "failed" && row.error ? (
        <Text as="span" color="colorTextError" data-testid="audio-error">{row.error}</Text>
      ) : null}
    </Box>
  );
}

function Player({ row, who, onExpired }: { row: AudioMessage; who: string; onExpired: () => void }): JSX.Element {
  const audio = React.useRef<HTMLAudioElement>(null);
  const [rate, setRate] = React.useState(1);
  const position = React.useRef(0);
  const lastRefresh = React.useRef(0);
  const expired = () => {
    // At most one new link every 30 s: a deleted recording fails with every link, and must not loop.
    if (Date.now() - lastRefresh.current < 30000) return;
    lastRefresh.current = Date.now();
    onExpired();
  };
  // A fresh link (after an expired one) keeps the listener's place.
  React.useEffect(() => {
    const element = audio.current;
    if (!element || !position.current) return undefined;
    const restore = () => {
      element.currentTime = position.current;
    };
    element.addEventListener("loadedmetadata", restore, { once: true });
    return () => element.removeEventListener("loadedmetadata", restore);
  }, [row.playback_url]);
  const choose = (value: number) => {
    setRate(value);
    if (audio.current) setPlaybackRate(audio.current, value);
  };
  const duration = formatDuration(row.duration_s);
  return (
    <Box display="flex" alignItems="center" columnGap="space20" flexWrap="wrap" paddingY="space20"
      data-status={row.status} data-testid="audio-row">
      <audio ref={audio} controls preload="metadata" src={row.playback_url} aria-label={`${who} voice note, ${duration}`}
        onTimeUpdate={(event) => {
          position.current = event.currentTarget.currentTime;
        }}
        onError={expired} />
      <Text as="span" data-testid="audio-duration">{duration}</Text>
      <Box display="flex" columnGap="space10" role="group" aria-label="Playback speed">
        {SPEEDS.map((value) => (
          <Button key={value} variant="secondary" size="small" pressed={rate === value} onClick={() => choose(value)}
            aria-label={`Play at ${value}× speed`}>
            {`${value}×`}
          </Button>
        ))}
      </Box>
      {row.transcript ? (
        <Box flexBasis="100%" minWidth="0">
          <Transcript transcript={row.transcript} audio={audio} />
        </Box>
      ) : null}
    </Box>
  );
}
