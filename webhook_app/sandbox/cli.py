"""`flask sandbox ...`: play Twilio's part locally, as a customer sending a voice note to a running service, with
tokens and credentials of the sandbox account (README's "try it")."""

from __future__ import annotations

import mimetypes
import os
import tempfile
import time
from typing import Any

import click
import requests
from flask.cli import AppGroup

from ..humanize import format_bytes
from .account import Sandbox
from .demo import AGENT_ATTRIBUTES, AGENT_IDENTITY, demo_voice_note, service_sandbox

sandbox_cli = AppGroup("sandbox", help="Play Twilio's part locally (no Twilio account needed).")

CONTENT_TYPES = {
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".amr": "audio/amr",
    ".m4a": "audio/mp4",
    ".mp4": "audio/mp4",
    ".3gp": "video/3gpp",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".webm": "audio/webm",
    ".aac": "audio/aac",
}


def _sandbox() -> Sandbox:
    sandbox = service_sandbox()
    if sandbox is None:
        raise click.ClickException("TWILIO_ACCOUNT_SID is set: the sandbox is off. Unset it to use the sandbox.")
    return sandbox


@sandbox_cli.command("send-audio")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--channel", type=click.Choice(["whatsapp", "sms", "webchat", "messenger"]), default="whatsapp")
@click.option("--conversation", "conversation_sid", help="An existing sandbox conversation (default: a new one).")
@click.option(
    "--server",
    default="http://127.0.0.1:5000",
    show_default=True,
    help="Where the service runs; the signed webhook goes to its /twilio/conversations/post-event.",
)
@click.option("--content-type", help="Label the media with this type (default: from the file name).")
@click.option("--wait/--no-wait", default=True, help="Wait until the MP3 is ready and print its playback URL.")
def send_audio(
    file: str | None, channel: str, conversation_sid: str | None, server: str, content_type: str | None, wait: bool
) -> None:
    """Send FILE as a customer voice note (a generated one when FILE is omitted) and deliver the signed webhook."""
    sandbox = _sandbox()
    server = server.rstrip("/")
    # Before anything goes into the sandbox: a customer message no service ever hears of would only be litter.
    _call_service("GET", server + "/healthz")
    file, data = _voice_note(file)
    extension = os.path.splitext(file)[1].lower()
    content_type = content_type or CONTENT_TYPES.get(extension) or mimetypes.guess_type(file)[0] or "audio/ogg"
    if conversation_sid is None:
        conversation_sid = sandbox.create_conversation(f"Sandbox {channel} customer", channel)["sid"]
        # The agent console's agent takes it, as a Flex agent accepting its task would, so /agent lists it.
        sandbox.add_participant(conversation_sid, identity=AGENT_IDENTITY, attributes=AGENT_ATTRIBUTES)
    params = sandbox.customer_sends_media(conversation_sid, data, content_type, os.path.basename(file))
    _deliver_webhook(sandbox, server, conversation_sid, params, os.path.basename(file), content_type)
    if not wait:
        return
    _wait_until_ready(sandbox, server, conversation_sid, params["MessageSid"])


def _voice_note(file: str | None) -> tuple[str, bytes]:
    """FILE's name and bytes; without FILE, a generated voice note's (its name only says what it is: the file
    itself is gone)."""
    with tempfile.TemporaryDirectory() as workdir:
        if file is None:
            file = os.path.join(workdir, "voice-note.ogg")
            demo_voice_note(file)
        with open(file, "rb") as handle:
            return file, handle.read()


def _deliver_webhook(
    sandbox: Sandbox, server: str, conversation_sid: str, params: dict[str, str], filename: str, content_type: str
) -> None:
    """The signed onMessageAdded to the service, which must answer 200 with the audit rows it made."""
    url = server + "/twilio/conversations/post-event"
    response = _call_service("POST", url, data=params, headers={"X-Twilio-Signature": sandbox.sign(url, params)})
    click.echo(f"conversation {conversation_sid}, message {params['MessageSid']}: webhook -> {response.status_code}")
    if response.status_code != 200:
        raise click.ClickException(_error_text(response))
    # The webhook answers with the audit rows it made: none means the service took the file for something
    # other than audio and will never convert it (the same file as a customer's would be ignored).
    if not response.json().get("audit_ids"):
        raise click.ClickException(
            f"the service ignored {filename} as not audio ({content_type}); "
            "send a voice note such as .ogg, .amr, .m4a, .mp3 or .wav"
        )


def _wait_until_ready(sandbox: Sandbox, server: str, conversation_sid: str, message_sid: str) -> None:
    """Poll the agent API for the message's audio (60 s at most) and print its playback URL, or why it failed."""
    # A supervisor reaches every conversation, --conversation's too, whoever is in it.
    token = sandbox.issue_token("sandbox-supervisor", roles=["supervisor"])
    listing = server + f"/api/v1/conversations/{conversation_sid}/audio"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = _call_service("GET", listing, headers={"Authorization": f"Bearer {token}"})
        if answer.status_code != 200:
            raise click.ClickException(_error_text(answer))
        messages = answer.json()["audio_messages"]
        row = next((m for m in messages if m["message_sid"] == message_sid), None)
        if row and row["status"] in ("ready", "failed"):
            if row["status"] == "failed":
                raise click.ClickException(f"audit {row['audit_id']} failed: {row.get('error')}")
            click.echo(
                f"ready: {row['duration_s']} s, {format_bytes(row['size_bytes'])} -> "
                f"{format_bytes(row['mp3_size_bytes'])} MP3"
            )
            click.echo(f"play:  {row['playback_url']}")
            return
        time.sleep(0.3)
    raise click.ClickException("the audio was not ready within 60 s")


def _call_service(method: str, url: str, **kwargs: Any) -> requests.Response:
    """One request to the running service; nobody listening is one line saying how to start it."""
    try:
        return requests.request(method, url, timeout=10, **kwargs)
    except requests.ConnectionError:
        raise click.ClickException(
            f"no service answers at {url}: start it with `make run` in another terminal (or point --server at it)"
        ) from None
    except requests.Timeout:
        raise click.ClickException(f"the service at {url} did not answer within 10 s") from None


def _error_text(response: requests.Response) -> str:
    """The service's own message from its {"error": {"code", "message"}} answer, else the start of the body."""
    try:
        error = response.json()["error"]
        return f"{response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code}: {response.text[:500]}"


@sandbox_cli.command("token")
@click.option("--identity", default="sandbox-agent", show_default=True)
@click.option("--role", "roles", multiple=True, default=["agent"], show_default=True)
@click.option("--ttl", default=3600, show_default=True, help="Seconds until the token expires.")
def token(identity: str, roles: tuple[str, ...], ttl: int) -> None:
    """Issue a Flex-like token the sandbox IAM accepts."""
    click.echo(_sandbox().issue_token(identity, roles=list(roles), ttl_s=ttl))


@sandbox_cli.command("credentials")
def credentials() -> None:
    """Show the sandbox account (its auth token signs the sandbox's webhooks)."""
    sandbox = _sandbox()
    click.echo(
        f"account_sid={sandbox.account_sid}\nauth_token={sandbox.auth_token}\n"
        f"chat_service_sid={sandbox.chat_service_sid}"
    )
