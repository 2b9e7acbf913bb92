import * as React from "react";

import AudioMessagesPlugin, { register } from "../AudioMessagesPlugin";
import { AudioBubble } from "../components/AudioBubble";
import { VoiceNoteButton } from "../components/VoiceNoteButton";
import { CONVERSATION, fakeManager } from "../testing/fakes";

type Added = { element: React.ReactElement; options: { if?: (props: object) => boolean; sortOrder?: number } };

/** Flex's side of the registration, faked: what the plugin adds where, and under which condition. */
function fakeFlex() {
  const added: Record<string, Added[]> = { MessageInputActions: [], MessageBubble: [] };
  const store = (name: string) => ({
    Content: { add: (element: React.ReactElement, options: Added["options"] = {}) => added[name].push({ element, options }) },
  });
  const withTaskContext = jest.fn((component) => component);
  const flex = { MessageInputActions: store("MessageInputActions"), MessageBubble: store("MessageBubble"), withTaskContext };
  return { flex, added, withTaskContext };
}

test("adds the voice-note button to the message input of Conversations tasks only", () => {
  const { flex, added, withTaskContext } = fakeFlex();
  register(flex as never, fakeManager() as never);
  expect(withTaskContext).toHaveBeenCalledWith(VoiceNoteButton);
  const [button] = added.MessageInputActions;
  expect(button.element.key).toBe("audio-messages-voice-note");
  expect(button.element.props.runtime.service.baseUrl).toBe("https://audio.example.com");
  expect(button.options.if?.({ conversationSid: CONVERSATION })).toBe(true);
  expect(button.options.if?.({ task: { attributes: { conversationSid: CONVERSATION } } })).toBe(true);
  expect(button.options.if?.({ task: { attributes: { call_sid: "CA1" } } })).toBe(false);
});

test("adds the player to message bubbles that carry audio", () => {
  const { flex, added } = fakeFlex();
  register(flex as never, fakeManager() as never);
  const [bubble] = added.MessageBubble;
  expect(bubble.element.type).toBe(AudioBubble);
  const message = (contentType: string) => ({ message: { source: { sid: "IM1", attachedMedia: [{ sid: "ME1", contentType }] } } });
  expect(bubble.options.if?.(message("audio/ogg"))).toBe(true);
  expect(bubble.options.if?.(message("image/jpeg"))).toBe(false);
});

test("the plugin class registers through init(flex, manager)", async () => {
  const { flex, added } = fakeFlex();
  const plugin = new AudioMessagesPlugin();
  expect(plugin.name).toBe("AudioMessagesPlugin");
  await plugin.init(flex as never, fakeManager() as never);
  expect(added.MessageInputActions).toHaveLength(1);
  expect(added.MessageBubble).toHaveLength(1);
});
