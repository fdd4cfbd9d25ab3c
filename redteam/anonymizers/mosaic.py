"""Mosaic (pixelation) of the face region."""

from __future__ import annotations

import numpy as np
import torch

from redteam.anonymizers.base import MARGIN, Anonymizer, Parameter


class Mosaic(Anonymizer):
    """Replace each block x block cell of the face region by its mean colour.

    The grid starts at the region's top-left corner; cells cut by the region's edge average what they
    cover. This is area downsampling followed by nearest-neighbour upsampling.

    References:
        McPherson, Shokri and Shmatikov, "Defeating Image Obfuscation with Deep Learning", 2016.
    """

    name = "mosaic"
    reference = "Pixelation/mosaic (McPherson, Shokri and Shmatikov 2016; deface --replacewith mosaic)"
    parameters = (
        Parameter("block", int, 16, "cell size in pixels", 2, 512),
        MARGIN,
    )

    def apply_region(
        self, pixels: np.ndarray, region: tuple[int, int, int, int], generator: torch.Generator | None
    ) -> np.ndarray:
        x0, y0, x1, y1 = region
        block = int(self.values["block"])
        out = pixels.copy()
        area = pixels[y0:y1, x0:x1].astype(np.float64)
        for top in range(0, y1 - y0, block):
            for left in range(0, x1 - x0, block):
                cell = area[top : top + block, left : left + block]
                mean = np.round(cell.reshape(-1, 3).mean(axis=0))
                out[y0 + top : y0 + top + cell.shape[0], x0 + left : x0 + left + cell.shape[1]] = mean.astype(np.uint8)
        return out
