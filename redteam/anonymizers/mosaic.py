"""Mosaic (pixelation) and downsampling of the face region: box-filtered subsampling, then upsampling.

Both share the forward operator A = `deepinv.physics.Downsampling(filter=box, factor=f, padding="valid")`
(the mean of each f x f cell, grid anchored at the region's top-left); mosaic shows A(x) with
nearest-neighbour upsampling, downsample with bicubic upsampling. Cells cut by the region's edge
average what they cover.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from redteam.anonymizers.base import Anonymizer, Box, Parameter
from redteam.faces import FaceGeometry


def cell_means(area: np.ndarray, block: int) -> np.ndarray:
    """Mean of each block x block cell (partial cells at the right and bottom edges included)."""
    height, width = area.shape[:2]
    rows, cols = -(-height // block), -(-width // block)
    padded = np.zeros((rows * block, cols * block, area.shape[2]), dtype=np.float64)
    counts = np.zeros((rows * block, cols * block, 1), dtype=np.float64)
    padded[:height, :width] = area
    counts[:height, :width] = 1.0
    sums = padded.reshape(rows, block, cols, block, -1).sum(axis=(1, 3))
    number = counts.reshape(rows, block, cols, block, 1).sum(axis=(1, 3))
    return sums / number


def box_downsampling(block: int):
    from deepinv.physics import Downsampling

    box = torch.full((1, 1, block, block), 1.0 / (block * block))
    return Downsampling(filter=box, factor=block, padding="valid")


class Mosaic(Anonymizer):
    """Replace each block x block cell of the face region by its mean colour (pixelation).

    References:
        McPherson, Shokri and Shmatikov, "Defeating Image Obfuscation with Deep Learning", 2016;
        deface ``--replacewith mosaic``.
    """

    name = "mosaic"
    reference = "Pixelation/mosaic (McPherson, Shokri and Shmatikov 2016; deface --replacewith mosaic)"
    linear = True
    parameters = (Parameter("block", int, 16, "cell size in pixels", 2, 512),)

    def transform(self, window, region: Box, face: FaceGeometry | None, image, generator) -> np.ndarray:
        block = int(self.values["block"])
        x0, y0, x1, y1 = region
        means = cell_means(window[y0:y1, x0:x1], block)
        out = window.copy()
        out[y0:y1, x0:x1] = np.repeat(np.repeat(means, block, axis=0), block, axis=1)[: y1 - y0, : x1 - x0]
        return out

    def physics(self, window_shape: tuple[int, int]):
        return box_downsampling(int(self.values["block"]))


class Downsample(Anonymizer):
    """Downsample the face region by an integer factor (cell means), shown upscaled bicubically.

    References:
        The "low resolution" redaction that face super-resolution attacks target (Hao et al., FG 2020);
        layered newsroom pipelines combine it with compression and noise.
    """

    name = "downsample"
    reference = "Downsampling (area) + bicubic display; Hao et al., FG 2020"
    linear = True
    parameters = (Parameter("factor", int, 8, "downsampling factor", 2, 64),)

    def transform(self, window, region: Box, face: FaceGeometry | None, image, generator) -> np.ndarray:
        factor = int(self.values["factor"])
        x0, y0, x1, y1 = region
        means = cell_means(window[y0:y1, x0:x1], factor).astype(np.float32)
        channels = [
            np.asarray(Image.fromarray(means[..., c], mode="F").resize((x1 - x0, y1 - y0), Image.BICUBIC)) for c in range(3)
        ]
        out = window.copy()
        out[y0:y1, x0:x1] = np.clip(np.stack(channels, axis=2), 0.0, 1.0)
        return out

    def physics(self, window_shape: tuple[int, int]):
        return box_downsampling(int(self.values["factor"]))
