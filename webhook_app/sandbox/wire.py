"""Twilio's wire conventions shared by every sandbox endpoint: error bodies and codes, SIDs, dates."""

from __future__ import annotations

import calendar
import re
import secrets
import time
from http import HTTPStatus

from flask import Response, jsonify

from .resources import TwilioErrorBody

CONVERSATIONS_BASE = "https://conversations.twilio.com"

# Twilio error codes used by the sandbox. Where no Twilio document pins the code down, the comment says so.
ERR_INVALID_PARAMETER = 20001  # generic 400; Conversations' own code for each case is unconfirmed
ERR_AUTHENTICATE = 20003
ERR_NOT_FOUND = 20404
ERR_METHOD_NOT_ALLOWED = 20004
ERR_UNIQUE_NAME_TAKEN = 50353
ERR_BINDING_EXISTS = 50416
ERR_PARTICIPANT_EXISTS = 50433
ERR_INVALID_MEDIA_SID = 50510
ERR_INVALID_MEDIA_CONTENT_TYPE = 50511
ERR_MEDIA_TOO_LARGE = 50512
ERR_TOKEN_INVALID = 20101  # "Invalid Access Token"
ERR_TOKEN_EXPIRED = 20104  # "Access Token expired or expiration date invalid"


class TwilioError(Exception):
    """Answered as Twilio's error JSON: {"code", "message", "more_info", "status"}."""

    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> Response:
        body: TwilioErrorBody = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        resp = jsonify(body)
        resp.status_code = self.status
        resp.headers.update(self.headers)
        return resp


def not_found(path: str) -> TwilioError:
    return TwilioError(404, ERR_NOT_FOUND, f"The requested resource {path} was not found")


def http_error(status: int, message: str | None = None, headers: dict[str, str] | None = None) -> TwilioError:
    # Twilio's HTTP-level errors use 20000 + status (20429 Too Many Requests, 20503, ...).
    return TwilioError(status, 20000 + status, message or reason(status), headers)


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def iso(ts: float | None = None) -> str:
    # Conversations renders dates to the second with a literal Z, e.g. "2015-12-16T22:18:37Z".
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if ts is None else ts))


def iso_ms(ts: float) -> str:
    # IAM's `expiration` carries milliseconds ("2018-09-24T23:22:44.240Z" in the validator's README).
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def webhook_date(rest_date: str) -> str:
    # Webhooks carry milliseconds ("...T09:14:07.000Z") where REST resources stop at the second.
    return re.sub(r"(T\d\d:\d\d:\d\d)Z$", r"\1.000Z", rest_date)


def age_s(rest_date: str) -> float:
    return time.time() - calendar.timegm(time.strptime(rest_date, "%Y-%m-%dT%H:%M:%SZ"))
