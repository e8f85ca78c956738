"""The never-rules between rooms, read from the source with ast: who may not import whom, and no import cycles.

Every import counts, at module level or inside a function; only `if TYPE_CHECKING:` blocks are skipped, since
they never run. `from package import name` is an import of package.name when that is a module, else of package.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_PACKAGES = ("api", "cli", "gradaudit", "models", "migrations", "worker")
HEAVY = ("torch", "torchvision", "onnx", "onnxruntime", "onnx2pytorch", "numpy")

# room -> what nothing in it may import (a name forbids the module and everything under it)
NEVER = {
    "api": HEAVY + ("worker", "cli"),
    "gradaudit": HEAVY + ("flask", "worker", "api", "cli", "models"),  # the floor
    "worker.diagnosis": HEAVY + ("worker.engine", "flask", "celery", "sqlalchemy", "api", "models", "cli"),
    "worker.engine": ("flask", "celery", "sqlalchemy", "api", "models", "cli"),
    "models": HEAVY + ("api", "worker", "cli"),
    "migrations": HEAVY + ("api", "worker", "cli"),
    "worker": ("api", "cli"),
}



def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    """Every module of the source packages, by dotted name."""
    return {_module_name(path): path for package in SOURCE_PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(node: ast.AST):
    """Import statements anywhere under node, leaving out the bodies of `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            yield from (n for statement in child.orelse for n in _import_nodes_of(statement))
            continue
        yield from _import_nodes_of(child)


def _import_nodes_of(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    yield from _import_nodes(node)


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = _modules()[module].name == "__init__.py"
    base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


@cache
def imports_of(module: str) -> frozenset[str]:
    """The dotted names a module imports, third-party ones included."""
    tree = ast.parse(_modules()[module].read_text(), filename=str(_modules()[module]))
    found = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        source = _absolute(module, node)
        for alias in node.names:
            found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in _modules() else source)
    return frozenset(found)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _violations(room: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{module} imports {name}" for module in _modules() if _within(module, room)
                  for name in imports_of(module) if any(_within(name, f) for f in forbidden))


def test_the_source_is_found_and_parsed():
    assert {"api", "cli.main", "gradaudit.queue", "models.migrate", "worker.engine.audit"} <= set(_modules())
    assert "celery" in imports_of("gradaudit.queue")


@pytest.mark.parametrize("room", NEVER)
def test_room_never_imports_what_it_must_not(room):
    assert _violations(room, NEVER[room]) == []


def test_only_the_queue_module_of_the_floor_knows_celery():
    assert [m for m in _modules() if _within(m, "gradaudit") and "celery" in imports_of(m)] == ["gradaudit.queue"]


def test_nothing_imports_the_doors():
    outside = [m for m in _modules() if not _within(m, "cli")]
    assert sorted(f"{m} imports {n}" for m in outside for n in imports_of(m) if _within(n, "cli")) == []


@pytest.mark.parametrize("package", SOURCE_PACKAGES)
def test_the_service_never_imports_tests_benchmarks_or_suites(package):
    # The image copies only the source packages: suites/, bench/ and tests/ are not there at run time.
    assert _violations(package, ("tests", "bench", "suites")) == []


def _own_graph() -> dict[str, set[str]]:
    return {m: {n for n in imports_of(m) if n in _modules() and n != m} for m in _modules()}


def _tangles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other round a cycle (Tarjan's strongly connected components)."""
    order, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        on_stack.add(module)
        for following in sorted(graph[module]):
            if following not in order:
                visit(following)
                low[module] = min(low[module], low[following])
            elif following in on_stack:
                low[module] = min(low[module], order[following])
        if low[module] == order[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            groups.append(sorted(group))

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return [group for group in groups if len(group) > 1]


def test_the_import_graph_of_our_own_modules_has_no_cycles():
    assert _tangles(_own_graph()) == []


def _test_imports(path: Path) -> list[str]:
    """The `tests.` modules a test file imports, other than the shared helpers and fixtures."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = [alias.name for node in _import_nodes(tree) if isinstance(node, ast.Import) for alias in node.names]
    names += [node.module or "" for node in _import_nodes(tree) if isinstance(node, ast.ImportFrom) and not node.level]
    return [name for name in names if _within(name, "tests") and not _within(name, "tests.support")
            and not name.endswith(".conftest")]


def test_no_test_imports_another_test():
    # Shared helpers live in tests/support/ (networks, served stacks, problem assertions), so a test module can be
    # changed, moved or deleted without breaking another.
    offenders = {str(path.relative_to(ROOT)): found for path in sorted((ROOT / "tests").rglob("*.py"))
                 if (found := _test_imports(path))}
    assert offenders == {}
