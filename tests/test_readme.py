"""The README's commands: every `redteam ...` it documents names a real command, and every option it
passes is one that command's `--help` lists (so the README cannot drift from the CLI)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from redteam.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"


def documented_commands() -> list[str]:
    """Every `redteam ...` command line in the README's code blocks and inline code."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        commands += [line.split("#")[0].strip() for line in joined.splitlines() if line.strip().startswith("redteam ")]
    commands += [c.strip() for c in re.findall(r"`(redteam [^`]+)`", text)]
    return sorted(set(commands))


def resolve(command: str) -> tuple[list[str], Any]:
    """The subcommand path of a command line and the click command it reaches."""
    words = shlex.split(command.replace("[", " ").replace("]", " ").replace("|", " "))[1:]
    group: Any = typer.main.get_command(app)
    path: list[str] = []
    for word in words:
        found = group.get_command(group.context_class(group), word) if hasattr(group, "list_commands") else None
        if found is None:
            break
        group = found
        path.append(word)
    return path, group


COMMANDS = documented_commands()


def test_the_readme_documents_the_main_commands() -> None:
    reached = {" ".join(resolve(command)[0]) for command in COMMANDS}
    for expected in (
        "demo",
        "audit",
        "anonymize",
        "attack run",
        "attack train",
        "calibrate",
        "models download",
        "models import",
        "history",
        "compare",
        "audit-video",
    ):
        assert expected in reached, f"the README never shows `redteam {expected}`"


@pytest.mark.parametrize("command", COMMANDS)
def test_each_documented_command_exists_and_takes_its_options(command: str) -> None:
    path, target = resolve(command)
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, f"`redteam {' '.join(path)} --help` failed for README line: {command}\n{result.output}"
    known = {name for parameter in target.params for name in (*parameter.opts, *parameter.secondary_opts)} | {"--help"}
    used = {token.split("=")[0] for token in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*(?:=\S*)?", command)}
    assert used <= known, f"README line `{command}` uses {sorted(used - known)}, not options of `redteam {' '.join(path)}`"


def section(title: str) -> str:
    """The README's text from the heading `title` to the next heading of the same or a higher level."""
    text = README.read_text()
    start = text.index(title)
    level = title.split(" ")[0]
    ends = [m.start() for m in re.finditer(rf"^#{{1,{len(level)}}} ", text[start + len(title) :], flags=re.M)]
    return text[start : start + len(title) + (ends[0] if ends else len(text))]


def test_the_quickstart_states_measured_times_with_the_machine() -> None:
    """It said "about 2 minutes" for a demo that took 5:31 on a new user's 2 shared cores, and "about 10
    minutes" for a test suite that took 37."""
    quickstart = section("## Quickstart")
    assert not re.search(r"about \d+ min", quickstart)
    assert re.search(r"measured on a 2-core x86_64 VM, \d{4}-\d{2}-\d{2}", quickstart)
    assert re.search(r"`redteam demo` (\d+ min )?\d+ s", quickstart) and re.search(r"`pytest` \d+ min", quickstart)


def test_the_quickstart_keeps_the_cpu_only_torch_and_says_how_to_check_it() -> None:
    quickstart = section("## Quickstart")
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in quickstart
    assert 'python -c "import torch; print(torch.version.cuda)"' in quickstart and "`None`" in quickstart
    commands = re.search(r"<!-- quickstart -->\n```\n(.*?)```", quickstart, flags=re.S).group(1).strip().splitlines()  # type: ignore[union-attr]
    assert len(commands) == 3 and commands[0].endswith('pip install -e ".[test,diffusion,sr]"')  # .ci/run runs exactly these


def test_the_exit_code_table_is_the_cli_s() -> None:
    from redteam.cli import EXIT_CODES_HELP
    from redteam.core.errors import ExitCode

    table = section("## Exit codes")
    documented = {int(code) for code in re.findall(r"^\| (\d) \|", table, flags=re.M)}
    assert documented == {int(code) for code in ExitCode if code is not ExitCode.INTERRUPTED}
    assert "first of 4, 6, 1, 0" in table and "first of 4, 6, 1, 0" in EXIT_CODES_HELP
    assert all(re.search(rf"^  {code}  ", EXIT_CODES_HELP, flags=re.M) for code in documented)
