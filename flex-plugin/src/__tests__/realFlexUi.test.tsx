/**
 * The one test that loads the real @twilio/flex-ui (slow and heavy, see docs/flex-plugin.md): the names the plugin
 * uses exist at run time, not only in the type definitions, and registering into Flex's own stores works.
 */
import * as React from "react";

import { fakeManager } from "../testing/fakes";

test("the plugin registers into the real Flex UI's content stores", async () => {
  // jsdom has no media playback; Flex touches it while loading its ringtones.
  window.HTMLMediaElement.prototype.play = () => Promise.resolve();
  window.HTMLMediaElement.prototype.pause = () => undefined;
  const Flex = await import("@twilio/flex-ui");
  const { register } = await import("../AudioMessagesPlugin");
  expect(typeof Flex.withTaskContext).toBe("function");
  expect(typeof Flex.MessageInputActions.Content.add).toBe("function");
  expect(typeof Flex.MessageBubble.Content.add).toBe("function");

  const added = jest.spyOn(Flex.MessageInputActions.Content, "add");
  const bubbles = jest.spyOn(Flex.MessageBubble.Content, "add");
  register(Flex, fakeManager() as never);
  expect(added).toHaveBeenCalledTimes(1);
  expect(bubbles).toHaveBeenCalledTimes(1);
  expect(React.isValidElement(added.mock.calls[0][0])).toBe(true);
});
