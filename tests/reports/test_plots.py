"""The report's distance figure: one panel per attack and recognizer, with the unrelated-people baseline,
drawn as inline SVG whose text is the user's names, escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd

from reports.plots import GRID_COLUMNS, PANEL_HEIGHT, PANEL_WIDTH, TITLE_LINE, distance_figure
from reports.templating import render

HOSTILE = "m $\\frac$ <b>[bold]</b> & 'x'"


def frame(attacks: list[str], recognizers: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        {"method": HOSTILE, "attack": a, "recognizer": r, "distance": float(d), "threshold": 0.6, "verify": bool(d < 0.6)}
        for a in attacks
        for r in recognizers
        for d in rng.uniform(0.2, 0.9, 12)
    ]
    return pd.DataFrame(rows)


def svg(figure) -> ET.Element:
    return ET.fromstring(render("distance_figure.html.j2", {"figure": figure}))


def test_one_panel_per_attack_in_a_grid_with_a_baseline() -> None:
    few = distance_figure(frame(["none", "bicubic"], ["dlib"]), HOSTILE, {"dlib": (0.7, 0.8, 0.9)})
    many = distance_figure(frame([f"a{i}" for i in range(7)], ["dlib", "facenet"]), HOSTILE, {})
    assert len(few.panels) == 2 and len(many.panels) == 14
    assert few.width == 2 * PANEL_WIDTH and many.width == GRID_COLUMNS * PANEL_WIDTH  # panels side by side, not overlaid series
    rows_of_many = 2 * -(-7 // GRID_COLUMNS)  # a row of panels per recognizer and per line of attacks
    assert many.height == 8 + TITLE_LINE * len(many.title) + PANEL_HEIGHT * rows_of_many
    assert few.height == 8 + TITLE_LINE * len(few.title) + PANEL_HEIGHT and len(few.title) > len(many.title)  # a narrow grid wraps its title
    assert all(panel.baseline for panel in few.panels) and not any(panel.baseline for panel in many.panels)
    first = few.panels[0]
    assert first.title == f"none / dlib: {sum(d < 0.6 for d in frame(['none'], ['dlib'])['distance'])}/12 verified"
    assert first.legend == ("faces (n=12)", "unrelated people (n=3)")
    x0, y0, x1, y1 = first.plot
    assert all(x0 <= x and x + w <= x1 + 0.2 and y0 - 0.2 <= y and y + h <= y1 + 0.2 for x, y, w, h in first.bars)
    assert x0 < first.threshold_x < x1


def test_the_bars_are_a_density_of_the_distances() -> None:
    distances = [0.1, 0.1, 0.1, 0.5]
    data = pd.DataFrame({"method": "m", "attack": "none", "recognizer": "dlib", "distance": distances, "threshold": 0.6, "verify": True})
    panel = distance_figure(data, "m").panels[0]
    heights = sorted((h for _, _, _, h in panel.bars), reverse=True)
    assert len(heights) == 2 and heights[0] == panel.plot[3] - panel.plot[1]  # the tallest bar fills the plot
    assert abs(heights[1] / heights[0] - 1 / 3) < 0.01  # three faces in one bin, one in another


def test_the_svg_is_well_formed_and_shows_names_as_text() -> None:
    figure = distance_figure(frame(["none", "<script>alert(1)</script>"], ["dlib"]), HOSTILE, {"dlib": (0.7,)})
    root = svg(figure)
    texts = ["".join(node.itertext()) for node in root.iter("text")]
    assert root.get("aria-label") == f"distance histogram for {HOSTILE}"
    assert any(HOSTILE in text for text in texts)
    assert any(text.startswith("<script>alert(1)</script> / dlib") for text in texts)
    assert not list(root.iter("script")) and not list(root.iter("b"))  # names never become elements
