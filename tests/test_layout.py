"""The package layout of DESIGN.md: imports only go down the flow, and no module is over 600
lines. Parses every module's imports (function-level ones too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "visrep"
MAX_LINES = 600
# Lower rank = lower in the flow (DESIGN.md); a module imports its own rank or lower.
RANK = {
    "errors": 0, "configs": 0, "utils": 0, "runs": 0, "plots": 0,
    "data": 1,
    "events": 2,
    "models": 3, "losses": 3, "attacks": 3,
    "tasks": 4,
    "report": 5,
    "trainer": 6,
    "analysis": 7,
    "commands": 8,
    "cli": 9, "__main__": 9, "__init__": 9,
}  # fmt: skip
MODULES = sorted(SRC.rglob("*.py"))


def _stage(path: Path) -> str:
    rel = path.relative_to(SRC)
    return (
        rel.parts[0].removesuffix(".py")
        if len(rel.parts) > 1 or rel.stem != "__init__"
        else "__init__"
    )


def _imported_stages(path: Path) -> list[tuple[int, str, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "visrep":
                out.append((node.lineno, name, parts[1] if len(parts) > 1 else "__init__"))
    return out


def test_every_stage_has_a_rank():
    stages = {_stage(p) for p in MODULES}
    assert stages <= set(RANK), f"place these in RANK (DESIGN.md's flow): {stages - set(RANK)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_only_go_down_the_flow(path: Path):
    me = _stage(path)
    up = [
        f"{path.relative_to(SRC)}:{line}: {me} imports {name}"
        for line, name, other in _imported_stages(path)
        if other != me and RANK.get(other, 99) > RANK[me]
    ]
    assert not up, "imports up the flow:\n" + "\n".join(up)


def test_no_module_is_over_600_lines():
    big = {
        str(p.relative_to(SRC)): n
        for p in MODULES
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not big, f"split these modules (STYLE.md: one topic per file, ~600 lines): {big}"
