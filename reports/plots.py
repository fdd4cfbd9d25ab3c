"""Figures for the HTML report (matplotlib, Agg backend, PNG bytes)."""

from __future__ import annotations

import io
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

#: Panels per row of the grid (one panel per attack).
GRID_COLUMNS = 4


def distance_histograms(frame: pd.DataFrame, method: str, baseline: dict[str, tuple[float, ...]] | None = None) -> bytes:
    """A grid of small panels, one per attack (a row per recognizer): the distance of each attacked face
    to its own original, against the distances between unrelated people (`baseline`, grey outline) and
    the recognizer's verification threshold (left of the dashed line: verified as the same person). An
    attack whose faces sit where unrelated people sit has removed the identity; one whose faces sit left
    of the line has brought it back.

    Labels are the user's names, drawn as plain text (no mathtext: a name like `$\\frac$` is not parsed)."""
    with plt.rc_context({"text.parse_math": False}):
        return _distance_histograms(frame, method, baseline or {})


def _distance_histograms(frame: pd.DataFrame, method: str, baseline: dict[str, tuple[float, ...]]) -> bytes:
    rows = frame[(frame["method"] == method) & frame["verify"].notna()]
    recognizers = sorted(rows["recognizer"].unique()) or ["-"]
    attacks = sorted(rows["attack"].unique(), key=lambda a: (a != "none", a)) or ["-"]
    columns = min(GRID_COLUMNS, len(attacks))
    per_recognizer = -(-len(attacks) // columns)
    figure, axes = plt.subplots(per_recognizer * len(recognizers), columns, figsize=(2.6 * columns, 2.1 * per_recognizer * len(recognizers)), squeeze=False)
    for axis in axes.flat:
        axis.set_visible(False)
    for r, recognizer in enumerate(recognizers):
        mine = rows[rows["recognizer"] == recognizer]
        if mine.empty:
            continue
        threshold = float(mine["threshold"].iloc[0])
        unrelated = np.asarray(baseline.get(recognizer, ()), dtype=float)
        high = max(float(mine["distance"].max()), threshold, float(unrelated.max()) if unrelated.size else 0.0) * 1.05
        bins = np.linspace(0.0, high, 25)
        for index, attack in enumerate(attacks):
            axis = axes[r * per_recognizer + index // columns][index % columns]
            axis.set_visible(True)
            group = mine[mine["attack"] == attack]
            if unrelated.size:  # histograms as one step artist each (stairs), not a patch per bar: a quarter of the drawing time
                axis.stairs(np.histogram(unrelated, bins=bins, density=True)[0], bins, color="grey", label=f"unrelated people (n={unrelated.size})")
            counts = np.histogram(group["distance"].to_numpy(dtype=float), bins=bins, density=len(group) > 0)[0]
            axis.stairs(counts, bins, fill=True, alpha=0.7, color="tab:blue", label=f"faces (n={len(group)})")
            axis.axvline(threshold, color="crimson", linestyle="--", linewidth=1)
            verified = int((group["distance"] < threshold).sum())
            axis.set_title(f"{attack} / {recognizer}: {verified}/{len(group)} verified", fontsize=8)
            axis.tick_params(labelsize=6)
            axis.set_yticks([])
            if index // columns == per_recognizer - 1 or index + columns >= len(attacks):
                axis.set_xlabel("distance to own original", fontsize=7)
        axes[r * per_recognizer][0].legend(fontsize=6, loc="upper left", framealpha=0.6)
    title = f"{method}: each attacked face's distance to its own original (left of the dashed line: verified)"
    lines = textwrap.wrap(title, width=int(2.6 * columns * 16)) or [""]  # about 16 characters per inch at 8 pt
    # Fixed margins in inches rather than tight_layout, which measures every text of the figure again (a third of its cost).
    height = 2.1 * per_recognizer * len(recognizers)
    figure.suptitle("\n".join(lines), fontsize=8, y=1 - 0.06 / height, va="top")
    top = (0.36 + 0.14 * len(lines)) / height
    figure.subplots_adjust(left=0.04, right=0.98, top=1 - top, bottom=0.45 / height, hspace=0.55, wspace=0.12)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
