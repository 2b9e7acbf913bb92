// Jest setup (flex-plugin-scripts picks up src/setupTests.js): DOM matchers such as toBeDisabled, toHaveTextContent.
require("@testing-library/jest-dom");
// jsdom 16 has no Web Crypto; the recorder makes its Idempotency-Key with crypto.randomUUID.
if (!globalThis.crypto || !globalThis.crypto.randomUUID) {
  Object.defineProperty(globalThis, "crypto", { value: require("crypto").webcrypto, configurable: true });
}
