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
from typing import Any

import numpy as np
import torch

from redteam.core.config import DetectorSettings
from redteam.core.geometry import FaceGeometry, box_crop, box_iou, enlarged_box, match_detections
from redteam.core.pooling import with_channels_last_max_pools

__all__ = ["DETECTOR_VERSION", "DetectorSettings", "FaceDetector", "FaceGeometry", "box_crop", "box_iou", "enlarged_box", "match_detections"]

DETECTOR_VERSION = "mtcnn-facenet-pytorch-2.5.3-v1"


class FaceDetector:
    """MTCNN (weights ship inside facenet-pytorch) returning `FaceGeometry`, left to right."""

    name = "mtcnn"

    def __init__(self, settings: DetectorSettings = DetectorSettings(), device: str | torch.device = "cpu") -> None:
        self.settings = settings
        self.device = torch.device(device)
        self._mtcnn: Any = None

    @property
    def cache_key(self) -> str:
        return f"{DETECTOR_VERSION}-s{self.settings.min_score}-m{self.settings.min_face_size}"

    def load(self) -> None:
        """Load MTCNN now (facenet-pytorch and its weights, seconds on first use): callers time this apart
        from inference, and a run whose detections are all cached never pays it."""
        self._model()

    def _model(self) -> Any:
        if self._mtcnn is None:
            from facenet_pytorch import MTCNN

            with contextlib.redirect_stdout(io.StringIO()):
                model = MTCNN(keep_all=True, min_face_size=self.settings.min_face_size, post_process=False, device=self.device)
            self._mtcnn = with_channels_last_max_pools(model)  # the same detections, bit for bit, faster on a CPU
        return self._mtcnn

    def cache_key_for(self, min_face_size: int | None = None) -> str:
        """The cache key of detections searched down to `min_face_size` px (None: the settings' minimum)."""
        size = self._min_size(min_face_size)
        return self.cache_key if size == self.settings.min_face_size else f"{self.cache_key}-search{size}"

    def _min_size(self, min_face_size: int | None) -> int:
        return self.settings.min_face_size if min_face_size is None else max(self.settings.min_face_size, int(min_face_size))

    def detect(self, pixels: np.ndarray, min_face_size: int | None = None) -> list[FaceGeometry]:
        """Detect faces in an H x W x 3 uint8 RGB image.

        Args:
            min_face_size: search only for faces at least this many pixels wide (never below the settings'
                minimum). MTCNN's image pyramid then starts at scale 12 / min_face_size, so a search for a
                face of known size skips the large, costly scales that only find much smaller faces
                (Zhang et al. 2016, section II-A).

        Returns:
            Faces with score >= `min_score`, sorted by the left edge of their box.
        """
        return self.detect_batch([pixels], min_face_size)[0]

    def detect_batch(self, images: list[np.ndarray], min_face_size: int | None = None) -> list[list[FaceGeometry]]:
        """`detect` on images of one size at once: MTCNN runs each stage on the whole batch (one network
        call per pyramid level and stage instead of one per image), with the same result per image. The
        cascade is facenet-pytorch's, with its resampling from one integral image (`redteam.mtcnn_cascade`)."""
        if not images:
            return []
        if any(image.shape != images[0].shape for image in images):
            raise ValueError("detect_batch needs images of one size")
        size = self._min_size(min_face_size)
        if min(images[0].shape[:2]) < size:
            return [[] for _ in images]  # no face of the minimum size fits (MTCNN's image pyramid would be empty)
        from redteam.mtcnn_cascade import run_cascade  # facenet-pytorch and OpenCV: only a run that detects

        found = run_cascade(self._model(), images, size)
        return [self._faces(boxes, scores, marks) for boxes, scores, marks in found]

    def _faces(self, boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray) -> list[FaceGeometry]:
        faces = [
            FaceGeometry(
                box=tuple(float(v) for v in box),  # type: ignore[arg-type]
                landmarks=tuple((float(x), float(y)) for x, y in marks),
                score=float(score),
            )
            for box, score, marks in zip(boxes, scores, landmarks, strict=True)
            if score >= self.settings.min_score
        ]
        return sorted(faces, key=lambda face: (face.box[0], face.box[1]))
