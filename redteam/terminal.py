"""Terminal output: rich tables on stdout, progress and diagnostics on stderr.

Every name or message that comes from the user's files (file, method, attack, identity names, error
messages quoting them) is passed through `escape` (`redteam.core.text.markup_text`): a name like
`[bold]PASS[/bold]` is shown as written, never as markup (nor does `[/x]` crash the output), and control
characters (an ANSI escape sequence, a bell, a carriage return, a newline) are shown as escapes, never sent
to the terminal."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from redteam.core.results import AuditResult, ProgressFn
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


def log(message: str) -> None:
    stderr.print(f"[dim]redteam:[/dim] {escape(message)}", highlight=False)


@contextmanager
def progress_bar() -> Iterator[ProgressFn]:
    """A progress callback drawing one bar per stage on stderr, with elapsed time and an ETA; the text
    after " | " in a stage is a detail shown on its bar (e.g. the attack running now)."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
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


def _styled(verdict: str) -> str:
    style = _STYLE.get(verdict)
    return f"[{style}]{verdict}[/{style}]" if style else verdict


def print_result(result: AuditResult) -> None:
    """The leaks first (each FAILs its method), then the verdict table per method and tier, then each rate
    with its interval and chance."""
    for leak in result.leaks:
        stdout.print(f"[bold red]LEAK[/bold red] {escape(leak.describe())}", soft_wrap=True, highlight=False)
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
    stdout.print(table)
    rates = Table(title=f"Rates ({result.policy.confidence:.0%} {result.policy.interval} interval)")
    for column in ("method", "tier", "attack", "recognizer", "metric", "rate (k/n) [CI]", "chance", "limit", "verdict"):
        rates.add_column(column)
    for v in result.metric_verdicts:
        e = v.estimate
        rate = "n/a (n=0)" if e.trials == 0 else f"{e.rate:.0%} ({e.successes}/{e.trials}) [{e.low:.0%}, {e.high:.0%}]"
        chance = "n/a" if v.chance != v.chance else f"{v.chance:.0%}"
        names = (escape(v.method), v.tier, escape(v.attack), escape(v.recognizer), v.metric)
        rates.add_row(*names, rate, chance, format_limit(v.limit), _styled(v.verdict.value))
    stdout.print(rates)
    summary = decision(result)
    style = _STYLE.get(summary.outcome, "bold")
    stdout.print(f"[{style}]{escape(summary.headline)}[/{style}]", soft_wrap=True, highlight=False)
    if summary.cannot_certify:
        stdout.print(f"[bold red]{escape(summary.cannot_certify)}[/bold red]", soft_wrap=True, highlight=False)
    for line in summary.deciding:
        stdout.print(f"  {escape(line)}", soft_wrap=True, highlight=False)
    for step in summary.next_steps:
        stdout.print(f"  next: {escape(step)}", soft_wrap=True, highlight=False)
    for blocker in result.blockers:
        stderr.print(f"[bold red]requested or required but unavailable (no PASS, exit 4):[/bold red] {escape(blocker)}", soft_wrap=True, highlight=False)
    skipped_by_reason: dict[tuple[str, str], list[str]] = {}
    for skipped in result.skipped_attacks:
        skipped_by_reason.setdefault((skipped.attack, skipped.reason), []).append(skipped.method)
    for (attack, reason), methods in skipped_by_reason.items():
        stderr.print(f"[yellow]skipped[/yellow] {escape(attack)} for {escape(', '.join(methods))}: {escape(reason)}", soft_wrap=True, highlight=False)
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
