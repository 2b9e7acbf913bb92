import * as React from "react";
import { act, fireEvent, render, screen, waitFor } from "@testing-library/react";

import { AudioBubble, BubbleMessage, hasAudio } from "../components/AudioBubble";
import { createRuntime } from "../runtime";
import { CONVERSATION, fakeFetch, fakeManager, SERVICE } from "../testing/fakes";

function row(overrides: object) {
  return {
    audit_id: 1, direction: "inbound", channel: "whatsapp", conversation_sid: CONVERSATION, message_sid: "IM1",
    media_sid: "ME1", status: "ready", duration_s: 5.04, ...overrides,
  };
}

function voiceNote(sid = "IM1", extra: Partial<NonNullable<BubbleMessage["source"]>> = {}): BubbleMessage {
  return { isFromMe: false, source: { sid, body: null, attachedMedia: [{ sid: "ME1", contentType: "audio/ogg" }], ...extra } };
}

/** The bubble as Flex lays it out: header, the body with the raw attachment link, then the added fragments. */
function FlexBubble({ children }: { children: React.ReactNode }) {
  return (
    <div className="Twilio-MessageBubble">
      <div className="Twilio-MessageBubble-Header">Customer</div>
      <div className="Twilio-MessageBubble-Body"><a href="https://mcs.example/raw.ogg">voice-note.ogg</a></div>
      {children}
    </div>
  );
}

function mount(rows: object[], message: BubbleMessage = voiceNote()) {
  const calls = fakeFetch(() => ({ status: 200, body: { audio_messages: rows } }));
  const runtime = createRuntime(fakeManager(), { busyPollMs: 20, idlePollMs: 60000 });
  const view = render(<FlexBubble><AudioBubble runtime={runtime} conversationSid={CONVERSATION} message={message} /></FlexBubble>);
  return { calls, view, runtime };
}

test("only messages with audio get a bubble", () => {
  expect(hasAudio(voiceNote())).toBe(true);
  expect(hasAudio({ source: { sid: "IM2", attachedMedia: [{ sid: "ME2", contentType: "image/png" }] } })).toBe(false);
  expect(hasAudio({ source: { sid: "IM3", body: "hello", attachedMedia: [] } })).toBe(false);
});

test("a ready voice note plays our MP3 instead of Flex's raw attachment, at 1x, 1.5x and 2x", async () => {
  const { calls } = mount([row({ playback_url: `${SERVICE}/media/signed` })]);
  const audio = await screen.findByLabelText("Customer voice note, 0:05");
  expect(audio).toHaveAttribute("src", `${SERVICE}/media/signed`);
  expect(screen.getByTestId("audio-duration")).toHaveTextContent("0:05");
  expect(calls[0].url).toBe(`${SERVICE}/api/v1/conversations/${CONVERSATION}/audio`);
  expect(calls[0].headers.Authorization).toBe("Bearer token-1");
  expect(screen.getByText("voice-note.ogg").closest(".Twilio-MessageBubble-Body")).not.toBeVisible();

  const group = screen.getByRole("group", { name: "Playback speed" });
  expect(group).toBeTruthy();
  for (const [label, rate] of [["1.5", 1.5], ["2", 2], ["1", 1]] as const) {
    fireEvent.click(screen.getByRole("button", { name: `Play at ${label}× speed` }));
    expect(screen.getByRole("button", { name: `Play at ${label}× speed` })).toHaveAttribute("aria-pressed", "true");
    expect((audio as HTMLAudioElement).playbackRate).toBe(rate);
  }
  expect(screen.getAllByRole("button", { pressed: true })).toHaveLength(1);
});

test("while it is converted the bubble says so, and polls until it is ready", async () => {
  let status = "transcoding";
  const calls = fakeFetch(() => ({
    status: 200,
    body: { audio_messages: [row(status === "ready" ? { status, playback_url: `${SERVICE}/media/x` } : { status })] },
  }));
  const runtime = createRuntime(fakeManager(), { busyPollMs: 20, idlePollMs: 60000 });
  render(<FlexBubble><AudioBubble runtime={runtime} conversationSid={CONVERSATION} message={voiceNote()} /></FlexBubble>);
  expect(await screen.findByText("Customer voice note: Converting to MP3…")).toBeTruthy();
  status = "ready";
  expect(await screen.findByLabelText("Customer voice note, 0:05")).toBeTruthy();
  expect(calls.length).toBeGreaterThanOrEqual(2);
});

test("a failed conversion shows the reason", async () => {
  mount([row({ status: "failed", error: "ffmpeg could not decode the file (not audio?)" })]);
  expect(await screen.findByText("Customer voice note: Could not be processed")).toBeTruthy();
  expect(screen.getByTestId("audio-error")).toHaveTextContent("ffmpeg could not decode the file (not audio?)");
});

test("the agent's own sent note plays too", async () => {
  mount([row({ direction: "outbound", media_sid: "ME9", playback_url: `${SERVICE}/media/mine` })],
    { isFromMe: true, source: { sid: "IM1", attachedMedia: [{ sid: "ME9", contentType: "audio/mpeg" }] } });
  expect(await screen.findByLabelText("Agent voice note, 0:05")).toHaveAttribute("src", `${SERVICE}/media/mine`);
});

test("where the service knows nothing of the message, Flex's own rendering stays", async () => {
  const { calls } = mount([row({ message_sid: "IMother" })]);
  await waitFor(() => expect(calls.length).toBeGreaterThan(0));
  await act(() => new Promise((resolve) => setTimeout(resolve, 50)));
  expect(screen.queryByTestId("audio-bubble")).toBeNull();
  expect(screen.getByText("voice-note.ogg")).toBeVisible();
});

test("a message with text keeps Flex's body (the text) beside our player", async () => {
  mount([row({ playback_url: `${SERVICE}/media/signed` })], voiceNote("IM1", { body: "listen to this" }));
  await screen.findByLabelText("Customer voice note, 0:05");
  expect(screen.getByText("voice-note.ogg")).toBeVisible();
});

test("bubbles of one conversation share one request", async () => {
  const calls = fakeFetch(() => ({ status: 200, body: { audio_messages: [row({ playback_url: "u1" }), row({ audit_id: 2, message_sid: "IM2", media_sid: "ME2", playback_url: "u2" })] } }));
  const runtime = createRuntime(fakeManager(), { busyPollMs: 20, idlePollMs: 60000 });
  render(
    <>
      <AudioBubble runtime={runtime} conversationSid={CONVERSATION} message={voiceNote("IM1")} />
      <AudioBubble runtime={runtime} conversationSid={CONVERSATION}
        message={{ source: { sid: "IM2", attachedMedia: [{ sid: "ME2", contentType: "audio/amr" }] } }} />
    </>,
  );
  expect(await screen.findAllByLabelText("Customer voice note, 0:05")).toHaveLength(2);
  expect(calls).toHaveLength(1);
});

test("an expired playback link is replaced by a fresh one from the service", async () => {
  let link = `${SERVICE}/media/first`;
  const calls = fakeFetch(() => ({ status: 200, body: { audio_messages: [row({ playback_url: link })] } }));
  const runtime = createRuntime(fakeManager(), { busyPollMs: 20, idlePollMs: 60000 });
  render(<AudioBubble runtime={runtime} conversationSid={CONVERSATION} message={voiceNote()} />);
  const audio = await screen.findByLabelText("Customer voice note, 0:05");
  const before = calls.length;
  link = `${SERVICE}/media/second`;
  fireEvent.error(audio);
  await waitFor(() => expect(audio).toHaveAttribute("src", `${SERVICE}/media/second`));
  expect(calls.length).toBe(before + 1);
});

test("a link that keeps failing (a deleted recording) is not asked for again and again", async () => {
  const calls = fakeFetch(() => ({ status: 200, body: { audio_messages: [row({ playback_url: `${SERVICE}/media/gone` })] } }));
  const runtime = createRuntime(fakeManager(), { busyPollMs: 20, idlePollMs: 60000 });
  render(<AudioBubble runtime={runtime} conversationSid={CONVERSATION} message={voiceNote()} />);
  const audio = await screen.findByLabelText("Customer voice note, 0:05");
  const before = calls.length;
  fireEvent.error(audio);
  fireEvent.error(audio);
  fireEvent.error(audio);
  await act(() => new Promise((resolve) => setTimeout(resolve, 50)));
  expect(calls.length).toBe(before + 1);
});
