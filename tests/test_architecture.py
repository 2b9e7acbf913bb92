"""The shape of webhook_app: no import cycles, jobs/ a leaf, no module or function too long to read. And of the
suite: no test module imports another, or a conftest.py.

Every import counts, those inside functions too: a cycle hidden in a function is still a cycle. Imports of the
package itself (`from webhook_app import create_app`, the app factory, which imports every module on purpose) are
the one exception.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "webhook_app"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 55
# What jobs/ must never import: the flows register with it what it runs for them (jobs/registry.py) instead.
FLOWS = ("inbound", "outbound", "media", "settings", "webhooks", "agent", "admin", "transcripts")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def imports_in(source: str, package: str) -> list[tuple[str, list[str]]]:
    """Every import in `source`, anywhere in its body, as (module, names imported from it): `import a.b` is
    ("a.b", []); relative imports are made absolute against `package`, the package the module is in."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, [alias.name for alias in node.names]))
    return found


def imported_modules(name: str, path: Path) -> set[str]:
    """The package's modules that `name` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for base, names in imports_in(path.read_text(), package):
        # `from . import x` imports the module x when there is one, else a name of the package.
        found.update(f"{base}.{alias}" if f"{base}.{alias}" in MODULES else base for alias in names or [""])
    own = set()
    for target in found:
        # `import a.b.c` also runs a and a.b: the nearest module of ours stands for the import.
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != PACKAGE and target != name:
            own.add(target)
    return own


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def find_cycle() -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(GRAPH[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for name in sorted(GRAPH):
        if name not in state:
            cycle = visit(name)
            if cycle:
                return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_jobs_import_no_flow():
    flows = tuple(f"{PACKAGE}.{flow}" for flow in FLOWS)
    offending = {
        name: sorted(target for target in targets if target.startswith(flows))
        for name, targets in GRAPH.items()
        if name.startswith(f"{PACKAGE}.jobs")
    }
    assert not {name: targets for name, targets in offending.items() if targets}


def test_the_jobs_named_by_path_exist():
    """jobs/ names by dotted path only the jobs that deploys before dotted paths enqueued by name (LEGACY_JOBS):
    each must still be a job at that path."""
    from webhook_app.jobs import LEGACY_JOBS

    for path in LEGACY_JOBS.values():
        module, _, name = path.rpartition(".")
        assert getattr(__import__(module, fromlist=[name]), name).job_path == path


def test_every_flow_registers_its_work_with_jobs(app):
    """What the relay and the sweeper run comes from the flows, registered by create_app (jobs/registry.py)."""
    from webhook_app.jobs.queue import TRANSCRIPTS
    from webhook_app.jobs.registry import registry

    jobs = registry(app)
    assert list(jobs.recoveries) == ["inbound", "agent uploads", "transcripts"]
    assert list(jobs.outboxes) == ["audio_messages_queued"]
    assert list(jobs.upkeep) == ["retention"]
    assert list(jobs.separate_lanes) == [TRANSCRIPTS]


@pytest.mark.parametrize("name,path", MODULES.items(), ids=lambda value: str(value))
def test_module_and_functions_are_short(name, path):
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{name} is over {MAX_MODULE_LINES} lines"
    long_functions = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long_functions, f"{name}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long_functions)}"


# -- the test suite: tests share helpers through tests/helpers/ and fixtures through conftest.py files ---------------

TESTS = Path(__file__).resolve().parent


def is_test_module(name: str) -> bool:
    leaf = name.rpartition(".")[2]
    return leaf.startswith("test_") or leaf == "conftest"


def imported_test_modules(source: str, name: str) -> set[str]:
    """The test modules and conftest.py files that the module `name` (not a package), whose text is `source`,
    imports anywhere in its body."""
    found = set()
    for base, names in imports_in(source, name.rpartition(".")[0]):
        found.add(base)
        found.update(f"{base}.{alias}" for alias in names)  # `from tests import test_x` too
    return {target for target in found if target.startswith("tests.") and is_test_module(target)}


def test_no_test_module_imports_another_or_a_conftest():
    """A test module imported by another has its tests collected twice and its fixtures shadowed by the importer's
    names; a conftest.py imported by name is a second copy of its module. Shared code goes in tests/helpers/,
    shared fixtures in the conftest.py of the folder above the tests that use them."""
    offending = {}
    for path in sorted(TESTS.rglob("*.py")):
        name = ".".join(path.relative_to(TESTS.parent).with_suffix("").parts)
        imported = imported_test_modules(path.read_text(), name)
        if imported:
            offending[name] = sorted(imported)
    assert not offending, offending


def test_the_import_check_sees_every_spelling():
    """Absolute, `from tests import test_x`, relative and conftest imports are all caught; helpers are not."""
    source = (
        "from tests.outbound.test_upload_api import conversation\n"
        "from tests import test_cli\n"
        "from . import test_backfill\n"
        "def later():\n    from tests.conftest import DEFAULT_SETTINGS\n"
        "from tests.helpers.service import run_jobs\n"
    )
    assert imported_test_modules(source, "tests.inbound.test_probe") == {
        "tests.outbound.test_upload_api",
        "tests.test_cli",
        "tests.inbound.test_backfill",
        "tests.conftest",
    }
