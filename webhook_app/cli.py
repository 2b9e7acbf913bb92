"""Command-line tools: `flask --app webhook_app sandbox ...`, `... worker`."""

from __future__ import annotations

import json
import mimetypes
import os
import sys
import tempfile
import time

import click
import requests
from flask import Flask, current_app
from flask.cli import AppGroup, ScriptInfo, run_command, with_appcontext
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.serving import is_running_from_reloader

from .agent.demo import AGENT_ATTRIBUTES, AGENT_IDENTITY, demo_voice_note
from .audit import audit_csv, filtered_query, parse_time
from .domain_errors import DomainError
from .extensions import db
from .humanize import format_bytes
from .inbound.backfill import backfill
from .jobs import queue
from .jobs.sweeper import sweep
from .jobs.worker import run_worker
from .media.retention import retention_cli
from .models import CHANNELS
from .runtime.startup import prepare_to_serve
from .settings.cache import Settings, all_settings, settings_for
from .settings.rules import BOOLEAN_KEYS, TEXT_KEYS, update_settings
from .transcripts.defaults import turn_on_in_sandbox
from .transcripts.job import queue_missing_transcripts

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


def _sandbox():
    sandbox = current_app.extensions["twilio"].sandbox
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
def send_audio(file, channel, conversation_sid, server, content_type, wait):
    """Send FILE as a customer voice note (a generated one when FILE is omitted) and deliver the signed webhook."""
    sandbox = _sandbox()
    server = server.rstrip("/")
    # Before anything goes into the sandbox: a customer message no service ever hears of would only be litter.
    _call_service("GET", server + "/healthz")
    with tempfile.TemporaryDirectory() as workdir:
        if file is None:
            file = os.path.join(workdir, "voice-note.ogg")
            demo_voice_note(file)
        with open(file, "rb") as handle:
            data = handle.read()
    extension = os.path.splitext(file)[1].lower()
    content_type = content_type or CONTENT_TYPES.get(extension) or mimetypes.guess_type(file)[0] or "audio/ogg"
    if conversation_sid is None:
        conversation_sid = sandbox.create_conversation(f"Sandbox {channel} customer", channel)["sid"]
        # The agent console's agent takes it, as a Flex agent accepting its task would, so /agent lists it.
        sandbox.add_participant(conversation_sid, identity=AGENT_IDENTITY, attributes=AGENT_ATTRIBUTES)
    params = sandbox.customer_sends_media(conversation_sid, data, content_type, os.path.basename(file))
    url = server + "/twilio/conversations/post-event"
    response = _call_service("POST", url, data=params, headers={"X-Twilio-Signature": sandbox.sign(url, params)})
    click.echo(f"conversation {conversation_sid}, message {params['MessageSid']}: webhook -> {response.status_code}")
    if response.status_code != 200:
        raise click.ClickException(_error_text(response))
    # The webhook answers with the audit rows it made: none means the service took the file for something
    # other than audio and will never convert it (the same file as a customer's would be ignored).
    if not response.json().get("audit_ids"):
        raise click.ClickException(
            f"the service ignored {os.path.basename(file)} as not audio ({content_type}); "
            "send a voice note such as .ogg, .amr, .m4a, .mp3 or .wav"
        )
    if not wait:
        return
    # A supervisor reaches every conversation, --conversation's too, whoever is in it.
    token = sandbox.issue_token("sandbox-supervisor", roles=["supervisor"])
    listing = server + f"/api/v1/conversations/{conversation_sid}/audio"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = _call_service("GET", listing, headers={"Authorization": f"Bearer {token}"})
        if answer.status_code != 200:
            raise click.ClickException(_error_text(answer))
        messages = answer.json()["audio_messages"]
        row = next((m for m in messages if m["message_sid"] == params["MessageSid"]), None)
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


def _call_service(method: str, url: str, **kwargs) -> requests.Response:
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
def token(identity, roles, ttl):
    """Issue a Flex-like token the sandbox IAM accepts."""
    click.echo(_sandbox().issue_token(identity, roles=list(roles), ttl_s=ttl))


@sandbox_cli.command("credentials")
def credentials():
    """Show the sandbox account (its auth token signs the sandbox's webhooks)."""
    sandbox = _sandbox()
    click.echo(
        f"account_sid={sandbox.account_sid}\nauth_token={sandbox.auth_token}\n"
        f"chat_service_sid={sandbox.chat_service_sid}"
    )


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="The interface to bind to.")
@click.option("--port", default=5000, show_default=True, help="The port to bind to.")
@click.pass_context
def serve_command(ctx, host, port):
    """`flask run` that first says where the agent console and the admin page are (what `make run` runs)."""
    app = ctx.ensure_object(ScriptInfo).load_app()
    prepare_to_serve(app.logger, app.config["SQLALCHEMY_DATABASE_URI"])  # ffmpeg checked, SQLite migrated
    sandbox = app.extensions["twilio"].sandbox is not None
    if sandbox:
        with app.app_context():
            try:
                turn_on_in_sandbox()  # a newcomer sees transcripts (transcripts/defaults.py)
            except SQLAlchemyError as exc:  # not migrated yet: `make run` migrates first; say what to do
                db.session.rollback()
                click.echo(
                    f"transcription left as it is: the database is not ready ({type(exc).__name__}); "
                    "run `alembic upgrade head`",
                    err=True,
                )
    if not is_running_from_reloader():  # FLASK_DEBUG's reloader runs this command again in a child: say it once
        click.echo(serving_banner(f"http://{host}:{port}", sandbox=sandbox))
    ctx.invoke(run_command, host=host, port=port)


def serving_banner(base_url: str, sandbox: bool) -> str:
    admin_hint = (
        '(sandbox: press "Sign in to the sandbox")'
        if sandbox
        else "(sign in with ADMIN_TOKEN or an admin or supervisor Flex token)"
    )
    return f"\nAgent console: {base_url}/agent\nAdmin:         {base_url}/admin   {admin_hint}\n"


@click.command("worker")
@with_appcontext
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
# The transcription process a worker starts for itself (jobs/worker.py), not a command for operators.
@click.option("--transcripts-only", is_flag=True, hidden=True)
def worker(burst, transcripts_only):
    """Run an RQ worker for the audio queue (needs REDIS_URL); it waits out Redis and database outages. With the
    transcription extra installed it runs transcription in a long-lived process of its own."""
    if not isinstance(queue.runner(), queue.RqRunner):
        raise click.ClickException("REDIS_URL is not set: jobs run inside the web process, no worker needed.")
    if not transcripts_only:  # its parent worker has checked
        prepare_to_serve(current_app.logger, current_app.config["SQLALCHEMY_DATABASE_URI"])
    run_worker(current_app._get_current_object(), burst=burst, transcripts_only=transcripts_only)
    sys.exit(0)


@click.command("sweep")
@with_appcontext
def sweep_command():
    """Re-enqueue audio left queued or stuck by a crash or an outage; fail what cannot be finished."""
    click.echo(sweep())


@click.command("backfill")
@with_appcontext
@click.option("--since", default="2h", show_default=True, help="How far back: 30m, 2h, 7d, or an ISO 8601 time.")
def backfill_command(since):
    """Record audio messages the webhook missed, reading recent messages of active conversations over REST."""
    try:
        cutoff = parse_time(since, "since")
    except DomainError as exc:
        raise click.BadParameter(exc.message, param_hint="--since") from None
    counts = backfill(cutoff)
    click.echo(
        f"scanned {counts['conversations']} conversation(s), {counts['messages']} message(s) with media; "
        f"recorded {counts['new_rows']} missed audio message(s)"
    )
    # Recorded audio gets its transcript when it is ready, as any; this is ready audio made before a channel's
    # transcribe was turned on.
    click.echo(f"queued {queue_missing_transcripts(cutoff)} transcript(s) of earlier audio on channels that transcribe")


settings_cli = AppGroup("settings", help="Show or change per-channel audio settings.")


@settings_cli.command("show")
# settings_for() falls back to `other` for a channel it does not know; a name typed here must not.
@click.argument("channel", required=False, type=click.Choice(CHANNELS))
def settings_show(channel):
    """Print the settings of every channel (or one) as JSON."""
    shown = [settings_for(channel)] if channel else all_settings()
    click.echo(json.dumps([settings.to_dict() for settings in shown], indent=2))


@settings_cli.command("set")
@click.argument("channel")
@click.argument("key")
@click.argument("value")
@click.option("--by", "actor", default=lambda: f"cli:{os.environ.get('USER', 'unknown')}", show_default="cli:$USER")
def settings_set(channel, key, value, actor):
    """Set one KEY of CHANNEL (true/false for switches, whole numbers for caps and bitrate)."""
    if key in BOOLEAN_KEYS:
        lowered = value.lower()
        if lowered not in ("true", "false"):
            raise click.BadParameter(f"{key} takes true or false", param_hint="VALUE")
        parsed = lowered == "true"
    elif key in TEXT_KEYS:
        parsed = value
    else:
        try:
            parsed = int(value)
        except ValueError:
            raise click.BadParameter(f"{key} takes a whole number", param_hint="VALUE") from None
    try:
        row = update_settings(channel, {key: parsed}, actor)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    db.session.commit()
    click.echo(json.dumps(Settings.from_row(row).to_dict(), indent=2))


audit_cli = AppGroup("audit", help="Export the audio audit trail.")


@audit_cli.command("export")
@click.option("--since", help="ISO 8601 time or relative (2h, 7d).")
@click.option("--until", help="ISO 8601 time or relative.")
@click.option("--direction", type=click.Choice(["inbound", "outbound"]))
@click.option("--channel")
@click.option("--status")
@click.option("--conversation", "conversation_sid")
@click.option("--output", "-o", type=click.File("w"), default="-", help="CSV file (default: standard output).")
def audit_export(since, until, direction, channel, status, conversation_sid, output):
    """Write audit rows as CSV, newest first."""
    args = {
        k: v
        for k, v in dict(
            since=since,
            until=until,
            direction=direction,
            channel=channel,
            status=status,
            conversation_sid=conversation_sid,
        ).items()
        if v
    }
    try:
        filtered_query(args)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    for chunk in audit_csv(args):
        output.write(chunk)


def init_app(app: Flask) -> None:
    app.cli.add_command(sandbox_cli)
    app.cli.add_command(serve_command)
    app.cli.add_command(worker)
    app.cli.add_command(sweep_command)
    app.cli.add_command(backfill_command)
    app.cli.add_command(settings_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(retention_cli)
