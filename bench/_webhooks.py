"""The load bench's requests: realistic signed onMessageAdded webhooks, pre-built as raw HTTP bytes."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from urllib.parse import urlencode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from webhook_app.audio.ffmpeg import ffmpeg_binary  # noqa: E402
from webhook_app.sandbox import Sandbox  # noqa: E402
from webhook_app.twilio.signatures import form_signature  # noqa: E402

HOST = "127.0.0.1"
PATH = "/twilio/conversations/post-event"


def make_voice_note(
    path: str, seconds: int, sample_rate: int = 16000, bitrate: str = "24k", container: str = "ogg"
) -> None:
    """A voice-like Opus note, by default as WhatsApp sends one (Ogg, 16 kHz mono, 24 kb/s): a tone in pink noise."""
    graph = (
        f"sine=f=220:d={seconds}:sample_rate={sample_rate},volume=0.4[t];"
        f"anoisesrc=d={seconds}:c=pink:a=0.08:r={sample_rate}[n];[t][n]amix=inputs=2"
    )
    subprocess.run(
        [ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-filter_complex", graph]
        + ["-ac", "1", "-ar", str(sample_rate), "-c:a", "libopus", "-b:a", bitrate, "-f", container, path],
        check=True,
    )


def load_templates(sandbox: Sandbox) -> list[dict]:
    """A WhatsApp, an SMS and a web chat conversation, each with its customer; real webhook fields as templates."""
    with tempfile.NamedTemporaryFile(suffix=".ogg") as tiny:
        make_voice_note(tiny.name, 1)
        tiny_bytes = open(tiny.name, "rb").read()
    templates = []
    for channel in ("whatsapp", "sms", "webchat"):
        conversation = sandbox.create_conversation(f"Bench {channel} customer", channel)["sid"]
        templates.append(sandbox.customer_sends_media(conversation, tiny_bytes, "audio/ogg", "voice.ogg"))
    return templates


def load_webhooks(sandbox: Sandbox, templates: list[dict], count: int, port: int) -> list[tuple[bytes, str, str]]:
    """`count` signed onMessageAdded bodies (body, signature, MessageSid), the templates in turn, each with a unique
    MessageSid and MediaSid so that every one is a new row."""
    url = f"http://{HOST}:{port}{PATH}"
    sample = dict(templates[0])
    assert form_signature(sandbox.auth_token, url, sample) == sandbox.sign(url, sample), "signing disagrees"
    webhooks = []
    for number in range(count):
        params = dict(templates[number % len(templates)])
        params["MessageSid"] = "IM" + secrets.token_hex(16)
        params["Index"] = str(1000 + number)
        media = json.loads(params["Media"])
        media[0]["Sid"] = "ME" + secrets.token_hex(16)
        params["Media"] = json.dumps(media)
        webhooks.append(
            (urlencode(params).encode(), form_signature(sandbox.auth_token, url, params), params["MessageSid"])
        )
    return webhooks


def raw_request(port: int, body: bytes, signature: str) -> bytes:
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: TwilioProxy/1.1\r\n"
        f"Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\nX-Twilio-Signature: {signature}\r\n"
        f"I-Twilio-Idempotency-Token: {secrets.token_hex(16)}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body
