"""The stand-in for Flex's agent desktop that the Flex plugin's browser tests load the built bundle into (see
test_flex_plugin.py): its page and scripts served from an origin of its own, the service allowing that origin, and a
customer's voice note reaching the service. The fixtures that open it are in conftest.py."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from tests.helpers.service import serving
from webhook_app.sandbox.demo import AGENT_IDENTITY

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "flex-plugin"
BUNDLE = PLUGIN_DIR / "build" / "plugin-audio-messages.js"
REACT = PLUGIN_DIR / "node_modules" / "react" / "umd" / "react.production.min.js"
REACT_DOM = PLUGIN_DIR / "node_modules" / "react-dom" / "umd" / "react-dom.production.min.js"
STAND_IN = Path(__file__).with_name("flex_stand_in.js")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Flex (stand-in)</title>
<style>
  body { margin: 0; font: 14px system-ui, sans-serif; background: #f4f4f6; }
  .desktop { display: grid; grid-template-columns: 150px 620px; gap: 16px; padding: 16px; width: max-content; }
  nav button { display: block; width: 100%; margin-bottom: 6px; text-align: left; }
  nav button[aria-pressed=true] { font-weight: 600; }
  .conversation { background: #fff; border-radius: 8px; padding: 12px; }
  .messages { list-style: none; margin: 0 0 150px; padding: 0; }
  .Twilio-MessageBubble { background: #eef1f7; border-radius: 8px; padding: 8px; margin-bottom: 8px; max-width: 460px; }
  .Twilio-MessageBubble.from-me { margin-left: auto; background: #e1ecfe; }
  .Twilio-MessageBubble-Header { font-weight: 600; font-size: 12px; margin-bottom: 4px; }
  .Twilio-MessageInputActions { justify-content: flex-end; border-top: 1px solid #ddd; padding-top: 8px; }
</style></head>
<body><div id="flex"></div>
<script>window.__flexTest = __CONFIG__;</script>
<script src="/stand-in/react.js"></script>
<script src="/stand-in/react-dom.js"></script>
<script src="/stand-in/flex.js"></script>
<script src="/stand-in/plugin-audio-messages.js"></script>
</body></html>
"""


def stand_in_app(config: dict, bundle: Path, sandbox):
    """The stand-in agent desktop as a WSGI app: the page, its scripts, and the messages Flex would get from the
    Conversations SDK (here, from the sandbox)."""
    files = {
        "/stand-in/react.js": REACT,
        "/stand-in/react-dom.js": REACT_DOM,
        "/stand-in/flex.js": STAND_IN,
        "/stand-in/plugin-audio-messages.js": bundle,
    }

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/agent-desktop/":
            status, kind, body = "200 OK", "text/html", PAGE.replace("__CONFIG__", json.dumps(config)).encode()
        elif path in files:
            status, kind, body = "200 OK", "text/javascript", files[path].read_bytes()
        elif path.startswith("/stand-in/messages/"):
            messages = sandbox.list_messages(path.rsplit("/", 1)[1])
            status, kind, body = "200 OK", "application/json", json.dumps(messages).encode()
        else:
            status, kind, body = "404 Not Found", "text/plain", b"not in the stand-in"
        start_response(
            status, [("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
        )
        return [body]

    return app


@contextlib.contextmanager
def stand_in_desktop(app, live_server: str, sandbox, conversations: dict, bundle: Path, **overrides) -> Iterator[str]:
    """The stand-in desktop (the agent, its token, a task per conversation; `overrides` change the config) served
    from an origin of its own, which the service allows as it allows Flex's. Yields the origin."""
    config = {
        "serviceUrl": live_server,
        "identity": AGENT_IDENTITY,
        "token": sandbox.issue_token(AGENT_IDENTITY, roles=["agent"]),
        "tasks": [
            {"sid": f"WT{channel}", "label": f"{channel} chat", "attributes": {"conversationSid": sid}}
            for channel, sid in conversations.items()
        ],
        **overrides,
    }
    with serving(stand_in_app(config, bundle, sandbox)) as origin:
        app.config["FLEX_ALLOWED_ORIGINS"] = [*app.config["FLEX_ALLOWED_ORIGINS"], origin]
        yield origin


def customer_voice_note(app, conversation_sid: str) -> None:
    """The sandbox customer sends a 5-second Ogg/Opus voice note and its signed webhook reaches the service."""
    token = app.extensions["twilio"].sandbox.issue_token(AGENT_IDENTITY, roles=["agent"])
    response = app.test_client().post(
        f"/agent/api/conversations/{conversation_sid}/simulate-voice-note", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.get_data(as_text=True)
