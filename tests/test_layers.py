"""The package's import graph: no cycle, and every import points down the layers below.

Every ``import`` of the package counts, deferred ones inside functions included (a lazy
import is still a dependency). A module may import its own layer or a lower one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "sales_stream"

#: Bottom to top; a module belongs to the first layer naming it or a package above it.
LAYERS: tuple[tuple[str, ...], ...] = (
    # facts: names, reference data, errors, client options
    ("errors", "reference", "store", "clients", "collation", "geo", "groups", "notebooks"),
    # the sale's contract and what is derived from one sale
    ("contract", "events", "identity", "deadletters", "frames", "extract", "config"),
    # producing, the stream runtime, the lake's files
    ("produce", "stream", "lake"),
    # what writes each store and what reads them
    ("sinks", "read"),
    # services, the SQL endpoint, exports, the composition of runtimes
    ("sql", "infra", "export", "app", "drain"),
    # front-ends
    ("pipeline", "ui", "charts", "report", "cli", "__main__"),
)


def modules() -> dict[str, Path]:
    """Dotted name (without the package) → file, packages by their ``__init__``."""
    found = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        parts = path.relative_to(SRC / PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports (the longest known prefix of each)."""

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    targets: set[str | None] = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets |= {
                resolve(a.name.removeprefix(PACKAGE + "."))
                for a in node.names
                if a.name.startswith(PACKAGE + ".")
            }
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = [*package[: len(package) - node.level + 1], node.module or ""]
                module = ".".join(p for p in base if p)
            elif node.module == PACKAGE or (node.module or "").startswith(PACKAGE + "."):
                module = node.module.removeprefix(PACKAGE).lstrip(".")
            else:
                continue
            for alias in node.names:
                child = f"{module}.{alias.name}" if module else alias.name
                targets.add(child if child in known else resolve(module))
    return {t for t in targets if t and t != name}


def layer(name: str) -> int:
    head = name.split(".")[0]
    for level, names in enumerate(LAYERS):
        if head in names:
            return level
    raise AssertionError(f"{name} is in no layer of tests/test_layers.py: place it")


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items() if name}


def test_every_import_points_to_its_own_layer_or_below(graph: dict[str, set[str]]):
    upward = sorted(
        f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})"
        for name, targets in graph.items()
        for target in targets
        if layer(target) > layer(name)
    )
    assert upward == []


def test_the_import_graph_has_no_cycle(graph: dict[str, set[str]]):
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            pytest.fail("import cycle: " + " → ".join(cycle))


def test_the_check_sees_a_relative_and_a_deferred_import(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text("from .stream import batch\ndef f():\n    from sales_stream import store\n")
    known = {"stream": tmp_path, "stream.batch": tmp_path, "store": tmp_path, "m": module}
    assert imports("m", module, known) == {"stream.batch", "store"}
