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
from typing import Any

import numpy as np

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


#: Frames kept per grid phase for the multi-frame reconstruction (more at one phase only average noise), and
#: in all: the least-squares problem grows with every frame kept.
FRAMES_PER_PHASE = 3
MAX_FRAMES = 96


def _phase(obs: Observation, canvas: tuple[int, int, int, int], grid: Grid) -> tuple[int, int]:
    """Where the canvas's corner falls within a grid cell in this observation's frame."""
    return ((canvas[0] + obs.shift[0] - grid.phase_x) % grid.block, (canvas[1] + obs.shift[1] - grid.phase_y) % grid.block)


def select_observations(observations: Sequence[Observation], canvas: tuple[int, int, int, int], grid: Grid) -> list[Observation]:
    """At most FRAMES_PER_PHASE observations per grid phase, and MAX_FRAMES in all, taken round-robin over the
    phases (each phase adds new samples of the face; a repeated phase only averages noise)."""
    by_phase: dict[tuple[int, int], list[Observation]] = {}
    for obs in observations:
        by_phase.setdefault(_phase(obs, canvas, grid), []).append(obs)
    kept: list[Observation] = []
    for round_ in range(FRAMES_PER_PHASE):
        for group in by_phase.values():
            if round_ < len(group) and len(kept) < MAX_FRAMES:
                kept.append(group[round_])
    return kept


def _cells(obs: Observation, canvas: tuple[int, int, int, int], grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """For one observation: the cell (local number, -1 for none) of every canvas pixel, over the cells lying
    wholly inside both the canvas and the observed pixels, and those cells' observed means (cells x 3)."""
    x0, y0, x1, y1 = canvas
    b, (ox, oy) = grid.block, obs.origin
    fx0, fy0 = x0 + obs.shift[0], y0 + obs.shift[1]  # the canvas's corner in this frame
    sx, sy = (grid.phase_x - ox) % b, (grid.phase_y - oy) % b  # the first whole cell inside the observed pixels
    region = obs.frame[sy:, sx:].astype(np.float64) / 255.0
    nky, nkx = region.shape[0] // b, region.shape[1] // b
    means = region[: nky * b, : nkx * b].reshape(nky, b, nkx, b, 3).mean(axis=(1, 3))
    cy0r, cx0r = (oy + sy - grid.phase_y) // b, (ox + sx - grid.phase_x) // b  # frame cell of means[0, 0]
    cols = (np.arange(x1 - x0) + fx0 - grid.phase_x) // b
    rows = (np.arange(y1 - y0) + fy0 - grid.phase_y) // b
    first_x, last_x = -(-(fx0 - grid.phase_x) // b), (fx0 + (x1 - x0) - grid.phase_x) // b  # cells wholly inside the canvas
    first_y, last_y = -(-(fy0 - grid.phase_y) // b), (fy0 + (y1 - y0) - grid.phase_y) // b
    lo_x, hi_x = max(first_x, cx0r), min(last_x, cx0r + nkx)
    lo_y, hi_y = max(first_y, cy0r), min(last_y, cy0r + nky)
    if hi_x <= lo_x or hi_y <= lo_y:
        return np.full((y1 - y0) * (x1 - x0), -1), np.zeros((0, 3))
    inside = (cols[None, :] >= lo_x) & (cols[None, :] < hi_x) & (rows[:, None] >= lo_y) & (rows[:, None] < hi_y)
    number = (rows[:, None] - lo_y) * (hi_x - lo_x) + (cols[None, :] - lo_x)
    values = means[lo_y - cy0r : hi_y - cy0r, lo_x - cx0r : hi_x - cx0r].reshape(-1, 3)
    return np.where(inside, number, -1).reshape(-1), values


def _gradient(height: int, width: int) -> Any:
    """The sparse forward-difference operator (vertical then horizontal) of a height x width image."""
    from scipy import sparse

    def diff(n: int) -> Any:
        return sparse.diags([-np.ones(n - 1), np.ones(n - 1)], [0, 1], shape=(n - 1, n))

    return sparse.vstack([sparse.kron(diff(height), sparse.identity(width)), sparse.kron(sparse.identity(height), diff(width))]).tocsr()


def multiframe_mosaic(
    observations: Sequence[Observation], canvas: tuple[int, int, int, int], grid: Grid, smoothness: float = 0.02, iterations: int = 300
) -> tuple[np.ndarray, int, int]:
    """The canvas (x0, y0, x1, y1 in the reference frame) reconstructed from the observations' block means:
    (pixels, distinct grid phases sampled (1: the frames add no resolution), frames used).

    Minimises |A x - y|^2 + smoothness * |D x|^2, where A takes each kept frame's cell means of the canvas
    and D is the image gradient: the normal equations (A'A + smoothness D'D) x = A'y are solved per channel
    by conjugate gradients (deterministic: the same frames give the same pixels), from the per-pixel mean of
    the observed block values, over `select_observations`. Only cells lying wholly inside the canvas are used
    (a cell that straddles its edge also averages unknown pixels).
    """
    from scipy import sparse
    from scipy.sparse.linalg import cg

    height, width = canvas[3] - canvas[1], canvas[2] - canvas[0]
    kept = select_observations(observations, canvas, grid)
    pixel_ids, cell_ids, targets, offset = [], [], [], 0
    for obs in kept:
        number, values = _cells(obs, canvas, grid)
        used = np.flatnonzero(number >= 0)
        pixel_ids.append(used)
        cell_ids.append(number[used] + offset)
        targets.append(values)
        offset += len(values)
    if offset == 0:
        raise ValueError("no observation holds a whole mosaic cell inside the canvas")
    pixels, cells, target = np.concatenate(pixel_ids), np.concatenate(cell_ids), np.concatenate(targets)
    weights = 1.0 / np.bincount(cells, minlength=offset)[cells]
    forward = sparse.csr_matrix((weights, (cells, pixels)), shape=(offset, height * width))
    gradient = _gradient(height, width)
    system = (forward.T @ forward + smoothness * (gradient.T @ gradient)).tocsr()
    seen = np.bincount(pixels, minlength=height * width)
    start = np.stack([np.bincount(pixels, weights=target[cells, c], minlength=height * width) for c in range(3)], axis=1)
    start = np.where(seen[:, None] > 0, start / np.maximum(seen, 1)[:, None], 0.5)
    restored = np.empty((height * width, 3))
    for channel in range(3):
        restored[:, channel], _ = cg(system, forward.T @ target[:, channel], x0=start[:, channel], maxiter=iterations, rtol=1e-6)
    phases = {_phase(obs, canvas, grid) for obs in observations}
    image = np.rint(np.clip(restored, 0.0, 1.0).reshape(height, width, 3) * 255).astype(np.uint8)
    return image, len(phases), len(kept)
