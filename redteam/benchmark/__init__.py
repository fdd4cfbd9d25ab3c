"""`redteam benchmark`: researchers compare anonymization techniques over a dataset (see `run`)."""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from redteam.benchmark import analysis, outputs
from redteam.benchmark.run import BenchmarkConfig, LogFn, audit, prepare
from redteam.benchmark.techniques import Technique, techniques

__all__ = ["BenchmarkConfig", "BenchmarkOutcome", "Technique", "run_benchmark", "techniques"]


@dataclass(frozen=True)
class BenchmarkOutcome:
    """What a benchmark wrote and found."""

    leaderboard: pd.DataFrame
    front: tuple[str, ...]
    minimal: tuple[analysis.MinimalSetting, ...]
    strata: tuple[analysis.Stratum, ...]
    files: tuple[Path, ...]
    seconds: float
    audit: Any  # the audit's result (`redteam.engine.AuditResult`): every tier x attack x recognizer verdict
    names: dict[str, str]  # the audit's method name -> the technique's name


def run_benchmark(
    config: BenchmarkConfig, log: LogFn = lambda line: None, progress: Callable[[str, int, int], None] = lambda stage, done, total: None
) -> BenchmarkOutcome:
    """Prepare the dataset and every technique's folder, audit them in one run, and write the findings to
    `config.out` (leaderboard.csv/.parquet, report.md/.html, frontier.png, curves.png, strata.csv,
    minimal_safe.json, reproducibility.json, redteam.log, and the audit's own summary.json under audit/)."""
    from metrics.perceptual import LPIPSMetric
    from redteam.core.atomic import write_atomically
    from redteam.core.paths import default_cache_dir
    from redteam.datasets import check_out_dir, check_outside_inputs
    from redteam.runlog import RunLog
    from reports.json_summary import write_summary

    dataset_folder = config.dataset if config.dataset.is_dir() else config.dataset.parent  # a manifest's photos lie beside it
    check_out_dir(config.out, [dataset_folder], create=False)  # the dataset is never written into
    started = time.perf_counter()
    work = (config.cache_dir or default_cache_dir()) / "benchmark"
    check_outside_inputs(work, [dataset_folder], "cache folder")
    runlog = RunLog()

    def logged(line: str) -> None:
        runlog.log(line)
        log(line)

    with runlog.capturing():  # library warnings (the models' loaders) go to OUT/redteam.log, not the terminal
        prepared = prepare(config, work, logged)
        result = audit(config, prepared, logged, progress)
        lpips = LPIPSMetric(device=config.device) if LPIPSMetric.availability().available else None
        if lpips is None:
            logged("LPIPS weights are not installed: the LPIPS utility columns are left empty (`redteam models`)")
        utilities, faces = outputs.measure(result, prepared, lpips)
    board = outputs.leaderboard(result, prepared, utilities)
    axis = analysis.UTILITY_AXES[config.utility]
    points = [(str(r["technique"]), float(r["rank1_other_rate"]), axis.value(float(r[axis.column]))) for _, r in board.iterrows()]
    front = tuple(analysis.pareto_front(points))
    minimal = tuple(outputs.minimal_settings(board, config.risk_limit))
    layers = tuple(outputs.strata(result, board, faces))
    seconds = time.perf_counter() - started
    report = outputs.markdown(config, prepared, board, front, minimal, layers, seconds)
    files: dict[str, bytes | str] = {
        "leaderboard.csv": board.to_csv(index=False),
        "report.md": report,
        "frontier.png": outputs.frontier_png(board, front, axis),
        "strata.csv": pd.DataFrame([s.__dict__ for s in layers]).to_csv(index=False),
        "minimal_safe.json": pd.DataFrame([m.__dict__ for m in minimal]).to_json(orient="records", indent=2) + "\n",
        "reproducibility.json": outputs.record(config, prepared, result, seconds),
    }
    curves = outputs.curves_png(result, board)
    if curves is not None:
        files["curves.png"] = curves
    files["report.html"] = _html(board, minimal, layers, files)
    config.out.mkdir(parents=True, exist_ok=True)
    written = outputs.write_all(config.out, files)
    written.append(write_atomically(config.out / "leaderboard.parquet", lambda path: board.to_parquet(path, index=False)))
    written.append(write_summary(result, config.out / "audit"))
    written.append(runlog.write(config.out))
    if runlog.warnings:
        log(f"{sum(runlog.warnings.values())} library warning(s) during the run: see {config.out / 'redteam.log'}")
    names = {name: technique.name for name, technique in prepared.names.items()}
    return BenchmarkOutcome(board, front, minimal, layers, tuple(written), seconds, result, names)


def _html(board: pd.DataFrame, minimal: tuple[analysis.MinimalSetting, ...], layers: tuple[analysis.Stratum, ...], files: dict[str, bytes | str]) -> str:
    """The report as a standalone HTML page: the leaderboard, the minimal settings and the strata as tables
    (every value escaped by pandas), the figures inline."""
    figures = "".join(
        f'<h2>{html.escape(name)}</h2><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        for name, data in files.items()
        if name.endswith(".png") and isinstance(data, bytes)
    )
    shown = board.drop(columns=["audit_name"]).round(4)
    tables = [
        "<h1>Anonymization benchmark</h1><p>Ranked by the upper bound of the worst-case rank-1 re-identification (95% Wilson intervals).</p>",
        shown.to_html(index=False, escape=True, na_rep="-"),
        "<h2>Minimal safe settings</h2>",
        pd.DataFrame([m.__dict__ for m in minimal]).to_html(index=False, escape=True, na_rep="none") if minimal else "<p>No family was swept.</p>",
        "<h2>Worst-case rank-1 by stratum</h2>",
        pd.DataFrame([s.__dict__ for s in layers]).round(4).to_html(index=False, escape=True) if layers else "<p>No stratum.</p>",
    ]
    return f'<!doctype html><html><head><meta charset="utf-8"><title>Anonymization benchmark</title></head><body>{"".join(tables)}{figures}</body></html>\n'
