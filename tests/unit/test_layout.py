"""The layout of the code, checked: who may import whom, no import circles, modules of one job.

The rules (docs/ARCHITECTURE.md): `proxy/` and `consumers/` share only `schemas/`; `deploy/` sits
on top and may use all three; within `consumers/`, the ClickHouse and Datadog services are
siblings that never import each other. Deferred imports (inside functions) count: a circle
hidden by one is still a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("proxy", "consumers", "schemas", "deploy")
MAX_LINES = 450
# Packages each top-level package may import from (besides itself).
ALLOWED = {
    "schemas": set(),
    "proxy": {"schemas"},
    "consumers": {"schemas"},
    "deploy": {"proxy", "consumers", "schemas"},
}
SIBLINGS = (("consumers.clickhouse", "consumers.datadog"),)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module a name lives in: ``proxy.capture.Redactor`` is in ``proxy.capture``."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name)
                if target:
                    yield target
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                target = _resolve(f"{base}.{alias.name}") or _resolve(base)
                if target:
                    yield target


GRAPH = {module: set(_imports(module, path)) - {module} for module, path in MODULES.items()}


def test_the_tree_was_found() -> None:
    assert {"proxy.app", "consumers.runner", "schemas.codec", "deploy.cli"} <= set(GRAPH)


def test_packages_import_only_what_they_may() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if target.split(".")[0] != module.split(".")[0]
        and target.split(".")[0] not in ALLOWED[module.split(".")[0]]
    ]
    assert wrong == []


@pytest.mark.parametrize(("left", "right"), SIBLINGS)
def test_sibling_services_do_not_import_each_other(left: str, right: str) -> None:
    def within(name: str, package: str) -> bool:
        return name == package or name.startswith(package + ".")

    wrong = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if (within(module, left) and within(target, right))
        or (within(module, right) and within(target, left))
    ]
    assert wrong == []


def test_no_import_circles() -> None:
    # Tarjan's strongly connected components; a component of two or more modules is a circle.
    # A package's __init__ re-exporting its own modules is not a circle of jobs: skip those edges.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def edges(module: str) -> set[str]:
        is_package = MODULES[module].name == "__init__.py"
        return {t for t in GRAPH[module] if not (is_package and t.startswith(module + "."))}

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in edges(module):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert circles == []


def test_long_modules_say_why() -> None:
    # A module past ~450 lines is a sign of two jobs; where it is one job, its docstring says why
    # it stays whole ("... so they stay in one module").
    too_long = []
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") <= MAX_LINES:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if "one module" not in docstring.lower():
            too_long.append(f"{module}: {text.count(chr(10))} lines")
    assert too_long == []
