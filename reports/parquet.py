"""results.parquet: the results table, one row per image x method x attack x recognizer."""

from __future__ import annotations

from pathlib import Path

from redteam.core.atomic import write_atomically
from redteam.core.results import AuditResult
from reports.table import results_frame


def write_parquet(result: AuditResult, out: Path) -> Path:
    frame = results_frame(result)
    return write_atomically(out / "results.parquet", lambda path: frame.to_parquet(path, index=False))
