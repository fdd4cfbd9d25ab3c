"""The interface every face recognizer implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from redteam.core.geometry import FaceGeometry


@dataclass(frozen=True)
class Threshold:
    """Verification threshold on the recognizer's native distance: same person if distance < value.

    Attributes:
        value: the distance threshold.
        distance: the native distance, e.g. "euclidean".
        source: where the number comes from (paper, documentation or a calibration file).
        calibrated: True only when computed on labelled pairs by `redteam calibrate`.
        far: the false-accept rate it was calibrated at, if calibrated.
    """

    value: float
    distance: str
    source: str
    calibrated: bool
    far: float | None = None


@dataclass(frozen=True)
class Availability:
    """Whether a recognizer can run on this machine, and if not, why and how to fix it."""

    available: bool
    reason: str = ""


def file_availability(name: str) -> Availability:
    """Availability of a catalog weight file, with the commands that provide it when missing."""
    from redteam.core.weights import get_model_file

    entry = get_model_file(name)
    if entry.is_available():
        return Availability(True)
    return Availability(
        False,
        f"{entry.description} not found at {entry.path()}: run `redteam models download {name}` or `redteam models import {name} FILE`",
    )


class Recognizer(ABC):
    """A face recognizer with its own alignment.

    Alignment is computed once on the ORIGINAL image (`locate`) and reused to crop every anonymized or
    reconstructed version of it (`crop`), because the attacker knows where the face is.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    crop_size: ClassVar[int]
    embedding_dim: ClassVar[int]

    def __init__(self, *, device: str | torch.device = "cpu", threshold: Threshold | None = None) -> None:
        """Every registered recognizer is built with keywords only: the device to run on and, optionally, a
        threshold replacing its published one (a calibrated one). Subclasses may add keywords of their own."""
        self.device = torch.device(device)
        self._threshold = threshold

    @classmethod
    @abstractmethod
    def availability(cls) -> Availability:
        """Whether the weights are on this machine."""

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Identifies model + weights + preprocessing, for cache keys and the report."""

    @property
    @abstractmethod
    def threshold(self) -> Threshold:
        """The verification threshold in use."""

    @abstractmethod
    def locate(self, original: np.ndarray, face: FaceGeometry) -> Hashable:
        """Alignment data for `face`, computed on the original H x W x 3 uint8 image."""

    @abstractmethod
    def crop(self, pixels: np.ndarray, alignment: Hashable) -> np.ndarray:
        """The aligned crop_size x crop_size x 3 uint8 chip of any image of the original's size."""

    @abstractmethod
    def embed(self, chips: torch.Tensor) -> torch.Tensor:
        """Embeddings of aligned chips.

        Args:
            chips: N x 3 x crop_size x crop_size float32 RGB in [0, 1].

        Returns:
            N x embedding_dim float32.
        """

    def distances(self, probes: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
        """Native distances, N x M (Euclidean by default)."""
        return torch.cdist(probes.double(), gallery.double()).float()
