"""Small modules with one job (issue 24): no module of the engine over 300 lines, and no function there
over 80 lines or taking more than 8 parameters; the command line under 350 lines (Typer wiring only)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = sorted((ROOT / "redteam" / "engine").rglob("*.py")) + [ROOT / "redteam" / "attack_runner.py"]
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_PARAMETERS = 300, 80, 8


def functions(path: Path) -> list[tuple[str, int, int]]:
    """(name, lines, parameters) of every function and method in `path` (self and cls not counted)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs] + [a.arg for a in (args.vararg, args.kwarg) if a]
            count = len([n for n in names if n not in ("self", "cls")])
            found.append((node.name, (node.end_lineno or node.lineno) - node.lineno + 1, count))
    return found


def test_engine_modules_are_small() -> None:
    long = {str(p.relative_to(ROOT)): n for p in ENGINE if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_engine_functions_are_short_and_take_few_parameters() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{name} ({lines} lines, {count} parameters)"
        for path in ENGINE
        for name, lines, count in functions(path)
        if lines > MAX_FUNCTION_LINES or count > MAX_PARAMETERS
    ]
    assert found == []


def test_the_command_line_is_thin() -> None:
    assert len((ROOT / "redteam" / "cli.py").read_text().splitlines()) < 350
