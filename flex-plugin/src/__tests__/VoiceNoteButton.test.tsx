import * as React from "react";
import { act, fireEvent, render, screen, waitFor } from "@testing-library/react";

import { VoiceNoteButton } from "../components/VoiceNoteButton";
import { createRuntime } from "../runtime";
import {
  chatTask, CONVERSATION, fakeFetch, fakeManager, FakeXhr, microphone, OTHER_CONVERSATION, SERVICE, WHATSAPP_SETTINGS,
} from "../testing/fakes";

const SETTINGS_URL = `${SERVICE}/api/v1/conversations/${CONVERSATION}/audio-settings`;
const AUDIO_URL = `${SERVICE}/api/v1/conversations/${CONVERSATION}/audio`;
const SENT = { audit_id: 7, message_sid: "IM1", media_sid: "ME1", duration_s: 3.2, size_bytes: 26000, content_type: "audio/mpeg" };

function settingsAre(settings: object) {
  return fakeFetch((url) => (url.endsWith("/audio-settings") ? { status: 200, body: settings } : { status: 200, body: { audio_messages: [] } }));
}

function mount(options: { manager?: ReturnType<typeof fakeManager>; task?: object; conversationSid?: string } = {}) {
  const manager = options.manager ?? fakeManager();
  const mic = microphone();
  const runtime = createRuntime(manager);
  const view = render(
    <VoiceNoteButton runtime={runtime} task={options.task ?? chatTask()} conversationSid={options.conversationSid}
      openTake={mic.openTake} />,
  );
  const rerender = (task: object) => view.rerender(
    <VoiceNoteButton runtime={runtime} task={task} openTake={mic.openTake} />,
  );
  return { manager, mic, view, rerender };
}

async function openRecorder() {
  fireEvent.click(await screen.findByRole("button", { name: "Voice note: show the recorder" }));
  return screen.findByRole("button", { name: "Start recording a voice note" });
}

async function recordSeconds(mic: ReturnType<typeof microphone>, seconds: number) {
  const record = screen.queryByRole("button", { name: "Start recording a voice note" }) ?? await openRecorder();
  fireEvent.click(record);
  const stop = await screen.findByRole("button", { name: "Stop recording" });
  mic.takes[mic.takes.length - 1].seconds = seconds;
  await waitFor(() => expect(screen.getByRole("timer", { name: "Elapsed recording time" })).toHaveTextContent(
    `0:${String(seconds).padStart(2, "0")}`,
  ));
  fireEvent.click(stop);
  return screen.findByRole("button", { name: "Send the voice note" });
}

beforeEach(() => {
  FakeXhr.install();
  URL.createObjectURL = jest.fn(() => "blob:recording");
  URL.revokeObjectURL = jest.fn();
});

test("shows nothing on a task that is not a Conversations chat", () => {
  settingsAre(WHATSAPP_SETTINGS);
  mount({ task: { taskChannelUniqueName: "voice", attributes: { call_sid: "CA1" } } });
  expect(screen.queryByRole("button", { name: /Voice note/ })).toBeNull();
});

test("records, previews and sends the voice note with the agent's current token and an idempotency key", async () => {
  const calls = settingsAre(WHATSAPP_SETTINGS);
  const { manager, mic } = mount();
  expect(await openRecorder()).toBeEnabled();
  expect(screen.getByText("WhatsApp: Up to 15:00 · 16 MB per file")).toBeTruthy();
  expect(calls[0]).toEqual({ url: SETTINGS_URL, headers: { Authorization: "Bearer token-1", Accept: "application/json" } });

  manager.token = "token-2"; // Flex refreshed the token meanwhile
  const send = await recordSeconds(mic, 3);
  expect(mic.takes[0].released).toBe(true);
  expect(screen.getByLabelText("Preview of your recording")).toHaveAttribute("src", "blob:recording");
  expect(screen.getByTestId("voice-note-duration")).toHaveTextContent("0:03");

  fireEvent.click(send);
  fireEvent.click(send); // a double click sends once
  await waitFor(() => expect(FakeXhr.sent).toHaveLength(1));
  const [request] = FakeXhr.sent;
  expect(request.method).toBe("POST");
  expect(request.url).toBe(AUDIO_URL);
  expect(request.headers.Authorization).toBe("Bearer token-2");
  expect(request.headers["Idempotency-Key"]).toMatch(/^[0-9a-f-]{32,36}$/);
  const audio = request.body?.get("audio") as File;
  expect(audio.name).toBe("voice-note.webm");
  expect(audio.size).toBe(2048);

  act(() => request.progress(0.5));
  expect(screen.getByText("Uploading… 50%")).toBeTruthy();
  act(() => request.progress(1));
  expect(screen.getByRole("button", { name: "Cancel sending" })).toBeDisabled();
  act(() => request.respond(201, SENT));
  expect(await screen.findByText("Voice note sent (0:03).")).toBeTruthy();
  expect(screen.getByRole("button", { name: "Start recording a voice note" })).toBeTruthy();
});

test("a failed send keeps the clip, shows the service's reason, and the retry carries the same key", async () => {
  settingsAre(WHATSAPP_SETTINGS);
  const { mic } = mount();
  fireEvent.click(await recordSeconds(mic, 2));
  await waitFor(() => expect(FakeXhr.sent).toHaveLength(1));
  const message = "the recording is 17.3 MB as MP3; whatsapp allows at most 16 MB per file";
  act(() => FakeXhr.sent[0].respond(413, { error: { code: "too_large", message } }));
  expect((await screen.findByRole("alert")).textContent).toBe(message);

  fireEvent.click(screen.getByRole("button", { name: "Send the voice note" }));
  await waitFor(() => expect(FakeXhr.sent).toHaveLength(2));
  expect(FakeXhr.sent[1].headers["Idempotency-Key"]).toBe(FakeXhr.sent[0].headers["Idempotency-Key"]);
  act(() => FakeXhr.sent[1].respond(201, SENT));
  expect(await screen.findByText(/Voice note sent/)).toBeTruthy();

  // The next recording is a new message: a new key.
  fireEvent.click(await screen.findByRole("button", { name: "Start recording a voice note" }));
  await screen.findByRole("button", { name: "Stop recording" });
  mic.takes[1].seconds = 1;
  await waitFor(() => expect(screen.getByRole("timer")).toHaveTextContent("0:01"));
  fireEvent.click(screen.getByRole("button", { name: "Stop recording" }));
  fireEvent.click(await screen.findByRole("button", { name: "Send the voice note" }));
  await waitFor(() => expect(FakeXhr.sent).toHaveLength(3));
  expect(FakeXhr.sent[2].headers["Idempotency-Key"]).not.toBe(FakeXhr.sent[0].headers["Idempotency-Key"]);
});

test("cancel while uploading keeps the recording; discard drops it", async () => {
  settingsAre(WHATSAPP_SETTINGS);
  const { mic } = mount();
  fireEvent.click(await recordSeconds(mic, 1));
  await waitFor(() => expect(FakeXhr.sent).toHaveLength(1));
  fireEvent.click(screen.getByRole("button", { name: "Cancel sending" }));
  expect(FakeXhr.sent[0].aborted).toBe(true);
  expect(await screen.findByText("Sending cancelled. The recording is kept; send it again or discard it.")).toBeTruthy();
  fireEvent.click(screen.getByRole("button", { name: "Discard the recording" }));
  expect(await screen.findByText("Recording discarded.")).toBeTruthy();
  expect(URL.revokeObjectURL).toHaveBeenCalledWith("blob:recording");
  expect(FakeXhr.sent).toHaveLength(1);
});

/** The preview's <audio>, its duration set by the test and its position recorded (jsdom plays nothing). */
function previewPlayer() {
  const audio = screen.getByLabelText("Preview of your recording") as HTMLAudioElement;
  const state = { duration: Infinity, currentTime: 0 };
  Object.defineProperty(audio, "duration", { get: () => state.duration });
  Object.defineProperty(audio, "currentTime", {
    get: () => state.currentTime,
    set: (value: number) => { state.currentTime = value; },
  });
  return { audio, state };
}

test("the preview makes a length-less WebM learn its length, and a discarded preview stops probing", async () => {
  settingsAre(WHATSAPP_SETTINGS);
  const { mic } = mount();
  await recordSeconds(mic, 3);
  const first = previewPlayer();
  fireEvent(first.audio, new Event("loadedmetadata")); // Chrome's WebM: Infinity, so seek past the end
  expect(first.state.currentTime).toBe(Number.MAX_SAFE_INTEGER);
  first.state.duration = 3.02;
  fireEvent(first.audio, new Event("durationchange")); // learnt: back to the start
  expect(first.state.currentTime).toBe(0);
  fireEvent.click(screen.getByRole("button", { name: "Discard the recording" }));

  await recordSeconds(mic, 2);
  const second = previewPlayer();
  expect(second.audio).not.toBe(first.audio);
  fireEvent(second.audio, new Event("loadedmetadata"));
  expect(second.state.currentTime).toBe(Number.MAX_SAFE_INTEGER);
  // Discarded mid-probe: the effect's cleanup took the listeners off, so the element is left alone.
  fireEvent.click(screen.getByRole("button", { name: "Discard the recording" }));
  second.state.duration = 2.01;
  fireEvent(second.audio, new Event("durationchange"));
  expect(second.state.currentTime).toBe(Number.MAX_SAFE_INTEGER);
});

test("Stop says \"Finishing the recording…\" while the take's end arrives, then shows the preview", async () => {
  settingsAre(WHATSAPP_SETTINGS);
  const { mic } = mount();
  fireEvent.click(await openRecorder());
  const stop = await screen.findByRole("button", { name: "Stop recording" });
  mic.takes[0].seconds = 5;
  await waitFor(() => expect(screen.getByRole("timer")).toHaveTextContent("0:05"));
  const arrive = mic.takes[0].holdStop(); // WebKit: the take's last fragment is still on its way
  fireEvent.click(stop);
  expect(await screen.findByText("Finishing the recording…")).toBeTruthy();
  expect(screen.getByTestId("voice-note-panel")).toHaveAttribute("data-finishing", "true");
  fireEvent.click(stop); // a second Stop changes nothing
  expect(screen.queryByRole("button", { name: "Send the voice note" })).toBeNull();
  arrive();
  expect(await screen.findByRole("button", { name: "Send the voice note" })).toBeTruthy();
  expect(screen.getByTestId("voice-note-duration")).toHaveTextContent("0:05");
  expect(screen.getByTestId("voice-note-panel")).not.toHaveAttribute("data-finishing");
  expect(screen.getByRole("status")).toHaveTextContent("Recorded 0:05. Listen, then send or discard it.");
});

test("Cancel while the take is finishing gives the microphone back at once and keeps nothing", async () => {
  settingsAre(WHATSAPP_SETTINGS);
  const { mic } = mount();
  fireEvent.click(await openRecorder());
  const stop = await screen.findByRole("button", { name: "Stop recording" });
  mic.takes[0].holdStop(); // never arrives
  fireEvent.click(stop);
  await screen.findByText("Finishing the recording…");
  expect(mic.takes[0].released).toBe(false);
  fireEvent.click(screen.getByRole("button", { name: "Cancel and discard the recording" }));
  expect(mic.takes[0].released).toBe(true);
  expect(await screen.findByText("Recording cancelled.")).toBeTruthy();
  await act(() => mic.takes[0].finished);
  expect(screen.queryByRole("button", { name: "Send the voice note" })).toBeNull();
  expect(screen.getByRole("button", { name: "Start recording a voice note" })).toBeTruthy();
  expect(screen.getByTestId("voice-note-alert")).toHaveTextContent("");
});

test("warns before the channel's cap and stops there by itself", async () => {
  settingsAre({ ...WHATSAPP_SETTINGS, max_duration_s: 12 });
  const { mic } = mount();
  const record = await openRecorder();
  expect(screen.getByText("WhatsApp: Up to 0:12 · 16 MB per file")).toBeTruthy();
  fireEvent.click(record);
  await screen.findByRole("button", { name: "Stop recording" });
  expect(screen.getByText("/ 0:12")).toBeTruthy();
  await waitFor(() => expect(screen.getByRole("meter", { name: "Microphone input level" }))
    .toHaveAttribute("aria-valuenow", "50"));
  mic.takes[0].seconds = 5;
  await waitFor(() => expect(screen.getByRole("alert")).toHaveTextContent("Recording stops in 7 s (the 0:12 limit)."));
  mic.takes[0].seconds = 11.8;
  expect(await screen.findByRole("button", { name: "Send the voice note" })).toBeTruthy();
  expect(screen.getByRole("alert")).toHaveTextContent("Stopped at the 0:12 limit.");
  expect(mic.takes[0].stopped).toBe(true);
});

test("the size cap shortens the limit at the channel's bitrate", async () => {
  settingsAre({ ...WHATSAPP_SETTINGS, channel: "sms", max_bytes: 600 * 1024, bitrate_kbps: 64 });
  mount();
  await openRecorder();
  // 600 KiB * 8 * 0.95 / 64 kb/s = 72 s
  expect(screen.getByText("SMS/MMS: Up to 1:12 · 600 KB per file")).toBeTruthy();
});

test("the button is disabled, with the reason, where the channel's sending is off", async () => {
  settingsAre({ ...WHATSAPP_SETTINGS, sending_enabled: false });
  mount();
  const button = await screen.findByRole("button", { name: "Voice note" });
  await waitFor(() => expect(button).toBeDisabled());
  expect(button).toHaveAccessibleDescription("Audio sending is disabled for this channel");
  expect(button).toHaveAttribute("title", "Audio sending is disabled for this channel");
});

test("an admin turning sending off after the settings loaded: the clip is dropped and the button disabled", async () => {
  settingsAre(WHATSAPP_SETTINGS);
  const { mic } = mount();
  fireEvent.click(await recordSeconds(mic, 1));
  await waitFor(() => expect(FakeXhr.sent).toHaveLength(1));
  act(() => FakeXhr.sent[0].respond(403, { error: { code: "sending_disabled", message: "audio sending is disabled for whatsapp" } }));
  expect(await screen.findByTestId("voice-note-problem")).toHaveTextContent("Audio sending is disabled for this channel");
  expect(screen.getByRole("button", { name: "Voice note" })).toBeDisabled();
  expect(screen.queryByRole("button", { name: "Send the voice note" })).toBeNull();
});

test("switching tasks mid-recording gives the microphone back", async () => {
  settingsAre(WHATSAPP_SETTINGS);
  const { mic, rerender } = mount();
  fireEvent.click(await openRecorder());
  await screen.findByRole("button", { name: "Stop recording" });
  expect(mic.takes[0].released).toBe(false);
  rerender(chatTask(OTHER_CONVERSATION));
  expect(mic.takes[0].released).toBe(true);
  expect(screen.queryByRole("button", { name: "Stop recording" })).toBeNull();
  // The other task's recorder starts fresh, collapsed.
  expect(await screen.findByRole("button", { name: "Voice note: show the recorder" })).toBeTruthy();
});

test("a blocked microphone is explained and Record stays available", async () => {
  settingsAre(WHATSAPP_SETTINGS);
  const { mic } = mount();
  mic.deny("NotAllowedError");
  fireEvent.click(await openRecorder());
  expect(await screen.findByText(/Microphone access is blocked/)).toBeTruthy();
  expect(screen.getByRole("button", { name: "Start recording a voice note" })).toBeEnabled();
});

test("a missing service URL is explained in the panel", async () => {
  const calls = settingsAre(WHATSAPP_SETTINGS);
  mount({ manager: fakeManager({ serviceUrl: null }) });
  fireEvent.click(screen.getByRole("button", { name: "Voice note: show the recorder" }));
  expect(screen.getByTestId("voice-note-problem")).toHaveTextContent(
    "Voice notes are not set up: Flex's configuration has no ui_attributes.audio_messages.service_url.",
  );
  expect(calls).toHaveLength(0);
});

test("an unreachable service is explained, and Retry asks again", async () => {
  let reachable = false;
  fakeFetch(() => (reachable ? { status: 200, body: WHATSAPP_SETTINGS } : new TypeError("Failed to fetch")));
  mount();
  fireEvent.click(screen.getByRole("button", { name: "Voice note: show the recorder" }));
  expect(await screen.findByTestId("voice-note-problem")).toHaveTextContent(
    `Could not load the audio settings: Could not reach the audio service at ${SERVICE}.`,
  );
  reachable = true;
  fireEvent.click(screen.getByRole("button", { name: "Retry loading the audio settings" }));
  expect(await screen.findByRole("button", { name: "Start recording a voice note" })).toBeTruthy();
});

test("keyboard: Escape closes the recorder and gives the focus back to the button", async () => {
  settingsAre(WHATSAPP_SETTINGS);
  mount();
  const record = await openRecorder();
  record.focus();
  fireEvent.keyDown(record, { key: "Escape" });
  const toggle = screen.getByRole("button", { name: "Voice note: show the recorder" });
  expect(toggle).toHaveAttribute("aria-expanded", "false");
  expect(document.activeElement).toBe(toggle);
});
