/**
 * The voice-note recorder: record, timer, level meter, cap warning and auto-stop, preview, send (with an
 * Idempotency-Key per recording, so a retry is never posted twice), discard, cancel. The behaviour of the
 * service's own record panel (webhook_app/static/record-panel/panel.js), in React and Twilio Paste; the take, the
 * repair of its recording, the caps and the upload are that panel's own modules (@shared/…).
 */
import * as React from "react";
import { Box } from "@twilio-paste/core/box";
import { Button } from "@twilio-paste/core/button";
import { Stack } from "@twilio-paste/core/stack";
import { Text } from "@twilio-paste/core/text";
import { HelpText } from "@twilio-paste/core/help-text";
import { MicrophoneOnIcon } from "@twilio-paste/icons/esm/MicrophoneOnIcon";

import type { AudioService, AudioSettings, UploadResult } from "@shared/api.js";
import { learnDecodedLength } from "@shared/decoded-length.js";
import { errorParts, isAbortError } from "@shared/errors.js";
import { formatDuration } from "@shared/format.js";
import { microphoneErrorMessage, newRecording, pickRecordingType, Take, unsupportedReason } from "@shared/recorder.js";
import type { Recording, TakeControls } from "@shared/recorder.js";
import { capsText, maxSeconds, STOP_BEFORE_LIMIT_S, TICK_MS, WARN_BEFORE_END_S } from "@shared/voice-notes.js";

export type Phase = "unsupported" | "idle" | "starting" | "recording" | "preview" | "sending";
/** Opens a take: the microphone's, or the tests' fake. */
export type OpenTake = () => Promise<TakeControls>;

const openMicrophoneTake: OpenTake = () => Take.open(pickRecordingType());

export interface RecordPanelProps {
  service: AudioService;
  conversationSid: string;
  settings: AudioSettings;
  id?: string;
  hidden?: boolean;
  openTake?: OpenTake;
  tickMs?: number;
  onSent?: (result: UploadResult) => void;
  /** The service refused because an admin turned sending off since the settings were loaded. */
  onSendingDisabled?: (message: string) => void;
  onRecordingChange?: (recording: boolean) => void;
}

interface State {
  phase: Phase;
  alert: string;
  status: string;
  elapsed: number;
  level: number;
  ending: boolean;
  /** Stopped, waiting for the take's last data (in WebKit up to 2.5 s: see @shared/recorder.js). */
  finishing: boolean;
  progress: number;
  recording: Recording | null;
}

export class RecordPanel extends React.Component<RecordPanelProps, State> {
  // The phase the handlers act on: React's state lags a render behind, and a double click must not send twice.
  private phase: Phase;
  private take: TakeControls | null = null;
  // The take between Stop and its recording (WebKit records on until the take's end has arrived): a Cancel or
  // an unmount then still gives the microphone back at once.
  private finishingTake: TakeControls | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private upload: AbortController | null = null;
  private unmounted = false;
  private readonly stage = React.createRef<HTMLDivElement>();

  constructor(props: RecordPanelProps) {
    super(props);
    const unsupported = props.openTake ? null : unsupportedReason();
    this.phase = unsupported ? "unsupported" : "idle";
    this.state = {
      phase: this.phase, alert: unsupported || "", status: "", elapsed: 0, level: 0, ending: false, finishing: false,
      progress: 0,
      recording: null,
    };
  }

  getSnapshotBeforeUpdate(): boolean {
    const active = typeof document !== "undefined" ? document.activeElement : null;
    return Boolean(active && this.stage.current?.contains(active));
  }

  componentDidUpdate(_: RecordPanelProps, previous: State, hadFocus: boolean): void {
    // Keyboard users keep their place: the main control of the new phase takes the focus.
    if (previous.phase !== this.state.phase && hadFocus) {
      this.stage.current?.querySelector<HTMLElement>("[data-focus]")?.focus();
    }
  }

  componentWillUnmount(): void {
    // The agent switched tasks or closed the conversation: the microphone goes back, nothing half-sent stays.
    this.unmounted = true;
    this.stopTimer();
    this.take?.release();
    this.take = null;
    this.finishingTake?.release();
    this.finishingTake = null;
    this.upload?.abort();
    this.dropRecording(this.state.recording);
    this.props.onRecordingChange?.(false);
  }

  private go(phase: Phase, patch: Partial<State> = {}): void {
    this.phase = phase;
    if (!this.unmounted) this.setState({ ...patch, phase } as State);
    this.props.onRecordingChange?.(phase === "recording" || phase === "starting");
  }

  /** The phase now (a method, so the type checker does not narrow it across awaits). */
  private current(): Phase {
    return this.phase;
  }

  private limit(): number {
    return maxSeconds(this.props.settings);
  }

  // -- actions ------------------------------------------------------------------------------------------------
  record = async (): Promise<void> => {
    if (this.phase !== "idle") return;
    this.go("starting", { alert: "", status: "" });
    let take: TakeControls;
    try {
      take = await (this.props.openTake || openMicrophoneTake)();
    } catch (error) {
      if (this.unmounted || this.current() !== "starting") return;
      this.go("idle", { alert: microphoneErrorMessage(error) });
      return;
    }
    if (this.unmounted || this.current() !== "starting") {
      take.release(); // cancelled while the permission prompt was open
      return;
    }
    this.take = take;
    this.go("recording", {
      status: "Recording. Press Stop when you are done.", elapsed: 0, level: 0, ending: false, finishing: false,
    });
    this.timer = setInterval(this.tick, this.props.tickMs ?? TICK_MS);
    take.finished.catch((error) => this.onRecorderError(take, error));
  };

  tick = (): void => {
    const take = this.take;
    if (!take || this.phase !== "recording") return;
    const elapsed = take.elapsed();
    const limit = this.limit();
    const left = limit - elapsed;
    const ending = left <= WARN_BEFORE_END_S;
    this.setState({
      elapsed,
      level: take.level(),
      ending,
      alert: ending ? `Recording stops in ${Math.max(0, Math.ceil(left))} s (the ${formatDuration(limit)} limit).` : "",
    });
    if (left <= STOP_BEFORE_LIMIT_S) this.stop(`Stopped at the ${formatDuration(limit)} limit.`);
  };

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  stop = async (reason?: string): Promise<void> => {
    const take = this.take;
    if (!take || this.phase !== "recording") return;
    this.stopTimer();
    this.take = null;
    this.finishingTake = take;
    // Usually at once; in WebKit up to 2.5 s while the take's last MP4 fragment arrives (see @shared/recorder.js).
    this.setState({ finishing: true, elapsed: take.elapsed(), status: "Finishing the recording…" });
    let blob: Blob;
    try {
      blob = await take.stop();
    } catch (error) {
      if (this.finishingTake === take) this.finishingTake = null;
      if (this.unmounted || this.current() !== "recording" || this.take) return;
      const { message } = errorParts(error);
      this.go("idle", { finishing: false, alert: `Recording failed${message ? `: ${message}` : "."}` });
      return;
    }
    if (this.finishingTake === take) this.finishingTake = null;
    // Cancelled while the recorder was finishing (the phase moved on), or already recording a new take.
    if (this.unmounted || this.current() !== "recording" || this.take) return;
    if (!blob.size) {
      this.go("idle", { alert: "Nothing was recorded. Check the microphone and try again.", status: "" });
      return;
    }
    const duration = take.elapsed();
    const recording = newRecording(blob, duration);
    this.go("preview", {
      recording,
      elapsed: duration,
      ending: false,
      finishing: false,
      alert: typeof reason === "string" ? reason : "",
      status: `Recorded ${formatDuration(duration)}. Listen, then send or discard it.`,
    });
  };

  private onRecorderError(take: TakeControls, error: unknown): void {
    if (this.unmounted || this.take !== take) return;
    this.stopTimer();
    take.release();
    this.take = null;
    const { message } = errorParts(error);
    this.go("idle", { alert: `Recording stopped unexpectedly${message ? `: ${message}` : "."}` });
  }

  cancel = (): void => {
    this.stopTimer();
    this.take?.release();
    this.take = null;
    this.finishingTake?.release();
    this.finishingTake = null;
    this.go("idle", { alert: "", status: "Recording cancelled.", ending: false, finishing: false });
  };

  discard = (): void => {
    this.dropRecording(this.state.recording);
    this.go("idle", { recording: null, alert: "", status: "Recording discarded." });
  };

  private dropRecording(recording: Recording | null): void {
    if (recording) URL.revokeObjectURL(recording.url);
  }

  send = async (): Promise<void> => {
    const recording = this.state.recording;
    if (!recording || this.phase !== "preview") return;
    const controller = new AbortController();
    this.upload = controller;
    this.go("sending", { alert: "", status: "Sending the voice note…", progress: 0 });
    let result: UploadResult;
    try {
      result = await this.props.service.upload(this.props.conversationSid, recording, {
        signal: controller.signal,
        onProgress: (fraction) => {
          if (!this.unmounted) this.setState({ progress: Math.round(fraction * 100) });
        },
      });
    } catch (error) {
      if (this.unmounted) return;
      this.upload = null;
      const { code, message } = error as { code?: string; message?: string };
      if (code === "sending_disabled") {
        // An admin turned sending off since the settings were loaded: no point keeping a clip that cannot go.
        this.dropRecording(recording);
        this.go("idle", { recording: null, alert: message || "", status: "" });
        this.props.onSendingDisabled?.(message || "Audio sending is disabled for this channel");
        return;
      }
      if (isAbortError(error)) {
        this.go("preview", { status: "Sending cancelled. The recording is kept; send it again or discard it." });
      } else {
        this.go("preview", { status: "", alert: message || "The voice note could not be sent." });
      }
      return;
    }
    this.upload = null;
    if (this.unmounted) return;
    const duration = result.duration_s ?? recording.duration;
    this.dropRecording(recording);
    this.go("idle", { recording: null, status: `Voice note sent (${formatDuration(duration)}).` });
    try {
      this.props.onSent?.(result);
    } catch (error) {
      // eslint-disable-next-line no-console
      console.error("audio messages: onSent failed", error);
    }
  };

  cancelSend = (): void => {
    this.upload?.abort();
  };

  // -- rendering ----------------------------------------------------------------------------------------------
  private renderStage(): React.ReactNode {
    const { phase, elapsed, level, progress, recording } = this.state;
    const limit = this.limit();
    switch (phase) {
      case "unsupported":
        return null;
      case "idle":
        return (
          <Stack orientation="horizontal" spacing="space30">
            <Button variant="primary" size="small" onClick={this.record} aria-label="Start recording a voice note" data-focus>
              <MicrophoneOnIcon decorative />
              Record
            </Button>
            <HelpText marginTop="space0">{capsText(this.props.settings)}</HelpText>
          </Stack>
        );
      case "starting":
        return (
          <Stack orientation="horizontal" spacing="space30">
            <Text as="span">Waiting for the microphone…</Text>
            <Button variant="secondary" size="small" onClick={this.cancel} aria-label="Cancel recording" data-focus>
              Cancel
            </Button>
          </Stack>
        );
      case "recording":
        return (
          <Box display="flex" alignItems="center" columnGap="space30" flexWrap="wrap">
            <Button variant="destructive" size="small" onClick={() => this.stop()} aria-label="Stop recording" data-focus>
              Stop
            </Button>
            <Text as="span" role="timer" aria-label="Elapsed recording time" fontWeight="fontWeightSemibold"
              data-testid="voice-note-timer">
              {formatDuration(elapsed)}
            </Text>
            <Text as="span" color="colorTextWeak">/ {formatDuration(limit)}</Text>
            <Box
              role="meter"
              aria-label="Microphone input level"
              aria-valuemin={0}
              aria-valuemax={100}
              aria-valuenow={Math.round(level * 100)}
              width="size10"
              height="sizeIcon05"
              backgroundColor="colorBackgroundStrong"
              borderRadius="borderRadius20"
              overflow="hidden"
            >
              <Box height="100%" width={`${Math.round(level * 100)}%`} backgroundColor="colorBackgroundPrimary" />
            </Box>
            <Button variant="secondary" size="small" onClick={this.cancel} aria-label="Cancel and discard the recording">
              Cancel
            </Button>
          </Box>
        );
      case "preview":
        return (
          <Box display="flex" alignItems="center" columnGap="space30" flexWrap="wrap">
            <PreviewAudio src={recording?.url || ""} />
            <Text as="span" aria-label={`Duration ${formatDuration(recording?.duration)}`} data-testid="voice-note-duration">
              {formatDuration(recording?.duration)}
            </Text>
            <Button variant="primary" size="small" onClick={this.send} aria-label="Send the voice note" data-focus>
              Send
            </Button>
            <Button variant="secondary" size="small" onClick={this.discard} aria-label="Discard the recording">
              Discard
            </Button>
          </Box>
        );
      case "sending": {
        // Once every byte is up the service converts and posts whatever the browser does: a Cancel then would say
        // "cancelled" about a voice note the customer still gets.
        const locked = progress >= 100;
        return (
          <Box display="flex" alignItems="center" columnGap="space30">
            <progress max={100} value={progress} aria-label="Upload progress" />
            <Text as="span">{locked ? "Converting and sending…" : `Uploading… ${progress}%`}</Text>
            <Button variant="secondary" size="small" onClick={this.cancelSend} aria-label="Cancel sending" disabled={locked}
              title={locked ? "The voice note is with the service; it can no longer be cancelled." : undefined} data-focus>
              Cancel
            </Button>
          </Box>
        );
      }
      default:
        return null;
    }
  }

  render(): React.ReactNode {
    const { alert, status, phase, ending, finishing } = this.state;
    return (
      <Box id={this.props.id} hidden={this.props.hidden} data-phase={phase} data-ending={ending || undefined}
        data-finishing={finishing || undefined} data-testid="voice-note-panel">
        <div ref={this.stage}>{this.renderStage()}</div>
        <Box role="alert" marginTop={alert ? "space20" : "space0"} data-testid="voice-note-alert">
          {alert ? <Text as="span" color={ending ? "colorTextWarningStrong" : "colorTextError"}>{alert}</Text> : null}
        </Box>
        <Box role="status" aria-live="polite" data-testid="voice-note-status">
          {status ? <Text as="span" color="colorTextWeak" fontSize="fontSize20">{status}</Text> : null}
        </Box>
      </Box>
    );
  }
}

/**
 * The browser's own player for the take. Chrome's and Firefox's fresh WebM says no length (Infinity) until the
 * player has read it to the end; `learnDecodedLength` (@shared/decoded-length.js, the console's too) makes it learn
 * it without rewinding a playing preview. The panel shows the length measured while recording.
 */
function PreviewAudio({ src }: { src: string }): JSX.Element {
  const ref = React.useRef<HTMLAudioElement>(null);
  React.useEffect(() => {
    const audio = ref.current;
    if (!audio) return undefined;
    const stop = new AbortController();
    learnDecodedLength(audio, { signal: stop.signal });
    return () => stop.abort();
  }, [src]);
  return <audio ref={ref} controls preload="metadata" src={src} aria-label="Preview of your recording" />;
}
