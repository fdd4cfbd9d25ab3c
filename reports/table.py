"""The one results table (pandas) and the verdict table derived from the AuditResult."""

from __future__ import annotations

import math
from dataclasses import fields

import pandas as pd

from redteam.core.results import AuditResult

#: Columns that measure the machine, not the audit: left out when two runs are compared for equality.
TIMING_COLUMNS = ("attack_seconds",)


def reproducible_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The results table without its wall-clock columns: identical for the same inputs, seed and models."""
    return frame.drop(columns=[c for c in TIMING_COLUMNS if c in frame.columns])


def results_frame(result: AuditResult) -> pd.DataFrame:
    """One row per image x face x method x attack x recognizer, in a stable order."""
    records = []
    names = [f.name for f in fields(result.rows[0])] if result.rows else []
    for row in result.rows:
        record = {name: getattr(row, name) for name in names}  # rows hold no nested dataclass: no deep copy (asdict)
        record.update(dict(record.pop("quality")))  # one column per image-quality metric (metrics.columns)
        records.append(record)
    frame = pd.DataFrame(records)
    if frame.empty:
        return frame
    for column in result.quality_columns:  # always present, empty where not computed
        if column not in frame:
            frame[column] = None
    order = ["method", "tier", "attack", "recognizer", "image", "face_index"]
    return frame.sort_values(order, kind="mergesort").reset_index(drop=True)


def verdict_frame(result: AuditResult) -> pd.DataFrame:
    """One row per method x tier x attack x recognizer x metric: rate, interval, chance, verdict."""
    records = []
    for v in result.metric_verdicts:
        records.append(
            {
                "method": v.method,
                "tier": v.tier,
                "attack": v.attack,
                "recognizer": v.recognizer,
                "metric": v.metric,
                "n": v.estimate.trials,
                "successes": v.estimate.successes,
                "rate": v.estimate.rate,
                "ci_low": v.estimate.low,
                "ci_high": v.estimate.high,
                "chance": None if math.isnan(v.chance) else v.chance,
                "limit": None if math.isnan(v.limit) else v.limit,
                "verdict": v.verdict.value,
                "reason": v.reason,
                "degenerate_probes": v.degenerate,
                "distractors_needed": v.distractors_needed,
            }
        )
    frame = pd.DataFrame(records)
    if frame.empty:
        return frame
    order = {m.name: i for i, m in enumerate(result.methods)}
    frame["_order"] = frame["method"].map(order)
    return frame.sort_values(["_order", "tier", "attack", "recognizer", "metric"], kind="mergesort").drop(columns="_order").reset_index(drop=True)


def format_rate(successes: int, trials: int, low: float, high: float) -> str:
    if trials == 0:
        return "n/a (n=0)"
    return f"{successes / trials:.0%} ({successes}/{trials}) [{low:.0%}, {high:.0%}]"


def format_limit(limit: float | None) -> str:
    """A policy limit as a percentage; "none" for a tier the policy sets no limits for."""
    return "none" if limit is None or (isinstance(limit, float) and math.isnan(limit)) else f"{float(limit):.0%}"
