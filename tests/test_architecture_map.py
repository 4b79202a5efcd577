"""The README's architecture map names every module of the project once, so any behaviour is one hop away."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("bot", "model", "storage", "standin")
# Dated schema steps, one per change: the map names their folder, not each of them.
MIGRATION_REVISIONS = "storage/migrations/versions/"
MAP_LINE = re.compile(r"^- `(?P<path>[\w/]+\.py)` — \S", re.M)


def architecture_map() -> str:
    """The README's "Architecture map" section, up to the next heading of its level or above."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n### Architecture map\n")
    end = re.search(r"\n#{1,3} ", readme[start + 1 :])
    return readme[start : start + 1 + end.start()] if end else readme[start:]


def is_package_marker(path: Path) -> bool:
    """An `__init__.py` that holds nothing but its docstring."""
    body = ast.parse(path.read_text()).body
    return path.name == "__init__.py" and all(
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body
    )


def modules() -> set[str]:
    found = {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts and not is_package_marker(path)
    }
    return {module for module in found if not module.startswith(MIGRATION_REVISIONS)}


def test_every_module_has_exactly_one_line_in_the_architecture_map():
    named = [match["path"] for match in MAP_LINE.finditer(architecture_map())]
    missing = sorted(modules() - set(named))
    twice = sorted({path for path in named if named.count(path) > 1})
    gone = sorted(set(named) - modules())
    problems = [f"no line for {path}: add '- `{path}` — what it is for' under its group" for path in missing]
    problems += [f"{path} is named on {named.count(path)} lines: keep one" for path in twice]
    problems += [f"{path} is named but does not exist: remove or rename its line" for path in gone]
    assert not problems, "README.md, Architecture map:\n" + "\n".join(problems)


def test_the_map_names_the_migration_revisions_folder():
    assert f"`{MIGRATION_REVISIONS}`" in architecture_map()
