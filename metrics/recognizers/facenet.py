"""FaceNet (Inception-ResNet-v1, VGGFace2) through facenet-pytorch.

References:
    Schroff, Kalenichenko and Philbin, "FaceNet: A Unified Embedding for Face Recognition and
    Clustering", CVPR 2015; Cao et al., "VGGFace2", FG 2018. Weights: facenet-pytorch's port of
    davidsandberg/facenet 20180402-114759 (LFW 99.65%).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Hashable

import numpy as np
import torch
import torch.nn.functional as F

from metrics.recognizers.base import Availability, Recognizer, Threshold, file_availability
from redteam.core.errors import ModelUnavailableError
from redteam.core.geometry import FaceGeometry, box_crop
from redteam.core.provenance import sha256_file
from redteam.core.weights import get_model_file, load_plain_checkpoint

#: Default threshold on the Euclidean distance between L2-normalised embeddings. Source: deepface's
#: published threshold for "Facenet512" (the same davidsandberg 20180402-114759 weights),
#: euclidean_l2 = 1.04. Uncalibrated for this preprocessing: run `redteam calibrate`.
DEFAULT_FACENET_THRESHOLD = Threshold(
    value=1.04,
    distance="euclidean_l2",
    source="deepface Facenet512 euclidean_l2 threshold (serengil/deepface, verification.py); uncalibrated here",
    calibrated=False,
)

#: facenet-pytorch's crop convention: the MTCNN box (no margin) resized to 160 x 160.
FACENET_MARGIN = 0.0


def load_facenet_weights(model: torch.nn.Module, path: str) -> None:
    """Load a facenet-pytorch state dict (with or without its 8631-way `logits` head), strictly."""
    state = load_plain_checkpoint(path)
    if not isinstance(state, dict):
        raise ModelUnavailableError(f"{path}: not a state dict", fix="import the facenet-pytorch vggface2 .pt file")
    state = {key: value for key, value in state.items() if not key.startswith("logits.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelUnavailableError(
            f"{path}: not an InceptionResnetV1 state dict (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})",
            fix="import the facenet-pytorch file 20180402-114759-vggface2.pt",
        )


class FaceNetRecognizer(Recognizer):
    """FaceNet InceptionResnetV1 (VGGFace2), 512-d, 160 x 160 MTCNN box crops."""

    name = "facenet"
    summary = "FaceNet InceptionResnetV1 (VGGFace2, facenet-pytorch), 512-d"
    crop_size = 160
    embedding_dim = 512

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        embedder: torch.nn.Module | None = None,
        threshold: Threshold | None = None,
    ) -> None:
        self.device = torch.device(device)
        self._embedder = embedder
        self._weights_sha256: str | None = "injected" if embedder is not None else None
        self._threshold = threshold or DEFAULT_FACENET_THRESHOLD

    @classmethod
    def availability(cls) -> Availability:
        return file_availability("facenet_vggface2")

    def _model(self) -> torch.nn.Module:
        if self._embedder is None:
            from facenet_pytorch import InceptionResnetV1

            path = get_model_file("facenet_vggface2").require()
            with contextlib.redirect_stdout(io.StringIO()):
                model = InceptionResnetV1(pretrained=None, classify=False)
            load_facenet_weights(model, str(path))
            self._weights_sha256 = sha256_file(path)
            self._embedder = model
        self._embedder.eval().to(self.device)
        return self._embedder

    @property
    def fingerprint(self) -> str:
        self._model()
        return f"facenet-vggface2-{self._weights_sha256}-crop160-m{FACENET_MARGIN}"

    @property
    def threshold(self) -> Threshold:
        return self._threshold

    def locate(self, original: np.ndarray, face: FaceGeometry) -> Hashable:
        return tuple(round(v, 3) for v in face.box)

    def crop(self, pixels: np.ndarray, alignment: Hashable) -> np.ndarray:
        return box_crop(pixels, alignment, self.crop_size)  # type: ignore[arg-type]

    def embed(self, chips: torch.Tensor) -> torch.Tensor:
        standardized = (chips * 255.0 - 127.5) / 128.0  # facenet-pytorch's fixed_image_standardization
        with torch.no_grad():
            out = self._model()(standardized.to(self.device))
        return F.normalize(out.float(), dim=1).cpu()
