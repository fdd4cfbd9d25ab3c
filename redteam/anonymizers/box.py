"""Solid box over the face region."""

from __future__ import annotations

import numpy as np
import torch

from redteam.anonymizers.base import Anonymizer, Parameter

COLOURS = {"black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128)}


class SolidBox(Anonymizer):
    """Fill each face region with one solid colour: no pixel of the face survives.

    References:
        The "solid block" recommended in newsroom and human-rights redaction guidance (e.g. WITNESS,
        "Visual Anonymity and YouTube's New Blur Faces Tool", 2012).
    """

    name = "box"
    reference = "Solid box (WITNESS guidance; deface --replacewith solid)"
    parameters = (
        Parameter("color", str, "black", "fill colour", choices=tuple(COLOURS)),
        Parameter("margin", float, 0.5, "grow each face box by this fraction on every side (0.5 covers the head)", 0.0, 3.0),
    )

    def apply_region(
        self, pixels: np.ndarray, region: tuple[int, int, int, int], generator: torch.Generator | None
    ) -> np.ndarray:
        x0, y0, x1, y1 = region
        out = pixels.copy()
        out[y0:y1, x0:x1] = np.array(COLOURS[str(self.values["color"])], dtype=np.uint8)
        return out
