"""humanize.format_bytes against the table the pages' formatBytes is tested against too (one rule for sizes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from webhook_app.humanize import format_bytes

CASES = json.loads((Path(__file__).parent / "fixtures" / "format_cases.json").read_text())["bytes"]


@pytest.mark.parametrize("size, text", CASES)
def test_sizes_read_as_the_pages_say_them(size, text):
    assert format_bytes(size) == text
