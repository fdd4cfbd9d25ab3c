"""Mosaic (pixelation) and downsampling of the face region: box-filtered subsampling, then upsampling.

Both share the forward operator A = `deepinv.physics.Downsampling(filter=box, factor=f, padding="valid")`
(the mean of each f x f cell, grid anchored at the region's top-left); mosaic shows A(x) with
nearest-neighbour upsampling, downsample with bicubic upsampling. Cells cut by the region's edge
average what they cover.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image

from redteam.anonymizers.base import Anonymizer, Box, FaceEvidence, FitAxis, FitSpace, FitVariant, Parameter
from redteam.core.geometry import FaceGeometry


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
    operator_kind = "cells"
    reference = "Pixelation/mosaic (McPherson, Shokri and Shmatikov 2016; deface --replacewith mosaic)"
    linear = True
    parameters = (Parameter("block", int, 16, "cell size in pixels", 2, 512),)
    fit_space = FitSpace((FitVariant({}, (FitAxis("block", 2, 128, "int", unit="px"),)),), frozenset({"cells"}))

    @classmethod
    def fit_proposals(cls, variant: FitVariant, evidence: FaceEvidence) -> list[dict[str, Any]] | None:
        """Blocks around the cell width the grid shows (the last cell of a row may be cut short)."""
        if evidence.cells is None:
            return None
        width = evidence.pitch[0] if evidence.pitch is not None else evidence.width / max(1, evidence.cells[0])
        blocks = [round(width), math.floor(width), math.ceil(width), round(width) - 1, round(width) + 1]
        return [{"block": b} for b in dict.fromkeys(max(2, b) for b in blocks)]

    def transform(self, window, region: Box, face: FaceGeometry | None, image, generator) -> np.ndarray:
        block = int(self.values["block"])
        x0, y0, x1, y1 = region
        means = cell_means(window[y0:y1, x0:x1], block)
        out = window.copy()
        out[y0:y1, x0:x1] = np.repeat(np.repeat(means, block, axis=0), block, axis=1)[: y1 - y0, : x1 - x0]
        return out

    def cell_pitch(self, region: Box) -> tuple[float, float]:
        return float(self.values["block"]), float(self.values["block"])

    def physics(self, window_shape: tuple[int, int]):
        return box_downsampling(int(self.values["block"]))


class Downsample(Anonymizer):
    """Downsample the face region by an integer factor (cell means), shown upscaled bicubically.

    References:
        The "low resolution" redaction that face super-resolution attacks target (Hao et al., FG 2020);
        layered newsroom pipelines combine it with compression and noise.
    """

    name = "downsample"
    operator_kind = "cells"
    reference = "Downsampling (area) + bicubic display; Hao et al., FG 2020"
    linear = True
    parameters = (Parameter("factor", int, 8, "downsampling factor", 2, 64),)

    def transform(self, window, region: Box, face: FaceGeometry | None, image, generator) -> np.ndarray:
        factor = int(self.values["factor"])
        x0, y0, x1, y1 = region
        means = cell_means(window[y0:y1, x0:x1], factor).astype(np.float32)
        channels = [np.asarray(Image.fromarray(means[..., c], mode="F").resize((x1 - x0, y1 - y0), Image.Resampling.BICUBIC)) for c in range(3)]
        out = window.copy()
        out[y0:y1, x0:x1] = np.clip(np.stack(channels, axis=2), 0.0, 1.0)
        return out

    def cell_pitch(self, region: Box) -> tuple[float, float]:
        return float(self.values["factor"]), float(self.values["factor"])

    def physics(self, window_shape: tuple[int, int]):
        return box_downsampling(int(self.values["factor"]))


def box_weights(size: int, cells: int) -> np.ndarray:
    """cells x size matrix: cell j averages pixels [j * size / cells, (j + 1) * size / cells), the
    fractional pixels at its edges by their covered share (area resampling, as OpenCV's INTER_AREA)."""
    scale = size / cells
    weights = np.zeros((cells, size))
    for cell in range(cells):
        low, high = cell * scale, (cell + 1) * scale
        for pixel in range(int(np.floor(low)), min(size, int(np.ceil(high)))):
            weights[cell, pixel] = min(high, pixel + 1) - max(low, pixel)
    return weights / weights.sum(axis=1, keepdims=True)


def pixel_cells(size: int, pitch: float) -> int:
    return max(1, int(round(size / pitch)))


class Pixelate(Anonymizer):
    """Resize the face region down to cells of about `pitch` pixels (area means) and back up (nearest).

    The mosaic of resize-based tools (OpenCV/Pillow "pixelate"): the region holds round(size / pitch)
    cells per axis, so cells are a fractional number of pixels wide (a 200 px face at pitch 12 has 17
    cells of 11.76 px). Operator: the separable cell-mean matrix (a deepinv LinearPhysics).

    References:
        McPherson, Shokri and Shmatikov, "Defeating Image Obfuscation with Deep Learning", 2016;
        OpenCV `resize(..., INTER_AREA)` then `INTER_NEAREST`.
    """

    name = "pixelate"
    operator_kind = "cells"
    reference = "Resize-based mosaic: area means over round(size/pitch) cells, nearest display (OpenCV INTER_AREA / INTER_NEAREST)"
    linear = True
    parameters = (Parameter("pitch", float, 16.0, "cell size in pixels; the region holds round(size / pitch) cells per axis", 2.0, 512.0),)
    fit_space = FitSpace((FitVariant({}, (FitAxis("pitch", 3.0, 80.0, "log", unit="px"),)),), frozenset({"cells"}))

    @classmethod
    def fit_proposals(cls, variant: FitVariant, evidence: FaceEvidence) -> list[dict[str, Any]] | None:
        """Pitches that put round(size / pitch) = the counts the grid shows (or one more or less)."""
        if evidence.cells is None:
            return None
        proposals = []
        for d in (0, -1, 1):
            columns, rows = evidence.cells[0] + d, evidence.cells[1] + d
            lows = [evidence.width / (columns + 0.5), evidence.height / (rows + 0.5)]
            highs = [evidence.width / max(0.5, columns - 0.5), evidence.height / max(0.5, rows - 0.5)]
            low, high = max(lows), min(highs)
            if columns >= 1 and rows >= 1 and low < high and low >= 2.0:
                proposals.append({"pitch": round((low + high) / 2, 2)})
            elif columns >= 1 and evidence.width / columns >= 2.0:
                proposals.append({"pitch": round(evidence.width / columns, 2)})
        return proposals

    def transform(self, window, region: Box, face: FaceGeometry | None, image, generator) -> np.ndarray:
        x0, y0, x1, y1 = region
        width, height = x1 - x0, y1 - y0
        pitch = float(self.values["pitch"])
        rows, columns = box_weights(height, pixel_cells(height, pitch)), box_weights(width, pixel_cells(width, pitch))
        means = np.einsum("rxc,kx->rkc", np.einsum("ry,yxc->rxc", rows, window[y0:y1, x0:x1], optimize=True), columns, optimize=True)
        row_of = np.minimum((np.arange(height) + 0.5) * rows.shape[0] // height, rows.shape[0] - 1).astype(int)
        column_of = np.minimum((np.arange(width) + 0.5) * columns.shape[0] // width, columns.shape[0] - 1).astype(int)
        out = window.copy()
        out[y0:y1, x0:x1] = means[row_of][:, column_of]
        return out

    def cell_pitch(self, region: Box) -> tuple[float, float]:
        width, height = region[2] - region[0], region[3] - region[1]
        pitch = float(self.values["pitch"])
        return width / pixel_cells(width, pitch), height / pixel_cells(height, pitch)

    def physics(self, window_shape: tuple[int, int]):
        """The cell means of an h x w region as a deepinv LinearPhysics (y: rows x columns cells)."""
        from deepinv.physics import LinearPhysics

        height, width = window_shape
        pitch = float(self.values["pitch"])
        rows = torch.from_numpy(box_weights(height, pixel_cells(height, pitch))).float()
        columns = torch.from_numpy(box_weights(width, pixel_cells(width, pitch))).float()
        return LinearPhysics(
            A=lambda x, **_: torch.einsum("ry,ncyx,kx->ncrk", rows.to(x.device), x, columns.to(x.device)),
            A_adjoint=lambda y, **_: torch.einsum("ry,ncrk,kx->ncyx", rows.to(y.device), y, columns.to(y.device)),
        )
