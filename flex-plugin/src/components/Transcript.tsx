/**
 * A voice note's transcript under its player, as the service's console shows it: "Transcribing…" while it is
 * queued or running; when done, its segments as one paragraph of plain, selectable text, each segment a span that
 * seeks the player to its start and plays (click, or Enter / Space when focused), the segment being heard
 * highlighted; "No speech in this note." or "No transcript: <reason>" otherwise. Spans, not buttons: some
 * browsers do not let a selection start or end inside a button, and the text must copy.
 */
import * as React from "react";
import { Box } from "@twilio-paste/core/box";
import { Text } from "@twilio-paste/core/text";

import { Transcript as TranscriptData, TranscriptSegment } from "../api";
import { TRANSCRIPT_BUSY } from "../audioStore";
import { formatDuration } from "../format";

export const TRANSCRIPT_TEXT = {
  busy: "Transcribing…",
  noSpeech: "No speech in this note.",
  deleted: "Transcript deleted.",
  failed: (reason: string | undefined) => `No transcript: ${reason || "unknown error"}`,
};

/** The language's name for a transcript not in English ("Spanish"); null for English or none. */
export function languageName(code: string | null | undefined): string | null {
  if (!code || code === "en") return null;
  try {
    return new Intl.DisplayNames(["en"], { type: "language" }).of(code) || code;
  } catch {
    return code;
  }
}

/** The segment being heard at `time` (a gap between two segments belongs to the one before); -1 before playing. */
export function currentSegment(segments: TranscriptSegment[], time: number, paused: boolean): number {
  if (paused && !time) return -1;
  return segments.findIndex((segment, index) => time >= segment.start
    && (time < segment.end || (index + 1 < segments.length && time < segments[index + 1].start)));
}

export interface TranscriptProps {
  transcript: TranscriptData;
  /** The player the segments seek. */
  audio: React.RefObject<HTMLAudioElement>;
}

export function Transcript({ transcript, audio }: TranscriptProps): JSX.Element {
  const segments = React.useMemo(
    () => (transcript.segments || []).filter((segment) => segment.text.trim()),
    [transcript.segments],
  );
  const current = useCurrentSegment(audio, segments);
  const paragraph = React.useRef<HTMLParagraphElement>(null);
  const box = (children: React.ReactNode) => (
    <Box marginTop="space10" data-testid="transcript" data-transcript-status={transcript.status}>{children}</Box>
  );
  const state = (text: string, failed = false) => box(
    <Text as="p" fontSize="fontSize20" color={failed ? "colorTextError" : "colorTextWeak"} data-testid="transcript-state">
      {text}
    </Text>,
  );
  if (transcript.deleted_at) return state(TRANSCRIPT_TEXT.deleted);
  if (TRANSCRIPT_BUSY.has(transcript.status)) return state(TRANSCRIPT_TEXT.busy);
  if (transcript.status === "no_speech") return state(TRANSCRIPT_TEXT.noSpeech);
  if (transcript.status === "failed") return state(TRANSCRIPT_TEXT.failed(transcript.error), true);

  const seek = (segment: TranscriptSegment) => {
    const element = audio.current;
    if (!element) return;
    element.currentTime = segment.start;
    // A refusal to play (autoplay rules) still leaves the player at the new position.
    element.play()?.catch(() => undefined);
  };
  const onClick = (segment: TranscriptSegment) => {
    // Text being selected with the mouse is not a click on the segment.
    const selection = window.getSelection();
    if (selection && !selection.isCollapsed && paragraph.current?.contains(selection.anchorNode)) return;
    seek(segment);
  };
  const onKeyDown = (event: React.KeyboardEvent, segment: TranscriptSegment) => {
    if (event.key !== "Enter" && event.key !== " ") return;
    event.preventDefault(); // Space would scroll the page
    seek(segment);
  };
  const language = languageName(transcript.language);
  return box(
    <>
      {language ? (
        <Text as="span" display="block" fontSize="fontSize10" color="colorTextWeak" data-testid="transcript-language">
          {language}
        </Text>
      ) : null}
      <Text as="p" ref={paragraph} fontSize="fontSize20" lineHeight="lineHeight20" data-testid="transcript-text"
        lang={transcript.language || undefined}>
        {segments.length ? segments.map((segment, index) => (
          <React.Fragment key={`${segment.start}-${index}`}>
            {index ? " " : null}
            <Box as="span" role="button" tabIndex={0} cursor="pointer" borderRadius="borderRadius10"
              backgroundColor={index === current ? "colorBackgroundPrimaryWeaker" : undefined}
              aria-current={index === current ? "true" : undefined}
              title={`Play from ${formatDuration(Math.floor(segment.start))}`}
              data-start={segment.start} data-testid="transcript-segment"
              _hover={{ textDecoration: "underline" }}
              _focusVisible={{ boxShadow: "shadowFocus", outline: "none" }}
              onClick={() => onClick(segment)} onKeyDown={(event: React.KeyboardEvent) => onKeyDown(event, segment)}>
              {segment.text.trim()}
            </Box>
          </React.Fragment>
        )) : (transcript.text || "").trim()}
      </Text>
    </>,
  );
}

/** Which segment the player is in, followed as it plays and seeks. */
function useCurrentSegment(audio: React.RefObject<HTMLAudioElement>, segments: TranscriptSegment[]): number {
  const [current, setCurrent] = React.useState(-1);
  React.useEffect(() => {
    const element = audio.current;
    if (!element || !segments.length) return undefined;
    const update = () => setCurrent(currentSegment(segments, element.currentTime, element.paused));
    const types = ["timeupdate", "seeked", "emptied"];
    types.forEach((type) => element.addEventListener(type, update));
    update();
    return () => types.forEach((type) => element.removeEventListener(type, update));
  }, [audio, segments]);
  return current;
}
