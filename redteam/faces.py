"""Face detection and geometry on the ORIGINAL images (MTCNN, facenet-pytorch).

The attacker knows where the face is, so every anonymized or reconstructed image is cropped with the
geometry found on its original. Whether a face is still detectable after anonymization is measured
separately (`match_detections`).

References:
    Zhang, Zhang, Li and Qiao, "Joint Face Detection and Alignment using Multi-task Cascaded
    Convolutional Networks" (MTCNN), IEEE SPL 2016.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

DETECTOR_VERSION = "mtcnn-facenet-pytorch-2.5.3-v1"


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

    def to_json(self) -> dict[str, object]:
        return {"box": list(self.box), "landmarks": [list(p) for p in self.landmarks], "score": self.score}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> FaceGeometry:
        box = tuple(float(v) for v in data["box"])  # type: ignore[union-attr]
        marks = tuple((float(p[0]), float(p[1])) for p in data["landmarks"])  # type: ignore[union-attr,index]
        return cls(box=box, landmarks=marks, score=float(data["score"]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class DetectorSettings:
    """Detector parameters; each one is written into the report.

    Attributes:
        min_score: MTCNN face probability below which a detection is discarded.
        min_face_size: smallest face side in pixels MTCNN searches for.
    """

    min_score: float = 0.95
    min_face_size: int = 20


class FaceDetector:
    """MTCNN (weights ship inside facenet-pytorch) returning `FaceGeometry`, left to right."""

    name = "mtcnn"

    def __init__(self, settings: DetectorSettings = DetectorSettings(), device: str | torch.device = "cpu") -> None:
        self.settings = settings
        self.device = torch.device(device)
        self._mtcnn: torch.nn.Module | None = None

    @property
    def cache_key(self) -> str:
        return f"{DETECTOR_VERSION}-s{self.settings.min_score}-m{self.settings.min_face_size}"

    def _model(self) -> torch.nn.Module:
        if self._mtcnn is None:
            from facenet_pytorch import MTCNN

            with contextlib.redirect_stdout(io.StringIO()):
                self._mtcnn = MTCNN(
                    keep_all=True,
                    min_face_size=self.settings.min_face_size,
                    post_process=False,
                    device=self.device,
                )
        return self._mtcnn

    def detect(self, pixels: np.ndarray) -> list[FaceGeometry]:
        """Detect faces in an H x W x 3 uint8 RGB image.

        Returns:
            Faces with score >= `min_score`, sorted by the left edge of their box.
        """
        with torch.no_grad():
            boxes, scores, landmarks = self._model().detect(Image.fromarray(pixels), landmarks=True)
        if boxes is None:
            return []
        # facenet-pytorch 2.5.3 returns object arrays under numpy 2: normalise them.
        boxes_array = np.array(np.asarray(boxes).tolist(), dtype=np.float64).reshape(-1, 4)
        scores_array = np.array(np.asarray(scores).tolist(), dtype=np.float64).reshape(-1)
        marks_array = np.array(np.asarray(landmarks).tolist(), dtype=np.float64).reshape(-1, 5, 2)
        faces = [
            FaceGeometry(
                box=tuple(float(v) for v in box),  # type: ignore[arg-type]
                landmarks=tuple((float(x), float(y)) for x, y in marks),
                score=float(score),
            )
            for box, score, marks in zip(boxes_array, scores_array, marks_array, strict=True)
            if score >= self.settings.min_score
        ]
        return sorted(faces, key=lambda face: (face.box[0], face.box[1]))


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_detections(
    originals: Sequence[FaceGeometry], detected: Sequence[FaceGeometry], min_iou: float = 0.5
) -> list[bool]:
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
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    image = Image.fromarray(pixels)
    cropped = image.crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)))
    return np.asarray(cropped.resize((size, size), Image.BILINEAR), dtype=np.uint8)
