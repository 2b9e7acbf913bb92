import { readFlexToken, readServiceUrl } from "../config";
import { fakeManager, SERVICE } from "../testing/fakes";

test("the service URL comes from Flex's configuration (ui_attributes), the trailing slash dropped", () => {
  expect(readServiceUrl(fakeManager({ serviceUrl: `${SERVICE}/` }))).toEqual({ url: SERVICE });
  expect(readServiceUrl(fakeManager({ onServiceConfiguration: true }))).toEqual({ url: SERVICE });
});

test("a missing or malformed URL is explained", () => {
  expect(readServiceUrl(fakeManager({ serviceUrl: null })).error).toMatch(/has no ui_attributes\.audio_messages\.service_url/);
  expect(readServiceUrl(fakeManager({ serviceUrl: "audio.example.com" })).error).toMatch(/is not a URL/);
  expect(readServiceUrl(fakeManager({ serviceUrl: "ftp://audio.example.com" })).error).toMatch(/https:\/\//);
});

test("the token is read on every call: Flex refreshes it", () => {
  const manager = fakeManager();
  expect(readFlexToken(manager)).toBe("token-1");
  manager.token = "token-2";
  expect(readFlexToken(manager)).toBe("token-2");
  const withoutSso = { ...manager, store: { getState: () => ({ flex: { session: {} } }) } };
  expect(readFlexToken(withoutSso)).toBe("user-token");
  expect(() => readFlexToken({ ...withoutSso, user: null })).toThrow(/Sign in to Flex again/);
});
