// @ts-check
// The /admin page: per-channel settings editor and audit browser.
//
// Plain ES modules, no build step: this entry and its siblings in admin/ (the page's configuration and API,
// the channel cards and recent changes, the audit table with its filters, CSV link and detail panel), with the
// DOM, format and error helpers in shared/ that the record panel uses too. The admin API is called with the
// session cookie the login form set; every request that changes something carries the page's CSRF token.
import { zoneName } from "./shared/format.js";
import { AuditTrail } from "./admin/audit.js";
import { initSettings } from "./admin/settings.js";

// The custom range is typed in the browser's time: say which.
for (const label of document.querySelectorAll("[data-local-zone]")) label.textContent = `(${zoneName(new Date())})`;
initSettings();
new AuditTrail().init();
