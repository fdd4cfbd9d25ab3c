"""`redteam benchmark`: Typer wiring of `redteam.benchmark` (researchers compare techniques over a dataset)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from redteam.audit_inputs import check_execution
from redteam.command_guard import guarded
from redteam.core.errors import UsageError
from redteam.core.text import markup_text as escape


@guarded
def benchmark(
    dataset: Annotated[Path, typer.Argument(help="A folder of identity folders, a CelebA or LFW download, or a CSV path,identity.")],
    out: Annotated[Path, typer.Option(help="Folder for the leaderboard, report, figures and records.")],
    method: Annotated[list[str], typer.Option("--method", "-m", help="A method spec (built-in or a plugin's), repeatable.")] = [],  # noqa: B006 - Typer's idiom
    sweep: Annotated[list[str], typer.Option(help='One parameter over a range: "mosaic:block=4..32:4" or "gaussian_blur:sigma=2,4,8"; repeatable.')] = [],  # noqa: B006
    tool: Annotated[list[str], typer.Option(help='An external tool run once over the dataset: "CMD {input} {output}"; repeatable.')] = [],  # noqa: B006
    layout: Annotated[str | None, typer.Option(help="folder, celeba, lfw or manifest (default: detected).")] = None,
    limit: Annotated[int | None, typer.Option(help="Keep the first N people (name order).")] = None,
    probes_per_person: Annotated[str, typer.Option(help="Probes (anonymized and attacked) per person with another photo: N first photos, or all.")] = "1",
    probe_people: Annotated[int | None, typer.Option(help="Probes from the first N people only; everybody stays in the gallery.")] = None,
    attack: Annotated[list[str], typer.Option("--attack", "-a", help="Attacks (default: auto, every one that applies).")] = [],  # noqa: B006
    recognizer: Annotated[list[str], typer.Option("--recognizer", "-r", help="Recognizers (default: every available one).")] = [],  # noqa: B006
    risk_limit: Annotated[float, typer.Option("--limit-risk", help="Worst-case rank-1 upper bound a safe setting stays below.")] = 0.05,
    utility: Annotated[
        str,
        typer.Option(
            help="The frontier's utility axis: ssim_image, ssim_outside, psnr_image, psnr_outside, lpips_image, lpips_outside, changed_fraction or detectable."
        ),
    ] = "ssim_image",
    workers: Annotated[int | None, typer.Option(help="Processes the audit is split over (default: one per CPU core).")] = None,
    executor: Annotated[str, typer.Option(help="local or ray.")] = "local",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed for every random choice.")] = 0,
    cache_dir: Annotated[Path | None, typer.Option(help="Cache folder (default: $REDTEAM_CACHE).")] = None,
) -> None:
    """Compare anonymization techniques over a dataset: leaderboard, frontier, minimal safe settings, strata."""
    from redteam import terminal
    from redteam.benchmark import BenchmarkConfig, run_benchmark, techniques
    from redteam.benchmark.analysis import UTILITY_AXES

    if workers is None:
        workers = os.cpu_count() or 1
    check_execution(workers, executor)
    per_person = _per_person(probes_per_person)
    if probe_people is not None and probe_people < 1:
        raise UsageError(f"--probe-people must be positive, got {probe_people}", fix="e.g. --probe-people 30, or leave it out for everybody")
    if utility not in UTILITY_AXES:
        raise UsageError(f"unknown --utility '{utility}'", fix="choose one of: " + ", ".join(UTILITY_AXES))
    if not 0.0 < risk_limit < 1.0:
        raise UsageError(f"--limit-risk must be between 0 and 1, got {risk_limit}", fix="e.g. --limit-risk 0.05")
    config = BenchmarkConfig(
        dataset=dataset,
        techniques=tuple(techniques(method, sweep, tool)),
        out=out,
        layout=layout,
        limit=limit,
        probes_per_person=per_person,
        probe_people=probe_people,
        attacks=tuple(attack) or ("auto",),
        recognizers=tuple(recognizer),
        workers=workers,
        executor=executor,
        device=device,
        seed=seed,
        risk_limit=risk_limit,
        utility=utility,
        cache_dir=cache_dir,
        command=shlex.join(["redteam", *sys.argv[1:]]),
    )
    with terminal.progress_bar() as progress:
        outcome = run_benchmark(config, log=terminal.log, progress=progress)
    for _, row in outcome.leaderboard.head(10).iterrows():
        rate = "not measured" if row["rank1_other_n"] == 0 else f"{row['rank1_other_rate']:.3f} [{row['rank1_other_low']:.3f}, {row['rank1_other_high']:.3f}]"
        terminal.stdout.print(escape(f"{row['technique']:40} rank-1 {rate} by {row['rank1_other_by']}"), highlight=False)
    for setting in outcome.minimal:
        found = f"{setting.parameter}={setting.value:g}" if setting.value is not None else "none in the sweep"
        terminal.stdout.print(escape(f"minimal safe {setting.family}: {found} {setting.note}"), highlight=False)
    terminal.stdout.print(escape(f"wrote {len(outcome.files)} files into {out} in {outcome.seconds:.0f} s"), highlight=False)


def _per_person(text: str) -> int | None:
    """`--probes-per-person`: a positive whole number, or None for `all`."""
    if text == "all":
        return None
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--probes-per-person must be a positive whole number or all, got {text!r}", fix="e.g. --probes-per-person 1")
    return int(text)
