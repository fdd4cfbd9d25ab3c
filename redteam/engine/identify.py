"""Identify the operator of an observed method from (original, anonymized) pairs.

Kerckhoffs' principle: assume the attacker knows the redaction tool. The auditor holds the originals and
the tool's output, so the method can be fitted from the evidence, whatever tool made it:

1. **The region, from the difference.** Per face, the changed region is the connected set of pixels
   that differ around the face (after removing what the tool's own JPEG re-encoding changed everywhere),
   closed and filled morphologically. Its box, its shape (rectangle, ellipse or free-form) and its size
   relative to the face box are reported per face, and so is a face the region does not cover (an eye
   or the mouth outside it, or no region at all: the tool's detector missed the face). The operator is
   fitted inside each face's own region, never through this project's margin model, so a tool that
   places its regions with another detector (dlib, CenterFace) is fitted as well as one of ours.
2. **The codec.** A tool that saves JPEG re-encodes the whole image: the quality is fitted on the pixels
   far from the faces (there the tool's output is the original re-encoded) and every candidate is then
   scored after the same re-encoding.
3. **The family, from the registry.** Every registered method that declares a `fit_space` (the
   built-in ones, the library-exact tools of `redteam.anonymizers.tools`, and plugins alike) is a
   candidate when the region's evidence suits it (a flat colour, a grid of cells, or anything smooth):
   its parameters are searched per face (or proposed from the evidence, e.g. a mosaic's cell count), the
   per-face fits are summarised into specs for the folder (a value in pixels, or a fraction of the region
   for a tool that scales with the face), and each spec is scored on every face. The best family's boxes
   are then refined by a pixel or two where the tool put them, and its variants (e.g. whether it read
   the pixels around the region) decided on the region's edge.

The residual is the mean absolute difference, in grey levels, between the candidate's output and the
published image inside each face's region. For noise, the comparison is of the noise's strength and
whiteness, not of its draw (the one family fitted statistically). A method whose best candidate stays
within MAX_RESIDUAL on most faces counts as declared: the adaptive tier runs against it, and the spec
goes into summary.json and the report.

References:
    Kerckhoffs, "La cryptographie militaire", 1883; Hao et al., FG 2020 (attacker who knows the
    obfuscation); McPherson, Shokri and Shmatikov 2016 (attacker who trains on the same obfuscation).
"""

from __future__ import annotations

import functools
import io
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from redteam.anonymizers import METHODS, build_method
from redteam.anonymizers.base import Anonymizer, FaceEvidence, FitAxis, FitVariant
from redteam.core.geometry import FaceGeometry
from redteam.core.results import FaceFit, Identification

#: A candidate whose median residual (mean absolute, grey levels, inside the regions) is within this,
#: and which fits at least MIN_CONSISTENT of the faces within twice it, counts as identified. With the
#: tools' own libraries replayed inside the regions they left, the right family leaves well under one
#: grey level (8-bit rounding, another JPEG encoder); a related family (a true Gaussian for Pillow's
#: box approximation, a box blur for a median) leaves several.
MAX_RESIDUAL = 3.0
MIN_CONSISTENT = 0.8
#: Pixels differing by more than this between original and anonymized image are "changed".
CHANGED = 6
#: Pairs used for the fit (the first ones with a face and a counterpart), and faces used for the
#: parameter searches (all the pairs' faces score the folder's specs).
MAX_PAIRS = 6
SEARCH_FACES = 3
#: Landmark names, in FaceGeometry order.
LANDMARKS = ("left eye", "right eye", "nose", "left mouth corner", "right mouth corner")


@dataclass(frozen=True)
class Pair:
    """One original with its anonymized counterpart (same size) and its faces' geometry."""

    label: str
    original: np.ndarray
    anonymized: np.ndarray
    faces: tuple[FaceGeometry, ...]


@dataclass(frozen=True)
class RegionFinding:
    """The changed region found around one face of a pair (image coordinates).

    Attributes:
        image, face_index: which face.
        found: whether a changed region overlaps the face at all.
        shape: "rect", "ellipse", "free-form", or "none".
        box: the region's box (x0, y0, x1, y1), or None.
        scale: (region width / face width, region height / face height) against the auditor's face box.
        offset: the region's centre minus the face box's centre, in face widths and heights.
        coverage: the share of the face box inside the region.
        uncovered: the landmarks (eyes, nose, mouth corners) outside the region.
        fitted: whether the face joined the operator fit (its region covers the face).
    """

    image: str
    face_index: int
    found: bool
    shape: str
    box: tuple[int, int, int, int] | None
    scale: tuple[float, float]
    offset: tuple[float, float]
    coverage: float
    uncovered: tuple[str, ...]
    fitted: bool

    @property
    def finding(self) -> str:
        """One line for the report: what the region leaves of the face, or "" when it covers it."""
        where = f"{self.image} face {self.face_index}"
        if not self.found:
            return f"{where}: no anonymized region overlaps this face (the tool did not find it): the face is published as it is"
        parts = []
        if self.uncovered:
            parts.append("the " + ", ".join(self.uncovered) + (" lies" if len(self.uncovered) == 1 else " lie") + " outside the anonymized region")
        if self.coverage < 0.6:
            parts.append(f"the region covers only {self.coverage:.0%} of the face box")
        return f"{where}: " + "; ".join(parts) if parts else ""

    def to_json(self) -> dict[str, object]:
        return {
            "image": self.image,
            "face": self.face_index,
            "found": self.found,
            "shape": self.shape,
            "box": list(self.box) if self.box else None,
            "scale": [round(v, 3) for v in self.scale],
            "offset": [round(v, 3) for v in self.offset],
            "coverage": round(self.coverage, 3),
            "uncovered": list(self.uncovered),
            "fitted": self.fitted,
        }


@dataclass(frozen=True)
class Fit:
    """Everything identification found: the `Identification` the engine records, the per-face regions,
    the codec, and the per-face parameter fits of the chosen family.

    Attributes:
        identification: what `redteam.core.results.Identification` carries.
        regions: one finding per face of the fitted pairs.
        codec: the whole-image re-encoding the tool applied (a spec stage), or None.
        face_parameters: per fitted face, (image, face index, the chosen family's parameters fitted on that
            face alone, in pixels).
        seconds: wall time of the fit.
    """

    identification: Identification
    regions: tuple[RegionFinding, ...] = ()
    codec: str | None = None
    face_parameters: tuple[tuple[str, int, dict[str, Any]], ...] = ()
    seconds: float = 0.0

    @property
    def findings(self) -> list[str]:
        return [line for line in (r.finding for r in self.regions) if line]

    def to_json(self) -> dict[str, object]:
        return {
            **self.identification.to_json(),
            "codec": self.codec,
            "regions": [r.to_json() for r in self.regions],
            "face_parameters": [{"image": i, "face": f, "parameters": p} for i, f, p in self.face_parameters],
            "findings": self.findings,
            "seconds": round(self.seconds, 2),
        }


# -- the evidence ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Measure:
    """Where a residual is taken: a mask over the crop, and the box (x0, y0, x1, y1) around it."""

    mask: np.ndarray
    box: tuple[int, int, int, int]

    @classmethod
    def of(cls, mask: np.ndarray) -> _Measure:
        """`mask` as a measure; a large one keeps every other row (the residual is a mean: half the rows
        estimate it as well, at half the cost)."""
        if mask.sum() > 40_000:
            mask = mask.copy()
            mask[1::2] = False
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            return cls(mask, (0, 0, 0, 0))
        return cls(mask, (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1))


@dataclass
class _Work:
    """One face being fitted, on a crop of its pair whose origin lies on the 16-pixel JPEG grid."""

    label: str
    index: int
    origin: tuple[int, int]
    original: np.ndarray
    anonymized: np.ndarray
    face: FaceGeometry
    box: tuple[int, int, int, int]
    shape: str
    changed: np.ndarray  # the filled evidence mask over the crop
    evidence: FaceEvidence
    kind: str
    interior: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    memo: dict[tuple[Any, ...], float] = field(default_factory=dict)  # interior residuals already computed
    small: _Work | None = None  # a shrunk copy where parameter searches start (large faces)
    measures: dict[Any, _Measure] = field(default_factory=dict)
    scale: float = 1.0  # the small copy's size over this one's

    def region_mask(self, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        x0, y0, x1, y1 = box or self.box
        height, width = y1 - y0, x1 - x0
        if self.shape == "ellipse":
            from skimage.draw import ellipse

            mask = np.zeros((height, width))
            rows, cols = ellipse(height // 2, width // 2, height // 2, width // 2, shape=(height, width))
            mask[rows, cols] = 1.0
            return mask
        if self.shape == "free-form":
            mask = np.zeros((height, width))
            cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(self.changed.shape[1], x1), min(self.changed.shape[0], y1)
            mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = self.changed[cy0:cy1, cx0:cx1]
            return mask
        return np.ones((height, width))

    def band(self) -> _Measure:
        """The region's pixels but its outermost one, over the crop (where the final residual is taken)."""
        from scipy import ndimage

        key = ("band", self.box)
        if key not in self.measures:
            x0, y0, x1, y1 = self.box
            mask = np.zeros(self.changed.shape, dtype=bool)
            mask[y0:y1, x0:x1] = ndimage.binary_erosion(self.region_mask() > 0, iterations=1)
            self.measures[key] = _Measure.of(mask)
        return self.measures[key]

    @property
    def inside(self) -> _Measure:
        """The region's interior, away from its edge (where parameters are searched)."""
        if "interior" not in self.measures:
            self.measures["interior"] = _Measure.of(self.interior)
        return self.measures["interior"]


#: Regions wider than this are searched on a copy shrunk to it first (the search scales with the
#: region's area; only the last steps run at full size).
SEARCH_WIDTH = 160


def _shrunk(work: _Work) -> _Work | None:
    """`work` shrunk so its region is SEARCH_WIDTH pixels wide (area resampling of both images), or None
    when it is small enough already."""
    import cv2
    from scipy import ndimage

    width = work.box[2] - work.box[0]
    if width <= SEARCH_WIDTH * 1.25:
        return None
    scale = SEARCH_WIDTH / width
    height, full = work.original.shape[:2]
    size = (max(8, round(full * scale)), max(8, round(height * scale)))
    sx, sy = size[0] / full, size[1] / height

    def shrink(pixels: np.ndarray) -> np.ndarray:
        return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)

    box = (round(work.box[0] * sx), round(work.box[1] * sy), round(work.box[2] * sx), round(work.box[3] * sy))
    changed = cv2.resize(work.changed.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    erosion = max(2, int(0.06 * work.face.width * sx))
    interior = ndimage.binary_erosion(np.pad(changed, 1), iterations=erosion)[1:-1, 1:-1]
    evidence = work.evidence
    small = _Work(
        work.label,
        work.index,
        work.origin,
        shrink(work.original),
        shrink(work.anonymized),
        work.face.scaled(sx, sy),
        box,
        work.shape,
        changed,
        FaceEvidence(box[2] - box[0], box[3] - box[1], evidence.face_width * sx, evidence.cells, evidence.colour, None),
        work.kind,
    )
    small.interior = interior if interior.sum() >= 64 else changed
    small.scale = scale
    return small


def _aligned_crop(pair: Pair, box: tuple[float, float, float, float], grow: float) -> tuple[int, int, int, int]:
    height, width = pair.original.shape[:2]
    x0 = max(0, int(math.floor((box[0] - grow) / 16)) * 16)
    y0 = max(0, int(math.floor((box[1] - grow) / 16)) * 16)
    return x0, y0, min(width, int(math.ceil(box[2] + grow))), min(height, int(math.ceil(box[3] + grow)))


def _jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)


def _outside_change(pair: Pair) -> float:
    """The mean change (grey levels) far from the faces: a whole-image operator changes it a lot."""
    outside = _outside(pair, 1.5)
    if not outside.any():
        return 0.0
    step = max(1, int(math.sqrt(outside.size / 250_000)))  # a sample of the pixels is enough for a mean
    return float(_difference(pair.original[::step, ::step], pair.anonymized[::step, ::step])[outside[::step, ::step]].mean())


def _outside(pair: Pair, grow: float = 1.0) -> np.ndarray:
    mask = np.ones(pair.original.shape[:2], dtype=bool)
    for face in pair.faces:
        x0, y0, x1, y1 = face.box
        dx, dy = grow * (x1 - x0), grow * (y1 - y0)
        mask[max(0, int(y0 - dy)) : max(0, int(math.ceil(y1 + dy))), max(0, int(x0 - dx)) : max(0, int(math.ceil(x1 + dx)))] = False
    return mask


def _outside_patches(pairs: Sequence[Pair], grow: float) -> tuple[list[tuple[np.ndarray, np.ndarray, tuple[bool, float]]], list[float]]:
    """16-pixel-aligned 64 x 64 (original, anonymized, (changed, busyness)) patches outside every face box
    grown by `grow`, and per pair the share of such outside pixels the tool changed."""
    patches, changes = [], []
    for pair in pairs:
        outside = _outside(pair, grow)
        step = max(1, int(math.sqrt(outside.size / 250_000)))
        if outside.any():
            sample = _difference(pair.original[::step, ::step], pair.anonymized[::step, ::step])[outside[::step, ::step]]
            changes.append(float(np.mean(sample > 0)))
        height, width = outside.shape
        for y in range(0, height - 63, 48):
            for x in range(0, width - 63, 48):
                y0, x0 = y // 16 * 16, x // 16 * 16
                if y0 + 64 <= height and x0 + 64 <= width and outside[y0 : y0 + 64, x0 : x0 + 64].all():
                    before, after = pair.original[y0 : y0 + 64, x0 : x0 + 64], pair.anonymized[y0 : y0 + 64, x0 : x0 + 64]
                    changed = bool(np.any(before[8:-8, 8:-8] != after[8:-8, 8:-8]))
                    patches.append((before, after, (changed, float(before.std()))))
    return patches, changes


def _codec_quality(pairs: Sequence[Pair]) -> tuple[int | None, float, float]:
    """(JPEG quality, its residual, the outside's typical change) of a whole-image re-encoding, fitted on
    16-pixel-aligned patches far from the faces (there the tool's output is the original re-encoded);
    quality None when the outside is untouched or JPEG does not explain it."""
    patches: list[tuple[np.ndarray, np.ndarray, tuple[bool, float]]] = []
    changes: list[float] = []
    for grow in (1.0, 0.6):  # far from the faces; nearer where large faces leave no patch that far
        patches, changes = _outside_patches(pairs, grow)
        if patches:
            break
    share = float(np.median(changes)) if changes else 0.0
    if share < 0.05 or not patches:
        return None, math.nan, share
    # The busiest patches the tool changed: a photo that was a JPEG of about the same quality re-encodes
    # to itself in most blocks, and those say nothing about the quality.
    patches = sorted(patches, key=lambda p: (not p[2][0], -p[2][1]))[:8]

    def residual(quality: int) -> float:
        return float(np.mean([np.abs(_jpeg(o, quality).astype(np.int16) - a.astype(np.int16))[8:-8, 8:-8].mean() for o, a, _ in patches]))

    # Every quality is tried: the residual is not smooth in it (0 at the tool's quality, higher one step away).
    quality, value = min(((q, residual(q)) for q in range(5, 101)), key=lambda item: (item[1], -item[0]))
    unexplained = float(np.mean([np.abs(o.astype(np.int16) - a.astype(np.int16))[8:-8, 8:-8].mean() for o, a, _ in patches]))
    if value <= 0.6 and value < 0.5 * unexplained:
        return int(quality), value, share
    return None, value, share


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


# -- scoring -----------------------------------------------------------------------------------------


def _reach(method: Anonymizer, box: tuple[int, int, int, int]) -> int:
    """Pixels around `box` that `method` reads (every stage's context)."""
    return max(stage.context(box) for stage in method.stages)


def _produce(method: Anonymizer, work: _Work, quality: int | None, box: tuple[int, int, int, int], window: tuple[int, int, int, int]) -> np.ndarray:
    """The crop's `window` (x0, y0, x1, y1; its origin on the 16-pixel grid) after `method` inside the
    face's region, and after the tool's JPEG on the blocks around the region (the only ones it changes)."""
    import torch

    wx0, wy0, wx1, wy1 = window
    local = (box[0] - wx0, box[1] - wy0, box[2] - wx0, box[3] - wy0)
    face = FaceGeometry(
        box=(work.face.box[0] - wx0, work.face.box[1] - wy0, work.face.box[2] - wx0, work.face.box[3] - wy0),
        landmarks=tuple((x - wx0, y - wy0) for x, y in work.face.landmarks),
        score=work.face.score,
    )
    produced = method.apply_regions(work.original[wy0:wy1, wx0:wx1], [(local, work.region_mask(box), face)], torch.Generator().manual_seed(0))
    if quality is not None:
        height, width = produced.shape[:2]
        x0, y0 = max(0, (local[0] - 16) // 16 * 16), max(0, (local[1] - 16) // 16 * 16)
        x1, y1 = min(width, local[2] + 24), min(height, local[3] + 24)
        produced[y0:y1, x0:x1] = _jpeg(produced[y0:y1, x0:x1], quality)
    return produced


def _residual(method: Anonymizer, work: _Work, quality: int | None, measure: _Measure, box: tuple[int, int, int, int] | None = None) -> float:
    """Mean |method(original) - anonymized| in grey levels over `measure`, with the face's region at `box`
    (default: its fitted box)."""
    box = box or work.box
    mx0, my0, mx1, my1 = measure.box
    if mx1 <= mx0:
        return math.inf
    height, width = work.original.shape[:2]
    reach = _reach(method, box) + (32 if quality is not None else 2)
    x0 = max(0, min(mx0, box[0] - reach)) // 16 * 16
    y0 = max(0, min(my0, box[1] - reach)) // 16 * 16
    x1, y1 = min(width, max(mx1, box[2] + reach)), min(height, max(my1, box[3] + reach))
    produced = _produce(method, work, quality, box, (x0, y0, x1, y1))
    inside = measure.mask[my0:my1, mx0:mx1]
    difference = np.abs(
        produced[my0 - y0 : my1 - y0, mx0 - x0 : mx1 - x0][inside].astype(np.int16) - work.anonymized[my0:my1, mx0:mx1][inside].astype(np.int16)
    )
    return float(difference.mean())


def _build(cls: type[Anonymizer], params: Mapping[str, Any]) -> Anonymizer | None:
    try:
        return cls(**{k: v for k, v in params.items() if not k.startswith("_")})
    except Exception:  # noqa: BLE001 - a parameter set outside the method's declared ranges is no candidate
        return None


def _score(cls: type[Anonymizer], params: Mapping[str, Any], work: _Work, quality: int | None) -> float:
    """The interior residual of `cls(**params)` on one face (remembered per box)."""
    key = (cls, tuple(sorted((k, str(v)) for k, v in params.items())), quality, work.box)
    if key not in work.memo:
        method = _build(cls, params)
        work.memo[key] = math.inf if method is None else _residual(method, work, quality, work.inside)
    return work.memo[key]


def _coarse_to_fine(score: Callable[[int], float], low: int, high: int, steps: Sequence[int], odd: bool = False, finish: bool = True) -> tuple[int, float]:
    """Best integer in [low, high]: every steps[0]-th value, then every steps[1]-th around the best, and
    so on down to single steps (residuals are unimodal enough in these parameters). `odd`: odd values
    only; `finish=False` stops before the single steps."""
    scored: dict[int, float] = {}
    unit = 2 if odd else 1
    centre, span = (low + high) // 2, high - low
    for step in (*(s * unit for s in steps), *((unit,) if finish else ())):
        start = max(low, centre - span)
        if odd:
            start |= 1
        for v in range(start, min(high, centre + span) + 1, step):
            if v not in scored:
                scored[v] = score(v)
        centre = min(scored, key=scored.__getitem__)
        span = step - unit
    return centre, scored[centre]


def _golden(score: Callable[[float], float], low: float, high: float, log: bool, coarse: int = 8, steps: int = 9) -> tuple[float, float]:
    """Best value in [low, high]: a coarse scan (log-spaced for `log`), then golden-section search in the
    bracket around its best point."""
    to, back = (math.log, math.exp) if log else (float, float)
    grid = np.linspace(to(low), to(high), coarse)
    values = [score(back(float(g))) for g in grid]
    best = int(np.argmin(values))
    if steps == 0:
        return back(float(grid[best])), values[best]
    a, b = float(grid[max(0, best - 1)]), float(grid[min(coarse - 1, best + 1)])
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = score(back(c)), score(back(d))
    for _ in range(steps):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = score(back(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = score(back(d))
    found = [(values[best], back(float(grid[best]))), (fc, back(c)), (fd, back(d))]
    value, where = min(found)
    return where, value


def _axis_range(axis: FitAxis, work: _Work) -> tuple[float, float]:
    high = axis.high
    if axis.fraction is not None:  # a strength in pixels: no further than the axis reaches into the region
        high = min(high, max(axis.low * 4, axis.reach * max(work.evidence.width, work.evidence.height)))
    return axis.low, high


def _search_face(cls: type[Anonymizer], variant: FitVariant, work: _Work, quality: int | None, coarse: bool = False) -> tuple[dict[str, Any], float]:
    """The variant's parameters fitted on one face: proposed by the method from the evidence, or searched
    (on the face's shrunk copy when it has one and the axes are lengths or unitless: the parameters are
    returned at full size, the residual is the searched copy's)."""
    proposals = cls.fit_proposals(variant, work.evidence)
    if proposals is not None:
        scored = [(_score(cls, {**variant.fixed, **p}, work, quality), i) for i, p in enumerate(proposals)]
        if not scored:
            return dict(variant.fixed), math.inf
        value, best = min(scored)
        return {**variant.fixed, **proposals[best]}, value
    target, target_quality = work, quality
    if work.small is not None and all(axis.unit is not None for axis in variant.axes):
        target, target_quality = work.small, None  # the tool's JPEG does not commute with shrinking: left out
    params: dict[str, Any] = dict(variant.fixed)
    for axis in variant.axes:  # start every axis in the middle of its range
        low, high = _axis_range(axis, target)
        params[axis.name] = _typed(axis, math.sqrt(low * high) if axis.scale == "log" else (low + high) / 2)
    value = math.inf
    rounds = 1 if len(variant.axes) <= 1 else 2
    for _ in range(rounds):
        for axis in variant.axes:
            low, high = _axis_range(axis, target)

            def score(v: float, axis: FitAxis = axis) -> float:
                return _score(cls, {**params, axis.name: _typed(axis, v)}, target, target_quality)

            if axis.scale in ("int", "odd"):
                odd = axis.scale == "odd"
                span = int(high) - int(low)
                steps = (max(1, span // 8), max(1, span // 40)) if span > 40 else (max(1, span // 8),)
                where, value = _coarse_to_fine(lambda v: score(float(v)), int(low), int(high), steps[:1] if coarse else steps, odd, finish=not coarse)
                params[axis.name] = _typed(axis, where)
            else:
                where_f, value = _golden(score, low, high, axis.scale == "log", steps=0 if coarse else 9)
                params[axis.name] = _typed(axis, where_f)
    if target is not work:
        params = {**params, **{a.name: _typed(a, float(params[a.name]) / target.scale) for a in variant.axes if a.unit == "px"}}
    return params, value


def _shrunk_params(variant: FitVariant, params: Mapping[str, Any], scale: float) -> dict[str, Any]:
    """`params` for a copy shrunk by `scale`: the lengths scaled with it."""
    return {**params, **{a.name: _typed(a, float(params[a.name]) * scale) for a in variant.axes if a.unit == "px" and a.name in params}}


def _refine_face(cls: type[Anonymizer], variant: FitVariant, work: _Work, quality: int | None, params: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Parameters found on a shrunk copy, refined at full size: each length stepped by 6% (integers by
    one unit) downhill from the estimate, then the vertex of the parabola through the last three points."""
    params = dict(params)
    value = _score(cls, params, work, quality)
    for axis in variant.axes:
        if axis.unit != "px":
            continue
        unit = 2 if axis.scale == "odd" else 1
        integral = axis.scale in ("int", "odd")

        def at(position: float, axis: FitAxis = axis) -> float | int:
            return _typed(axis, position)

        def score(v: float | int, axis: FitAxis = axis) -> float:
            return _score(cls, {**params, axis.name: v}, work, quality)

        centre = float(params[axis.name])
        step = unit if integral else 0.06 * centre
        points = {at(centre): value}
        for direction in (1, -1):
            position = centre
            for _ in range(6):
                position += direction * step
                v = at(position)
                if v < axis.low or v in points:
                    break
                points[v] = score(v)
                if points[v] >= min(points.values()) and points[v] > points[at(position - direction * step)]:
                    break
        best = min(points, key=points.__getitem__)
        if not integral:  # the parabola's vertex through the best point and its neighbours
            below, above = [v for v in points if v < best], [v for v in points if v > best]
            if below and above:
                a, c = max(below), min(above)
                fa, fb, fc = points[a], points[best], points[c]
                denominator = (best - a) * (fb - fc) - (best - c) * (fb - fa)
                if abs(denominator) > 1e-12:
                    vertex = best - 0.5 * ((best - a) ** 2 * (fb - fc) - (best - c) ** 2 * (fb - fa)) / denominator
                    if a < vertex < c:
                        v = at(vertex)
                        points[v] = score(v)
                        best = min(points, key=points.__getitem__)
        params[axis.name], value = best, points[best]
    return params, value


def _typed(axis: FitAxis, value: float) -> float | int:
    if axis.scale == "int":
        return int(round(value))
    if axis.scale == "odd":
        return int(round((value - 1) / 2)) * 2 + 1
    return float(f"{value:.4g}")


@dataclass
class _Candidate:
    cls: type[Anonymizer]
    variant: FitVariant
    params: dict[str, Any]
    per_face: list[float]
    fits: list[tuple[dict[str, Any], FaceEvidence]]

    @property
    def median(self) -> float:
        return float(np.median(self.per_face)) if self.per_face else math.inf


def _groups(cls: type[Anonymizer]) -> list[list[FitVariant]]:
    """`cls`'s variants, grouped where they differ only in `context`: those agree inside the region, so
    they are fitted once (on its interior) and told apart on its edge."""
    groups: dict[tuple[Any, ...], list[FitVariant]] = {}
    for variant in cls.fit_space.variants if cls.fit_space is not None else ():
        key = (tuple(sorted((k, str(v)) for k, v in variant.fixed.items() if k != "context")), tuple(a.name for a in variant.axes))
        groups.setdefault(key, []).append(variant)
    return list(groups.values())


@dataclass
class _Group:
    cls: type[Anonymizer]
    variants: list[FitVariant]
    fits: list[tuple[dict[str, Any], float]]  # per search face: parameters, interior residual


def _screen(families: Sequence[type[Anonymizer]], works: Sequence[_Work], quality: int | None) -> list[_Candidate]:
    """Every family's variants scanned on the first face; those close to the best fitted on the search
    faces (large ones on their shrunk copies, the best few then refined at full size), summarised into
    folder specs (`fit_summaries`) and scored on every face's interior at full size."""
    groups = [_Group(cls, variants, [_search_face(cls, variants[0], works[0], quality)]) for cls in families for variants in _groups(cls)]
    groups = [g for g in groups if math.isfinite(g.fits[0][1])]
    if not groups:
        return []
    first = min(g.fits[0][1] for g in groups)
    kept = [g for g in groups if g.fits[0][1] <= max(2.0 * first, first + 2.0, 0.5)]
    for group in kept:
        group.fits = [_search_face(group.cls, group.variants[0], work, quality) for work in works[:SEARCH_FACES]]
    hopeless = False  # no family comes near: nothing is refined at full size
    if any(w.small is not None for w in works[:SEARCH_FACES]):  # only the best few are refined at full size
        medians = {id(g): float(np.median([v for _, v in g.fits])) for g in kept}
        best = min(medians.values())
        hopeless = best > 4 * MAX_RESIDUAL
        kept = sorted((g for g in kept if medians[id(g)] <= max(1.5 * best, best + 1.0)), key=lambda g: medians[id(g)])[:3]
        for group in [] if hopeless else kept:
            group.fits = [
                _refine_face(group.cls, group.variants[0], work, quality, params)
                if work.small is not None and group.cls.fit_proposals(group.variants[0], work.evidence) is None
                else (params, value)
                for (params, value), work in zip(group.fits, works, strict=False)
            ]
    candidates = []
    for group in kept:
        scored: dict[int, list[float]] = {}
        for variant in group.variants:
            fits = [({**params, **variant.fixed}, work.evidence) for (params, _), work in zip(group.fits, works, strict=False)]
            for index, summary in enumerate(group.cls.fit_summaries(variant, fits)):
                if _build(group.cls, summary) is not None:
                    # The group's variants agree inside the regions: their interiors are scored once.
                    if index not in scored:
                        scored[index] = [
                            _score(group.cls, _shrunk_params(variant, summary, work.small.scale), work.small, None)
                            if hopeless and work.small
                            else _score(group.cls, summary, work, quality)
                            for work in works
                        ]
                    candidates.append(_Candidate(group.cls, variant, dict(summary), scored[index], fits))
    candidates.sort(key=lambda c: c.median)
    return candidates


def _refine_boxes(candidate: _Candidate, works: Sequence[_Work], quality: int | None) -> None:
    """Move each face's box edges to where the candidate reproduces the region best: by up to 3 pixels
    (the changed pixels can stop short of the tool's box where the image is flat), or 8 after a JPEG
    re-encoding (its blocks across the region's edge change too)."""
    from scipy import ndimage

    if _build(candidate.cls, candidate.params) is None:
        return

    def method_for(work: _Work, box: tuple[int, int, int, int]) -> Anonymizer | None:
        """The candidate on this face's box: with the parameters the evidence proposes for a box of that
        size (a mosaic's cell count follows its pitch), else the folder's."""
        proposals = candidate.cls.fit_proposals(candidate.variant, work.evidence.resized(box[2] - box[0], box[3] - box[1]))
        params = {**proposals[0], **candidate.variant.fixed} if proposals else candidate.params
        return _build(candidate.cls, params)

    reach = 8 if quality is not None else 3
    deltas = [d for d in range(-reach, reach + 1, 2 if quality is not None else 1) if d]
    for work in works:
        x0, y0, x1, y1 = work.box
        height, width = work.changed.shape
        frame = np.zeros((height, width), dtype=bool)
        frame[max(0, y0 - reach - 1) : y1 + reach + 1, max(0, x0 - reach - 1) : x1 + reach + 1] = True
        core = np.zeros_like(frame)
        core[y0:y1, x0:x1] = True
        measure = _Measure.of(frame & ~ndimage.binary_erosion(core, iterations=max(reach + 2, int(0.15 * work.face.width))))
        if work.shape == "free-form" or measure.mask.sum() < 16:
            continue
        start = method_for(work, work.box)
        if start is None:
            continue
        best_box, best = work.box, _residual(start, work, quality, measure)
        if best < (0.05 if quality is not None else 0.3):  # without a JPEG, the changed pixels give the box
            continue

        def trial(box: list[int], work: _Work = work, measure: _Measure = measure, width: int = width, height: int = height) -> float:
            tx0, ty0, tx1, ty1 = box
            method = method_for(work, (tx0, ty0, tx1, ty1))
            if method is None or not (0 <= tx0 < tx1 <= width and 0 <= ty0 < ty1 <= height):
                return math.inf
            return _residual(method, work, quality, measure, (tx0, ty0, tx1, ty1))

        for _ in range(2):
            moved = False
            for side in range(4):
                tried = {0: best}
                for step in (deltas, (-1, 1)):
                    centre = min(tried, key=tried.__getitem__)
                    for delta in step:
                        shift = centre + delta if step != deltas else delta
                        if shift not in tried:
                            box = list(best_box)
                            box[side] += shift
                            tried[shift] = trial(box)
                shift = min(tried, key=tried.__getitem__)
                if shift and tried[shift] < best - 1e-6:
                    box = list(best_box)
                    box[side] += shift
                    best_box, best, moved = (box[0], box[1], box[2], box[3]), tried[shift], True
            if not moved:
                break
        if best_box != work.box:
            work.box = best_box
            work.evidence = work.evidence.resized(best_box[2] - best_box[0], best_box[3] - best_box[1])


def _noise_candidate(works: Sequence[_Work], region: str) -> tuple[str, float] | None:
    """Additive white noise: the difference is zero-mean and uncorrelated between neighbours. The
    residual is the mean of the difference's low-pass part (what a draw of the same noise would not
    explain) plus the mismatch of its strength."""
    differences = [(w.anonymized.astype(np.float64) - w.original.astype(np.float64))[w.interior] for w in works]
    sigma = float(np.sqrt(np.mean([d.var() for d in differences])))
    if sigma < 2.0:
        return None
    correlations = []
    for work in works:
        diff = work.anonymized.astype(np.float64) - work.original.astype(np.float64)
        both = work.interior[:, :-1] & work.interior[:, 1:]
        a, b = diff[:, :-1][both], diff[:, 1:][both]
        correlations.append(float(np.corrcoef(a.ravel(), b.ravel())[0, 1]))
    if float(np.median(correlations)) > 0.2:
        return None
    spec = f"noise:sigma={sigma / 255.0:.4f},{region}"
    smoothed = [abs(float(d.mean())) for d in differences]
    return spec, float(np.median(smoothed)) + abs(float(np.median(correlations))) * sigma


# -- the region as a spec ----------------------------------------------------------------------------


def _region_spec(works: Sequence[_Work], whole_image: bool) -> str:
    """The region parameters that reproduce the fitted regions on average against the auditor's face
    boxes (a spec cannot carry each face's own region): margin and shape."""
    if whole_image:
        return "region=image"
    margins = []
    for work in works:
        x0, y0, x1, y1 = work.box
        margins.append(((x1 - x0) / max(1.0, work.face.width) - 1) / 2)
        margins.append(((y1 - y0) / max(1.0, work.face.height) - 1) / 2)
    margin = round(float(np.clip(np.median(margins), 0.0, 3.0)), 2) if margins else 0.2
    shapes = [w.shape for w in works]
    shape = "ellipse" if shapes.count("ellipse") > len(shapes) / 2 else "rect"
    return f"margin={margin},shape={shape}"


def _with_region(method: Anonymizer, region: str) -> str:
    """`method`'s spec with the folder's region parameters (the fitted regions replace the defaults)."""
    stage = method.spec
    name, _, arguments = stage.partition(":")
    kept = [a for a in arguments.split(",") if a and a.split("=")[0] not in ("margin", "shape", "region", "feather")]
    return f"{name}:" + ",".join(kept + region.split(","))


# -- identification ----------------------------------------------------------------------------------


def identify(pairs: Sequence[Pair]) -> Identification:
    """Fit the method behind `pairs` (the first MAX_PAIRS with faces are used)."""
    return identify_detailed(pairs).identification


def identify_detailed(pairs: Sequence[Pair], registry: Mapping[str, type[Anonymizer]] | None = None) -> Fit:
    """Fit the method behind `pairs`, with the per-face regions and findings (`Fit`).

    Args:
        pairs: (original, anonymized) pairs with the faces found on the originals.
        registry: the methods to consider (default: every registered method with a `fit_space`).
    """
    started = time.perf_counter()
    usable = [p for p in pairs if p.faces and p.original.shape == p.anonymized.shape][:MAX_PAIRS]
    if not usable:
        return Fit(Identification(None, math.nan, False, (), (), "no pair with a face and a same-size counterpart to fit on", MAX_RESIDUAL))
    quality, codec_residual, outside_share = _codec_quality(usable)
    outside_change = float(np.median([_outside_change(p) for p in usable]))
    whole_image = quality is None and outside_change > 4
    works, findings = _evidence(usable, quality, whole_image)

    def done(identification: Identification, codec: str | None = None, face_parameters: tuple[tuple[str, int, dict[str, Any]], ...] = ()) -> Fit:
        return Fit(identification, tuple(findings), codec, face_parameters, time.perf_counter() - started)

    missed = [f for f in findings if not f.fitted]
    if not works:
        if findings and all(not f.found for f in findings) and quality is None:
            return done(Identification("none (unchanged)", 0.0, False, (), (), "the faces are unchanged: nothing was anonymized", MAX_RESIDUAL))
        return done(Identification(None, math.nan, False, (), (), "no anonymized region large enough to fit on around the faces", MAX_RESIDUAL))
    registry = dict(METHODS if registry is None else registry)
    kinds = [w.kind for w in works]
    # The evidence most faces show; on a tie every tied kind's families compete on their residuals (a set's
    # order would otherwise decide, and it changes between runs with the string hash seed).
    tied = sorted(k for k in set(kinds) if kinds.count(k) == max(kinds.count(c) for c in kinds))
    kind = "/".join(tied)
    codec = f"jpeg:quality={quality},region=image" if quality is not None else None
    region = _region_spec(works, whole_image)

    families = [
        cls for cls in registry.values() if cls.fit_space is not None and (any(k in cls.fit_space.evidence for k in tied) or "any" in cls.fit_space.evidence)
    ]
    candidates = _screen([c for c in families if not c.fit_space.fallback], works, quality)  # type: ignore[union-attr]
    if candidates and MAX_RESIDUAL < candidates[0].median <= 4 * MAX_RESIDUAL:  # a near miss: a costlier family may explain it
        candidates = sorted(candidates + _screen([c for c in families if c.fit_space.fallback], works, quality), key=lambda c: c.median)  # type: ignore[union-attr]

    best_spec: str | None = None
    best, per_face, own = math.inf, [math.inf] * len(works), [math.inf] * len(works)
    face_parameters: tuple[tuple[str, int, dict[str, Any]], ...] = ()
    others: list[tuple[str, float]] = []
    if candidates:
        boxes = [w.box for w in works]
        if not whole_image and candidates[0].median <= 4 * MAX_RESIDUAL:  # the boxes of a family that nearly fits
            _refine_boxes(candidates[0], works, quality)
        if [w.box for w in works] != boxes:  # the boxes moved: the close families fitted again on them
            top = candidates[0].median
            close = list(dict.fromkeys(c.cls for c in candidates if c.median <= max(3.0 * top, top + 3.0)))[:4]
            candidates = _screen(close, works, quality) or candidates
        region = _region_spec(works, whole_image)
        # Decide among the best family's variants (and close rivals) on the whole region, edge included.
        top = candidates[0].median
        rescored: list[tuple[float, int, _Candidate, list[float]]] = []
        finalists: list[_Candidate] = []
        seen: set[tuple[type[Anonymizer], int]] = set()
        for candidate in candidates:  # the best summary of each variant close to the best
            key = (candidate.cls, id(candidate.variant))
            if candidate.median <= max(1.5 * top, top + 0.5) and key not in seen and len(finalists) < 6:
                seen.add(key)
                finalists.append(candidate)
        for candidate in finalists:
            method = _build(candidate.cls, candidate.params)
            if method is not None:
                values = [_residual(method, work, quality, work.band()) for work in works]
                rescored.append((float(np.median(values)), id(candidate), candidate, values))
        rescored.sort(key=lambda item: item[:2])
        best, _, chosen, per_face = rescored[0]
        best_spec = _with_region(chosen.cls(**chosen.params), region)
        # Each face fitted on its own with the chosen variant: one family explains every face even where
        # the folder's single spec cannot (a tool's integer rounding of a per-face cell count).
        fitted_params = []
        proposed = any(chosen.cls.fit_proposals(chosen.variant, w.evidence) is not None for w in works)
        for index, work in enumerate(works):
            reuse = index < len(chosen.fits) and not proposed
            params = chosen.fits[index][0] if reuse else _search_face(chosen.cls, chosen.variant, work, quality)[0]
            if not reuse and not proposed and work.small is not None:
                params = _refine_face(chosen.cls, chosen.variant, work, quality, params)[0]
            params = {**params, **chosen.variant.fixed}
            method = _build(chosen.cls, params)
            own[index] = per_face[index] if method is None else min(per_face[index], _residual(method, work, quality, work.band()))
            fitted_params.append(params)
        face_parameters = tuple((w.label, w.index, p) for w, p in zip(works, fitted_params, strict=True))
        for candidate in candidates:
            spec = _with_region(candidate.cls(**candidate.params), region)
            if spec != best_spec and spec not in dict(others) and len(others) < 5:
                others.append((spec, candidate.median))

    noise = _noise_candidate(works, region) if quality is None and best > 1.0 else None
    if noise is not None and noise[1] < best:
        others = [(best_spec, best)] + others if best_spec else others
        best_spec, best, per_face, own, face_parameters = noise[0], noise[1], [noise[1]] * len(works), [noise[1]] * len(works), ()

    # A project-style pipeline: the region re-encoded as JPEG after the stage (grid at the region's corner).
    family = best_spec.split(":")[0] if best_spec else ""
    # Not when no single spec fits but each face's own parameters replay it (a tool that sets its strength per face).
    if (
        best_spec
        and quality is None
        and 1.0 < best <= 12.0
        and family not in ("noise", "box", "jpeg")
        and not (best > MAX_RESIDUAL and _fits_every_face(own, face_parameters))
    ):
        stage_spec = best_spec

        def piped(q: int) -> float:
            method = build_method(f"{stage_spec} | jpeg:quality={q},{region}")
            return float(np.median([_residual(method, w, None, w.band()) for w in works[:SEARCH_FACES]]))

        q, value = _coarse_to_fine(piped, 20, 95, (10, 3))
        if value < 0.7 * best:
            best_spec = f"{stage_spec} | jpeg:quality={q},{region}"
            method = build_method(best_spec)
            per_face = [_residual(method, w, None, w.band()) for w in works]
            best = float(np.median(per_face))
            own = per_face

    if best_spec is None:
        return done(Identification(None, math.nan, False, (), (), f"no registered method can explain the {kind} regions around the faces", MAX_RESIDUAL))
    if codec is not None:
        best_spec = f"{best_spec} | {codec}"
    canonical = build_method(best_spec).spec
    consistent = float(np.mean([r <= 2 * MAX_RESIDUAL for r in own]))
    identified = best <= MAX_RESIDUAL and consistent >= MIN_CONSISTENT
    per_face_only = not identified and best > MAX_RESIDUAL and _fits_every_face(own, face_parameters)
    if per_face_only:  # the family replays every face exactly, each with its own strength (a tool that sets it per face)
        spread = _parameter_spread(face_parameters)
        reason = (
            f"identified per face as {canonical.split(':')[0]} (each face's own parameters leave at most {max(own):.2f} grey levels"
            f"{'; ' + spread if spread else ''}); no single spec reproduces every face (the folder's best, {canonical}, leaves "
            f"{best:.2f}): the spec is that best single fit"
        )
        identified, best, per_face = True, float(np.median(own)), list(own)
    elif identified:
        reason = f"identified as {canonical} (median residual {best:.2f} grey levels over {len(works)} faces"
        reason += f"; the tool re-encoded the image as JPEG quality {quality})" if quality is not None else ")"
    elif best <= MAX_RESIDUAL:
        reason = f"{canonical} fits only {consistent:.0%} of the faces within {2 * MAX_RESIDUAL} grey levels: not one operator, treated as unknown"
    else:
        reason = f"unknown operator: the best fit, {canonical}, leaves {best:.2f} grey levels (> {MAX_RESIDUAL}): not identified, treated as unknown"
    shapes = sorted({w.shape for w in works})
    if not whole_image:
        scale = np.median([f.scale for f in findings if f.fitted], axis=0)
        reason += f"; regions found in the difference: {'/'.join(shapes)}, {scale[0]:.2f} x {scale[1]:.2f} the face box"
    leaks = [f.finding for f in findings if f.finding]
    if leaks:
        reason += f"; {len(leaks)} face(s) not covered: " + "; ".join(leaks[:3]) + ("; ..." if len(leaks) > 3 else "")
    if missed and not leaks:
        reason += f"; {len(missed)} face(s) left out of the fit"
    candidate_list = [(canonical, best)] + [(build_method(s + (f" | {codec}" if codec else "")).spec, v) for s, v in others]
    identification = Identification(
        max_residual=MAX_RESIDUAL,
        spec=canonical,
        residual=best,
        identified=identified,
        faces=tuple(FaceFit(w.label, w.index, r) for w, r in zip(works, per_face, strict=True)),
        candidates=tuple(candidate_list),
        reason=reason,
    )
    return done(identification, codec, face_parameters)


def _fits_every_face(own: Sequence[float], face_parameters: Sequence[tuple[str, int, dict[str, Any]]]) -> bool:
    """Whether the chosen family, fitted on each face alone, reproduces every face within MAX_RESIDUAL
    (at least two faces: one face alone says nothing about a tool's rule)."""
    return len(own) >= 2 and len(face_parameters) == len(own) and all(r <= MAX_RESIDUAL for r in own)


def _parameter_spread(face_parameters: Sequence[tuple[str, int, dict[str, Any]]]) -> str:
    """The parameters that differ between faces and their range, e.g. "cells 24 to 28"."""
    values: dict[str, list[Any]] = {}
    for _, _, params in face_parameters:
        for name, value in params.items():
            values.setdefault(name, []).append(value)
    parts = []
    for name, seen in values.items():
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
            continue
        numbers = [v for v in seen if v != 0]  # 0: unset (cells, ksize)
        if len(set(numbers)) > 1:
            parts.append(f"{name} {min(numbers):.4g} to {max(numbers):.4g}")
    return ", ".join(parts)


@functools.cache
def code_fingerprint() -> str:
    """A digest of the code a fit depends on (this module, the anonymizers it replays and the shared
    vocabulary in redteam/core they build on: geometry, parameters, specs): a cached identification is
    reused only by the code that made it."""
    import hashlib
    from pathlib import Path

    import redteam.anonymizers
    import redteam.core

    digest = hashlib.sha256()
    packages = [Path(redteam.anonymizers.__file__).parent, Path(redteam.core.__file__).parent]
    for path in [Path(__file__), *(p for package in packages for p in sorted(package.glob("*.py")))]:
        digest.update(f"{path.parent.name}/{path.name}".encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def to_record(result: Identification) -> dict[str, object]:
    """`result` at full precision, for the cache (`from_record` reads it back unchanged)."""
    return {
        "spec": result.spec,
        "residual": result.residual,
        "identified": result.identified,
        "faces": [[f.image, f.face_index, f.residual] for f in result.faces],
        "candidates": [[spec, value] for spec, value in result.candidates],
        "reason": result.reason,
        "max_residual": result.max_residual,
    }


def from_record(record: object) -> Identification | None:
    """An identification written by `to_record`, or None if `record` is not one (a damaged entry)."""
    if not isinstance(record, dict):
        return None
    spec, reason, identified = record.get("spec"), record.get("reason"), record.get("identified")
    if not (spec is None or isinstance(spec, str)) or not isinstance(reason, str) or not isinstance(identified, bool):
        return None
    try:
        faces = tuple(FaceFit(str(image), int(index), float(value)) for image, index, value in record["faces"])
        candidates = tuple((str(name), float(value)) for name, value in record["candidates"])
        return Identification(spec, float(record["residual"]), identified, faces, candidates, reason, float(record["max_residual"]))
    except (KeyError, TypeError, ValueError):
        return None
