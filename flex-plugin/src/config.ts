/**
 * What the plugin reads from Flex: the service URL (Flex's configuration, so a new URL needs no rebuild) and the
 * agent's token (read on every request, because Flex refreshes it while the agent works).
 *
 * `FlexManagerLike` is the narrow slice of `Flex.Manager` the plugin touches. The plugin passes the real manager
 * (the type checker proves it fits); tests and the browser test page pass a plain object.
 */

export const CONFIG_KEY = "audio_messages";
export const CONFIG_PATH = `ui_attributes.${CONFIG_KEY}.service_url`;

export interface AudioMessagesConfig {
  service_url?: string;
}

export interface FlexManagerLike {
  serviceConfiguration?: { ui_attributes?: unknown } | null;
  configuration?: unknown;
  user?: { token?: string } | null;
  store: { getState(): unknown };
}

export type ServiceUrl = { url: string; error?: undefined } | { url?: undefined; error: string };

function section(source: unknown): AudioMessagesConfig | undefined {
  if (!source || typeof source !== "object") return undefined;
  const value = (source as Record<string, unknown>)[CONFIG_KEY];
  return value && typeof value === "object" ? (value as AudioMessagesConfig) : undefined;
}

/**
 * The audio service's base URL. Flex merges `ui_attributes` into `manager.configuration`; older set-ups only have
 * it on `serviceConfiguration`, so both are read, the live configuration first.
 */
export function readServiceUrl(manager: FlexManagerLike): ServiceUrl {
  const raw = section(manager.configuration)?.service_url
    ?? section(manager.serviceConfiguration?.ui_attributes)?.service_url;
  if (raw == null || String(raw).trim() === "") {
    return {
      error: `Voice notes are not set up: Flex's configuration has no ${CONFIG_PATH}. `
        + "Ask an administrator to set it to the audio service's address.",
    };
  }
  let parsed: URL;
  try {
    parsed = new URL(String(raw).trim());
  } catch {
    return { error: `Voice notes are not set up: ${CONFIG_PATH} (${String(raw)}) is not a URL.` };
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") {
    return { error: `Voice notes are not set up: ${CONFIG_PATH} must be an https:// address.` };
  }
  return { url: parsed.href.replace(/\/+$/, "") };
}

function dig(value: unknown, ...keys: string[]): unknown {
  let current = value;
  for (const key of keys) {
    if (!current || typeof current !== "object") return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

/** The agent's current Flex token: the session's SSO token payload, else `manager.user.token`. */
export function readFlexToken(manager: FlexManagerLike): string {
  const fromSession = dig(manager.store.getState(), "flex", "session", "ssoTokenPayload", "token");
  const token = typeof fromSession === "string" && fromSession ? fromSession : manager.user?.token;
  if (!token) throw new Error("Flex has no token for this session. Sign in to Flex again.");
  return token;
}
