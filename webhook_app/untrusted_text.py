"""Text from outside the service (webhook fields, upload names and types, URLs) as the service keeps it."""

from __future__ import annotations

import re

# C0 and C1 controls, DEL included. PostgreSQL's text types refuse NUL (the whole INSERT fails: the webhook, and
# every one sharing its commit, would be a 503), and the others have no business in a name or a type either: they
# end up in logs, CSV exports and the admin page.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def column_text(value: str | None, limit: int) -> str | None:
    """Free text from a customer or an agent (webhook fields, upload names and types) as a column takes it: no
    control characters and at most `limit` characters."""
    return CONTROL_CHARACTERS.sub("", value or "")[:limit] or None
