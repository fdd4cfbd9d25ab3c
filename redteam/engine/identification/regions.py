"""Each face's changed region, taken from the difference: its box, shape, grid of cells, and what it
leaves of the face."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from redteam.anonymizers.base import FaceEvidence
from redteam.core.geometry import FaceGeometry
from redteam.engine.identification.codec import _difference, _jpeg, _outside
from redteam.engine.identification.evidence import LANDMARKS, Pair, RegionFinding, _aligned_crop, _shrunk, _Work


def _grid(anonymized: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int]) -> tuple[tuple[float, float], tuple[int, int, int, int]] | None:
    """The cell pitch (x, y) of the grid the anonymized region shows and the region's box snapped to the
    grid's lines (the region starts and ends on a cell edge), or None when it shows no grid."""
    x0, y0, x1, y1 = box
    area, inside = anonymized[y0:y1, x0:x1].astype(np.int16), mask[y0:y1, x0:x1]
    if area.shape[0] < 6 or area.shape[1] < 6:
        return None
    across = np.abs(np.diff(area, axis=1)).max(axis=2) > 0
    down = np.abs(np.diff(area, axis=0)).max(axis=2) > 0
    both_x, both_y = inside[:, 1:] & inside[:, :-1], inside[1:, :] & inside[:-1, :]
    if both_x.sum() < 20 or both_y.sum() < 20:
        return None
    flat = 1.0 - (across[both_x].mean() + down[both_y].mean()) / 2
    if flat >= 0.6:  # a lossless mosaic: the steps crossed by most rows / columns, the box as it is
        pitch_x, pitch_y = _step_pitch(across, both_x), _step_pitch(down.T, both_y.T)
        if pitch_x is not None and pitch_y is not None:
            columns, rows = max(1, round((x1 - x0) / pitch_x)), max(1, round((y1 - y0) / pitch_y))
            return ((x1 - x0) / columns, (y1 - y0) / rows), box
    strong = (np.abs(np.diff(area, axis=1)).max(axis=2) > 8) & both_x
    if int((strong.sum(axis=0) > 0.3 * np.maximum(1, both_x.sum(axis=0))).sum()) < 3:
        return None  # not one column of steps crossed by most rows: smooth, no grid to look for
    from attacks.grid import estimate_grid

    height, width = anonymized.shape[:2]
    grow = 8
    wx0, wy0, wx1, wy1 = max(0, x0 - grow), max(0, y0 - grow), min(width, x1 + grow), min(height, y1 + grow)
    grid = estimate_grid(np.ascontiguousarray(anonymized[wy0:wy1, wx0:wx1]), tolerances=(0, 3, 8, 14))
    if grid is None:
        return None

    def snap(edge: int, axis: Any, origin: int, inward: int) -> int:
        """The first grid line inward of `edge` (the tool's JPEG blocks only spread the change outward)."""
        k = (math.ceil if inward > 0 else math.floor)((edge - inward - origin - axis.phase) / axis.pitch)
        line = origin + axis.phase + k * axis.pitch
        return int(round(line)) if abs(line - edge) <= axis.pitch + 1 else edge

    snapped = (snap(x0, grid.x, wx0, 1), snap(y0, grid.y, wy0, 1), snap(x1, grid.x, wx0, -1), snap(y1, grid.y, wy0, -1))
    if snapped[2] - snapped[0] < 6 or snapped[3] - snapped[1] < 6:
        snapped = box
    return (float(grid.x.pitch), float(grid.y.pitch)), snapped


def _step_pitch(changes: np.ndarray, valid: np.ndarray) -> float | None:
    """The cell width along the rows of an H x W-1 change map: the width over the number of cells between
    the steps most rows cross, edges included, a gap of about twice the typical one counting as two cells
    (a step hidden by two equal neighbouring cells)."""
    share = (changes & valid).sum(axis=0) / np.maximum(1, valid.sum(axis=0))
    edges = np.concatenate(([0], np.nonzero(share > 0.5)[0] + 1, [changes.shape[1] + 1]))
    gaps = np.diff(edges)
    if len(gaps) < 3:
        return None
    typical = float(np.median(gaps))
    cells = int(sum(max(1, round(gap / typical)) for gap in gaps))
    return (changes.shape[1] + 1) / cells


def _region(pair: Pair, index: int, reference: np.ndarray, floor: float) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """The filled changed component around face `index` (image coordinates: mask, box), or None."""
    from scipy import ndimage

    face = pair.faces[index]
    height, width = reference.shape[:2]
    fx0, fy0, fx1, fy1 = face.box
    grow = max(fx1 - fx0, fy1 - fy0)
    wx0, wy0 = max(0, int(fx0 - grow)), max(0, int(fy0 - grow))
    wx1, wy1 = min(width, int(math.ceil(fx1 + grow))), min(height, int(math.ceil(fy1 + grow)))
    changed = _difference(reference[wy0:wy1, wx0:wx1], pair.anonymized[wy0:wy1, wx0:wx1]) > floor
    closing = max(2, int(0.03 * (fx1 - fx0)))
    closed = ndimage.binary_closing(np.pad(changed, closing), iterations=closing)[closing:-closing, closing:-closing]
    labels, count = ndimage.label(closed)
    if count == 0:
        return None
    face_mask = np.zeros(closed.shape, dtype=bool)
    face_mask[max(0, int(fy0) - wy0) : max(0, int(fy1) - wy0), max(0, int(fx0) - wx0) : max(0, int(fx1) - wx0)] = True
    overlap = np.bincount(labels[face_mask].ravel(), minlength=count + 1)
    overlap[0] = 0
    best = int(overlap.argmax())
    if overlap[best] < 0.1 * max(1, face_mask.sum()):
        return None
    component = ndimage.binary_fill_holes(labels == best)
    component = ndimage.binary_opening(component, iterations=1) | (labels == best)
    rows, cols = np.nonzero(component)
    mask = np.zeros((height, width), dtype=bool)
    mask[wy0:wy1, wx0:wx1] = component
    return mask, (int(cols.min()) + wx0, int(rows.min()) + wy0, int(cols.max()) + 1 + wx0, int(rows.max()) + 1 + wy0)


def _shape(mask: np.ndarray, box: tuple[int, int, int, int], loose: bool = False) -> str:
    """How the changed mask fills its box: "rect", "ellipse" or "free-form" (`loose`: its edge is blurred
    by the tool's JPEG blocks)."""
    from skimage.draw import ellipse

    x0, y0, x1, y1 = box
    inside = mask[y0:y1, x0:x1]
    height, width = inside.shape
    oval = np.zeros((height, width), dtype=bool)
    rows, cols = ellipse(height // 2, width // 2, height // 2, width // 2, shape=(height, width))
    oval[rows, cols] = True
    fill = float(inside.mean())
    if fill >= (0.8 if loose else 0.94):
        return "rect"
    if (inside & oval).sum() / max(1, (inside | oval).sum()) >= (0.85 if loose else 0.9):
        return "ellipse"
    return "free-form"


def _finding(pair: Pair, index: int, found: tuple[np.ndarray, tuple[int, int, int, int]] | None, shape: str) -> RegionFinding:
    face = pair.faces[index]
    fx0, fy0, fx1, fy1 = face.box
    fw, fh = max(1.0, fx1 - fx0), max(1.0, fy1 - fy0)
    if found is None:
        return RegionFinding(pair.label, index, False, "none", None, (0.0, 0.0), (0.0, 0.0), 0.0, LANDMARKS[: len(face.landmarks)], False)
    mask, (x0, y0, x1, y1) = found
    height, width = mask.shape
    box_mask = np.zeros_like(mask)
    box_mask[max(0, int(fy0)) : min(height, int(math.ceil(fy1))), max(0, int(fx0)) : min(width, int(math.ceil(fx1)))] = True
    coverage = float((mask & box_mask).sum() / max(1, box_mask.sum()))
    uncovered = tuple(
        name
        for name, (px, py) in zip(LANDMARKS, face.landmarks, strict=False)
        if not (0 <= int(py) < height and 0 <= int(px) < width and mask[int(py), int(px)])
    )
    scale = ((x1 - x0) / fw, (y1 - y0) / fh)
    offset = (((x0 + x1) / 2 - (fx0 + fx1) / 2) / fw, ((y0 + y1) / 2 - (fy0 + fy1) / 2) / fh)
    return RegionFinding(pair.label, index, True, shape, (x0, y0, x1, y1), scale, offset, coverage, uncovered, coverage >= 0.3)


def _evidence(pairs: Sequence[Pair], quality: int | None, whole_image: bool) -> tuple[list[_Work], list[RegionFinding]]:
    """Each face's region, shape and evidence class, on crops aligned to the JPEG grid."""
    from scipy import ndimage

    works, findings = [], []
    for pair in pairs:
        reference = pair.original if quality is None else _jpeg(pair.original, quality)
        outside = _outside(pair, 1.0)
        difference = _difference(reference, pair.anonymized)
        floor = float(np.percentile(difference[outside], 99.5)) if outside.any() else 0.0
        floor = max(floor, 1.0 if quality is None else 2.0)
        for index, face in enumerate(pair.faces):
            threshold = floor
            if quality is not None:  # the JPEG blocks across the region's edge change too, but less than the region
                x0, y0, x1, y1 = (max(0, int(v)) for v in face.box)
                inside = difference[y0:y1, x0:x1]
                threshold = max(floor, min(10.0, 0.3 * float(np.percentile(inside, 90)))) if inside.size else floor
            if whole_image:
                height, width = pair.original.shape[:2]
                found: tuple[np.ndarray, tuple[int, int, int, int]] | None = (np.ones((height, width), bool), (0, 0, width, height))
                shape = "rect"
            else:
                found = _region(pair, index, reference, threshold)
                shape = _shape(*found, loose=quality is not None) if found is not None else "none"
            finding = _finding(pair, index, found, shape)
            findings.append(finding)
            if found is None or not finding.fitted:
                continue
            mask, (x0, y0, x1, y1) = found
            if whole_image:  # the face's neighbourhood stands for the image: its edge is left out below
                x0, y0, x1, y1 = _aligned_crop(pair, face.box, 0.5 * max(face.width, face.height))
            cx0, cy0, cx1, cy1 = _aligned_crop(pair, (x0, y0, x1, y1), 0 if whole_image else max(48, x1 - x0))
            crop = (slice(cy0, cy1), slice(cx0, cx1))
            local = FaceGeometry(
                box=(face.box[0] - cx0, face.box[1] - cy0, face.box[2] - cx0, face.box[3] - cy0),
                landmarks=tuple((px - cx0, py - cy0) for px, py in face.landmarks),
                score=face.score,
            )
            box = (x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0)
            changed = mask[crop] if not whole_image else np.ones((cy1 - cy0, cx1 - cx0), bool)
            anonymized = pair.anonymized[crop]
            erosion = max(2, int(0.06 * face.width)) + (8 if quality is not None else 0) if not whole_image else max(24, int(0.3 * face.width))
            interior = ndimage.binary_erosion(np.pad(changed, 1), iterations=erosion)[1:-1, 1:-1]
            if interior.sum() < 64:
                continue
            colours = anonymized[interior]
            colour = (int(np.median(colours[:, 0])), int(np.median(colours[:, 1])), int(np.median(colours[:, 2])))
            flat = float(colours.std(axis=0).max()) <= (2.5 if quality is None else 5.0)
            grid = None if flat else _grid(anonymized, interior if quality is None else changed, box)
            pitch = None
            if grid is not None:
                pitch, box = grid
                shape = "rect" if shape == "free-form" else shape  # a mosaic's cells leave a ragged difference
            kind = "flat" if flat else "cells" if grid is not None else "smooth"
            size = (pair.original.shape[1], pair.original.shape[0]) if whole_image else (box[2] - box[0], box[3] - box[1])
            evidence = FaceEvidence(size[0], size[1], float(face.width), None, colour, pitch).resized(*size)
            work = _Work(
                pair.label, index, (cx0, cy0), pair.original[crop], anonymized, local, box, shape if shape != "none" else "rect", changed, evidence, kind
            )
            work.interior = interior
            work.small = _shrunk(work)
            works.append(work)
    return works, findings
