"""Sizes as people read them in messages: the one formatter every error text and CLI line uses.

The units are the admin page's (its settings editor says "MB of 1,048,576 bytes"), so a cap an admin typed as
16 MB reads back as 16 MB in every refusal, never as 16.8 MB. The pages say sizes by the same rule
(static/shared/format.js formatBytes); tests/fixtures/format_cases.json holds the cases both are tested against.
"""

from __future__ import annotations

KB = 1024
MB = 1024 * KB


def format_bytes(size: int) -> str:
    """42336078 -> "40.4 MB", 33554432 -> "32 MB", 10000 -> "9.8 KB", 512 -> "512 bytes".

    To a tenth of the unit, rounded half up in whole numbers (so JavaScript, whose floats would round 1.25 up where
    Python's format rounds it to even, says the same); a size that rounds to 1024 KB is 1 MB.
    """
    if size < KB:
        return f"{size} bytes"
    tenths, unit = _tenths(size, KB), "KB"
    if tenths >= 1024 * 10:
        tenths, unit = _tenths(size, MB), "MB"
    whole, tenth = divmod(tenths, 10)
    return f"{whole}.{tenth} {unit}" if tenth else f"{whole} {unit}"


def _tenths(size: int, unit: int) -> int:
    return (size * 10 + unit // 2) // unit
