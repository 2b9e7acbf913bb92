/**
 * A voice note's transcript under its player, as the service's console shows it: "Transcribing…" while it is
 * queued or running; when done, its segments as one paragraph of plain, selectable text, each segment a span that
 * seeks the player to its start and plays (click, or Enter / Space when focused), the segment being heard
 * highlighted; "No speech in this note." or "No transcript: <reason>" otherwise. Spans, not buttons: some
 * browsers do not let a selection start or end inside a button, and the text must copy. What it says and which
 * segment is heard come from the console's own module (@shared/transcript.js); this file only draws it.
 */
import * as React from "react";
import { Box } from "@twilio-paste/core/box";
import { Text } from "@twilio-paste/core/text";

import type { Transcript as TranscriptData, TranscriptSegment } from "@shared/api.js";
import {
  currentSegment, isPlayKey, languageName, playFrom, segmentTitle, selectingIn, spokenSegments, transcriptNotice,
} from "@shared/transcript.js";

export interface TranscriptProps {
  transcript: TranscriptData;
  /** The player the segments seek. */
  audio: React.RefObject<HTMLAudioElement>;
}

export function Transcript({ transcript, audio }: TranscriptProps): JSX.Element {
  const segments = React.useMemo(() => spokenSegments(transcript), [transcript]);
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
  const notice = transcriptNotice(transcript);
  if (notice) return state(notice.text, notice.failed);

  const seek = (segment: TranscriptSegment) => {
    if (audio.current) playFrom(audio.current, segment);
  };
  const onClick = (segment: TranscriptSegment) => {
    if (!selectingIn(paragraph.current)) seek(segment);
  };
  const onKeyDown = (event: React.KeyboardEvent, segment: TranscriptSegment) => {
    if (!isPlayKey(event.key)) return;
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
              title={segmentTitle(segment)}
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
