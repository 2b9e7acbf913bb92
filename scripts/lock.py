"""requirements.txt is the deploy lock: every package the service runs with, pinned, compiled from pyproject.toml.

Heroku's Python buildpack installs requirements.txt, and `make test` installs the same pins (as constraints, with
the test extras on top), so a deploy runs what CI tested.

    python scripts/lock.py            refresh after editing pyproject.toml's dependencies (keeps existing pins)
    python scripts/lock.py --upgrade  move every pin to the newest release pyproject.toml allows
    python scripts/lock.py --check    fail if requirements.txt is not what pyproject.toml compiles to

The pins are resolved for every platform and Python version pyproject.toml admits (uv's universal mode), so a
developer's Mac, CI and a Heroku dyno read one file.
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.txt"
# pip installs the project itself from the last line; the pins above it satisfy all of its dependencies.
PROJECT_LINE = "."
HEADER = """\
# The deploy lock (Heroku's Python buildpack installs this file). Do not edit: run `make lock` after changing
# pyproject.toml's dependencies (scripts/lock.py says how it is made); CI fails when the two disagree.
"""


def pins(text: str) -> str:
    """The lock without its header and project line: what uv writes and reads back as preferences."""
    lines = text.splitlines()
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(line for line in lines if line.strip() != PROJECT_LINE) + "\n"


def compile_lock(previous: str, upgrade: bool) -> str:
    from uv import find_uv_bin

    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "requirements.txt"
        # uv keeps the pins already in the output file unless told to upgrade, so a refresh moves only what
        # pyproject.toml's change forces, and a check does not fail because the index has newer releases.
        output.write_text(pins(previous))
        command = [find_uv_bin(), "pip", "compile", str(ROOT / "pyproject.toml"), "--universal",
                   "--python-version", "3.11", "--no-header", "--quiet", "--output-file", str(output)]
        if upgrade:
            command.append("--upgrade")
        subprocess.run(command, check=True, cwd=ROOT)
        return HEADER + output.read_text() + PROJECT_LINE + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if requirements.txt is out of date")
    mode.add_argument("--upgrade", action="store_true", help="take the newest allowed releases")
    args = parser.parse_args()

    current = LOCK.read_text() if LOCK.exists() else ""
    fresh = compile_lock(current, upgrade=args.upgrade)
    if not args.check:
        LOCK.write_text(fresh)
        print(f"wrote {LOCK.relative_to(ROOT)}")
        return 0
    if fresh == current:
        print("requirements.txt matches pyproject.toml")
        return 0
    sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), fresh.splitlines(True),
                                               "requirements.txt", "compiled from pyproject.toml"))
    print("requirements.txt is out of date: run `make lock` and commit it", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
