"""Transcription on in the sandbox: a newcomer's `make run` (no Twilio credentials) shows transcripts within a
minute, while a deployment's channels start with it off (transcripts are personal data an operator decides on).

On the sandbox's start (`flask serve`, cli.py), with the `transcribe` extra installed, every channel whose
`transcribe` was never changed is turned on, as an audited change by "sandbox". Once anyone has changed it (off
again, say), it is left as they set it.
"""

from __future__ import annotations

import logging

import click
from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..models import CHANNELS, SettingsChange
from ..settings.rules import update_settings
from ..transcripts.job import installed

log = logging.getLogger(__name__)
ACTOR = "sandbox"


def turn_on_in_sandbox() -> list[str]:
    """Turn `transcribe` on for the channels whose setting was never changed; answer which."""
    if not installed():
        log.info("sandbox: transcription is not installed (the transcribe extra); transcripts stay off")
        return []
    changed = set(db.session.scalars(select(SettingsChange.channel).where(SettingsChange.key == "transcribe")))
    channels = [channel for channel in CHANNELS if channel not in changed]
    for channel in channels:
        update_settings(channel, {"transcribe": True}, ACTOR)
    db.session.commit()
    return channels


def turn_on_when_serving(app: Flask) -> None:
    """turn_on_in_sandbox() as `flask serve` starts; a database not migrated yet is one line saying what to do
    (`make run` migrates first), not a failed start."""
    with app.app_context():
        try:
            turn_on_in_sandbox()
        except SQLAlchemyError as exc:
            db.session.rollback()
            click.echo(
                f"transcription left as it is: the database is not ready ({type(exc).__name__}); "
                "run `alembic upgrade head`",
                err=True,
            )
