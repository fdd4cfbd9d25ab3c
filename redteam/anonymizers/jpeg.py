"""JPEG compression of the face region (Pillow), with kornia's differentiable JPEG as its operator."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from redteam.anonymizers.base import Anonymizer, Box, FitAxis, FitSpace, FitVariant, Parameter
from redteam.core.geometry import FaceGeometry


class Jpeg(Anonymizer):
    """Re-encode the face region as JPEG at a given quality (4:2:0, Pillow/libjpeg), 8x8 grid at its corner.

    References:
        Wallace, "The JPEG still picture compression standard", 1992; Shin and Song, "JPEG-resistant
        Adversarial Images", 2017 (the differentiable approximation kornia implements).
    """

    name = "jpeg"
    operator_kind = "jpeg"
    reference = "JPEG (libjpeg via Pillow); differentiable approximation: kornia.enhance.jpeg_codec_differentiable"
    operator_note = "non-linear; differentiable approximation by kornia (Shin and Song 2017)"
    parameters = (Parameter("quality", int, 30, "JPEG quality", 1, 100),)
    fit_space = FitSpace((FitVariant({}, (FitAxis("quality", 5, 100, "int"),)),))

    def transform(self, window, region: Box, face: FaceGeometry | None, image, generator) -> np.ndarray:
        x0, y0, x1, y1 = region
        area = np.clip(np.round(window[y0:y1, x0:x1] * 255.0), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(area).save(buffer, format="JPEG", quality=int(self.values["quality"]))
        buffer.seek(0)
        decoded = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float64) / 255.0
        out = window.copy()
        out[y0:y1, x0:x1] = decoded
        return out

    def physics(self, window_shape: tuple[int, int]):
        from deepinv.physics import Physics
        from kornia.enhance import jpeg_codec_differentiable

        quality = torch.tensor([float(self.values["quality"])])
        return Physics(A=lambda x: jpeg_codec_differentiable(x, quality.to(x.device)))
