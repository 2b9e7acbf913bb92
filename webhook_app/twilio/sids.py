"""Twilio resource SIDs: two letters naming the resource type, then 32 hex digits (34 characters in all).

Webhook fields are checked against this before they reach a 34-character column: a signed but malformed event
(a proxy rewriting bodies, a hand-made test request) is a 400, never a database error answered 503.
"""

from __future__ import annotations

import re
from typing import TypeGuard

_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")


def is_sid(value: object, prefix: str) -> TypeGuard[str]:
    return isinstance(value, str) and value.startswith(prefix) and _SID.fullmatch(value) is not None


def sid_or_none(value: object, prefix: str) -> str | None:
    return value if is_sid(value, prefix) else None
