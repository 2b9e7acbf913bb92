"""Which channel a conversation runs on, decided by the service, never by what a browser claims."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..domain_errors import conversation_error
from ..models import CHANNELS
from ..twilio.client import Participant, twilio_api
from ..twilio.http import TwilioHttpError
from .cache import Settings, settings_for

BINDING_TYPES = {"whatsapp": "whatsapp", "sms": "sms", "messenger": "messenger"}
# Twilio's webhook `Source` for channel-originated messages (documented loosely; see FACTS.md).
SOURCES = {"WHATSAPP": "whatsapp", "SMS": "sms", "MMS": "sms", "MESSENGER": "messenger"}


def channel_from_address(address: str | None) -> str | None:
    if not address:
        return None
    lowered = address.lower()
    if lowered.startswith("whatsapp:"):
        return "whatsapp"
    if lowered.startswith("messenger:"):
        return "messenger"
    if address.startswith("+") and address[1:].isdigit():
        return "sms"
    return None


def channel_from_webhook(source: str | None, author: str | None) -> str:
    """A first guess from the webhook alone (no REST call on the hot path); the job confirms it."""
    by_source = SOURCES.get((source or "").upper())
    if by_source:
        return by_source
    by_address = channel_from_address(author)
    if by_address:
        return by_address
    if (source or "").upper() == "SDK":
        return "webchat"
    return "other"


def channel_from_participants(
    participants: Sequence[Mapping[str, Any]], source: str | None = None, author: str | None = None
) -> str:
    """The customer's messaging binding decides; a conversation of chat participants only is web chat."""
    for participant in participants:
        binding = participant.get("messaging_binding") or {}
        if isinstance(binding, str):
            try:
                binding = json.loads(binding)
            except ValueError:
                binding = {}
        kind = BINDING_TYPES.get(str(binding.get("type", "")).lower())
        if kind:
            return kind
        by_address = channel_from_address(binding.get("address"))
        if by_address:
            return by_address
        if binding:
            return "other"  # email, gbm, ... : a channel we have no special limits for
    guess = channel_from_webhook(source, author)
    if guess != "other":
        return guess
    return "webchat" if participants else "other"


def _attributes(participant: Mapping[str, Any]) -> dict[str, Any]:
    attributes = participant.get("attributes") or "{}"
    try:
        parsed = json.loads(attributes) if isinstance(attributes, str) else attributes
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _has_binding(participant: Mapping[str, Any]) -> bool:
    return bool(participant.get("messaging_binding"))


def is_agent_author(
    participants: Sequence[Mapping[str, Any]], *, author: str | None, participant_sid: str | None, source: str | None
) -> bool:
    """Did an agent (not the customer) write this message?

    Channel-originated messages (Source WHATSAPP, SMS, ...) are the customer's. An SDK author is an agent when
    Flex marked the participant `member_type: agent`, or when the customer is on a messaging channel (so every
    chat participant is staff). In a web chat without markers both sides are chat participants: we do not guess,
    and a customer is never blocked.
    """
    if (source or "").upper() not in ("SDK", "API", ""):
        return False
    participant = next((p for p in participants if participant_sid and p.get("sid") == participant_sid), None)
    if participant is None and author:
        participant = next((p for p in participants if p.get("identity") == author), None)
    if participant is not None:
        if _has_binding(participant):
            return False
        member_type = str(_attributes(participant).get("member_type", "")).lower()
        if member_type == "agent":
            return True
        if member_type in ("guest", "customer"):
            return False
    if channel_from_address(author):
        return False
    return any(_has_binding(p) for p in participants)


def conversation_participants(conversation_sid: str, *, refresh: bool = False) -> list[Participant]:
    """The conversation's participants, cached for a minute per process (`refresh`: ask Twilio now and re-cache);
    DomainError `conversation_not_found` when Twilio has no such conversation, `twilio_error` when it could not
    answer."""
    try:
        return twilio_api().participants(conversation_sid, refresh=refresh)
    except TwilioHttpError as exc:
        raise conversation_error(exc, conversation_sid) from exc


def conversation_channel(conversation_sid: str) -> str:
    """The channel of a conversation, from its participants' messaging bindings (never from the browser)."""
    return channel_from_participants(conversation_participants(conversation_sid))


def conversation_settings(conversation_sid: str) -> Settings:
    return settings_for(conversation_channel(conversation_sid))


assert set(BINDING_TYPES.values()) <= set(CHANNELS)
