#!/bin/sh
# What CI runs for the Flex plugin: install exactly what package-lock.json pins, type-check against the real
# @twilio/flex-ui types (and the service's static modules), run the unit tests, build the bundle the browser test loads.
set -eu
cd "$(dirname "$0")"
# --ignore-scripts: nothing here needs an install script (the template's postinstall wants ~/.twilio-cli/).
npm ci --no-audit --no-fund --ignore-scripts --prefer-offline
npx tsc --noEmit
# The service's own browser modules (webhook_app/static/, plain ES modules with // @ts-check), with this TypeScript.
npx tsc -p ../webhook_app/static/jsconfig.json
npm test -- --ci
npm run build
ls -l build/plugin-audio-messages.js
