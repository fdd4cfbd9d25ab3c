"""Face geometry found on the ORIGINAL images, and the boxes derived from it.

The attacker knows where the face is, so every anonymized or reconstructed image is cropped with the
geometry found on its original.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class FaceGeometry:
    """Where one face is in its original image.

    Attributes:
        box: (x0, y0, x1, y1) in pixels of the original image (may extend past its border).
        landmarks: five (x, y) points: left eye, right eye, nose, left and right mouth corner.
        score: detector confidence in [0, 1].
    """

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    score: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    def scaled(self, sx: float, sy: float) -> FaceGeometry:
        """This face in the image resampled by `sx` across and `sy` down."""
        x0, y0, x1, y1 = self.box
        return FaceGeometry(box=(x0 * sx, y0 * sy, x1 * sx, y1 * sy), landmarks=tuple((x * sx, y * sy) for x, y in self.landmarks), score=self.score)

    def to_json(self) -> dict[str, object]:
        return {"box": list(self.box), "landmarks": [list(p) for p in self.landmarks], "score": self.score}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaceGeometry:
        """Parse a stored geometry; raises ValueError unless it is 4 finite box values, 5 finite landmark
        points and a score in [0, 1] (a cache entry is never trusted blindly)."""
        box = tuple(float(v) for v in data["box"])
        marks = tuple((float(p[0]), float(p[1])) for p in data["landmarks"])
        score = float(data["score"])
        values = [*box, *(v for point in marks for v in point), score]
        if len(box) != 4 or len(marks) != 5 or not all(np.isfinite(values)) or not 0.0 <= score <= 1.0 or box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError("not a face geometry")
        return cls(box=(box[0], box[1], box[2], box[3]), landmarks=marks, score=score)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_detections(originals: Sequence[FaceGeometry], detected: Sequence[FaceGeometry], min_iou: float = 0.5) -> list[bool]:
    """For each original face, whether some detection in the other image overlaps it (IoU >= min_iou).

    Greedy one-to-one matching by descending IoU, so two original faces never claim one detection.
    """
    pairs = sorted(
        ((box_iou(o.box, d.box), i, j) for i, o in enumerate(originals) for j, d in enumerate(detected)),
        reverse=True,
    )
    matched = [False] * len(originals)
    used: set[int] = set()
    for iou, i, j in pairs:
        if iou < min_iou:
            break
        if matched[i] or j in used:
            continue
        matched[i] = True
        used.add(j)
    return matched


def enlarged_box(box: Sequence[float], margin: float) -> tuple[float, float, float, float]:
    """The box grown by `margin` times its width/height on every side (margin 0 = unchanged)."""
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    return (x0 - dx, y0 - dy, x1 + dx, y1 + dy)


def box_crop(pixels: np.ndarray, box: Sequence[float], size: int) -> np.ndarray:
    """Crop `box` (zero-padded outside the image) and resize it to size x size, bilinear.

    This is facenet-pytorch's `extract_face` convention, used for FaceNet and the perceptual metrics.
    """
    from PIL import Image

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    image = Image.fromarray(pixels)
    cropped = image.crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)))
    return np.asarray(cropped.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


class _Regions(Protocol):
    def regions(self, shape: tuple[int, ...], faces: Sequence[FaceGeometry]) -> list[Box]: ...


def attack_window(shape: tuple[int, ...], face: FaceGeometry, reference: Any | None, region: Box | None = None) -> Box:
    """The part of the image an attack works on for one face, clipped to the image: the known method's
    regions grown by a quarter, or the face box grown by half for an unknown method.

    Args:
        reference: the known method (anything with `stages`, each with `regions(shape, faces)`), or None.
        region: the first stage's region measured on this face (image coordinates), which replaces the
            one its spec derives from the face box.
    """
    height, width = shape[:2]
    stages: Sequence[_Regions] = reference.stages if reference is not None else ()
    first = 1 if region is not None else 0
    boxes = [box for stage in stages[first:] for box in stage.regions(shape, [face])]
    boxes += [region] if region is not None else []
    if boxes:
        x0, y0 = float(min(b[0] for b in boxes)), float(min(b[1] for b in boxes))
        x1, y1 = float(max(b[2] for b in boxes)), float(max(b[3] for b in boxes))
        grow_x, grow_y = (x1 - x0) / 4.0, (y1 - y0) / 4.0
    else:
        x0, y0, x1, y1 = face.box
        grow_x, grow_y = (x1 - x0) / 2.0, (y1 - y0) / 2.0
    return (
        max(0, int(np.floor(x0 - grow_x))),
        max(0, int(np.floor(y0 - grow_y))),
        min(width, int(np.ceil(x1 + grow_x))),
        min(height, int(np.ceil(y1 + grow_y))),
    )
