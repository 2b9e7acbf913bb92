"""Sizes as people read them in messages: the one formatter every error text and CLI line uses.

The units are the admin page's (its settings editor says "MB of 1,048,576 bytes"), so a cap an admin typed as
16 MB reads back as 16 MB in every refusal, never as 16.8 MB.
"""

from __future__ import annotations

KB = 1024
MB = 1024 * KB


def format_bytes(size: int) -> str:
    """42336078 -> "40.4 MB", 33554432 -> "32 MB", 10000 -> "9.8 KB", 512 -> "512 bytes"."""
    if size < KB:
        return f"{size} bytes"
    value, unit = (size / MB, "MB") if size >= MB else (size / KB, "KB")
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"
