export const CHANNEL_NAMES: Record<string, string> = {
  whatsapp: "WhatsApp",
  sms: "SMS/MMS",
  webchat: "Web chat",
  messenger: "Messenger",
  other: "Other",
};

export function formatDuration(seconds: number | null | undefined): string {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "–:––";
  // To the nearest second, h:mm:ss from an hour: the rule of the service's console and admin page, so a note reads
  // the same length everywhere (a 4.99 s note is 0:05, not 0:04).
  const whole = Math.round(seconds);
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = String(whole % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

export function formatMegabytes(bytes: number): string {
  const mb = bytes / (1024 * 1024);
  return `${mb >= 10 ? Math.round(mb) : Math.round(mb * 10) / 10} MB`;
}

export function newIdempotencyKey(): string {
  const cryptoApi = globalThis.crypto;
  if (typeof cryptoApi?.randomUUID === "function") return cryptoApi.randomUUID();
  // randomUUID is missing on older Safari; getRandomValues is everywhere and is just as unguessable.
  const bytes = cryptoApi.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
