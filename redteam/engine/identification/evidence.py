"""The evidence identification works on: the pairs, what each face's region shows, and the crops and
measures a fit scores on."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from redteam.anonymizers.base import FaceEvidence
from redteam.core.geometry import FaceGeometry
from redteam.core.results import Identification

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
