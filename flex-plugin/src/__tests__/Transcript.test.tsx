import * as React from "react";
import { act, fireEvent, render, screen, within } from "@testing-library/react";

import { AudioBubble, BubbleMessage } from "../components/AudioBubble";
import { currentSegment, languageName } from "@shared/transcript.js";
import { createRuntime } from "../runtime";
import { CONVERSATION, fakeFetch, fakeManager, SERVICE } from "../testing/fakes";

const SEGMENTS = [
  { start: 0.52, end: 3.1, text: " Hi, this is Maria, calling about my internet bill." },
  { start: 4.6, end: 7.9, text: " My account number is 472915." },
  { start: 8.0, end: 10.2, text: " Could you call me back this afternoon?" },
];

function done(overrides: object = {}) {
  return {
    status: "done", text: SEGMENTS.map((segment) => segment.text).join(""), language: "en", segments: SEGMENTS,
    model: "tiny.en", ...overrides,
  };
}

function row(transcript: object | undefined) {
  return {
    audit_id: 1, direction: "inbound", channel: "whatsapp", conversation_sid: CONVERSATION, message_sid: "IM1",
    media_sid: "ME1", status: "ready", duration_s: 10.4, playback_url: `${SERVICE}/media/signed`, transcript,
  };
}

const VOICE_NOTE: BubbleMessage = {
  isFromMe: false, source: { sid: "IM1", body: null, attachedMedia: [{ sid: "ME1", contentType: "audio/ogg" }] },
};

/** The bubble, with the service answering `transcript()` (read again on every poll). */
function mount(transcript: () => object | undefined) {
  const calls = fakeFetch(() => ({ status: 200, body: { audio_messages: [row(transcript())] } }));
  const runtime = createRuntime(fakeManager(), { busyPollMs: 20, idlePollMs: 60000 });
  render(<AudioBubble runtime={runtime} conversationSid={CONVERSATION} message={VOICE_NOTE} />);
  return calls;
}

let play: jest.SpyInstance;
beforeEach(() => {
  // jsdom has no media playback: play() is where the player would start.
  play = jest.spyOn(window.HTMLMediaElement.prototype, "play").mockImplementation(() => Promise.resolve());
});
afterEach(() => play.mockRestore());

test("the segments read as one paragraph of selectable text under the player", async () => {
  mount(() => done());
  const text = await screen.findByTestId("transcript-text");
  expect(text.tagName).toBe("P");
  expect(text.textContent).toBe(
    "Hi, this is Maria, calling about my internet bill. My account number is 472915. Could you call me back this afternoon?",
  );
  const segments = within(text).getAllByRole("button");
  expect(segments.map((segment) => segment.tagName)).toEqual(["SPAN", "SPAN", "SPAN"]);
  expect(segments.map((segment) => segment.getAttribute("tabindex"))).toEqual(["0", "0", "0"]);
  expect(segments[1]).toHaveAttribute("title", "Play from 0:04");
  expect(screen.queryByTestId("transcript-language")).toBeNull(); // English: not said
  // Under the player, in the same row.
  const audio = screen.getByLabelText("Customer voice note, 0:10");
  expect(audio.compareDocumentPosition(text) & Node.DOCUMENT_POSITION_FOLLOWING).toBeTruthy();
});

test("a click on a segment seeks the player to its start and plays; Enter and Space do too", async () => {
  mount(() => done());
  const audio = (await screen.findByLabelText("Customer voice note, 0:10")) as HTMLAudioElement;
  const segments = await screen.findAllByTestId("transcript-segment");

  fireEvent.click(segments[1]);
  expect(audio.currentTime).toBe(4.6);
  expect(play).toHaveBeenCalledTimes(1);

  fireEvent.keyDown(segments[2], { key: "Enter" });
  expect(audio.currentTime).toBe(8.0);
  fireEvent.keyDown(segments[0], { key: " " });
  expect(audio.currentTime).toBe(0.52);
  fireEvent.keyDown(segments[1], { key: "a" });
  expect(audio.currentTime).toBe(0.52);
  expect(play).toHaveBeenCalledTimes(3);
});

test("a click that ends a mouse selection in the transcript does not seek", async () => {
  mount(() => done());
  const audio = (await screen.findByLabelText("Customer voice note, 0:10")) as HTMLAudioElement;
  const segments = await screen.findAllByTestId("transcript-segment");
  const range = document.createRange();
  range.setStart(segments[0].firstChild as Node, 3);
  range.setEnd(segments[1].firstChild as Node, 5);
  window.getSelection()?.removeAllRanges();
  window.getSelection()?.addRange(range);
  fireEvent.click(segments[1]);
  expect(audio.currentTime).toBe(0);
  expect(play).not.toHaveBeenCalled();
  window.getSelection()?.removeAllRanges();
});

test("the segment being heard is marked as the player moves", async () => {
  mount(() => done());
  const audio = (await screen.findByLabelText("Customer voice note, 0:10")) as HTMLAudioElement;
  const segments = await screen.findAllByTestId("transcript-segment");
  expect(segments.some((segment) => segment.hasAttribute("aria-current"))).toBe(false);
  audio.currentTime = 5;
  fireEvent.timeUpdate(audio);
  expect(segments[1]).toHaveAttribute("aria-current", "true");
  audio.currentTime = 7.95; // between two segments: still the one before
  fireEvent.timeUpdate(audio);
  expect(segments[1]).toHaveAttribute("aria-current", "true");
  audio.currentTime = 9;
  fireEvent.seeked(audio);
  expect(segments[2]).toHaveAttribute("aria-current", "true");
  expect(segments[1]).not.toHaveAttribute("aria-current");
});

test("which segment is current", () => {
  expect(currentSegment(SEGMENTS, 0, true)).toBe(-1);
  expect(currentSegment(SEGMENTS, 0.2, false)).toBe(-1); // before the first word
  expect(currentSegment(SEGMENTS, 1, true)).toBe(0);
  expect(currentSegment(SEGMENTS, 3.5, false)).toBe(0);
  expect(currentSegment(SEGMENTS, 10.1, false)).toBe(2);
  expect(currentSegment(SEGMENTS, 10.3, false)).toBe(-1); // after the last
});

test("while queued or running it says Transcribing…, and the store keeps polling until it is done", async () => {
  let transcript: object = { status: "queued", text: "", language: null, segments: [], model: null };
  const calls = mount(() => transcript);
  expect(await screen.findByText("Transcribing…")).toBeTruthy();
  const audio = screen.getByLabelText("Customer voice note, 0:10");
  transcript = { status: "running", text: "", language: null, segments: [], model: null };
  const before = calls.length;
  await act(() => new Promise((resolve) => setTimeout(resolve, 100)));
  expect(calls.length).toBeGreaterThan(before); // polled at the busy pace (20 ms here)
  expect(screen.getByText("Transcribing…")).toBeTruthy();
  transcript = done();
  expect(await screen.findByTestId("transcript-text")).toHaveTextContent("call me back");
  expect(screen.getByLabelText("Customer voice note, 0:10")).toBe(audio); // the player was kept
  // Done: back to the idle pace.
  const settled = calls.length;
  await act(() => new Promise((resolve) => setTimeout(resolve, 100)));
  expect(calls.length).toBeLessThanOrEqual(settled + 1);
});

test.each([
  [{ status: "no_speech", text: "", language: "en", segments: [], model: "tiny.en" }, "No speech in this note."],
  [{ status: "failed", text: "", language: null, segments: [], model: "tiny.en", error: "the model has no Welsh" },
    "No transcript: the model has no Welsh"],
  [{ status: "failed", text: "", language: null, segments: [], model: null }, "No transcript: unknown error"],
  [done({ text: "", segments: [], deleted_at: "2026-12-01T10:00:00Z" }), "Transcript deleted."],
])("%j says so under the player", async (transcript, text) => {
  mount(() => transcript);
  expect(await screen.findByTestId("transcript-state")).toHaveTextContent(text);
  expect(screen.getByLabelText("Customer voice note, 0:10")).toBeTruthy();
  expect(screen.queryByRole("button", { name: /Maria/ })).toBeNull();
});

test("a channel that does not transcribe: nothing under the player", async () => {
  mount(() => undefined);
  await screen.findByLabelText("Customer voice note, 0:10");
  expect(screen.queryByTestId("transcript")).toBeNull();
});

test("a transcript in another language says which, and its text is marked with it", async () => {
  expect(languageName("es")).toBe("Spanish");
  expect(languageName("en")).toBeNull();
  expect(languageName(null)).toBeNull();
  mount(() => done({ language: "es", model: "base", segments: [{ start: 0, end: 2, text: " Hola, buenos días." }] }));
  expect(await screen.findByTestId("transcript-language")).toHaveTextContent("Spanish");
  expect(screen.getByTestId("transcript-text")).toHaveAttribute("lang", "es");
});
