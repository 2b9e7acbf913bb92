#!/usr/bin/env node
// Runs the plugin's Jest tests the way `twilio flex:plugins:test` does: through flex-plugin-scripts' test script
// (its Jest configuration, Babel transform and jest.config.js hook). `flex-plugin test` itself passes
// `--run-script` on to Jest 27, which rejects it, so the script function is called directly.
// Arguments are passed to Jest, e.g. `npm test -- --ci` or `npm test -- src/__tests__/config.test.ts`.
process.env.CI = process.env.CI || "";
const test = require("@twilio/flex-plugin-scripts/dist/scripts/test").default;

test("--env=jsdom", ...process.argv.slice(2)).catch((error) => {
  console.error(error);
  process.exit(1);
});
