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
