/**
 * The voice-note button in Flex's message input (MessageInputActions), and the recorder it opens above it.
 * It asks the service what this conversation's channel allows; where sending is off the button is disabled and
 * says why.
 */
import * as React from "react";
import { Box } from "@twilio-paste/core/box";
import { Button } from "@twilio-paste/core/button";
import { ScreenReaderOnly } from "@twilio-paste/core/screen-reader-only";
import { Stack } from "@twilio-paste/core/stack";
import { Text } from "@twilio-paste/core/text";
import { MicrophoneOnIcon } from "@twilio-paste/icons/esm/MicrophoneOnIcon";
import { MicrophoneOffIcon } from "@twilio-paste/icons/esm/MicrophoneOffIcon";

import type { AudioSettings, UploadResult } from "@shared/api.js";

import { Runtime, taskConversationSid, TaskLike } from "../runtime";
import { OpenTake, RecordPanel } from "./RecordPanel";
import { PluginTheme } from "./PluginTheme";

export const SENDING_OFF = "Audio sending is disabled for this channel";

export interface VoiceNoteButtonProps {
  runtime: Runtime;
  /** Given by MessageInputActions. */
  conversationSid?: string;
  /** Given by Flex's withTaskContext. */
  task?: TaskLike | null;
  openTake?: OpenTake;
}

type Load =
  | { kind: "loading" }
  | { kind: "ready"; settings: AudioSettings }
  | { kind: "failed"; message: string };

let idCounter = 0;

export function VoiceNoteButton(props: VoiceNoteButtonProps): JSX.Element | null {
  const conversationSid = props.conversationSid || taskConversationSid(props.task);
  if (!conversationSid) return null; // not a Conversations-based task: nothing to send into
  // A new conversation is a new recorder: switching tasks unmounts the old one, which releases the microphone.
  return <VoiceNote key={conversationSid} {...props} conversationSid={conversationSid} />;
}

function VoiceNote({ runtime, conversationSid, openTake }: VoiceNoteButtonProps & { conversationSid: string }) {
  const [load, setLoad] = React.useState<Load>({ kind: "loading" });
  const [expanded, setExpanded] = React.useState(false);
  const [live, setLive] = React.useState(false);
  const [attempt, setAttempt] = React.useState(0);
  const ids = React.useMemo(() => {
    idCounter += 1;
    return { panel: `voice-note-panel-${idCounter}`, reason: `voice-note-reason-${idCounter}` };
  }, []);
  const toggle = React.useRef<HTMLButtonElement>(null);
  const { service, configError } = runtime;

  React.useEffect(() => {
    if (!service) {
      setLoad({ kind: "failed", message: configError || "Voice notes are not set up." });
      return undefined;
    }
    const controller = new AbortController();
    setLoad({ kind: "loading" });
    service.settings(conversationSid, controller.signal).then(
      (settings) => setLoad({ kind: "ready", settings }),
      (error) => {
        if (!controller.signal.aborted) {
          setLoad({ kind: "failed", message: `Could not load the audio settings: ${(error as Error).message}` });
        }
      },
    );
    return () => controller.abort();
  }, [service, configError, conversationSid, attempt]);

  const sendingOff = load.kind === "ready" && !load.settings.sending_enabled;
  const close = () => {
    setExpanded(false);
    toggle.current?.focus();
  };
  const onSent = (result: UploadResult) => {
    // The bubble of the message just posted finds it at once instead of at the next poll.
    runtime.store?.refresh(conversationSid);
    return result;
  };
  const onSendingDisabled = () => {
    // The panel stays open to say why; the button is disabled from now on.
    if (load.kind === "ready") setLoad({ kind: "ready", settings: { ...load.settings, sending_enabled: false } });
  };

  let label = expanded ? "Voice note: hide the recorder" : "Voice note: show the recorder";
  if (sendingOff) label = "Voice note";
  const reason = sendingOff ? SENDING_OFF : null;

  return (
    <PluginTheme manager={runtime.manager}>
      <Box position="relative" display="inline-flex" data-testid="voice-note" data-live={live || undefined}
        onKeyDown={(event: React.KeyboardEvent) => {
          if (event.key === "Escape" && expanded && !live) {
            event.stopPropagation();
            close();
          }
        }}>
        <Button
          ref={toggle}
          variant={live ? "destructive_icon" : "secondary_icon"}
          size="icon_small"
          onClick={() => setExpanded(!expanded)}
          disabled={sendingOff}
          title={reason || undefined}
          aria-label={label}
          aria-expanded={sendingOff ? undefined : expanded}
          aria-controls={sendingOff ? undefined : ids.panel}
          aria-describedby={reason ? ids.reason : undefined}
          data-testid="voice-note-toggle"
        >
          {sendingOff
            ? <MicrophoneOffIcon decorative />
            : <MicrophoneOnIcon decorative title={live ? "Recording" : undefined} />}
        </Button>
        {reason ? (
          <ScreenReaderOnly>
            <span id={ids.reason} data-testid="voice-note-reason">{reason}</span>
          </ScreenReaderOnly>
        ) : null}
        <Box
          id={ids.panel}
          hidden={!expanded}
          position="absolute"
          bottom="100%"
          right="space0"
          marginBottom="space20"
          zIndex="zIndex30"
          minWidth="size40"
          padding="space40"
          backgroundColor="colorBackgroundBody"
          borderRadius="borderRadius30"
          boxShadow="shadowCard"
          role="group"
          aria-label="Voice note recorder"
        >
          {load.kind === "loading" ? <Text as="p" color="colorTextWeak">Loading audio settings…</Text> : null}
          {load.kind === "failed" ? (
            <Stack orientation="vertical" spacing="space30">
              <Text as="p" color="colorTextError" role="alert" data-testid="voice-note-problem">{load.message}</Text>
              {service ? (
                <Button variant="secondary" size="small" onClick={() => setAttempt(attempt + 1)}
                  aria-label="Retry loading the audio settings">
                  Retry
                </Button>
              ) : null}
            </Stack>
          ) : null}
          {sendingOff ? (
            <Stack orientation="vertical" spacing="space30">
              <Text as="p" role="alert" data-testid="voice-note-problem">{SENDING_OFF}</Text>
              <Button variant="secondary" size="small" onClick={close}>Close</Button>
            </Stack>
          ) : null}
          {load.kind === "ready" && load.settings.sending_enabled && service ? (
            <RecordPanel
              service={service}
              conversationSid={conversationSid}
              settings={load.settings}
              openTake={openTake}
              onSent={onSent}
              onSendingDisabled={onSendingDisabled}
              onRecordingChange={setLive}
            />
          ) : null}
        </Box>
      </Box>
    </PluginTheme>
  );
}
