"""Gaussian blur of the face region."""

from __future__ import annotations

import numpy as np
import torch
from skimage.filters import gaussian

from redteam.anonymizers.base import MARGIN, Anonymizer, Parameter


class GaussianBlur(Anonymizer):
    """Gaussian blur of each face region (sigma in pixels), computed with the surrounding context.

    References:
        The most common newsroom redaction. McPherson, Shokri and Shmatikov, "Defeating Image
        Obfuscation with Deep Learning", 2016, and Hao et al., FG 2020, show recognizers see through it.
    """

    name = "gaussian_blur"
    reference = "Gaussian blur (as in OpenCV GaussianBlur / GIMP); McPherson, Shokri and Shmatikov 2016"
    parameters = (
        Parameter("sigma", float, 6.0, "standard deviation of the Gaussian kernel in pixels", 0.1, 200.0),
        MARGIN,
    )

    def apply_region(
        self, pixels: np.ndarray, region: tuple[int, int, int, int], generator: torch.Generator | None
    ) -> np.ndarray:
        x0, y0, x1, y1 = region
        sigma = float(self.values["sigma"])
        pad = int(np.ceil(4 * sigma))
        height, width = pixels.shape[:2]
        cx0, cy0, cx1, cy1 = max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)
        window = pixels[cy0:cy1, cx0:cx1].astype(np.float64) / 255.0
        blurred = gaussian(window, sigma=sigma, channel_axis=2, mode="nearest", truncate=4.0, preserve_range=True)
        out = pixels.copy()
        inner = blurred[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]
        out[y0:y1, x0:x1] = np.clip(np.round(inner * 255.0), 0, 255).astype(np.uint8)
        return out
