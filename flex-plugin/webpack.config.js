// flex-plugin-scripts builds webpack's configuration and hands it to this function to adjust.
//
// The recorder, the MP4/WebM repair, the API client, transcript logic and formatting are the agent console's own
// modules (webhook_app/static/shared/, plain ES modules served without a build): the plugin imports them as
// "@shared/…" rather than keeping a copy. Three settings make that work: the alias; Babel for those files too
// (webpack 4's parser knows no `?.` or `??`); and no ModuleScopePlugin, which refuses imports from outside src/
// and fails outright on a file with no package.json above it (webhook_app/ has none). The alias names one folder,
// and tsc's path mapping the same one: that is the way out of src/ now.
const path = require("path");

const SHARED = path.resolve(__dirname, "../webhook_app/static/shared");

module.exports = (config) => {
  config.resolve.alias = { ...config.resolve.alias, "@shared": SHARED };
  config.resolve.plugins = (config.resolve.plugins || [])
    .filter((plugin) => plugin.constructor.name !== "ModuleScopePlugin");
  const babel = findRule(config.module.rules, (rule) => String(rule.loader).includes("babel-loader"));
  if (!babel) throw new Error("webpack.config.js: flex-plugin-scripts' babel-loader rule was not found");
  babel.include = [].concat(babel.include, SHARED);
  return config;
};

/** The first rule, nested in `oneOf`s included, that `matches`. */
function findRule(rules, matches) {
  for (const rule of rules) {
    if (matches(rule)) return rule;
    const inner = rule.oneOf && findRule(rule.oneOf, matches);
    if (inner) return inner;
  }
  return null;
}
