"""The report's distance figure: one panel per attack and recognizer, with the unrelated-people baseline."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from PIL import Image

from reports.plots import GRID_COLUMNS, distance_histograms


def frame(attacks: list[str], recognizers: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        {"method": "m $\\frac$ [bold]", "attack": a, "recognizer": r, "distance": float(d), "threshold": 0.6, "verify": bool(d < 0.6)}
        for a in attacks
        for r in recognizers
        for d in rng.uniform(0.2, 0.9, 12)
    ]
    return pd.DataFrame(rows)


def test_one_panel_per_attack_in_a_grid_with_a_baseline() -> None:
    few = Image.open(io.BytesIO(distance_histograms(frame(["none", "bicubic"], ["dlib"]), "m $\\frac$ [bold]", {"dlib": (0.7, 0.8, 0.9)})))
    many = Image.open(io.BytesIO(distance_histograms(frame([f"a{i}" for i in range(7)], ["dlib", "facenet"]), "m $\\frac$ [bold]", {})))
    assert few.width < many.width  # panels side by side, not overlaid series
    rows_of_many = 2 * -(-7 // GRID_COLUMNS)
    assert many.height > 1.5 * few.height * (rows_of_many / 2)  # a row of panels per recognizer and per line of attacks
