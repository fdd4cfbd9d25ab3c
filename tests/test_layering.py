"""The dependency rule (README, Development): attacks/, metrics/ and reports/ import only redteam.core
(attacks also redteam.anonymizers), never the engine; redteam.core imports nothing else of ours; and the
command line starts without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("redteam", "attacks", "metrics", "reports")
ALLOWED = {
    "attacks": ("attacks", "redteam.core", "redteam.anonymizers"),
    "metrics": ("metrics", "redteam.core"),
    "reports": ("reports", "redteam.core"),
    "redteam/core": ("redteam.core",),
    "redteam/anonymizers": ("redteam.anonymizers", "redteam.core"),
}


def imports_of(path: Path) -> list[str]:
    """Every module of ours a file imports, at module level or inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module not in OURS else [f"{node.module}.{alias.name}" for alias in node.names]
            found += names
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [name for name in found if name.split(".")[0] in OURS]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_what_the_dependency_rule_allows(package: str) -> None:
    violations = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imports_of(path):
            if not any(name == allowed or name.startswith(allowed + ".") for allowed in ALLOWED[package]):
                violations.append(f"{path.relative_to(ROOT)} imports {name}")
    assert violations == []


def test_the_command_line_starts_without_torch() -> None:
    code = "import sys, redteam.cli; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
    shown = subprocess.run([sys.executable, "-m", "redteam", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert shown.returncode == 0 and "audit" in shown.stdout
    version = subprocess.run([sys.executable, "-m", "redteam", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert version.returncode == 0 and version.stdout.startswith("redteam (face-anon-redteam) ")


#: Every unit of the code (a package, or a loose module of redteam/) and its layer: a unit imports only
#: units of lower layers (README, Development). A new module must be placed here.
LAYERS = {
    "redteam": 0,  # the package's __init__: the version only
    "redteam.core": 0,
    "redteam.data": 0,
    "redteam.mtcnn_cascade": 0,  # facenet-pytorch's networks, no module of ours
    "redteam.anonymizers": 1,
    "redteam.cache": 1,
    "redteam.faces": 1,
    "redteam.images": 1,
    "redteam.lpips_weights": 1,
    "redteam.ncnn": 1,
    "redteam.plausibility": 1,
    "redteam.runlog": 1,
    "redteam.store": 1,
    "redteam.tfgraph": 1,
    "metrics": 1,
    "reports": 1,
    "attacks": 2,
    "redteam.datasets": 2,
    "redteam.facenet_graph": 2,
    "redteam.regression": 2,
    "redteam.terminal": 2,
    "redteam.tfgraph_interpreter": 2,
    "redteam.anonymize": 3,
    "redteam.attack_runner": 3,
    "redteam.calibration": 3,
    "redteam.training": 3,
    "redteam.engine": 4,
    "redteam.parrot_training": 4,
    "redteam.standalone": 4,
    "redteam.command_guard": 3,
    "redteam.audit_inputs": 3,
    "redteam.audit_run": 5,
    "redteam.benchmark": 5,
    "redteam.video": 5,
    "redteam.cli_video": 6,
    "redteam.cli_benchmark": 6,
    "redteam.cli_models": 5,
    "redteam.cli_runs": 5,
    "redteam.cli": 7,
    "redteam.__main__": 8,
}


def unit_of(module: str) -> str:
    """The unit a dotted module name belongs to: its package, or the loose module of redteam/."""
    parts = module.split(".")
    if parts[0] != "redteam":
        return parts[0]
    return "redteam" if len(parts) == 1 else ".".join(parts[:2])


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> list[Path]:
    return sorted(p for package in OURS for p in (ROOT / package).rglob("*.py"))


def test_every_unit_has_a_layer() -> None:
    assert sorted({unit_of(module_name(p)) for p in sources()} - set(LAYERS)) == []


def test_units_import_only_lower_layers() -> None:
    violations = []
    for path in sources():
        unit = unit_of(module_name(path))
        for name in imports_of(path):
            target = unit_of(name)
            if target != unit and LAYERS.get(target, 99) >= LAYERS[unit]:
                violations.append(f"{path.relative_to(ROOT)} (layer {LAYERS[unit]}) imports {name} (layer {LAYERS.get(target)})")
    assert violations == []


def test_the_engine_modules_form_no_cycle() -> None:
    """Within redteam/engine, imports (type-only ones included) go one way: no module needs, even for a
    type, one that needs it back."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / "redteam" / "engine").rglob("*.py")):
        here = module_name(path)
        graph[here] = {n for n in imports_of(path) if n.startswith("redteam.engine.") and n != here}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            cycles.append(" -> ".join(trail[trail.index(node) :] + [node]))
            return
        for other in sorted(graph.get(node, ())):
            visit(other, trail + [node])

    for start in sorted(graph):
        visit(start, [])
    assert cycles == []
