// flex-plugin-scripts builds Jest's configuration and hands it to this function to adjust.
module.exports = (config) => ({
  ...config,
  // The FlexPlugin constructor reads the constants the build defines; under Jest they are globals.
  globals: {
    __FPB_PLUGIN_UNIQUE_NAME: "plugin-audio-messages",
    __FPB_PLUGIN_VERSION: "0.0.0-test",
    __FPB_FLEX_PLUGIN_SCRIPTS_VERSION: "test",
    __FPB_FLEX_PLUGIN_VERSION: "test",
    __FPB_FLEX_UI_VERSION: "test",
    __FPB_REACT_VERSION: "test",
    __FPB_REACT_DOM_VERSION: "test",
  },
  moduleNameMapper: {
    ...config.moduleNameMapper,
    // Paste's icons ship as ES modules (esm/, which the bundle uses) and CommonJS (cjs/, which Jest can load).
    "^@twilio-paste/icons/esm/(.*)$": "@twilio-paste/icons/cjs/$1",
    // The agent console's modules the plugin is built from (see webpack.config.js); Babel transforms them as it
    // does src/ (transformIgnorePatterns leaves out only node_modules).
    "^@shared/(.*)$": "<rootDir>/../webhook_app/static/shared/$1",
  },
  // The test that imports the real @twilio/flex-ui takes a few seconds on its own.
  testTimeout: 30000,
});
