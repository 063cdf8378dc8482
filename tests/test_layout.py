"""Tests of the package layout: imports only go down the pipeline."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "optimizer"
#: The stages in the order the data flows through them; shared pieces at the bottom.
STAGES = ("common", "traces", "fleet", "planning", "serving", "reporting")


def _imported_stages(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "optimizer":
                found.append((node.lineno, parts[1] if len(parts) > 1 else ""))
    return found


def test_every_module_imports_only_its_own_or_earlier_stages():
    """Tests that no module imports a later stage of the pipeline, nor the package's root (which
    imports every stage), so the folder list reads as the order the data flows in."""
    wrong = []
    for stage in STAGES:
        for path in sorted((PACKAGE / stage).glob("*.py")):
            for line, imported in _imported_stages(path):
                if imported not in STAGES or STAGES.index(imported) > STAGES.index(stage):
                    wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports optimizer.{imported or '(root)'}")
    assert not wrong, "\n".join(wrong)


def test_every_module_lives_in_a_stage():
    """Tests that the package root holds only the public API: every module is in one stage."""
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py"]
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(STAGES)


def test_the_package_never_imports_the_command_line():
    """Tests that `optimizer` is usable without its command line: no module imports `cli` or
    `commands`, so everything a command does is reachable from the API."""
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if any(name.split(".")[0] in ("cli", "commands") for name in names):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not wrong, "\n".join(wrong)
