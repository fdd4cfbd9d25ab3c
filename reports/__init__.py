"""Report writers. Each format is one writer over the same AuditResult and results table.

The reports of a run are all-or-nothing: every writer writes into a staging folder inside the output
folder, and only when all of them (and whatever the caller adds, such as the log) succeeded do the files
replace their namesakes in the output folder. A writer that fails leaves the output folder as it was, so a
summary.json never stands without the report.md, results.parquet or run record it goes with.
"""

from __future__ import annotations

import os
import shutil
import tempfile
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

#: Prefix of the staging folder inside the output folder (removed whatever happens).
STAGING_PREFIX = ".redteam-reports-"


class ReportStage:
    """The reports of one run, written into a hidden staging folder of `out`, then published together.

    Use: `stage.write(result)`, `stage.add(name, writer)` for further files (the log), then
    `stage.publish()`; on any error call `stage.discard()`: `out` is left as it was (and removed if
    this stage created it and it is still empty).

    Attributes:
        folder: the staging folder (None until `write`).
        paths: format -> path of each staged file (after `publish`: its path in `out`).
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.folder: Path | None = None
        self.paths: dict[str, Path] = {}
        self._created = False

    def write(self, result: AuditResult) -> dict[str, Path]:
        """Write every report format into the staging folder; returns format -> staged path."""
        self._created = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.out))
        for name, writer in WRITERS.items():
            self.paths[name] = writer(result, self.folder)
        return dict(self.paths)

    def add(self, name: str, write: Callable[[Path], Path]) -> Path:
        """Stage one more file: `write(folder)` writes it into the staging folder and returns its path."""
        if self.folder is None:
            raise RuntimeError("nothing staged: call write() first")
        self.paths[name] = write(self.folder)
        return self.paths[name]

    def publish(self) -> dict[str, Path]:
        """Move every staged file into `out` (each replacing its namesake) and remove the staging folder;
        returns format -> final path."""
        if self.folder is None:
            raise RuntimeError("nothing staged: call write() first")
        published = {}
        for name, staged in self.paths.items():
            target = self.out / staged.name
            os.replace(staged, target)
            published[name] = target
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder, self.paths = None, published
        return dict(published)

    def discard(self) -> None:
        """Remove everything staged; `out` keeps what it held before (and goes if this stage made it empty)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        if self._created:
            try:
                self.out.rmdir()
            except OSError:  # not empty (it holds something else now) or already gone
                pass


def write_reports(result: AuditResult, out: Path) -> dict[str, Path]:
    """Write every report format into `out`, all or none (`ReportStage`); returns format -> path."""
    stage = ReportStage(out)
    try:
        stage.write(result)
        return stage.publish()
    except BaseException:
        stage.discard()
        raise
