"""Attacks that use many frames of one track.

- **Frame averaging**: the recognizer's aligned chips of a track's redacted frames, each aligned on the
  original's landmarks in its own frame, averaged. Noise, codec artefacts and a redaction that differs from
  frame to frame average out; what the frames share (the face) stays.
- **Multi-frame super-resolution of a moving mosaic**: a mosaic whose grid is fixed to the frame while the
  face moves samples the face at a different phase in every frame: each frame is a different set of block
  means of the same face. The face is recovered by regularised least squares over all frames at once,
  with the identified grid (block size and phase, `estimate_grid`) and the frames registered by the
  face's position on the original (translation), as in classical multi-frame super-resolution (Farsiu,
  Robinson, Elad and Milanfar, "Fast and Robust Multiframe Super Resolution", IEEE TIP 2004; here with a
  quadratic smoothness prior instead of bilateral TV).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: A grid is identified when its block boundaries change the image this many times more than the inside.
MIN_GRID_CONTRAST = 2.5
#: Block sizes searched (pixels).
GRID_BLOCKS = range(4, 65)


@dataclass(frozen=True)
class Grid:
    """A mosaic's block grid in frame coordinates: cells start at phase + k * block."""

    block: int
    phase_x: int
    phase_y: int
    contrast: float

    def describe(self) -> str:
        return f"mosaic block {self.block} px, grid phase ({self.phase_x}, {self.phase_y}), boundary contrast {self.contrast:.1f}"


def average_chips(chips: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of aligned uint8 chips (H x W x 3), rounded to uint8."""
    if not chips:
        raise ValueError("no chip to average")
    return np.clip(np.rint(np.mean(np.stack([c.astype(np.float64) for c in chips]), axis=0)), 0, 255).astype(np.uint8)


def _axis_grid(profile: np.ndarray) -> tuple[int, int, float]:
    """(block, phase, contrast) of the strongest periodic boundary pattern in a 1-D profile of absolute
    differences (profile[c] = |I[c + 1] - I[c]|)."""
    best = (0, 0, 0.0)
    n = len(profile)
    for block in GRID_BLOCKS:
        if 3 * block > n + 1:
            break
        for phase in range(block):
            edges = np.zeros(n, dtype=bool)
            edges[(np.arange(n) + 1 - phase) % block == 0] = True
            if edges.sum() < 2 or (~edges).sum() == 0:
                continue
            contrast = float(profile[edges].mean() / max(profile[~edges].mean(), 1e-3))
            if contrast > best[2] * 1.05:  # a multiple of the true block scores a little lower; ties go to the smaller
                best = (block, phase, contrast)
    return best


def estimate_grid(region: np.ndarray, origin: tuple[int, int] = (0, 0)) -> Grid | None:
    """The mosaic grid of a redacted region (uint8 H x W x 3), in frame coordinates (`origin`: the
    region's top-left corner in the frame); None when no block pattern stands out (a blur, a fill)."""
    grey = region.astype(np.float64).mean(axis=2)
    if grey.shape[0] < 12 or grey.shape[1] < 12:
        return None
    block_x, phase_x, contrast_x = _axis_grid(np.abs(np.diff(grey, axis=1)).mean(axis=0))
    block_y, phase_y, contrast_y = _axis_grid(np.abs(np.diff(grey, axis=0)).mean(axis=1))
    if block_x == 0 or block_x != block_y or min(contrast_x, contrast_y) < MIN_GRID_CONTRAST:
        return None
    return Grid(block_x, (phase_x + origin[0]) % block_x, (phase_y + origin[1]) % block_x, min(contrast_x, contrast_y))


@dataclass(frozen=True)
class Observation:
    """One redacted frame of a track for the multi-frame reconstruction.

    Attributes:
        frame: the redacted pixels (uint8 H x W x 3): the whole frame, or a region of it.
        shift: (dx, dy), integer pixels: where the reference frame's canvas lies in this frame.
        origin: the top-left corner of `frame` in the frame's coordinates ((0, 0) for a whole frame).
    """

    frame: np.ndarray
    shift: tuple[int, int]
    origin: tuple[int, int] = (0, 0)


def multiframe_mosaic(
    observations: Sequence[Observation], canvas: tuple[int, int, int, int], grid: Grid, smoothness: float = 0.02, iterations: int = 150
) -> tuple[np.ndarray, int]:
    """The canvas (x0, y0, x1, y1 in the reference frame) reconstructed from every observation's block
    means, and the number of distinct grid phases the frames sampled (1: the frames add no resolution).

    Minimises sum_t sum_cells (mean of x over the cell - observed cell value)^2 + smoothness * |grad x|^2
    by L-BFGS, starting from the per-pixel mean of the observed block values. Only cells lying wholly
    inside the canvas are used (a cell that straddles its edge also averages unknown pixels).
    """
    x0, y0, x1, y1 = canvas
    height, width = y1 - y0, x1 - x0
    b = grid.block
    targets, indices, phases = [], [], set()
    init_sum = torch.zeros(height * width, 3, dtype=torch.float64)
    init_count = torch.zeros(height * width, 1, dtype=torch.float64)
    for obs in observations:
        dx, dy = obs.shift
        fx0, fy0 = x0 + dx, y0 + dy  # the canvas's corner in this frame
        phases.add(((fx0 - grid.phase_x) % b, (fy0 - grid.phase_y) % b))
        cols = (np.arange(width) + fx0 - grid.phase_x) // b
        rows = (np.arange(height) + fy0 - grid.phase_y) // b
        cell_x0 = cols[0] + (1 if (fx0 - grid.phase_x) % b else 0)
        cell_y0 = rows[0] + (1 if (fy0 - grid.phase_y) % b else 0)
        cell_x1 = (width + fx0 - grid.phase_x) // b  # exclusive: cells wholly inside
        cell_y1 = (height + fy0 - grid.phase_y) // b
        if cell_x1 <= cell_x0 or cell_y1 <= cell_y0:
            continue
        ncx = cell_x1 - cell_x0
        cell = (rows[:, None] - cell_y0) * ncx + (cols[None, :] - cell_x0)
        inside = (cols[None, :] >= cell_x0) & (cols[None, :] < cell_x1) & (rows[:, None] >= cell_y0) & (rows[:, None] < cell_y1)
        cell = np.where(inside, cell, -1).reshape(-1)
        frame = obs.frame.astype(np.float64) / 255.0
        fh, fw = frame.shape[:2]
        values = np.zeros(((cell_y1 - cell_y0) * ncx, 3))
        for cy in range(cell_y0, cell_y1):
            for cx in range(cell_x0, cell_x1):
                gx, gy = grid.phase_x + cx * b - obs.origin[0], grid.phase_y + cy * b - obs.origin[1]
                if gx < 0 or gy < 0 or gx + b > fw or gy + b > fh:
                    values[(cy - cell_y0) * ncx + (cx - cell_x0)] = np.nan
                    continue
                values[(cy - cell_y0) * ncx + (cx - cell_x0)] = frame[gy : gy + b, gx : gx + b].reshape(-1, 3).mean(axis=0)
        valid_cells = ~np.isnan(values[:, 0])
        cell = np.where((cell >= 0) & valid_cells[np.maximum(cell, 0)], cell, -1)
        index = torch.from_numpy(cell)
        target = torch.from_numpy(np.nan_to_num(values))
        used = index >= 0
        init_sum[used] += target[index[used]]
        init_count[used] += 1
        indices.append(index)
        targets.append((target, torch.from_numpy(valid_cells)))
    if not indices:
        raise ValueError("no observation holds a whole mosaic cell inside the canvas")
    start = torch.where(init_count > 0, init_sum / init_count.clamp(min=1), init_sum.new_full((1, 3), 0.5))
    x = start.clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS([x], lr=1.0, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        total = x.new_zeros(())
        for index, (target, valid) in zip(indices, targets, strict=True):
            used = index >= 0
            sums = x.new_zeros(target.shape).index_add(0, index[used], x[used])
            counts = x.new_zeros((target.shape[0], 1)).index_add(0, index[used], x.new_ones((int(used.sum()), 1)))
            means = sums / counts.clamp(min=1)
            total = total + ((means - target)[valid & (counts[:, 0] > 0)] ** 2).sum()
        image = x.view(height, width, 3)
        total = total + smoothness * (((image[1:] - image[:-1]) ** 2).sum() + ((image[:, 1:] - image[:, :-1]) ** 2).sum())
        total.backward()
        return total

    optimiser.step(loss)
    restored = x.detach().clamp(0, 1).view(height, width, 3).numpy()
    return np.rint(restored * 255).astype(np.uint8), len(phases)
