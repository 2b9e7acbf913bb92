"""Which cross-origin callers may read which answers, decided here for the whole app.

- The agent API (`/api/v1`, blueprint agent_api) answers Flex's origins (FLEX_ALLOWED_ORIGINS) and their
  preflights: the record panel and the players run inside Flex and send the agent's token.
- Playback links (`/media/<token>`) and the static scripts are for anyone: a plain `<audio>` element and a Flex
  plugin's module scripts fetch them in CORS mode, and they carry no credentials (the link is the secret; the
  scripts are public code).
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request

AGENT_API = "agent_api"
AGENT_API_HEADERS = {
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key",
    "Access-Control-Allow-Methods": "GET, POST, PUT, OPTIONS",
    "Access-Control-Max-Age": "600",
}


def answer_preflight() -> Response | None:
    if request.method == "OPTIONS" and request.blueprint == AGENT_API:
        return current_app.make_default_options_response()
    return None


def add_cors_headers(response: Response) -> Response:
    if request.blueprint == AGENT_API:
        origin = request.headers.get("Origin")
        if origin and origin in current_app.config["FLEX_ALLOWED_ORIGINS"]:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers.update(AGENT_API_HEADERS)
            response.headers.add("Vary", "Origin")
    elif _is_public(response):
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _is_public(response: Response) -> bool:
    if request.endpoint == "playback.media":
        return response.status_code < 400  # the audio (or the redirect to it), not the refusals
    # A Flex plugin imports record-panel.js from Flex's origin; module scripts, and the sibling modules they import
    # (record-panel/, shared/), are fetched in CORS mode. Every static .js is public code: all are shared.
    filename = (request.view_args or {}).get("filename", "")
    return request.endpoint == "static" and (filename.endswith(".js") or filename.startswith("record-panel."))


def init_app(app: Flask) -> None:
    app.before_request(answer_preflight)
    app.after_request(add_cors_headers)
