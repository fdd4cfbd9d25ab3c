"""Interpolation upscaling of mosaic and downsampled faces: recover the cell grid, then resample it.

The grid (cell size and phase) comes from the declared method when it is known, and is otherwise
estimated blindly from the runs of identical pixels a mosaic leaves.

References:
    McPherson, Shokri and Shmatikov, "Defeating Image Obfuscation with Deep Learning", 2016; Keys,
    "Cubic convolution interpolation for digital image processing", IEEE TASSP 1981 (bicubic);
    Duchon, "Lanczos filtering in one and two dimensions", J. Appl. Meteorology 1979.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from attacks.base import Attack, MethodInfo, ThreatTier


def changes_profile(window: np.ndarray, axis: int) -> np.ndarray:
    """Share of pixels that differ from their next neighbour, per column gap (axis=1) or row gap (axis=0)."""
    changes = ~np.all(np.diff(window.astype(np.int16), axis=axis) == 0, axis=2)
    return changes.mean(axis=0) if axis == 1 else changes.mean(axis=1)


def _periodicity(profile: np.ndarray, largest: int) -> tuple[int, int, float]:
    """The (period, phase) whose positions change most often compared with all others."""
    best = (0, 0, 0.0)
    for cell in range(2, min(largest, len(profile) // 2) + 1):
        for phase in range(cell):
            on = np.zeros(len(profile), dtype=bool)
            on[phase::cell] = True
            if on.all() or not on.any():
                continue
            score = float(profile[on].mean() - profile[~on].mean())
            if score > best[2] + 1e-9:
                best = (cell, phase, score)
    return best


def estimate_grid(window: np.ndarray, largest: int = 48, min_score: float = 0.3) -> tuple[int, int, int] | None:
    """Blind estimate of a mosaic's (cell, first column, first row) of its grid, or None if no grid shows.

    Inside a mosaic, neighbouring pixels differ only across cell boundaries, which recur every `cell`
    pixels; elsewhere they differ almost everywhere.
    """
    cell, phase_x, score = _periodicity(changes_profile(window, axis=1), largest)
    if cell < 2 or score < min_score:
        return None
    rows = changes_profile(window, axis=0)
    phase_y = int(np.argmax([rows[p::cell].mean() if len(rows[p::cell]) else 0.0 for p in range(cell)]))
    return cell, (phase_x + 1) % cell, (phase_y + 1) % cell


class _Interpolation(Attack):
    tier = ThreatTier.RECONSTRUCTION
    resample: ClassVar[int]
    targets = ("mosaic", "downsample")

    def applicable(self, method: MethodInfo) -> tuple[bool, str]:
        if method.is_known and method.stage(*self.targets) is None:
            return False, f"'{method.name}' has no mosaic or downsampling stage"
        return True, ""

    def _grid(self, window: np.ndarray, method: MethodInfo) -> tuple[int, int, int, tuple[int, int, int, int]]:
        height, width = window.shape[:2]
        stage = method.stage(*self.targets)
        region = method.region_of(stage) if stage is not None else None
        if stage is not None and region is not None:
            cell = int(stage.values.get("block", stage.values.get("factor")))
            x0, y0, x1, y1 = region
            return cell, x0, y0, (max(0, x0), max(0, y0), min(width, x1), min(height, y1))
        estimate = estimate_grid(np.round(window * 255).astype(np.uint8))
        if estimate is None:
            return 0, 0, 0, (0, 0, width, height)
        cell, px, py = estimate
        return cell, px % cell, py % cell, (0, 0, width, height)

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        out = images.clone()
        for index, image in enumerate(images):
            window = image.permute(1, 2, 0).double().numpy()
            cell, px, py, (x0, y0, x1, y1) = self._grid(window, method)
            if cell < 2:
                continue  # no grid found: nothing to undo
            left, top = x0 + (px - x0) % cell, y0 + (py - y0) % cell
            cols, rows = (x1 - left) // cell, (y1 - top) // cell
            if cols < 2 or rows < 2:
                continue
            area = window[top : top + rows * cell, left : left + cols * cell]
            cells = area.reshape(rows, cell, cols, cell, 3).mean(axis=(1, 3)).astype(np.float32)
            channels = [
                np.asarray(Image.fromarray(cells[..., c], mode="F").resize((cols * cell, rows * cell), self.resample))
                for c in range(3)
            ]
            restored = np.clip(np.stack(channels, axis=2), 0.0, 1.0)
            out[index, :, top : top + rows * cell, left : left + cols * cell] = torch.from_numpy(restored).permute(2, 0, 1).float()
        return out


class BicubicUpscale(_Interpolation):
    """Resample the mosaic's cell grid bicubically (grid from the declared method, or estimated blindly).

    References:
        Keys, IEEE TASSP 1981; McPherson, Shokri and Shmatikov 2016 (interpolation beats pixelation).
    """

    name = "bicubic"
    resample = Image.BICUBIC


class LanczosUpscale(_Interpolation):
    """Resample the mosaic's cell grid with a Lanczos filter (grid declared or estimated blindly).

    References:
        Duchon, J. Appl. Meteorology 1979; McPherson, Shokri and Shmatikov 2016.
    """

    name = "lanczos"
    resample = Image.LANCZOS
