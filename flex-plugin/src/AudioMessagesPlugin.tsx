import * as React from "react";
import * as Flex from "@twilio/flex-ui";
import { FlexPlugin } from "@twilio/flex-plugin";

import { AudioBubble, hasAudio } from "./components/AudioBubble";
import { VoiceNoteButton } from "./components/VoiceNoteButton";
import { createRuntime, taskConversationSid } from "./runtime";

const PLUGIN_NAME = "AudioMessagesPlugin";

type MessageInputActionsProps = React.ComponentProps<typeof Flex.MessageInputActions>;
type MessageBubbleProps = React.ComponentProps<typeof Flex.MessageBubble>;

/** Adds the voice-note button to chat tasks' message input and the MP3 player to voice notes in the list. */
export function register(flex: typeof Flex, manager: Flex.Manager): void {
  const runtime = createRuntime(manager);
  const VoiceNoteWithTask = flex.withTaskContext(VoiceNoteButton);

  flex.MessageInputActions.Content.add(<VoiceNoteWithTask key="audio-messages-voice-note" runtime={runtime} />, {
    sortOrder: -1,
    if: (props: MessageInputActionsProps & { task?: Flex.ITask }) => Boolean(
      props.conversationSid || taskConversationSid(props.task),
    ),
  });

  flex.MessageBubble.Content.add(<AudioBubble key="audio-messages-player" runtime={runtime} />, {
    if: (props: MessageBubbleProps) => hasAudio(props.message),
  });
}

export default class AudioMessagesPlugin extends FlexPlugin {
  constructor() {
    super(PLUGIN_NAME);
  }

  /** Called by Flex once, with Flex itself and its manager. */
  async init(flex: typeof Flex, manager: Flex.Manager): Promise<void> {
    register(flex, manager);
  }
}
