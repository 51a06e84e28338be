"""How the modules of recording_pipeline import each other: no circle anywhere, and the app reaches the edges only
through core.ports, with one stated exception.

Imports are read from the source with ast, every one of them: at the top of a
module, inside functions (lazy imports), and under ``if TYPE_CHECKING:``. A
circle that only a lazy or a typing import closes is still a circle: the two
modules cannot be read, tested or moved one without the other.

The exception: ``edges.telemetry``. What the app takes from it is the
OpenTelemetry API — the tracer, the current chunk's span attributes, metric
instruments and the log context — which does no I/O of its own (the Functions
worker configures the exporter before the app is imported); it is not a
storage or network edge, so no Protocol stands in for it. The app never takes
telemetry's configuration (``configure_*``, the storage-noise filter).
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest
from opentelemetry.metrics import Instrument

import recording_pipeline.edges.telemetry as telemetry
from tests.support.stack import REPO

PACKAGE = "recording_pipeline"
TELEMETRY = f"{PACKAGE}.edges.telemetry"
TELEMETRY_FOR_THE_APP = {"tracer", "span_attributes", "log_context"} | {
    name for name in dir(telemetry) if isinstance(getattr(telemetry, name), Instrument)
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((REPO / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()
SOURCES = {module: path.read_text() for module, path in MODULES.items()}
PACKAGES = {module for module, path in MODULES.items() if path.name == "__init__.py"}


def imports_of(source: str, module: str, is_package: bool = False) -> Iterator[tuple[str, str | None]]:
    """(module imported, name taken from it or None) for every import statement anywhere in ``source``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield base, alias.name


def resolve(imported: str, name: str | None, known: Collection[str]) -> str | None:
    """The module of ``known`` an import loads (``from pkg import module`` loads the module), or None."""
    if name is not None and f"{imported}.{name}" in known:
        return f"{imported}.{name}"
    while imported and imported not in known:
        imported = imported.rpartition(".")[0]
    return imported or None


def import_graph(sources: dict[str, str], packages: Collection[str] = ()) -> dict[str, set[str]]:
    """Module → the modules among ``sources`` it imports; ``packages``: the modules that are a package's
    ``__init__`` (their relative imports start from themselves)."""
    graph: dict[str, set[str]] = {}
    for module, source in sources.items():
        edges = {resolve(i, n, sources) for i, n in imports_of(source, module, module in packages)}
        graph[module] = {e for e in edges if e is not None and e != module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import one another, round and round (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_the_package_is_part_of_an_import_circle() -> None:
    graph = import_graph(SOURCES, PACKAGES)
    assert {"recording_pipeline.app.worker", "recording_pipeline.cli", "recording_pipeline.core.state"} <= set(graph)
    assert circles(graph) == []


def test_the_check_sees_lazy_and_typing_imports() -> None:
    """A circle closed only inside a function, or only for the type checker, is found."""
    sources = {
        "p": "",
        "p.a": "from p.b import thing\n",
        "p.b": "def later():\n    from .c import other\n",
        "p.c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p import a\n",
    }
    graph = import_graph(sources, {"p"})
    assert circles(graph) == [["p.a", "p.b", "p.c"]]
    assert circles({"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": set()}) == []


APP = sorted(m for m in MODULES if m.startswith(f"{PACKAGE}.app."))


@pytest.mark.parametrize("module", APP)
def test_the_app_reaches_the_edges_only_through_core_ports(module: str) -> None:
    for imported, name in imports_of(SOURCES[module], module):
        target = resolve(imported, name, SOURCES)
        if target is None:
            continue
        layer = target.removeprefix(f"{PACKAGE}.").split(".")[0]
        assert target in (PACKAGE, TELEMETRY) or layer in ("core", "app"), f"{module} imports {target}"
        if target == TELEMETRY:
            assert name in TELEMETRY_FOR_THE_APP, f"{module} takes {name} from edges.telemetry"


def test_the_telemetry_exception_is_what_the_app_uses() -> None:
    """The exception is in use (else it goes), and it never covers telemetry's configuration."""
    users = {m for m in APP for i, n in imports_of(SOURCES[m], m) if resolve(i, n, SOURCES) == TELEMETRY}
    assert users, "no app module uses edges.telemetry: drop the exception"
    assert not {n for n in TELEMETRY_FOR_THE_APP if n.startswith("configure") or "noise" in n}
