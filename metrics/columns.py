"""Per-row image-quality columns of the results table: each compares the attacked face crop with the
original's (METRIC_CROP squares, uint8 N x H x W x 3 stacks, as the engine crops them) and gives one
value per face.

A new column is one class here (or in a plugin) added to QUALITY_COLUMNS: the engine computes every
available column for every probe, and the results table, summary and reports pick it up by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from metrics.perceptual import LPIPSMetric, psnr, ssim
from redteam.core.tensors import to_tensor

#: Side of the square face crop (the MTCNN box, facenet-pytorch's convention) the columns compare.
METRIC_CROP = 160


class QualityColumn(ABC):
    """One per-row column. `model` is the name of the model it needs ("" for none); `heading` is how the
    reports title it (its name when not set)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    model: ClassVar[str] = ""
    heading: ClassVar[str] = ""

    @abstractmethod
    def __call__(self, attacked: np.ndarray, original: np.ndarray) -> np.ndarray:
        """float[N] for two uint8 N x H x W x 3 stacks of crops."""


class SSIMColumn(QualityColumn):
    """Structural similarity (scikit-image; Wang et al., IEEE TIP 2004)."""

    name = "ssim"
    heading = "SSIM"
    summary = "SSIM of the attacked face crop against the original's"

    def __call__(self, attacked: np.ndarray, original: np.ndarray) -> np.ndarray:
        return ssim(attacked, original)


class PSNRColumn(QualityColumn):
    """Peak signal-to-noise ratio in dB (scikit-image)."""

    name = "psnr"
    heading = "PSNR (dB)"
    summary = "PSNR (dB) of the attacked face crop against the original's"

    def __call__(self, attacked: np.ndarray, original: np.ndarray) -> np.ndarray:
        return psnr(attacked, original)


class LPIPSColumn(QualityColumn):
    """Learned perceptual distance (Zhang et al., CVPR 2018), AlexNet trunk by default (VGG16 selectable)."""

    name = "lpips"
    heading = "LPIPS"
    summary = "LPIPS v0.1 (AlexNet, or VGG16 with --lpips-net vgg) of the attacked face crop against the original's"
    model = "lpips"

    def __init__(self, metric: LPIPSMetric) -> None:
        self.metric = metric

    def __call__(self, attacked: np.ndarray, original: np.ndarray) -> np.ndarray:
        import torch

        def batch(crops: np.ndarray) -> torch.Tensor:
            return torch.cat([to_tensor(crop) for crop in crops])

        return self.metric(batch(attacked), batch(original)).numpy()


QUALITY_COLUMNS: dict[str, type[QualityColumn]] = {column.name: column for column in (SSIMColumn, PSNRColumn, LPIPSColumn)}
