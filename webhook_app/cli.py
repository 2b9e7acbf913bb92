"""Command-line tools: `flask --app webhook_app serve`, `... worker`, `... settings ...` (the `sandbox ...` commands:
sandbox/cli.py)."""

from __future__ import annotations

import json
import os
import sys
from typing import TextIO

import click
from flask import Flask, current_app
from flask.cli import AppGroup, ScriptInfo, run_command, with_appcontext
from werkzeug.serving import is_running_from_reloader

from .audit import audit_csv, filtered_query, parse_time
from .domain_errors import DomainError
from .extensions import db
from .inbound.backfill import backfill
from .jobs import queue
from .jobs.sweeper import sweep
from .jobs.worker import run_worker
from .media.retention import retention_cli
from .models import CHANNELS
from .runtime.startup import prepare_to_serve
from .sandbox.cli import sandbox_cli
from .sandbox.transcripts import turn_on_when_serving
from .settings.cache import Settings, all_settings, settings_for
from .settings.rules import BOOLEAN_KEYS, TEXT_KEYS, update_settings
from .transcripts.job import queue_missing_transcripts


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="The interface to bind to.")
@click.option("--port", default=5000, show_default=True, help="The port to bind to.")
@click.pass_context
def serve_command(ctx: click.Context, host: str, port: int) -> None:
    """`flask run` that first says where the agent console and the admin page are (what `make run` runs)."""
    app = ctx.ensure_object(ScriptInfo).load_app()
    prepare_to_serve(app.logger, app.config["SQLALCHEMY_DATABASE_URI"])  # ffmpeg checked, SQLite migrated
    sandbox = app.extensions["twilio"].sandbox is not None
    if sandbox:
        turn_on_when_serving(app)  # a newcomer sees transcripts (sandbox/transcripts.py)
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
def worker(burst: bool, transcripts_only: bool) -> None:
    """Run an RQ worker for the audio queue (needs REDIS_URL); it waits out Redis and database outages. With the
    transcription extra installed it runs transcription in a long-lived process of its own."""
    if not isinstance(queue.runner(), queue.RqRunner):
        raise click.ClickException("REDIS_URL is not set: jobs run inside the web process, no worker needed.")
    if not transcripts_only:  # its parent worker has checked
        prepare_to_serve(current_app.logger, current_app.config["SQLALCHEMY_DATABASE_URI"])
    # The app itself, not the proxy: the worker hands it to threads. Flask declares current_app as a Flask, so
    # the proxy's own method is unknown to mypy.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    run_worker(app, burst=burst, transcripts_only=transcripts_only)
    sys.exit(0)


@click.command("sweep")
@with_appcontext
def sweep_command() -> None:
    """Re-enqueue audio left queued or stuck by a crash or an outage; fail what cannot be finished."""
    click.echo(sweep())


@click.command("backfill")
@with_appcontext
@click.option("--since", default="2h", show_default=True, help="How far back: 30m, 2h, 7d, or an ISO 8601 time.")
def backfill_command(since: str) -> None:
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
def settings_show(channel: str | None) -> None:
    """Print the settings of every channel (or one) as JSON."""
    shown = [settings_for(channel)] if channel else all_settings()
    click.echo(json.dumps([settings.to_dict() for settings in shown], indent=2))


@settings_cli.command("set")
@click.argument("channel")
@click.argument("key")
@click.argument("value")
@click.option("--by", "actor", default=lambda: f"cli:{os.environ.get('USER', 'unknown')}", show_default="cli:$USER")
def settings_set(channel: str, key: str, value: str, actor: str) -> None:
    """Set one KEY of CHANNEL (true/false for switches, whole numbers for caps and bitrate)."""
    if key in BOOLEAN_KEYS:
        lowered = value.lower()
        if lowered not in ("true", "false"):
            raise click.BadParameter(f"{key} takes true or false", param_hint="VALUE")
        parsed: bool | int | str = lowered == "true"
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
def audit_export(
    since: str | None,
    until: str | None,
    direction: str | None,
    channel: str | None,
    status: str | None,
    conversation_sid: str | None,
    output: TextIO,
) -> None:
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
