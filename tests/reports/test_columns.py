"""A new per-row metric is one class: registered in `metrics.columns.QUALITY_COLUMNS`, it is computed for
every probe and appears, under its heading, in the results table, summary.json, report.html and report.md
without an edit anywhere else (README, "Metrics")."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from metrics.columns import QUALITY_COLUMNS, QualityColumn
from redteam.core.config import AuditConfig, MethodSource
from redteam.engine import AuditRun
from reports import write_reports


class BrightnessGap(QualityColumn):
    """A toy column: the mean absolute brightness difference of the face crops, in grey levels."""

    name = "brightness_gap"
    heading = "Brightness gap"
    summary = "mean |attacked - original| brightness of the face crop"

    def __call__(self, attacked: np.ndarray, original: np.ndarray) -> np.ndarray:
        return np.abs(attacked.astype(np.float64).mean(axis=(1, 2, 3)) - original.astype(np.float64).mean(axis=(1, 2, 3)))


def test_a_toy_column_reaches_every_report(sample_dir, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(QUALITY_COLUMNS, BrightnessGap.name, BrightnessGap)
    config = AuditConfig(
        originals=sample_dir,
        out=tmp_path / "report",
        methods=(MethodSource("box", "reference", spec="box:color=white,margin=0.2"),),
        cache_dir=tmp_path / "cache",
        recognizers=("dlib",),
        attacks=("none",),
        builtin_policy="demo_policy.toml",
    )
    result = AuditRun(config).run()
    values = [dict(row.quality)["brightness_gap"] for row in result.rows]
    assert values and all(value is not None and value > 20 for value in values)  # a white box is far brighter than a face
    written = write_reports(result, tmp_path / "out")
    table = pd.read_parquet(written["parquet"])
    assert "brightness_gap" in table.columns and table["brightness_gap"].notna().all()
    summary = json.loads(written["json"].read_text())
    assert "brightness_gap" in json.dumps(summary)
    mean = f"{np.mean(values):.3f}"
    for kind in ("html", "markdown"):
        text = written[kind].read_text()
        assert "Brightness gap" in text and mean in text, kind
