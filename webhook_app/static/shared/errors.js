// @ts-check
/**
 * The service's errors as the pages show them. Every JSON error the service answers has one shape,
 * `{"error": {"code": "sending_disabled", "message": "Audio sending is disabled for this channel"}}`, whose
 * message is written for the person using the page.
 */

/** An error the service answered (or a network failure, status 0): its message is shown as it is. */
export class ServiceError extends Error {
  /**
   * @param {string} message
   * @param {number} [status] the HTTP status, 0 when the service was not reached
   * @param {string} [code] the service's error code
   */
  constructor(message, status = 0, code = "error") {
    super(message);
    this.name = "ServiceError";
    this.status = status;
    this.code = code;
  }
}

/**
 * The name and message of whatever was thrown or rejected with ("" for what it lacks).
 * @param {unknown} error
 * @returns {{name: string, message: string}}
 */
export function errorParts(error) {
  if (!error || typeof error !== "object") return { name: "", message: "" };
  const name = "name" in error && error.name ? String(error.name) : "";
  const message = "message" in error && error.message ? String(error.message) : "";
  return { name, message };
}

/**
 * Whether `error` is the AbortError of a cancelled request (fetch, or an upload the user cancelled).
 * @param {unknown} error
 */
export function isAbortError(error) {
  return errorParts(error).name === "AbortError";
}

/**
 * A parsed JSON body, or null when the text is not JSON (a proxy's HTML error page, say).
 * @param {string} text
 * @returns {unknown}
 */
export function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/**
 * The error in a body of the service's error shape; "" for what it lacks.
 * @param {unknown} body
 * @returns {{message: string, code: string}}
 */
export function errorFields(body) {
  const error = body && typeof body === "object" && "error" in body ? body.error : null;
  if (!error || typeof error !== "object") return { message: "", code: "" };
  const message = "message" in error && typeof error.message === "string" ? error.message : "";
  const code = "code" in error && typeof error.code === "string" ? error.code : "";
  return { message, code };
}

/**
 * The ServiceError for an error answer: the service's own message and code, else `fallback` and `fallbackCode`.
 * @param {number} status
 * @param {unknown} body the parsed body (null when it was not JSON)
 * @param {string} fallback
 * @param {string} [fallbackCode]
 */
export function serviceError(status, body, fallback, fallbackCode = "error") {
  const { message, code } = errorFields(body);
  return new ServiceError(message || fallback, status, code || fallbackCode);
}
