"""The sweeper's step for agent uploads (registered with jobs/registry.py from create_app).

An upload is converted and posted inside its request (send.py), so no job will ever finish one whose request died
(a killed web process, a deploy): the sweeper says so, and says it right.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import Flask
from sqlalchemy import update

from ..extensions import db
from ..jobs.registry import Recovered, registry
from ..models import AudioMessage, Status

log = logging.getLogger(__name__)

UNFINISHED = (Status.QUEUED.value, Status.TRANSCODING.value, Status.SENDING.value)


def init_app(app: Flask) -> None:
    registry(app).add_recovery("agent uploads", close_abandoned_uploads)


def close_abandoned_uploads(now: datetime, stuck_before: datetime) -> Recovered:
    """Uploads unfinished since before `stuck_before`: `failed`, `interrupted`, unless Twilio had already created
    their message (its SID is committed at once, post.py), then `ready`: the customer has it."""
    unfinished = (
        AudioMessage.source == "agent-api",
        AudioMessage.status.in_(UNFINISHED),
        AudioMessage.updated_at < stuck_before,
    )
    abandoned = db.session.scalars(
        update(AudioMessage)
        .where(*unfinished, AudioMessage.message_sid.is_(None))
        .values(
            status=Status.FAILED.value,
            finished_at=now,
            updated_at=now,
            error_code="interrupted",
            error="the upload request ended before the message was sent",
        )
        .returning(AudioMessage.id)
    ).all()
    sent = db.session.scalars(
        update(AudioMessage)
        .where(*unfinished, AudioMessage.message_sid.is_not(None))
        .values(status=Status.READY.value, finished_at=now, updated_at=now)
        .returning(AudioMessage.id)
    ).all()

    def report_sent() -> None:
        if sent:
            log.warning("sweeper: agent sends %s were posted before their request ended; recorded ready", list(sent))

    return Recovered(counts={"abandoned": len(abandoned) + len(sent)}, hand_out=report_sent)
