"""report.md: the verdict table, rates with intervals and chance, reasons, issues."""

from __future__ import annotations

from pathlib import Path

from redteam.core.atomic import write_text_atomically
from redteam.core.results import AuditResult
from reports.templating import render
from reports.view import build_view


def write_markdown(result: AuditResult, out: Path) -> Path:
    return write_text_atomically(out / "report.md", render("report.md.j2", build_view(result, figures=False)))
