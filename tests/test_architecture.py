"""The shape of webhook_app: no import cycles, jobs/ a leaf, no module or function too long to read.

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
MAX_FUNCTION_LINES = 60
# What jobs/ must never import: the flows register with it what it runs for them (jobs/registry.py) instead.
FLOWS = ("inbound", "outbound", "media", "settings", "webhooks", "agent", "admin", "transcripts")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def imported_modules(name: str, path: Path) -> set[str]:
    """The package's modules that `name` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from . import x` imports the module x when there is one, else a name of the package.
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names)
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
