"""Every `module.name` the documentation cites exists: a module of raysweep or models,
named in full (`raysweep.store.records.read_records`) or by its own name
(`driver.METRIC`), that defines the name (at top level or in one of its classes). Read
with `ast`; nothing is imported."""
from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        *(ROOT / d / "README.md" for d in ("search_spaces", "results", "models", "benchmarks"))]
NOT_CODE = {"yaml", "json", "py", "md", "csv", "tex", "pdf", "png", "log", "txt", "sh", "toml"}
CITED = re.compile(r"`([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)+)(?:\(|`)")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for top in ("raysweep", "models") for p in (ROOT / top).rglob("*.py")}
BY_SHORT: dict[str, list[str]] = {}
for _name in MODULES:
    BY_SHORT.setdefault(_name.rsplit(".", 1)[-1], []).append(_name)


@cache
def defined(module: str) -> frozenset[str]:
    """Names `module` defines, imports or exports (`__all__`), and its classes' members."""
    tree = ast.parse(MODULES[module].read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            names |= {t.attr for t in node.targets if isinstance(t, ast.Attribute)}
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                names |= set(ast.literal_eval(node.value))   # names a module __getattr__ gives
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return frozenset(names)


def resolves(reference: str) -> bool | None:
    """True or False for a reference to a module of the project, None for anything else."""
    parts = reference.split(".")
    if parts[-1] in NOT_CODE:
        return None
    for i in range(len(parts), 0, -1):
        head = ".".join(parts[:i])
        candidates = [head] if head in MODULES else BY_SHORT.get(head, []) if i == 1 else []
        if candidates:
            rest = parts[i:]
            return not rest or any(rest[0] in defined(m) or f"{m}.{rest[0]}" in MODULES
                                   for m in candidates)
    return None


def references() -> list[tuple[str, str]]:
    return sorted({(path.relative_to(ROOT).as_posix(), ref) for path in DOCS if path.exists()
                   for ref in CITED.findall(path.read_text())})


@pytest.mark.parametrize("doc,reference", [r for r in references() if resolves(r[1]) is not None])
def test_a_cited_module_name_exists(doc, reference):
    assert resolves(reference), f"{doc} cites `{reference}`, which no module defines"


def test_the_check_tells_a_stale_reference_from_a_good_one():
    assert resolves("raysweep.store.records.read_records")
    assert resolves("records.read_records")
    assert resolves("driver.check_data") is False
    assert resolves("raysweep.driver") is None or resolves("raysweep.driver") is False
    assert resolves("study.yaml") is None


PATH_CITED = re.compile(r"\b((?:raysweep|models|tests|benchmarks|cluster|docs)/[\w/]+\.(?:py|md|sh|txt))")


@pytest.mark.parametrize("doc,path", sorted({(p.relative_to(ROOT).as_posix(), m)
                                             for p in DOCS if p.exists()
                                             for m in PATH_CITED.findall(p.read_text())}))
def test_a_cited_file_exists(doc, path):
    assert (ROOT / path).is_file(), f"{doc} cites {path}, which is not in the checkout"
