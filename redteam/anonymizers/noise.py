"""Additive Gaussian noise on the face region (seeded). Operator: deepinv Denoising + GaussianNoise."""

from __future__ import annotations

import numpy as np
import torch

from redteam.anonymizers.base import Anonymizer, Box, Parameter
from redteam.core.geometry import FaceGeometry


class Noise(Anonymizer):
    """Add i.i.d. Gaussian noise (sigma on the [0, 1] scale) to the face region, then clip and quantize.

    References:
        Layered redaction guidance (downsample + compress + noise); Hao et al., FG 2020, evaluate noise
        obfuscation against recognition.
    """

    name = "noise"
    operator_kind = "noise"
    reference = "Additive Gaussian noise; layered newsroom pipelines (Hao et al., FG 2020)"
    linear = True
    operator_note = "identity forward operator with a GaussianNoise noise model"
    parameters = (Parameter("sigma", float, 0.1, "noise standard deviation on the [0, 1] intensity scale", 0.0, 1.0),)

    def transform(self, window, region: Box, face: FaceGeometry | None, image, generator) -> np.ndarray:
        noise = torch.randn(window.shape, generator=generator or torch.Generator().manual_seed(0), dtype=torch.float64)
        return np.clip(window + float(self.values["sigma"]) * noise.numpy(), 0.0, 1.0)

    def physics(self, window_shape: tuple[int, int]):
        from deepinv.physics import Denoising, GaussianNoise

        return Denoising(noise_model=GaussianNoise(sigma=float(self.values["sigma"])))
