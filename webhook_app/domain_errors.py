"""What the domain refuses or fails at, without HTTP: a machine `code` and a human `message`.

Settings, outbound, audit and transcript search raise DomainError; the web edge (web/errors.py) answers it in the
one JSON error shape with the status its code maps to there, and the CLI prints its message. A stored failure
(an outbound audit row's error_code and error) raised again is the same error: its code still names the status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .twilio.http import TwilioHttpError


class DomainError(Exception):
    """A refusal or failure the caller is told about: `code` for programs, `message` for people.

    `retry_after_s`: the failure is momentary (all conversion slots busy, the same send still in flight), and this
    many seconds is worth waiting before trying again."""

    def __init__(self, code: str, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


def conversation_error(exc: TwilioHttpError, conversation_sid: str | None = None) -> DomainError:
    """A Twilio failure met reading conversations: `conversation_not_found` when Twilio has no such
    conversation, else `twilio_error` (Twilio could not say)."""
    if exc.status == 404:
        return DomainError(
            "conversation_not_found",
            f"conversation {conversation_sid} does not exist"
            if conversation_sid
            else "Twilio has no such conversation",
        )
    return DomainError(
        "twilio_error",
        f"could not read {'the conversation' if conversation_sid else 'conversations'} from Twilio: {exc}",
    )
