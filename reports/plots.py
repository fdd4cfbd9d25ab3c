"""Figures for the HTML report (matplotlib, Agg backend, PNG bytes)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image


def distance_histograms(frame: pd.DataFrame, method: str) -> bytes:
    """One panel per recognizer: distance of each attacked face to its own original, per attack,
    with the recognizer's verification threshold (left of the line = verified as the same person).

    Labels are the user's names, drawn as plain text (no mathtext: a name like `$\\frac$` is not parsed)."""
    with plt.rc_context({"text.parse_math": False}):
        return _distance_histograms(frame, method)


def _distance_histograms(frame: pd.DataFrame, method: str) -> bytes:
    rows = frame[(frame["method"] == method) & frame["verify"].notna()]
    recognizers = sorted(rows["recognizer"].unique())
    figure, axes = plt.subplots(1, max(1, len(recognizers)), figsize=(4.2 * max(1, len(recognizers)), 3.0), squeeze=False)
    for axis, recognizer in zip(axes[0], recognizers, strict=False):
        mine = rows[rows["recognizer"] == recognizer]
        threshold = float(mine["threshold"].iloc[0])
        high = max(float(mine["distance"].max()), threshold) * 1.1
        bins = np.linspace(0.0, high, 21)
        for attack, group in mine.groupby("attack"):
            axis.hist(group["distance"], bins=bins, alpha=0.6, label=f"{attack} (n={len(group)})")
        axis.axvline(threshold, color="crimson", linestyle="--", label=f"threshold {threshold:g}")
        axis.set_title(f"{method} / {recognizer}", fontsize=9)
        axis.set_xlabel("distance to own original (left of line: verified)", fontsize=8)
        axis.set_ylabel("faces", fontsize=8)
        axis.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
