"""`redteam list`, `redteam history` and `redteam compare`: what is registered, and the recorded audits
(Typer wiring of the registries and of the run store, `redteam.store` and `redteam.regression`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from redteam.command_guard import guarded
from redteam.core.errors import UsageError
from redteam.core.text import markup_text as escape

list_app = typer.Typer(help="List registered attacks, methods or recognizers.", no_args_is_help=True)


@list_app.command("attacks")
def list_attacks() -> None:
    """Registered attacks with their threat tier."""
    from attacks import ATTACKS
    from redteam import terminal

    for name, attack in ATTACKS.items():
        known = " (needs a known method)" if attack.needs_known_method else ""
        terminal.stdout.print(escape(f"{name:16} {attack.tier.value:15} {attack.summary()}{known}"), highlight=False)
        for parameter in attack.parameters:
            terminal.stdout.print(escape(f"{'':32} {parameter.describe()}"), highlight=False)
    terminal.stdout.print("Chains: 'wiener|denoise' applies left to right; --attacks auto runs every applicable attack.")


@list_app.command("methods")
def list_methods() -> None:
    """Registered reference methods with their parameters, defaults and source."""
    from redteam import terminal
    from redteam.anonymizers import METHODS, Anonymizer

    for name, method in METHODS.items():
        summary = (method.__doc__ or "").strip().splitlines()[0]
        terminal.stdout.print(f"[bold]{escape(name)}[/bold]: {escape(summary)}", highlight=False)
        terminal.stdout.print(escape(f"    source: {method.reference}"), highlight=False)
        operator = "deepinv operator" + (" (linear)" if method.linear else "") if method.physics is not Anonymizer.physics else "no operator"
        terminal.stdout.print(escape(f"    {operator}{': ' + method.operator_note if method.operator_note else ''}"), highlight=False)
        for parameter in method.all_parameters():
            terminal.stdout.print(escape(f"    {parameter.describe()}"), highlight=False)
    terminal.stdout.print("Pipelines: 'downsample:factor=4 | jpeg:quality=15 | noise:sigma=0.05' applies the stages in order.")


@list_app.command("recognizers")
def list_recognizers() -> None:
    """Registered recognizers and whether their weights are available here."""
    from metrics.recognizers import RECOGNIZERS
    from redteam import terminal

    for name, recognizer in RECOGNIZERS.items():
        availability = recognizer.availability()
        status = "available" if availability.available else f"unavailable: {availability.reason}"
        terminal.stdout.print(escape(f"{name:10} {recognizer.summary}  [{status}]"), highlight=False)


def _store(store: Path | None) -> Any:
    """The run store of `history` and `compare`, checked (a folder or a file that is not a run store is an
    error naming it and where its path came from)."""
    from redteam.store import open_store

    runs = open_store(store)
    runs.check()
    return runs


@guarded
def history(
    method: Annotated[str | None, typer.Option(help="Only this method.")] = None,
    store: Annotated[Path | None, typer.Option(help="Run store (default: $REDTEAM_STORE or runs.sqlite in the cache).")] = None,
) -> None:
    """Recorded audits: date, verdict per method, worst rate with its interval, and what changed since the run before."""
    from rich.table import Table

    from redteam import terminal
    from redteam.regression import catalog_changes

    runs = _store(store).runs()
    if not runs:
        raise UsageError(f"no runs recorded in {_store(store).path}", fix="run `redteam audit` (every audit is recorded), or give --store")
    table = Table(title=f"Audit history ({len(runs)} runs)")
    for column in ("run", "finished", "method", "verdict", "worst rate [CI]", "changed since the run before"):
        table.add_column(column)
    previous_by_inputs: dict[str, Any] = {}
    for run in runs:
        before = previous_by_inputs.get(run.inputs_hash)
        changed = "; ".join(catalog_changes(before, run)[:4]) if before else "first run over these inputs"
        for name, verdict in run.method_verdicts.items():
            if method and name != method:
                continue
            rows = [r for r in run.verdict_rows if r["method"] == name and r["n"]]
            worst = max(rows, key=lambda r: r["k"] / r["n"], default=None)
            rate = "n/a"
            if worst:
                where = f"{worst['tier']}/{worst['attack']}/{worst['metric']}"
                rate = f"{worst['k']}/{worst['n']} {worst['k'] / worst['n']:.0%} [{worst['low']:.0%}, {worst['high']:.0%}] {where}"
            table.add_row(escape(run.run_id), run.finished_at, escape(name), verdict, escape(rate), escape(changed))
        previous_by_inputs[run.inputs_hash] = run
    terminal.stdout.print(table)


@guarded
def compare_runs(
    run_a: Annotated[str | None, typer.Argument(help="The older run (default: the run before RUN_B over the same inputs).")] = None,
    run_b: Annotated[str | None, typer.Argument(help="The newer run (default: the latest).")] = None,
    store: Annotated[Path | None, typer.Option(help="Run store (default: $REDTEAM_STORE or runs.sqlite in the cache).")] = None,
) -> None:
    """Per method x tier x metric: the change in the worst rate, its Newcombe interval, a label and the likely cause."""
    from rich.table import Table

    from redteam import terminal
    from redteam.regression import compare, not_comparable

    runs = _store(store)
    new = runs.get(run_b or "latest")
    if run_a is None:
        earlier = [r for r in runs.runs() if r.inputs_hash == new.inputs_hash and r.finished_at <= new.finished_at and r.run_id != new.run_id]
        if not earlier:
            raise UsageError(f"no earlier run over the same inputs as {new.run_id}", fix="give both runs: redteam compare RUN_A RUN_B")
        old = earlier[-1]
    else:
        old = runs.get(run_a)
    blocked = not_comparable(old, new)
    table = Table(title=f"{old.run_id} -> {new.run_id}" + (f" (not comparable: {'; '.join(blocked)})" if blocked else ""))
    for column in ("method", "tier", "metric", "before", "after", "change [95% CI]", "label", "likely cause"):
        table.add_column(column)

    def rate(row: dict[str, Any] | None) -> str:
        return "-" if row is None else f"{row['k']}/{row['n']} {row['k'] / row['n']:.0%}"

    for change in compare(old, new):
        interval = "-" if change.difference is None else f"{change.difference:+.1%} [{change.low:+.1%}, {change.high:+.1%}]"
        table.add_row(escape(change.method), change.tier, change.metric, rate(change.old), rate(change.new), interval, change.label, escape(change.cause))
    terminal.stdout.print(table)
