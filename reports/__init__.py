"""Report writers. Each format is one writer over the same AuditResult and results table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from redteam.core.results import AuditResult
from reports.html import write_html
from reports.json_summary import write_summary
from reports.junit import write_junit
from reports.markdown import write_markdown
from reports.parquet import write_parquet
from reports.sarif import write_sarif

WRITERS: dict[str, Callable[[AuditResult, Path], Path]] = {
    "parquet": write_parquet,
    "json": write_summary,
    "markdown": write_markdown,
    "html": write_html,
    "junit": write_junit,
    "sarif": write_sarif,
}


def write_reports(result: AuditResult, out: Path) -> dict[str, Path]:
    """Write every report format into `out` (each file atomically); returns format -> path."""
    out.mkdir(parents=True, exist_ok=True)
    return {name: writer(result, out) for name, writer in WRITERS.items()}
