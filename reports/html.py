"""report.html: self-contained (example faces inlined as data URIs, histograms as inline SVG)."""

from __future__ import annotations

from pathlib import Path

from redteam.core.atomic import write_text_atomically
from redteam.core.results import AuditResult
from reports.templating import render
from reports.view import build_view


def write_html(result: AuditResult, out: Path) -> Path:
    return write_text_atomically(out / "report.html", render("report.html.j2", build_view(result, figures=True)))
