"""The package's layout, read from the source with `ast` (nothing imported): no import
circles between role packages or between modules, and the lower layers import nothing
from the higher ones (README, "Layout")."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("core", "study", "store", "engine", "training", "datasets", "observe", "estimate",
         "results", "decide")
TOP_LEVEL = {"__init__.py", "cli.py", "errors.py"}
LOWER = ("raysweep.core", "raysweep.store", "raysweep.decide", "models")
HIGHER = ("raysweep.engine", "raysweep.observe", "raysweep.results", "raysweep.cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for top in ("raysweep", "models") for p in (ROOT / top).rglob("*.py")}


def imports(name: str, top_level_only: bool = False) -> set[str]:
    """The project's modules `name` imports (`from package import module` counts the
    module, not the package), anywhere in its body, or only where it runs at import time."""
    tree = ast.parse(MODULES[name].read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
                package = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
                base = f"{package}.{base}".rstrip(".")
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                      for a in node.names}
    return {m for m in found if m in MODULES and m != name}


def role(module: str) -> str:
    """`raysweep.engine.driver` → `raysweep.engine`; `models.zoo.x` → `models`."""
    parts = module.split(".")
    return parts[0] if parts[0] == "models" else ".".join(parts[:2])


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of `graph` as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_top_level_holds_only_the_cli_errors_and_role_packages():
    package = ROOT / "raysweep"
    files = {p.name for p in package.iterdir() if p.is_file() and p.suffix == ".py"}
    folders = {p.name for p in package.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert files == TOP_LEVEL
    assert folders == set(ROLES)


def test_no_circle_between_role_packages():
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        graph.setdefault(role(name), set()).update(
            role(m) for m in imports(name) if role(m) != role(name))
    assert cycle(graph) is None, " → ".join(cycle(graph))


def test_no_circle_between_modules_at_import_time():
    graph = {name: imports(name, top_level_only=True) for name in MODULES}
    assert cycle(graph) is None, " → ".join(cycle(graph))


@pytest.mark.parametrize("lower", LOWER)
def test_lower_layers_import_nothing_from_higher_ones(lower):
    wrong = sorted(f"{name} imports {m}" for name in MODULES if role(name) == lower
                   for m in imports(name) if m.startswith(HIGHER))
    assert not wrong


def test_the_model_zoo_imports_nothing_from_raysweep():
    wrong = sorted(f"{name} imports {m}" for name in MODULES if role(name) == "models"
                   for m in imports(name) if m.startswith("raysweep"))
    assert not wrong


def test_the_check_sees_a_circle_and_an_upward_import():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None
    assert role("raysweep.engine.driver") == "raysweep.engine" and role("models.zoo.x") == "models"
    assert "raysweep.store.records" in imports("raysweep.engine.driver")
