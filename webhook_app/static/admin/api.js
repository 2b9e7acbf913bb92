// @ts-check
/**
 * The admin JSON API (/api/v1/admin/...), with the session cookie the login form set; every request that changes
 * something carries the page's CSRF token in X-CSRF-Token. An answer 401 (the session ended) shows the banner
 * that links to the sign-in page.
 */
import { byId } from "../shared/dom.js";
import { ServiceError, serviceError } from "../shared/errors.js";
import { API, CSRF } from "./config.js";

/**
 * Call the admin API; resolves with the parsed body, throws a ServiceError whose message the page shows.
 * @param {string} path under the API, e.g. "/settings"
 * @param {{method?: string, body?: unknown, params?: URLSearchParams}} [request]
 * @returns {Promise<any>}
 */
export async function api(path, { method = "GET", body, params } = {}) {
  const url = new URL(API + path, window.location.origin);
  if (params) for (const [key, value] of params) url.searchParams.append(key, value);
  /** @type {Record<string, string>} */
  const headers = { Accept: "application/json" };
  /** @type {RequestInit} */
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (!["GET", "HEAD", "OPTIONS"].includes(method)) headers["X-CSRF-Token"] = CSRF;
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ServiceError("The server could not be reached. Check the connection and try again.", 0, "network");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401) byId("session-banner", HTMLElement).hidden = false;
    throw serviceError(response.status, data, `The server answered ${response.status} ${response.statusText}`.trim(),
                       `http_${response.status}`);
  }
  return data;
}
