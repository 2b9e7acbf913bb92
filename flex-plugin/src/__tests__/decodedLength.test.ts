/**
 * The preview's probe for the length the browser decodes (webhook_app/static/shared/decoded-length.js), which the
 * console's record panel and this plugin's both use. jsdom plays nothing, so the element's duration and position
 * are set by hand, as each engine sets them (see the module's comment).
 */
import { learnDecodedLength } from "@shared/decoded-length.js";

/** An <audio> whose duration the test sets and whose seeks it records. */
function player(duration: number) {
  const audio = document.createElement("audio");
  const state = { duration, currentTime: 0, seeks: [] as number[] };
  Object.defineProperty(audio, "duration", { get: () => state.duration });
  Object.defineProperty(audio, "currentTime", {
    get: () => state.currentTime,
    set: (value: number) => {
      state.seeks.push(value);
      state.currentTime = value;
    },
  });
  const fire = (type: string) => audio.dispatchEvent(new Event(type));
  /** The engine learnt the length (and, as Chrome does after the probe's seek, stands at the end). */
  const learns = (seconds: number, { atEnd = false } = {}) => {
    state.duration = seconds;
    if (atEnd) state.currentTime = seconds;
    fire("durationchange");
  };
  return { audio, state, fire, learns };
}

test("Chrome: no length at first (Infinity), so it seeks past the end, then learns it and goes back to the start", () => {
  const { audio, state, fire, learns } = player(Infinity);
  const lengths: number[] = [];
  learnDecodedLength(audio, { onLength: (seconds) => lengths.push(seconds) });
  fire("durationchange"); // Infinity: nothing learnt yet
  fire("loadedmetadata");
  expect(state.seeks).toEqual([Number.MAX_SAFE_INTEGER]);
  learns(3.02, { atEnd: true });
  expect(lengths).toEqual([3.02]);
  expect(state.seeks).toEqual([Number.MAX_SAFE_INTEGER, 0]);
  expect(state.currentTime).toBe(0);
  // Later changes are reported without another rewind (it is no longer probing).
  state.currentTime = 1.5;
  learns(3.04);
  expect(lengths).toEqual([3.02, 3.04]);
  expect(state.currentTime).toBe(1.5);
});

test("Firefox: the seek is ignored and it learns the length only at the end of playing, which it must not rewind", () => {
  const { audio, state, fire, learns } = player(Infinity);
  const lengths: number[] = [];
  learnDecodedLength(audio, { onLength: (seconds) => lengths.push(seconds) });
  fire("loadedmetadata");
  state.currentTime = 0; // ignored the probe
  fire("play");
  learns(4.99, { atEnd: true });
  expect(lengths).toEqual([4.99]);
  expect(state.currentTime).toBe(4.99);
  expect(state.seeks).toEqual([Number.MAX_SAFE_INTEGER]);
});

test("WebKit: the MP4's header has the length, so there is no probe", () => {
  const { audio, state, fire, learns } = player(NaN);
  const lengths: number[] = [];
  learnDecodedLength(audio, { onLength: (seconds) => lengths.push(seconds) });
  learns(3.02);
  fire("loadedmetadata");
  expect(lengths).toEqual([3.02]);
  expect(state.seeks).toEqual([]);
});

test("an aborted signal takes the listeners off: no probe, no rewind, no length", () => {
  const { audio, state, fire, learns } = player(Infinity);
  const onLength = jest.fn();
  const stop = new AbortController();
  learnDecodedLength(audio, { onLength, signal: stop.signal });
  fire("loadedmetadata");
  stop.abort();
  learns(3, { atEnd: true });
  expect(onLength).not.toHaveBeenCalled();
  expect(state.currentTime).toBe(3);

  const later = player(Infinity);
  learnDecodedLength(later.audio, { onLength, signal: stop.signal }); // already aborted
  later.fire("loadedmetadata");
  later.learns(3);
  expect(later.state.seeks).toEqual([]);
  expect(onLength).not.toHaveBeenCalled();
});
