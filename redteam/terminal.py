"""Terminal output: rich tables on stdout, progress and diagnostics on stderr.

Every name or message that comes from the user's files (file, method, attack, identity names, error
messages quoting them) is passed through `escape` (`redteam.core.text.markup_text`): a name like
`[bold]PASS[/bold]` is shown as written, never as markup (nor does `[/x]` crash the output), and control
characters (an ANSI escape sequence, a bell, a carriage return, a newline) are shown as escapes, never sent
to the terminal.

How much is shown (`redteam audit --quiet / --verbose`): QUIET prints the LEAK lines, the verdict line and
errors; NORMAL adds the verdict table, the summary, the skipped attacks grouped by reason and the input issues
(with the log lines and progress bars on stderr); VERBOSE adds the table of every rate."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from redteam.core.results import AuditResult, ProgressFn, SkippedAttack
from redteam.core.text import markup_text as escape
from redteam.core.tiers import TIER_ORDER
from reports.decision import decision
from reports.table import format_limit

#: Input issues listed one by one in the terminal (all of them are in the reports).
SHOWN_ISSUES = 20

# Logs of CI jobs are not terminals: give tables room (COLUMNS, else 160) instead of rich's 80-column default.
_WIDTH = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else 160
stdout = Console() if Console().is_terminal else Console(width=_WIDTH)
stderr = Console(stderr=True) if Console(stderr=True).is_terminal else Console(stderr=True, width=_WIDTH)

_STYLE = {"PASS": "bold green", "FAIL": "bold red", "INCONCLUSIVE": "bold yellow"}


class Verbosity(IntEnum):
    """How much a command prints (`--quiet`, default, `--verbose`)."""

    QUIET = 0
    NORMAL = 1
    VERBOSE = 2


_verbosity = Verbosity.NORMAL


def set_verbosity(level: Verbosity) -> None:
    """Set how much the log lines and results show for the rest of this command (the CLI sets it once)."""
    global _verbosity
    _verbosity = level


def log(message: str) -> None:
    """An informational line on stderr (not shown with --quiet)."""
    if _verbosity >= Verbosity.NORMAL:
        stderr.print(f"[dim]redteam:[/dim] {escape(message)}", highlight=False)


# -- progress ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageProgress:
    """One progress stage as reported so far: when its first report came, items done, items in all."""

    started: float
    done: float
    total: float


def remaining_seconds(stages: Sequence[StageProgress], now: float) -> float | None:
    """Seconds left over every stage reported so far: each unfinished stage's remaining items at the average
    pace of its items done so far ((now - started) / done per item, over the whole stage, not over the
    last few updates: an item that takes minutes still leaves an estimate). Finished stages add nothing.

    Returns:
        None while an unfinished stage has no item done yet (nothing to extrapolate from), else the sum.
    """
    left = 0.0
    for stage in stages:
        if stage.total <= 0 or stage.done >= stage.total:
            continue
        if stage.done <= 0:
            return None
        left += max(0.0, now - stage.started) / stage.done * (stage.total - stage.done)
    return left


def format_seconds(seconds: float | None) -> str:
    """H:MM:SS, or -:--:-- when unknown."""
    if seconds is None:
        return "-:--:--"
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class AverageRemainingColumn(ProgressColumn):
    """ETA of a stage from its average pace since it began (`remaining_seconds`); rich's own column uses
    the last 30 seconds of updates and so shows -:--:-- whenever an item takes longer than that."""

    def render(self, task: Task) -> Text:
        if task.finished:
            return Text("done", style="progress.remaining")
        started = task.start_time if task.start_time is not None else task.get_time()
        stage = StageProgress(started, task.completed, task.total or 0)
        return Text(f"ETA {format_seconds(remaining_seconds([stage], task.get_time()))}", style="progress.remaining")


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[ProgressFn]:
    """A progress callback drawing one bar per stage on stderr, with elapsed time and an ETA from the
    stage's average pace; the text after " | " in a stage is a detail shown on its bar (e.g. the attack
    running now). With `enabled` False (or --quiet) the callback draws nothing."""
    if not enabled or _verbosity < Verbosity.NORMAL:
        yield lambda stage, done, total: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        AverageRemainingColumn(),
        console=stderr,
        transient=True,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            name = stage.split(" | ", 1)[0]
            if name not in tasks:
                tasks[name] = progress.add_task(escape(stage), total=total)
            progress.update(tasks[name], completed=done, total=total, description=escape(stage))

        yield update


# -- skipped attacks ---------------------------------------------------------------------------------------

_COMMAND = re.compile(r"`((?:redteam|pip|hf) [^`]+)`")


def _methods_of(attacks: dict[str, list[str]]) -> str:
    """'sr, sdedit for a, b; inpaint for b': attacks grouped by the methods they were skipped for."""
    by_methods: dict[tuple[str, ...], list[str]] = {}
    for attack, methods in attacks.items():
        by_methods.setdefault(tuple(methods), []).append(attack)
    return "; ".join(f"{', '.join(names)} for {', '.join(methods)}" for methods, names in by_methods.items())


def group_skipped(skipped: Sequence[SkippedAttack]) -> list[tuple[str, str | None]]:
    """The skipped attacks as (line, fix) pairs, one per reason: attacks missing an optional extra, attacks
    whose model is not on this machine (one `redteam models download` command for all of them), attacks
    without a trained inversion, and each reason an attack does not apply (with the method's name taken out,
    so "'blur' has no blur stage" and "'px' has no blur stage" are one line)."""
    extras: dict[str, dict[str, list[str]]] = {}  # pip command -> attack -> methods
    models: dict[str, list[str]] = {}  # attack -> methods
    downloads: list[str] = []
    offline: list[str] = []
    trained: dict[str, list[str]] = {}
    specs: list[str] = []
    other: dict[str, dict[str, list[str]]] = {}  # reason -> attack -> methods
    for item in skipped:
        commands = _COMMAND.findall(item.reason)
        pip = next((c for c in commands if c.startswith("pip install")), None)
        download = [c.split()[-1] for c in commands if c.startswith("redteam models download ")]
        train = next((c for c in commands if c.startswith("redteam attack train")), None)
        if pip is not None:
            extras.setdefault(pip, {}).setdefault(item.attack, []).append(item.method)
        elif download or any(c.startswith("hf download") for c in commands):
            models.setdefault(item.attack, []).append(item.method)
            downloads += download or [c.split()[-1] for c in commands if c.startswith("hf download")]
            offline += [c for c in commands if c.startswith("redteam models import")]
        elif train is not None:
            trained.setdefault(item.attack, []).append(item.method)
            spec = re.search(r'--method "([^"]*)"', train)
            specs.append(f'"{spec.group(1)}"' if spec else item.method)
        else:
            reason = item.reason.replace(f"'{item.method}'", "the method")
            other.setdefault(reason, {}).setdefault(item.attack, []).append(item.method)
    lines: list[tuple[str, str | None]] = []
    for command, attacks in extras.items():
        missing = next((s.reason for s in skipped if command in s.reason), "")
        what = re.search(r"\((\S+ is not installed)\)", missing)
        lines.append((f"{_methods_of(attacks)}: needs `{command}`" + (f" ({what.group(1)})" if what else ""), None))
    if models:
        fix = "redteam models download " + " ".join(dict.fromkeys(downloads)) + " (where the network allows; an audit never downloads"
        fix += "; `redteam models` lists where each file goes" + (f"; offline: {'; '.join(dict.fromkeys(offline))}" if offline else "") + ")"
        lines.append((f"{_methods_of(models)}: model not on this machine", fix))
    if trained:
        lines.append(
            (f"{_methods_of(trained)}: no trained inversion", f"redteam attack train --method SPEC --faces DIR (SPEC: {', '.join(dict.fromkeys(specs))})")
        )
    for reason, attacks in other.items():
        lines.append((f"{_methods_of(attacks)}: {reason}", None))
    return lines


# -- results -------------------------------------------------------------------------------------------------


def _styled(verdict: str) -> str:
    style = _STYLE.get(verdict)
    return f"[{style}]{verdict}[/{style}]" if style else verdict


def print_result(result: AuditResult, console: Console | None = None) -> None:
    """The leaks first (each FAILs its method), then (not with --quiet) the verdict table per method and
    tier, the summary with its next steps, the comparison with the baseline, the skipped attacks grouped by
    reason and the input issues; the table of every rate only with --verbose. `console` receives what
    goes to stdout by default (stderr with --json, whose stdout is the summary alone)."""
    out = console or stdout
    quiet = _verbosity < Verbosity.NORMAL
    for leak in result.leaks:
        out.print(f"[bold red]LEAK[/bold red] {escape(leak.describe())}", soft_wrap=True, highlight=False)
    summary = decision(result)
    style = _STYLE.get(summary.outcome, "bold")
    if quiet:
        out.print(f"[{style}]{escape(summary.headline)}[/{style}]", soft_wrap=True, highlight=False)
        if result.regression and result.regression.get("gate"):
            out.print(f"[bold red]{escape(summary.baseline or '')}[/bold red]", soft_wrap=True, highlight=False)
        _print_blockers(result)
        return
    faces = len(result.faces)
    table = Table(title=f"Verdicts (policy {escape(result.policy.name)}; {faces} faces, gallery {result.gallery_size})")
    table.add_column("method")
    table.add_column("verdict")
    for tier in TIER_ORDER:
        table.add_column(tier.value)
    for verdict in result.method_verdicts:
        tiers = dict(verdict.tiers)
        table.add_row(
            escape(verdict.method),
            _styled(verdict.verdict.value),
            *[_styled(tiers[t.value].value) if t.value in tiers else "[dim]not run[/dim]" for t in TIER_ORDER],
        )
    out.print(table)
    if _verbosity >= Verbosity.VERBOSE:
        rates = Table(title=f"Rates ({result.policy.confidence:.0%} {result.policy.interval} interval)")
        for column in ("method", "tier", "attack", "recognizer", "metric", "rate (k/n) [CI]", "chance", "limit", "verdict"):
            rates.add_column(column)
        for v in result.metric_verdicts:
            e = v.estimate
            rate = "n/a (n=0)" if e.trials == 0 else f"{e.rate:.0%} ({e.successes}/{e.trials}) [{e.low:.0%}, {e.high:.0%}]"
            chance = "n/a" if v.chance != v.chance else f"{v.chance:.0%}"
            names = (escape(v.method), v.tier, escape(v.attack), escape(v.recognizer), v.metric)
            rates.add_row(*names, rate, chance, format_limit(v.limit), _styled(v.verdict.value))
        out.print(rates)
    out.print(f"[{style}]{escape(summary.headline)}[/{style}]", soft_wrap=True, highlight=False)
    if summary.baseline:
        regressed = bool(result.regression and result.regression.get("gate"))
        out.print(f"[{'bold red' if regressed else 'green'}]{escape(summary.baseline)}[/]", soft_wrap=True, highlight=False)
    if summary.cannot_certify:
        out.print(f"[bold red]{escape(summary.cannot_certify)}[/bold red]", soft_wrap=True, highlight=False)
    for line in summary.deciding:
        if not line.startswith("LEAK "):  # printed first, above
            out.print(f"  {escape(line)}", soft_wrap=True, highlight=False)
    if _verbosity < Verbosity.VERBOSE and result.metric_verdicts:
        out.print("  (every rate with its interval: --verbose, or the Rates table of report.md)", highlight=False)
    for step in summary.next_steps:
        out.print(f"  next: {escape(step)}", soft_wrap=True, highlight=False)
    _print_blockers(result)
    for line, fix in group_skipped(result.skipped_attacks):
        stderr.print(f"[yellow]skipped[/yellow] {escape(line)}", soft_wrap=True, highlight=False)
        if fix:
            stderr.print(f"  fix: {escape(fix)}", soft_wrap=True, highlight=False)
    if result.issues:
        counts: dict[str, int] = {}
        for issue in result.issues:
            counts[issue.kind] = counts.get(issue.kind, 0) + 1
        stderr.print("input issues: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        for issue in result.issues[:SHOWN_ISSUES]:
            where = f"{issue.path} ({issue.method})" if issue.method else issue.path
            stderr.print(f"  {issue.kind}: {escape(where)}: {escape(issue.detail)}; fix: {escape(issue.fix)}", soft_wrap=True, highlight=False)
        if len(result.issues) > SHOWN_ISSUES:
            stderr.print(f"  ... and {len(result.issues) - SHOWN_ISSUES} more: see Input issues in report.md", highlight=False)


def _print_blockers(result: AuditResult) -> None:
    for blocker in result.blockers:
        stderr.print(f"[bold red]requested or required but unavailable (no PASS, exit 4):[/bold red] {escape(blocker)}", soft_wrap=True, highlight=False)
