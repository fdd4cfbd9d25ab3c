"""Blind estimation of a mosaic's cell grid, with sub-pixel pitch and phase, and resampling of a grid.

A mosaic (pixelation) leaves flat cells separated by one-pixel steps. Integer-block tools put the steps
every `block` pixels; resize-down / nearest-up tools put them at round(phase + k * pitch) with a
fractional pitch (a 200 px face in 16 cells has a 12.5 px pitch). Per axis, the estimator

1. finds the mosaic's extent: the largest connected area of pixels equal to their right and lower
   neighbours (closed over the one-pixel steps), so it works on a whole face region or on part of one;
2. lists the step positions inside it (gaps where most rows, or columns, change);
3. scores each candidate pitch p by phase coherence x coverage: coherence |mean exp(2 pi i b / p)| is 1
   for the true pitch and for its divisors, coverage (the share of the grid lines p predicts that a
   step falls on) is 1 for the true pitch and its multiples, so only the true pitch has both;
4. refines pitch and phase by least squares on the steps assigned to their grid lines.

References:
    McPherson, Shokri and Shmatikov, "Defeating Image Obfuscation with Deep Learning", 2016 (the grid is
    what interpolation must undo); the coherence score is the periodogram of the step positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Pixels whose largest channel difference to a neighbour is at most this count as equal: first 0
#: (a lossless mosaic is exactly flat inside a cell, a smooth photo is not), then a little more for a
#: mosaic saved with mild compression.
TOLERANCES = (0, 3)
#: A gap is a step when at least this share of the mosaic's rows (or columns) change across it.
STEP_SHARE = 0.3
#: Candidate pitches, in pixels.
MIN_PITCH, MAX_PITCH = 4.0, 64.0
#: A grid is accepted when this share of the steps inside it lie on its lines...
MIN_SCORE = 0.6
#: ... and this share of the pixels inside its cells (one-pixel border excluded) are flat...
MIN_FLAT_SHARE = 0.8
#: ... and it spans at least this many whole cells along each axis.
MIN_CELLS = 3


@dataclass(frozen=True)
class AxisGrid:
    """Cell boundaries along one axis at ``phase + k * pitch``, k = 0 .. lines - 1 (edge coordinates:
    pixel x spans [x, x+1)); `score` is the share of the steps in that span that lie on the lines."""

    pitch: float
    phase: float
    score: float
    lines: int = 0

    @property
    def span(self) -> tuple[float, float]:
        return self.phase, self.phase + (self.lines - 1) * self.pitch

    def cells(self, start: float, stop: float) -> list[tuple[float, float]]:
        """The whole cells (edge to edge) that lie within [start, stop]."""
        first = math.ceil((start - self.phase) / self.pitch - 1e-6)
        edges = []
        k = first
        while self.phase + (k + 1) * self.pitch <= stop + 1e-6:
            edges.append((self.phase + k * self.pitch, self.phase + (k + 1) * self.pitch))
            k += 1
        return edges


@dataclass(frozen=True)
class Grid:
    """A mosaic's grid: per axis, and the box (x0, y0, x1, y1) of the mosaic inside the window."""

    x: AxisGrid
    y: AxisGrid
    box: tuple[int, int, int, int]


def _changes(window: np.ndarray, axis: int) -> np.ndarray:
    """Largest channel difference across each gap: H x (W-1) for axis=1, (H-1) x W for axis=0."""
    return np.abs(np.diff(window.astype(np.int16), axis=axis)).max(axis=2)


def mosaic_mask(window: np.ndarray, tolerance: int) -> np.ndarray | None:
    """The largest area of flat runs (a mosaic), closed over the one-pixel steps between its cells, as
    an H x W bool mask; None when there is none."""
    height, width = window.shape[:2]
    if height < 4 or width < 4:
        return None
    flat = np.zeros((height, width), dtype=bool)
    flat[:, :-1] = _changes(window, 1) <= tolerance
    flat[:-1, :] &= _changes(window, 0) <= tolerance
    flat[-1, :] = False
    closed = ndimage.binary_closing(flat, structure=np.ones((3, 3)), iterations=1)
    closed = ndimage.binary_opening(closed, structure=np.ones((3, 3)), iterations=1)
    labels, count = ndimage.label(closed)
    if count == 0:
        return None
    sizes = ndimage.sum(closed, labels, index=range(1, count + 1))
    best = int(np.argmax(sizes)) + 1
    if sizes[best - 1] < 4 * MIN_PITCH * MIN_PITCH:
        return None
    return labels == best


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def step_positions(window: np.ndarray, mask: np.ndarray, axis: int, tolerance: int) -> np.ndarray:
    """Edge coordinates of the steps along `axis` (1: x, 0: y) inside the mosaic's mask: the gaps where
    a large share of the mask's pixels on that line change (relative to the strongest lines, so flat
    background inside the mask dilutes nothing)."""
    changes = _changes(window, axis) > tolerance
    inside = mask[:, :-1] & mask[:, 1:] if axis == 1 else mask[:-1, :] & mask[1:, :]
    counted = (changes & inside).sum(axis=0 if axis == 1 else 1).astype(np.float64)
    lines = inside.sum(axis=0 if axis == 1 else 1).astype(np.float64)
    share = np.divide(counted, lines, out=np.zeros_like(counted), where=lines >= 4)
    if share.max() <= 0:
        return np.zeros(0)
    level = max(0.1, STEP_SHARE * float(np.percentile(share[share > 0], 90)))
    return np.nonzero(share >= level)[0].astype(np.float64) + 1.0


#: A step explains a grid line when it lies within this many pixels of it (steps sit on whole pixels).
LINE_TOLERANCE = 0.75


def _explained(steps: np.ndarray, pitch: float, phase: float) -> tuple[np.ndarray, np.ndarray]:
    """Each step's grid line, and whether it explains that line (the nearest step to each line, within
    LINE_TOLERANCE; every other step is unexplained)."""
    index = np.round((steps - phase) / pitch).astype(int)
    residual = np.abs(steps - (phase + index * pitch))
    explains = np.zeros(len(steps), dtype=bool)
    best: dict[int, int] = {}
    for i in np.argsort(residual):
        if residual[i] <= LINE_TOLERANCE and int(index[i]) not in best:
            best[int(index[i])] = int(i)
            explains[i] = True
    return index, explains


def _fit(steps: np.ndarray, pitch: float) -> tuple[float, float, int, int]:
    """For one candidate pitch: the phase most steps agree with, then the longest run of consecutive grid
    lines that each carry a step.

    Returns:
        (score, phase, first line k_a, last line k_b). The score is the run's length in pixels times the
        share of the steps inside it that explain one of its lines: a divisor of the pitch breaks the
        run at every other line, a multiple leaves half the steps unexplained, and a photo's dense
        edges leave most steps unexplained at any pitch.
    """
    offsets = np.mod(steps, pitch)
    candidates = np.arange(0.0, pitch, 0.25)
    distance = np.abs(offsets[None, :] - candidates[:, None])
    distance = np.minimum(distance, pitch - distance)
    phase = float(candidates[int(np.argmax((distance <= LINE_TOLERANCE).sum(axis=1)))])
    index, explains = _explained(steps, pitch, phase)
    lines = np.unique(index[explains])
    if len(lines) < 3:
        return 0.0, phase, 0, 0
    breaks = np.nonzero(np.diff(lines) != 1)[0]
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(lines) - 1]))
    longest = int(np.argmax(lines[ends] - lines[starts]))
    first, last = int(lines[starts[longest]]), int(lines[ends[longest]])
    if last - first < MIN_CELLS:
        return 0.0, phase, first, last
    return (last - first) * pitch * _share(steps, index, explains, pitch, phase, first, last), phase, first, last


def _share(steps: np.ndarray, index: np.ndarray, explains: np.ndarray, pitch: float, phase: float, first: int, last: int) -> float:
    """Share of the steps within lines first..last that explain one of those lines."""
    inside = (steps >= phase + first * pitch - LINE_TOLERANCE) & (steps <= phase + last * pitch + LINE_TOLERANCE)
    used = inside & explains & (index >= first) & (index <= last)
    return float(used.sum() / max(1, inside.sum()))


def estimate_axis(steps: np.ndarray, start: float, stop: float, min_pitch: float = MIN_PITCH, max_pitch: float = MAX_PITCH) -> AxisGrid | None:
    """The pitch and phase that explain the steps best, refined by least squares; None unless a run of
    at least MIN_CELLS whole cells shows, with at least MIN_SCORE of the steps inside it on its lines."""
    if len(steps) < 3:
        return None
    top = min(max_pitch, (stop - start) / MIN_CELLS)
    best = (0.0, 0.0, 0.0, 0, 0)
    for pitch in np.arange(min_pitch, top + 1e-9, 0.1):  # coarse, then fine around the best
        score, phase, first, last = _fit(steps, float(pitch))
        if score > best[0] + 1e-9:
            best = (score, float(pitch), phase, first, last)
    for pitch in np.arange(max(min_pitch, best[1] - 0.1), best[1] + 0.1 + 1e-9, 0.01):
        score, phase, first, last = _fit(steps, float(pitch))
        if score > best[0] + 1e-9:
            best = (score, float(pitch), phase, first, last)
    score, pitch, phase, first, last = best
    if score <= 0:
        return None
    index, explains = _explained(steps, pitch, phase)
    chosen = explains & (index >= first) & (index <= last)
    slope, intercept = np.polyfit(index[chosen], steps[chosen], 1)
    if abs(slope / pitch - 1.0) < 0.05:
        pitch, phase = float(slope), float(intercept)
        index, explains = _explained(steps, pitch, phase)
    share = _share(steps, index, explains, pitch, phase, first, last)
    if share < MIN_SCORE:
        return None
    return AxisGrid(pitch=pitch, phase=phase + first * pitch, score=share, lines=last - first + 1)


def estimate_grid(window: np.ndarray, tolerances: tuple[int, ...] = TOLERANCES) -> Grid | None:
    """Blind estimate of the mosaic grid in an H x W x 3 uint8 window, or None if no grid shows. The
    grid's box is where the grid lines were seen (whole cells between the first and last line).
    Larger `tolerances` find mosaics saved with stronger compression, at a higher risk of seeing a grid
    in a photo (operator identification can afford it: it checks the grid against the original)."""
    for tolerance in tolerances:
        mask = mosaic_mask(window, tolerance)
        if mask is None:
            continue
        x0, y0, x1, y1 = mask_box(mask)
        x = estimate_axis(step_positions(window, mask, 1, tolerance), x0, x1)
        y = estimate_axis(step_positions(window, mask, 0, tolerance), y0, y1)
        if x is not None and y is not None:
            (left, right), (top, bottom) = x.span, y.span
            box = (max(0, math.floor(left)), max(0, math.floor(top)), min(window.shape[1], math.ceil(right)), min(window.shape[0], math.ceil(bottom)))
            if flat_share(window, x, y, box, tolerance) >= MIN_FLAT_SHARE:
                return Grid(x=x, y=y, box=box)
    return None


def _interior(edges: tuple[float, float]) -> slice:
    """A cell's pixels without the one-pixel border a resize may have blended."""
    low, high = math.ceil(edges[0] - 1e-6), math.floor(edges[1] + 1e-6)
    if high - low >= 3:
        low, high = low + 1, high - 1
    return slice(low, max(high, low + 1))


def flat_share(window: np.ndarray, x: AxisGrid, y: AxisGrid, box: tuple[int, int, int, int], tolerance: int) -> float:
    """Share of the cells' interior pixels within tolerance + 2 grey levels of their cell's median: near 1
    for a mosaic, low for a photo whose edges happen to line up."""
    flat = total = 0
    for rows in y.cells(box[1], box[3]):
        for columns in x.cells(box[0], box[2]):
            cell = window[_interior(rows), _interior(columns)].reshape(-1, window.shape[2]).astype(np.int16)
            if cell.size == 0:
                continue
            deviation = np.abs(cell - np.median(cell, axis=0)).max(axis=1)
            flat += int((deviation <= tolerance + 2).sum())
            total += len(deviation)
    return flat / total if total else 0.0


def _weights(positions: np.ndarray, count: int, kernel: str) -> np.ndarray:
    """Interpolation matrix (len(positions) x count) sampling a signal of `count` cells at fractional
    cell coordinates, edges replicated. kernel: "bicubic" (Keys, a = -0.5) or "lanczos" (a = 3)."""
    support = 2 if kernel == "bicubic" else 3
    base = np.floor(positions).astype(int)
    matrix = np.zeros((len(positions), count))
    for offset in range(-support + 1, support + 1):
        taps = base + offset
        distance = np.abs(positions - taps)
        if kernel == "bicubic":
            a = -0.5
            weight = np.where(
                distance <= 1,
                (a + 2) * distance**3 - (a + 3) * distance**2 + 1,
                np.where(distance < 2, a * distance**3 - 5 * a * distance**2 + 8 * a * distance - 4 * a, 0.0),
            )
        else:
            weight = np.where(distance < support, np.sinc(distance) * np.sinc(distance / support), 0.0)
        np.add.at(matrix, (np.arange(len(positions)), np.clip(taps, 0, count - 1)), weight)
    return matrix / matrix.sum(axis=1, keepdims=True)


def resample_grid(window: np.ndarray, grid_x: AxisGrid, grid_y: AxisGrid, box: tuple[int, int, int, int], kernel: str) -> np.ndarray | None:
    """Replace the whole cells inside `box` of a float H x W x 3 window by a smooth interpolation of
    their values (each cell's mean over its interior), sampled at the pixel centres; None if fewer
    than 2 x 2 whole cells lie in the box."""
    x0, y0, x1, y1 = box
    columns, rows = grid_x.cells(x0, x1), grid_y.cells(y0, y1)
    if len(columns) < 2 or len(rows) < 2:
        return None

    cells = np.stack([np.stack([window[_interior(r), _interior(c)].reshape(-1, 3).mean(axis=0) for c in columns]) for r in rows])
    left, right = math.ceil(columns[0][0] - 1e-6), math.floor(columns[-1][1] + 1e-6)
    top, bottom = math.ceil(rows[0][0] - 1e-6), math.floor(rows[-1][1] + 1e-6)
    u = (np.arange(left, right) + 0.5 - columns[0][0]) / grid_x.pitch - 0.5
    v = (np.arange(top, bottom) + 0.5 - rows[0][0]) / grid_y.pitch - 0.5
    wx, wy = _weights(u, len(columns), kernel), _weights(v, len(rows), kernel)
    out = window.copy()
    rows_done = np.einsum("yr,rcz->ycz", wy, cells)  # two separable passes: O(H*R*C + H*W*C), not O(H*W*R*C)
    out[top:bottom, left:right] = np.clip(np.einsum("ycz,xc->yxz", rows_done, wx), 0.0, 1.0)
    return out
